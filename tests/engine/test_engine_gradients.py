"""MLP.forward and MLP.loss_and_grads against an independent NumPy oracle and finite differences.

The oracle below re-derives the network from the textbook formulas (Z = A W + b, A = f(Z), mean
loss over the samples) and shares no code with the engine; the gradients are checked against
central differences of that oracle's loss.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.engine import MLP

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]
# every (output activation, loss) pair the engine accepts
PAIRS = [
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
    ("identity", "mse"),
    ("sigmoid", "mse"),
    ("softmax", "mse"),
]
SIZES = [4, 6, 5, 3]  # two hidden layers, so the hidden derivative is chained through a layer
N_SAMPLES = 7


# --- the oracle -----------------------------------------------------------------------------------


def _sigmoid(Z):
    return 1.0 / (1.0 + np.exp(-Z))


def _softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


REFERENCE_ACTIVATIONS = {
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda Z: np.maximum(Z, 0.0),
    "leaky_relu": lambda Z: np.where(Z > 0.0, Z, 0.01 * Z),
    "identity": lambda Z: Z,
    "softmax": _softmax,
}


def reference_forward(params, activation, output, X):
    """Output activations and the list of hidden pre-activations, in float64."""
    A, hidden_Z = X, []
    n_layers = len(params) // 2
    for index in range(n_layers):
        Z = A @ params[2 * index] + params[2 * index + 1]
        if index < n_layers - 1:
            hidden_Z.append(Z)
            A = REFERENCE_ACTIVATIONS[activation](Z)
        else:
            A = REFERENCE_ACTIVATIONS[output](Z)
    return A, hidden_Z


def reference_loss(P, Y, loss):
    """Mean loss: over samples for cross_entropy, over samples and outputs otherwise."""
    if loss == "cross_entropy":
        return -np.mean(np.log(P[np.arange(len(Y)), Y]))
    if loss == "binary_cross_entropy":
        return -np.mean(Y * np.log(P) + (1.0 - Y) * np.log(1.0 - P))
    return np.mean((Y - P) ** 2)


def finite_differences(f, params, h):
    """Central differences (f(θ + h) − f(θ − h)) / 2h of ``f()`` for every entry of ``params``."""
    grads = []
    for P in params:
        G = np.empty_like(P)
        for index in np.ndindex(P.shape):
            old = P[index]
            P[index] = old + h
            up = f()
            P[index] = old - h
            down = f()
            P[index] = old
            G[index] = (up - down) / (2.0 * h)
        grads.append(G)
    return grads


def relative_error(grads, expected):
    """max |g − g_fd| / max(|g| + |g_fd|) over every parameter, with a tiny floor."""
    g = np.concatenate([a.ravel() for a in grads]).astype(np.float64)
    e = np.concatenate([a.ravel() for a in expected])
    return np.max(np.abs(g - e)) / max(np.max(np.abs(g) + np.abs(e)), 1e-12)


def make_problem(activation, output, loss, dtype, seed=0, sizes=SIZES, n_samples=N_SAMPLES):
    """A network with random biases, inputs and targets that fit the loss."""
    rng = np.random.default_rng([seed, HIDDEN.index(activation), PAIRS.index((output, loss))])
    net = MLP(sizes, activation=activation, output=output, seed=seed, dtype=dtype)
    for b in net.params[1::2]:
        # biases start at zero; random ones exercise their path and keep ReLU off its kink
        b[...] = rng.normal(0.0, 0.5, b.shape)
    X = rng.standard_normal((n_samples, sizes[0]))
    k = sizes[-1]
    if loss == "cross_entropy":
        Y = rng.integers(0, k, n_samples)
    elif loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (n_samples, k)).astype(np.float64)
    elif output == "identity":
        Y = rng.standard_normal((n_samples, k))
    else:
        Y = rng.random((n_samples, k))
    return net, X, Y


def check_gradients(net, X, Y, loss, h):
    """(relative error, smallest |hidden pre-activation|) of the engine's gradients."""
    params = [p.astype(np.float64) for p in net.params]
    X64 = X.astype(net.dtype).astype(np.float64)  # exactly the inputs the engine computes with

    def f():
        P, _ = reference_forward(params, net.activation, net.output, X64)
        return reference_loss(P, Y, loss)

    _, grads = net.loss_and_grads(X, Y, loss)
    expected = finite_differences(f, params, h)
    _, hidden_Z = reference_forward(params, net.activation, net.output, X64)
    closest_to_kink = min(np.abs(Z).min() for Z in hidden_Z)
    return relative_error(grads, expected), closest_to_kink


# --- forward and loss values ----------------------------------------------------------------------


@pytest.mark.parametrize("activation", HIDDEN)
@pytest.mark.parametrize(("output", "loss"), PAIRS)
def test_forward_and_loss_match_the_oracle(activation, output, loss):
    net, X, Y = make_problem(activation, output, loss, "float64")
    P, _ = reference_forward(net.params, activation, output, X)
    np.testing.assert_allclose(net.forward(X), P, rtol=1e-12, atol=1e-14)
    value, _ = net.loss_and_grads(X, Y, loss)
    assert value == pytest.approx(reference_loss(P, Y, loss), rel=1e-12)


def test_loss_and_grads_leaves_the_parameters_alone():
    net, X, Y = make_problem("tanh", "softmax", "cross_entropy", "float64")
    before = [p.copy() for p in net.params]
    net.loss_and_grads(X, Y, "cross_entropy")
    for p, q in zip(net.params, before, strict=True):
        np.testing.assert_array_equal(p, q)


# --- finite differences ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", HIDDEN)
@pytest.mark.parametrize(("output", "loss"), PAIRS)
def test_gradients_match_finite_differences_float64(activation, output, loss):
    net, X, Y = make_problem(activation, output, loss, "float64")
    h = 1e-6
    error, closest_to_kink = check_gradients(net, X, Y, loss, h)
    # a step moves a pre-activation by about h: one closer to 0 would put ReLU's kink inside
    # the difference quotient
    assert closest_to_kink > 10 * h
    assert error <= 1e-6


@pytest.mark.parametrize("activation", HIDDEN)
@pytest.mark.parametrize(("output", "loss"), PAIRS)
def test_gradients_match_finite_differences_float32(activation, output, loss):
    net, X, Y = make_problem(activation, output, loss, "float32")
    _, grads = net.loss_and_grads(X, Y, loss)
    assert all(g.dtype == np.float32 for g in grads)
    # the differences are taken in float64 on a float64 copy of the same float32 weights
    h = 1e-6
    error, closest_to_kink = check_gradients(net, X, Y, loss, h)
    assert closest_to_kink > 10 * h
    assert error <= 1e-4


# more rows than two of the 2048-row chunks the engine works in, and a partial third
BIG = 4500


@pytest.mark.parametrize(("output", "loss"), PAIRS)
def test_gradients_of_a_batch_larger_than_a_chunk(output, loss):
    net, X, Y = make_problem("tanh", output, loss, "float64", sizes=[3, 4, 3], n_samples=BIG)
    value, _ = net.loss_and_grads(X, Y, loss)
    P, _ = reference_forward(net.params, "tanh", output, X)
    assert value == pytest.approx(reference_loss(P, Y, loss), rel=1e-12)
    error, _ = check_gradients(net, X, Y, loss, h=1e-6)
    assert error <= 1e-6


@pytest.mark.parametrize(("dtype", "tolerance"), [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize(("output", "loss"), PAIRS)
def test_large_batch_is_the_weighted_mean_of_its_blocks(output, loss, dtype, tolerance):
    # the mean over all rows equals the row-weighted mean over blocks small enough for one chunk
    net, X, Y = make_problem("relu", output, loss, dtype, n_samples=BIG)
    value, grads = net.loss_and_grads(X, Y, loss)
    blocks = [slice(0, 1500), slice(1500, 2999), slice(2999, BIG)]
    parts = [net.loss_and_grads(X[rows], Y[rows], loss) for rows in blocks]
    weights = [(rows.stop - rows.start) / BIG for rows in blocks]
    expected_value = sum(w * part_value for w, (part_value, _) in zip(weights, parts, strict=True))
    assert value == pytest.approx(expected_value, rel=tolerance)
    for index, g in enumerate(grads):
        expected = sum(w * part[index] for w, (_, part) in zip(weights, parts, strict=True))
        scale = np.abs(expected).max()
        np.testing.assert_allclose(g, expected, rtol=tolerance, atol=tolerance * scale)


def test_gradients_are_aligned_with_params():
    net, X, Y = make_problem("relu", "softmax", "cross_entropy", "float64")
    _, grads = net.loss_and_grads(X, Y, "cross_entropy")
    assert [g.shape for g in grads] == [p.shape for p in net.params]


# --- target encodings -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("one_hot_dtype", [np.float64, np.int64])
def test_cross_entropy_one_hot_equals_class_ids(dtype, one_hot_dtype):
    net, X, y = make_problem("tanh", "softmax", "cross_entropy", dtype)
    one_hot = np.eye(SIZES[-1], dtype=one_hot_dtype)[y]
    loss_ids, grads_ids = net.loss_and_grads(X, y, "cross_entropy")
    loss_hot, grads_hot = net.loss_and_grads(X, one_hot, "cross_entropy")
    assert loss_hot == pytest.approx(loss_ids, rel=1e-12)
    for g_hot, g_ids in zip(grads_hot, grads_ids, strict=True):
        np.testing.assert_allclose(g_hot, g_ids, rtol=1e-12, atol=1e-15)


def test_mse_with_class_ids_uses_one_hot_targets():
    net, X, y = make_problem("tanh", "softmax", "cross_entropy", "float64")
    one_hot = np.eye(SIZES[-1])[y]
    value, grads = net.loss_and_grads(X, y, "mse")
    expected_value, expected_grads = net.loss_and_grads(X, one_hot, "mse")
    assert value == pytest.approx(expected_value, rel=1e-12)
    for g, e in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-15)


# --- mse by hand ----------------------------------------------------------------------------------


def test_mse_one_output_is_the_textbook_mean_of_squared_errors():
    # ŷ = 2x + 1 on x = 0, 1, 2 gives ŷ = 1, 3, 5 against y = 1, 2, 7: errors 0, 1, -2
    net = MLP([1, 1], output="identity")
    net.params[0][...] = 2.0
    net.params[1][...] = 1.0
    X = np.array([[0.0], [1.0], [2.0]])
    y = np.array([1.0, 2.0, 7.0])
    value, (gW, gb) = net.loss_and_grads(X, y, "mse")
    assert value == pytest.approx((0 + 1 + 4) / 3, rel=1e-15)
    # ∂L/∂w = 2/n Σ (ŷ − y) x = 2/3 (0 + 1 − 4); ∂L/∂b = 2/n Σ (ŷ − y) = 2/3 (0 + 1 − 2)
    np.testing.assert_allclose(gW, [[-2.0]], rtol=1e-15)
    np.testing.assert_allclose(gb, [-2.0 / 3.0], rtol=1e-15)


def test_mse_several_outputs_averages_over_samples_and_outputs():
    # ŷ = [x, −x] on x = 1, 2 against [[0, 0], [1, 1]]: squared errors 1, 1, 1, 9
    net = MLP([1, 2], output="identity")
    net.params[0][...] = [[1.0, -1.0]]
    X = np.array([[1.0], [2.0]])
    Y = np.array([[0.0, 0.0], [1.0, 1.0]])
    value, (gW, gb) = net.loss_and_grads(X, Y, "mse")
    assert value == pytest.approx(12.0 / 4.0, rel=1e-15)
    # ∂L/∂ŷ = 2 (ŷ − y) / (n k) = [[1, −1], [1, −3]] / 2
    np.testing.assert_allclose(gb, [1.0, -2.0], rtol=1e-15)
    np.testing.assert_allclose(gW, [[1.5, -3.5]], rtol=1e-15)
