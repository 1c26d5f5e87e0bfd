"""How the report's scores read as text, shared with the command line's tables (no matplotlib,
no pandas)."""

from __future__ import annotations

import math


def mean_std(mean: float, std: float) -> str:
    """``0.1234 ± 0.012``: a mean over seeds and its spread; a lone seed (no std) shows its
    value alone, and no seed at all a dash."""
    if math.isnan(mean):
        return "–"
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"
