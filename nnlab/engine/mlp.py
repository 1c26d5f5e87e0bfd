"""The multilayer perceptron: dense layers, forward pass, loss and gradients by backpropagation.

Notation follows the textbook: layer l computes Z_l = A_{l-1} W_l + b_l and A_l = f_l(Z_l), with
A_0 = X. Backpropagation starts from the output delta D_L = ∂L/∂Z_L and applies the chain rule:
∂L/∂W_l = A_{l-1}ᵀ D_l, ∂L/∂b_l = Σ_rows D_l, D_{l-1} = (D_l W_lᵀ) ⊙ f'_{l-1}(Z_{l-1}).

Initialisation presets (``MLP(init=...)``), for a layer of shape (fan_in, fan_out); the normal
ones are plain normals, as PyTorch's ``init`` functions draw them (Keras truncates at 2σ):

- ``auto``: He-normal for the hidden layers of the ReLU family, Glorot-uniform for every other
  layer (the output layer included); zero biases.
- ``glorot_uniform``: U(±√(6 / (fan_in + fan_out))); ``glorot_normal``: N(0, 2 / (fan_in +
  fan_out)); ``he_uniform``: U(±√(6 / fan_in)); ``he_normal``: N(0, 2 / fan_in); ``lecun_normal``:
  N(0, 1 / fan_in). Every layer, zero biases.
- ``sklearn``: scikit-learn's MLP: weights and then biases U(±√(f / (fan_in + fan_out))) with
  f = 2 when the hidden activation is sigmoid (its "logistic"), else 6, for every layer, the
  output layer included (scikit-learn looks at the hidden activation only).
- ``pytorch``: ``nn.Linear``'s default: weights U(±1/√fan_in) (``kaiming_uniform_`` with
  a = √5), then biases U(±1/√fan_in).

Draws come from ``numpy.random.default_rng(seed)`` layer by layer, weights before biases, so the
same seed gives the same network; they do not reproduce scikit-learn's or PyTorch's generators.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from nnlab.checks import InputError, check_choice, check_number
from nnlab.engine.activations import HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS, bias_gradient
from nnlab.engine.kernels import hidden_delta, hidden_layer, output_loss
from nnlab.engine.losses import DEFAULT_OUTPUT, check_loss_output

DTYPES = ("float64", "float32")
# Rows processed at once; larger batches are done in chunks of this many and their gradients summed.
CHUNK_ROWS = 2048
_HE_INIT = {"relu", "leaky_relu"}


# --- initialisation: init(rng, W, b, activation, hidden) fills one layer's W and b in place -------


def _glorot_uniform(rng, W, b, activation, hidden) -> None:
    fan_in, fan_out = W.shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    W[...] = rng.uniform(-limit, limit, W.shape)


def _glorot_normal(rng, W, b, activation, hidden) -> None:
    fan_in, fan_out = W.shape
    W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / (fan_in + fan_out))


def _he_uniform(rng, W, b, activation, hidden) -> None:
    limit = np.sqrt(6.0 / W.shape[0])
    W[...] = rng.uniform(-limit, limit, W.shape)


def _he_normal(rng, W, b, activation, hidden) -> None:
    W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / W.shape[0])


def _lecun_normal(rng, W, b, activation, hidden) -> None:
    W[...] = rng.standard_normal(W.shape) * np.sqrt(1.0 / W.shape[0])


def _auto(rng, W, b, activation, hidden) -> None:
    if hidden and activation in _HE_INIT:
        _he_normal(rng, W, b, activation, hidden)
    else:
        _glorot_uniform(rng, W, b, activation, hidden)


def _sklearn(rng, W, b, activation, hidden) -> None:
    fan_in, fan_out = W.shape
    factor = 2.0 if activation == "sigmoid" else 6.0
    limit = np.sqrt(factor / (fan_in + fan_out))
    W[...] = rng.uniform(-limit, limit, W.shape)
    b[...] = rng.uniform(-limit, limit, b.shape)


def _pytorch(rng, W, b, activation, hidden) -> None:
    limit = 1.0 / np.sqrt(W.shape[0])
    W[...] = rng.uniform(-limit, limit, W.shape)
    b[...] = rng.uniform(-limit, limit, b.shape)


INITS = {
    "auto": _auto,
    "glorot_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "he_uniform": _he_uniform,
    "he_normal": _he_normal,
    "lecun_normal": _lecun_normal,
    "sklearn": _sklearn,
    "pytorch": _pytorch,
}


class MLP:
    """A fully connected feed-forward network.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_inputs, hidden_1, ..., n_outputs]``, at least two entries, each >= 1.
    activation : str
        Hidden-layer activation: ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu`` or ``identity``.
    output : str or None
        Output activation: ``softmax``, ``sigmoid`` or ``identity``. None lets the loss choose
        (softmax for cross_entropy, sigmoid for binary_cross_entropy, identity for mse) when the
        network is trained, and ``train`` records it here; until then ``forward`` returns the raw
        output scores.
    seed : int
        Seeds the initialisation.
    dtype : {"float64", "float32"}
        Precision of parameters and of every computation.
    init : str
        How the parameters start; see the module docstring. ``auto`` (the default): Glorot-uniform
        for sigmoid / tanh / identity layers and the output layer, He-normal for hidden layers of
        the ReLU family, zero biases. Others: ``glorot_uniform``, ``glorot_normal``,
        ``he_uniform``, ``he_normal``, ``lecun_normal``, and ``sklearn`` and ``pytorch``, which
        draw the biases too, as those libraries do.

    Attributes
    ----------
    params : list of ndarray
        ``[W1, b1, W2, b2, ...]``, ``W`` of shape (fan_in, fan_out) and ``b`` of shape (fan_out,).
        They are views into one contiguous vector owned by the network: writing into them changes
        the model, and optimisers update every parameter with a single vector operation.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "relu",
        output: str | None = None,
        seed: int = 0,
        dtype: str = "float64",
        init: str = "auto",
    ) -> None:
        self.layer_sizes = _check_layer_sizes(layer_sizes)
        self.activation = check_choice("activation", activation, HIDDEN_ACTIVATIONS)
        self.output = None if output is None else check_choice("output", output, OUTPUT_ACTIVATIONS)
        self.dtype = np.dtype(check_choice("dtype", _dtype_name(dtype), DTYPES))
        self.init = check_choice("init", init, INITS)
        self.seed = int(seed)
        self.flat = np.zeros(n_params(self.layer_sizes), dtype=self.dtype)
        self.params = unflatten(self.flat, self.layer_sizes)
        self._initialise(np.random.default_rng(self.seed))

    def _initialise(self, rng: np.random.Generator) -> None:
        fill = INITS[self.init]
        for index in range(self.n_layers):
            W, b = self.params[2 * index], self.params[2 * index + 1]
            fill(rng, W, b, self.activation, index < self.n_layers - 1)

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    @property
    def n_params(self) -> int:
        return self.flat.size

    def output_for(self, loss: str) -> str:
        """The output activation used with ``loss``; checks that the pair makes sense."""
        check_choice("loss", loss, DEFAULT_OUTPUT)
        output = self.output or DEFAULT_OUTPUT[loss]
        check_loss_output(loss, output)
        if output == "softmax" and self.layer_sizes[-1] < 2:
            raise InputError(
                "a softmax output needs at least 2 outputs (classes), this network has 1; "
                "use binary_cross_entropy with a sigmoid output for two classes"
            )
        return output

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Output-layer activations for ``X`` of shape (n_samples, n_inputs).

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
        """
        X = self._check_inputs(X)
        A = X
        for index in range(self.n_layers):
            W, b = self.params[2 * index], self.params[2 * index + 1]
            A = A @ W
            A += b
            hidden = index < self.n_layers - 1
            if hidden:
                HIDDEN_ACTIVATIONS[self.activation](A)
            else:
                OUTPUT_ACTIVATIONS[self.output or "identity"](A)
        return A

    def loss_and_grads(
        self, X: np.ndarray, Y: np.ndarray, loss: str, alpha: float = 0.0
    ) -> tuple[float, list[np.ndarray]]:
        """Mean loss over the samples, plus the L2 penalty 0.5 α Σ‖W‖² / n_samples when
        ``alpha`` > 0, and its gradient with respect to every parameter.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_inputs)
        Y : ndarray
            Class ids of shape (n_samples,) or one-hot rows for ``cross_entropy``; targets of
            shape (n_samples, n_outputs) (or (n_samples,) for one output) otherwise.
        loss : {"mse", "cross_entropy", "binary_cross_entropy"}
        alpha : float
            L2 strength α >= 0, as ``train`` applies it to each batch (see ``L2Penalty``).

        Returns
        -------
        loss_value : float
        grads : list of ndarray, aligned with ``params``
        """
        output = self.output_for(loss)
        alpha = check_number("alpha", alpha, at_least=0)
        X = self._check_inputs(X)
        T = prepare_targets(Y, loss, self.layer_sizes[-1], len(X), self.dtype)
        backprop = Backprop(self, loss, output, max_rows=len(X), alpha=alpha)
        total, _ = backprop.loss_and_grads(X, T)
        grads = [g.copy() for g in backprop.grads]
        return total / len(X), grads

    def _check_inputs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.layer_sizes[0]:
            raise InputError(
                f"X must have shape (n_samples, {self.layer_sizes[0]}) for this network, "
                f"got {X.shape}"
            )
        return np.ascontiguousarray(X, dtype=self.dtype)

    def __repr__(self) -> str:
        return (
            f"MLP(layer_sizes={list(self.layer_sizes)}, activation={self.activation!r}, "
            f"output={self.output!r}, seed={self.seed}, dtype={self.dtype.name!r}, "
            f"init={self.init!r})"
        )


class Backprop:
    """Buffers and the forward/backward pass for batches of up to ``max_rows`` samples.

    A batch larger than ``CHUNK_ROWS`` is processed in chunks of that many rows whose gradients
    are summed, so memory stays at one chunk's activations however large the batch (full-batch
    GD on a big data set included), and the element-wise work stays in cache. Within a chunk,
    the delta of a hidden layer is written over that layer's activations once they have been
    used, so one scratch matrix as wide as the widest layer is the only other buffer. Everything
    is allocated here once: a training run allocates nothing per batch beyond NumPy's small
    temporaries. ``grads`` are views into ``flat_grad``, laid out like ``net.params``. With
    ``alpha`` > 0 each batch's loss and gradients get the ``L2Penalty``; with 0 no work is added.
    """

    def __init__(self, net: MLP, loss: str, output: str, max_rows: int, alpha: float = 0.0):
        self.loss = output_loss(loss, output, net.flat.size)
        # the hidden layers' element-wise steps, on a (1, m, width) view of the batch's block
        self.layer = hidden_layer(net.activation, net.dtype, net.flat.size)
        self.delta = hidden_delta(net.activation, net.dtype, net.flat.size)
        sizes, dtype = net.layer_sizes, net.dtype
        self.rows = rows = min(max_rows, CHUNK_ROWS)
        self.activations = [np.empty((rows, width), dtype) for width in sizes[1:]]
        self.output_delta = np.empty((rows, sizes[-1]), dtype)
        self._scratch = np.empty(rows * max(sizes[1:-1], default=0), dtype)
        self.flat_grad = np.zeros_like(net.flat)
        self.grads = unflatten(self.flat_grad, sizes)
        self._layers = _layer_views(net, self.grads)
        if max_rows > rows:
            self._chunk_grad = np.zeros_like(net.flat)
            self._chunk_layers = _layer_views(net, unflatten(self._chunk_grad, sizes))
        self.penalty = L2Penalty(net, self.flat_grad, alpha) if alpha > 0 else None

    def forward(self, X: np.ndarray, m: int) -> np.ndarray:
        """Hidden activations into the buffers; returns the output layer's pre-activations."""
        A = X
        last = len(self._layers) - 1
        for index, (W, b, _, _) in enumerate(self._layers):
            Z = self.activations[index][:m]
            np.matmul(A, W, out=Z)
            if index < last:
                self.layer(Z[None], b[None])
            else:
                Z += b
            A = Z
        return A

    def loss_and_grads(self, X: np.ndarray, T: np.ndarray, correct=None) -> tuple[float, int]:
        """Forward, loss and backward for the rows of ``X``: gradients of the mean loss (with the
        L2 penalty, if any) into ``grads``. Returns the summed per-sample loss (plus m times the
        penalty on the mean) and, when ``correct`` is given, how many samples the forward pass
        classified right."""
        m = len(X)
        if m <= self.rows:
            total, hits = self._chunk(X, T, 1.0 / m, correct, self._layers)
        else:
            total, hits = self._chunk(
                X[: self.rows], T[: self.rows], 1.0 / m, correct, self._layers
            )
            for start in range(self.rows, m, self.rows):
                stop = start + self.rows
                more = self._chunk(
                    X[start:stop], T[start:stop], 1.0 / m, correct, self._chunk_layers
                )
                self.flat_grad += self._chunk_grad
                total, hits = total + more[0], hits + more[1]
        if self.penalty is not None:
            total += self.penalty.add_gradient(m)
        return total, hits

    def _chunk(self, X, T, scale: float, correct, layers) -> tuple[float, int]:
        m = len(X)
        Z = self.forward(X, m)
        D = self.output_delta[:m]
        total = self.loss(Z, T, D, scale)
        hits = correct(Z, T) if correct is not None else 0
        self.backward(X, D, m, layers)
        return total, hits

    def backward(self, X: np.ndarray, D: np.ndarray, m: int, layers) -> None:
        """Chain rule from the output delta ``D`` down; overwrites the hidden activations. A
        hidden layer's bias gradient comes with its delta (``hidden_delta``)."""
        bias_gradient(D[None], layers[-1][3][None])
        for index in range(len(layers) - 1, -1, -1):
            W, _, gW, _ = layers[index]
            A_prev = X if index == 0 else self.activations[index - 1][:m]
            if m == 1:
                # an outer product into the buffer is far cheaper than a (k×1)(1×n) matmul
                np.multiply(A_prev.T, D, out=gW)
            else:
                np.matmul(A_prev.T, D, out=gW)
            if index > 0:
                upstream = self._scratch[: m * W.shape[0]].reshape(m, W.shape[0])
                np.matmul(D, W.T, out=upstream)
                self.delta(A_prev[None], upstream[None], layers[index - 1][3][None])
                D = A_prev

    def evaluate(self, X: np.ndarray, T: np.ndarray, correct=None) -> tuple[float, int]:
        """Summed loss, and correct count when ``correct`` is given, over ``X`` in chunks."""
        total, hits = 0.0, 0
        for start in range(0, len(X), self.rows):
            Xc, Tc = X[start : start + self.rows], T[start : start + self.rows]
            Z = self.forward(Xc, len(Xc))
            total += self.loss(Z, Tc, None, 1.0 / len(Xc))
            if correct is not None:
                hits += correct(Z, Tc)
        return total, hits


class L2Penalty:
    """scikit-learn's L2 term for a batch of m samples: 0.5 α Σ_l ‖W_l‖² / m added to the batch's
    mean loss, α W_l / m to its weight gradients; biases are not penalised.

    On the batch's summed loss the term is 0.5 α Σ‖W‖², whatever m, so an epoch's mean training
    loss (summed over its batches, over N) holds it once per update, at the weights that update
    started from: scikit-learn's ``loss_curve_``.
    """

    def __init__(self, net: MLP, grad: np.ndarray, alpha: float) -> None:
        self.theta, self.grad = net.flat, grad
        # α on the weights, 0 on the biases, laid out like θ, so the term is one vector operation
        self.alpha_on_weights = alpha * weight_mask(net.layer_sizes, net.dtype)
        self._over_rows: dict[int, np.ndarray] = {}  # m -> α / m on the weights
        self._scratch = np.empty_like(net.flat)

    def value(self) -> float:
        """0.5 α Σ‖W‖²."""
        alpha_W = np.multiply(self.theta, self.alpha_on_weights, out=self._scratch)
        return 0.5 * inner(alpha_W, self.theta, out=alpha_W)

    def add_gradient(self, m: int) -> float:
        """Add α W / m to the gradient; return 0.5 α Σ‖W‖²."""
        scale = self._over_rows.get(m)
        if scale is None:
            # a run has at most two batch sizes: the full one and the remainder
            scale = self._over_rows[m] = self.alpha_on_weights / m
        alpha_W_over_m = np.multiply(self.theta, scale, out=self._scratch)
        self.grad += alpha_W_over_m
        return 0.5 * m * inner(alpha_W_over_m, self.theta, out=alpha_W_over_m)


def inner(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> float:
    """Σ a_i b_i as NumPy's pairwise sum of the products (into ``out``, which may be ``a``):
    the same bits however many threads BLAS runs, where OpenBLAS's ``vdot`` splits a vector of
    more than about 10,000 elements between its threads, and the sum's rounding with them (a
    run at ``-j 1`` and the same run in a ``-j 2`` worker would differ); and the same for a
    run alone and for its row of a pack, which ``inner_rows`` sums alike."""
    return float(np.add.reduce(np.multiply(a, b, out=out)))


def inner_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``inner`` of each row of the (K, P) matrices: one per run of a pack."""
    return np.add.reduce(np.multiply(a, b, out=out), axis=-1)


def weight_mask(layer_sizes: Sequence[int], dtype) -> np.ndarray:
    """1 on every weight and 0 on every bias, laid out like the parameter vector."""
    mask = np.zeros(n_params(layer_sizes), dtype=dtype)
    for W in unflatten(mask, layer_sizes)[0::2]:
        W[...] = 1.0
    return mask


def _layer_views(net: MLP, grads: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
    """(W, b, gW, gb) for each layer."""
    params = net.params
    return list(zip(params[0::2], params[1::2], grads[0::2], grads[1::2], strict=True))


def n_params(layer_sizes: Sequence[int]) -> int:
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in pairwise(layer_sizes))


def unflatten(flat: np.ndarray, layer_sizes: Sequence[int]) -> list[np.ndarray]:
    """Views ``[W1, b1, W2, b2, ...]`` into ``flat``; each ``W`` is followed by its ``b``."""
    views, offset = [], 0
    for fan_in, fan_out in pairwise(layer_sizes):
        views.append(flat[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out))
        offset += fan_in * fan_out
        views.append(flat[offset : offset + fan_out])
        offset += fan_out
    return views


def prepare_targets(Y, loss: str, n_outputs: int, n_samples: int, dtype) -> np.ndarray:
    """Targets in the form the loss functions take, checked against the network's outputs.

    ``cross_entropy`` gets int64 class ids of shape (n,), from ids or one-hot rows; the other
    losses get floats of shape (n, n_outputs): class ids become one-hot rows for mse with several
    outputs, and a 1-D target becomes a column for one output.
    """
    Y = np.asarray(Y)
    if len(Y) != n_samples:
        raise InputError(f"X has {n_samples} samples but y has {len(Y)}; they must match")
    if loss == "cross_entropy":
        return _class_ids(Y, n_outputs)
    if Y.ndim == 1 and n_outputs > 1 and np.issubdtype(Y.dtype, np.integer):
        ids = _class_ids(Y, n_outputs)
        return np.eye(n_outputs, dtype=dtype)[ids]
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim != 2 or Y.shape[1] != n_outputs:
        raise InputError(
            f"y must have shape ({n_samples}, {n_outputs}) for a network with {n_outputs} "
            f"outputs, got {Y.shape}"
        )
    if loss == "binary_cross_entropy" and Y.size and (Y.min() < 0 or Y.max() > 1):
        bad = Y[(Y < 0) | (Y > 1)][0]
        raise InputError(f"binary_cross_entropy targets must be in [0, 1], got {bad}")
    return np.ascontiguousarray(Y, dtype=dtype)


def _class_ids(Y: np.ndarray, n_classes: int) -> np.ndarray:
    if Y.ndim == 2:
        if Y.shape[1] != n_classes:
            raise InputError(f"one-hot y must have {n_classes} columns, got {Y.shape[1]}")
        if not (np.isin(Y, (0, 1)).all() and (Y.sum(axis=1) == 1).all()):
            raise InputError(
                "2-D y for cross_entropy must be one-hot rows (0/1 with a single 1); "
                "pass class ids of shape (n_samples,) otherwise"
            )
        Y = Y.argmax(axis=1)
    if Y.ndim != 1 or not (np.issubdtype(Y.dtype, np.integer) or _all_whole(Y)):
        raise InputError(f"class labels must be integers 0..{n_classes - 1}, got dtype {Y.dtype}")
    ids = Y.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_classes):
        bad = ids[(ids < 0) | (ids >= n_classes)][0]
        raise InputError(
            f"class label {bad} is out of range for {n_classes} outputs "
            f"(expected 0..{n_classes - 1})"
        )
    return ids


def _all_whole(Y: np.ndarray) -> bool:
    return np.issubdtype(Y.dtype, np.floating) and bool(np.all(np.round(Y) == Y))


def _dtype_name(dtype: object) -> str:
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


def _check_layer_sizes(layer_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(layer_sizes)
    if len(sizes) < 2:
        raise InputError(f"layer_sizes needs at least [n_inputs, n_outputs], got {list(sizes)}")
    if any(not isinstance(s, int | np.integer) or s < 1 for s in sizes):
        raise InputError(f"layer_sizes must be integers >= 1, got {list(sizes)}")
    return tuple(int(s) for s in sizes)
