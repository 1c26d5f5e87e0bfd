"""The floating-point arithmetic a run trains in: IEEE's, or with subnormal numbers flushed.

A float64 below 2.2e-308 in magnitude (a float32 below 1.2e-38) is subnormal, and an x86 core
takes a slow microcode path, some hundred cycles, for each operation that reads or makes one.
Saturated units make them: a sigmoid unit far below zero, softmax probabilities of e^-700, and
the products of such small numbers in the deltas and weight gradients. At large learning rates
a sigmoid network's steps took 3.1-4.1× longer than flushed (benchmarks/subnormals.py).

A run's ``subnormals`` setting chooses:

- ``keep`` (the default): IEEE arithmetic, the reference every other result is tested against.
  Where the thread already flushes (another library set FTZ or DAZ, as
  ``torch.set_flush_denormal(True)`` does, or a flushed run's ``on_epoch`` trains a kept one),
  both bits are cleared for the length of the run and put back afterwards; that needs numba
  too, and without it such a thread is an ``InputError``, not a run in other arithmetic than
  asked for.
- ``flush``: while the run trains, the thread that trains it sets its MXCSR register's FTZ bit
  (a subnormal result becomes 0) and DAZ bit (a subnormal operand is read as 0), as
  ``torch.set_flush_denormal(True)`` does, and puts the register back afterwards. BLAS's own
  threads keep their own registers, so BLAS is held to one thread meanwhile (threadpoolctl):
  every product is then computed in the training thread, and NumPy's loops, numba's kernels
  and BLAS all flush, however many BLAS threads the process has.
  A run that meets no subnormal number gives the same bits either way; one that meets them
  may differ. Needs the ``fast`` extra (numba, threadpoolctl) and an x86-64 CPU.
"""

from __future__ import annotations

import contextlib
import platform
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from nnlab.checks import InputError, check_choice

SUBNORMALS = ("keep", "flush")
FTZ_DAZ = 0x8040  # MXCSR bit 15, flush to zero, and bit 6, denormals are zero
X86_64 = ("x86_64", "amd64")
_tools: tuple[ModuleType, Any] | None = None  # the MXCSR module, a BLAS thread controller
# BLAS's thread count is the process's: held at one from the first flushed run that starts to
# the last that ends, so that runs on several threads (the threading backend) never undo each
# other's hold
_hold = threading.Lock()
_holders = 0
_held: Any = None  # threadpoolctl's limiter, which knows the count to put back
# what the thread's arithmetic makes of these says whether it flushes: DAZ reads the subnormal
# operand as 0, FTZ makes the subnormal product 0 (IEEE gives neither). Built from their bits:
# a literal 5e-324 parsed in a thread that flushes would be 0.0, and cached so in the .pyc
_SUBNORMAL = np.array([1, 0x0010000000000000], np.uint64).view(np.float64)  # 5e-324, tiny
_HALVES = np.array([1.0, 0.5])


def check(mode: object, in_this_thread: bool = False) -> str:
    """``mode`` as a run's ``subnormals`` setting; ``flush`` where it cannot be had is an
    ``InputError`` saying why. ``in_this_thread``: the run trains in this thread or in one it
    starts (a new thread inherits its register), so ``keep`` in a thread that flushes is
    checked too."""
    mode = check_choice("subnormals", mode, SUBNORMALS)
    if mode == "flush":
        _flushing_tools()
    elif in_this_thread and thread_flushes():
        _mxcsr_module("keep")
    return mode


@contextlib.contextmanager
def training(mode: str) -> Iterator[None]:
    """This thread's arithmetic for the length of the block, as ``mode`` says (see above)."""
    if mode == "keep":
        if not thread_flushes():
            yield
            return
        with _register(_mxcsr_module("keep"), clear=FTZ_DAZ):
            yield
        return
    register, blas = _flushing_tools()
    with _one_blas_thread(blas), _register(register, set_=FTZ_DAZ):
        yield


def thread_flushes() -> bool:
    """Whether this thread's arithmetic flushes subnormal numbers (FTZ or DAZ is set)."""
    return bool(np.any(_SUBNORMAL * _HALVES == 0))


@contextlib.contextmanager
def _register(register: ModuleType, set_: int = 0, clear: int = 0) -> Iterator[None]:
    before = register.read()
    register.write((before | set_) & ~clear)
    try:
        yield
    finally:
        register.write(before)


@contextlib.contextmanager
def _one_blas_thread(blas) -> Iterator[None]:
    global _holders, _held
    with _hold:
        if _holders == 0:
            _free_blas_control()
            _held = blas.limit(limits=1, user_api="blas")
            _check_one_thread(blas)
        _holders += 1
    try:
        yield
    finally:
        with _hold:
            _holders -= 1
            if _holders == 0:
                _free_blas_control()  # the last run to end may train in another thread
                _held.restore_original_limits()
                _held = None
                _free_blas_control()


def _free_blas_control() -> None:
    """No thread controls OpenBLAS's thread count now; the next to set a limit takes it.
    threadpoolctl (3.8) lets one thread only, the first that set a limit, change a
    process-wide OpenBLAS pool (pthreads), and silently ignores the others. A hold frees the
    control and sets its limit at once, so that its own thread has it for the whole hold (a
    flushed run in another thread than the first: the threading backend, a user's thread) and
    no other thread's limit undoes it meanwhile; it frees it again when it ends."""
    clear = _clear_controlling_thread()
    if clear is not None:
        clear(force=True)


def _clear_controlling_thread():
    """threadpoolctl's ``OpenBLASController.clear_controlling_thread``, or None for a
    threadpoolctl without the rule (every thread's limit takes)."""
    import threadpoolctl

    controller = getattr(threadpoolctl, "OpenBLASController", None)
    return getattr(controller, "clear_controlling_thread", None)


def _check_one_thread(blas) -> None:
    """The hold took: every BLAS library runs one thread (else a large product would flush
    only in part); if not, an error saying so, with BLAS put back."""
    counts = {info["num_threads"] for info in blas.info() if info["user_api"] == "blas"}
    if counts - {1}:
        _held.restore_original_limits()
        _free_blas_control()
        runs = ", ".join(sorted(map(str, counts)))
        raise InputError(
            f"subnormals='flush' could not hold BLAS to one thread (it runs {runs}): its "
            "threads would leave large products subnormal; use subnormals='keep'"
        )


def _flushing_tools() -> tuple[ModuleType, Any]:
    """The MXCSR register and a BLAS thread controller, or an ``InputError`` saying why not."""
    global _tools
    if _tools is None:
        register = _mxcsr_module("flush")
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError as error:
            raise InputError(_cannot_import("flush", error)) from None
        _tools = register, ThreadpoolController()  # the BLAS libraries NumPy has loaded
    return _tools


def _mxcsr_module(mode: str) -> ModuleType:
    """nnlab/engine/_mxcsr.py, where this CPU and the installed packages can reach the
    register, else an ``InputError`` on ``mode``'s behalf."""
    machine = platform.machine()
    if machine.lower() not in X86_64:
        if mode == "keep":
            raise InputError(
                f"subnormals='keep' in a thread that flushes subnormal numbers (FTZ/DAZ set "
                f"outside this run): nnlab clears the flags on x86-64 only, and this CPU is "
                f"{machine!r}: clear them before training"
            )
        raise InputError(
            f"subnormals='flush' needs an x86-64 CPU, whose MXCSR register flushes them; "
            f"this one is {machine!r}: use subnormals='keep'"
        )
    try:
        from nnlab.engine import _mxcsr
    except ImportError as error:
        raise InputError(_cannot_import(mode, error)) from None
    return _mxcsr


def _cannot_import(mode: str, error: ImportError) -> str:
    if mode == "keep":
        return (
            f"subnormals='keep' in a thread that flushes subnormal numbers (FTZ/DAZ set "
            f"outside this run, e.g. by torch.set_flush_denormal(True)) needs numba to train "
            f"in IEEE arithmetic, and it cannot be imported ({error}); install it with pip "
            "install 'nnlab[fast]', or clear the flags before training"
        )
    return (
        f"subnormals='flush' needs numba and threadpoolctl, which cannot be imported "
        f"({error}); install them with pip install 'nnlab[fast]', or use subnormals='keep'"
    )
