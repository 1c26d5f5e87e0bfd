"""Argument checks done once, at the engine's edge, with messages that name the bad value."""

from __future__ import annotations

from nnlab.checks import InputError, check_choice, check_int, check_number
from nnlab.engine.losses import DEFAULT_OUTPUT, LOSSES

__all__ = ["check_choice", "check_int", "check_loss_output", "check_number", "check_positive"]


def check_loss_output(loss: str, output: str) -> None:
    if (loss, output) not in LOSSES:
        fits = sorted(o for (name, o) in LOSSES if name == loss)
        raise InputError(
            f"loss {loss!r} does not fit output activation {output!r}; "
            f"{loss} needs output {' or '.join(fits)} (default {DEFAULT_OUTPUT[loss]!r})"
        )


def check_positive(name: str, value: object) -> float:
    return check_number(name, value, above=0)
