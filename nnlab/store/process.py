"""Which process holds a run, told apart from every other process, and whether it is gone.

A pid alone names a process only for a while: pids are reused, every container has its own,
and a rebooted machine starts counting again. So a run's holder is recorded as its host name,
its pid, the start time of that process (in clock ticks since boot, from ``/proc``), the
host's boot id and the pid namespace it lives in. A holder is *provably gone* when it lived in
this boot and this pid namespace (so its pid means the same here) and no process with that pid
and start time exists now, or it is a zombie. Anything else (another host, another container,
no ``/proc``) cannot be proved dead from here: such a holder is trusted until its heartbeat
goes stale.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    """What identifies one process, across hosts, containers and reboots."""

    hostname: str
    pid: int
    boot_id: str | None
    pid_namespace: str | None
    process_start: int | None  # clock ticks after boot; None where /proc is not there

    @classmethod
    def here(cls) -> ProcessIdentity:
        """This process (looked up once per process)."""
        return _identity(os.getpid())

    def is_gone(self) -> bool:
        """Whether this process is provably no longer running (see the module's docstring)."""
        here = ProcessIdentity.here()
        same_pids = (
            self.hostname == here.hostname
            and self.boot_id is not None
            and (self.boot_id, self.pid_namespace) == (here.boot_id, here.pid_namespace)
        )
        if not same_pids or self.process_start is None:
            return False
        state, start = _stat(self.pid)
        return state is None or state in "ZX" or start != self.process_start


@functools.cache
def _identity(pid: int) -> ProcessIdentity:
    return ProcessIdentity(
        hostname=socket.gethostname(),
        pid=pid,
        boot_id=_read(_PROC / "sys/kernel/random/boot_id"),
        pid_namespace=_namespace(),
        process_start=_stat(pid)[1],
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _namespace() -> str | None:
    try:
        return os.readlink(_PROC / "self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return None


def _stat(pid: int) -> tuple[str | None, int | None]:
    """The state letter and start time of process ``pid``, or (None, None) if there is none.

    ``/proc/PID/stat`` holds ``pid (comm) state …``; the command name may contain spaces and
    parentheses, so the fields are counted from its last ``)``: state is the 3rd field,
    starttime the 22nd."""
    text = _read(_PROC / str(pid) / "stat")
    if text is None:
        return None, None
    fields = text.rpartition(")")[2].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None, None
