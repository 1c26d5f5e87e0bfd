"""Reading results: sweeps, runs and epochs as pandas DataFrames.

>>> import nnlab
>>> lab = nnlab.connect()                       # NNLAB_DB or sqlite:///nnlab.db
>>> lab.runs(sweep="quickstart").groupby("gd").final_val_loss.mean()
>>> lab.epochs(sweep="quickstart").groupby(["activation", "epoch"]).val_loss.median()
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import func, select, text

from nnlab.checks import check_choice
from nnlab.store.columns import ACCURACY, METRICS, RUN_COLUMNS, SWEEP_COLUMNS
from nnlab.store.database import Store, StoreError, display_url, open_store
from nnlab.store.models import (
    CLEAN_STATUSES,
    EPOCH_METRICS,
    FINISHED_STATUSES,
    PRUNED,
    RUNG_DECISIONS,
    Epoch,
    Run,
    Sweep,
)
from nnlab.store.registry import unknown_sweep

QUARTILES = (0.25, 0.5, 0.75)  # the band of a curve over runs: its IQR around the median
HYPERPARAMETERS = ("learning_rate", "batch_size", "activation", "gd", "optimizer", "hidden")
HYPERPARAMETERS += ("learning_rate_schedule", "init", "alpha", "weight_decay")
# Where and with what a sweep's runs trained: the runs-table columns SweepDetails summarises.
VERSIONS = ("nnlab_version", "numpy_version", "python_version")
PROVENANCE_COLUMNS = (*VERSIONS, "hostname", "git_commit", "data_fingerprint")
# What Lab.run adds to a run's runs() row.
# The metrics Lab.progress reads of each new epoch.
PROGRESS_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
RUN_DETAILS = ("config", "attempts", "started_at", "finished_at", "heartbeat_at", "error")


MAX_ID = 2**63 - 1  # the largest integer a database's id column holds


class UnknownRunError(StoreError):
    """A run id the database does not hold."""

    matches: tuple[int, ...] = ()  # as UnknownSweepError's: no run id is a near miss of another


@dataclass(frozen=True)
class SweepDetails:
    """One sweep as recorded: its spec and times, its runs by status, where they trained."""

    name: str
    description: str
    spec: str  # the YAML text it was registered with
    spec_hash: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    statuses: dict[str, int]  # number of runs in each status
    provenance: dict[str, list[str]]  # PROVENANCE_COLUMNS -> the distinct values over its runs
    last_activity: datetime | None  # the latest heartbeat of any of its runs (ends beat too)
    started_at: datetime | None = None  # when its first run started

    @property
    def runs(self) -> int:
        return sum(self.statuses.values())


@dataclass(frozen=True)
class Budget:
    """Epochs a sweep's runs have trained, against its full grid's: every run to its end."""

    spent: int
    full: int

    @property
    def fraction(self) -> float:
        return self.spent / self.full if self.full else math.nan

    def __str__(self) -> str:
        share = f" ({self.fraction:.1%} of the full grid's epochs)" if self.full else ""
        return f"{self.spent:,} epochs of {self.full:,}{share}"


@dataclass(frozen=True)
class Progress:
    """A sweep's runs as ``Lab.progress`` found them."""

    statuses: dict[int, str]  # run id -> status
    last_epochs: dict[int, int]  # run id -> its last logged epoch (0: none yet)
    epochs: pd.DataFrame  # the epochs logged beyond what the caller had seen


class Lab:
    """Read access to one tracking database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def sweeps(self) -> pd.DataFrame:
        """One row per sweep: name, description, status, spec hash, times, number of runs;
        then ``statuses`` (status -> number of runs, only those with any), ``started_at``
        (the earliest start of its runs), ``last_activity`` (their latest heartbeat),
        ``metric`` (as ``default_metric`` would rank it by) and ``best`` (the lowest final
        ``metric`` of its runs that finished without diverging; NaN for none).

        Three reads over all the sweeps together, whatever their number.
        """
        sql = """
            SELECT s.id AS sweep_id, s.name, s.description, s.status, s.spec_hash,
                   s.created_at, s.finished_at, count(r.id) AS runs
            FROM sweeps s LEFT JOIN runs r ON r.sweep_id = s.id
            GROUP BY s.id, s.name, s.description, s.status, s.spec_hash, s.created_at,
                     s.finished_at
            ORDER BY s.id
        """
        frame = self._frame(sql, {})
        frame = frame.join(self._activity(), on="sweep_id").join(self._bests(), on="sweep_id")
        frame["statuses"] = [runs if isinstance(runs, dict) else {} for runs in frame.statuses]
        frame["best"] = frame.best.where(np.isfinite(frame.best))
        for column in ("created_at", "finished_at", "started_at", "last_activity"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame.astype({"sweep_id": "int64", "runs": "int64"})[list(SWEEP_COLUMNS)]

    def _activity(self) -> pd.DataFrame:
        """By sweep id: ``statuses``, ``started_at`` and ``last_activity`` (see ``sweeps``)."""
        sql = """
            SELECT sweep_id, status, count(*) AS runs, min(started_at) AS started_at,
                   max(heartbeat_at) AS last_activity
            FROM runs GROUP BY sweep_id, status ORDER BY sweep_id, status
        """
        frame = self._frame(sql, {})
        statuses: dict[int, dict[str, int]] = {}
        for sweep_id, status, runs in zip(frame.sweep_id, frame.status, frame.runs, strict=True):
            statuses.setdefault(int(sweep_id), {})[status] = int(runs)
        times = frame.groupby("sweep_id").agg(
            started_at=("started_at", "min"), last_activity=("last_activity", "max")
        )
        times.index = times.index.astype("int64")
        return times.assign(statuses=pd.Series(statuses, dtype=object))

    def _bests(self) -> pd.DataFrame:
        """By sweep id: ``metric`` and ``best`` (see ``sweeps``), from each clean run's last
        epoch and whether the sweep logged any epoch, and any validation loss."""
        epochs = "FROM runs r JOIN epochs e ON e.run_id = r.id WHERE r.sweep_id = s.id"
        last = "FROM epochs e WHERE e.run_id = r.id ORDER BY e.epoch DESC LIMIT 1"
        clean = ", ".join(f"'{status}'" for status in CLEAN_STATUSES)
        sql = f"""
            SELECT s.id AS sweep_id,
                   EXISTS (SELECT 1 {epochs}) AS logged,
                   EXISTS (SELECT 1 {epochs} AND e.val_loss IS NOT NULL) AS validated,
                   min(f.val_loss) AS val_loss, min(f.train_loss) AS train_loss
            FROM sweeps s LEFT JOIN (
                SELECT r.sweep_id, (SELECT e.val_loss {last}) AS val_loss,
                       (SELECT e.train_loss {last}) AS train_loss
                FROM runs r WHERE r.status IN ({clean})
            ) f ON f.sweep_id = s.id
            GROUP BY s.id
        """
        frame = self._frame(sql, {}).astype({"sweep_id": "int64"}).set_index("sweep_id")
        frame = _typed(frame, dict.fromkeys(METRICS, "float64"))
        trained = frame.logged.astype(bool) & ~frame.validated.astype(bool)
        metric = pd.Series(np.where(trained, "train_loss", "val_loss"), index=frame.index)
        best = np.where(trained, frame.train_loss, frame.val_loss)
        return pd.DataFrame({"metric": metric.astype("string"), "best": best}, index=frame.index)

    def runs(self, sweep: str | None = None, status: str | Iterable[str] | None = None):
        """One row per run with its hyperparameters and results (the ``run_summary`` view).

        Raises ``UnknownSweepError`` for a ``sweep`` the database does not hold (as do all
        methods that take a sweep name).
        """
        self._known(sweep)
        where, params = _filters(sweep=sweep, status=status)
        frame = self._frame(f"SELECT * FROM run_summary {where} ORDER BY run_id", params)
        return _typed(frame, RUN_COLUMNS)

    def epochs(self, sweep: str | None = None, runs: Iterable[int] | None = None) -> pd.DataFrame:
        """One row per (run, epoch), with the run's hyperparameters alongside.

        NaN metrics (stored as NULL and named in ``nan_fields``) come back as NaN. The epoch's
        own learning rate is ``epoch_learning_rate``; ``learning_rate`` is the run's setting.
        """
        self._known(sweep)
        where, params = _filters(sweep=sweep, runs=runs, sweep_column="s.name")
        sql = f"""
            SELECT e.run_id, s.name AS sweep, r.status, r.seed,
                   {", ".join(f"r.{name}" for name in HYPERPARAMETERS)},
                   e.epoch, {", ".join(_epoch_columns())}, e.nan_fields
            FROM epochs e JOIN runs r ON r.id = e.run_id JOIN sweeps s ON s.id = r.sweep_id
            {where}
            ORDER BY e.run_id, e.epoch
        """
        frame = self._frame(sql, params)
        run = _run_types("run_id", "sweep", "status", "seed", *HYPERPARAMETERS)
        types = {**run, "epoch": "int64", **dict.fromkeys(_metric_names(), "float64")}
        frame = _typed(frame, types)
        return _restore_nan(frame)

    def curves(
        self, sweep: str, metrics: Iterable[str] | None = None, runs: Iterable[int] | None = None
    ) -> pd.DataFrame:
        """One row per (run, epoch) of ``sweep`` (of its ``runs`` only, when given) with only
        ``run_id``, ``epoch`` and the ``metrics`` asked for (default all, named as in
        ``epochs()``), NaN restored.

        The lean read for plotting many runs: about 3× faster than ``epochs()``, which repeats
        each run's settings on every row.
        """
        known = dict(zip(_metric_names(), EPOCH_METRICS, strict=True))
        names = [check_choice("metric", m, known) for m in (metrics or known)]
        self._known(sweep)
        where, params = _filters(sweep=sweep, runs=runs, sweep_column="s.name")
        sql = f"""
            SELECT e.run_id, e.epoch, {", ".join(f"e.{known[n]} AS {n}" for n in names)},
                   e.nan_fields
            FROM epochs e JOIN runs r ON r.id = e.run_id JOIN sweeps s ON s.id = r.sweep_id
            {where}
            ORDER BY e.run_id, e.epoch
        """
        frame = self._frame(sql, params)
        types = {"run_id": "int64", "epoch": "int64", **dict.fromkeys(names, "float64")}
        return _restore_nan(_typed(frame, types))

    def progress(self, sweep: str, after: Mapping[int, int] | None = None) -> Progress:
        """Where the runs of ``sweep`` are, in two narrow reads: each run's status and last
        logged epoch, then, unless ``after`` is None, the epochs of each run beyond
        ``after.get(run_id, 0)`` (``run_id``, ``epoch``, the losses and accuracies, NaN
        restored), by run and epoch.

        For following a sweep while it trains: pass ``last_epochs`` of the previous call as
        ``after`` to read only what was logged since.
        """
        runs = (
            select(Run.id, Run.status, func.max(Epoch.epoch))
            .join(Sweep, Sweep.id == Run.sweep_id)
            .outerjoin(Epoch, Epoch.run_id == Run.id)
            .where(Sweep.name == sweep)
            .group_by(Run.id, Run.status)
            .order_by(Run.id)
        )
        with self.store.read() as connection:
            rows = connection.execute(runs).all()
        if not rows:
            self._known(sweep)  # a sweep with no runs yet, or none of that name
        statuses = {run_id: status for run_id, status, _ in rows}
        last_epochs = {run_id: last or 0 for run_id, _, last in rows}
        marks = {} if after is None else {r: after.get(r, 0) for r in last_epochs}
        behind = [r for r, mark in marks.items() if last_epochs[r] > mark]
        types = {"run_id": "int64", "epoch": "int64", **dict.fromkeys(PROGRESS_METRICS, "float64")}
        frame = _typed(pd.DataFrame(columns=list(types)), types)
        if behind:
            # one range per query, the lowest mark; the other runs' older epochs dropped here
            sql = f"""
                SELECT run_id, epoch, {", ".join(PROGRESS_METRICS)}, nan_fields FROM epochs
                WHERE run_id IN ({", ".join(str(int(r)) for r in behind)}) AND epoch > :low
                ORDER BY run_id, epoch
            """
            low = min(marks[r] for r in behind)
            frame = _restore_nan(_typed(self._frame(sql, {"low": low}), types))
            frame = frame[frame.epoch > frame.run_id.map(marks)].reset_index(drop=True)
        return Progress(statuses, last_epochs, frame)

    def configurations(
        self, sweep: str, metric: str = "val_loss", settings: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """One row per configuration of ``sweep`` (its runs that differ only in seed), best
        first: ``configuration`` (as in ``settings()``); ``runs``, ``finished`` (ended, diverged
        included), ``diverged``, ``failed``, ``troubled`` (diverged or failed) and ``pruned``
        (stopped by the sweep's scheduler) counts; ``rung`` (the highest its seeds reached); the
        mean and std over the seeds that finished without diverging or were pruned (scored
        where they stopped) of the final and the best
        ``metric`` (``val_loss`` or ``train_loss``; columns ``final_<metric>_mean``, ``_std``,
        ``best_<metric>_mean``, ``_std``) and of the final accuracy on the same data (see
        ``ACCURACY``; NaN for a regression); then every setting, as in ``settings()``.

        A configuration with any diverged or failed seed ranks after every one without, however
        good its other seeds look; among those, fewer troubled seeds rank first. (The report's
        table is this one.) Pass ``settings`` (``settings(sweep)``) if you have it already.
        """
        check_choice("metric", metric, METRICS)
        settings = self.settings(sweep) if settings is None else settings
        seeds = settings.join(self._scores(sweep, metric), on="run_id")
        return _rank(seeds, metric)

    def _scores(self, sweep: str, metric: str) -> pd.DataFrame:
        """Each run's ``status`` and ``SCORES`` by run id: its ``final`` and ``best`` (lowest
        over its epochs; NaN epochs are NULL and left out, an infinite lowest is no best)
        ``metric``, and its final ``accuracy`` on the same data.

        One read that finds each run's epochs by their key: ``runs()`` would compute every
        column of ``run_summary``, and a GROUP BY over the joined epochs sorts them all; at
        10,000 runs × 100 epochs both cost seconds where this costs about 0.2 s.
        """
        last = "FROM epochs e WHERE e.run_id = r.id ORDER BY e.epoch DESC LIMIT 1"
        sql = f"""
            SELECT r.id AS run_id, r.status, r.rung,
                   (SELECT e.{metric} {last}) AS final,
                   (SELECT min(e.{metric}) FROM epochs e WHERE e.run_id = r.id) AS best,
                   (SELECT e.{ACCURACY[metric]} {last}) AS accuracy
            FROM runs r JOIN sweeps s ON s.id = r.sweep_id
            WHERE s.name = :sweep
        """
        types = {"run_id": "int64", "status": "string", "rung": "Int64"}
        types |= dict.fromkeys(SCORES, "float64")
        scores = _typed(self._frame(sql, {"sweep": sweep}), types).set_index("run_id")
        return scores.assign(best=scores.best.where(np.isfinite(scores.best)))

    def sweep(self, name: str) -> SweepDetails:
        """Sweep ``name``: description, spec text and hash, status and times, its runs counted
        by status, and the distinct versions, hosts and data fingerprints they trained with.

        Raises ``UnknownSweepError`` (a ``StoreError``) for a name the database does not hold.
        """
        with self.store.read() as connection:
            sweep = connection.execute(select(*Sweep.__table__.c).where(Sweep.name == name)).first()
            if sweep is None:
                raise unknown_sweep(connection, name, self.store.url)
            runs = Run.sweep_id == sweep.id
            statuses = connection.execute(
                select(Run.status, func.count()).where(runs).group_by(Run.status)
            ).all()
            provenance = connection.execute(
                select(*(getattr(Run, column) for column in PROVENANCE_COLUMNS))
                .where(runs)
                .distinct()
            ).all()
            last_activity, started_at = connection.execute(
                select(func.max(Run.heartbeat_at), func.min(Run.started_at)).where(runs)
            ).one()
        recorded = ("name", "description", "spec", "spec_hash", "status", "created_at")
        return SweepDetails(
            **{field: getattr(sweep, field) for field in recorded},
            finished_at=sweep.finished_at,
            statuses=dict(sorted(statuses)),
            provenance=_distinct(provenance),
            last_activity=last_activity,
            started_at=started_at,
        )

    def run(self, run_id: int) -> dict:
        """Run ``run_id`` as one record: its ``runs()`` row, its settings (``config``, as
        recorded), ``attempts``, its times, ``error`` (the traceback a failed run ended with,
        else None) and where it trained (``PROVENANCE_COLUMNS``).

        Raises ``UnknownRunError`` (a ``StoreError``) for an id the database does not hold.
        """
        missing = UnknownRunError(f"no run with id {run_id} in {self.location}")
        if not 0 <= run_id <= MAX_ID:  # no run's, and SQLite would overflow on it
            raise missing
        summary = self._frame("SELECT * FROM run_summary WHERE run_id = :id", {"id": run_id})
        if summary.empty:
            raise missing
        details = [getattr(Run, column) for column in (*RUN_DETAILS, *PROVENANCE_COLUMNS)]
        with self.store.read() as connection:
            row = connection.execute(select(*details).where(Run.id == run_id)).one()
        record = _typed(summary, RUN_COLUMNS).iloc[0].to_dict()
        return {**record, **row._asdict(), "config": _as_dict(row.config)}

    def _known(self, *names: str | None) -> None:
        """Raise ``UnknownSweepError`` for the first of ``names`` (None: no filter) that the
        database does not hold: a mistyped name is an error, not an empty result."""
        wanted = [name for name in names if name is not None]
        if not wanted:
            return
        with self.store.read() as connection:
            known = set(connection.scalars(select(Sweep.name).where(Sweep.name.in_(wanted))))
            for name in wanted:
                if name not in known:
                    raise unknown_sweep(connection, name, self.store.url)

    def registration(self, sweep: str) -> tuple[int, int, int]:
        """What changes when runs join or leave sweep ``name``: its id, its number of runs and
        its last run id. A run's settings never change once registered, so ``settings()``
        stays the same while this does."""
        runs = (
            select(Sweep.id, func.count(Run.id), func.coalesce(func.max(Run.id), 0))
            .outerjoin(Run, Run.sweep_id == Sweep.id)
            .where(Sweep.name == sweep)
            .group_by(Sweep.id)
        )
        with self.store.read() as connection:
            found = connection.execute(runs).first()
            if found is None:
                raise unknown_sweep(connection, sweep, self.store.url)
        return tuple(found)

    def settings(self, sweep: str) -> pd.DataFrame:
        """One row per run of ``sweep``: ``run_id``, ``seed``, ``configuration`` (the same for
        the runs that differ only in seed: their settings as JSON) and every setting of that
        configuration, data parameters as ``data.<name>``.

        The hyperparameters are the typed ones of ``runs()``: ``batch_size`` is NULL for batch
        GD (the whole training set) and 1 for stochastic GD, whatever the configuration says.
        The settings whose values differ between runs are the sweep's grid.
        """
        self._known(sweep)
        typed = [getattr(Run, name) for name in HYPERPARAMETERS]
        with self.store.read() as connection:
            rows = connection.execute(
                select(Run.id, Run.seed, Run.config, *typed)
                .join(Sweep, Sweep.id == Run.sweep_id)
                .where(Sweep.name == sweep)
                .order_by(Run.id)
            ).all()
        flat: dict[str, dict] = {}  # runs that differ only in seed share their settings
        records = [_settings_record(flat, *row) for row in rows]
        frame = pd.DataFrame.from_records(records, columns=_settings_columns(records))
        return _typed(frame, _run_types("run_id", "seed", *HYPERPARAMETERS))

    def default_metric(self, sweeps: Iterable[str]) -> str:
        """What to rank and plot ``sweeps`` by: ``val_loss``, unless they have logged epochs
        and none of them a validation loss (no validation split), then ``train_loss``."""
        sweeps = list(sweeps)
        self._known(*sweeps)
        epochs = (
            select(Epoch.val_loss)
            .join(Run, Run.id == Epoch.run_id)
            .join(Sweep, Sweep.id == Run.sweep_id)
            .where(Sweep.name.in_(sweeps))
        )
        with self.store.read() as connection:
            logged = connection.execute(epochs.limit(1)).first() is not None
            validated = connection.execute(
                epochs.where(Epoch.val_loss.is_not(None)).limit(1)
            ).first()
        return "train_loss" if logged and validated is None else "val_loss"

    def rungs(self, sweep: str) -> pd.DataFrame:
        """The rungs of ``sweep``'s scheduler, one row per (bracket, rung), reached or not:
        its ``epoch``; how many configurations ``entered`` it, were ``promoted`` from it (the
        cut), ``pruned`` at it and are ``waiting`` for its decision (none at the last rung,
        where runs end); and the ``best`` score there (the scheduler's metric, mean over
        seeds). Empty for a sweep without a scheduler."""
        scheduler = self.scheduler(sweep)
        columns = ["bracket", "rung", "epoch", "entered", "promoted", "pruned", "waiting"]
        if scheduler is None:
            return _typed(pd.DataFrame(columns=[*columns, "best"]), {"best": "float64"})
        sql = """
            SELECT g.bracket, g.rung, g.decision, count(*) AS n,
                   min(g.score) AS lowest, max(g.score) AS highest
            FROM rung_entries g JOIN sweeps s ON s.id = g.sweep_id
            WHERE s.name = :sweep
            GROUP BY g.bracket, g.rung, g.decision
        """
        found = self._frame(sql, {"sweep": sweep})
        maximised = scheduler["metric"] in ("train_accuracy", "val_accuracy")
        epochs, top = scheduler["rungs"], len(scheduler["rungs"]) - 1
        rows = []
        for bracket in range(scheduler["brackets"]):
            for rung in range(bracket, top + 1):
                here = found[(found.bracket == bracket) & (found.rung == rung)]
                count = {d: int(here.n[here.decision == d].sum()) for d in RUNG_DECISIONS}
                scores = here.highest if maximised else here.lowest
                best = (scores.max() if maximised else scores.min()) if len(here) else None
                rows.append(
                    {
                        "bracket": bracket,
                        "rung": rung,
                        "epoch": epochs[rung],
                        "entered": int(here.n.sum()),
                        **count,
                        "waiting": 0 if rung == top else int(here.n[here.decision.isna()].sum()),
                        "best": best,
                    }
                )
        types = dict.fromkeys(columns, "int64") | {"best": "float64"}
        return _typed(pd.DataFrame(rows, columns=[*columns, "best"]), types)

    def scheduler(self, sweep: str) -> dict | None:
        """``sweep``'s scheduler: ``type`` (sha, asha, hyperband), ``metric``, ``min_epochs``,
        ``eta``, ``max_epochs``, the epoch of each of its ``rungs`` and how many ``brackets``;
        None when its runs train in full."""
        self._known(sweep)
        with self.store.read() as connection:
            found = connection.scalar(select(Sweep.scheduler).where(Sweep.name == sweep))
        return None if found is None else dict(found)

    def budget(self, sweep: str) -> Budget:
        """The epochs ``sweep``'s runs have spent, against those of its full grid (every run
        trained to its ``epochs``)."""
        self._known(sweep)
        with self.store.read() as connection:
            runs = select(Run.id).join(Sweep, Sweep.id == Run.sweep_id).where(Sweep.name == sweep)
            spent = connection.scalar(
                select(func.count()).select_from(Epoch).where(Epoch.run_id.in_(runs))
            )
            full = connection.scalar(
                select(func.coalesce(func.sum(Run.epochs), 0))
                .join(Sweep, Sweep.id == Run.sweep_id)
                .where(Sweep.name == sweep)
            )
        return Budget(int(spent or 0), int(full or 0))

    def failures(self, sweep: str) -> pd.DataFrame:
        """One row per failed run of ``sweep``: ``run_id``, ``seed``, the hyperparameters,
        ``attempts`` and ``error`` (the traceback it failed with)."""
        hyperparameters = [getattr(Run, name) for name in HYPERPARAMETERS]
        columns = [Run.id.label("run_id"), Run.seed, *hyperparameters, Run.attempts, Run.error]
        self._known(sweep)
        with self.store.read() as connection:
            result = connection.execute(
                select(*columns)
                .join(Sweep, Sweep.id == Run.sweep_id)
                .where(Sweep.name == sweep, Run.status == "failed")
                .order_by(Run.id)
            )
            frame = pd.DataFrame(list(map(tuple, result.fetchall())), columns=list(result.keys()))
        return _typed(frame, _run_types("run_id", "seed", *HYPERPARAMETERS))

    def _frame(self, sql: str, params: dict) -> pd.DataFrame:
        with self.store.read() as connection:
            result = connection.execute(text(sql), params)
            # plain tuples: pandas probes each Row's attributes, and a Row answers a missing
            # one by raising, which cost half the time of reading 100,000 epochs
            return pd.DataFrame(list(map(tuple, result.fetchall())), columns=list(result.keys()))

    @property
    def location(self) -> str:
        """The database's URL with any password hidden, for display."""
        return display_url(self.store.url)

    def __repr__(self) -> str:
        return f"Lab({self.store!r})"


def _configuration(config: dict) -> str:
    """What the runs that differ only in seed share: the settings without the seed, as JSON
    (``json.loads`` gives them back)."""
    return json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)


SCORES = ("final", "best", "accuracy")  # what _rank averages over a configuration's seeds
RANKING_COUNTS = ("runs", "finished", "diverged", "failed", "troubled", "pruned")  # of seeds


def _rank(seeds: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``Lab.configurations`` from ``seeds``, one row per run: ``configuration``, ``status``,
    ``SCORES`` and the run's settings."""
    status = seeds.status
    counted = seeds.assign(
        finished=status.isin(FINISHED_STATUSES),
        diverged=status == "diverged",
        failed=status == "failed",
        pruned=status == PRUNED,
    )
    table = counted.groupby("configuration", sort=False).agg(
        runs=("run_id", "size"),  # RANKING_COUNTS
        finished=("finished", "sum"),
        diverged=("diverged", "sum"),
        failed=("failed", "sum"),
        pruned=("pruned", "sum"),
    )
    table["troubled"] = table.diverged + table.failed
    table["rung"] = counted.groupby("configuration", sort=False).rung.max()
    # a pruned seed is scored where it stopped: the rung says how far that was
    clean = seeds[status.isin((*CLEAN_STATUSES, PRUNED))].groupby("configuration")
    spread = clean[list(SCORES)].agg(list(STATS))
    names = _score_names(metric)
    spread.columns = [f"{names[score]}_{stat}" for score, stat in spread.columns]
    unscored = ["run_id", "seed", "configuration", "status", "rung", *SCORES]
    settings = seeds.drop(columns=unscored).groupby(seeds.configuration, sort=False).first()
    table = table.join(spread).join(settings)
    # under a scheduler, configurations that went further rank first
    table["_further"] = -table.rung.astype("float64").fillna(0)
    order = ["troubled", "_further", f"final_{metric}_mean"]
    ranked = table.sort_values(order, na_position="last", kind="stable").reset_index()
    return ranked.drop(columns="_further")


def ranking_columns(metric: str) -> list[str]:
    """The columns of ``Lab.configurations(sweep, metric)`` before its settings: what identifies,
    counts and scores a configuration."""
    scores = _score_names(metric).values()
    return [
        "configuration",
        *RANKING_COUNTS,
        "rung",
        *(f"{s}_{stat}" for s in scores for stat in STATS),
    ]


STATS = ("mean", "std")  # what Lab.configurations says of each score over the clean seeds


def _score_names(metric: str) -> dict[str, str]:
    """What each of ``SCORES`` is called in ``Lab.configurations`` when ranking by ``metric``."""
    accuracy = ACCURACY[metric]
    return {"final": f"final_{metric}", "best": f"best_{metric}", "accuracy": f"final_{accuracy}"}


def _as_dict(config) -> dict:
    return json.loads(config) if isinstance(config, str) else dict(config)


def _flat(config: dict, prefix: str = "") -> dict:
    """``{"data": {"noise": 0.2}, "hidden": [16, 16]}`` -> ``{"data.noise": 0.2, "hidden":
    "16,16"}``: one scalar per setting."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat[f"{prefix}{key}"] = ",".join(str(v) for v in value)
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _settings_record(flat: dict, run_id: int, seed: int, config, *hyperparameters) -> dict:
    """One row of ``Lab.settings``: the flattened configuration, its typed hyperparameters.
    ``flat`` keeps each configuration's flattened settings, flattened once."""
    config = _as_dict(config)
    configuration = _configuration(config)
    if configuration not in flat:
        flat[configuration] = _flat(config)
    typed = dict(zip(HYPERPARAMETERS, hyperparameters, strict=True))
    ids = {"run_id": run_id, "seed": seed, "configuration": configuration}
    return {**flat[configuration], **ids, **typed}


def _settings_columns(records: list[dict]) -> list[str]:
    """run_id, seed, configuration, the hyperparameters, then the other settings as first seen."""
    first = ["run_id", "seed", "configuration", *HYPERPARAMETERS]
    rest = dict.fromkeys(key for record in records for key in record if key not in first)
    return [*first, *rest]


def _distinct(rows) -> dict[str, list[str]]:
    """The distinct non-NULL values of each provenance column, sorted."""
    return {
        column: sorted({str(row[i]) for row in rows if row[i] is not None})
        for i, column in enumerate(PROVENANCE_COLUMNS)
    }


def quantiles(values: np.ndarray, qs=QUARTILES) -> np.ndarray:
    """Per column of ``values`` (rows × columns), the quantiles ``qs`` over its non-NaN rows,
    linearly interpolated (an infinite value stays infinite where both neighbours are it); NaN
    for a column without any. Returns shape (len(qs), columns)."""
    ordered = np.sort(values, axis=0)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(values), axis=0)
    columns = np.flatnonzero(count)
    out = np.full((len(qs), values.shape[1]), np.nan)
    for i, q in enumerate(qs):
        position = q * (count[columns] - 1)
        low = np.floor(position).astype(int)
        high = np.ceil(position).astype(int)
        a, b = ordered[low, columns], ordered[high, columns]
        with np.errstate(invalid="ignore"):  # inf - inf: that neighbour pair is a, below
            between = a + (b - a) * (position - low)
        out[i, columns] = np.where(a == b, a, between)
    return out


def connect(url: str | None = None) -> Lab:
    """Open the tracking database at ``url`` (default: ``$NNLAB_DB``, else ``nnlab.db``) for
    reading; a database that does not exist yet is an error, not created."""
    return Lab(open_store(url, read_only=True))


# epochs() columns named apart from the run's hyperparameters
_EPOCH_ALIASES = {"learning_rate": "epoch_learning_rate"}


def _metric_names() -> list[str]:
    return [_EPOCH_ALIASES.get(name, name) for name in EPOCH_METRICS]


def _epoch_columns() -> list[str]:
    return [
        f"e.{name} AS {alias}" for name, alias in zip(EPOCH_METRICS, _metric_names(), strict=True)
    ]


def _filters(*, sweep=None, status=None, runs=None, sweep_column="sweep") -> tuple[str, dict]:
    """A WHERE clause with bound parameters for the filters that are given."""
    clauses, params = [], {}
    if sweep is not None:
        clauses.append(f"{sweep_column} = :sweep")
        params["sweep"] = sweep
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        names = [f":status{i}" for i in range(len(statuses))]
        clauses.append(f"status IN ({', '.join(names)})" if names else "1 = 0")
        params.update({name[1:]: value for name, value in zip(names, statuses, strict=True)})
    if runs is not None:
        ids = [int(run) for run in runs]
        clauses.append(f"e.run_id IN ({', '.join(str(i) for i in ids) or 'NULL'})")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _run_types(*columns: str) -> dict[str, str]:
    return {column: RUN_COLUMNS[column] for column in columns}


def _typed(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    for column, dtype in types.items():
        if column in frame:
            if dtype == "float64":
                frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
            else:
                frame[column] = frame[column].astype(dtype)
    return frame


def _restore_nan(frame: pd.DataFrame) -> pd.DataFrame:
    flagged = frame["nan_fields"].notna()
    for index, fields in frame.loc[flagged, "nan_fields"].items():
        for name in fields.split(","):
            column = _EPOCH_ALIASES.get(name, name)
            if column in frame:  # curves() reads only some metrics
                frame.at[index, column] = np.nan
    return frame.drop(columns="nan_fields")
