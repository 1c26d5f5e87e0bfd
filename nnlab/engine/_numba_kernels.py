"""The update rules of optimizers.py compiled by numba, each fused into one pass (see kernels.py).

Each loop body is its NumPy rule's sequence of operations for one element, written in the same
order and rounded the same way: IEEE arithmetic gives the same bits whichever way the elements
are visited. ``error_model="numpy"`` lets a division by zero give inf as NumPy does (and lets
the loops vectorise); no fastmath, which would let the compiler reorder or contract them.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def sgd(theta, grad, rate):
    """θ ← θ − η g."""
    for k in range(theta.shape[0]):
        eta = rate[k, 0]
        for j in range(theta.shape[1]):
            theta[k, j] -= grad[k, j] * eta


@_jit
def momentum(theta, grad, velocity, rate, mu):
    """v ← μ v − η g;  θ ← θ + v."""
    for k in range(theta.shape[0]):
        eta, m = rate[k, 0], mu[k, 0]
        for j in range(theta.shape[1]):
            v = velocity[k, j] * m - grad[k, j] * eta
            velocity[k, j] = v
            theta[k, j] += v


@_jit
def nesterov(theta, grad, velocity, rate, mu):
    """v ← μ v − η g;  θ ← θ − η g + μ v (subtracted, then added, as the NumPy rule does)."""
    for k in range(theta.shape[0]):
        eta, m = rate[k, 0], mu[k, 0]
        for j in range(theta.shape[1]):
            step = grad[k, j] * eta
            v = velocity[k, j] * m - step
            velocity[k, j] = v
            theta[k, j] = (theta[k, j] - step) + v * m


@_jit
def adam(theta, grad, first, second, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, scale):
    """m ← β₁ m + (1 − β₁) g;  s ← β₂ s + (1 − β₂) g²;  θ ← θ − (m / (√s + ε')) α, with the
    bias corrections folded into ε' and α as the NumPy rule folds them."""
    for k in range(theta.shape[0]):
        b1, c1 = beta1[k, 0], one_minus_beta1[k, 0]
        b2, c2 = beta2[k, 0], one_minus_beta2[k, 0]
        e, a = eps[k, 0], scale[k, 0]
        for j in range(theta.shape[1]):
            g = grad[k, j]
            m = first[k, j] * b1 + g * c1
            s = second[k, j] * b2 + (g * g) * c2
            first[k, j] = m
            second[k, j] = s
            theta[k, j] -= (m / (np.sqrt(s) + e)) * a
