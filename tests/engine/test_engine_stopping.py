"""How a run ends (diverged, early_stopped, converged, completed) and what it reports per epoch.

Stopping tests compare a run that stops against the same run with the rule switched off: training
is deterministic, so the stopping epoch can be read off the full history.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from nnlab.data import sine
from nnlab.engine import MLP, STATUSES, EpochRecord, train

MEASURED = [f.name for f in dataclasses.fields(EpochRecord) if f.name != "seconds"]


def measured(history):
    return [tuple(getattr(record, name) for name in MEASURED) for record in history]


def parameters(net: MLP) -> np.ndarray:
    return np.concatenate([p.ravel() for p in net.params])


def test_statuses():
    assert set(STATUSES) == {"completed", "converged", "early_stopped", "diverged"}


# --- divergence -----------------------------------------------------------------------------------


@pytest.mark.parametrize("divergence_factor", [100.0, None])
@pytest.mark.parametrize("gd", ["batch", "minibatch", "stochastic"])
def test_huge_learning_rate_diverges(regression, gd, divergence_factor):
    X, y = regression
    net = MLP([1, 16, 1], activation="tanh", seed=0)
    result = train(
        net,
        X,
        y,
        loss="mse",
        gd=gd,
        batch_size=8,
        learning_rate=1e6,
        epochs=50,
        divergence_factor=divergence_factor,
    )
    assert result.status == "diverged"
    assert result.epochs_run < 50
    assert "train_loss" in result.reason
    last = result.final.train_loss
    if divergence_factor is None:  # only a non-finite loss counts
        assert not math.isfinite(last)
    else:
        assert not last <= divergence_factor * result.initial_loss


@pytest.fixture
def growing_run(regression):
    """A linear model with η above 2/λ_max: the loss grows ~3x per epoch but stays finite."""
    X, y = regression

    def run(divergence_factor):
        net = MLP([1, 1], output="identity", seed=0)
        return train(
            net,
            X,
            y,
            gd="batch",
            learning_rate=0.4,
            epochs=20,
            divergence_factor=divergence_factor,
        )

    return run


@pytest.mark.parametrize("factor", [3.0, 10.0, 100.0, 1e4])
def test_divergence_factor_stops_at_the_first_epoch_above_it(growing_run, factor):
    reference = growing_run(None)
    assert reference.status == "completed"
    losses = [record.train_loss for record in reference.history]
    assert all(map(math.isfinite, losses))
    # batch GD's first record is the loss before its update: the initial weights' loss
    assert losses[0] == reference.initial_loss
    expected = next(e for e, loss in enumerate(losses, 1) if loss > factor * losses[0])
    assert 1 < expected < 20

    result = growing_run(factor)
    assert result.status == "diverged"
    assert result.epochs_run == expected
    assert measured(result.history) == measured(reference.history[:expected])


def test_loss_below_the_factor_is_not_divergence(growing_run):
    reference = growing_run(None)
    growth = max(r.train_loss for r in reference.history) / reference.history[0].train_loss
    result = growing_run(10 * growth)
    assert result.status == "completed"
    assert result.epochs_run == 20


# --- early stopping -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def overfitting():
    """16 noisy training points and a big network: the validation loss bottoms out, then rises."""
    train_data = sine(n_samples=16, noise=0.3, seed=1)
    val_data = sine(n_samples=100, noise=0.0, seed=2)

    def run(epochs=300, **options):
        net = MLP([1, 64, 64, 1], activation="tanh", seed=0)
        result = train(
            net,
            train_data.X,
            train_data.y,
            gd="batch",
            optimizer="adam",
            learning_rate=0.02,
            epochs=epochs,
            val=(val_data.X, val_data.y),
            **options,
        )
        return result, net

    reference, _ = run()
    return run, reference, val_data


def stop_epoch(val_losses, patience, min_delta):
    """The early-stopping rule as documented: no improvement by > min_delta for patience epochs."""
    best, stale = math.inf, 0
    for epoch, loss in enumerate(val_losses, 1):
        if loss < best - min_delta:
            best, stale = loss, 0
        else:
            stale += 1
        if stale >= patience:
            return epoch
    return None


@pytest.mark.parametrize(("patience", "min_delta"), [(1, 0.0), (10, 0.0), (40, 0.0), (5, 1e-3)])
def test_patience_stops_when_validation_loss_stops_improving(overfitting, patience, min_delta):
    run, reference, _ = overfitting
    assert reference.status == "completed"
    val_losses = [record.val_loss for record in reference.history]
    expected = stop_epoch(val_losses, patience, min_delta)
    assert expected is not None and expected < 300

    result, _ = run(patience=patience, min_delta=min_delta)
    assert result.status == "early_stopped"
    assert result.epochs_run == expected
    assert measured(result.history) == measured(reference.history[:expected])
    if min_delta == 0:
        # the stop comes exactly `patience` epochs after the best validation loss so far
        best = int(np.argmin(val_losses[:expected])) + 1
        assert expected == best + patience


@pytest.mark.parametrize("restore_best", [True, False])
def test_restore_best_puts_back_the_best_epochs_weights(overfitting, restore_best):
    run, _, val_data = overfitting
    result, net = run(patience=20, restore_best=restore_best)
    assert result.status == "early_stopped"
    val_losses = [record.val_loss for record in result.history]
    best = int(np.argmin(val_losses)) + 1
    assert best == result.epochs_run - 20

    # the same run cut off after that epoch has the weights to expect
    kept = best if restore_best else result.epochs_run
    _, cut_off = run(epochs=kept)
    np.testing.assert_array_equal(parameters(net), parameters(cut_off))
    val_loss, _ = net.loss_and_grads(val_data.X, val_data.y, "mse")
    assert val_loss == pytest.approx(val_losses[kept - 1], rel=1e-12)


# --- convergence ----------------------------------------------------------------------------------


# a smooth descent (batch GD: the loss falls every epoch) and a noisy one (SGD: it rebounds)
DESCENTS = {
    "smooth": {"gd": "batch", "learning_rate": 0.05, "epochs": 400},
    "noisy": {"gd": "stochastic", "learning_rate": 0.05, "epochs": 200},
}


def descend(kind, **options):
    data = sine(n_samples=40, seed=0)
    net = MLP([1, 16, 1], activation="tanh", seed=0)
    return train(net, data.X, data.y, **DESCENTS[kind], **options)


@pytest.fixture(scope="module")
def descents():
    return {kind: descend(kind) for kind in DESCENTS}


def converged_at(losses, tol, tol_patience):
    """tol_patience consecutive epochs that fail to beat the best loss so far by more than tol.

    Against the best so far, as scikit-learn does: a rebound that falls back part of the way
    is not an improvement.
    """
    best, stale = math.inf, 0
    for epoch, loss in enumerate(losses, 1):
        stale = stale + 1 if loss > best - tol else 0
        best = min(best, loss)
        if stale >= tol_patience:
            return epoch
    return None


@pytest.mark.parametrize(
    ("kind", "tol", "tol_patience"),
    [
        ("smooth", 1e-3, 1),
        ("smooth", 1e-4, 1),
        ("smooth", 1e-4, 3),
        ("smooth", 1e-5, 5),
        ("noisy", 1e-4, 3),
        ("noisy", 0.0, 3),
    ],
)
def test_tol_stops_when_training_loss_stops_decreasing(descents, kind, tol, tol_patience):
    reference = descents[kind]
    assert reference.status == "completed"
    losses = [record.train_loss for record in reference.history]
    expected = converged_at(losses, tol, tol_patience)
    assert expected is not None and 1 < expected < DESCENTS[kind]["epochs"]

    result = descend(kind, tol=tol, tol_patience=tol_patience)
    assert result.status == "converged"
    assert result.epochs_run == expected
    assert measured(result.history) == measured(reference.history[:expected])


def test_noisy_descent_rebounds(descents):
    # what makes "noisy" a test of the best-so-far rule: some epochs lose ground
    losses = [record.train_loss for record in descents["noisy"].history]
    assert any(b > a for a, b in itertools.pairwise(losses[:10]))


def test_zero_tol_with_a_falling_loss_runs_every_epoch(descents):
    losses = [record.train_loss for record in descents["smooth"].history]
    assert all(b < a for a, b in itertools.pairwise(losses))
    result = descend("smooth", tol=0.0)
    assert result.status == "completed"
    assert result.epochs_run == 400


# --- the per-epoch record -------------------------------------------------------------------------


def test_on_epoch_gets_each_record_as_the_epoch_ends(classification):
    X, y = classification
    X_train, y_train, X_val, y_val = X[:20], y[:20], X[20:], y[20:]
    seen = []

    def on_epoch(record):
        # the weights at this moment are those at the end of the record's epoch
        loss, _ = net.loss_and_grads(X_val, y_val, "cross_entropy")
        accuracy = np.mean(net.forward(X_val).argmax(axis=1) == y_val)
        seen.append((record, parameters(net), loss, accuracy))

    net = MLP([2, 8, 3], activation="tanh", seed=0)
    options = {"gd": "minibatch", "batch_size": 5, "learning_rate": 0.1, "optimizer": "momentum"}
    val = (X_val, y_val)
    result = train(net, X_train, y_train, epochs=4, val=val, on_epoch=on_epoch, **options)

    assert [record for record, *_ in seen] == result.history
    assert [record.epoch for record in result.history] == [1, 2, 3, 4]
    for epoch, (record, params, loss, accuracy) in enumerate(seen, 1):
        replay = MLP([2, 8, 3], activation="tanh", seed=0)
        train(replay, X_train, y_train, epochs=epoch, **options)
        np.testing.assert_array_equal(params, parameters(replay))
        assert record.val_loss == pytest.approx(loss, rel=1e-12)
        assert record.val_accuracy == accuracy
        assert 0.0 <= record.train_accuracy <= 1.0
        assert record.train_accuracy * 20 == pytest.approx(round(record.train_accuracy * 20))
        assert math.isfinite(record.train_loss) and record.train_loss > 0
        assert math.isfinite(record.grad_norm) and record.grad_norm > 0
        assert record.learning_rate == 0.1
        assert record.seconds >= 0.0


def test_regression_records_have_no_accuracy(regression):
    X, y = regression
    records = []
    result = train(
        MLP([1, 4, 1], activation="tanh"),
        X[:30],
        y[:30],
        gd="batch",
        epochs=3,
        val=(X[30:], y[30:]),
        on_epoch=records.append,
    )
    assert records == result.history and len(records) == 3
    for record in records:
        assert record.train_accuracy is None and record.val_accuracy is None
        assert isinstance(record.train_loss, float) and isinstance(record.val_loss, float)


def test_without_validation_data_val_fields_are_none(classification):
    X, y = classification
    result = train(MLP([2, 4, 3]), X, y, gd="batch", epochs=2)
    for record in result.history:
        assert record.val_loss is None and record.val_accuracy is None
        assert record.train_accuracy is not None


def test_on_epoch_sees_the_epoch_that_stops_the_run(regression):
    X, y = regression
    records = []
    result = train(
        MLP([1, 16, 1], activation="tanh"),
        X,
        y,
        gd="batch",
        learning_rate=1e6,
        epochs=50,
        on_epoch=records.append,
    )
    assert result.status == "diverged"
    assert records == result.history


def test_a_run_that_blows_up_in_its_first_epoch_is_diverged_at_once():
    """The divergence reference is the initial weights' loss, not the first epoch's."""
    from nnlab.data import spirals

    data = spirals(n_samples=120, classes=3, seed=0)
    net = MLP([2, 16, 3], activation="relu", seed=0)
    result = train(net, data.X, data.y, gd="stochastic", learning_rate=50.0, epochs=10)
    assert result.status == "diverged"
    assert result.epochs_run == 1
    assert math.isfinite(result.initial_loss) and result.initial_loss > 0
