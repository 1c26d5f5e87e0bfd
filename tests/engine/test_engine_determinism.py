"""Same inputs and seed give bit-identical runs; another seed gives another run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnlab.engine import GD_VARIANTS, MLP, EpochRecord, train

# wall-clock time is the one field a rerun cannot reproduce
MEASURED = [f.name for f in dataclasses.fields(EpochRecord) if f.name != "seconds"]


def run(X, y, val, *, gd, dtype, optimizer="adam", net_seed=0, seed=None):
    net = MLP([2, 8, 3], activation="tanh", seed=net_seed, dtype=dtype)
    result = train(
        net,
        X,
        y,
        gd=gd,
        batch_size=8,
        optimizer=optimizer,
        learning_rate=0.05,
        epochs=8,
        seed=seed,
        val=val,
    )
    return result, net


def measured(result):
    return [tuple(getattr(record, name) for name in MEASURED) for record in result.history]


@pytest.fixture
def split(classification):
    X, y = classification
    return X[:24], y[:24], (X[24:], y[24:])


def test_seconds_is_the_only_field_left_out():
    assert MEASURED == [
        "epoch",
        "train_loss",
        "val_loss",
        "train_accuracy",
        "val_accuracy",
        "grad_norm",
        "learning_rate",
    ]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("gd", GD_VARIANTS)
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])
def test_same_seed_gives_bit_identical_runs(split, gd, dtype, optimizer):
    X, y, val = split
    first, first_net = run(X, y, val, gd=gd, dtype=dtype, optimizer=optimizer)
    second, second_net = run(X, y, val, gd=gd, dtype=dtype, optimizer=optimizer)
    assert first.epochs_run == second.epochs_run == 8
    assert (first.status, first.updates, first.reason) == (
        second.status,
        second.updates,
        second.reason,
    )
    for a, b in zip(first.history, second.history, strict=True):
        for name in MEASURED:
            assert getattr(a, name) == getattr(b, name), name
    for p, q in zip(first_net.params, second_net.params, strict=True):
        assert p.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("gd", ["stochastic", "minibatch"])
def test_shuffle_seed_changes_the_run(split, gd, dtype):
    X, y, val = split
    first, first_net = run(X, y, val, gd=gd, dtype=dtype, seed=1)
    second, second_net = run(X, y, val, gd=gd, dtype=dtype, seed=2)
    assert [r.train_loss for r in first.history] != [r.train_loss for r in second.history]
    assert not np.array_equal(first_net.params[0], second_net.params[0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("gd", GD_VARIANTS)
def test_network_seed_changes_the_run(split, gd, dtype):
    X, y, val = split
    first, _ = run(X, y, val, gd=gd, dtype=dtype, net_seed=1)
    second, _ = run(X, y, val, gd=gd, dtype=dtype, net_seed=2)
    assert measured(first) != measured(second)


@pytest.mark.parametrize("gd", ["stochastic", "minibatch"])
def test_shuffle_seed_defaults_to_the_network_seed(split, gd):
    X, y, val = split
    implicit, _ = run(X, y, val, gd=gd, dtype="float64", net_seed=5)
    explicit, _ = run(X, y, val, gd=gd, dtype="float64", net_seed=5, seed=5)
    other, _ = run(X, y, val, gd=gd, dtype="float64", net_seed=5, seed=6)
    assert measured(implicit) == measured(explicit)
    assert measured(implicit) != measured(other)
