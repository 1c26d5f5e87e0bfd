"""Running a sweep: register every run as pending, then train them in parallel with joblib.

Runs train in joblib workers (loky processes, threads, or a Dask cluster); each opens its own
store engine and logs its epochs live, and results stream back as they finish
(``return_as="generator_unordered"``), so the parent holds no histories. An exception in a run
marks that run ``failed`` with its traceback and the sweep goes on; a worker process that dies
costs only the runs it held (they are trained again, and a run whose worker dies twice is
failed). The parent watches the runs' heartbeats: if none beats and no result comes for the
stale window, the sweep stops instead of waiting forever. Interrupting the sweep marks its
in-flight runs ``interrupted``. Running the same spec again resumes: only pending,
interrupted and stale running runs (and failed ones with ``retry_failed``) train.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from uuid import uuid4

import joblib
from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import TerminatedWorkerError
from sqlalchemy.exc import DBAPIError, OperationalError

from nnlab import stops
from nnlab.checks import InputError, check_choice, check_int, plural
from nnlab.engine import arithmetic, kernels
from nnlab.engine.checkpoint import Checkpoint
from nnlab.engine.packed import MAX_PACK, PER_RUN_SETTINGS, split
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.database import Store, StoreFault, portable_url
from nnlab.store.models import PAUSED, STALE_AFTER, heartbeat_interval
from nnlab.store.queue import FINAL_STATUSES, RESUMABLE_STATUSES, Holding, RunLost, RunQueue
from nnlab.store.registry import sweep_spec
from nnlab.store.rungs import Ladder, settle_run
from nnlab.sweeps import halving
from nnlab.sweeps.config import train_configs
from nnlab.sweeps.grid import DEFAULT_MAX_RUNS, GridPoint, check_data, expand_grid, from_values
from nnlab.sweeps.spec import SpecError, SweepSpec, parse_spec


@dataclass
class SweepResult:
    """What a call of ``run_sweep`` did, accounting for every run of the sweep: ``total`` is
    ``ran + before + elsewhere + unfinished``. ``best()`` ranks its configurations, ``report``
    is the path of its HTML report once written (``nnlab.sweep`` writes it)."""

    sweep_id: int
    name: str
    total: int
    url: str = ""  # the database's URL
    statuses: Counter = field(default_factory=Counter)  # trained by this call, by outcome
    before: int = 0  # final before this call began (and not retried)
    elsewhere: int = 0  # finished meanwhile by another runner on the same sweep
    left: Counter = field(default_factory=Counter)  # not final when it returned, by status
    failed: int = 0  # failed runs of the sweep at the end, whoever trained them
    accounted: bool = False  # the end was read from the database (not if it failed)
    report: Path | None = None
    report_error: str | None = None  # why no report was written, if it failed

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())

    @property
    def unfinished(self) -> int:
        return sum(self.left.values())

    @property
    def metric(self) -> str:
        """The loss configurations are ranked by: ``val_loss``, or ``train_loss`` when the
        sweep holds out no validation data."""
        return self.lab().default_metric([self.name])

    def best(self, n: int | None = None):
        """The sweep's configurations, best first (see ``Lab.configurations``): a DataFrame."""
        ranked = self.lab().configurations(self.name, self.metric)
        return ranked if n is None else ranked.head(n)

    def lab(self):
        """The database, for reading (``nnlab.connect``)."""
        from nnlab.store import connect

        return connect(self.url)

    def summary(self) -> str:
        """Where every run stands, in a line: trained now, final before, by another runner,
        failed, left unfinished."""
        parts = [f"trained now: {_counts(self.statuses) or 'none'}", f"final before: {self.before}"]
        if self.elsewhere:
            parts.append(f"finished by another runner: {self.elsewhere}")
        if self.failed:
            parts.append(f"failed in all: {self.failed}")
        if self.unfinished:
            parts.append(f"left: {_counts(self.left)}")
        return f"sweep {self.name!r}: {plural(self.total, 'run')}; " + "; ".join(parts)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counter.items()))


def plan(spec: SweepSpec, max_runs: int = DEFAULT_MAX_RUNS, workers: int = 1) -> list[GridPoint]:
    """Every run of the spec, validated down to the data and to the memory a run may take when
    ``workers`` runs train at once on this machine (nothing is written)."""
    return check_data(spec, expand_grid(spec, max_runs), workers)


BACKENDS = ("loky", "threading", "dask")
FRUITLESS_DEATHS = 3  # workers dying one after another without settling any run: give up


class SweepStopped(RuntimeError):
    """The sweep cannot go on (its workers are gone, or keep dying); it is saved, resumable."""


class SweepStalled(SweepStopped):
    """No run of the sweep came back or wrote a heartbeat for ``stale_after`` seconds: the
    workers are gone (a Dask cluster that lost its workers waits for them forever)."""


def run_sweep(
    spec: SweepSpec,
    url: str | None = None,
    *,
    jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    retry_failed: bool = False,
    max_runs: int = DEFAULT_MAX_RUNS,
    stale_after: float = STALE_AFTER,
    max_pack: int = MAX_PACK,
    on_result: Callable[[int, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_wait: Callable[[list[Holding]], None] | None = None,
) -> SweepResult:
    """Run (or resume) ``spec`` against the store at ``url``, until every run of the sweep is
    final; return what happened to each.

    ``backend`` is joblib's: ``loky`` (``jobs`` worker processes), ``threading`` (``jobs``
    threads) or ``dask`` (the cluster at ``scheduler``, whose workers need a database they can
    all reach, i.e. PostgreSQL; or a local cluster of ``jobs`` worker processes). A run that
    writes no heartbeat for ``stale_after`` seconds is presumed dead, and so is at once one
    whose holding process is provably gone; either is trained again. Runs that a live runner
    elsewhere holds are waited for. If no run at all makes progress for ``stale_after`` the
    sweep stops with ``SweepStalled``; if the database fails, with ``StoreFault``; both leave
    it resumable. Runs that differ only in settings a pack lets each run have (learning rate,
    schedule, optimizer hyperparameters, ...) train together, ``max_pack`` at most to a worker
    (``nnlab.engine.train_many``; 1: each alone), each exactly as it would alone.

    ``on_start(n)`` is called with the number of runs about to train (again for each later
    batch, e.g. runs taken over from a runner that died), ``on_result(run_id, status)`` as
    each run this call trains finishes, ``on_wait(holdings)`` when it starts waiting for runs
    held elsewhere; all in this process.
    """
    check_choice("backend", backend, BACKENDS)
    check_int("max_pack", max_pack, 1, why="the most runs trained together")
    kernels.check()
    points = plan(spec, max_runs, workers=1 if scheduler else jobs)  # a cluster's are elsewhere
    here = backend == "threading" or (backend == "loky" and jobs == 1)  # trains in this process
    modes = {point.config.subnormals for point in points}
    for mode in modes:
        # flush where numba is missing, or keep in a thread that flushes without it: an error
        # before anything is stored
        arithmetic.check(mode, in_this_thread=here)
    store = open_store(url)
    resume = resumption(store, spec)
    rungs = halving.ladder(spec)
    pool = _Pool(backend, jobs, scheduler, store, stale_after, rungs, max_pack, "flush" in modes)
    with pool, store.guard():
        rows = halving.run_rows(points, rungs)
        sweep_id = register_sweep(
            store,
            spec.name,
            rows,
            description=spec.description,
            spec=spec.text,
            spec_hash=spec.spec_hash,
            replaces=resume.replaces,
            scheduler=None if rungs is None else rungs.as_dict(),
        )
        queue = RunQueue(store, sweep_id, stale_after)
        result = SweepResult(sweep_id, spec.name, total=len(points), url=store.url)
        result.before = _final(queue.tally(), retry_failed)
        queue.start_sweep()
        try:
            settling = _settle_all(queue, pool, retry_failed, on_start, on_wait, rungs)
            for run_id, status in settling:
                result.statuses[status] += 1
                if on_result is not None:
                    on_result(run_id, status)
        except BaseException as stop:  # Ctrl-C, SIGTERM (the CLI), a stall, a store fault, a bug
            with stops.held():  # whatever began the stop, a Ctrl-C now cannot cut it short
                pool.stop()  # first, so that no worker writes after its run is marked
                with contextlib.suppress(DBAPIError, StoreFault):  # what can be marked is
                    store.check_file()
                    queue.interrupt(lease_prefix=pool.lease_prefix)
            stop.sweep_result = result  # where every run stands, filled in below
            raise
        finally:
            with contextlib.suppress(DBAPIError, StoreFault):
                store.check_file()  # a replaced file is not written to
                _account(result, queue)
    return result


def _final(tally: Counter, retry_failed: bool) -> int:
    """How many runs are final and stay so (failed ones are trained again if retried)."""
    kept = [s for s in FINAL_STATUSES if not (retry_failed and s == "failed")]
    return sum(tally[status] for status in kept)


def _account(result: SweepResult, queue: RunQueue) -> None:
    """Fill in the end of ``result`` from the database, and the sweep's status from its runs."""
    result.left = queue.settle_sweep()
    tally = queue.tally()
    result.failed = tally["failed"]
    result.elsewhere = result.total - result.before - result.ran - result.unfinished
    result.accounted = True


NOT_CLAIMED = "not_claimed"  # another runner holds the run, or the database refused the claim
LOST = "lost"  # the attempt lost its run while training (interrupted, or taken over)
WORKERS_BLOCK = {signal.SIGINT, signal.SIGHUP}  # what workers never take: _shield_workers
MAPPING_GRACE = 10.0  # seconds a stop waits for joblib's clean-up after killing the workers
FRUITLESS_ROUNDS = 3  # rounds in a row that could claim no run at all: the database is stuck


def _settle_all(queue: RunQueue, pool: _Pool, retry_failed: bool, on_start, on_wait, rungs):
    """Train every run of the sweep that is not final, in rounds, until none is left: each
    round takes over runs whose holder is gone, then trains what can be claimed; runs that a
    live runner elsewhere holds are waited for (and taken over if that runner goes silent).
    Under a scheduler (``rungs``), runs promoted while a round trains join it, and each round
    first takes any rung decision left due. Yields (run id, status) of each run this call
    brings to its end (trained, or pruned by a decision taken here)."""
    claimable = (*RESUMABLE_STATUSES, *(("failed",) if retry_failed else ()))
    fruitless = 0
    announced: set[int] = set()
    while True:
        queue.take_over_dead()
        if rungs is not None:
            yield from queue.settle_rungs(rungs)
        todo = queue.todo(claimable)
        if todo:
            fresh = {run_id for run_id, _ in todo} - announced
            if on_start is not None and fresh:
                on_start(len(fresh))
            announced |= fresh
            refill = None if rungs is None else _promoted(queue, announced)
            settled = 0
            for run_id, status in _train_all(queue, todo, pool, claimable, refill):
                if status in FINAL_STATUSES or status == PAUSED:
                    settled += 1
                if status in FINAL_STATUSES:
                    yield run_id, status
            claimable = RESUMABLE_STATUSES  # a failed run is retried once per call
            fruitless = 0 if settled else fruitless + 1
            if fruitless >= FRUITLESS_ROUNDS:
                raise SweepStopped(
                    f"{fruitless} rounds in a row could claim none of the {len(todo)} runs left "
                    "(is the database locked by another program?). The sweep is saved; run "
                    "the same command to resume it"
                )
            continue
        unfinished = queue.unfinished()
        held = [run for run in unfinished if run.status == "running"]
        if not unfinished:
            return
        if held:
            if on_wait is not None:
                on_wait(held)
            _wait_for(queue, held)
        elif any(run.status in RESUMABLE_STATUSES for run in unfinished):
            continue  # claimable since ``todo`` was read (another runner promoted them, say)
        else:  # only paused runs left, and no decision due: the rungs' records are broken
            raise SweepStopped(
                f"{plural(len(unfinished), 'run')} paused at rungs that no decision is due "
                "for, and nothing left to train: its rung_entries were changed by hand? "
                "The sweep is saved as it is"
            )


def _promoted(queue: RunQueue, announced: set[int]):
    """What a round under a scheduler trains once its first runs are dispatched: runs
    promoted since (or interrupted and free), of those the round has announced."""

    def refill() -> list[tuple[int, dict]]:
        return [(run_id, config) for run_id, config in queue.todo() if run_id in announced]

    return refill


def _wait_for(queue: RunQueue, held: list[Holding]) -> None:
    """Return once any of the ``held`` runs has changed hands or ended, or some other run of
    the sweep can be claimed; the holders' heartbeats are what say they are still alive (a
    silent one is taken over after the stale window, a provably dead one at once)."""
    before = {run.run_id: run.heartbeat_at for run in held}
    pause = min(1.0, queue.stale_after / 8)
    while True:
        time.sleep(pause)
        queue.store.check_file()
        if queue.take_over_dead() or queue.todo():
            return
        now = {run.run_id for run in queue.unfinished() if run.status == "running"}
        if now != set(before):
            return


@dataclass(frozen=True)
class Resumption:
    """How a spec meets the sweep of its name already in the database: ``new``, ``same``
    (a resume), or ``extends`` (new grid values or seeds: only the new runs train);
    ``replaces`` is the stored spec hash that the spec takes the place of."""

    kind: str
    replaces: str | None = None


def resumption(store, spec: SweepSpec) -> Resumption:
    """Whether ``spec`` may run against ``store``; a spec that changes a stored sweep in any
    other way than adding grid values or seeds is refused (``SpecError``), saying how."""
    stored = sweep_spec(store, spec.name)
    if stored is None:
        return Resumption("new")
    known, text = stored
    if known == spec.spec_hash:
        return Resumption("same")
    if known == spec.text_hash:  # stored by nnlab 0.1, which hashed the text
        return Resumption("same", replaces=known)
    stored = _stored_spec(text, spec.name)
    why = _not_an_extension(stored, spec) or _scheduler_change(stored, spec)
    if why:
        raise SpecError(
            f"{spec.source}: a sweep named {spec.name!r} already exists with a different spec "
            f"({why}); resume it with its original spec, add only grid values or seeds to "
            f"extend it, or give this one a new name (name: {spec.name}-2)"
        )
    return Resumption("extends", replaces=known)


def _stored_spec(text: str, name: str) -> SweepSpec | None:
    try:
        return parse_spec(text, source=f"the stored spec of {name!r}")
    except SpecError:  # written by an nnlab with other rules
        return None


def _not_an_extension(old: SweepSpec | None, new: SweepSpec) -> str:
    """Why ``new`` does not extend ``old`` (empty if it does): the same data, settings and
    exclusions, the same grid axes with at least their values, at least its seeds."""
    if old is None:
        return "the stored spec cannot be read by this nnlab"
    for part in ("data", "base", "exclude"):
        if getattr(old, part) != getattr(new, part):
            return f"its {_PARTS[part]} differ"
    if set(old.grid) != set(new.grid):
        return f"its grid axes differ: {', '.join(sorted(set(old.grid) ^ set(new.grid)))}"
    for axis, values in old.grid.items():
        dropped = [value for value in values if value not in new.grid[axis]]
        if dropped:
            return f"it drops grid.{axis} {', '.join(map(str, dropped))}"
    dropped = [seed for seed in old.seeds if seed not in new.seeds]
    return f"it drops seeds {', '.join(map(str, dropped))}" if dropped else ""


_PARTS = {"data": "data settings", "base": "model or train settings", "exclude": "exclusions"}


def _scheduler_change(old: SweepSpec | None, new: SweepSpec) -> str:
    """Why ``new`` cannot extend ``old`` for their schedulers (empty if it can): they must
    be the same, and a scheduled sweep takes no new runs (its rungs were decided over the
    configurations it had)."""
    if old is None or old.scheduler != new.scheduler:
        return "its scheduler differs"
    if new.scheduler is not None:
        return (
            "it adds runs to a sweep with a scheduler, whose rungs were decided over the "
            "configurations it had"
        )
    return ""


def _train_all(queue: RunQueue, todo: list[tuple[int, dict]], pool: _Pool, claimable, refill=None):
    """Train the runs to do, tracking which have come back; with ``refill``, what it returns
    once they are all dispatched joins them, until it returns nothing. When a worker process
    dies (segfault, os._exit, OOM kill), joblib abandons the whole batch: the runs that were
    in flight are suspects, each trained again alone in a worker of its own, so only a run
    that kills its worker again is failed; the rest go back to the pool. Workers that die
    again and again before settling any run stop the sweep."""
    waiting: dict[int, dict] = {}
    source = _feed(todo, waiting, refill, pool)
    fruitless = 0
    while True:
        try:
            results = pool.map(source, claimable)
            for run_id, status, made_final in _watched(results, queue):
                waiting.pop(run_id, None)
                fruitless = 0
                yield from _outcomes(run_id, status, made_final)
        except _Silent:
            # the runs left are stuck on workers that fell silent (a machine cut off, which
            # its scheduler notices only after its own timeouts): leave this batch, and let
            # the next round train them under fresh leases on the workers that are alive
            pool.forget_leases(queue.take_over_silent())
            return
        except pool.worker_died:
            settled = 0
            for run_id, status in _quarantine(queue, waiting, pool):
                settled += 1
                yield run_id, status
            fruitless = 0 if settled else fruitless + 1
            if fruitless >= FRUITLESS_DEATHS:
                raise SweepStopped(
                    f"{fruitless} worker processes in a row died before settling any run: "
                    "something kills them at start-up (memory? a broken install?). The sweep "
                    "is saved; run the same command to resume it"
                ) from None
        if not waiting:
            return
        source = _feed(list(waiting.items()), waiting, None, pool)  # a dead worker's


def _feed(todo: list[tuple[int, dict]], waiting: dict[int, dict], refill, pool: _Pool):
    """Yield ``todo`` in packs, each run put in ``waiting`` as its pack is dispatched; then
    what ``refill`` gives of runs not in flight, until it gives nothing."""
    items = todo
    while items:
        tasks = packs(items, pool.jobs, pool.max_pack)
        if pool.rungs is None:  # a scheduler's order is its own (rungs, then a fixed shuffle)
            tasks = longest_first(tasks)
        for pack in tasks:
            for run_id, config in pack:
                waiting[run_id] = config
            yield pack
        if refill is None:
            return
        items = [(run_id, config) for run_id, config in refill() if run_id not in waiting]


def packs(
    items: list[tuple[int, dict]], jobs: int, max_pack: int = MAX_PACK
) -> list[list[tuple[int, dict]]]:
    """The runs to train together, as tasks: runs whose settings differ only in what a pack
    lets each run have its own (``PER_RUN_SETTINGS``, the activation and the seed), side by
    side by activation and seed, at most ``max_pack`` to a task, in packs of sizes that
    differ by one, and smaller when that leaves fewer than two tasks per worker. In the order
    of each pack's first run."""
    groups: dict[str, list[tuple[int, dict]]] = {}
    for item in items:
        groups.setdefault(_pack_key(item[1]), []).append(item)
    members = [sorted(group, key=_side_by_side) for group in groups.values()]
    counts = [-(-len(group) // max_pack) for group in members]  # as few packs as fit
    while sum(counts) < 2 * jobs:  # split the largest packs further, while there are any
        largest = max(range(len(members)), key=lambda g: len(members[g]) / counts[g])
        if len(members[largest]) == counts[largest]:
            break
        counts[largest] += 1
    tasks = [
        pack for group, count in zip(members, counts, strict=True) for pack in split(group, count)
    ]
    position = {run_id: index for index, (run_id, _) in enumerate(items)}
    return sorted(tasks, key=lambda pack: min(position[run_id] for run_id, _ in pack))


def longest_first(tasks: list[list[tuple[int, dict]]]) -> list[list[tuple[int, dict]]]:
    """``tasks`` with the most work first, so that no long pack starts last and leaves the
    other workers idle while it ends (Graham's longest-processing-time rule). A pack's work
    is its runs' epochs × (1 + ``STEP_COST`` / batch size): per sample, the arithmetic, and
    per step a fixed cost worth ``STEP_COST`` samples'; a full batch is one step an epoch."""

    def work(pack: list[tuple[int, dict]]) -> float:
        config = pack[0][1]
        batch = {"batch": math.inf, "stochastic": 1}.get(config.get("gd"))
        batch = batch or config.get("batch_size") or math.inf
        return sum(c.get("epochs", 1) for _, c in pack) * (1 + STEP_COST / batch)

    return sorted(tasks, key=work, reverse=True)


# what a training step costs beyond its arithmetic, in samples' worth (a 64-128-10 network
# takes ~80 µs a packed step of 32 rows, ~1 µs a sample of it)
STEP_COST = 32
_OWN = {*PER_RUN_SETTINGS, "init", "activation", "seed"}


def _side_by_side(item: tuple[int, dict]) -> tuple:
    config = item[1]
    return str(config.get("activation")), config.get("seed", 0)


def _pack_key(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in _OWN}, sort_keys=True)


def _outcomes(run_id: int, status: str, made_final) -> Iterator[tuple[int, str]]:
    """(run id, status) of a task's run, then of each other run its decisions made final."""
    final = dict(made_final)
    yield run_id, final.pop(run_id, status)
    yield from final.items()


def _quarantine(queue: RunQueue, waiting: dict[int, dict], pool: _Pool):
    """After a worker died: settle the runs it may have held, one by one, in isolation."""
    statuses = queue.statuses(list(waiting))
    for run_id, status in statuses.items():
        if status in FINAL_STATUSES:  # finished before the crash, not reported
            waiting.pop(run_id)
            yield run_id, status
    suspects = [run_id for run_id, status in statuses.items() if status == "running"]
    for run_id in suspects:
        config = waiting.pop(run_id)
        try:
            # under its own lease: a run another runner has meanwhile taken is not taken back
            results = pool.map([[(run_id, config)]], claimable=(), alone=True)
            for run_id_, status, made_final in _watched(results, queue):
                yield from _outcomes(run_id_, status, made_final)
        except pool.worker_died:
            queue.fail(run_id, "its worker process died, twice: once beside other runs, once alone")
            yield run_id, "failed"


class _Silent(Exception):
    """The workers went silent after some of them made progress: some are still there."""


def _watched(results: Iterator, queue: RunQueue) -> Iterator:
    """Yield from ``results``, consumed in a thread of its own, while watching the database
    file and for a stall: neither a result nor a heartbeat of any of the sweep's runs for the
    stale window. A stall after some progress raises ``_Silent`` (some workers are gone, the
    others idle), one before any ``SweepStalled`` (all of them are gone)."""
    stale_after = queue.stale_after
    items: Queue = Queue()
    threading.Thread(target=_consume, args=(results, items), daemon=True).start()
    heartbeat, quiet_since = queue.latest_heartbeat(), time.monotonic()
    progressed = False
    while True:
        try:
            done, item = items.get(timeout=min(2.0, stale_after / 4))
        except Empty:
            queue.store.check_file()
            latest = queue.latest_heartbeat()
            if latest != heartbeat:
                heartbeat, quiet_since, progressed = latest, time.monotonic(), True
            elif time.monotonic() - quiet_since > stale_after:
                if progressed:
                    raise _Silent from None
                raise SweepStalled(
                    f"no run has finished or written a heartbeat for {stale_after:g} s: the "
                    "workers are gone. The sweep is saved; run the same command to resume it"
                ) from None
            continue
        if done and item is None:
            return
        if done:
            raise item
        queue.store.check_file()
        quiet_since, progressed = time.monotonic(), True
        yield item


def _consume(results: Iterator, queue: Queue) -> None:
    """Put ``(False, result)`` for each result, then ``(True, None)``, or ``(True, error)``."""
    try:
        for item in results:
            queue.put((False, item))
        queue.put((True, None))
    except BaseException as error:  # handed to the watching thread, which raises it
        queue.put((True, error))


class _Pool:
    """Where runs train: one of joblib's backends, set up for the length of a sweep.

    Every dispatch of a run carries a lease, ``<this pool's prefix>-<random>``; a run is sent
    again (after its worker died) under the same lease, and stopping interrupts only the runs
    held under this pool's prefix, never those of another runner on the same sweep."""

    def __init__(
        self,
        backend: str,
        jobs: int,
        scheduler: str | None,
        store: Store,
        stale_after: float,
        rungs: Ladder | None = None,
        max_pack: int = MAX_PACK,
        flushes: bool = False,
    ) -> None:
        url = portable_url(store.url)
        if scheduler is not None and backend != "dask":
            raise InputError(
                f"a scheduler address ({scheduler!r}) needs --backend dask, not {backend!r}"
            )
        if scheduler is not None and url.startswith("sqlite"):
            raise InputError(
                "the workers of a Dask cluster cannot share an SQLite file: use "
                "a PostgreSQL URL (--db postgresql://...), or drop --scheduler "
                "to run a local cluster"
            )
        self.backend, self.jobs, self.scheduler, self.url = backend, jobs, scheduler, url
        self.stale_after, self.rungs, self.max_pack = stale_after, rungs, max_pack
        self.flushes = flushes  # some run flushes subnormals: every Dask worker must be able to
        # this process's choice of engine path, which every worker takes (a reused loky worker
        # or a Dask worker elsewhere has its own environment)
        self.kernels = kernels.choice()
        self.database_file = store.file  # workers check that they write to this very file
        self.worker_died: tuple[type[BaseException], ...] = (TerminatedWorkerError,)
        self.lease_prefix = uuid4().hex[:16]
        self._leases: dict[int, str] = {}
        self._stopping = threading.Event()
        self._dispatched = False
        self._mapping: threading.Thread | None = None  # the thread that takes map's results
        self._dask = contextlib.ExitStack()

    def __enter__(self) -> _Pool:
        if self.backend == "loky":
            _quiet_resource_tracker()
        if self.backend == "dask":
            client = _start_dask(self._dask, self.scheduler, self.jobs)
            self.worker_died += (_dask_killed_worker(),)
            if self.flushes:
                try:
                    _check_workers_flush(client)
                except BaseException:  # __exit__ will not run: close the client here
                    self._dask.close()
                    raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._dask.close()

    def map(
        self, packs: Iterable[list[tuple[int, dict]]], claimable, alone: bool = False
    ) -> Iterator:
        """Train ``packs`` (lists of (run id, config), each one task) in parallel, taken as
        workers free up; yields (run id, status, runs made final by its decisions) of each
        run as its pack finishes. ``alone``: the one pack given trains in a worker of its own
        (never in this process)."""
        tasks = (
            joblib.delayed(_train_task)(
                self.url,
                [(run_id, config, self._lease(run_id)) for run_id, config in pack],
                claimable,
                self.stale_after,
                self.database_file,
                self.rungs,
                self.max_pack,
                self.kernels,
            )
            for pack in packs
        )
        tasks = itertools.takewhile(lambda _: not self._stopping.is_set(), tasks)
        jobs = 2 if alone else self.jobs  # joblib runs a single job in this process
        if self.backend == "loky":
            _shield_workers()
        self._dispatched = True
        self._mapping = threading.current_thread()
        with self._config():
            # max_nbytes=None: runs take no large arrays, so no memmapping folder to clean up
            parallel = joblib.Parallel(
                n_jobs=jobs, return_as="generator_unordered", max_nbytes=None
            )
            for outcomes in parallel(tasks):
                yield from outcomes

    def forget_leases(self, run_ids: list[int]) -> None:
        """Send these runs next under new leases: the tasks that carried the old ones may
        still run one day (a scheduler re-executing them), and must not take them back."""
        for run_id in run_ids:
            self._leases.pop(run_id, None)

    def _lease(self, run_id: int) -> str:
        if run_id not in self._leases:
            self._leases[run_id] = f"{self.lease_prefix}-{uuid4().hex[:16]}"
        return self._leases[run_id]

    def _config(self):
        if self.backend == "dask":
            return joblib.parallel_config(backend=_DASK_BACKEND)
        if self.backend == "threading":
            return joblib.parallel_config(backend="threading")
        # BLAS threads per worker, so that workers × threads ≤ cores
        threads = max(1, (os.cpu_count() or 1) // max(1, self.jobs))
        return joblib.parallel_config(backend="loky", inner_max_num_threads=threads)

    def stop(self) -> None:
        """Dispatch nothing more and stop the workers (loky's are killed; a thread or a Dask
        task stops at its next write, which finds its run no longer held)."""
        self._stopping.set()
        if self.backend == "loky" and self.jobs > 1 and self._dispatched:
            # reuse=True: the executor joblib is using, whatever its arguments (with other
            # arguments loky would replace it, waiting for its runs to end)
            get_reusable_executor(reuse=True).shutdown(wait=True, kill_workers=True)
            self._join_mapping()
        self._dask.close()

    def _join_mapping(self) -> None:
        """Wait (a bounded while) for the thread taking the results to see the workers gone
        and finish joblib's clean-up: left running into the interpreter's exit, it raced the
        exit's own removal of joblib's temporary folder, which then printed a warning."""
        mapping = self._mapping
        if mapping is not None and mapping is not threading.current_thread():
            mapping.join(timeout=MAPPING_GRACE)


def _shield_workers() -> None:
    """Ctrl-C and a closed terminal signal the whole process group: the runner takes them in
    its main thread and stops the workers itself. Blocked in this thread, the one that starts
    loky's workers, they are blocked in the workers too (a child keeps its signal mask): a
    Ctrl-C that reached workers as they imported their libraries filled the terminal with
    their tracebacks. The standard library's resource tracker unblocks SIGINT in the thread
    that starts it, so it is started first."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKERS_BLOCK)


_TRACKER_WARNINGS = "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"


def _quiet_resource_tracker() -> None:
    """loky's resource tracker (a process of its own, started with this interpreter's ``-W``
    options) warns on stderr of semaphores left behind when a stopped sweep kills its workers,
    and, when the kill races joblib's own clean-up of its temporary folder, prints a
    ``KeyError`` traceback of its bookkeeping; the sweep says itself what happened, in one
    line. So the tracker is started here with its stderr on /dev/null: it has nothing else to
    say that a user could act on."""
    if _TRACKER_WARNINGS not in sys.warnoptions:
        sys.warnoptions.append(_TRACKER_WARNINGS)
    from joblib.externals.loky.backend import resource_tracker

    if getattr(resource_tracker._resource_tracker, "_pid", None) is not None:
        return  # running already, with whatever stderr it was given
    sys.stderr.flush()
    saved, silent = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(silent, 2)  # the tracker inherits fd 2 as it starts; for a moment, ours too
        resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(silent)


def _start_dask(stack: contextlib.ExitStack, scheduler: str | None, jobs: int):
    """A client of the Dask cluster at ``scheduler`` (or of a local one of ``jobs`` worker
    processes), which joblib's dask backend then uses."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--backend dask needs Dask: pip install 'nnlab[dask]'") from None
    _register_dask_backend()
    if scheduler is None:
        # it sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, ... to 1, PYTHONHASHSEED and its own
        # variables in this process's environment for the workers it spawns, and leaves them
        # so: the whole environment is put back when it closes
        stack.callback(_put_back_environment, dict(os.environ))
        local = LocalCluster(n_workers=jobs, threads_per_worker=1, dashboard_address=":0")
        return stack.enter_context(Client(stack.enter_context(local)))
    try:
        return stack.enter_context(Client(scheduler, timeout=10))
    except OSError as error:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler!r}: {error}") from None


def _put_back_environment(before: dict[str, str]) -> None:
    for name in set(os.environ) - set(before):
        del os.environ[name]
    for name, value in before.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _check_workers_flush(client) -> None:
    """Every worker of the cluster can flush subnormals (numba, threadpoolctl, x86-64): an
    ``InputError`` naming a worker that cannot, before the sweep is registered. A worker that
    joins later is not asked: one that cannot fails its flushed runs, each saying why."""
    # a worker that cannot even run the question (nnlab missing there, say) answers with its
    # exception, which is its reason
    answers = client.run(_why_not_flush, on_error="return")
    refused = sorted(
        (address, f"{type(why).__name__}: {why}" if isinstance(why, BaseException) else why)
        for address, why in answers.items()
        if why
    )
    if refused:
        address, why = refused[0]
        raise InputError(
            f"{len(refused)} of {len(answers)} Dask workers cannot train subnormals='flush' "
            f"runs; {address}: {why}"
        )


def _why_not_flush() -> str | None:
    """In a worker: why it cannot flush subnormals, or None."""
    try:
        arithmetic.check("flush")
    except InputError as error:
        return str(error)
    return None


_DASK_BACKEND = "nnlab-dask"


def _register_dask_backend() -> None:
    """joblib's dask backend, except that it never runs the runs in this process: with a
    cluster of one worker thread joblib would fall back to running them one by one here."""
    from joblib._dask import DaskDistributedBackend

    class DaskBackend(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs):
            return max(2, super().effective_n_jobs(n_jobs))

    joblib.register_parallel_backend(_DASK_BACKEND, DaskBackend)


def _dask_killed_worker() -> type[BaseException]:
    """What Dask raises for a task whose workers kept dying (it retries a task a few times)."""
    from distributed import KilledWorker

    return KilledWorker


def _train_task(
    url: str,
    runs: list[tuple[int, dict, str]],
    claimable,
    stale_after: float = STALE_AFTER,
    database_file: tuple[int, int] | None = None,
    rungs: Ladder | None = None,
    max_pack: int = MAX_PACK,
    kernel_choice: str = "auto",
) -> list[tuple[int, str, list[tuple[int, str]]]]:
    """Train a pack of registered runs, ``(run id, config, lease)`` each, logging their epochs
    live; runs in a worker. The runs this task claims train together where the engine can
    pack them (``train_configs``), each exactly as it would alone.

    Returns, for each run, (run id, how the run ended, the runs its scheduler's decisions made
    final), or ``NOT_CLAIMED`` when the run is not this task's to train (another runner holds
    it; the claim is atomic), or the database was too busy to take the claim (the run stays as
    it was), or ``LOST`` when this attempt lost the run while training (interrupted, or
    presumed dead and taken over). Under a scheduler (``rungs``) a run trains from its
    checkpoint, if it has one, to its rung, where it pauses (``paused``) unless it is the last;
    the rung decisions due then are taken in the transaction that records it. An exception of
    one run fails that run only. A database that fails under a run (disk full, file deleted)
    raises ``StoreFault``, which stops the sweep; ``database_file`` is the SQLite file the
    runner opened, which the worker must find at its path (not one put in its place since).
    ``kernel_choice`` is the runner's ``NNLAB_KERNELS``, which this worker takes.
    """
    kernels.adopt(kernel_choice)
    store = open_store(url, create=False)  # a worker never creates a database: the parent did
    store.expect_file(database_file)
    with contextlib.ExitStack() as stack:
        outcomes, writers = {}, []
        for run_id, _, lease in runs:
            writer = stack.enter_context(
                RunWriter(store, run_id, heartbeat_seconds=heartbeat_interval(stale_after))
            )
            if _claimed(writer, claimable, lease, stale_after):
                writers.append(writer)
            else:
                outcomes[run_id] = (run_id, NOT_CLAIMED, [])
        configs = {run_id: config for run_id, config, _ in runs}
        claimed = [configs[writer.run_id] for writer in writers]
        trained = _train_claimed(writers, claimed, rungs, max_pack)
        packed = len(writers) > 1
        for writer, outcome in zip(writers, trained, strict=True):
            outcomes[writer.run_id] = _record(writer, outcome, rungs, packed)
    return [outcomes[run_id] for run_id, _, _ in runs]


def _claimed(writer: RunWriter, claimable, lease: str, stale_after: float) -> bool:
    try:
        return writer.start(claimable=claimable, lease=lease, stale_after=stale_after)
    except StoreFault as fault:
        if _busy(fault):  # e.g. SQLite still locked after its busy timeout
            return False
        raise


def _train_claimed(writers: list[RunWriter], configs: list[dict], rungs: Ladder | None, max_pack):
    """Train the claimed runs: in full, or under a scheduler each from its checkpoint (if
    any) to the epoch of the rung it was claimed at."""
    until_epochs, resumes = [], []
    for writer in writers:
        scheduled = rungs is not None and writer.rung is not None
        until_epochs.append(rungs.epochs[writer.rung] if scheduled else None)
        checkpoint = writer.checkpoint if scheduled else None
        resumes.append(None if checkpoint is None else Checkpoint.from_bytes(checkpoint[1]))
    return train_configs(
        [from_values(config) for config in configs],
        [writer.log for writer in writers],
        until_epochs=until_epochs,
        resumes=resumes,
        max_pack=max_pack,
    )


def _record(writer: RunWriter, outcome, rungs: Ladder | None, packed: bool) -> tuple:
    """Commit how a trained run ended (and the decisions due then): (run id, status, runs
    those decisions made final). A run trained beside others (``packed``) counts its share of
    their time, the seconds of the epochs it trained now, so that the runs' durations add up
    to the time spent."""
    run_id = writer.run_id
    decide = None
    if rungs is not None and writer.rung is not None:
        decide = functools.partial(settle_run, ladder=rungs, run_id=run_id)
    try:
        if isinstance(outcome, (RunLost, StoreFault)):
            raise outcome
        if isinstance(outcome, Exception):  # the run fails, the sweep goes on
            error = "".join(traceback.format_exception(outcome))
            return run_id, "failed", writer.finish("failed", error, then=decide)
        result = outcome.result
        paused = result.checkpoint
        resumed_after = 0 if writer.checkpoint is None else writer.checkpoint[0]
        made_final = writer.finish(
            result.status,
            data_fingerprint=outcome.fingerprint,
            checkpoint=None if paused is None else (paused.epoch, paused.to_bytes()),
            then=decide,
            seconds=sum(r.seconds for r in result.history[resumed_after:]) if packed else None,
        )
        return run_id, result.status, made_final
    except RunLost:
        return run_id, LOST, []


def _busy(fault: StoreFault) -> bool:
    return isinstance(fault.__cause__, OperationalError) and "locked" in str(fault.__cause__)
