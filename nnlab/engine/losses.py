"""Losses fused with the output activation.

Every loss function has the signature ``loss(Z, T, D, scale) -> float``:

- ``Z`` : ndarray of shape (m, n_outputs), the output layer's pre-activations; overwritten in place
  with the output activations ``A`` (probabilities for softmax and sigmoid).
- ``T`` : targets for the ``m`` samples: int64 class ids of shape (m,) for ``cross_entropy``,
  floats of shape (m, n_outputs) otherwise.
- ``D`` : ndarray like ``Z`` that receives ``scale * ∂(Σ_i ℓ_i)/∂Z`` (the delta the backward pass
  starts from), or None when only the value is wanted.
- returns ``Σ_i ℓ_i``, the per-sample losses summed over the ``m`` samples; a caller divides by
  the number of samples to get the mean that ``MLP.loss_and_grads`` reports.

Per-sample losses ℓ_i:

- ``mse``: (1/k) Σ_j (y_ij − ŷ_ij)² over the k outputs, so the mean over samples is the textbook
  L = 1/n Σ (y − ŷ)² for one output and the mean over every element for several.
- ``cross_entropy``: −log p_i,y_i with p = softmax(z); computed as logsumexp(z) − z_y.
- ``binary_cross_entropy``: (1/k) Σ_j −[y log p + (1 − y) log(1 − p)] with p = sigmoid(z), computed
  from the logits as softplus(z) − y z.

Softmax + cross-entropy and sigmoid + binary cross-entropy use the fused gradient p − y, and every
value is computed from logits, so inputs of ±1000 stay finite.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnlab.checks import InputError
from nnlab.engine.activations import OUTPUT_ACTIVATIONS, OUTPUT_DERIVATIVES

LossFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None", float], float]

_rows = np.arange(1024)


def _total(values: np.ndarray) -> np.ndarray:
    """The sum over a batch's (rows, outputs), the last two axes (a pack of runs adds a leading
    one), taken as one pairwise sum over the rows' contiguous block so that a run's sum is the
    same alone and in a pack."""
    return np.add.reduce(values.reshape(*values.shape[:-2], -1), axis=-1)


def _sums(loss: np.ndarray) -> float | np.ndarray:
    """A run's summed loss as a float; a pack's as one sum per run."""
    return float(loss) if loss.ndim == 0 else loss


def _row_index(m: int) -> np.ndarray:
    global _rows
    if m > len(_rows):
        _rows = np.arange(2 * m)
    return _rows[:m]


def _at_targets(Z: np.ndarray, T: np.ndarray) -> tuple:
    """The index of each sample's target class in ``Z`` (m, classes), or in a pack's
    (K, m, classes) with targets (m,) shared by its runs or (K, m), each run its own."""
    rows = _row_index(Z.shape[-2])
    if T.ndim == 1:
        return ..., rows, T
    return _row_index(Z.shape[0])[:, None], rows, T


def _softmax_cross_entropy(Z, T, D, scale):
    at_targets = _at_targets(Z, T)
    # ufunc.reduce directly: np.sum / ndarray.max add microseconds of dispatch per call
    Z -= np.maximum.reduce(Z, axis=-1, keepdims=True)
    # a pack's gather can come out strided (run axis innermost): made contiguous, each run's
    # sum is the same pairwise sum a run alone takes
    loss = -np.add.reduce(np.ascontiguousarray(Z[at_targets]), axis=-1)
    np.exp(Z, out=Z)
    total = np.add.reduce(Z, axis=-1, keepdims=True)
    Z /= total
    loss += _total(np.log(total, out=total))
    if D is not None:
        np.multiply(Z, scale, out=D)
        D[at_targets] -= scale
    return _sums(loss)


def _sigmoid_binary_cross_entropy(Z, T, D, scale):
    k = Z.shape[-1]
    # softplus(z) - t z = max(z, 0) - t z + log(1 + e^-|z|)
    tail = np.abs(Z)
    np.negative(tail, out=tail)
    np.exp(tail, out=tail)
    np.log1p(tail, out=tail)
    loss = _total(tail)
    loss += _total(np.maximum(Z, 0.0, out=tail))
    loss -= _total(np.multiply(T, Z, out=tail))
    OUTPUT_ACTIVATIONS["sigmoid"](Z)
    if D is not None:
        np.subtract(Z, T, out=D)
        D *= scale / k
    return _sums(loss) / k


def _mean_squared_error(output: str) -> LossFn:
    activate = OUTPUT_ACTIVATIONS[output]
    derivative = OUTPUT_DERIVATIVES[output]

    def mse(Z, T, D, scale):
        k = Z.shape[-1]
        activate(Z)
        diff = np.subtract(Z, T, out=D)
        loss = _total(diff * diff) / k
        if D is not None:
            D *= 2.0 * scale / k
            derivative(Z, D)
        return _sums(loss)

    return mse


LOSS_NAMES = ("mse", "cross_entropy", "binary_cross_entropy")

# The output activation a loss gets when the network does not name one.
DEFAULT_OUTPUT = {"mse": "identity", "cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}

# (loss, output activation) -> loss function; a pair missing here is a mismatch.
LOSSES: dict[tuple[str, str], LossFn] = {
    ("cross_entropy", "softmax"): _softmax_cross_entropy,
    ("binary_cross_entropy", "sigmoid"): _sigmoid_binary_cross_entropy,
    **{("mse", output): _mean_squared_error(output) for output in OUTPUT_ACTIVATIONS},
}


def check_loss_output(loss: str, output: str) -> None:
    """Raise ``InputError`` unless ``LOSSES`` pairs ``loss`` with output activation ``output``."""
    if (loss, output) not in LOSSES:
        fits = sorted(o for (name, o) in LOSSES if name == loss)
        raise InputError(
            f"loss {loss!r} does not fit output activation {output!r}; "
            f"{loss} needs output {' or '.join(fits)} (default {DEFAULT_OUTPUT[loss]!r})"
        )


def _argmax_correct(A: np.ndarray, T: np.ndarray) -> int:
    predicted = A.argmax(axis=-1)
    truth = T if np.issubdtype(T.dtype, np.integer) else T.argmax(axis=-1)  # ids or one-hot
    return _counts(predicted == truth)


def _threshold_correct(A: np.ndarray, T: np.ndarray) -> int:
    # a sample is right when every output is on the right side of 0.5 (multi-label included)
    return _counts(((A > 0.5) == (T > 0.5)).all(axis=-1))


def _counts(right: np.ndarray) -> int | np.ndarray:
    """How many samples are right: an int for a run, one count per run for a pack."""
    counts = np.count_nonzero(right, axis=-1)
    return int(counts) if right.ndim == 1 else counts


# How a classification loss counts a sample as classified right.
ACCURACY = {"cross_entropy": _argmax_correct, "binary_cross_entropy": _threshold_correct}


def count_correct(A: np.ndarray, T: np.ndarray) -> int:
    """Number of samples classified right by an mse network trained on class ids: argmax for
    several outputs, p > 0.5 for one.

    Parameters
    ----------
    A : ndarray of shape (m, n_outputs)
        Output activations.
    T : ndarray of shape (m,) or (m, n_outputs)
        Class ids, one-hot rows, or 0/1 targets of a single sigmoid output.
    """
    if A.shape[-1] == 1:
        return _threshold_correct(A, T)
    return _argmax_correct(A, T)
