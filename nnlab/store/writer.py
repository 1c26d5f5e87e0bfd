"""Writing runs: registering a sweep's runs, and logging each run's epochs live.

``RunWriter.log`` only appends to a buffer; rows are committed when at least ``flush_seconds``
have passed since the last commit (and when the run ends), together with the run's heartbeat.
A run that dies loses at most its last second of epochs, and every commit is one transaction:
an epoch row is either there whole or not at all.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import os
import platform
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from nnlab.store.database import Store
from nnlab.store.models import (
    EPOCH_METRICS,
    HEARTBEAT_SECONDS,
    PAUSED,
    RUN_STATUSES,
    STALE_AFTER,
)
from nnlab.store.process import ProcessIdentity
from nnlab.store.queue import HOLDER_FIELDS, Attempt, RunLost, RunQueue
from nnlab.store.rungs import drop_checkpoint, read_checkpoint, write_checkpoint


@dataclass(frozen=True)
class Provenance:
    """Where and with what a run was trained (columns of the runs table), and which process
    trains it (see ``nnlab.store.process``)."""

    nnlab_version: str
    numpy_version: str
    python_version: str
    hostname: str
    pid: int
    git_commit: str | None
    boot_id: str | None = None
    pid_namespace: str | None = None
    process_start: int | None = None

    @classmethod
    def here(cls) -> Provenance:
        """This process's provenance (computed once per process: git is a subprocess)."""
        return _process_provenance(os.getpid(), Path.cwd())


@functools.cache
def _process_provenance(pid: int, cwd: Path) -> Provenance:
    import numpy

    from nnlab import __version__

    process = ProcessIdentity.here()
    return Provenance(
        nnlab_version=__version__,
        numpy_version=numpy.__version__,
        python_version=platform.python_version(),
        git_commit=git_commit(cwd),
        **{name: getattr(process, name) for name in HOLDER_FIELDS},
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


EPOCH_COLUMNS = ("run_id", "epoch", *EPOCH_METRICS, "nan_fields")


def epoch_row(run_id: int, epoch: int, metrics: tuple) -> tuple:
    """An epochs-table row in ``EPOCH_COLUMNS`` order; NaN metrics become NULL and are named
    in ``nan_fields`` (SQLite would silently store NaN as NULL; ±inf are kept as values)."""
    # checked in C: filter(None, …) drops the Nones (and zeros), isnan looks at the rest
    if not any(map(math.isnan, filter(None, metrics))):
        return (run_id, epoch, *metrics, None)
    nan = [name for name, value in zip(EPOCH_METRICS, metrics, strict=True) if value != value]
    cleaned = tuple(None if value != value else value for value in metrics)
    return (run_id, epoch, *cleaned, ",".join(nan))


class _EpochInsert:
    """Inserts epoch rows. SQLite: multi-row ``INSERT … VALUES (…), (…)`` statements of up to
    ``CHUNK`` rows, about twice as fast per row as ``executemany``. PostgreSQL: ``COPY … FROM
    STDIN`` inside the same transaction (psycopg re-parses a long multi-row statement on every
    call, and its ``executemany`` costs ~30 µs a row)."""

    CHUNK = 250  # 2,500 parameters, within SQLite's limit of 32,766

    def __init__(self, paramstyle: str) -> None:
        self.multirow = paramstyle == "qmark"
        marker = "?" if self.multirow else "%s"
        self._row = f"({', '.join([marker] * len(EPOCH_COLUMNS))})"
        self._statements: dict[int, str] = {}

    def _statement(self, n_rows: int) -> str:
        if n_rows not in self._statements:
            values = ", ".join([self._row] * n_rows)
            self._statements[n_rows] = (
                f"INSERT INTO epochs ({', '.join(EPOCH_COLUMNS)}) VALUES {values}"
            )
        return self._statements[n_rows]

    def __call__(self, connection, rows: list[tuple]) -> None:
        if not self.multirow:
            columns = ", ".join(EPOCH_COLUMNS)
            with (
                connection.connection.dbapi_connection.cursor() as cursor,
                cursor.copy(f"COPY epochs ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        for start in range(0, len(rows), self.CHUNK):
            chunk = rows[start : start + self.CHUNK]
            params = tuple(itertools.chain.from_iterable(chunk))
            connection.exec_driver_sql(self._statement(len(chunk)), params)


class RunWriter:
    """Logs one run's epochs to the store from the process that trains it.

    >>> with RunWriter(store, run_id) as writer:
    ...     writer.start()
    ...     result = train(..., on_epoch=writer.log)
    ...     writer.finish(result.status)

    The run's status changes go through ``RunQueue``. Between ``start`` and ``finish`` a
    background thread writes the run's heartbeat every ``heartbeat_seconds``, so that an epoch
    longer than the stale window does not make a live run look dead. Every write is
    conditional on this attempt still holding the run; once it does not (see ``RunLost``),
    ``log`` raises and nothing more is written. A database that fails (disk full, file deleted
    or replaced) raises ``StoreFault``: the buffered epochs are kept, nothing is half-written.
    """

    def __init__(
        self,
        store: Store,
        run_id: int,
        flush_seconds: float = 1.0,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.lease: str | None = None
        self.checkpoint: tuple[int, bytes] | None = None  # (epoch, bytes) the run resumes from
        self._attempt: Attempt | None = None
        self._queue = RunQueue(store)
        self._pending: list[tuple] = []
        self._last_flush = time.monotonic()
        self._started = time.monotonic()
        self._insert = _EpochInsert(store.engine.dialect.paramstyle)
        self._heartbeat: _Heartbeat | None = None

    def start(
        self,
        provenance: Provenance | None = None,
        data_fingerprint: str | None = None,
        *,
        claimable: tuple[str, ...] | None = None,
        stale_after: float = STALE_AFTER,
        lease: str | None = None,
    ) -> bool:
        """Mark the run running, counting the attempt; drop epochs a previous attempt left.

        With ``claimable``, take the run only if its status is one of those, or it is running
        with a heartbeat older than ``stale_after`` seconds, or it is running under ``lease``
        (this same task, re-executed after its worker died), in one atomic update: of several
        runners reaching for one run, one gets it. Without, take it whatever its status.
        Returns whether the run was taken.
        """
        provenance = provenance or Provenance.here()
        self.lease = lease or uuid.uuid4().hex
        self._queue.stale_after = stale_after
        with self.store.guard():
            claimed = self._queue.claim(
                {self.run_id: self.lease},
                vars(provenance),
                RUN_STATUSES if claimable is None else claimable,
                data_fingerprint,
            )
        if not claimed:
            if claimable is not None:
                return False
            raise ValueError(f"no run with id {self.run_id} in {self.store!r}")
        self._attempt = claimed[0]
        if self._attempt.rung is not None:
            with self.store.guard(), self.store.read() as connection:
                self.checkpoint = read_checkpoint(connection, self.run_id)
        self._started = self._last_flush = time.monotonic()
        if self.heartbeat_seconds:
            self._heartbeat = _Heartbeat(self, self.heartbeat_seconds)
        return True

    def log(self, record) -> None:
        """Buffer one epoch (an ``EpochRecord`` or a mapping); commit if a second has passed."""
        if isinstance(record, dict):
            epoch, metrics = record["epoch"], tuple(map(_float, map(record.get, EPOCH_METRICS)))
        else:  # the engine's EpochRecord: Python floats already
            epoch, metrics = record.epoch, _record_metrics(record)
        self._pending.append(epoch_row(self.run_id, int(epoch), metrics))
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    __call__ = log

    def flush(self) -> None:
        """Commit the buffered epochs and the heartbeat in one transaction."""
        if self._heartbeat is not None and self._heartbeat.lost:
            raise self._heartbeat.lost
        with self.store.guard(), self.store.write() as connection:
            self._queue.beat(connection, self._held())
            if self._pending:
                self._insert(connection, self._pending)
        self._pending = []  # only once committed: a failed write keeps the rows for the next
        self._last_flush = time.monotonic()

    def beat(self) -> None:
        """Write the heartbeat alone (the background thread calls this)."""
        with self.store.guard(), self.store.write() as connection:
            self._queue.beat(connection, self._held())

    @property
    def rung(self) -> int | None:
        """The rung the claimed run trains to (None outside a sweep with a scheduler)."""
        return self._held().rung

    def finish(
        self,
        status: str,
        error: str | None = None,
        data_fingerprint: str | None = None,
        *,
        checkpoint: tuple[int, bytes] | None = None,
        then: Callable[[Connection], list] | None = None,
        seconds: float | None = None,
    ) -> list:
        """Commit what is buffered and record how the run ended (and, when given, the
        fingerprint of the data it trained on), in one transaction. A ``paused`` run keeps
        ``checkpoint`` (epoch, bytes) in place of any earlier one; a run that ends any other
        way but ``failed`` (which a retry may resume) drops its checkpoint. ``then`` is
        called with the connection before the commit (a scheduler's decisions); what it
        returns is returned. ``seconds`` is what the attempt adds to the run's ``duration_s``
        (default: the time since ``start``; a run trained in a pack gives its share)."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
        if (status == PAUSED) != (checkpoint is not None):
            raise ValueError("a paused run, and only a paused run, is given its checkpoint")
        self.close()
        duration = time.monotonic() - self._started if seconds is None else seconds
        with self.store.guard(), self.store.write() as connection:
            self._queue.finish(connection, self._held(), status, error, duration, data_fingerprint)
            if self._pending:
                self._insert(connection, self._pending)
            if checkpoint is not None:
                write_checkpoint(connection, self.run_id, *checkpoint)
            elif self.rung is not None and status != "failed":
                drop_checkpoint(connection, self.run_id)
            decided = [] if then is None else then(connection)
        self._pending = []
        return decided

    def close(self) -> None:
        """Stop the background heartbeat (``finish`` does; call it when a run is abandoned)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _held(self) -> Attempt:
        if self._attempt is None:
            raise RunLost(f"run {self.run_id} was never claimed by this writer: call start()")
        return self._attempt


class _Heartbeat:
    """A daemon thread that calls ``writer.beat()`` every ``seconds`` until stopped, or until
    the writer has lost its run."""

    def __init__(self, writer: RunWriter, seconds: float) -> None:
        self.lost: RunLost | None = None
        self._writer = writer
        self._seconds = seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-{writer.run_id}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self._seconds):
            try:
                self._writer.beat()
            except RunLost as lost:  # the next flush raises it in the training thread
                self.lost = lost
                return
            except Exception:  # a busy or briefly unreachable database: try at the next beat
                continue

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


_record_metrics = operator.attrgetter(*EPOCH_METRICS)


def _float(value) -> float | None:
    return None if value is None else float(value)
