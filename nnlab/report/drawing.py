"""The report's figures drawn on every core: most of a report's time is matplotlib laying out
and drawing its figures, one after another, while the machine's other cores sit idle.

``drawn(tasks)`` draws a list of figures (each a function of nothing that returns a
``Chart``) and returns their charts in order. On Linux with more than one core it forks: each
child process draws its share of the figures from the parent's memory as it is (matplotlib
imported, the sweeps' data loaded, the report's style in force), sends the charts back
through a pipe and exits; the parent draws the first share meanwhile. A child costs a few
milliseconds, nothing is imported or loaded again, and the charts are the very ones the
parent would draw (tests/report hold the page to that, byte for byte).

Forking a process that has other threads (a sweep's worker pool, say) is safe only for code
that takes no lock those threads may hold. A child here runs matplotlib on data in memory,
writes to its own pipe and leaves by ``os._exit``, touching no database, file or stream of the
parent's. Whatever goes wrong in a child (an error, a crash, a stop), the parent draws that
child's figures itself, so a figure that cannot be drawn raises the error it raises alone;
and a child that is not done ``DEADLINE`` seconds after the parent has drawn its own share
(or 10 times that share's time, if longer) is killed. Stop signals are blocked in a child:
a Ctrl-C is the parent's to take, and it kills its children before it propagates.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence

from nnlab import stops

# A child not done this many seconds after the parent's own share is killed (at least; see
# the module docstring)
DEADLINE = 5.0
# The parent's own share's time, times this, if longer than DEADLINE
SLOWER = 10


def drawn(tasks: Sequence[Callable], weights: Sequence[float] | None = None) -> list:
    """Each task's result, in order, the tasks shared out between this process and forked
    children (one per core beyond the first), by ``weights`` (the tasks' relative costs,
    default equal)."""
    shares = _shares(weights or [1.0] * len(tasks), processes())
    if len(shares) < 2:
        return [task() for task in tasks]
    children = []
    try:
        for share in shares[1:]:
            try:
                children.append(_Child.fork(tasks, share))
            except OSError:  # no process to spare: its share is drawn here
                break
        started = time.monotonic()
        results = {index: tasks[index]() for index in shares[0]}
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + max(DEADLINE, SLOWER * elapsed)
        for child in children:
            results.update(child.results(deadline))
    finally:
        for child in children:
            child.end()
    for index in range(len(tasks)):  # what no child drew: drawn here, as it would be alone
        if index not in results:
            results[index] = tasks[index]()
    return [results[index] for index in range(len(tasks))]


def processes() -> int:
    """Processes to draw in: the cores this process may run on, where it can fork safely."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return 1
    return len(os.sched_getaffinity(0))


def _shares(weights: Sequence[float], processes: int) -> list[list[int]]:
    """Task indices for each process, heaviest first into the lightest share (at most one
    share per task); the first share is the parent's."""
    shares: list[list[int]] = [[] for _ in range(max(1, min(processes, len(weights))))]
    loads = [0.0] * len(shares)
    for index in sorted(range(len(weights)), key=lambda k: -weights[k]):
        lightest = loads.index(min(loads))
        shares[lightest].append(index)
        loads[lightest] += weights[index]
    return [sorted(share) for share in shares if share]


class _Child:
    """A forked process drawing ``share`` of the tasks, its results coming through a pipe."""

    def __init__(self, pid: int, pipe: int, share: list[int]) -> None:
        self.pid, self.pipe, self.share = pid, pipe, share
        self._reaped = False

    @classmethod
    def fork(cls, tasks: Sequence[Callable], share: list[int]) -> _Child:
        read, write = os.pipe()
        # the child starts with the stop signals blocked, and keeps them so; here they are
        # held back only while forking
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, stops.STOP_SIGNALS)
        try:
            with warnings.catch_warnings():
                # Python 3.12 warns of any fork in a process with threads: see the docstring
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(read)
                _draw_and_exit(tasks, share, write)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write)
        return cls(pid, read, share)

    def results(self, deadline: float) -> dict:
        """The charts the child drew ({} if it failed, crashed or ran out of time)."""
        data = bytearray()
        with os.fdopen(self.pipe, "rb", buffering=0, closefd=True) as pipe:
            self.pipe = -1
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([pipe], [], [], left)
                if not ready:
                    break
                chunk = pipe.read(1 << 20)
                if not chunk:  # the child closed its end: done, or dead
                    return self._decoded(bytes(data))
                data += chunk
        return {}

    def _decoded(self, data: bytes) -> dict:
        _, status = os.waitpid(self.pid, 0)
        self._reaped = True
        if status != 0 or not data:
            return {}
        with contextlib.suppress(Exception):
            return dict(pickle.loads(data))
        return {}

    def end(self) -> None:
        """Kill the child if it still runs, and reap it."""
        if self.pipe >= 0:
            os.close(self.pipe)
            self.pipe = -1
        if not self._reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self._reaped = True


def _draw_and_exit(tasks: Sequence[Callable], share: list[int], pipe: int) -> None:
    status = 1
    try:
        data = pickle.dumps([(index, tasks[index]()) for index in share])
        view = memoryview(data)
        while view:
            view = view[os.write(pipe, view) :]
        status = 0
    except BaseException:  # the parent draws this share itself
        pass
    finally:
        os._exit(status)
