"""The data modules' error, DataError, and the shared argument checks bound to raise it."""

from __future__ import annotations

import functools
import math
import numbers

from nnlab import checks
from nnlab.checks import InputError, did_you_mean, quoted

__all__ = [
    "DataError",
    "check_choice",
    "check_count",
    "check_int",
    "check_real",
    "did_you_mean",
    "quoted",
]


class DataError(InputError):
    """Bad data or a bad data argument; the message names the value and what was expected."""


check_int = functools.partial(checks.check_int, error=DataError)
check_choice = functools.partial(checks.check_choice, error=DataError)


def check_count(name: str, value: object, low: int, high: int, why: str = "") -> int:
    """An integer in ``[low, high]``: the ceiling keeps a typo (``1000000000``) from asking
    for more memory than any machine has before anything notices."""
    count = check_int(name, value, low, why)
    if count > high:
        raise DataError(f"{name} must be an integer in [{low}, {high:_}], got {value!r}")
    return count


def check_real(
    name: str,
    value: object,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> float:
    """Return ``value`` as a float, or raise DataError if it is not a number in the interval."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = float(value)
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        if above and below:
            return v
    raise DataError(f"{name} must be {_interval(low, high, low_open, high_open)}, got {value!r}")


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
