"""Saturating inputs (±1000) give finite, correct values and no floating-point warnings.

pytest turns warnings into errors (pyproject.toml), so an overflow in exp or a log of zero fails
these tests on its own; the values are checked as well.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.engine import ACTIVATIONS, MLP

DTYPES = ["float64", "float32"]
TOLERANCE = {"float64": 1e-12, "float32": 1e-6}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("name", "z", "expected"),
    [
        ("sigmoid", [[1000.0, -1000.0, 0.0]], [[1.0, 0.0, 0.5]]),
        ("softmax", [[1000.0, -1000.0]], [[1.0, 0.0]]),
        ("softmax", [[-1000.0, 1000.0, -1000.0]], [[0.0, 1.0, 0.0]]),
        ("softmax", [[1000.0, 1000.0]], [[0.5, 0.5]]),
        ("softmax", [[-1000.0, -1000.0]], [[0.5, 0.5]]),
        ("softmax", [[1000.0, 1001.0]], [[1 / (1 + np.e), np.e / (1 + np.e)]]),
        ("tanh", [[1000.0, -1000.0]], [[1.0, -1.0]]),
    ],
)
def test_activation_saturates_without_overflow(name, z, expected, dtype):
    A = ACTIVATIONS[name](np.array(z, dtype=dtype))
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_saturates_hidden_sigmoid_and_output_softmax(dtype):
    net = MLP([1, 1, 2], activation="sigmoid", output="softmax", dtype=dtype)
    net.params[0][...] = 1000.0  # hidden pre-activations ±1000: sigmoid gives 1 and 0
    net.params[2][...] = [[1000.0, -1000.0]]  # output logits [1000, -1000] and [0, 0]
    A = net.forward(np.array([[1.0], [-1.0]]))
    np.testing.assert_allclose(A, [[1.0, 0.0], [0.5, 0.5]], atol=TOLERANCE[dtype])


# (output, loss, logits, target, mean loss, ∂L/∂z): a one-layer net with W = logits, b = 0 and
# x = 1 has z = logits, ∂L/∂W = ∂L/∂z and ∂L/∂b = ∂L/∂z.
CASES = [
    ("softmax", "cross_entropy", [1000.0, -1000.0], 0, 0.0, [0.0, 0.0]),
    ("softmax", "cross_entropy", [1000.0, -1000.0], 1, 2000.0, [1.0, -1.0]),
    ("softmax", "cross_entropy", [-1000.0, 1000.0, -1000.0], 2, 2000.0, [0.0, 1.0, -1.0]),
    ("sigmoid", "binary_cross_entropy", [-1000.0], [1.0], 1000.0, [-1.0]),
    ("sigmoid", "binary_cross_entropy", [1000.0], [0.0], 1000.0, [1.0]),
    ("sigmoid", "binary_cross_entropy", [1000.0], [1.0], 0.0, [0.0]),
    ("sigmoid", "binary_cross_entropy", [-1000.0, 1000.0], [0.0, 0.0], 500.0, [0.0, 0.5]),
    ("sigmoid", "mse", [1000.0], [0.0], 1.0, [0.0]),  # σ' = 0 once saturated
    ("softmax", "mse", [1000.0, -1000.0], [0.0, 1.0], 1.0, [0.0, 0.0]),
    ("identity", "mse", [1000.0], [0.0], 1e6, [2000.0]),
    ("identity", "mse", [1000.0, -1000.0], [0.0, 0.0], 1e6, [1000.0, -1000.0]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("output", "loss", "logits", "target", "value", "dz"), CASES)
def test_loss_and_grads_at_saturated_logits(output, loss, logits, target, value, dz, dtype):
    net = MLP([1, len(logits)], output=output, dtype=dtype)
    net.params[0][...] = [logits]
    result, (gW, gb) = net.loss_and_grads(np.array([[1.0]]), np.array([target]), loss)
    tolerance = TOLERANCE[dtype]
    assert np.isfinite(result)
    assert result == pytest.approx(value, rel=tolerance, abs=tolerance)
    np.testing.assert_allclose(gW, [dz], rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(gb, dz, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sigmoid_is_accurate_to_a_few_ulps_relative_everywhere(dtype):
    z = np.concatenate([-np.logspace(-12, np.log10(80), 500), np.logspace(-12, 1.6, 500)])
    z = z.astype(dtype)
    exact = 1 / (1 + np.exp(-z.astype(np.longdouble)))
    got = ACTIVATIONS["sigmoid"](z.copy())
    relative = np.abs(got - exact) / exact
    assert relative.max() < 4 * np.finfo(dtype).eps
