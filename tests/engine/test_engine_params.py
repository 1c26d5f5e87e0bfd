"""The params contract: layout, live views, initialisation and seeding."""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.engine import MLP, train


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_params_are_weights_then_biases_per_layer(dtype):
    net = MLP([4, 7, 5, 3], dtype=dtype)
    assert [p.shape for p in net.params] == [(4, 7), (7,), (7, 5), (5,), (5, 3), (3,)]
    assert all(p.dtype == np.dtype(dtype) for p in net.params)
    assert net.n_params == 4 * 7 + 7 + 7 * 5 + 5 + 5 * 3 + 3
    assert net.n_layers == 3


def test_network_without_hidden_layers():
    net = MLP([3, 2])
    assert [p.shape for p in net.params] == [(3, 2), (2,)]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "leaky_relu", "identity"])
def test_biases_start_at_zero(activation):
    net = MLP([4, 7, 5, 3], activation=activation, seed=3)
    for b in net.params[1::2]:
        np.testing.assert_array_equal(b, 0.0)
    for W in net.params[0::2]:
        assert np.all(W != 0.0)


def test_writing_into_params_changes_forward():
    net = MLP([3, 4, 2], activation="tanh", output="identity")
    X = np.random.default_rng(0).standard_normal((5, 3))
    before = net.forward(X)
    # zero every weight: the output is then the last bias, whatever the input
    for W in net.params[0::2]:
        W[...] = 0.0
    net.params[-1][...] = [1.5, -2.0]
    np.testing.assert_array_equal(net.forward(X), np.tile([1.5, -2.0], (5, 1)))
    assert not np.allclose(before, net.forward(X))

    # a single hidden weight and bias, checked by hand: tanh(2 x0 + 0.5) feeds output 0 with 3
    net.params[0][0, 1] = 2.0
    net.params[1][1] = 0.5
    net.params[2][1, 0] = 3.0
    expected = np.column_stack([1.5 + 3.0 * np.tanh(2.0 * X[:, 0] + 0.5), np.full(5, -2.0)])
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-15, atol=1e-15)


def test_training_updates_the_same_arrays_in_place(classification):
    X, y = classification
    net = MLP([2, 6, 3], seed=0)
    views = list(net.params)
    copies = [p.copy() for p in views]
    train(net, X, y, gd="batch", learning_rate=0.5, epochs=2)
    assert all(a is b for a, b in zip(net.params, views, strict=True))
    assert all(not np.array_equal(p, q) for p, q in zip(views, copies, strict=True))


def test_forward_does_not_modify_its_input():
    net = MLP([3, 4, 2], activation="relu", output="softmax")
    X = np.random.default_rng(0).standard_normal((5, 3))
    original = X.copy()
    net.forward(X)
    np.testing.assert_array_equal(X, original)


# --- initialisation -------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_he_normal_for_the_relu_family(activation):
    fan_in, fan_out = 600, 400  # 240 000 draws: the sample std is within ~0.3% of the truth
    net = MLP([fan_in, fan_out, 10], activation=activation, seed=0)
    W1 = net.params[0]
    assert W1.mean() == pytest.approx(0.0, abs=0.01 * np.sqrt(2.0 / fan_in))
    assert W1.std() == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.02)
    # a normal, not a uniform: values beyond the uniform's ±√3 σ exist
    assert np.abs(W1).max() > np.sqrt(3.0) * np.sqrt(2.0 / fan_in) * 1.5


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "identity"])
def test_glorot_uniform_for_the_others(activation):
    fan_in, fan_out = 600, 400
    net = MLP([fan_in, fan_out, 10], activation=activation, seed=0)
    W1 = net.params[0]
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(W1).max() <= limit
    assert np.abs(W1).max() > 0.99 * limit
    assert W1.std() == pytest.approx(limit / np.sqrt(3.0), rel=0.02)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_output_layer_is_glorot_uniform(activation):
    fan_in, fan_out = 400, 300
    net = MLP([5, fan_in, fan_out], activation=activation, seed=0)
    W = net.params[-2]
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(W).max() <= limit
    assert W.std() == pytest.approx(limit / np.sqrt(3.0), rel=0.02)


def test_he_and_glorot_scales_differ():
    # for a square layer He's std √(2/n) is √2 times Glorot's √(1/n): the choice is visible
    relu = MLP([500, 500, 1], activation="relu", seed=0).params[0].std()
    tanh = MLP([500, 500, 1], activation="tanh", seed=0).params[0].std()
    assert relu / tanh == pytest.approx(np.sqrt(2.0), rel=0.02)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_same_seed_same_weights(dtype):
    first = MLP([4, 8, 3], activation="relu", seed=7, dtype=dtype)
    second = MLP([4, 8, 3], activation="relu", seed=7, dtype=dtype)
    for p, q in zip(first.params, second.params, strict=True):
        np.testing.assert_array_equal(p, q)


def test_different_seed_different_weights():
    first = MLP([4, 8, 3], seed=7)
    second = MLP([4, 8, 3], seed=8)
    for W, V in zip(first.params[0::2], second.params[0::2], strict=True):
        assert not np.any(W == V)


def test_repr_names_the_configuration():
    text = repr(MLP([2, 3, 1], activation="tanh", output="sigmoid", seed=4, dtype="float32"))
    assert text.startswith("MLP(")
    for part in ["[2, 3, 1]", "'tanh'", "'sigmoid'", "4", "'float32'"]:
        assert part in text
