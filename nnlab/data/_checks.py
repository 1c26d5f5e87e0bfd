"""Argument checks shared by the data modules: one place that words the error messages."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable


class DataError(ValueError):
    """Bad data or a bad data argument; the message names the value and what was expected."""


def check_int(name: str, value: object, minimum: int, why: str = "") -> int:
    """Return ``value`` as an int, or raise DataError if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        reason = f" ({why})" if why else ""
        raise DataError(f"{name} must be an integer >= {minimum}{reason}, got {value!r}")
    return int(value)


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


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise DataError listing them."""
    choices = tuple(choices)
    if value not in choices:
        hint = did_you_mean(value, choices)
        raise DataError(f"{name} must be one of {quoted(choices)}, got {value!r}{hint}")
    return value  # type: ignore[return-value]


def quoted(names: Iterable[str]) -> str:
    """``'a', 'b', 'c'`` — a list of names for an error message."""
    return ", ".join(repr(n) for n in names)


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` when ``value`` is a near miss of one of ``choices``, else ``""``."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=3)
    return f". Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
