"""Packed training (nnlab/engine/packed.py) against the reference engine, run by run.

A run trained in a pack must give what ``train`` gives it alone: the same status, reason,
updates, initial loss, every epoch's record (all but ``seconds``), final weights, and for a
paused run the same checkpoint bytes. In float64 the packed path does the same operations in
the same order, so the tests ask for equality to the bit (stricter than the 1e-9 the issue
allows); in float32, to 1e-4 relative.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from nnlab.checks import InputError
from nnlab.engine import MLP, train, train_many
from nnlab.engine.packed import MAX_PACKED_BATCH, pack_plan

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
# (loss, output activation): every pair the engine accepts
LOSS_OUTPUTS = (
    ("cross_entropy", None),
    ("binary_cross_entropy", None),
    ("mse", "identity"),
    ("mse", "sigmoid"),
    ("mse", "softmax"),
)
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
GD = ("batch", "stochastic", "minibatch")
# one run per schedule, each with its own learning rate and decay: they share one pack
SCHEDULED = (
    {"learning_rate": 0.05, "learning_rate_schedule": "constant"},
    {"learning_rate": 0.2, "learning_rate_schedule": "invscaling", "power_t": 0.3},
    {"learning_rate": 0.1, "learning_rate_schedule": "step", "step_size": 2, "gamma": 0.5},
    {"learning_rate": 0.08, "learning_rate_schedule": "exponential", "gamma": 0.9},
    {"learning_rate": 0.3, "learning_rate_schedule": "cosine", "min_learning_rate": 0.01},
    {"learning_rate": 0.15, "learning_rate_schedule": "adaptive", "tol": 1e-3},
    {"learning_rate": 0.01, "weight_decay": 0.05, "momentum": 0.5, "beta1": 0.8},
    {"learning_rate": 50.0, "divergence_factor": 1.5},  # mostly diverges, leaving the pack
    {"learning_rate": 0.001, "epochs": 2},  # leaves the pack after epoch 2
)


def data(loss: str, output: str | None, n: int = 53, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    ids = rng.integers(0, 3, n)
    if loss == "binary_cross_entropy":
        return X, (ids > 0).astype(np.int64), 1
    if loss == "mse" and output == "identity":
        return X, rng.standard_normal((n, 2)), 2
    return X, ids, 3


def records(result) -> list[str]:
    """Each epoch's record but its ``seconds``, as text: exact for floats, and NaN equals NaN."""
    return [repr(dataclasses.astuple(record)[:-1]) for record in result.history]


def assert_same_run(alone, packed, net_alone, net_packed) -> None:
    assert packed.status == alone.status
    assert packed.reason == alone.reason
    assert packed.updates == alone.updates
    assert repr(packed.initial_loss) == repr(alone.initial_loss)
    assert records(packed) == records(alone)
    # equal to the bit, but a NaN's sign (a diverged run's weights), which no sum depends on
    assert np.array_equal(net_packed.flat, net_alone.flat, equal_nan=True)
    if alone.checkpoint is None:
        assert packed.checkpoint is None
    else:  # the same bytes but for the epochs' seconds
        assert without_seconds(packed.checkpoint) == without_seconds(alone.checkpoint)


def without_seconds(checkpoint) -> bytes:
    history = tuple((*record[:-1], 0.0) for record in checkpoint.history)
    return dataclasses.replace(checkpoint, history=history).to_bytes()


def train_both(make_net, runs_settings, X, y, val, **many):
    """Each run alone with ``train``, then all of them with ``train_many``."""
    alone_nets = [make_net(k) for k in range(len(runs_settings))]
    alone = [
        train(net, X, y, val=val, **settings)
        for net, settings in zip(alone_nets, runs_settings, strict=True)
    ]
    packed_nets = [make_net(k) for k in range(len(runs_settings))]
    runs = list(zip(packed_nets, runs_settings, strict=True))
    plan = pack_plan(runs, X, y, val=val, **many)
    packed = train_many(runs, X, y, val=val, **many)
    return alone, alone_nets, packed, packed_nets, plan


@pytest.mark.parametrize("gd", GD)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize(("loss", "output"), LOSS_OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_a_packed_run_is_the_run_alone_to_the_bit(activation, loss, output, optimizer, gd):
    X, y, n_outputs = data(loss, output)
    val = data(loss, output, n=17, seed=1)[:2]
    settings = [
        {
            "loss": loss,
            "optimizer": optimizer,
            "gd": gd,
            "batch_size": 8,
            "epochs": 5,
            "seed": 7 + k % 2,  # two shuffles among the runs
            **schedule,
        }
        for k, schedule in enumerate(SCHEDULED)
    ]

    def make_net(k):  # each run its own initial weights; every third another activation
        hidden = ACTIVATIONS[k % len(ACTIVATIONS)] if k % 3 == 0 else activation
        return MLP([4, 6, 5, n_outputs], activation=hidden, output=output, seed=k)

    alone, alone_nets, packed, packed_nets, plan = train_both(make_net, settings, X, y, val)
    assert [sorted(pack) for pack in plan] == [list(range(len(settings)))]  # trained together
    for run in zip(alone, packed, alone_nets, packed_nets, strict=True):
        assert_same_run(*run)
    assert len(packed[-1].history) == 2


@pytest.mark.parametrize("gd", GD)
def test_l2_penalty_early_stopping_and_convergence_in_a_pack(gd):
    X, y, _ = data("cross_entropy", None)
    val = data("cross_entropy", None, n=17, seed=1)[:2]
    common = {"gd": gd, "batch_size": 5, "epochs": 12, "seed": 2, "optimizer": "adam"}
    settings = [
        {**common, "learning_rate": 0.01, "alpha": 0.1},
        {**common, "learning_rate": 0.05, "alpha": 0.01, "patience": 2, "restore_best": True},
        {**common, "learning_rate": 0.02, "alpha": 0.3, "tol": 1e-2, "tol_patience": 2},
        {**common, "learning_rate": 0.5, "alpha": 0.001, "patience": 1, "min_delta": 0.01},
    ]
    alone, alone_nets, packed, packed_nets, plan = train_both(
        lambda k: MLP([4, 8, 3], activation="tanh", seed=k), settings, X, y, val
    )
    assert plan == [[0, 1, 2, 3]]
    for run in zip(alone, packed, alone_nets, packed_nets, strict=True):
        assert_same_run(*run)
    assert {r.status for r in alone} - {"completed"}, "no run stopped early"


def test_runs_pause_in_a_pack_and_resume_in_one_as_they_would_alone():
    X, y, _ = data("cross_entropy", None)
    val = data("cross_entropy", None, n=17, seed=1)[:2]
    rates = (0.01, 0.03, 0.1, 0.3)
    first = [
        {"learning_rate": r, "epochs": 9, "until_epoch": 4, "seed": 3, "optimizer": "momentum"}
        for r in rates
    ]
    alone, alone_nets, packed, packed_nets, plan = train_both(
        lambda k: MLP([4, 8, 3], seed=k), first, X, y, val
    )
    assert plan == [[0, 1, 2, 3]]
    for run in zip(alone, packed, alone_nets, packed_nets, strict=True):
        assert_same_run(*run)
    assert {r.status for r in packed} == {"paused"}
    rest = [
        {**settings, "until_epoch": None, "resume": result.checkpoint}
        for settings, result in zip(first, packed, strict=True)
    ]
    resumed_nets = [MLP([4, 8, 3], seed=99) for _ in rates]  # weights come from the checkpoint
    runs = list(zip(resumed_nets, rest, strict=True))
    assert pack_plan(runs, X, y, val=val) == [[0, 1, 2, 3]]
    resumed = train_many(runs, X, y, val=val)
    whole_nets = [MLP([4, 8, 3], seed=k) for k in range(len(rates))]
    whole = [
        train(net, X, y, val=val, **{**settings, "until_epoch": None})
        for net, settings in zip(whole_nets, first, strict=True)
    ]
    for run in zip(whole, resumed, whole_nets, resumed_nets, strict=True):
        assert_same_run(*run)


def test_float32_runs_in_a_pack_agree_to_1e_4():
    X, y, _ = data("cross_entropy", None)
    settings = [{"learning_rate": r, "epochs": 6, "seed": 1} for r in (0.01, 0.05, 0.2)]
    alone, _, packed, _, plan = train_both(
        lambda k: MLP([4, 8, 3], seed=k, dtype="float32"), settings, X, y, None
    )
    assert plan == [[0, 1, 2]]
    for a, p in zip(alone, packed, strict=True):
        assert (p.status, p.updates) == (a.status, a.updates)
        values = [[dataclasses.astuple(r)[1:-1] for r in run.history] for run in (p, a)]
        np.testing.assert_allclose(*np.array(values, dtype=float), rtol=1e-4)


def test_what_cannot_share_arithmetic_is_not_packed():
    X, y, _ = data("cross_entropy", None, n=600)
    base = {"epochs": 1, "seed": 0}
    runs = [
        (MLP([4, 8, 3], seed=0), {**base, "learning_rate": 0.1}),
        (MLP([4, 8, 3], seed=1), {**base, "learning_rate": 0.2}),  # these four pack
        (MLP([4, 8, 3], seed=0), {**base, "seed": 1}),  # another shuffle
        (MLP([4, 8, 3], activation="tanh"), base),  # another activation
        (MLP([4, 9, 3]), base),  # another shape
        (MLP([4, 8, 3]), {**base, "optimizer": "adam"}),  # another rule
        (MLP([4, 8, 3]), {**base, "batch_size": 16}),  # other batches
        (MLP([4, 8, 3]), {**base, "alpha": 0.1}),  # an L2 penalty
        (MLP([4, 8, 3]), {**base, "batch_size": MAX_PACKED_BATCH + 1}),  # GEMM-bound: alone
        (MLP([4, 8, 3]), {**base, "batch_size": MAX_PACKED_BATCH + 1}),
        (MLP([4, 8, 3], output="sigmoid"), {**base, "loss": "mse"}),  # another loss
    ]
    plan = pack_plan(runs, X, y)
    assert sorted(sorted(pack) for pack in plan) == [[0, 1, 2, 3], *([k] for k in range(4, 11))]
    # side by side by activation, then seed: each stretch one call, one gather
    assert plan[0] == [0, 1, 2, 3]
    assert pack_plan(runs[:2], X, y, max_pack=1) == [[0], [1]]


def test_large_groups_split_into_packs_of_sizes_that_differ_by_one():
    X, y, _ = data("cross_entropy", None)
    runs = [(MLP([4, 8, 3]), {"learning_rate": 0.01 * (k + 1), "epochs": 1}) for k in range(11)]
    plan = pack_plan(runs, X, y, max_pack=4)
    assert sorted(len(pack) for pack in plan) == [3, 4, 4]
    assert sorted(itertools.chain(*plan)) == list(range(11))


def test_an_error_in_one_runs_on_epoch_ends_that_run_only():
    X, y, _ = data("cross_entropy", None)
    seen = []

    def breaks_at_2(record):
        if record.epoch == 2:
            raise RuntimeError("the store went away")

    runs = [
        (MLP([4, 8, 3], seed=k), {"learning_rate": r, "epochs": 4, "on_epoch": hook})
        for k, (r, hook) in enumerate([(0.01, seen.append), (0.1, breaks_at_2), (0.2, None)])
    ]
    results = train_many(runs, X, y, return_exceptions=True)
    assert isinstance(results[1], RuntimeError)
    assert [r.epoch for r in seen] == [1, 2, 3, 4]
    alone = train(MLP([4, 8, 3], seed=2), X, y, learning_rate=0.2, epochs=4)
    assert records(results[2]) == records(alone)
    with pytest.raises(RuntimeError, match="the store went away"):
        train_many(runs, X, y)


def test_bad_settings_name_the_run_and_the_value():
    X, y, _ = data("cross_entropy", None)
    good = (MLP([4, 8, 3]), {"epochs": 1})
    with pytest.raises(InputError, match="learning_rate"):
        train_many([good, (MLP([4, 8, 3]), {"learning_rate": -1})], X, y)
    with pytest.raises(InputError, match="learning_rat"):
        train_many([(MLP([4, 8, 3]), {"learning_rat": 0.1})], X, y)
    results = train_many([good, (MLP([4, 8, 3]), {"epochs": 0})], X, y, return_exceptions=True)
    assert results[0].status == "completed" and isinstance(results[1], InputError)
    with pytest.raises(InputError, match="max_pack"):
        train_many([good], X, y, max_pack=0)
