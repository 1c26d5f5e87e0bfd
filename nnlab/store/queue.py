"""The life of a sweep's runs, in one place: claim, lease, heartbeat, finish, release, take-over.

The status rules, written once:

- ``pending`` and ``interrupted`` runs are *resumable*: any runner may claim them.
- A claim is one atomic update that writes a fresh lease and counts the attempt; of several
  runners reaching for one run, one gets it. A run ``running`` under the claimant's own lease
  (a task its scheduler re-executes after a worker died) may be claimed back.
- Every later write of an attempt (heartbeat, epochs, outcome) holds only while the run is still
  ``running`` under that lease and attempt; otherwise it raises ``RunLost``.
- A ``running`` run is *taken over* (marked ``interrupted``, so resumable) when its heartbeat
  is older than the stale window, or at once when its holder is provably gone (see
  ``nnlab.store.process``).
- ``completed``, ``converged``, ``early_stopped``, ``diverged``, ``pruned`` and ``failed`` are
  *final*: a resume trains them never again (``failed`` only with ``retry_failed``).
- Under a scheduler (``nnlab.store.rungs``), a run that reaches its rung is ``paused`` with its
  checkpoint: not final, not claimable. Its configuration's decision makes it ``pending`` again
  at the next rung (a claim then keeps its epochs up to the checkpoint, when it first started
  and the time it trained) or ``pruned``.
- A sweep's status is derived from its runs: ``finished`` only when every run is final,
  ``running`` while any is held, else ``interrupted`` (or ``pending`` before any runner).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, case, delete, func, select, update

from nnlab.store.database import Store, database_now
from nnlab.store.models import (
    FINISHED_STATUSES,
    PRUNED,
    STALE_AFTER,
    Checkpoint,
    Epoch,
    Run,
    Sweep,
    utcnow,
)
from nnlab.store.process import ProcessIdentity
from nnlab.store.rungs import Ladder, settle_sweep, withdraw_entry

RESUMABLE_STATUSES = ("pending", "interrupted")
FINAL_STATUSES = (*FINISHED_STATUSES, PRUNED, "failed")
HOLDER_FIELDS = ("hostname", "pid", "boot_id", "pid_namespace", "process_start")
# what a claim records of the process that trains the run (columns of the runs table)
PROVENANCE_FIELDS = (
    "nnlab_version",
    "numpy_version",
    "python_version",
    "git_commit",
    *HOLDER_FIELDS,
)


class RunLost(RuntimeError):
    """This attempt no longer holds its run: the run was interrupted, or declared stale and
    taken over by another attempt. The attempt must stop; it can write nothing more."""


@dataclass(frozen=True)
class Holding:
    """A run of the sweep that is not final yet, and who holds it if it is running."""

    run_id: int
    status: str
    hostname: str | None
    pid: int | None
    heartbeat_at: datetime | None

    @property
    def holder(self) -> str:
        return f"{self.hostname or '?'} pid {self.pid or '?'}"


# Statements built once: constructing an update per call costs about a millisecond.
# Heartbeats are the database's time, so runners on machines with skewed clocks agree.
_runs, _epochs = Run.__table__, Epoch.__table__
_RUNNING = _runs.c.status == "running"
_STALE = _RUNNING & (
    (_runs.c.heartbeat_at < bindparam("stale_before")) | _runs.c.heartbeat_at.is_(None)
)
_checkpoints = Checkpoint.__table__
# a run resuming from its checkpoint (a scheduled run promoted to its next rung) keeps when it
# first started, the time it has trained, and its epochs up to the checkpoint
_RESUMES = select(_checkpoints.c.run_id).where(_checkpoints.c.run_id == _runs.c.id).exists()
_CHECKPOINT_EPOCH = (
    select(_checkpoints.c.epoch)
    .where(_checkpoints.c.run_id == bindparam("run_id"))
    .scalar_subquery()
)
_CLAIM = (
    update(_runs)
    .where(
        _runs.c.id == bindparam("run_id"),
        _runs.c.status.in_(bindparam("claimable", expanding=True))
        | _STALE
        | (_RUNNING & (_runs.c.lease == bindparam("lease_id"))),
    )
    .values(
        status="running",
        started_at=case((_RESUMES, _runs.c.started_at), else_=bindparam("now")),
        heartbeat_at=func.now(),
        finished_at=None,
        duration_s=case((_RESUMES, _runs.c.duration_s), else_=None),
        error=None,
        attempts=_runs.c.attempts + 1,
        lease=bindparam("lease_id"),
        data_fingerprint=bindparam("data_fingerprint"),
        **{name: bindparam(name) for name in PROVENANCE_FIELDS},
    )
    .returning(_runs.c.attempts, _runs.c.rung, _runs.c.sweep_id, _runs.c.configuration_hash)
)
# Runs are handed out in id order (grid order, seeds innermost); under a scheduler, runs at higher
# rungs first, and the configurations of a rung in the order of their hashes, a fixed shuffle:
# ASHA's promotions are only as good as the sample of its rung they are made on, and a grid in
# order (learning rates rising, say) makes every early sample unlike the rung.
_TODO_ORDER = (
    func.coalesce(_runs.c.rung, 0).desc(),
    case((_runs.c.bracket.is_not(None), _runs.c.configuration_hash), else_=None),
    _runs.c.id,
)
_DROP_EPOCHS = delete(_epochs).where(
    _epochs.c.run_id == bindparam("run_id"),
    _epochs.c.epoch > func.coalesce(_CHECKPOINT_EPOCH, 0),
)
# later writes of an attempt hold only while the run is still running under its lease
_HELD = (
    (_runs.c.id == bindparam("run_id"))
    & _RUNNING
    & (_runs.c.lease == bindparam("lease_id"))
    & (_runs.c.attempts == bindparam("attempt"))
)
_HEARTBEAT = update(_runs).where(_HELD).values(heartbeat_at=func.now())
_FINISH = (
    update(_runs)
    .where(_HELD)
    .values(
        status=bindparam("status"),
        error=bindparam("error"),
        heartbeat_at=func.now(),
        finished_at=bindparam("finished_at"),
        duration_s=func.coalesce(_runs.c.duration_s, 0) + bindparam("duration_s"),
        data_fingerprint=func.coalesce(bindparam("data_fingerprint"), _runs.c.data_fingerprint),
    )
)


@dataclass(frozen=True)
class Attempt:
    """One claim of one run: the lease it holds the run under, which attempt it is, and, in a
    sweep with a scheduler, the rung it trains to."""

    run_id: int
    lease: str
    number: int
    rung: int | None = None


class RunQueue:
    """The runs of sweep ``sweep_id`` in ``store``: what is left to train, who holds what, and
    every change of a run's status. Runs silent for ``stale_after`` seconds are presumed dead.

    The methods on single attempts (``claim``, ``beat``, ``finish``) need no sweep: a worker
    that trains a run by its id uses them through ``RunWriter``.
    """

    def __init__(
        self, store: Store, sweep_id: int | None = None, stale_after: float = STALE_AFTER
    ) -> None:
        self.store, self.sweep_id, self.stale_after = store, sweep_id, stale_after

    # --- claiming and holding runs ---

    def claim(
        self,
        leases: Mapping[int, str],
        provenance: Mapping,  # PROVENANCE_FIELDS -> values
        claimable: Iterable[str] = RESUMABLE_STATUSES,
        data_fingerprint: str | None = None,
    ) -> list[Attempt]:
        """Claim each run of ``leases`` (run id -> lease) that is ``claimable``, stale, or
        running under that same lease, in one transaction; drop the epochs a previous attempt
        left. Returns the attempts that got their run (several compatible runs can be
        claimed at once, to train them together)."""
        claimed = []
        with self.store.write() as connection:
            params = {
                "now": utcnow(),
                "claimable": list(claimable),
                "stale_before": self._stale_before(connection),
                "data_fingerprint": data_fingerprint,
            }
            params |= {name: provenance[name] for name in PROVENANCE_FIELDS}
            for run_id, lease in leases.items():
                row = connection.execute(
                    _CLAIM, {**params, "run_id": run_id, "lease_id": lease}
                ).first()
                if row is None:
                    continue
                number, rung, sweep_id, configuration = row
                if number > 1:  # a previous attempt's epochs after the checkpoint are replaced
                    connection.execute(_DROP_EPOCHS, {"run_id": run_id})
                if rung is not None and "failed" in params["claimable"]:
                    # a failed run retried: its configuration is scored anew at its rung
                    withdraw_entry(connection, sweep_id, configuration, rung)
                claimed.append(Attempt(run_id, lease, number, rung))
        return claimed

    def beat(self, connection: Connection, attempt: Attempt) -> None:
        """The attempt's heartbeat, in the caller's transaction; ``RunLost`` if it lost its
        run (which rolls back the whole transaction)."""
        self._hold(connection, _HEARTBEAT, attempt, {})

    def finish(
        self,
        connection: Connection,
        attempt: Attempt,
        status: str,
        error: str | None,
        duration_s: float,
        data_fingerprint: str | None = None,
    ) -> None:
        """Record how the attempt's run ended, in the caller's transaction (``RunLost`` if it
        no longer holds it)."""
        ended = status in FINAL_STATUSES
        self._hold(
            connection,
            _FINISH,
            attempt,
            {
                "status": status,
                "error": error,
                "data_fingerprint": data_fingerprint,
                "finished_at": utcnow() if ended else None,
                "duration_s": duration_s,
            },
        )

    def _hold(self, connection: Connection, statement, attempt: Attempt, params: dict) -> None:
        params |= {"run_id": attempt.run_id, "lease_id": attempt.lease, "attempt": attempt.number}
        if connection.execute(statement, params).rowcount != 1:
            raise RunLost(
                f"run {attempt.run_id} is no longer held by this attempt: it was "
                "interrupted, or presumed dead and taken over"
            )

    # --- a runner's view of its sweep ---

    def todo(self, claimable: Iterable[str] = RESUMABLE_STATUSES) -> list[tuple[int, dict]]:
        """(run id, config) of every run of the sweep a runner may claim now: ``claimable``
        ones and running ones whose heartbeat is stale."""
        with self.store.read() as connection:
            wanted = Run.status.in_(list(claimable)) | _STALE
            rows = connection.execute(
                select(Run.id, Run.config)
                .where(Run.sweep_id == self.sweep_id, wanted)
                .order_by(*_TODO_ORDER),
                {"stale_before": self._stale_before(connection)},
            )
            return [(run_id, config) for run_id, config in rows]

    def take_over_dead(self) -> int:
        """Mark ``interrupted`` the sweep's running runs whose holder is provably gone (a
        runner killed with its workers), so that they are trained again now rather than after
        the stale window. Returns how many."""
        with self.store.read() as connection:
            held = connection.execute(
                select(Run.id, Run.lease, *(getattr(Run, f) for f in HOLDER_FIELDS)).where(
                    Run.sweep_id == self.sweep_id, _RUNNING
                )
            ).all()
        dead = [(row.id, row.lease) for row in held if _holder(row).is_gone()]
        if not dead:
            return 0
        with self.store.write() as connection:
            for run_id, lease in dead:  # only if still held by that same dead attempt
                connection.execute(
                    update(Run)
                    .where(Run.id == run_id, _RUNNING, Run.lease.is_not_distinct_from(lease))
                    .values(status="interrupted")
                )
        return len(dead)

    def take_over_silent(self) -> list[int]:
        """Mark ``interrupted`` the sweep's running runs whose heartbeat is older than the
        stale window (their holder, or its link, is gone), so they can be claimed anew even by
        a task carrying their old lease. Returns their ids."""
        with self.store.write() as connection:
            params = {"stale_before": self._stale_before(connection)}
            rows = connection.execute(
                update(Run)
                .where(Run.sweep_id == self.sweep_id, _STALE)
                .values(status="interrupted")
                .returning(Run.id),
                params,
            )
            return sorted(rows.scalars())

    def interrupt(self, lease_prefix: str | None = None) -> int:
        """Mark the sweep's running runs interrupted (their runner is stopping): all of them,
        or only those held under leases starting with ``lease_prefix`` (one runner's, when
        several share the sweep). Returns how many."""
        held = _RUNNING
        if lease_prefix is not None:
            held &= Run.lease.startswith(f"{lease_prefix}-", autoescape=True)
        with self.store.write() as connection:
            result = connection.execute(
                update(Run).where(Run.sweep_id == self.sweep_id, held).values(status="interrupted")
            )
            return result.rowcount

    def fail(self, run_id: int, error: str) -> None:
        """Mark a run failed whose attempts cannot record it themselves (their worker died)."""
        with self.store.write() as connection:
            connection.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(status="failed", error=error, finished_at=utcnow())
            )

    def statuses(self, run_ids: list[int]) -> dict[int, str]:
        with self.store.read() as connection:
            rows = connection.execute(select(Run.id, Run.status).where(Run.id.in_(run_ids)))
            return dict(rows.all())

    def tally(self) -> Counter:
        """How many of the sweep's runs are in each status."""
        with self.store.read() as connection:
            rows = connection.execute(
                select(Run.status, func.count())
                .where(Run.sweep_id == self.sweep_id)
                .group_by(Run.status)
            )
            return Counter(dict(rows.all()))

    def unfinished(self) -> list[Holding]:
        """The sweep's runs that are not final, with their holders."""
        with self.store.read() as connection:
            rows = connection.execute(
                select(Run.id, Run.status, Run.hostname, Run.pid, Run.heartbeat_at)
                .where(Run.sweep_id == self.sweep_id, Run.status.not_in(FINAL_STATUSES))
                .order_by(Run.id)
            )
            return [Holding(*row) for row in rows]

    def latest_heartbeat(self):
        """The most recent heartbeat of any of the sweep's runs (None before the first)."""
        with self.store.read() as connection:
            return connection.scalar(
                select(func.max(Run.heartbeat_at)).where(Run.sweep_id == self.sweep_id)
            )

    def settle_rungs(self, rungs: Ladder) -> list[tuple[int, str]]:
        """Take every decision of the sweep's scheduler that is due (``nnlab.store.rungs``);
        returns (run id, ``pruned``) of the runs it made final."""
        with self.store.write() as connection:
            return settle_sweep(connection, self.sweep_id, rungs)

    # --- the sweep's status, from its runs ---

    def start_sweep(self) -> None:
        self._write_sweep_status("running")

    def settle_sweep(self, ran: bool = True) -> Counter:
        """Write the sweep's status as its runs say (see ``sweep_status``; ``ran``: a runner
        has worked on it); returns how many runs are left unfinished, by status."""
        tally = self.tally()
        left = Counter({s: n for s, n in tally.items() if s not in FINAL_STATUSES})
        self._write_sweep_status(sweep_status(tally, ran))
        return left

    def _write_sweep_status(self, status: str) -> None:
        ended = status in ("finished", "interrupted")
        with self.store.write() as connection:
            connection.execute(
                update(Sweep)
                .where(Sweep.id == self.sweep_id)
                .values(status=status, finished_at=utcnow() if ended else None)
            )

    def _stale_before(self, connection: Connection) -> datetime:
        return database_now(connection) - timedelta(seconds=self.stale_after)


def _holder(row) -> ProcessIdentity:
    return ProcessIdentity(*(getattr(row, name) for name in HOLDER_FIELDS))


def sweep_status(tally: Mapping[str, int], ran: bool = True) -> str:
    """A sweep's status from how many of its runs are in each status: ``finished`` when all
    are final, ``running`` while any is held, else ``interrupted`` once a runner has worked on
    it (``ran``) or any run has started, ``pending`` before."""
    if all(status in FINAL_STATUSES for status, n in tally.items() if n):
        return "finished"
    if tally.get("running"):
        return "running"
    started = ran or any(n for status, n in tally.items() if status != "pending")
    return "interrupted" if started else "pending"
