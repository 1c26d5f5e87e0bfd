"""Successive halving over a sweep's configurations: rungs, scores, promotions, all in the
database, decided in the transactions that change them.

A sweep with a scheduler trains each run up to a *rung* (``Ladder.epochs``: min_epochs·etaᵏ,
then the sweep's epochs), where it pauses (``paused``, its checkpoint stored) until its
configuration is decided. A configuration, the runs that differ only in seed, *enters* a rung
once none of its runs is left to train there: each is paused at the rung or has ended (converged,
stopped early, diverged, failed). Its score there is the mean over its seeds of ``metric`` at
their last epoch; a seed that diverged or failed, or whose metric is not a number, makes the
score the worst (NULL), and a configuration scored so is never promoted.

The rules, per bracket (``sha`` and ``asha`` have one; ``hyperband`` several, bracket b starting
at rung b):

- ``sha`` and ``hyperband``: once every configuration promoted into a rung has entered it, the
  best ``max(1, n // eta)`` of its n are promoted and the rest pruned, all at once. The result
  depends only on the scores, so not on ``-j``, the backend, machines or a resume.
- ``asha``: each time a configuration enters a rung of n, the best ``n // eta`` of it that are
  not yet promoted are promoted at once (no waiting for stragglers). Once the rung is complete
  the best ``max(1, n // eta)`` are promoted if not already and the rest pruned. Decisions
  depend on the order runs finish in; each is written when made and never made again.

Promoted runs go back to ``pending`` at the next rung and train on from their checkpoint; pruned
runs are final (``pruned``, at their rung) and their checkpoints deleted. Every decision is taken
under a lock on the sweep's rungs (SQLite: the write transaction itself), in the transaction that
changed what it depends on, so two runners never promote twice or miss a promotion. The store
neither reads checkpoints nor knows how they are made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, case, delete, func, insert, select, update

from nnlab.store.database import lock
from nnlab.store.models import (
    PAUSED,
    PRUNED,
    Checkpoint,
    Epoch,
    Run,
    RungEntry,
    utcnow,
)

SCHEDULERS = ("sha", "asha", "hyperband")
MAXIMISED = ("train_accuracy", "val_accuracy")  # the other metrics are losses
WORST_STATUSES = ("diverged", "failed")
# a configuration with a run in one of these has training left to do at its rung
UNSETTLED_STATUSES = ("pending", "running", "interrupted")


@dataclass(frozen=True)
class Ladder:
    """A scheduler's rungs: ``kind`` (one of ``SCHEDULERS``), the ``metric`` it ranks by, and
    rungs at ``min_epochs``·``eta``ᵏ epochs below ``max_epochs``, then ``max_epochs``."""

    kind: str
    metric: str
    min_epochs: int
    eta: int
    max_epochs: int

    @property
    def epochs(self) -> tuple[int, ...]:
        """The epoch of each rung, the last being ``max_epochs``."""
        rungs, epoch = [], self.min_epochs
        while epoch < self.max_epochs:
            rungs.append(epoch)
            epoch *= self.eta
        return (*rungs, self.max_epochs)

    @property
    def top(self) -> int:
        """The last rung's index: runs there train to the end."""
        return len(self.epochs) - 1

    @property
    def brackets(self) -> int:
        """Hyperband's brackets start at each rung (the last trains its configurations in full,
        without halving); ``sha`` and ``asha`` have one."""
        return self.top + 1 if self.kind == "hyperband" else 1

    def keep(self, entered: int) -> int:
        """How many of a complete rung of ``entered`` configurations are promoted."""
        return max(1, entered // self.eta)

    def bracket_sizes(self, configurations: int) -> list[int]:
        """How many of ``configurations`` each bracket gets: Hyperband's shares, bracket b
        (with s = top - b halvings) in proportion to ``ceil(brackets / (s + 1) · etaˢ)``,
        rounded by largest remainder (ties to the lower bracket)."""
        if self.brackets == 1:
            return [configurations]
        weights = [
            math.ceil(self.brackets / (self.top - b + 1) * self.eta ** (self.top - b))
            for b in range(self.brackets)
        ]
        exact = [configurations * w / sum(weights) for w in weights]
        sizes = [math.floor(x) for x in exact]
        by_remainder = sorted(range(len(exact)), key=lambda b: (sizes[b] - exact[b], b))
        for b in by_remainder[: configurations - sum(sizes)]:
            sizes[b] += 1
        return sizes

    def planned_epochs(self, configurations: int, seeds: int) -> int:
        """The epochs ``sha`` or ``hyperband`` trains when no run stops early by itself (a
        diverged, converged or failed run trains fewer; ``asha`` may promote more)."""
        total = 0
        for bracket, size in enumerate(self.bracket_sizes(configurations)):
            trained, entering = 0, size
            for rung in range(bracket, self.top + 1):
                if entering == 0:
                    break
                total += entering * seeds * (self.epochs[rung] - trained)
                trained, entering = self.epochs[rung], self.keep(entering)
        return total

    def as_dict(self) -> dict:
        """The ladder as stored with its sweep (``sweeps.scheduler``), its rungs' epochs too."""
        fields = ("kind", "metric", "min_epochs", "eta", "max_epochs")
        return {"type": self.kind, **{f: getattr(self, f) for f in fields[1:]}} | {
            "rungs": list(self.epochs),
            "brackets": self.brackets,
        }


_runs, _entries, _checkpoints = Run.__table__, RungEntry.__table__, Checkpoint.__table__
_epochs = Epoch.__table__


def _last(metric: str):
    """The run's ``metric`` at its last epoch (a correlated subquery)."""
    return (
        select(_epochs.c[metric])
        .where(_epochs.c.run_id == _runs.c.id)
        .order_by(_epochs.c.epoch.desc())
        .limit(1)
        .scalar_subquery()
    )


@dataclass
class _Configuration:
    name: str
    bracket: int
    rung: int  # where it is: its bracket's first, or the one above its last promotion
    settled: bool  # no run of it is left to train at that rung
    score: float | None
    seeds: int


class Rungs:
    """The decisions of one sweep's scheduler, taken in ``connection``'s transaction."""

    def __init__(self, connection: Connection, sweep_id: int, ladder: Ladder) -> None:
        self.connection, self.sweep_id, self.ladder = connection, sweep_id, ladder
        self.made_final: list[tuple[int, str]] = []  # (run id, status) of runs pruned here
        self._sizes: dict[int, int] = {}

    def settle(self, configurations: Iterable[str]) -> list[tuple[int, str]]:
        """Enter ``configurations`` into their rungs where they are due, and take every
        decision that follows, transitively. Returns (run id, ``pruned``) for each run made
        final."""
        lock(self.connection, f"rungs:{self.sweep_id}")
        entered = [c for c in map(self._configuration, configurations) if c and c.settled]
        due = {(c.bracket, c.rung) for c in entered}
        for bracket, rung in sorted(due):
            self._decide(bracket, rung)
        return self.made_final

    def _configuration(self, name: str) -> _Configuration | None:
        """Configuration ``name`` at its rung (its bracket's first, or the one above the last
        it was promoted from), entered there if none of its runs is left to train there and
        it is not in yet. A decision already made applies to any run that paused after it (a
        failed seed retried, say)."""
        rows = self.connection.execute(
            select(
                _runs.c.id,
                _runs.c.status,
                _runs.c.bracket,
                _runs.c.rung,
                _last(self.ladder.metric).label("last"),
            ).where(_runs.c.sweep_id == self.sweep_id, _runs.c.configuration_hash == name)
        ).all()
        if not rows or rows[0].bracket is None:
            return None
        decided = dict(
            self.connection.execute(
                select(_entries.c.rung, _entries.c.decision).where(
                    _entries.c.sweep_id == self.sweep_id, _entries.c.configuration_hash == name
                )
            ).all()
        )
        for rung in {row.rung for row in rows if row.status == PAUSED}:
            if decided.get(rung) is not None:
                self._apply(rung, [name], decided[rung])
                return self._configuration(name)
        promoted = [rung for rung, decision in decided.items() if decision == "promoted"]
        rung = max(promoted) + 1 if promoted else rows[0].bracket
        c = _Configuration(
            name,
            bracket=rows[0].bracket,
            rung=rung,
            settled=all(row.status not in UNSETTLED_STATUSES for row in rows),
            score=_score(rows),
            seeds=len(rows),
        )
        if c.settled and rung not in decided:
            self._enter(c)
        return c

    def _enter(self, c: _Configuration) -> None:
        self.connection.execute(
            insert(_entries).values(
                sweep_id=self.sweep_id,
                configuration_hash=c.name,
                rung=c.rung,
                bracket=c.bracket,
                epoch=self.ladder.epochs[c.rung],
                score=c.score,
                seeds=c.seeds,
                entered_at=utcnow(),
            )
        )

    def _decide(self, bracket: int, rung: int) -> None:
        """Take the decisions now due at ``rung`` of ``bracket``, then at the rung above."""
        while rung < self.ladder.top:
            entries = self._entries(bracket, rung)
            ranked = sorted(entries.items(), key=self._rank)
            undecided = [name for name, (_, decision) in entries.items() if decision is None]
            if not undecided:
                return
            promoted: list[str] = []
            if self.ladder.kind == "asha":
                promoted = _best(ranked[: len(entries) // self.ladder.eta])
            complete = self._complete(bracket, rung, len(entries))
            if complete:
                best = _best(ranked[: self.ladder.keep(len(entries))])
                promoted = list(dict.fromkeys([*promoted, *best]))
            pruned = [name for name in undecided if name not in promoted] if complete else []
            if not promoted and not pruned:
                return
            self._apply(rung, promoted, "promoted")
            self._apply(rung, pruned, "pruned")
            # promoted configurations whose runs had all ended are due above at once
            for name in promoted:
                self._configuration(name)
            rung += 1

    def _entries(self, bracket: int, rung: int) -> dict[str, tuple[float | None, str | None]]:
        rows = self.connection.execute(
            select(_entries.c.configuration_hash, _entries.c.score, _entries.c.decision).where(
                _entries.c.sweep_id == self.sweep_id,
                _entries.c.bracket == bracket,
                _entries.c.rung == rung,
            )
        )
        return {name: (score, decision) for name, score, decision in rows}

    def _rank(self, item: tuple[str, tuple[float | None, str | None]]) -> tuple:
        """Best first: scored before unscored, then by score, then by name (a fixed order
        for ties, the same on every machine)."""
        name, (score, _) = item
        if score is None:
            return (1, 0.0, name)
        return (0, -score if self.ladder.metric in MAXIMISED else score, name)

    def _complete(self, bracket: int, rung: int, entered: int) -> bool:
        """Whether every configuration that will ever reach the rung has entered it."""
        if rung == bracket:  # the bracket's first rung: all its configurations
            return entered == self._bracket_size(bracket)
        below = self._entries(bracket, rung - 1).values()
        if any(decision is None for _, decision in below):
            return False
        return entered == sum(decision == "promoted" for _, decision in below)

    def _bracket_size(self, bracket: int) -> int:
        if bracket not in self._sizes:
            self._sizes[bracket] = self.connection.scalar(
                select(func.count(func.distinct(_runs.c.configuration_hash))).where(
                    _runs.c.sweep_id == self.sweep_id, _runs.c.bracket == bracket
                )
            )
        return self._sizes[bracket]

    def _apply(self, rung: int, names: list[str], decision: str) -> None:
        """Record ``decision`` for configurations ``names`` at ``rung`` (if not yet), and move
        their runs paused there: on to the next rung, or to ``pruned``."""
        if not names:
            return
        self.connection.execute(
            update(_entries)
            .where(
                _entries.c.sweep_id == self.sweep_id,
                _entries.c.rung == rung,
                _entries.c.configuration_hash.in_(names),
                _entries.c.decision.is_(None),
            )
            .values(decision=decision, decided_at=utcnow())
        )
        paused = (
            (_runs.c.sweep_id == self.sweep_id)
            & _runs.c.configuration_hash.in_(names)
            & (_runs.c.status == PAUSED)
            & (_runs.c.rung == rung)
        )
        if decision == "promoted":
            self.connection.execute(
                update(_runs).where(paused).values(status="pending", rung=rung + 1)
            )
            return
        pruned = (
            self.connection.execute(
                update(_runs)
                .where(paused)
                .values(status=PRUNED, finished_at=utcnow())
                .returning(_runs.c.id)
            )
            .scalars()
            .all()
        )
        if pruned:
            self.connection.execute(delete(_checkpoints).where(_checkpoints.c.run_id.in_(pruned)))
            self.made_final += [(run_id, PRUNED) for run_id in sorted(pruned)]


def _score(rows) -> float | None:
    """The mean of the seeds' last ``metric``; None (the worst) if any diverged or failed, or
    has no finite value."""
    values = []
    for row in rows:
        if row.status in WORST_STATUSES or row.last is None or not math.isfinite(row.last):
            return None
        values.append(row.last)
    return math.fsum(values) / len(values)


def _best(ranked: list) -> list[str]:
    """The undecided, scored configurations among ``ranked`` (best first)."""
    return [name for name, (score, decision) in ranked if decision is None and score is not None]


# --- what a run's attempt reads and writes ---

_CHECKPOINT = select(_checkpoints.c.epoch, _checkpoints.c.data).where(
    _checkpoints.c.run_id == bindparam("run_id")
)
_RUN_PLACE = select(_runs.c.sweep_id, _runs.c.configuration_hash).where(
    _runs.c.id == bindparam("run_id")
)


def read_checkpoint(connection: Connection, run_id: int) -> tuple[int, bytes] | None:
    """The (epoch, bytes) of the run's checkpoint, or None."""
    row = connection.execute(_CHECKPOINT, {"run_id": run_id}).first()
    return None if row is None else (row.epoch, bytes(row.data))


def write_checkpoint(connection: Connection, run_id: int, epoch: int, data: bytes) -> None:
    """Keep ``data`` as the run's checkpoint after ``epoch``, in place of any earlier one."""
    drop_checkpoint(connection, run_id)
    connection.execute(
        insert(_checkpoints).values(run_id=run_id, epoch=epoch, data=data, created_at=utcnow())
    )


def drop_checkpoint(connection: Connection, run_id: int) -> None:
    connection.execute(delete(_checkpoints).where(_checkpoints.c.run_id == run_id))


def withdraw_entry(connection: Connection, sweep_id: int, name: str, rung: int) -> None:
    """A run of configuration ``name`` is trained again at ``rung`` (a failed seed retried):
    its entry there, scored on the failure, is withdrawn if still undecided, so that the
    configuration enters anew, scored on the retried seed, once that settles. A decision
    already made stays, and applies to the seed when it pauses."""
    lock(connection, f"rungs:{sweep_id}")
    connection.execute(
        delete(_entries).where(
            _entries.c.sweep_id == sweep_id,
            _entries.c.configuration_hash == name,
            _entries.c.rung == rung,
            _entries.c.decision.is_(None),
        )
    )


def settle_run(connection: Connection, ladder: Ladder, run_id: int) -> list[tuple[int, str]]:
    """The decisions due now that run ``run_id`` has paused or ended (see ``Rungs``)."""
    place = connection.execute(_RUN_PLACE, {"run_id": run_id}).first()
    if place is None or place.configuration_hash is None:
        return []
    return Rungs(connection, place.sweep_id, ladder).settle([place.configuration_hash])


def settle_sweep(connection: Connection, sweep_id: int, ladder: Ladder) -> list[tuple[int, str]]:
    """Every decision due in the sweep: for configurations whose runs all paused or ended,
    whoever left them so (a runner that failed a run whose worker died, say)."""
    unsettled = func.sum(case((_runs.c.status.in_(UNSETTLED_STATUSES), 1), else_=0))
    names = connection.execute(
        select(_runs.c.configuration_hash)
        .where(_runs.c.sweep_id == sweep_id, _runs.c.configuration_hash.is_not(None))
        .group_by(_runs.c.configuration_hash)
        .having(unsettled == 0)
    ).scalars()
    return Rungs(connection, sweep_id, ladder).settle(list(names))
