"""Same inputs and seed give bit-identical runs; another seed gives another run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnlab.engine import GD_VARIANTS, MLP, EpochRecord, train, train_many

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


@pytest.mark.parametrize("packed", [False, True], ids=["alone", "packed"])
def test_a_large_network_gives_the_same_bits_at_any_blas_thread_count(packed):
    """A sweep trains a run in its own process (-j 1: BLAS at every core) or in a worker (one
    BLAS thread at -j 2): the same run either way. OpenBLAS's vdot splits a vector of over
    ~10,000 elements between its threads, so the gradient norm and the L2 penalty are summed
    without it."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((64, 20)), rng.integers(0, 3, 64)
    settings = {"epochs": 3, "batch_size": 16, "alpha": 1e-3, "optimizer": "momentum"}
    assert MLP([20, 600, 3]).flat.size > 14_000

    def trained(threads: int) -> list:
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            info = threadpoolctl.threadpool_info()
            if {i["num_threads"] for i in info if i["user_api"] == "blas"} != {threads}:
                pytest.skip(f"BLAS cannot run {threads} threads here")
            runs = [
                (MLP([20, 600, 3], seed=k), {**settings, "learning_rate": 0.01 * (k + 1)})
                for k in range(2)
            ]
            if packed:
                return [measured(r) for r in train_many(runs, X, y)]
            return [measured(train(net, X, y, **s)) for net, s in runs]

    assert trained(1) == trained(2)
