"""Argument checks done once, at the engine's edge, with messages that name the bad value."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from nnlab.engine.losses import DEFAULT_OUTPUT, LOSSES


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


def check_positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value
