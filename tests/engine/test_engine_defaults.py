"""Which loss and output activation a run gets when the caller does not name them."""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.engine import DEFAULT_OUTPUT, MLP, train


@pytest.fixture
def X() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((8, 2))


def test_default_outputs():
    assert DEFAULT_OUTPUT == {
        "mse": "identity",
        "cross_entropy": "softmax",
        "binary_cross_entropy": "sigmoid",
    }


@pytest.mark.parametrize(
    ("n_outputs", "y", "output"),
    [
        (3, np.array([0, 1, 2, 0, 1, 2, 0, 1]), "softmax"),  # class ids: cross_entropy
        (1, np.array([0, 1, 1, 0, 1, 0, 0, 1]), "sigmoid"),  # 0/1 ids, one output: binary
        (1, np.linspace(-1.0, 1.0, 8), "identity"),  # floats: mse
        (2, np.zeros((8, 2)), "identity"),
    ],
)
def test_loss_and_output_follow_the_targets(X, n_outputs, y, output):
    net = MLP([2, 4, n_outputs], seed=0)
    result = train(net, X, y, gd="batch", epochs=1)
    assert net.output == output
    # the loss reported is the one the defaults imply, evaluated on the initial weights
    loss = {v: k for k, v in DEFAULT_OUTPUT.items()}[output]
    fresh = MLP([2, 4, n_outputs], seed=0, output=output)
    expected, _ = fresh.loss_and_grads(X, y, loss)
    assert result.history[0].train_loss == pytest.approx(expected, rel=1e-12)


def test_the_output_activation_picks_the_loss(X):
    # a sigmoid output means binary cross-entropy even for float targets in [0, 1]
    y = np.linspace(0.0, 1.0, 8)
    net = MLP([2, 4, 1], output="sigmoid", seed=0)
    result = train(net, X, y, gd="batch", epochs=1)
    expected, _ = MLP([2, 4, 1], output="sigmoid", seed=0).loss_and_grads(
        X, y, "binary_cross_entropy"
    )
    assert result.history[0].train_loss == pytest.approx(expected, rel=1e-12)
    assert result.history[0].train_accuracy is not None


def test_forward_gives_raw_scores_until_a_run_picks_the_output(X):
    net = MLP([2, 4, 3], seed=0)
    scores = net.forward(X)
    assert not np.allclose(scores.sum(axis=1), 1.0)
    train(net, X, np.arange(8) % 3, gd="batch", epochs=1, learning_rate=1e-300)
    probabilities = net.forward(X)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-12)
    E = np.exp(scores - scores.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, E / E.sum(axis=1, keepdims=True), rtol=1e-12)


def test_the_chosen_output_stays_with_the_network(X):
    net = MLP([2, 4, 3], seed=0)
    train(net, X, np.arange(8) % 3, gd="batch", epochs=1)
    assert net.output == "softmax"
    # mse now runs on the softmax output the network already has
    train(net, X, np.arange(8) % 3, loss="mse", gd="batch", epochs=1)
    assert net.output == "softmax"
    with pytest.raises(ValueError, match=r"'binary_cross_entropy'.*'softmax'"):
        train(net, X, np.arange(8) % 2, loss="binary_cross_entropy", gd="batch", epochs=1)
