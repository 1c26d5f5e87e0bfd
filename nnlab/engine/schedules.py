"""Learning-rate schedules: the step size η_e that epoch e = 1, 2, ..., E uses.

η₀ is ``learning_rate``, E is ``epochs`` and N the number of training samples. η changes only
between epochs, and every optimizer uses it (scikit-learn applies its schedules to SGD only:
its Adam ignores them).

- ``constant``:    η_e = η₀
- ``invscaling``:  η_e = η₀ / ((e − 1) N + 1)^power_t, scikit-learn's η₀ / (t + 1)^power_t with
  t the samples seen before the epoch; like scikit-learn it changes at epoch ends, so epoch 1
  uses η₀.
- ``step``:        η_e = η₀ γ^⌊(e − 1) / step_size⌋, PyTorch's ``StepLR``.
- ``exponential``: η_e = η₀ γ^(e − 1), PyTorch's ``ExponentialLR``.
- ``cosine``:      η_e = η_min + (η₀ − η_min) (1 + cos(π (e − 1) / E)) / 2, PyTorch's
  ``CosineAnnealingLR`` with ``T_max = E`` stepped once per epoch: epoch 1 uses η₀, and η reaches
  η_min = ``min_learning_rate`` at the end of the last epoch, so no epoch is spent at η_min.
- ``adaptive``:    scikit-learn's. η_e = η₀ until the training loss plateaus: when it has failed
  to beat the best loss so far by ``tol`` for more than ``n_iter_no_change`` consecutive epochs,
  η is divided by 5 and the count restarts; a plateau reached with η <= 1e-6 ends the run as
  converged. The rule lives with the other stopping rules, in the training loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# adaptive: η is divided by this at a plateau, and a plateau at or below the floor ends the run
ADAPTIVE_DIVISOR = 5.0
ADAPTIVE_FLOOR = 1e-6


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """What a schedule's formula reads; validated by ``train``."""

    learning_rate: float
    epochs: int
    n_samples: int
    power_t: float
    gamma: float
    step_size: int
    min_learning_rate: float


def _constant(epoch: int, s: ScheduleSettings) -> float:
    return s.learning_rate


def _invscaling(epoch: int, s: ScheduleSettings) -> float:
    seen = (epoch - 1) * s.n_samples
    return s.learning_rate / (seen + 1) ** s.power_t


def _step(epoch: int, s: ScheduleSettings) -> float:
    return s.learning_rate * s.gamma ** ((epoch - 1) // s.step_size)


def _exponential(epoch: int, s: ScheduleSettings) -> float:
    return s.learning_rate * s.gamma ** (epoch - 1)


def _cosine(epoch: int, s: ScheduleSettings) -> float:
    eta_min, progress = s.min_learning_rate, (epoch - 1) / s.epochs
    return eta_min + (s.learning_rate - eta_min) * (1.0 + math.cos(math.pi * progress)) / 2


# name -> η_e as a function of the epoch (from 1); adaptive starts constant and is divided by the
# training loop at each plateau
SCHEDULES: dict[str, Callable[[int, ScheduleSettings], float]] = {
    "constant": _constant,
    "invscaling": _invscaling,
    "step": _step,
    "exponential": _exponential,
    "cosine": _cosine,
    "adaptive": _constant,
}
