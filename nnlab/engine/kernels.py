"""The compiled path: fused update rules, each one pass over the parameters (numba, optional).

An update rule in NumPy is several passes over the parameter vector: Adam's is twelve, each
reading and writing the whole (K, P) matrix of a pack, so that at batch 32 the update of a
64-128-10 network costs more than its forward and backward passes together. Each kernel here
does the same IEEE operations, in the same order, for one element at a time, in one pass: its
results equal the NumPy rule's to the last bit (tests/engine/test_engine_kernels.py holds every
rule, with and without decay, alone and packed, to that). The NumPy rules in optimizers.py stay
the reference.

Which path runs is the environment's ``NNLAB_KERNELS``, read when a rule is built (set it before
a sweep starts its workers, which inherit it):

- ``auto`` (the default): the compiled kernels when numba is installed (``pip install
  'nnlab[fast]'``), else NumPy;
- ``numba``: the compiled kernels, and an error if numba cannot be imported;
- ``numpy``: the NumPy reference only.

Kernels are compiled once per dtype and cached on disk (numba's ``cache=True``), so a new
process, a sweep's worker say, loads them instead of compiling them again.

Every kernel takes the parameter matrix θ (K, P), its gradient and the rule's state as 2-D
arrays, a run a row (a run alone is a pack of one), and each run's hyperparameters as a (K, 1)
column.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

from nnlab.checks import InputError

KERNEL_CHOICES = ("auto", "numba", "numpy")
ENVIRONMENT = "NNLAB_KERNELS"
_compiled: ModuleType | None = None
_missing: str | None = None  # why numba could not be imported, once it could not


def check() -> None:
    """An ``InputError`` now, before anything is trained, for a bad ``NNLAB_KERNELS`` or for
    numba asked for and not installed; numba itself is imported only where a rule is built."""
    if choice() == "numba" and importlib.util.find_spec("numba") is None:
        raise _not_installed("No module named 'numba'")


def choice() -> str:
    """``NNLAB_KERNELS``: auto (when unset), numba or numpy."""
    value = os.environ.get(ENVIRONMENT, "auto")
    if value not in KERNEL_CHOICES:
        raise InputError(f"{ENVIRONMENT}={value!r}: expected one of {', '.join(KERNEL_CHOICES)}")
    return value


def compiled() -> ModuleType | None:
    """The module of compiled kernels, or None when the update rules run in NumPy."""
    global _compiled, _missing
    wanted = choice()
    if wanted == "numpy":
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
