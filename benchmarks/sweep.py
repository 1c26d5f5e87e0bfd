"""Sweep throughput, duplicates and read-back: nnlab against the compute floor, scikit-learn +
MLflow and Optuna, all training workload W at 2 parallel jobs in one run.

Workload W (issue 4): scikit-learn's digits (standardised, 80/20 split), MLP 64-128-10, plain
SGD, 30 epochs, learning_rate [0.003, 0.01, 0.03, 0.1, 0.3] × batch_size [16, 32, 64, 128] ×
activation [sigmoid, tanh, relu] × seeds [0, 1, 2] = 180 runs, every epoch stored. Pipelines:

- the floor: the hand-written NumPy loop of benchmarks/numpy_loop.py with joblib, storing nothing;
- ``nnlab sweep`` at 2 jobs, and at 1;
- scikit-learn's ``MLPClassifier`` (``solver="sgd"``, no momentum, one ``partial_fit`` per epoch)
  in joblib workers, each run logged to MLflow on SQLite with ``MlflowClient.log_batch`` once per
  epoch, or with one fluent ``mlflow.log_metric`` per metric per epoch;
- the same model as an Optuna objective: ``GridSampler`` over W with the seed as an axis, SQLite
  storage, ``study.optimize(n_trials=180, n_jobs=2)`` (threads, BLAS held to one thread each as
  loky does for the workers above), ``trial.report`` of the validation loss every epoch.

For each: wall-clock seconds and the ratio to the floor; duplicates, the (configuration, seed)
points trained more than once (for nnlab also repeated (run, epoch) rows), and the points never
trained, both read back from the tool's store; and the time to read every epoch loss back through
the tool's API (after one untimed read). Then the parent process's peak RSS for a --dry-run of a
10,000-run grid and for a 2,000-run sweep of tiny runs.

    pip install -e '.[bench]'
    python benchmarks/sweep.py            # about 10 minutes; --repeat 1 for a shorter run
    python benchmarks/sweep.py --quick    # smoke run: W of 2 runs × 3 epochs, 200 tiny runs

Without MLflow or Optuna installed, their rows are skipped with a note.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import numpy_loop
from joblib.externals.loky import get_reusable_executor

import nnlab
from nnlab.data import Dataset
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.queue import RunQueue
from nnlab.store.registry import RunRow
from nnlab.store.sql import run_query
from nnlab.sweeps.config import prepare_data, train_config
from nnlab.sweeps.runner import plan, run_sweep
from nnlab.sweeps.spec import parse_spec

JOBS = 2
AXES = ("learning_rate", "batch_size", "activation", "seed")
SKLEARN_ACTIVATIONS = {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu"}


@dataclass(frozen=True)
class Workload:
    """The grid every pipeline trains: learning rate × batch size × activation × seed."""

    learning_rates: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    activations: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int

    def axes(self) -> dict[str, list]:
        values = (self.learning_rates, self.batch_sizes, self.activations, self.seeds)
        return {axis: list(v) for axis, v in zip(AXES, values, strict=True)}

    def points(self) -> list[tuple[float, int, str, int]]:
        return list(itertools.product(*self.axes().values()))


W = Workload(
    (0.003, 0.01, 0.03, 0.1, 0.3),
    (16, 32, 64, 128),
    ("sigmoid", "tanh", "relu"),
    (0, 1, 2),
    epochs=30,
)
QUICK = Workload((0.1,), (32, 64), ("relu",), (0,), epochs=3)


@dataclass
class Row:
    """One pipeline's line in the table; None where it does not apply."""

    pipeline: str
    seconds: float
    duplicates: int | None = None
    missing: int | None = None
    read_seconds: float | None = None
    losses_read: int | None = None
    duplicate_epochs: int | None = None  # nnlab: (run_id, epoch) rows stored more than once
    errors: list[str] = field(default_factory=list)


def grid_point(learning_rate, batch_size, activation, seed) -> tuple[float, int, str, int]:
    """A point of W in one form, whatever store (and type: MLflow keeps strings) it comes from."""
    return float(learning_rate), int(batch_size), str(activation), int(seed)


def coverage(recorded: list[tuple], w: Workload) -> tuple[int, int]:
    """How many points of ``w`` were trained more than once, and how many never."""
    counts = Counter(grid_point(*point) for point in recorded)
    return sum(n > 1 for n in counts.values()), len(set(w.points()) - counts.keys())


def timed_read(read) -> tuple[float, int]:
    """Seconds of the second call of ``read`` (the first warms up), and what it returned."""
    read()
    start = time.perf_counter()
    count = read()
    return time.perf_counter() - start, count


def quiet() -> None:
    """Keep MLflow's, Alembic's and Optuna's log lines and warnings out of the table.

    Importing MLflow or Optuna sets their loggers' levels, so call this after importing them;
    an MLflow imported later (in a worker) takes its level from the environment set here.
    """
    os.environ["MLFLOW_LOGGING_LEVEL"] = "ERROR"
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)


def fresh_workers() -> None:
    """Stop joblib's worker processes, so that the next pipeline pays for its own (imports,
    data) and none rides on what the one before left in them."""
    get_reusable_executor().shutdown(wait=True, kill_workers=True)


def digits_npz(folder: Path) -> Path:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    path = folder / "digits.npz"
    np.savez(path, X=X.astype(np.float64), y=y.astype(np.int64))
    return path


def spec_w(npz: Path, w: Workload, name: str = "w") -> str:
    axes = w.axes()
    return textwrap.dedent(f"""\
        name: {name}
        data: {{name: {npz}, val_fraction: 0.2, standardize: true}}
        model: {{hidden: [128], loss: cross_entropy}}
        train: {{epochs: {w.epochs}, gd: minibatch, optimizer: sgd}}
        grid:
          learning_rate: {axes["learning_rate"]}
          batch_size: {axes["batch_size"]}
          activation: {axes["activation"]}
        seeds: {axes["seed"]}
    """)


def w_data(npz: Path) -> tuple[Dataset, Dataset]:
    """W's training and validation parts, prepared as nnlab's runs prepare them."""
    train_data, val_data, _ = prepare_data({"name": str(npz), "val_fraction": 0.2})
    return train_data, val_data


def tracking_overhead(folder: Path, npz: Path, w: Workload) -> dict:
    """nnlab's cost per run beyond training it, in milliseconds, measured in this process:
    registering W's runs (one transaction, per run); claiming a run, logging its W epochs live
    and recording its outcome (what ``_train_task`` adds to training: ``RunWriter`` with its
    heartbeat thread, on the epochs of a real run); dispatching a task through joblib at -j2
    (empty tasks, workers started)."""
    spec = parse_spec(spec_w(npz, w, name="overhead"))
    points = plan(spec)
    store = open_store(f"sqlite:///{folder / 'overhead.db'}")
    rows = [RunRow(p.values, p.config_hash, p.config.seed) for p in points]
    start = time.perf_counter()
    register_sweep(store, spec.name, rows)
    registration = (time.perf_counter() - start) / len(points)
    epochs = []
    train_config(points[0].config, on_epoch=epochs.append)  # a real run's records
    start = time.perf_counter()
    for run_id, _ in RunQueue(store, 1).todo():
        with RunWriter(store, run_id) as writer:
            writer.start(claimable=("pending",), lease=uuid.uuid4().hex)
            for record in epochs:
                writer.log(record)
            writer.finish("completed")
    logging_ = (time.perf_counter() - start) / len(points)
    fresh_workers()
    joblib.Parallel(n_jobs=JOBS)(joblib.delayed(abs)(0) for _ in range(4))  # start workers
    start = time.perf_counter()
    joblib.Parallel(n_jobs=JOBS)(joblib.delayed(abs)(i) for i in range(len(points)))
    dispatch = (time.perf_counter() - start) / len(points)
    per_run = {
        "registration": registration,
        "claim, live logging, outcome": logging_,
        "joblib dispatch": dispatch,
    }
    return {name: seconds * 1e3 for name, seconds in per_run.items()}


def nnlab_w(folder: Path, npz: Path, w: Workload, jobs: int) -> Row:
    url = f"sqlite:///{folder / f'w{jobs}.db'}"
    fresh_workers()
    start = time.perf_counter()
    run_sweep(parse_spec(spec_w(npz, w)), url, jobs=jobs)
    seconds = time.perf_counter() - start
    lab = nnlab.connect(url)
    runs = lab.runs(sweep="w")
    _, missing = coverage(list(zip(*(runs[axis] for axis in AXES), strict=True)), w)
    duplicate_runs, duplicate_epochs = run_query(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM runs GROUP BY sweep_id, config_hash, seed"
        "                              HAVING count(*) > 1)),"
        "       (SELECT count(*) FROM (SELECT 1 FROM epochs GROUP BY run_id, epoch"
        "                              HAVING count(*) > 1))",
        url,
    ).rows[0]
    read_seconds, losses = timed_read(lambda: len(lab.epochs(sweep="w")))
    label = f"nnlab sweep -j{jobs}" + (" (live logging to SQLite)" if jobs > 1 else "")
    return Row(label, seconds, duplicate_runs, missing, read_seconds, losses, duplicate_epochs)


def _floor_run(X, y, lr, batch, activation, seed, epochs):
    numpy_loop.train(X, y, [64, 128, 10], batch, lr, epochs, seed, activation)


def floor_w(npz: Path, w: Workload, jobs: int) -> Row:
    train_data, _ = w_data(npz)
    X, y = train_data.X, train_data.y
    fresh_workers()
    start = time.perf_counter()
    joblib.Parallel(n_jobs=jobs)(
        joblib.delayed(_floor_run)(X, y, *point, w.epochs) for point in w.points()
    )
    seconds = time.perf_counter() - start
    return Row(f"bare NumPy loop, no storage, joblib -j{jobs} (the floor)", seconds)


def sklearn_epochs(npz: Path, point, epochs: int):
    """Train scikit-learn's MLP on W one ``partial_fit`` (one epoch) at a time; yield each
    epoch's number, mean training loss and validation loss."""
    from sklearn.neural_network import MLPClassifier

    train_data, val_data = w_data(npz)
    learning_rate, batch_size, activation, seed = point
    model = MLPClassifier(
        hidden_layer_sizes=(128,),
        activation=SKLEARN_ACTIVATIONS[activation],
        solver="sgd",
        alpha=0.0,  # plain SGD, as nnlab and the floor: no L2 penalty
        momentum=0.0,
        nesterovs_momentum=False,
        learning_rate_init=learning_rate,
        batch_size=batch_size,
        max_iter=epochs,
        random_state=seed,
    )
    classes = np.unique(train_data.y)
    rows = np.arange(val_data.n_samples)
    for epoch in range(1, epochs + 1):
        model.partial_fit(train_data.X, train_data.y, classes=classes)
        # the validation cross-entropy computed directly: sklearn's log_loss validates its input
        # at a cost that is not the trackers'
        p = model.predict_proba(val_data.X)[rows, val_data.y]
        val_loss = -np.log(np.maximum(p, np.finfo(p.dtype).eps)).mean()
        yield epoch, float(model.loss_), float(val_loss)


def log_batch_run(uri: str, experiment_id: str, npz: Path, point, epochs: int) -> None:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(run_id, params=[Param(a, str(v)) for a, v in zip(AXES, point, strict=True)])
    for epoch, loss, val_loss in sklearn_epochs(npz, point, epochs):
        stamp = int(time.time() * 1000)
        metrics = [Metric("loss", loss, stamp, epoch), Metric("val_loss", val_loss, stamp, epoch)]
        client.log_batch(run_id, metrics=metrics)
    client.set_terminated(run_id)


def log_metric_run(uri: str, experiment_id: str, npz: Path, point, epochs: int) -> None:
    import mlflow

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.log_params(dict(zip(AXES, point, strict=True)))
        for epoch, loss, val_loss in sklearn_epochs(npz, point, epochs):
            mlflow.log_metric("loss", loss, step=epoch)
            mlflow.log_metric("val_loss", val_loss, step=epoch)


def _guarded(task, *args) -> str | None:
    """Run one task in a worker; return its error instead of stopping the whole benchmark."""
    quiet()
    try:
        task(*args)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def mlflow_w(folder: Path, npz: Path, w: Workload, train_and_log, label: str) -> Row:
    from mlflow.tracking import MlflowClient

    store = folder / train_and_log.__name__
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    fresh_workers()
    start = time.perf_counter()
    client = MlflowClient(uri)
    experiment = client.create_experiment("w", artifact_location=(store / "artifacts").as_uri())
    results = joblib.Parallel(n_jobs=JOBS)(
        joblib.delayed(_guarded)(train_and_log, uri, experiment, npz, point, w.epochs)
        for point in w.points()
    )
    seconds = time.perf_counter() - start
    runs = client.search_runs([experiment], max_results=50_000)
    logged = [r.data.params for r in runs if set(AXES) <= r.data.params.keys()]
    duplicates, missing = coverage([tuple(params[a] for a in AXES) for params in logged], w)

    def read_losses() -> int:
        runs = client.search_runs([experiment], max_results=50_000)
        return sum(len(client.get_metric_history(r.info.run_id, "val_loss")) for r in runs)

    read_seconds, losses = timed_read(read_losses)
    errors = [error for error in results if error]
    return Row(label, seconds, duplicates, missing, read_seconds, losses, errors=errors)


def optuna_w(folder: Path, npz: Path, w: Workload) -> Row:
    import optuna
    from threadpoolctl import threadpool_limits

    url = f"sqlite:///{folder / 'optuna.db'}"

    def objective(trial: optuna.Trial) -> float:
        point = [trial.suggest_categorical(axis, values) for axis, values in w.axes().items()]
        for epoch, _, val_loss in sklearn_epochs(npz, point, w.epochs):
            trial.report(val_loss, epoch)
        return val_loss

    start = time.perf_counter()
    sampler = optuna.samplers.GridSampler(w.axes(), seed=0)
    study = optuna.create_study(study_name="w", storage=url, sampler=sampler)
    with threadpool_limits(1):
        study.optimize(objective, n_trials=len(w.points()), n_jobs=JOBS, catch=(Exception,))
    seconds = time.perf_counter() - start
    trials = study.trials
    tried = [tuple(t.params[a] for a in AXES) for t in trials if set(AXES) <= t.params.keys()]
    duplicates, missing = coverage(tried, w)
    storage = optuna.storages.RDBStorage(url)  # a fresh study each read: no trial cache

    def read_losses() -> int:
        trials = optuna.load_study(study_name="w", storage=storage).trials
        return sum(len(t.intermediate_values) for t in trials)

    read_seconds, losses = timed_read(read_losses)
    errors = [f"trial {t.number} failed" for t in trials if t.state.name == "FAIL"]
    label = f"scikit-learn + Optuna GridSampler (SQLite), n_jobs={JOBS} threads"
    return Row(label, seconds, duplicates, missing, read_seconds, losses, errors=errors)


def tracker_rows(folder: Path, npz: Path, w: Workload) -> list[Row]:
    """The scikit-learn + MLflow and Optuna pipelines, or none (with a note) without them."""
    try:
        import mlflow  # noqa: F401
        import optuna  # noqa: F401
    except ImportError as error:
        print(
            f"Note: scikit-learn + MLflow / Optuna rows skipped, {error.name} is not installed "
            "(pip install -e '.[bench]').\n"
        )
        return []
    quiet()
    return [
        mlflow_w(
            folder,
            npz,
            w,
            log_batch_run,
            f"scikit-learn + MLflow log_batch (SQLite), joblib -j{JOBS}",
        ),
        mlflow_w(
            folder,
            npz,
            w,
            log_metric_run,
            f"scikit-learn + MLflow log_metric (SQLite), joblib -j{JOBS}",
        ),
        optuna_w(folder, npz, w),
    ]


def floor_and_nnlab(folder: Path, npz: Path, w: Workload, repeat: int) -> tuple[Row, Row]:
    """The floor and nnlab at -j2, alternately ``repeat`` times (this machine's speed drifts by
    tens of percent within minutes): the run of median time of each."""
    floors, nnlabs = [], []
    for attempt in range(repeat):
        floors.append(floor_w(npz, w, JOBS))
        (folder / f"try{attempt}").mkdir()
        nnlabs.append(nnlab_w(folder / f"try{attempt}", npz, w, JOBS))
    median = len(floors) // 2
    floor, nnlab = (sorted(rows, key=lambda row: row.seconds)[median] for rows in (floors, nnlabs))
    if repeat > 1:
        for row in (floor, nnlab):
            row.pipeline += f" (median of {repeat})"
    return floor, nnlab


def print_table(rows: list[Row]) -> None:
    floor = rows[0].seconds
    print("| pipeline | seconds | × floor | duplicates | missing | read-back seconds (losses) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        duplicates = "—" if row.duplicates is None else str(row.duplicates)
        if row.duplicate_epochs is not None:
            duplicates += f" (+{row.duplicate_epochs} epoch rows)"
        missing = "—" if row.missing is None else str(row.missing)
        read = "—" if row.read_seconds is None else f"{row.read_seconds:.3f} ({row.losses_read:,})"
        print(
            f"| {row.pipeline} | {row.seconds:.1f} | {row.seconds / floor:.2f} | {duplicates} "
            f"| {missing} | {read} |"
        )
    for row in rows:
        if row.errors:
            print(f"{row.pipeline}: {len(row.errors)} runs raised, first: {row.errors[0]}")


PARENT_RSS = r"""
import json, sys
from nnlab.sweeps.runner import plan, run_sweep
from nnlab.sweeps.spec import parse_spec
spec = parse_spec(sys.argv[1])
if sys.argv[2] == "dry":
    points = plan(spec, max_runs=20_000)
else:
    run_sweep(spec, sys.argv[3], jobs=2)
status = open("/proc/self/status").read()
print(json.dumps({"peak_mb": int(status.split("VmHWM:")[1].split()[0]) / 1024}))
"""


def parent_rss(spec_text: str, mode: str, url: str = "") -> float:
    out = subprocess.run(
        [sys.executable, "-c", PARENT_RSS, spec_text, mode, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.splitlines()[-1])["peak_mb"]


def grid_spec(name: str, runs_per_seed_axis: int, seeds: int, epochs: int) -> str:
    rates = [round(0.001 * (i + 1), 6) for i in range(runs_per_seed_axis)]
    return textwrap.dedent(f"""\
        name: {name}
        data: {{name: xor, n_samples: 8}}
        model: {{hidden: [2]}}
        train: {{epochs: {epochs}, gd: batch}}
        grid: {{learning_rate: {rates}}}
        seeds: {seeds}
    """)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2-run W of 3 epochs: a smoke run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="floor and nnlab -j2 runs, interleaved (medians)"
    )
    args = parser.parse_args()
    w = QUICK if args.quick else W
    tiny_runs = 200 if args.quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        npz = digits_npz(folder)
        floor, nnlab2 = floor_and_nnlab(folder, npz, w, args.repeat)
        nnlab1 = nnlab_w(folder, npz, w, 1)
        rows = [floor, nnlab2, nnlab1, *tracker_rows(folder, npz, w)]
        runs = len(w.points())
        print(
            f"Workload W{' (--quick)' if args.quick else ''}: {runs} runs × {w.epochs} epochs "
            "on digits (64-128-10, plain SGD)\n"
        )
        print_table(rows)
        print(
            f"\n-j2 speed-up over -j1: {nnlab1.seconds / nnlab2.seconds:.2f}×; overhead per run "
            f"over the floor at -j2: {(nnlab2.seconds - floor.seconds) / runs * 1e3 * 2:.1f} ms "
            "of worker time\n"
        )
        overhead = tracking_overhead(folder, npz, w)
        print("| nnlab's cost per run beyond training (this process) | ms |")
        print("|---|---|")
        for name, ms in overhead.items():
            print(f"| {name} | {ms:.2f} |")
        print(f"| total (target < 20 ms) | {sum(overhead.values()):.2f} |\n")
        dry = parent_rss(grid_spec("dry", 2500, 4, 10), "dry")
        tiny = parent_rss(
            grid_spec("tiny", tiny_runs // 2, 2, 3), "run", f"sqlite:///{folder / 't.db'}"
        )
        print("| parent process | peak RSS |")
        print("|---|---|")
        print(f"| --dry-run of a 10,000-run grid | {dry:.0f} MB |")
        print(f"| {tiny_runs:,}-run sweep of tiny runs, -j2 | {tiny:.0f} MB |")


if __name__ == "__main__":
    main()
