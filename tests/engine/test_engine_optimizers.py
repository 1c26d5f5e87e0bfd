"""Each update rule against the same steps computed by hand from MLP.loss_and_grads.

Batch GD makes one update per epoch from the whole training set, so ``epochs=t`` is ``t`` steps
of the rule; the hand computation follows the formulas in nnlab/engine/optimizers.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.engine import MLP, OPTIMIZERS, train

# each test on the NumPy reference rules and on the compiled ones
pytestmark = pytest.mark.usefixtures("each_kernel_path")

LEARNING_RATE = 0.1
DEFAULTS = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
# non-default values, so a hyperparameter that is not passed through shows up
CUSTOM = {"momentum": 0.7, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-3}


def make_net(dtype: str = "float64") -> MLP:
    return MLP([3, 6, 2], activation="tanh", seed=1, dtype=dtype)


@pytest.fixture
def problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((12, 3)), rng.integers(0, 2, 12)


def parameters(net: MLP) -> np.ndarray:
    return np.concatenate([p.ravel() for p in net.params])


def set_parameters(net: MLP, theta: np.ndarray) -> None:
    offset = 0
    for p in net.params:
        p[...] = theta[offset : offset + p.size].reshape(p.shape)
        offset += p.size


def by_hand(optimizer, steps, X, y, momentum, beta1, beta2, epsilon):
    """The parameters after ``steps`` full-batch updates, each written out from the formulas."""
    net = make_net()
    theta = parameters(net)
    velocity = np.zeros_like(theta)
    first = np.zeros_like(theta)
    second = np.zeros_like(theta)
    eta = LEARNING_RATE
    for t in range(1, steps + 1):
        _, grads = net.loss_and_grads(X, y, "cross_entropy")
        g = np.concatenate([a.ravel() for a in grads])
        if optimizer == "sgd":
            theta = theta - eta * g
        elif optimizer == "momentum":
            velocity = momentum * velocity - eta * g
            theta = theta + velocity
        elif optimizer == "nesterov":
            velocity = momentum * velocity - eta * g
            theta = theta + momentum * velocity - eta * g
        else:
            first = beta1 * first + (1 - beta1) * g
            second = beta2 * second + (1 - beta2) * g**2
            first_hat = first / (1 - beta1**t)
            second_hat = second / (1 - beta2**t)
            theta = theta - eta * first_hat / (np.sqrt(second_hat) + epsilon)
        set_parameters(net, theta)
    return theta


def test_every_optimizer_is_covered():
    assert set(OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adam"}


@pytest.mark.parametrize("hyper", [DEFAULTS, CUSTOM], ids=["defaults", "custom"])
@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_steps_match_the_formulas(problem, optimizer, steps, hyper):
    X, y = problem
    net = make_net()
    passed = {} if hyper is DEFAULTS else hyper
    result = train(
        net,
        X,
        y,
        loss="cross_entropy",
        gd="batch",
        optimizer=optimizer,
        learning_rate=LEARNING_RATE,
        epochs=steps,
        **passed,
    )
    assert result.updates == steps
    expected = by_hand(optimizer, steps, X, y, **hyper)
    np.testing.assert_allclose(parameters(net), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_zero_momentum_is_plain_sgd(problem, optimizer):
    X, y = problem
    with_momentum, plain = make_net(), make_net()
    common = {"gd": "batch", "learning_rate": LEARNING_RATE, "epochs": 3}
    train(with_momentum, X, y, optimizer=optimizer, momentum=0.0, **common)
    train(plain, X, y, optimizer="sgd", **common)
    np.testing.assert_allclose(parameters(with_momentum), parameters(plain), rtol=1e-14, atol=0)


def test_adam_first_step_moves_every_weight_by_about_the_learning_rate(problem):
    # m̂ = g and ŝ = g² after one step, so each parameter with g ≠ 0 moves by η g / (|g| + ε)
    X, y = problem
    net = make_net()
    before = parameters(net)
    train(net, X, y, gd="batch", optimizer="adam", learning_rate=LEARNING_RATE, epochs=1)
    step = np.abs(parameters(net) - before)
    assert step.max() <= LEARNING_RATE
    assert np.median(step) == pytest.approx(LEARNING_RATE, rel=1e-3)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_float32_training_stays_float32_and_tracks_float64(problem, optimizer):
    X, y = problem
    net32, net64 = make_net("float32"), make_net("float64")
    common = {"gd": "batch", "optimizer": optimizer, "learning_rate": LEARNING_RATE, "epochs": 3}
    train(net32, X, y, **common)
    train(net64, X, y, **common)
    assert all(p.dtype == np.float32 for p in net32.params)
    np.testing.assert_allclose(parameters(net32), parameters(net64), rtol=1e-4, atol=1e-5)
