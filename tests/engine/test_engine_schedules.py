"""Learning-rate schedules (issue 12): the η of every epoch, worked out by hand from the formulas in
nnlab/engine/schedules.py, and the updates that really use it.

Batch GD makes one update per epoch, so epoch e is one step θ ← θ − η_e g; each record's
``learning_rate`` must be that η_e.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

from nnlab.engine import MLP, SCHEDULES, train

N = 12  # training samples: invscaling counts them


@pytest.fixture
def problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((N, 3)), rng.integers(0, 2, N)


def make_net() -> MLP:
    return MLP([3, 5, 2], activation="tanh", seed=2)


def rates(X, y, epochs, **options) -> list[float]:
    result = train(make_net(), X, y, gd="batch", learning_rate=0.1, epochs=epochs, **options)
    assert result.epochs_run == epochs
    return [record.learning_rate for record in result.history]


def parameters(net: MLP) -> np.ndarray:
    return np.concatenate([p.ravel() for p in net.params])


def test_every_schedule_is_covered():
    assert set(SCHEDULES) == {
        "constant",
        "invscaling",
        "step",
        "exponential",
        "cosine",
        "adaptive",
    }


def test_constant_is_the_default(problem):
    assert rates(*problem, 4) == [0.1] * 4
    assert rates(*problem, 4, learning_rate_schedule="constant") == [0.1] * 4


# --- the η of each epoch, by hand -----------------------------------------------------------------

R2 = math.sqrt(2.0) / 2.0  # cos(π/4)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # η₀ / (t + 1)^power_t with t = (e − 1) N samples seen: 1, 13, 25, 37 for N = 12
        ({"learning_rate_schedule": "invscaling"}, [0.1, 0.1 / 13**0.5, 0.02, 0.1 / 37**0.5]),
        (
            {"learning_rate_schedule": "invscaling", "power_t": 1.0},
            [0.1, 0.1 / 13, 0.1 / 25, 0.1 / 37],
        ),
        ({"learning_rate_schedule": "invscaling", "power_t": 0.0}, [0.1] * 4),
        # × γ every step_size epochs
        (
            {"learning_rate_schedule": "step", "gamma": 0.5, "step_size": 2},
            [0.1, 0.1, 0.05, 0.05, 0.025],
        ),
        ({"learning_rate_schedule": "step", "step_size": 3}, [0.1, 0.1, 0.1, 0.01, 0.01]),
        ({"learning_rate_schedule": "step", "gamma": 1.0, "step_size": 1}, [0.1] * 5),
        # × γ every epoch
        (
            {"learning_rate_schedule": "exponential", "gamma": 0.5},
            [0.1, 0.05, 0.025, 0.0125],
        ),
        ({"learning_rate_schedule": "exponential", "gamma": 0.9}, [0.1, 0.09, 0.081, 0.0729]),
        # η_min + (η₀ − η_min)(1 + cos(π (e − 1) / E)) / 2 with E = 4: cos = 1, √2/2, 0, −√2/2
        (
            {"learning_rate_schedule": "cosine", "min_learning_rate": 0.02},
            [0.1, 0.02 + 0.04 * (1 + R2), 0.06, 0.02 + 0.04 * (1 - R2)],
        ),
        ({"learning_rate_schedule": "cosine"}, [0.1, 0.05 * (1 + R2), 0.05, 0.05 * (1 - R2)]),
        ({"learning_rate_schedule": "cosine", "min_learning_rate": 0.1}, [0.1] * 4),
    ],
)
def test_learning_rate_of_each_epoch(problem, options, expected):
    got = rates(*problem, len(expected), **options)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)


def test_cosine_spans_the_configured_epochs(problem):
    # E = 8: the curve is stretched over the whole run; epoch 5 is half-way, (η₀ + η_min) / 2
    got = rates(*problem, 8, learning_rate_schedule="cosine", min_learning_rate=0.02)
    assert got[0] == 0.1
    assert got[4] == pytest.approx(0.06, rel=1e-14)
    assert all(b < a for a, b in itertools.pairwise(got))
    # the last epoch still moves: η reaches η_min only as the run ends
    assert got[-1] == pytest.approx(0.02 + 0.04 * (1 + math.cos(7 * math.pi / 8)), rel=1e-14)
    assert got[-1] > 0.02
    # a one-epoch run uses η₀
    assert rates(*problem, 1, learning_rate_schedule="cosine") == [0.1]


@pytest.mark.parametrize(("gd", "batch_size"), [("minibatch", 5), ("stochastic", None)])
def test_invscaling_counts_samples_not_updates(problem, gd, batch_size):
    X, y = problem
    result = train(
        make_net(),
        X,
        y,
        gd=gd,
        batch_size=batch_size,
        learning_rate=0.1,
        epochs=3,
        learning_rate_schedule="invscaling",
    )
    got = [record.learning_rate for record in result.history]
    np.testing.assert_allclose(got, [0.1, 0.1 / 13**0.5, 0.02], rtol=1e-14)


@pytest.mark.parametrize("schedule", ["step", "exponential", "cosine", "invscaling"])
def test_stopping_early_does_not_change_the_schedule(problem, schedule):
    # a run cut short by tol uses the same η per epoch as the full run
    options = {"learning_rate_schedule": schedule, "gamma": 0.5, "step_size": 2}
    full = rates(*problem, 6, **options)
    X, y = problem
    short = train(make_net(), X, y, gd="batch", learning_rate=0.1, epochs=6, tol=10.0, **options)
    assert short.status == "converged"
    assert [r.learning_rate for r in short.history] == full[: short.epochs_run]


# --- the updates use the epoch's η ----------------------------------------------------------------


def hand_run(optimizer, etas, X, y):
    """``len(etas)`` batch-GD steps of sgd or adam (default hyperparameters), step t with η_t."""
    net = make_net()
    theta = parameters(net)
    first, second = np.zeros_like(theta), np.zeros_like(theta)
    for t, eta in enumerate(etas, 1):
        _, grads = net.loss_and_grads(X, y, "cross_entropy")
        g = np.concatenate([a.ravel() for a in grads])
        if optimizer == "sgd":
            theta = theta - eta * g
        else:
            first = 0.9 * first + 0.1 * g
            second = 0.999 * second + 0.001 * g**2
            m_hat, s_hat = first / (1 - 0.9**t), second / (1 - 0.999**t)
            theta = theta - eta * m_hat / (np.sqrt(s_hat) + 1e-8)
        offset = 0
        for p in net.params:
            p[...] = theta[offset : offset + p.size].reshape(p.shape)
            offset += p.size
    return theta


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize(
    "options",
    [
        {"learning_rate_schedule": "step", "gamma": 0.5, "step_size": 1},
        {"learning_rate_schedule": "cosine", "min_learning_rate": 0.01},
        {"learning_rate_schedule": "invscaling", "power_t": 0.7},
    ],
)
def test_every_optimizer_steps_with_the_recorded_rate(problem, optimizer, options):
    X, y = problem
    net = make_net()
    result = train(
        net,
        X,
        y,
        loss="cross_entropy",
        gd="batch",
        optimizer=optimizer,
        learning_rate=0.1,
        epochs=4,
        **options,
    )
    etas = [record.learning_rate for record in result.history]
    assert len(set(etas)) == 4  # the schedule did change η
    np.testing.assert_allclose(parameters(net), hand_run(optimizer, etas, X, y), rtol=1e-12)


# --- adaptive -------------------------------------------------------------------------------------


def stalled(epochs=100, **options):
    """A run whose loss is 0 at every epoch (zero inputs, targets and biases): every epoch after
    the first fails to improve, so only the adaptive rule moves η."""
    net = MLP([2, 1], output="identity", seed=0)
    X, y = np.zeros((6, 2)), np.zeros(6)
    options = {"learning_rate": 0.01, "tol": 1e-4, "n_iter_no_change": 2, **options}
    return train(
        net,
        X,
        y,
        gd="batch",
        epochs=epochs,
        learning_rate_schedule="adaptive",
        **options,
    )


def test_adaptive_divides_by_5_at_each_plateau_and_stops_at_1e_6():
    result = stalled()
    # epoch 1 sets the best loss; epochs 2, 3, 4 are stale, 3 > n_iter_no_change = 2: divide.
    # then every 3 epochs: 0.01, 2e-3, 4e-4, 8e-5, 1.6e-5, 3.2e-6, 6.4e-7. As in scikit-learn a
    # plateau divides while η > 1e-6, so η can end below it (6.4e-7 is used for three epochs),
    # and the plateau reached with η <= 1e-6 ends the run.
    levels = [0.01 / 5**k for k in range(7)]
    expected = [levels[0]] * 4 + [level for level in levels[1:] for _ in range(3)]
    assert len(expected) == 22
    got = [record.learning_rate for record in result.history]
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    assert result.status == "converged"
    assert result.epochs_run == 22
    assert "6.4e-07" in result.reason and "tol=0.0001" in result.reason


def test_adaptive_ignores_tol_patience():
    # tol_patience=1 alone would stop at epoch 2; under adaptive the plateau rule replaces it
    result = stalled(tol_patience=1)
    assert result.epochs_run == 22


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_adaptive_applies_to_every_optimizer(optimizer):
    result = stalled(optimizer=optimizer)
    assert result.epochs_run == 22
    assert result.final.learning_rate == pytest.approx(6.4e-7, rel=1e-13)


def test_adaptive_with_a_run_too_short_to_stop():
    result = stalled(epochs=10)
    assert result.status == "completed"
    got = [record.learning_rate for record in result.history]
    np.testing.assert_allclose(got, [0.01] * 4 + [2e-3] * 3 + [4e-4] * 3, rtol=1e-13)


def sklearn_rule(losses, eta0, tol, n_iter_no_change):
    """scikit-learn's _fit_stochastic with learning_rate='adaptive', replayed on a loss curve:
    the η each epoch used and the epoch it stops at (None if it does not)."""
    best, count, eta, used = math.inf, 0, eta0, []
    for epoch, loss in enumerate(losses, 1):
        used.append(eta)
        count = count + 1 if loss > best - tol else 0
        best = min(best, loss)
        if count > n_iter_no_change:
            if eta <= 1e-6:
                return used, epoch
            eta, count = eta / 5.0, 0
    return used, None


@pytest.mark.parametrize("n_iter_no_change", [1, 3])
def test_adaptive_follows_scikit_learns_rule_on_a_noisy_descent(n_iter_no_change):
    # stochastic GD: the loss rebounds, so plateaus come and go
    from nnlab.data import sine

    data = sine(n_samples=40, seed=0)
    net = MLP([1, 16, 1], activation="tanh", seed=0)
    result = train(
        net,
        data.X,
        data.y,
        gd="stochastic",
        learning_rate=0.05,
        epochs=150,
        tol=1e-4,
        learning_rate_schedule="adaptive",
        n_iter_no_change=n_iter_no_change,
    )
    losses = [record.train_loss for record in result.history]
    used, stop = sklearn_rule(losses, 0.05, 1e-4, n_iter_no_change)
    assert [record.learning_rate for record in result.history] == used
    assert len(set(used)) >= 3  # the rule fired more than once
    if stop is None:
        assert result.status == "completed" and result.epochs_run == 150
    else:
        assert result.status == "converged" and result.epochs_run == stop


# --- bad settings ---------------------------------------------------------------------------------


def test_unknown_schedule(problem):
    with pytest.raises(ValueError, match="learning_rate_schedule 'linear'") as excinfo:
        train(make_net(), *problem, learning_rate_schedule="linear")
    for name in SCHEDULES:
        assert repr(name) in str(excinfo.value)
    with pytest.raises(ValueError, match="Did you mean 'cosine'"):
        train(make_net(), *problem, learning_rate_schedule="cosin")


@pytest.mark.parametrize(
    ("name", "bad", "wanted"),
    [
        ("power_t", -0.5, "must be a finite number >= 0"),
        ("power_t", float("nan"), "must be a finite number >= 0"),
        ("gamma", 0.0, "must be a finite number in (0, 1]"),
        ("gamma", 1.5, "must be a finite number in (0, 1]"),
        ("gamma", -0.1, "must be a finite number in (0, 1]"),
        ("step_size", 0, "must be an integer >= 1"),
        ("step_size", 2.5, "must be an integer >= 1"),
        ("min_learning_rate", -1e-3, "must be a finite number >= 0"),
        ("min_learning_rate", float("inf"), "must be a finite number >= 0"),
        ("n_iter_no_change", 0, "must be an integer >= 1"),
        ("n_iter_no_change", True, "must be an integer >= 1"),
    ],
)
def test_schedule_setting_out_of_range(problem, name, bad, wanted):
    # checked whatever the schedule, so a bad value in a spec fails before any run
    with pytest.raises(ValueError, match=re.escape(f"{name} {wanted}, got {bad!r}")):
        train(make_net(), *problem, gd="batch", **{name: bad})


def test_cosine_cannot_rise_to_its_minimum(problem):
    with pytest.raises(ValueError, match=r"min_learning_rate=0\.5 is above learning_rate=0\.1"):
        train(
            make_net(),
            *problem,
            learning_rate=0.1,
            learning_rate_schedule="cosine",
            min_learning_rate=0.5,
        )
    # the other schedules do not read it
    train(make_net(), *problem, gd="batch", epochs=1, learning_rate=0.1, min_learning_rate=0.5)


def test_adaptive_needs_tol(problem):
    with pytest.raises(ValueError, match=r"'adaptive' needs tol"):
        train(make_net(), *problem, learning_rate_schedule="adaptive")
