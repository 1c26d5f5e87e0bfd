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

import os
import socket
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import joblib
from joblib.externals.loky.process_executor import TerminatedWorkerError

from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.registry import (
    RunRow,
    interrupt_running,
    recover_dead_runs,
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
        if on_start is not None:
            on_start(len(todo))
        for run_id, run_status in _train_all(store, sweep_id, todo, jobs):
            result.statuses[run_status] += 1
            if on_result is not None:
                on_result(run_id, run_status)
        status = "finished"
    except BaseException:  # Ctrl-C, SIGTERM (see the CLI), or a bug: in-flight runs stop here
        interrupt_running(store, sweep_id)
        raise
    finally:
        set_sweep_status(store, sweep_id, status)
    return result


def _train_all(store, sweep_id: int, todo: list[tuple[int, dict]], jobs: int):
    """Train the runs to do; when a worker process dies (segfault, os._exit, OOM kill), joblib
    abandons the whole batch: mark the runs whose worker is gone, rebuild the pool, go on."""
    while todo:
        try:
            yield from _execute(store.url, todo, jobs)
            return
        except TerminatedWorkerError:
            for run_id, status in recover_dead_runs(store, sweep_id, socket.gethostname(), _alive):
                if status == "failed":
                    yield run_id, status
        todo = runs_to_do(store, sweep_id)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _execute(url: str, todo: list[tuple[int, dict]], jobs: int):
    tasks = (joblib.delayed(train_run)(url, run_id, config) for run_id, config in todo)
    # BLAS threads per worker, so that workers × threads ≤ cores
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    with joblib.parallel_config(backend="loky", inner_max_num_threads=threads):
        yield from joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks)


def train_run(url: str, run_id: int, config: dict) -> tuple[int, str]:
    """Train one registered run, logging its epochs live; runs in a worker process."""
    writer = RunWriter(open_store(url), run_id)
    writer.start()
    try:
        outcome = execute(from_values(config), on_epoch=writer.log)
    except Exception as error:  # the run fails, the sweep goes on
        writer.finish("failed", "".join(traceback.format_exception(error)))
        return run_id, "failed"
    writer.finish(outcome.result.status, data_fingerprint=outcome.fingerprint)
    return run_id, outcome.result.status
