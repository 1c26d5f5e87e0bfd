"""Cost of logging epochs: nnlab's RunWriter against MLflow and Optuna, on the same data.

100 runs × 1,000 epochs (7 metrics each) through nnlab on SQLite, on SQLite with 4 concurrent
writer processes, and on PostgreSQL; then MLflow's ``log_metric`` / ``log_batch`` and Optuna's
``trial.report`` on a smaller slice of the same data (they are slow enough that 100,000 rows
would take minutes), all in one run. Prints µs per epoch row, amortised over the whole write
(registration, start, every row, finish).

    pip install -e '.[bench]'
    python benchmarks/epoch_logging.py [--runs 100] [--epochs 1000] [--pg URL]

Without --pg a throwaway PostgreSQL server is started (Debian's postgresql package).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

# the throwaway PostgreSQL server helper
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))

from nnlab.engine import EpochRecord
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.models import EPOCH_METRICS
from nnlab.store.registry import RunRow

METRICS = EPOCH_METRICS  # the epoch row the store declares


def epoch_records(epochs: int) -> list[EpochRecord]:
    """The epochs to log, as the engine hands them to ``on_epoch``, built before any timer."""
    return [EpochRecord(**epoch_record(epoch)) for epoch in range(1, epochs + 1)]


def epoch_record(epoch: int) -> dict:
    loss = 1.0 / epoch
    return {
        "epoch": epoch,
        "train_loss": loss,
        "val_loss": loss * 1.1,
        "train_accuracy": 0.9,
        "val_accuracy": 0.8,
        "grad_norm": 0.5,
        "learning_rate": 0.1,
        "seconds": 0.001,
    }


def register(url: str, runs: int, name: str) -> list[int]:
    store = open_store(url)
    rows = [
        RunRow(
            {
                "learning_rate": 0.1,
                "gd": "minibatch",
                "batch_size": 32,
                "activation": "relu",
                "optimizer": "sgd",
                "hidden": [16],
                "epochs": 1000,
            },
            f"run-{i}",
            i,
        )
        for i in range(runs)
    ]
    register_sweep(store, name, rows)
    return nnlab_runs(url, name)


def nnlab_runs(url: str, name: str) -> list[int]:
    import nnlab

    return nnlab.connect(url).runs(sweep=name).run_id.tolist()


def write_runs(url: str, run_ids: list[int], records: list[dict]) -> None:
    store = open_store(url)
    for run_id in run_ids:
        writer = RunWriter(store, run_id)
        writer.start()
        for record in records:
            writer.log(record)
        writer.finish("completed")


def nnlab_single(url: str, runs: int, epochs: int) -> float:
    records = epoch_records(epochs)
    start = time.perf_counter()
    ids = register(url, runs, "single")
    write_runs(url, ids, records)
    return (time.perf_counter() - start) / (runs * epochs)


def nnlab_concurrent(url: str, runs: int, epochs: int, processes: int = 4) -> float:
    ids = register(url, runs, "concurrent")
    context = multiprocessing.get_context("fork")
    open_store(url).engine.dispose()
    start = time.perf_counter()
    records = epoch_records(epochs)
    workers = [
        context.Process(target=write_runs, args=(url, ids[i::processes], records))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(worker.exitcode == 0 for worker in workers)
    return (time.perf_counter() - start) / (runs * epochs)


def raw_sqlite_floor(folder: Path, runs: int, epochs: int) -> float:
    """The floor: sqlite3's executemany of the same rows, one transaction per run, no nnlab
    (rows built before the timer)."""
    import sqlite3

    connection = sqlite3.connect(folder / "raw.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(
        f"CREATE TABLE epochs (run_id INTEGER, epoch INTEGER, "
        f"{', '.join(f'{m} REAL' for m in METRICS)}, PRIMARY KEY (run_id, epoch))"
    )
    insert = f"INSERT INTO epochs VALUES ({', '.join('?' * (len(METRICS) + 2))})"
    records = epoch_records(epochs)
    runs_rows = [
        [(run, r.epoch, *(getattr(r, m) for m in METRICS)) for r in records] for run in range(runs)
    ]
    start = time.perf_counter()
    for rows in runs_rows:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(insert, rows)
        connection.execute("COMMIT")
    connection.close()
    return (time.perf_counter() - start) / (runs * epochs)


def mlflow_pipeline(folder: Path, runs: int, epochs: int, batch: bool) -> float:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.create_experiment(f"bench-{batch}-{time.time()}")
    records = epoch_records(epochs)
    start = time.perf_counter()
    for _ in range(runs):
        run = client.create_run(experiment)
        run_id = run.info.run_id
        for record in records:
            epoch, stamp = record.epoch, int(time.time() * 1000)
            if batch:
                metrics = [Metric(name, getattr(record, name), stamp, epoch) for name in METRICS]
                client.log_batch(run_id, metrics=metrics)
            else:
                for name in METRICS:
                    client.log_metric(run_id, name, getattr(record, name), stamp, epoch)
        client.set_terminated(run_id)
    return (time.perf_counter() - start) / (runs * epochs)


def optuna_pipeline(folder: Path, runs: int, epochs: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{folder / 'optuna.db'}")
    records = epoch_records(epochs)
    start = time.perf_counter()
    for _ in range(runs):
        trial = study.ask()
        for record in records:
            trial.report(record.val_loss, record.epoch)  # one value per step only
        study.tell(trial, 0.0)
    return (time.perf_counter() - start) / (runs * epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument(
        "--slow-runs",
        type=int,
        default=1,
        help="runs for MLflow and Optuna (each of --epochs epochs)",
    )
    parser.add_argument("--pg", help="PostgreSQL URL (default: start a throwaway server)")
    args = parser.parse_args()
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = f"{args.runs}×{args.epochs}"
        rows.append(
            (
                "raw sqlite3, no nnlab (the floor)",
                n,
                raw_sqlite_floor(folder, args.runs, args.epochs),
            )
        )
        rows.append(
            ("nnlab, SQLite", n, nnlab_single(f"sqlite:///{folder}/a.db", args.runs, args.epochs))
        )
        rows.append(
            (
                "nnlab, SQLite, 4 writer processes",
                n,
                nnlab_concurrent(f"sqlite:///{folder}/b.db", args.runs, args.epochs),
            )
        )
        rows.append(("nnlab, PostgreSQL", n, _postgres(args)))
        slow = f"{args.slow_runs}×{args.epochs}"
        for label, fn in (
            ()
            if args.slow_runs < 1
            else (
                (
                    "MLflow log_batch (7 metrics/call), SQLite",
                    lambda: mlflow_pipeline(folder, args.slow_runs, args.epochs, batch=True),
                ),
                (
                    "MLflow log_metric (1 metric/call), SQLite",
                    lambda: mlflow_pipeline(folder, args.slow_runs, args.epochs, batch=False),
                ),
                (
                    "Optuna trial.report (1 value/call), SQLite",
                    lambda: optuna_pipeline(folder, args.slow_runs, args.epochs),
                ),
            )
        ):
            try:
                rows.append((label, slow, fn()))
            except ImportError as error:
                rows.append((f"{label} — not installed ({error.name})", slow, float("nan")))
    nnlab_sqlite = rows[1][2]
    print(f"| {'pipeline':<46} | {'runs×epochs':>11} | {'µs / epoch row':>14} | {'× nnlab':>7} |")
    print(f"|{'-' * 48}|{'-' * 13}|{'-' * 16}|{'-' * 9}|")
    for label, size, seconds in rows:
        ratio = seconds / nnlab_sqlite
        print(f"| {label:<46} | {size:>11} | {seconds * 1e6:>14.1f} | {ratio:>7.1f} |")


def _postgres(args) -> float:
    if args.pg:
        return nnlab_single(args.pg, args.runs, args.epochs)
    from postgres import PostgresServer

    server = PostgresServer(durable=True)
    try:
        return nnlab_single(server.new_database(), args.runs, args.epochs)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
