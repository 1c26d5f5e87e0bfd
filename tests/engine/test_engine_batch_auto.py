"""``batch_size="auto"`` (issue 12): scikit-learn's default, min(200, n_samples) per update."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from nnlab.engine import MLP, train


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 2)), rng.integers(0, 3, n)


@pytest.mark.parametrize(("n_samples", "batch"), [(30, 30), (200, 200), (201, 200), (450, 200)])
def test_auto_is_min_200_n_samples(n_samples, batch):
    X, y = data(n_samples)
    auto = MLP([2, 4, 3], seed=0)
    result = train(auto, X, y, gd="minibatch", batch_size="auto", epochs=2)
    assert result.updates == 2 * math.ceil(n_samples / batch)
    explicit = MLP([2, 4, 3], seed=0)
    same = train(explicit, X, y, gd="minibatch", batch_size=batch, epochs=2)
    assert [r.train_loss for r in result.history] == [r.train_loss for r in same.history]
    np.testing.assert_array_equal(auto.flat, explicit.flat)


@pytest.mark.parametrize(("gd", "per_epoch"), [("batch", 1), ("stochastic", 10)])
def test_auto_is_ignored_outside_minibatch(gd, per_epoch):
    result = train(MLP([2, 4, 3]), *data(10), gd=gd, batch_size="auto", epochs=1)
    assert result.updates == per_epoch


@pytest.mark.parametrize("bad", ["Auto", "all", "", 0, 2.5])
def test_other_batch_sizes_name_auto(bad):
    message = f"batch_size must be an integer >= 1 (or 'auto' for min(200, n_samples)), got {bad!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        train(MLP([2, 4, 3]), *data(10), gd="minibatch", batch_size=bad)
