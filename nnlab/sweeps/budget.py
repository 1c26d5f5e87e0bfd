"""How much memory a run needs, estimated from its configuration before anything is allocated.

A spec whose run cannot fit (``hidden: [100000, 100000]`` asks for 75 GiB of weights) would
otherwise register every run and fail each one with a MemoryError, and a sweep of such runs
would end ``finished``. The estimate counts what the engine holds for a run: the parameters and
their gradients (a second gradient buffer when a batch is split into ``CHUNK_ROWS`` chunks),
the optimizer's state (one buffer for momentum and Nesterov, two for Adam), the best weights
kept for early stopping, one chunk's activations, deltas and scratch, a mini-batch's copy, and the
data set with its split, standardised and cast copies. It is an estimate within a small factor:
NumPy's temporaries and the interpreter are not counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from nnlab.engine.mlp import CHUNK_ROWS, n_params
from nnlab.engine.training import AUTO_BATCH_SIZE
from nnlab.params import AUTO_BATCH
from nnlab.sweeps.config import RunConfig

MEMORY_FRACTION = 0.5  # of physical memory, shared by the workers that train at once
OPTIMIZER_BUFFERS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}
DATA_COPIES = 4  # as generated or read, split, standardised, and cast for training (float64)
GIB = 2**30

# inputs and outputs of the synthetic sets: (features, outputs), each a number or a parameter
SYNTHETIC_SHAPES = {
    "xor": (2, 2),
    "moons": (2, 2),
    "circles": (2, 2),
    "spirals": (2, "classes"),
    "blobs": ("n_features", "classes"),
    "sine": (1, 1),
}
SYNTHETIC_DEFAULTS = {"n_samples": 300, "classes": 3, "n_features": 2}  # the largest defaults


@dataclass(frozen=True)
class DataShape:
    """What a run's memory depends on in its data: rows and the network's two ends."""

    n_samples: int  # training rows, or all rows as an upper bound
    n_features: int
    n_outputs: int

    @classmethod
    def of_synthetic(cls, data: dict) -> DataShape | None:
        """The shape a synthetic set will have, from its parameters (None for a file): the
        memory check runs before a set of a million rows is generated."""
        shape = SYNTHETIC_SHAPES.get(data.get("name"))
        if shape is None:
            return None
        size = {**SYNTHETIC_DEFAULTS, **data}
        features, outputs = (size[s] if isinstance(s, str) else s for s in shape)
        return cls(size["n_samples"], features, outputs)


@dataclass(frozen=True)
class Estimate:
    """A run's memory in bytes: the network's part (weights, optimizer, activations) and the
    data's part (the data set's copies and the batch buffers)."""

    network: int
    data: int

    @property
    def total(self) -> int:
        return self.network + self.data


def estimate(config: RunConfig, shape: DataShape) -> Estimate:
    itemsize = np.dtype(config.dtype).itemsize
    sizes = [shape.n_features, *config.hidden, shape.n_outputs]
    asked = AUTO_BATCH_SIZE if config.batch_size == AUTO_BATCH else config.batch_size or 32
    batch = {"batch": shape.n_samples, "stochastic": 1}.get(config.gd, min(asked, shape.n_samples))
    rows = min(batch, CHUNK_ROWS)
    vectors = 2 + (batch > CHUNK_ROWS) + OPTIMIZER_BUFFERS.get(config.optimizer, 2)
    vectors += config.patience is not None  # the best weights so far
    activations = rows * (sum(sizes[1:]) + sizes[-1] + max(sizes[1:-1], default=0))
    network = (n_params(sizes) * vectors + activations) * itemsize
    row = shape.n_features + shape.n_outputs
    buffers = batch * row * itemsize if config.gd == "minibatch" else 0  # a batch's copy
    data = shape.n_samples * row * (8 * DATA_COPIES + itemsize) + buffers
    return Estimate(network, data)


def worker_budget(workers: int = 1) -> int:
    """Bytes one of ``workers`` runs training at once may use: its share of
    ``MEMORY_FRACTION`` of physical memory."""
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(physical * MEMORY_FRACTION) // max(workers, 1)


def describe(need: Estimate, budget: int, workers: int) -> str:
    share = f"1/{workers} of " if workers > 1 else ""
    return (
        f"a run needs about {need.total / GIB:.3g} GiB of memory ({need.network / GIB:.3g} GiB "
        f"for the network, {need.data / GIB:.3g} GiB for the data), more than the "
        f"{budget / GIB:.3g} GiB a worker may use ({share}{MEMORY_FRACTION:.0%} of physical "
        "memory); make it smaller"
    )
