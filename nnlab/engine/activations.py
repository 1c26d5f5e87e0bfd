"""Activation functions and their derivatives, as registries of small in-place functions.

Each activation overwrites its argument ``Z`` (the pre-activations ``Z = A_prev @ W + b``) with
``A = f(Z)``, and each derivative is written in terms of ``A``, so the backward pass never needs
``Z`` again and one buffer per layer suffices. Adding an activation is one entry in each dict.
"""

from __future__ import annotations

import numpy as np

LEAKY_RELU_SLOPE = 0.01


def sigmoid(Z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^-z), with z first raised to the lowest value whose e^-z is finite, so
    -1000 neither overflows nor warns (σ there is below 1e-307 either way). Accurate to a few
    ulps relative everywhere, and about twice as fast as (1 + tanh(z/2)) / 2: NumPy's exp is
    vectorised, its tanh is not."""
    np.maximum(Z, SIGMOID_LOWEST[Z.dtype.type], out=Z)
    np.negative(Z, out=Z)
    np.exp(Z, out=Z)
    Z += 1.0
    return np.reciprocal(Z, out=Z)


# -(the largest z whose e^z is finite), less a margin: e^708 = 3e307 (float64), e^87 = 6e37
SIGMOID_LOWEST = {np.float64: -708.0, np.float32: -87.0}


def tanh(Z: np.ndarray) -> np.ndarray:
    return np.tanh(Z, out=Z)


def relu(Z: np.ndarray) -> np.ndarray:
    return np.maximum(Z, 0.0, out=Z)


def leaky_relu(Z: np.ndarray) -> np.ndarray:
    # max(z, αz) equals z for z >= 0 and αz below, for 0 < α < 1
    return np.maximum(Z, LEAKY_RELU_SLOPE * Z, out=Z)


def identity(Z: np.ndarray) -> np.ndarray:
    return Z


def softmax(Z: np.ndarray) -> np.ndarray:
    """Row-wise (over the last axis) e^z_i / Σ_j e^z_j; the row maximum is subtracted first
    so nothing overflows."""
    Z -= Z.max(axis=-1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=-1, keepdims=True)
    return Z


# Hidden-layer derivatives: ``derivative(A, M)`` overwrites the activations A of a layer with the
# delta M ⊙ f'(Z), f' written in terms of A = f(Z). The backward pass no longer needs A once the
# delta exists, so the delta takes A's buffer and no other memory.


def _sigmoid_derivative(A: np.ndarray, M: np.ndarray) -> None:
    # σ' = σ(1 - σ)
    M *= A
    np.subtract(1.0, A, out=A)
    A *= M


def _tanh_derivative(A: np.ndarray, M: np.ndarray) -> None:
    # tanh' = 1 - tanh²
    np.multiply(A, A, out=A)
    np.subtract(1.0, A, out=A)
    A *= M


def _relu_derivative(A: np.ndarray, M: np.ndarray) -> None:
    np.multiply(M, A > 0.0, out=A)


def _leaky_relu_derivative(A: np.ndarray, M: np.ndarray) -> None:
    positive = A > 0.0
    np.multiply(M, LEAKY_RELU_SLOPE, out=A)
    np.copyto(A, M, where=positive)


def _identity_derivative(A: np.ndarray, M: np.ndarray) -> None:
    np.copyto(A, M)


# Output-layer derivatives for losses that are not fused with their activation (mse after sigmoid
# or softmax): ``derivative(A, D)`` multiplies the upstream gradient D = ∂L/∂A in place by the
# Jacobian of the activation, leaving the output activations A intact.


def _sigmoid_output_derivative(A: np.ndarray, D: np.ndarray) -> None:
    D *= A * (1.0 - A)


def _softmax_output_derivative(A: np.ndarray, D: np.ndarray) -> None:
    # Jacobian-vector product of softmax, row by row: a ⊙ (d - <d, a>)
    D -= (D * A).sum(axis=-1, keepdims=True)
    D *= A


def _identity_output_derivative(A: np.ndarray, D: np.ndarray) -> None:
    pass


def bias_gradient(D: np.ndarray, gb: np.ndarray) -> None:
    """A layer's bias gradient from its delta D (K, m, width): D's sums over the m rows into gb
    (K, width), each row after the one before (np.add.reduce along a non-contiguous axis)."""
    if D.shape[1] == 1:
        gb[...] = D[:, 0]
    else:
        np.add.reduce(D, axis=1, out=gb)


HIDDEN_ACTIVATIONS = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "identity": identity,
}
OUTPUT_ACTIVATIONS = {"softmax": softmax, "sigmoid": sigmoid, "identity": identity}
ACTIVATIONS = {**HIDDEN_ACTIVATIONS, **OUTPUT_ACTIVATIONS}

DERIVATIVES = {
    "sigmoid": _sigmoid_derivative,
    "tanh": _tanh_derivative,
    "relu": _relu_derivative,
    "leaky_relu": _leaky_relu_derivative,
    "identity": _identity_derivative,
}
OUTPUT_DERIVATIVES = {
    "sigmoid": _sigmoid_output_derivative,
    "softmax": _softmax_output_derivative,
    "identity": _identity_output_derivative,
}
