"""The compiled path's kernels (see kernels.py): optimizers.py's update rules and a hidden layer's
arithmetic steps, each fused into one numba loop.

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


# --- a hidden layer: its bias add fused with the activation (forward), and the activation's
# derivative fused with the layer's bias gradient (backward). Z, A, M are (K, m, width) blocks,
# b and gb (K, width) rows; ``one``, ``slope`` and ``lowest`` come in the arrays' dtype, as
# NumPy casts a Python float before it computes. The sums of the bias gradient run over the
# rows in order, as np.add.reduce sums along a non-contiguous axis.
#
# In a pack, b and gb are views into the rows of the parameter matrix, a row's stride apart:
# the loops read and write contiguous copies of them, which LLVM can vectorise, where on the
# strided views it cannot (2.5x slower, measured).


@_jit
def _zero(A):
    """+0.0 in A's dtype: np.add.reduce sums rows from it (a single row it copies), so a
    column of -0.0 sums to +0.0."""
    return A.dtype.type(0)


@_jit
def relu_layer(Z, b):
    """max(Z + b, 0), NaN kept, as np.maximum does."""
    b = np.ascontiguousarray(b)
    for k in range(Z.shape[0]):
        for i in range(Z.shape[1]):
            for j in range(Z.shape[2]):
                z = Z[k, i, j] + b[k, j]
                Z[k, i, j] = z if (z > 0.0 or z != z) else 0.0


@_jit
def leaky_relu_layer(Z, b, slope):
    """max(Z + b, slope (Z + b))."""
    b = np.ascontiguousarray(b)
    for k in range(Z.shape[0]):
        for i in range(Z.shape[1]):
            for j in range(Z.shape[2]):
                z = Z[k, i, j] + b[k, j]
                s = slope * z
                Z[k, i, j] = z if (z > s or z != z) else s


@_jit
def sigmoid_layer_head(Z, b, lowest):
    """−max(Z + b, lowest): what sigmoid takes e to the power of."""
    b = np.ascontiguousarray(b)
    for k in range(Z.shape[0]):
        for i in range(Z.shape[1]):
            for j in range(Z.shape[2]):
                z = Z[k, i, j] + b[k, j]
                Z[k, i, j] = -(z if (z > lowest or z != z) else lowest)


@_jit
def sigmoid_layer_tail(Z, one):
    """1 / (e + 1), from e = exp(−z)."""
    for k in range(Z.shape[0]):
        for i in range(Z.shape[1]):
            for j in range(Z.shape[2]):
                Z[k, i, j] = one / (Z[k, i, j] + one)


@_jit
def tanh_delta(A, M, gb, one):
    """(1 − A²) ⊙ M into A; its row sums into gb."""
    sums = np.empty((A.shape[0], A.shape[2]), A.dtype)
    single, zero = A.shape[1] == 1, _zero(A)
    for k in range(A.shape[0]):
        for i in range(A.shape[1]):
            for j in range(A.shape[2]):
                a = A[k, i, j]
                d = (one - a * a) * M[k, i, j]
                A[k, i, j] = d
                sums[k, j] = (d if single else zero + d) if i == 0 else sums[k, j] + d
    gb[...] = sums


@_jit
def sigmoid_delta(A, M, gb, one):
    """(1 − A) ⊙ (M ⊙ A) into A; its row sums into gb."""
    sums = np.empty((A.shape[0], A.shape[2]), A.dtype)
    single, zero = A.shape[1] == 1, _zero(A)
    for k in range(A.shape[0]):
        for i in range(A.shape[1]):
            for j in range(A.shape[2]):
                a = A[k, i, j]
                d = (one - a) * (M[k, i, j] * a)
                A[k, i, j] = d
                sums[k, j] = (d if single else zero + d) if i == 0 else sums[k, j] + d
    gb[...] = sums


@_jit
def relu_delta(A, M, gb, one):
    """M ⊙ [A > 0] into A (M times 1 or 0, NaN kept, as multiplying by the mask does)."""
    sums = np.empty((A.shape[0], A.shape[2]), A.dtype)
    single, zero = A.shape[1] == 1, _zero(A)
    for k in range(A.shape[0]):
        for i in range(A.shape[1]):
            for j in range(A.shape[2]):
                d = M[k, i, j] * (one if A[k, i, j] > 0.0 else zero)
                A[k, i, j] = d
                sums[k, j] = (d if single else zero + d) if i == 0 else sums[k, j] + d
    gb[...] = sums


@_jit
def leaky_relu_delta(A, M, gb, slope):
    """M where A > 0, else slope M, into A."""
    sums = np.empty((A.shape[0], A.shape[2]), A.dtype)
    single, zero = A.shape[1] == 1, _zero(A)
    for k in range(A.shape[0]):
        for i in range(A.shape[1]):
            for j in range(A.shape[2]):
                m = M[k, i, j]
                d = m if A[k, i, j] > 0.0 else m * slope
                A[k, i, j] = d
                sums[k, j] = (d if single else zero + d) if i == 0 else sums[k, j] + d
    gb[...] = sums


@_jit
def identity_delta(A, M, gb, one):
    """M into A."""
    sums = np.empty((A.shape[0], A.shape[2]), A.dtype)
    single, zero = A.shape[1] == 1, _zero(A)
    for k in range(A.shape[0]):
        for i in range(A.shape[1]):
            for j in range(A.shape[2]):
                d = M[k, i, j]
                A[k, i, j] = d
                sums[k, j] = (d if single else zero + d) if i == 0 else sums[k, j] + d
    gb[...] = sums


# --- softmax cross-entropy: the loss of losses.py's _softmax_cross_entropy, its per-row steps
# fused. Z is the (K, m, classes) block of output pre-activations, T the (Kt, m) class ids (Kt
# is K, or 1 for targets the runs share); exp and log stay NumPy's (numba's give other last
# bits), and so do the sums over the m rows. The sum over a row's classes is np.add.reduce's
# pairwise sum, in its order, for up to PAIRWISE_BLOCK classes (kernels.py leaves more to NumPy).

PAIRWISE_BLOCK = 128


@_jit
def _pairwise_sum(row, n, zero):
    """np.add.reduce's sum of row[:n], n ≤ PAIRWISE_BLOCK: in order below 8, else 8 running
    sums, then the rest in order (above the block NumPy halves the row, which the callers
    leave to NumPy)."""
    if n < 8:
        total = zero
        for i in range(n):
            total += row[i]
        return total
    r0, r1, r2, r3, r4, r5, r6, r7 = row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7]
    i = 8
    while i < n - n % 8:
        r0 += row[i]
        r1 += row[i + 1]
        r2 += row[i + 2]
        r3 += row[i + 3]
        r4 += row[i + 4]
        r5 += row[i + 5]
        r6 += row[i + 6]
        r7 += row[i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += row[i]
        i += 1
    return total


@_jit
def softmax_shift(Z, T, picked):
    """Z ← Z − its row's maximum (NaN kept, as np.maximum does); picked ← each row's entry at
    its target, shifted."""
    shared = T.shape[0] == 1
    for k in range(Z.shape[0]):
        targets = T[0] if shared else T[k]
        for i in range(Z.shape[1]):
            top = Z[k, i, 0]
            for j in range(1, Z.shape[2]):
                z = Z[k, i, j]
                if top == top and not top >= z:  # z larger, or NaN
                    top = z
            for j in range(Z.shape[2]):
                Z[k, i, j] -= top
            picked[k, i] = Z[k, i, targets[i]]


@_jit
def softmax_normalise(Z, T, D, scale, totals, with_delta):
    """From E = exp(shifted Z): totals ← each row's sum, Z ← E / total (the probabilities);
    with ``with_delta``, D ← Z scale, minus scale at each row's target."""
    shared, zero = T.shape[0] == 1, _zero(Z)
    for k in range(Z.shape[0]):
        targets = T[0] if shared else T[k]
        for i in range(Z.shape[1]):
            total = _pairwise_sum(Z[k, i], Z.shape[2], zero)
            totals[k, i] = total
            if with_delta:
                for j in range(Z.shape[2]):
                    p = Z[k, i, j] / total
                    Z[k, i, j] = p
                    D[k, i, j] = p * scale
                D[k, i, targets[i]] -= scale
            else:
                for j in range(Z.shape[2]):
                    Z[k, i, j] /= total
