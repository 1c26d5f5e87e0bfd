"""Writing runs: registering a sweep's runs, and logging each run's epochs live.

``RunWriter.log`` only appends to a buffer; rows are committed when at least ``flush_seconds``
have passed since the last commit (and when the run ends), together with the run's heartbeat.
A run that dies loses at most its last second of epochs, and every commit is one transaction:
an epoch row is either there whole or not at all.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import subprocess
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, insert, update

from nnlab.store.database import Store
from nnlab.store.models import EPOCH_METRICS, FINISHED_STATUSES, RUN_STATUSES, Epoch, Run, utcnow


@dataclass(frozen=True)
class Provenance:
    """Where and with what a run was trained."""

    nnlab_version: str
    numpy_version: str
    python_version: str
    hostname: str
    pid: int
    git_commit: str | None

    @classmethod
    def here(cls) -> Provenance:
        import numpy

        from nnlab import __version__

        return cls(
            nnlab_version=__version__,
            numpy_version=numpy.__version__,
            python_version=platform.python_version(),
            hostname=socket.gethostname(),
            pid=os.getpid(),
            git_commit=git_commit(Path.cwd()),
        )


def git_commit(directory: Path) -> str | None:
    """The commit checked out in ``directory``, or None outside a git work tree."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def epoch_row(run_id: int, values: Mapping[str, float | int | None]) -> dict:
    """An epochs-table row; NaN metrics become NULL and are named in ``nan_fields``
    (SQLite would silently store NaN as NULL; ±inf are kept as values)."""
    row: dict = {"run_id": run_id, "epoch": int(values["epoch"])}
    nan = []
    for name in EPOCH_METRICS:
        value = values.get(name)
        if value is not None and math.isnan(value):
            nan.append(name)
            value = None
        row[name] = None if value is None else float(value)
    row["nan_fields"] = ",".join(nan) or None
    return row


class RunWriter:
    """Logs one run's epochs to the store from the process that trains it.

    >>> writer = RunWriter(store, run_id)
    >>> writer.start(provenance, data_fingerprint)
    >>> train(..., on_epoch=writer.log)
    >>> writer.finish(result.status)
    """

    def __init__(self, store: Store, run_id: int, flush_seconds: float = 1.0) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self._pending: list[dict] = []
        self._last_flush = time.monotonic()
        self._started = time.monotonic()
        self._insert = insert(Epoch)

    def start(self, provenance: Provenance | None = None, data_fingerprint: str | None = None):
        """Mark the run running, counting the attempt; drop epochs a previous attempt left."""
        provenance = provenance or Provenance.here()
        now = utcnow()
        with self.store.write() as connection:
            connection.execute(delete(Epoch).where(Epoch.run_id == self.run_id))
            connection.execute(
                update(Run)
                .where(Run.id == self.run_id)
                .values(
                    status="running",
                    started_at=now,
                    heartbeat_at=now,
                    finished_at=None,
                    duration_s=None,
                    error=None,
                    attempts=Run.attempts + 1,
                    data_fingerprint=data_fingerprint,
                    **vars(provenance),
                )
            )
        self._started = self._last_flush = time.monotonic()

    def log(self, record) -> None:
        """Buffer one epoch (an ``EpochRecord`` or a mapping); commit if a second has passed."""
        values = record if isinstance(record, Mapping) else _as_mapping(record)
        self._pending.append(epoch_row(self.run_id, values))
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    __call__ = log

    def flush(self) -> None:
        """Commit the buffered epochs and the heartbeat in one transaction."""
        rows, self._pending = self._pending, []
        with self.store.write() as connection:
            if rows:
                connection.execute(self._insert, rows)
            connection.execute(
                update(Run).where(Run.id == self.run_id).values(heartbeat_at=utcnow())
            )
        self._last_flush = time.monotonic()

    def finish(self, status: str, error: str | None = None) -> None:
        """Commit what is buffered and record how the run ended."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
        rows, self._pending = self._pending, []
        now = utcnow()
        with self.store.write() as connection:
            if rows:
                connection.execute(self._insert, rows)
            connection.execute(
                update(Run)
                .where(Run.id == self.run_id)
                .values(
                    status=status,
                    error=error,
                    heartbeat_at=now,
                    finished_at=now if status in FINISHED_STATUSES or status == "failed" else None,
                    duration_s=time.monotonic() - self._started,
                )
            )

    def fail(self, exc: BaseException) -> None:
        self.finish("failed", "".join(traceback.format_exception(exc)))


def _as_mapping(record) -> dict:
    return {name: getattr(record, name) for name in ("epoch", *EPOCH_METRICS)}
