"""Argument checks done once, at the engine's edge, with messages that name the bad value."""

from __future__ import annotations

import difflib
import math
import numbers
import operator
from collections.abc import Iterable

from nnlab.engine.losses import DEFAULT_OUTPUT, LOSSES

_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt}


def check_choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError listing them."""
    allowed = list(allowed)
    if value in allowed:
        return value  # type: ignore[return-value]
    hint = difflib.get_close_matches(str(value), allowed, n=1)
    suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
    raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}.{suggestion}")


def check_loss_output(loss: str, output: str) -> None:
    if (loss, output) not in LOSSES:
        fits = sorted(o for (name, o) in LOSSES if name == loss)
        raise ValueError(
            f"loss {loss!r} does not fit output activation {output!r}; "
            f"{loss} needs output {' or '.join(fits)} (default {DEFAULT_OUTPUT[loss]!r})"
        )


def check_number(
    name: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
) -> float:
    """A finite real number within the given bounds, else a ValueError naming it."""
    limits = [
        (op, limit)
        for op, limit in zip(_COMPARE, (above, at_least, below), strict=True)
        if limit is not None
    ]
    ok = isinstance(value, numbers.Real) and math.isfinite(value)
    if not (ok and all(_COMPARE[op](value, limit) for op, limit in limits)):
        wanted = " and".join(f" {op} {limit}" for op, limit in limits)
        raise ValueError(f"{name} must be a finite number{wanted}, got {value!r}")
    return float(value)


def check_positive(name: str, value: object) -> float:
    return check_number(name, value, above=0)


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
