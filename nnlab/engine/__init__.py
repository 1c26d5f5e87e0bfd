"""The NumPy training engine: no files, no database, only arrays in and arrays out."""

from nnlab.engine.activations import (
    ACTIVATIONS,
    DERIVATIVES,
    HIDDEN_ACTIVATIONS,
    OUTPUT_ACTIVATIONS,
)
from nnlab.engine.checkpoint import Checkpoint
from nnlab.engine.losses import DEFAULT_OUTPUT, LOSS_NAMES, LOSSES
from nnlab.engine.mlp import INITS, MLP
from nnlab.engine.optimizers import OPTIMIZERS
from nnlab.engine.packed import pack_plan, train_many
from nnlab.engine.schedules import SCHEDULES
from nnlab.engine.training import (
    GD_VARIANTS,
    PAUSED,
    STATUSES,
    EpochRecord,
    TrainResult,
    train,
)

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_OUTPUT",
    "DERIVATIVES",
    "GD_VARIANTS",
    "HIDDEN_ACTIVATIONS",
    "INITS",
    "LOSSES",
    "LOSS_NAMES",
    "MLP",
    "OPTIMIZERS",
    "OUTPUT_ACTIVATIONS",
    "PAUSED",
    "SCHEDULES",
    "STATUSES",
    "Checkpoint",
    "EpochRecord",
    "TrainResult",
    "pack_plan",
    "train",
    "train_many",
]
