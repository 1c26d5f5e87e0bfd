"""The signals that stop nnlab as Ctrl-C does: SIGINT, SIGTERM and SIGHUP (a closed terminal).

``with stops.taken():`` turns each of them into KeyboardInterrupt in the main thread, with two
rules that Python's own handler lacks:

- a signal that arrives while a module is being imported is taken once the import is done.
  Raised inside an import, KeyboardInterrupt leaves a half-imported module behind, or is lost:
  Cython registers its memoryview types in a bare ``try: ... except: pass`` as NumPy's random
  module loads, and a sweep interrupted there trained on to the end;
- a stop signal that is ignored when the block starts stays ignored, as whoever ignored it
  meant: ``nohup`` ignores SIGHUP, so that closing the terminal does not end the command, and a
  shell script's ``command &`` ignores SIGINT, so that a Ctrl-C meant for the script's
  foreground does not reach its background jobs.

``with stops.held():`` ignores them for a block that must not be cut short. Signal handlers
belong to the main thread: called from another, both change nothing.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from queue import SimpleQueue

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RETRY_SECONDS = 0.02  # how soon a signal that came during an import is taken again
MAX_DEFER_SECONDS = 5.0  # an import that takes longer (hangs) is interrupted after all


def ignored() -> set[int]:
    """The stop signals ignored now, which nnlab leaves ignored."""
    return {name for name in STOP_SIGNALS if signal.getsignal(name) is signal.SIG_IGN}


@contextlib.contextmanager
def taken(signals: tuple[int, ...] = STOP_SIGNALS, *, once: bool = False) -> Iterator[None]:
    """Each of ``signals`` not ignored raises KeyboardInterrupt while the block runs, outside
    imports; with ``once``, the first one does and the ones after are ignored, so that a
    second cannot cut short what the first began. The handlers found are put back after; a
    signal still waiting for its import then raises as the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with_frame = sys._getframe(2)  # this generator's, contextlib's __enter__, the with's
    stop = _Stop(set(signals) - ignored(), once, _depth(with_frame))
    try:
        stop.install()
        yield
    finally:
        stop.uninstall()


@contextlib.contextmanager
def held() -> Iterator[None]:
    """The stop signals ignored while the block runs, then put back as they were."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    found = {name: signal.signal(name, signal.SIG_IGN) for name in STOP_SIGNALS}
    try:
        yield
    finally:
        for name, handler in found.items():
            signal.signal(name, handler)


class _Deferred:
    """The stop signal deferred past an import and not yet taken, by whichever block's handler
    it reaches next (a nested block's, or the one around it): one stop, raised once."""

    signum: int | None = None
    since = 0.0  # when it was first deferred


_deferred = _Deferred()


class _Stop:
    """The handler of one ``taken`` block, and what it defers past imports. A signal caught
    inside an import is sent again by a helper thread (a signal handler must not start one:
    ``Thread.start`` takes a lock the interrupted code may hold)."""

    def __init__(self, signals: set[int], once: bool, depth: int) -> None:
        self.signals, self.once = signals, once
        self.previous: dict[int, object] = {}
        self.depth = depth  # how many frames the ``with`` and its callers are
        self.resends: SimpleQueue = SimpleQueue()
        self.lock = threading.Lock()
        self.closed = False
        self.took = False  # a stop was raised here
        self.resender: threading.Thread | None = None

    def install(self) -> None:
        if not self.signals:
            return
        self.resender = threading.Thread(target=self._resend, name="nnlab-stops", daemon=True)
        self.resender.start()
        for name in self.signals:
            self.previous[name] = signal.signal(name, self.handle)

    def uninstall(self) -> None:
        with self.lock:  # no signal is sent again from here on
            self.closed = True
        self.resends.put(None)
        for name, handler in self.previous.items():
            if self.took and self.once and _stops_once(handler):
                handler = signal.SIG_IGN  # the block around this one stops once too: this stop
            signal.signal(name, handler)  # runs our handler first for any signal pending
        if _deferred.signum is not None:  # and the block ends before it was taken
            _deferred.signum = None
            raise KeyboardInterrupt

    def handle(self, signum, frame) -> None:
        if self.closed:  # the block is ending: uninstall raises once every handler is back
            _deferred.signum = signum
            return
        now = time.monotonic()
        if _deferred.signum is None:
            _deferred.since = now
        if _importing(frame, self.depth) and now - _deferred.since < MAX_DEFER_SECONDS:
            _deferred.signum = signum
            self.resends.put(signum)
            return
        _deferred.signum = None
        self.took = True
        if self.once:
            for name in self.signals:
                signal.signal(name, signal.SIG_IGN)
        raise KeyboardInterrupt

    def _resend(self) -> None:
        main = threading.main_thread().ident
        while (signum := self.resends.get()) is not None:
            time.sleep(RETRY_SECONDS)
            with self.lock:
                if self.closed:
                    return
                signal.pthread_kill(main, signum)  # a signal (not interrupt_main): it wakes a wait


def _stops_once(handler) -> bool:
    block = getattr(handler, "__self__", None)
    return isinstance(block, _Stop) and block.once


def _depth(frame) -> int:
    depth = 0
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


def _importing(frame, below: int) -> bool:
    """Whether ``frame``, or one of its callers newer than the ``below`` outermost frames,
    runs an import (an import that called the block's code does not count)."""
    newer = _depth(frame) - below
    while frame is not None and newer > 0:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame, newer = frame.f_back, newer - 1
    return False
