"""Shared fixtures: small, seeded data sets that keep the engine tests fast."""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.data import sine, spirals


@pytest.fixture
def regression() -> tuple[np.ndarray, np.ndarray]:
    """40 noisy samples of sin(x): X of shape (40, 1), y float of shape (40, 1)."""
    data = sine(n_samples=40, seed=0)
    return data.X, data.y


@pytest.fixture
def classification() -> tuple[np.ndarray, np.ndarray]:
    """30 spiral points in 3 classes: X of shape (30, 2), y int64 class ids of shape (30,)."""
    data = spirals(n_samples=30, classes=3, seed=0)
    return data.X, data.y
