"""Running a sweep: register every run as pending, then train them in parallel with joblib.

Each run trains in a worker that opens its own store engine and logs its epochs live; results
stream back as they finish (``return_as="generator_unordered"``), so the parent holds no
histories. An exception in a run marks that run ``failed`` with its traceback and the sweep
goes on; a worker process that dies costs only the runs it held (they are trained again, and a
run whose worker dies twice is failed). Interrupting the sweep marks its in-flight runs
``interrupted``. Running the same spec again resumes: only pending, interrupted and stale
running runs (and failed ones with ``retry_failed``) train.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import joblib
from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import TerminatedWorkerError

from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.models import FINISHED_STATUSES
from nnlab.store.registry import (
    RunRow,
    interrupt_running,
    mark_failed,
    run_statuses,
    runs_to_do,
    set_sweep_status,
    sweep_spec_hash,
)
from nnlab.sweep.grid import DEFAULT_MAX_RUNS, GridPoint, check_data, expand_grid, from_values
from nnlab.sweep.run import execute
from nnlab.sweep.spec import SpecError, SweepSpec


@dataclass
class SweepResult:
    """What a call of ``run_sweep`` did: the sweep's id, its size, what ran and how it ended."""

    sweep_id: int
    name: str
    total: int
    statuses: Counter = field(default_factory=Counter)

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())


def plan(spec: SweepSpec, max_runs: int = DEFAULT_MAX_RUNS) -> list[GridPoint]:
    """Every run of the spec, validated down to the data (nothing is written)."""
    points = expand_grid(spec, max_runs)
    check_data(spec, points)
    return points


def run_sweep(
    spec: SweepSpec,
    url: str | None = None,
    *,
    jobs: int = 1,
    retry_failed: bool = False,
    max_runs: int = DEFAULT_MAX_RUNS,
    on_result: Callable[[int, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> SweepResult:
    """Run (or resume) ``spec`` against the store at ``url`` with ``jobs`` worker processes.

    ``on_start(n)`` is called with the number of runs about to train, ``on_result(run_id,
    status)`` as each run finishes, both in this process.
    """
    points = plan(spec, max_runs)
    store = open_store(url)
    known = sweep_spec_hash(store, spec.name)
    if known is not None and known != spec.spec_hash:
        raise SpecError(
            f"{spec.source}: a sweep named {spec.name!r} already exists with a different spec; "
            f"resume it with its original spec, or give this one a new name (name: {spec.name}-2)"
        )
    rows = [RunRow(p.values, p.config_hash, p.config.seed) for p in points]
    sweep_id = register_sweep(
        store, spec.name, rows, description=spec.description, spec=spec.text,
        spec_hash=spec.spec_hash,
    )  # fmt: skip
    result = SweepResult(sweep_id, spec.name, total=len(points))
    set_sweep_status(store, sweep_id, "running")
    status = "interrupted"
    try:
        todo = runs_to_do(store, sweep_id, retry_failed=retry_failed)
        claimable = ("pending", "interrupted", *(("failed",) if retry_failed else ()))
        if on_start is not None:
            on_start(len(todo))
        for run_id, run_status in _train_all(store, sweep_id, todo, jobs, claimable):
            result.statuses[run_status] += 1
            if on_result is not None:
                on_result(run_id, run_status)
        status = "finished"
    except BaseException:  # Ctrl-C, SIGTERM (see the CLI), or a bug: in-flight runs stop here
        if jobs > 1:
            _stop_workers()  # first, so that no worker writes after its run is marked
        interrupt_running(store, sweep_id)
        raise
    finally:
        set_sweep_status(store, sweep_id, status)
    return result


def _train_all(store, sweep_id: int, todo: list[tuple[int, dict]], jobs: int, claimable):
    """Train the runs to do, tracking which have come back. When a worker process dies
    (segfault, os._exit, OOM kill), joblib abandons the whole batch: the runs that were in
    flight are suspects, each trained again alone in a worker of its own, so only a run that
    kills its worker again is failed; the rest go back to the pool."""
    waiting = dict(todo)
    while waiting:
        try:
            for run_id, status in _execute(store.url, list(waiting.items()), jobs, claimable):
                waiting.pop(run_id, None)
                yield run_id, status
        except TerminatedWorkerError:
            for run_id, status in _quarantine(store, waiting):
                yield run_id, status


def _stop_workers() -> None:
    get_reusable_executor().shutdown(wait=True, kill_workers=True)


def _quarantine(store, waiting: dict[int, dict]):
    """After a worker died: settle the runs it may have held, one by one, in isolation."""
    statuses = run_statuses(store, list(waiting))
    for run_id, status in statuses.items():
        if status in FINISHED_STATUSES:  # finished before the crash, not yet reported
            waiting.pop(run_id)
            yield run_id, status
    suspects = [run_id for run_id, status in statuses.items() if status == "running"]
    for run_id in suspects:
        config = waiting.pop(run_id)
        try:
            yield from _execute(store.url, [(run_id, config)], jobs=2, claimable=("running",))
        except TerminatedWorkerError:
            mark_failed(store, run_id, "its worker process died, twice: once beside other "
                        "runs, once alone")  # fmt: skip
            yield run_id, "failed"


def _execute(url: str, todo: list[tuple[int, dict]], jobs: int, claimable):
    tasks = (joblib.delayed(train_run)(url, run_id, config, claimable) for run_id, config in todo)
    # BLAS threads per worker, so that workers × threads ≤ cores
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    # the quarantine passes jobs=2 with one task: it runs in a worker process, never here
    with joblib.parallel_config(backend="loky", inner_max_num_threads=threads):
        yield from joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks)


def train_run(url: str, run_id: int, config: dict, claimable) -> tuple[int, str]:
    """Train one registered run, logging its epochs live; runs in a worker process.

    Returns ``skipped`` when another runner holds the run (its claim is atomic).
    """
    writer = RunWriter(open_store(url), run_id)
    if not writer.start(claimable=claimable):
        return run_id, "skipped"
    try:
        outcome = execute(from_values(config), on_epoch=writer.log)
        writer.finish(outcome.result.status, data_fingerprint=outcome.fingerprint)
        return run_id, outcome.result.status
    except Exception as error:  # the run fails, the sweep goes on
        # if the store itself fails here, the run stays running and is found stale later
        with contextlib.suppress(Exception):
            writer.finish("failed", "".join(traceback.format_exception(error)))
        return run_id, "failed"
