"""The signals that stop nnlab as Ctrl-C does: SIGINT, SIGTERM and SIGHUP (a closed terminal).

A stop signal that is ignored when nnlab takes them stays ignored, as whoever ignored it meant:
``nohup`` ignores SIGHUP, so that closing the terminal does not end the sweep, and a shell
script's ``command &`` ignores SIGINT, so that a Ctrl-C meant for the script's foreground does
not reach its background jobs. Signal handlers belong to the main thread; call these from it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RETRY_SECONDS = 0.02  # how soon a signal that came during an import is taken again


@contextlib.contextmanager
def handled(handler: Callable, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """``handler`` for each of ``signals`` that is not ignored, while the block runs; the
    handlers found are put back after."""
    previous = {}
    try:
        for name in set(signals) - ignored():
            previous[name] = signal.signal(name, handler)
        yield
    finally:
        for name, found in previous.items():
            signal.signal(name, found)


def ignored() -> set[int]:
    """The stop signals ignored now, which nnlab leaves ignored."""
    return {name for name in STOP_SIGNALS if signal.getsignal(name) is signal.SIG_IGN}


def interrupt(signum, frame) -> None:
    """Stop as Ctrl-C does: raise KeyboardInterrupt (outside imports, see ``_later``)."""
    if not _later(signum, frame):
        raise KeyboardInterrupt


def interrupt_once(signum, frame) -> None:
    """``interrupt``, after which every stop signal is ignored until ``handled``'s block puts
    its handlers back: so that a second one cannot cut short what the first one started."""
    if not _later(signum, frame):
        for name in STOP_SIGNALS:
            signal.signal(name, signal.SIG_IGN)
        raise KeyboardInterrupt


def _later(signum: int, frame) -> bool:
    """While a module is being imported, take the signal again a moment later, and say so.

    Raised inside an import, KeyboardInterrupt leaves a half-imported module behind, or is
    lost: Cython registers its memoryview types in a bare ``try: ... except: pass`` as
    NumPy's random module loads, and a sweep interrupted there trained on to the end."""
    if not _importing(frame):
        return False
    main = threading.main_thread().ident  # a signal (not interrupt_main): it wakes a wait
    again = threading.Timer(RETRY_SECONDS, signal.pthread_kill, (main, signum))
    again.daemon = True
    try:
        again.start()
    except RuntimeError:  # no new threads as the interpreter exits: take it now
        return False
    return True


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
