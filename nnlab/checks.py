"""Argument checks for every module, and the error they raise.

An ``InputError`` is a user mistake (a bad argument, bad data, a bad spec): its message names the
bad value and what was expected, and the command line prints it and exits with status 2. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Iterable


class InputError(ValueError):
    """A user mistake; the message names the bad value and what was expected."""


def quoted(names: Iterable[str]) -> str:
    """``'a', 'b', 'c'`` — a list of names for an error message."""
    return ", ".join(repr(n) for n in names)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 run``, ``2 runs``; ``many`` for a plural that is not ``word + "s"``."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def close_matches(value: object, choices: Iterable[str]) -> list[str]:
    """The (up to 3) ``choices`` that ``value`` is a near miss of, closest first."""
    if not isinstance(value, str):
        return []
    return difflib.get_close_matches(value, list(choices), n=3)


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """``. Did you mean 'x'?`` when ``value`` is a near miss of one of ``choices``, else ``""``."""
    close = close_matches(value, choices)
    return f". Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_choice(name: str, value: object, choices: Iterable[str], error=InputError) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``error`` listing them."""
    choices = tuple(choices)
    if value not in choices:
        hint = did_you_mean(value, choices)
        raise error(f"unknown {name} {value!r}; expected one of {quoted(choices)}{hint}")
    return value  # type: ignore[return-value]


def check_int(name: str, value: object, minimum: int, why: str = "", error=InputError) -> int:
    """Return ``value`` as an int, or raise ``error`` if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        reason = f" ({why})" if why else ""
        raise error(f"{name} must be an integer >= {minimum}{reason}, got {value!r}")
    return int(value)


def check_count(
    name: str, value: object, low: int, high: int, why: str = "", error=InputError
) -> int:
    """An integer in ``[low, high]``: the ceiling keeps a typo (``1000000000``) from asking for
    more memory or time than any machine has before anything notices."""
    count = check_int(name, value, low, why, error)
    if count > high:
        raise error(f"{name} must be an integer in [{low}, {high:_}], got {value!r}")
    return count


def check_number(
    name: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    error=InputError,
) -> float:
    """A finite real number ``> above`` (or ``>= at_least``) and ``< below`` (or ``<=
    at_most``), where given; else ``error`` naming it and the interval: ``must be a finite
    number in [0, 1), got 1``."""
    low_closed, high_closed = at_least is not None, at_most is not None
    low = at_least if low_closed else above
    high = at_most if high_closed else below
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (
        is_real and math.isfinite(value) and _within(value, low, low_closed, high, high_closed)
    ):
        wanted = _interval(low, low_closed, high, high_closed)
        raise error(f"{name} must be a finite number{wanted}, got {value!r}")
    return float(value)


def _within(value, low: float | None, low_closed: bool, high: float | None, high_closed: bool):
    above_low = low is None or (value >= low if low_closed else value > low)
    below_high = high is None or (value <= high if high_closed else value < high)
    return above_low and below_high


def _interval(low: float | None, low_closed: bool, high: float | None, high_closed: bool) -> str:
    """`` in [0, 1)``, `` in (0, 60]``, `` > 0``, `` >= 0``, `` < 1``, `` <= 1`` or nothing."""
    if low is not None and high is not None:
        return f" in {'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
    if low is not None:
        return f" {'>=' if low_closed else '>'} {low:g}"
    return "" if high is None else f" {'<=' if high_closed else '<'} {high:g}"


# What may not appear in a name a terminal will show: C0/C1 controls, DEL, and the bidi marks
# and overrides that make text display in an order other than it is stored (as in sweep specs).
UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_NAME = 200


def check_name(what: str, value: object, error=InputError) -> str:
    """A name that prints safely: non-empty, at most ``MAX_NAME`` characters, no control or
    bidi characters; else ``error`` naming it."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise error(f"{what} must be a non-empty name of up to {MAX_NAME} characters, got {shown}")
    if bad := UNSAFE_TEXT.search(value):
        raise error(f"{what} {value!r} contains the control character U+{ord(bad.group()):04X}")
    return value
