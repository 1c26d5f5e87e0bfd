"""The L2 penalty ``alpha`` and decoupled ``weight_decay`` (issue 12), against hand-computed steps
of every optimizer and finite differences.

``alpha`` is scikit-learn's: a batch of m samples adds 0.5 α Σ‖W‖² / m to its mean loss and
α W / m to the weight gradients, biases untouched. ``weight_decay`` λ is PyTorch's AdamW:
θ ← θ − η λ θ for every parameter, biases included, before the optimizer's own step.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_gradients import finite_differences, relative_error
from test_engine_gradients import make_problem as gradient_problem

from nnlab.engine import MLP, train
from nnlab.engine.mlp import Backprop
from nnlab.engine.optimizers import OPTIMIZERS, WeightDecay, make_optimizer

ETA = 0.1
N = 10


def make_net(dtype: str = "float64") -> MLP:
    net = MLP([3, 4, 2], activation="tanh", seed=1, dtype=dtype)
    rng = np.random.default_rng(5)
    for b in net.params[1::2]:
        # non-zero biases, so that a penalty or decay wrongly applied to them shows
        b[...] = rng.normal(0.0, 0.5, b.shape)
    return net


@pytest.fixture
def problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    return rng.standard_normal((N, 3)), rng.integers(0, 2, N)


def parameters(net: MLP) -> np.ndarray:
    return np.concatenate([p.ravel() for p in net.params])


def set_parameters(net: MLP, theta: np.ndarray) -> None:
    offset = 0
    for p in net.params:
        p[...] = theta[offset : offset + p.size].reshape(p.shape)
        offset += p.size


def on_weights(net: MLP) -> np.ndarray:
    """1 on every weight, 0 on every bias, in the order of ``parameters``."""
    return np.concatenate(
        [np.full(p.size, 1.0 if index % 2 == 0 else 0.0) for index, p in enumerate(net.params)]
    )


def by_hand(optimizer, etas, X, y, alpha, weight_decay, mu=0.9, b1=0.9, b2=0.999, eps=1e-8):
    """Full-batch steps written out from the formulas, step t with learning rate etas[t - 1]."""
    net = make_net()
    theta = parameters(net)
    mask = on_weights(net)
    velocity, first, second = (np.zeros_like(theta) for _ in range(3))
    for t, eta in enumerate(etas, 1):
        _, grads = net.loss_and_grads(X, y, "cross_entropy")  # the data loss alone
        g = np.concatenate([a.ravel() for a in grads]) + alpha * mask * theta / len(X)
        theta = theta - eta * weight_decay * theta
        if optimizer == "sgd":
            theta = theta - eta * g
        elif optimizer == "momentum":
            velocity = mu * velocity - eta * g
            theta = theta + velocity
        elif optimizer == "nesterov":
            velocity = mu * velocity - eta * g
            theta = theta + mu * velocity - eta * g
        else:
            first = b1 * first + (1 - b1) * g
            second = b2 * second + (1 - b2) * g**2
            m_hat, s_hat = first / (1 - b1**t), second / (1 - b2**t)
            theta = theta - eta * m_hat / (np.sqrt(s_hat) + eps)
        set_parameters(net, theta)
    return theta


# --- single steps by hand -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alpha", "weight_decay"), [(0.3, 0.0), (0.0, 0.2), (0.3, 0.2)], ids=["alpha", "decay", "both"]
)
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_steps_match_the_formulas(problem, optimizer, steps, alpha, weight_decay):
    X, y = problem
    net = make_net()
    result = train(
        net,
        X,
        y,
        loss="cross_entropy",
        gd="batch",
        optimizer=optimizer,
        learning_rate=ETA,
        epochs=steps,
        alpha=alpha,
        weight_decay=weight_decay,
    )
    assert result.updates == steps
    expected = by_hand(optimizer, [ETA] * steps, X, y, alpha, weight_decay)
    np.testing.assert_allclose(parameters(net), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_weight_decay_uses_the_scheduled_learning_rate(problem, optimizer):
    X, y = problem
    net = make_net()
    train(
        net,
        X,
        y,
        gd="batch",
        optimizer=optimizer,
        learning_rate=ETA,
        epochs=3,
        weight_decay=0.5,
        learning_rate_schedule="exponential",
        gamma=0.5,
    )
    expected = by_hand(optimizer, [ETA, ETA / 2, ETA / 4], X, y, 0.0, 0.5)
    np.testing.assert_allclose(parameters(net), expected, rtol=1e-12, atol=1e-14)


def test_weight_decay_alone_shrinks_every_parameter_geometrically():
    # Adam with a zero gradient moves nothing (m = s = 0), so only the decay acts, on biases too
    net = make_net()
    X, y = np.zeros((4, 3)), np.zeros((4, 2))
    net.params[-1][...] = 0.0  # zero inputs and output bias: output 0 = target, gradient 0
    net.params[-2][...] = 0.0
    before = parameters(net)
    options = {"optimizer": "adam", "learning_rate": 0.1, "epochs": 3, "weight_decay": 0.5}
    train(net, X, y, loss="mse", gd="batch", **options)
    np.testing.assert_allclose(parameters(net), before * 0.95**3, rtol=1e-14)
    assert np.count_nonzero(before[on_weights(net) == 0.0]) > 0  # hidden biases did decay


# --- the penalty in the loss and its gradient -----------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    alpha=st.floats(1e-6, 10.0),
    n_samples=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_penalty_is_half_alpha_squared_weights_over_n(sizes, alpha, n_samples, seed):
    rng = np.random.default_rng(seed)
    net = MLP(sizes, activation="tanh", output="identity", seed=seed)
    for b in net.params[1::2]:
        b[...] = rng.standard_normal(b.shape)
    X, Y = rng.standard_normal((n_samples, sizes[0])), rng.standard_normal((n_samples, sizes[-1]))
    plain, plain_grads = net.loss_and_grads(X, Y, "mse")
    value, grads = net.loss_and_grads(X, Y, "mse", alpha=alpha)
    squares = sum(np.sum(W**2) for W in net.params[0::2])
    assert value == pytest.approx(plain + 0.5 * alpha * squares / n_samples, rel=1e-12)
    for index, (g, p, q) in enumerate(zip(grads, plain_grads, net.params, strict=True)):
        if index % 2:  # biases: no penalty
            np.testing.assert_array_equal(g, p)
        else:
            np.testing.assert_allclose(g, p + alpha * q / n_samples, rtol=1e-12, atol=1e-14)


def reference_loss(params, X, Y, loss, alpha):
    """tanh hidden layers, mean data loss, plus 0.5 α Σ‖W‖² / n: written from the definitions."""
    A = X
    for index in range(0, len(params) - 2, 2):
        A = np.tanh(A @ params[index] + params[index + 1])
    Z = A @ params[-2] + params[-1]
    if loss == "cross_entropy":
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        P = E / E.sum(axis=1, keepdims=True)
        data = -np.mean(np.log(P[np.arange(len(Y)), Y]))
    elif loss == "binary_cross_entropy":
        P = 1.0 / (1.0 + np.exp(-Z))
        data = -np.mean(Y * np.log(P) + (1.0 - Y) * np.log(1.0 - P))
    else:
        data = np.mean((Y - Z) ** 2)
    return data + 0.5 * alpha * sum(np.sum(W**2) for W in params[0::2]) / len(X)


LOSSES = ["cross_entropy", "binary_cross_entropy", "mse"]
OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "mse": "identity"}


def make_problem(loss, n_samples, sizes=(4, 6, 5, 3), dtype="float64"):
    """The gradient tests' problem (random biases, inputs and fitting targets) for a tanh
    network trained with ``loss``."""
    return gradient_problem(
        "tanh", OUTPUT[loss], loss, dtype, sizes=list(sizes), n_samples=n_samples
    )


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [("float64", 1e-6), ("float32", 1e-4)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("alpha", [1e-4, 0.5, 5.0])
@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_with_alpha_match_finite_differences(loss, alpha, dtype, tolerance):
    net, X, Y = make_problem(loss, n_samples=7, dtype=dtype)
    params = [p.astype(np.float64) for p in net.params]
    X64 = X.astype(net.dtype).astype(np.float64)
    value, grads = net.loss_and_grads(X, Y, loss, alpha=alpha)
    assert value == pytest.approx(reference_loss(params, X64, Y, loss, alpha), rel=tolerance)
    expected = finite_differences(
        lambda: reference_loss(params, X64, Y, loss, alpha), params, h=1e-6
    )
    assert relative_error(grads, expected) <= tolerance


@pytest.mark.parametrize("loss", LOSSES)
def test_penalty_is_added_once_to_a_batch_larger_than_a_chunk(loss):
    # 4500 rows are processed in chunks of 2048: the penalty belongs to the batch, not the chunk
    net, X, Y = make_problem(loss, n_samples=4500, sizes=(3, 4, 3))
    params = [p.astype(np.float64) for p in net.params]
    value, grads = net.loss_and_grads(X, Y, loss, alpha=30.0)
    assert value == pytest.approx(reference_loss(params, X, Y, loss, 30.0), rel=1e-12)
    expected = finite_differences(lambda: reference_loss(params, X, Y, loss, 30.0), params, h=1e-6)
    assert relative_error(grads, expected) <= 1e-6


# --- what the records report ----------------------------------------------------------------------


def test_batch_gd_first_loss_is_the_penalised_initial_loss(problem):
    X, y = problem
    alpha = 0.7
    result = train(make_net(), X, y, gd="batch", epochs=2, alpha=alpha)
    net = make_net()
    data, _ = net.loss_and_grads(X, y, "cross_entropy")
    squares = sum(np.sum(W**2) for W in net.params[0::2])
    expected = data + 0.5 * alpha * squares / N
    assert result.initial_loss == pytest.approx(expected, rel=1e-12)
    assert result.history[0].train_loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("gd", "batch_size", "batches"), [("minibatch", 4, [4, 4, 2]), ("stochastic", None, [1] * 10)]
)
def test_epoch_loss_sums_each_updates_penalty_as_scikit_learn(gd, batch_size, batches):
    # ten copies of one sample: every batch has that sample's data loss whatever the shuffle, so
    # the epoch can be replayed by hand. scikit-learn's loss_curve_: Σ_b m_b (mean_b + 0.5 α
    # Σ‖W_b‖² / m_b) / N, with W_b the weights batch b started from.
    rng = np.random.default_rng(4)
    X1, y1 = rng.standard_normal((1, 3)), rng.integers(0, 2, 1)
    X, y = np.repeat(X1, 10, axis=0), np.repeat(y1, 10)
    alpha = 0.4
    net = make_net()
    options = {"batch_size": batch_size, "learning_rate": ETA, "alpha": alpha}
    result = train(net, X, y, gd=gd, epochs=1, **options)

    manual = make_net()
    theta, mask = parameters(manual), on_weights(manual)
    total = 0.0
    for m in batches:
        data, grads = manual.loss_and_grads(X1, y1, "cross_entropy")
        squares = sum(np.sum(W**2) for W in manual.params[0::2])
        total += m * (data + 0.5 * alpha * squares / m)
        g = np.concatenate([a.ravel() for a in grads]) + alpha * mask * theta / m
        theta = theta - ETA * g
        set_parameters(manual, theta)
    assert result.history[0].train_loss == pytest.approx(total / 10, rel=1e-12)
    np.testing.assert_allclose(parameters(net), theta, rtol=1e-12, atol=1e-14)


def test_validation_loss_is_the_plain_data_loss(problem):
    X, y = problem
    X_val, y_val = X[:4] + 0.5, y[:4]
    seen = []

    def on_epoch(record):
        plain, _ = net.loss_and_grads(X_val, y_val, "cross_entropy")
        seen.append((record.val_loss, plain))

    net = make_net()
    options = {"alpha": 5.0, "weight_decay": 0.1, "val": (X_val, y_val), "on_epoch": on_epoch}
    train(net, X, y, gd="batch", epochs=3, **options)
    for val_loss, plain in seen:
        assert val_loss == pytest.approx(plain, rel=1e-12)


# --- zero means no work ---------------------------------------------------------------------------


def test_zero_alpha_and_weight_decay_add_nothing_to_the_step():
    net = make_net()
    assert Backprop(net, "cross_entropy", "softmax", max_rows=8).penalty is None
    assert Backprop(net, "cross_entropy", "softmax", max_rows=8, alpha=0.0).penalty is None
    assert Backprop(net, "cross_entropy", "softmax", max_rows=8, alpha=0.1).penalty is not None
    grad = np.zeros_like(net.flat)
    for name, rule in OPTIMIZERS.items():
        assert type(make_optimizer(name, net.flat, grad, ETA)) is rule
        assert type(make_optimizer(name, net.flat, grad, ETA, weight_decay=0.0)) is rule
        decayed = make_optimizer(name, net.flat, grad, ETA, weight_decay=0.1)
        assert isinstance(decayed, WeightDecay) and type(decayed.rule) is rule
        decayed.learning_rate = 0.5  # the schedule sets the wrapped rule's rate
        assert decayed.rule.learning_rate == 0.5


def test_zero_settings_give_the_plain_run_bit_for_bit(problem):
    X, y = problem
    plain, zero = make_net(), make_net()
    common = {"gd": "minibatch", "batch_size": 4, "optimizer": "adam", "epochs": 3}
    first = train(plain, X, y, **common)
    second = train(zero, X, y, alpha=0.0, weight_decay=0.0, **common)
    assert [r.train_loss for r in first.history] == [r.train_loss for r in second.history]
    np.testing.assert_array_equal(parameters(plain), parameters(zero))


# --- bad settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alpha", "weight_decay"])
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_strength_must_be_a_finite_number_of_at_least_zero(problem, name, bad):
    message = f"{name} must be a finite number >= 0, got {bad!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        train(make_net(), *problem, gd="batch", **{name: bad})


def test_loss_and_grads_checks_alpha(problem):
    with pytest.raises(ValueError, match=re.escape("alpha must be a finite number >= 0, got -1")):
        make_net().loss_and_grads(*problem, "cross_entropy", alpha=-1)
