"""nnlab in one line of Python: what ``nnlab sweep`` and ``nnlab train`` do, as functions.

    import nnlab

    result = nnlab.sweep("sweeps/quickstart.yaml", jobs=2)  # a path, YAML text or a dict
    result.best()  # the best configurations, a DataFrame
    result.report  # Path('reports/quickstart.html')

    trained = nnlab.train(data="spirals", hidden=[16, 16], activation="tanh", epochs=50)
    trained.history  # one row per epoch, a DataFrame

The command line maps its options to these arguments and prints what they return.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from nnlab import stops
from nnlab.checks import InputError, did_you_mean
from nnlab.engine.packed import MAX_PACK
from nnlab.params import by_name
from nnlab.store.database import NoDatabase, open_store
from nnlab.store.models import STALE_AFTER
from nnlab.store.queue import FINAL_STATUSES
from nnlab.sweeps import runner
from nnlab.sweeps.config import DATA_DEFAULTS, RunConfig, RunOutcome, prepare_data, train_config
from nnlab.sweeps.grid import DEFAULT_MAX_RUNS
from nnlab.sweeps.progress import SweepProgress
from nnlab.sweeps.runner import SweepResult, run_sweep
from nnlab.sweeps.spec import SweepSpec, load_spec, parse_spec


def sweep(
    spec: str | Path | Mapping | SweepSpec,
    db: str | None = None,
    *,
    jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    retry_failed: bool = False,
    max_runs: int = DEFAULT_MAX_RUNS,
    stale_after: float = STALE_AFTER,
    max_pack: int = MAX_PACK,
    progress: bool | None = None,
    report: bool = True,
    on_result: Callable[[int, str], None] | None = None,
) -> SweepResult:
    """Run (or resume) a sweep until every run is final, and write its report.

    ``spec`` is a spec file's path, the YAML text of a spec, or a mapping of the same keys
    (see sweeps/README.md). ``db`` is a database URL or SQLite file (default ``$NNLAB_DB``,
    else ``sqlite:///nnlab.db``). ``jobs``, ``backend`` (``loky``, ``threading``, ``dask``),
    ``scheduler``, ``retry_failed``, ``max_runs``, ``stale_after`` and ``max_pack`` are
    ``nnlab sweep``'s options. ``progress``: a bar on a terminal (lines when output is piped);
    None shows it only on a terminal. ``report``: write the sweep's HTML report at the end.

    SIGTERM and SIGHUP stop the sweep as Ctrl-C does (when called from the main thread, and
    unless ignored when it starts: see ``nnlab.stops``): the runs in flight are marked
    ``interrupted`` and ``KeyboardInterrupt`` propagates; the same call resumes. Raises
    ``SpecError`` for a bad spec (nothing written), ``SweepStopped`` or ``StoreFault`` when the
    sweep cannot go on (resumable).
    """
    parsed = as_spec(spec)
    shown = _terminal() if progress is None else progress
    workers = None if scheduler else jobs  # a cluster's size is its own
    elsewhere = scheduler is not None or backend == "dask" or (backend == "loky" and jobs > 1)
    preload = _ReportImport(report and elsewhere)
    with stops.taken(once=True), SweepProgress(shown, workers) as bar:
        result = run_sweep(
            parsed,
            db,
            jobs=jobs,
            backend=backend,
            scheduler=scheduler,
            retry_failed=retry_failed,
            max_runs=max_runs,
            stale_after=stale_after,
            max_pack=max_pack,
            on_start=_both(bar.start, preload.start),
            on_result=_both(bar.finished, on_result),
            on_wait=bar.waiting,
        )
    if report:
        preload.join()
        _write_report(result)
    return result


class _ReportImport:
    """The report's modules (matplotlib, pandas, Jinja2: about a second) imported in a thread
    of this process once its runs start training in other processes, which leave it idle, so
    that the report at the end of the sweep does not wait for them. Not where this process
    trains (``-j 1``, threads): there the import would take its time from the training."""

    def __init__(self, wanted: bool) -> None:
        # a daemon: a sweep stopped by Ctrl-C or an error exits without waiting for it
        self._thread = threading.Thread(
            target=_import_report, name="nnlab-report-import", daemon=True
        )
        self._wanted, self._started = wanted, False

    def start(self, _more: int | None = None) -> None:
        if self._wanted and not self._started:
            self._started = True
            self._thread.start()

    def join(self) -> None:
        if self._started:
            self._thread.join()


def _import_report() -> None:
    with contextlib.suppress(Exception):  # the report itself says what is wrong, if anything
        import nnlab.report.page  # noqa: F401


@dataclass(frozen=True)
class SweepPlan:
    """What ``nnlab.sweep`` would do, found without writing anything: every run of the spec
    (``points``), how it meets the database (``resumption``: ``new``, ``same`` or
    ``extends``), and how many of its runs are final there already."""

    spec: SweepSpec
    points: list
    resumption: str
    final: int

    @property
    def to_train(self) -> int:
        return len(self.points) - self.final


def plan(
    spec: str | Path | Mapping | SweepSpec,
    db: str | None = None,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    max_runs: int = DEFAULT_MAX_RUNS,
) -> SweepPlan:
    """The dry run of ``nnlab.sweep``: the expanded, validated grid, and whether the database
    at ``db`` would take it. Raises ``SpecError`` exactly where the real run would refuse the
    spec (a bad spec, or one that changes a stored sweep other than by extending it); writes
    and creates nothing."""
    parsed = as_spec(spec)
    points = runner.plan(parsed, max_runs, workers=1 if scheduler else jobs)
    try:
        store = open_store(db, read_only=True)
    except NoDatabase:
        return SweepPlan(parsed, points, "new", 0)
    kind = runner.resumption(store, parsed).kind
    final = 0 if kind == "new" else _final_runs(store, parsed.name)
    return SweepPlan(parsed, points, kind, final)


def _final_runs(store, name: str) -> int:
    from nnlab.store import Lab

    statuses = Lab(store).runs(sweep=name).status
    return int(statuses.isin(FINAL_STATUSES).sum())


def train(
    data: str | Mapping = "spirals",
    *,
    on_epoch: Callable | None = None,
    **settings,
) -> RunOutcome:
    """Train one network and return its outcome (``.history`` one row per epoch, ``.result``,
    ``.net``, the data it trained on); nothing is recorded.

    ``data`` names a synthetic set or a .csv/.npz file, or is a mapping of data settings;
    data settings (``n_samples``, ``classes``, ``noise``, ``target``, ``val_fraction``,
    ``standardize``, ...) may also be passed as keywords, beside the run's settings
    (``hidden``, ``activation``, ``gd``, ``batch_size``, ``learning_rate``, ``optimizer``,
    ``epochs``, ``seed``, ...: the fields of ``RunConfig``). ``on_epoch`` is called with each
    epoch's record as it ends. Without a ``batch_size``, mini-batch GD takes batches of 32, or
    of the whole training set when it is smaller (xor has 4 samples).
    """
    if settings.get("batch_size") is None:
        config = as_config(data, **{**settings, "batch_size": None})
        training_set = prepare_data(config.data)[0]
        settings["batch_size"] = min(DEFAULT_BATCH_SIZE, training_set.n_samples)
    return train_config(as_config(data, **settings), on_epoch=on_epoch)


DEFAULT_BATCH_SIZE = by_name()["batch_size"].default


RUN_SETTINGS = tuple(f.name for f in fields(RunConfig) if f.name != "data")
DATA_SETTINGS = ("target", "n_samples", "classes", "noise", "n_features", *DATA_DEFAULTS)


def as_config(data: str | Mapping = "spirals", **settings) -> RunConfig:
    """The ``RunConfig`` that ``train(data, **settings)`` trains."""
    data = {"name": data} if isinstance(data, str | Path) else dict(data)
    run = {}
    for key, value in settings.items():
        if key in RUN_SETTINGS:
            run[key] = tuple(value) if key == "hidden" else value
        elif key in DATA_SETTINGS:
            data[key] = value
        else:
            known = (*RUN_SETTINGS, *DATA_SETTINGS)
            raise InputError(f"unknown setting {key!r}{did_you_mean(key, known)}")
    data["name"] = str(data.get("name", "spirals"))
    return RunConfig(data=data, **run)


def as_spec(spec: str | Path | Mapping | SweepSpec) -> SweepSpec:
    """A parsed, validated spec from a path, YAML text, a mapping, or a spec already parsed."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(yaml.safe_dump(dict(spec), sort_keys=False), source="<dict>")
    if isinstance(spec, str) and "\n" in spec:
        return parse_spec(spec, source="<text>")
    return load_spec(spec)


def _write_report(result: SweepResult) -> None:
    """The report at the end of a sweep: a failure to write it is noted in the result, not
    the sweep's failure (its runs are stored; ``nnlab report`` can try again)."""
    from nnlab.report import write_report

    try:
        result.report = write_report(result.lab(), [result.name])
    except Exception as error:  # the sweep itself succeeded
        result.report_error = f"{type(error).__name__}: {error}"


def _both(first: Callable, second: Callable | None) -> Callable:
    if second is None:
        return first
    return lambda *args: (first(*args), second(*args))


def _terminal() -> bool:
    return sys.stdout.isatty()
