"""Pausing and resuming a run (issue 13): ``train(..., until_epoch=k)`` then
``train(..., resume=checkpoint)`` into a fresh network must give the run that never paused.

Training is deterministic, so "the same run" is checked exactly: every record's fields but
``seconds``, the final weights, the status, its reason and the update count are equal, not close
(bit-identical is stronger than the issue's 1e-12). Each checkpoint goes through its bytes, and
the network it resumes into has other initial weights, so nothing can leak from the paused one.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnlab.checks import InputError
from nnlab.data import spirals
from nnlab.engine import GD_VARIANTS, MLP, OPTIMIZERS, PAUSED, Checkpoint, EpochRecord, train

EPOCHS = 8
MEASURED = [f.name for f in dataclasses.fields(EpochRecord) if f.name != "seconds"]
SCHEDULES = {
    "constant": {"learning_rate_schedule": "constant", "tol": 1e-3, "tol_patience": 4},
    "invscaling": {"learning_rate_schedule": "invscaling", "power_t": 0.25},
    "step": {"learning_rate_schedule": "step", "gamma": 0.5, "step_size": 3},
    "cosine": {"learning_rate_schedule": "cosine", "min_learning_rate": 0.001},
    # a large tol and n_iter_no_change=1 make η fall within the run, across the pauses
    "adaptive": {"learning_rate_schedule": "adaptive", "tol": 0.05, "n_iter_no_change": 1},
}
REGULARISATION = {
    "none": {},
    "alpha": {"alpha": 1e-2},
    "weight_decay": {"weight_decay": 1e-2, "alpha": 1e-3},
}


@pytest.fixture(scope="module")
def data():
    """24 training and 12 validation points of 3 spirals."""
    spiral = spirals(n_samples=36, classes=3, seed=0)
    return spiral.X[:24], spiral.y[:24], (spiral.X[24:], spiral.y[24:])


def make_net(seed: int = 0, dtype: str = "float64") -> MLP:
    return MLP([2, 6, 3], activation="tanh", seed=seed, dtype=dtype)


def measured(history) -> list[tuple]:
    return [tuple(getattr(record, name) for name in MEASURED) for record in history]


def through_bytes(checkpoint: Checkpoint) -> Checkpoint:
    return Checkpoint.from_bytes(checkpoint.to_bytes())


def in_pieces(data, pauses, dtype="float64", **options):
    """Train to each of ``pauses`` in turn, each piece into a fresh network from the previous
    piece's checkpoint, then to the end; the last network, the result and every on_epoch record."""
    X, y, val = data
    seen: list[EpochRecord] = []
    net, checkpoint = make_net(dtype=dtype), None
    for k in [*pauses, None]:
        result = train(
            net, X, y, val=val, until_epoch=k, resume=checkpoint, on_epoch=seen.append, **options
        )
        if result.status != PAUSED:
            return net, result, seen
        assert result.checkpoint.epoch == k == result.epochs_run
        checkpoint = through_bytes(result.checkpoint)
        net = make_net(seed=1000 + k, dtype=dtype)  # other initial weights: all must come back
    raise AssertionError("the last piece trains to the end and cannot pause")


def straight(data, dtype="float64", **options):
    X, y, val = data
    net = make_net(dtype=dtype)
    return net, train(net, X, y, val=val, **options)


def assert_same_run(expected, actual) -> None:
    (net_a, result_a), (net_b, result_b) = expected, actual
    assert measured(result_b.history) == measured(result_a.history)
    assert np.array_equal(net_b.flat, net_a.flat)
    assert net_b.flat.dtype == net_a.flat.dtype
    assert result_b.status == result_a.status
    assert result_b.reason == result_a.reason
    assert result_b.updates == result_a.updates
    assert result_b.initial_loss == result_a.initial_loss
    assert result_b.checkpoint is None


def options_for(optimizer, gd, schedule, regularisation="none", **extra) -> dict:
    return {
        "optimizer": optimizer,
        "gd": gd,
        "batch_size": 5,  # 24 samples: four batches of 5 and a remainder of 4
        "learning_rate": 0.05 if optimizer == "adam" else 0.2,
        "epochs": EPOCHS,
        "seed": 7,
        "patience": 3,
        **SCHEDULES[schedule],
        **REGULARISATION[regularisation],
        **extra,
    }


# --- paused and resumed equals straight -----------------------------------------------------------


@pytest.mark.parametrize("regularisation", REGULARISATION)
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("gd", GD_VARIANTS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_resumed_run_equals_straight_run(data, optimizer, gd, schedule, regularisation):
    options = options_for(optimizer, gd, schedule, regularisation)
    expected = straight(data, **options)
    for pauses in ([1], [EPOCHS // 2], [EPOCHS - 1], [1, 2, 5, EPOCHS - 1]):
        net, result, seen = in_pieces(data, pauses, **options)
        assert_same_run(expected, (net, result))
        assert measured(seen) == measured(expected[1].history)  # each epoch reported once


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_float32_run_resumes_exactly_and_stays_float32(data, optimizer):
    options = options_for(optimizer, "minibatch", "cosine", "weight_decay")
    expected = straight(data, dtype="float32", **options)
    X, y, val = data
    paused = train(make_net(dtype="float32"), X, y, val=val, until_epoch=3, **options)
    checkpoint = through_bytes(paused.checkpoint)
    arrays = [checkpoint.params, *(a for a in checkpoint.optimizer.values() if a.ndim)]
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}
    assert_same_run(expected, in_pieces(data, [3], dtype="float32", **options)[:2])


@settings(max_examples=40, deadline=None)
@given(
    optimizer=st.sampled_from(sorted(OPTIMIZERS)),
    gd=st.sampled_from(GD_VARIANTS),
    schedule=st.sampled_from(sorted(SCHEDULES)),
    regularisation=st.sampled_from(sorted(REGULARISATION)),
    pauses=st.sets(st.integers(1, EPOCHS - 1), min_size=1, max_size=EPOCHS - 1).map(sorted),
)
def test_any_chain_of_pauses_equals_straight_run(
    data, optimizer, gd, schedule, regularisation, pauses
):
    options = options_for(optimizer, gd, schedule, regularisation)
    assert_same_run(straight(data, **options), in_pieces(data, pauses, **options)[:2])


def test_early_stopping_state_and_best_weights_survive_a_pause(data):
    # min_delta this large: only epoch 1 improves, so the run stops at epoch 1 + patience and
    # restore_best puts back epoch 1's weights, which a pause at epoch 3 must carry
    options = options_for("momentum", "minibatch", "constant", patience=5, min_delta=1e9)
    options.update(restore_best=True, tol=None)
    expected = straight(data, **options)
    assert expected[1].status == "early_stopped" and expected[1].epochs_run == 6
    paused = train(make_net(), *data[:2], val=data[2], until_epoch=3, **options)
    assert paused.checkpoint.stopping["early_stopping"]["stale"] == 2  # two stale epochs so far
    assert paused.checkpoint.best_params is not None
    assert_same_run(expected, in_pieces(data, [3], **options)[:2])


def test_adaptive_rate_falls_across_the_pauses(data):
    options = options_for("sgd", "batch", "adaptive", tol=1e9, patience=None)
    expected = straight(data, **options)
    rates = [record.learning_rate for record in expected[1].history]
    assert len(set(rates)) >= 3  # η was divided at least twice
    for k in range(1, EPOCHS):
        assert_same_run(expected, in_pieces(data, [k], **options)[:2])


def test_tol_convergence_counts_across_a_pause(data):
    # tol this large: every epoch after the first is stale, so tol_patience=5 converges at 6
    options = options_for("adam", "stochastic", "constant", tol=1e9, tol_patience=5)
    options.update(patience=None)
    expected = straight(data, **options)
    assert expected[1].status == "converged" and expected[1].epochs_run == 6
    for pauses in ([2], [5], [1, 3, 4]):
        assert_same_run(expected, in_pieces(data, pauses, **options)[:2])


# --- a run that stops before its pause ------------------------------------------------------------

STOPPING = {
    "diverged": {"learning_rate": 1e6},
    "converged": {"tol": 1e9, "tol_patience": 2, "patience": None},
    "early_stopped": {"patience": 2, "min_delta": 1e9},
}


@pytest.mark.parametrize("status", STOPPING)
def test_a_run_that_stops_before_the_pause_returns_its_final_status(data, status):
    options = options_for("nesterov", "minibatch", "constant", **STOPPING[status])
    expected = straight(data, **options)
    assert expected[1].status == status and expected[1].epochs_run < EPOCHS - 1
    stop = expected[1].epochs_run
    for k in (stop, stop + 1, EPOCHS - 1):  # at its last epoch too: the stop wins
        net = make_net()
        result = train(net, *data[:2], val=data[2], until_epoch=k, **options)
        assert_same_run(expected, (net, result))


def test_a_resumed_run_that_stops_before_the_next_pause_returns_its_final_status(data):
    options = options_for("sgd", "batch", "constant", tol=1e9, tol_patience=5, patience=None)
    net, result, _ = in_pieces(data, [2, EPOCHS - 1], **options)
    assert result.status == "converged" and result.epochs_run == 6
    assert_same_run(straight(data, **options), (net, result))


def test_until_the_last_epoch_is_the_whole_run(data):
    options = options_for("adam", "minibatch", "cosine")
    net = make_net()
    result = train(net, *data[:2], val=data[2], until_epoch=EPOCHS, **options)
    assert result.status != PAUSED and result.checkpoint is None
    assert_same_run(straight(data, **options), (net, result))


def test_paused_result(data):
    result = train(make_net(), *data[:2], until_epoch=3, batch_size=5, epochs=EPOCHS, seed=1)
    assert result.status == PAUSED == "paused"
    assert result.reason == f"paused after epoch 3 of {EPOCHS}"
    assert result.epochs_run == 3 and result.updates == 3 * 5
    checkpoint = result.checkpoint
    assert (checkpoint.epoch, checkpoint.updates) == (3, 15)
    assert repr(checkpoint) == "Checkpoint(epoch=3 of 8, optimizer='sgd', params=39 float64)"
    assert sorted(checkpoint.order.tolist()) == list(range(24))
    assert checkpoint.order.dtype == np.uint8  # the smallest type for 0..23


# --- settings that differ -------------------------------------------------------------------------

CHANGES = {
    "learning_rate": {"learning_rate": 0.3},
    "gd": {"gd": "batch"},
    "batch_size": {"batch_size": 6},
    "epochs": {"epochs": EPOCHS + 1},
    "optimizer": {"optimizer": "momentum"},
    "momentum": {"momentum": 0.5},
    "alpha": {"alpha": 0.5},
    "weight_decay": {"weight_decay": 0.5},
    "learning_rate_schedule": {"learning_rate_schedule": "cosine"},
    "patience": {"patience": 4},
    "seed": {"seed": 8},
    "tol": {"tol": 1e-4},
}


@pytest.fixture(scope="module")
def paused(data):
    options = options_for("sgd", "minibatch", "step")
    result = train(make_net(), *data[:2], val=data[2], until_epoch=3, **options)
    return options, through_bytes(result.checkpoint)


@pytest.mark.parametrize("name", CHANGES)
def test_resuming_with_other_settings_is_an_error(data, paused, name):
    options, checkpoint = paused
    X, y, val = data
    with pytest.raises(InputError, match=rf"other settings: (.+; )?{name}=.+? in the checkpoint, "):
        train(make_net(), X, y, val=val, resume=checkpoint, **{**options, **CHANGES[name]})


@pytest.mark.parametrize(
    "name, net",
    [
        ("layer_sizes", MLP([2, 7, 3], activation="tanh")),
        ("activation", MLP([2, 6, 3], activation="relu")),
        ("dtype", MLP([2, 6, 3], activation="tanh", dtype="float32")),
    ],
)
def test_resuming_into_another_network_is_an_error(data, paused, name, net):
    options, checkpoint = paused
    X, y, val = data
    with pytest.raises(InputError, match=rf"{name}=.+? in the checkpoint, "):
        train(net, X, y, val=val, resume=checkpoint, **options)


def test_resuming_on_other_data_is_an_error(data, paused):
    options, checkpoint = paused
    X, y, val = data
    with pytest.raises(InputError, match=r"train_data_crc32=\d+ in the checkpoint, \d+ here"):
        train(make_net(), X + 1.0, y, val=val, resume=checkpoint, **options)
    with pytest.raises(InputError, match="train_data_crc32"):
        train(make_net(), X, (y + 1) % 3, val=val, resume=checkpoint, **options)
    with pytest.raises(InputError, match="validation_data_crc32"):
        train(make_net(), X, y, val=(val[0][:6], val[1][:6]), resume=checkpoint, **options)


@pytest.mark.parametrize("until_epoch", [0, -1, EPOCHS + 1, True, 2.0])
def test_until_epoch_out_of_range_is_an_error(data, until_epoch):
    with pytest.raises(InputError, match="until_epoch"):
        train(make_net(), *data[:2], batch_size=5, epochs=EPOCHS, until_epoch=until_epoch)


@pytest.mark.parametrize("until_epoch", [2, 3])
def test_resuming_to_an_epoch_already_trained_is_an_error(data, paused, until_epoch):
    _, checkpoint = paused
    with pytest.raises(InputError, match=r"until_epoch must be an integer >= 4"):
        train(
            make_net(),
            *data[:2],
            val=data[2],
            resume=checkpoint,
            until_epoch=until_epoch,
            batch_size=5,
        )


# --- bytes ----------------------------------------------------------------------------------------


def test_bytes_round_trip_exactly(paused):
    _, checkpoint = paused
    data = checkpoint.to_bytes()
    again = Checkpoint.from_bytes(data)
    assert again.to_bytes() == data
    assert again.settings == checkpoint.settings and again.history == checkpoint.history
    assert again.shuffle_state == checkpoint.shuffle_state


def test_the_same_run_gives_the_same_bytes(data):
    def checkpoint_bytes() -> bytes:
        options = options_for("adam", "minibatch", "adaptive", restore_best=True)
        result = train(make_net(), *data[:2], val=data[2], until_epoch=4, **options)
        # wall-clock seconds are the one thing that may differ
        history = tuple((*row[:-1], 0.0) for row in result.checkpoint.history)
        return dataclasses.replace(result.checkpoint, history=history).to_bytes()

    assert checkpoint_bytes() == checkpoint_bytes()


def test_bytes_are_an_npz_without_pickle(paused):
    _, checkpoint = paused
    blob = checkpoint.to_bytes()
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        assert np.array_equal(npz["params"], checkpoint.params)
        assert np.array_equal(npz["order"], checkpoint.order)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    # compact: little beyond the arrays themselves
    assert len(blob) < checkpoint.params.nbytes + checkpoint.order.nbytes + 4096


@pytest.mark.parametrize("blob", [b"", b"not a zip", b"PK\x05\x06" + bytes(18)])
def test_bytes_that_are_no_checkpoint_are_an_error(blob):
    with pytest.raises(InputError, match="not an nnlab training checkpoint"):
        Checkpoint.from_bytes(blob)


def test_a_checkpoint_of_another_version_is_an_error(paused):
    _, checkpoint = paused
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(checkpoint.to_bytes())) as old,
        zipfile.ZipFile(buffer, "w") as new,
    ):
        for name in old.namelist():
            text = old.read(name)
            if name == "checkpoint.json":
                text = text.replace(b'"version":1', b'"version":99')
            new.writestr(name, text)
    with pytest.raises(InputError, match="version 99"):
        Checkpoint.from_bytes(buffer.getvalue())


def test_optimizer_state_is_in_the_checkpoint(data):
    expected = {"sgd": set(), "momentum": {"velocity"}, "nesterov": {"velocity"}}
    expected["adam"] = {"first", "second", "t"}
    for optimizer, decay in itertools.product(OPTIMIZERS, (0.0, 0.1)):
        result = train(
            make_net(),
            *data[:2],
            optimizer=optimizer,
            weight_decay=decay,
            batch_size=5,
            until_epoch=2,
        )
        assert set(result.checkpoint.optimizer) == expected[optimizer]
        if optimizer == "adam":
            assert int(result.checkpoint.optimizer["t"]) == result.updates == 10
