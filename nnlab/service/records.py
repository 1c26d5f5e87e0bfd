"""What the reading API returns, as JSON values: NaN and infinities as null, times as ISO 8601."""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime

import numpy as np
import pandas as pd


def frame_records(frame: pd.DataFrame) -> list[dict]:
    """One JSON object per row of ``frame``."""
    return [json_value(record) for record in frame.to_dict("records")]


def json_value(value):
    """``value`` (a scalar, a dataclass, or a dict or list of them) as plain JSON: NumPy and
    pandas scalars as Python ones, NaN, infinities, NA and NaT as None, times as ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
