"""The compiled path: update rules and hidden-layer steps, each fused into one pass (numba).

An update rule in NumPy is several passes over the parameter vector: Adam's is twelve, each
reading and writing the whole (K, P) matrix of a pack, so that at batch 32 the update of a
64-128-10 network costs more than its forward and backward passes together. Each kernel here
does the same IEEE operations, in the same order, for one element at a time, in one pass: its
results equal the NumPy rule's to the last bit (tests/engine/test_engine_kernels.py holds every
rule, with and without decay, alone and packed, to that). The NumPy rules in optimizers.py stay
the reference.

The same goes for the element-wise work of a hidden layer that is plain arithmetic
(``hidden_layer`` and ``hidden_delta``): the bias add fused with ReLU or leaky ReLU (and with the
clamp and negation around sigmoid's ``exp``), and each activation's derivative fused with the
layer's bias gradient; and softmax cross-entropy's per-row steps around NumPy's ``exp``
(``output_loss``). ``tanh``, ``exp``, ``log`` and the GEMMs stay NumPy's: numba's libm gives
other last bits.

Which path runs is the environment's ``NNLAB_KERNELS``, read when a run's rule and layers are
built (a sweep reads it once, and its workers take the runner's):

- ``auto`` (the default): the compiled kernels for networks of at least ``AUTO_PARAMETERS``
  parameters when numba is installed (``pip install 'nnlab[fast]'``), else NumPy. A process
  pays 0.7–0.9 s once to import numba and load the kernels, more than a small network's run
  saves (benchmarks/small_grids.py);
- ``numba``: the compiled kernels, and an error if numba cannot be imported;
- ``numpy``: the NumPy reference only.

Kernels are compiled once for each kind of argument (dtype, contiguous or strided) and cached
on disk (numba's ``cache=True``), so a new process, a sweep's worker say, loads them instead
of compiling them again.

Every kernel takes the parameter matrix θ (K, P), its gradient and the rule's state as 2-D
arrays, a run a row (a run alone is a pack of one), and each run's hyperparameters as a (K, 1)
column.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from types import ModuleType

import numpy as np

from nnlab.checks import InputError
from nnlab.engine.activations import (
    DERIVATIVES,
    HIDDEN_ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    SIGMOID_LOWEST,
    bias_gradient,
)
from nnlab.engine.losses import LOSSES, LossFn, _softmax_cross_entropy

KERNEL_CHOICES = ("auto", "numba", "numpy")
ENVIRONMENT = "NNLAB_KERNELS"
# auto compiles networks of at least this many parameters: below, a step is bound by Python
# and NumPy's per-call costs, which fusing cuts by a few µs only
AUTO_PARAMETERS = 1000
_compiled: ModuleType | None = None
_missing: str | None = None  # why numba could not be imported, once it could not


def check() -> None:
    """An ``InputError`` now, before anything is trained, for a bad ``NNLAB_KERNELS`` or for
    numba asked for and not importable (auto imports numba only where it is used)."""
    if choice() == "numba":
        compiled(AUTO_PARAMETERS)


def choice() -> str:
    """``NNLAB_KERNELS``: auto (when unset), numba or numpy."""
    return _checked(os.environ.get(ENVIRONMENT, "auto"))


def adopt(value: str) -> None:
    """Make ``value`` this process's choice: a sweep's worker takes its runner's (the
    environment is left as it is when it already says so)."""
    if os.environ.get(ENVIRONMENT, "auto") != _checked(value):
        os.environ[ENVIRONMENT] = value


def _checked(value: str) -> str:
    if value not in KERNEL_CHOICES:
        raise InputError(f"{ENVIRONMENT}={value!r}: expected one of {', '.join(KERNEL_CHOICES)}")
    return value


def compiled(parameters: int) -> ModuleType | None:
    """The module of compiled kernels for a network of ``parameters`` parameters, or None when
    its steps run in NumPy."""
    global _compiled, _missing
    wanted = choice()
    if wanted == "numpy" or (wanted == "auto" and parameters < AUTO_PARAMETERS):
        return None
    if _compiled is None and _missing is None:
        try:
            from nnlab.engine import _numba_kernels
        except ImportError as error:
            _missing = str(error)
        else:
            _compiled = _numba_kernels
    if _compiled is None and wanted == "numba":
        raise _not_installed(_missing)
    return _compiled


def _not_installed(why: str | None) -> InputError:
    return InputError(
        f"{ENVIRONMENT}=numba, but numba cannot be imported ({why}); install it with "
        "pip install 'nnlab[fast]', or set NNLAB_KERNELS to auto or numpy"
    )


# --- the loss, fused with the output activation ---------------------------------------------


def output_loss(loss: str, output: str, parameters: int) -> LossFn:
    """losses.py's function for ``loss`` on ``output``; on the compiled path, softmax
    cross-entropy's per-row steps fused into two kernels around NumPy's exp (12 NumPy calls,
    three of them fancy indexing, become 6)."""
    module = compiled(parameters)
    if module is not None and (loss, output) == ("cross_entropy", "softmax"):
        return functools.partial(_compiled_softmax_cross_entropy, module)
    return LOSSES[(loss, output)]


def _fusable(module, Z, D, scale) -> bool:
    """Whether the kernels give NumPy's bits here: rows contiguous (NumPy sums a strided row in
    order, not pairwise), at most PAIRWISE_BLOCK classes, and a Python float ``scale`` (which
    NumPy casts to Z's dtype, as the kernel does; a NumPy float64 would make it compute a
    float32 Z's delta in float64). Every Backprop buffer is so."""
    return (
        Z.shape[-1] <= module.PAIRWISE_BLOCK
        and Z.flags.c_contiguous
        and (D is None or D.flags.c_contiguous)
        and type(scale) is float
    )


def _compiled_softmax_cross_entropy(module, Z, T, D, scale):
    """_softmax_cross_entropy's loss, probabilities in Z and delta in D, to the bit."""
    if not _fusable(module, Z, D, scale):
        return _softmax_cross_entropy(Z, T, D, scale)
    alone = Z.ndim == 2  # a run alone: (m, classes), a pack of one here
    Z = Z[None] if alone else Z
    T = T[None] if T.ndim == 1 else T
    picked, totals = np.empty(Z.shape[:2], Z.dtype), np.empty(Z.shape[:2], Z.dtype)
    module.softmax_shift(Z, T, picked)
    np.exp(Z, out=Z)
    delta = Z if D is None else (D[None] if alone else D)
    module.softmax_normalise(Z, T, delta, Z.dtype.type(scale), totals, D is not None)
    loss = -np.add.reduce(picked, axis=-1)
    loss += np.add.reduce(np.log(totals, out=totals), axis=-1)
    return float(loss[0]) if alone else loss


# --- a hidden layer's element-wise steps, on (K, m, width) blocks (a run alone: K = 1) -------


def hidden_layer(
    activation: str, dtype: np.dtype, parameters: int
) -> Callable[[np.ndarray, np.ndarray], None]:
    """``layer(Z, b)``: Z ← f(Z + b) in place, for Z (K, m, width) and b (K, width), in a
    network of ``parameters`` parameters."""
    module = compiled(parameters)
    build = _COMPILED_LAYERS.get(activation)
    if module is None or build is None:
        return functools.partial(_numpy_layer, HIDDEN_ACTIVATIONS[activation])
    return build(module, dtype.type)


def hidden_delta(
    activation: str, dtype: np.dtype, parameters: int
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """``delta(A, M, gb)``: the layer's delta M ⊙ f'(Z) over its activations A (K, m, width),
    and the delta's sum over the m rows, the bias gradient, into gb (K, width)."""
    module = compiled(parameters)
    derivative = DERIVATIVES[activation]
    if module is None:
        return functools.partial(_numpy_delta, derivative)
    kernel = getattr(module, f"{activation}_delta")
    constant = dtype.type(_DELTA_CONSTANTS.get(activation, 1))
    return functools.partial(_compiled_delta, kernel, constant, derivative)


# the hidden activations whose layer step is compiled: each builds it from the kernels module
# and the dtype's scalar type (tanh and identity keep NumPy's: nothing to fuse)
_COMPILED_LAYERS = {
    "relu": lambda module, cast: module.relu_layer,
    "leaky_relu": lambda module, cast: functools.partial(
        _leaky_relu_layer, module, cast(LEAKY_RELU_SLOPE)
    ),
    "sigmoid": lambda module, cast: functools.partial(
        _sigmoid_layer, module, cast(SIGMOID_LOWEST[cast]), cast(1)
    ),
}
# the constant each delta kernel takes (1, the "one" of its arithmetic, unless named here)
_DELTA_CONSTANTS = {"leaky_relu": LEAKY_RELU_SLOPE}


def _numpy_layer(activate, Z: np.ndarray, b: np.ndarray) -> None:
    Z += b[:, None, :]
    activate(Z)


def _numpy_delta(derivative, A: np.ndarray, M: np.ndarray, gb: np.ndarray) -> None:
    derivative(A, M)
    bias_gradient(A, gb)


def _compiled_delta(kernel, constant, derivative, A, M, gb) -> None:
    if A.shape[2] == 1:
        # one unit wide: np.add.reduce sums a contiguous axis then, pairwise, which the
        # kernel's running sum is not
        _numpy_delta(derivative, A, M, gb)
    else:
        kernel(A, M, gb, constant)


def _leaky_relu_layer(module, slope, Z, b) -> None:
    module.leaky_relu_layer(Z, b, slope)


def _sigmoid_layer(module, lowest, one, Z, b) -> None:
    module.sigmoid_layer_head(Z, b, lowest)
    np.exp(Z, out=Z)
    module.sigmoid_layer_tail(Z, one)
