"""Small data sets shared by the nnlab.data tests."""

from __future__ import annotations

import numpy as np

from nnlab.data import SYNTHETIC, Dataset, make_dataset

# Small sizes keep the suite fast; noise > 0 everywhere so seeds matter (xor's default is 0).
SMALL = {
    "xor": {"n_samples": 12, "noise": 0.1},
    "moons": {"n_samples": 50},
    "circles": {"n_samples": 50},
    "spirals": {"n_samples": 60, "classes": 4},
    "blobs": {"n_samples": 60, "classes": 3, "n_features": 5},
    "sine": {"n_samples": 40},
}
CLASSIFIERS = ["xor", "moons", "circles", "spirals", "blobs"]


def make(name: str, **overrides: object) -> Dataset:
    return SYNTHETIC[name](**{**SMALL[name], **overrides})


def indexed(y: list[int] | np.ndarray) -> Dataset:
    """A classification dataset whose X[:, 0] is the row number, so splits can be traced."""
    y = np.asarray(y)
    X = np.column_stack([np.arange(len(y)), np.zeros(len(y))])
    return make_dataset(X, y)
