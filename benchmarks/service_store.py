"""A generated tracking store at the size issue 11 asks ``nnlab serve`` to handle: a sweep of
10,000 runs, one of 1,000, and 48 small ones (50 sweeps, 11,960 runs), 100 epochs a run.

Written fast but through the store's own schema: ``open_store`` creates the tables with the
migrations, then the runs and epochs go in with bulk inserts in a few big transactions, each
epoch row made by the writer's ``epoch_row`` (NaN as NULL named in ``nan_fields``, infinities
kept). Losses decay with noise; at the largest learning rate about one seed in three diverges
(an infinite training loss, then a NaN validation loss), and one run in 97 fails with a
traceback after a few epochs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import insert, select

from nnlab.store import open_store
from nnlab.store.models import Run, Sweep
from nnlab.store.writer import EPOCH_COLUMNS, epoch_row

BIG = "grid-10k"  # 5 learning rates × 4 activations × 2 optimizers × 5 batch sizes × 5 widths × 10
CURVES = "grid-1k"  # 5 × 4 × 5 batch sizes × 10 seeds: the curves of 1,000 runs
SMALL = 48  # sweeps of 20 runs each, so the listing has 50 rows
EPOCHS = 100
RATES = (0.001, 0.003, 0.01, 0.1, 1.0)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu")
OPTIMIZERS = ("sgd", "adam")
BATCH_SIZES = (16, 32, 64, 128, 256)
HIDDEN = ([16], [32], [64], [32, 32], [64, 64])
ERROR = "Traceback (most recent call last):\n  ...\nFloatingPointError: overflow in matmul"
PROVENANCE = {
    "nnlab_version": "0.11.0",
    "numpy_version": np.__version__,
    "python_version": "3.12.3",
    "hostname": "bench",
    "git_commit": "0" * 40,
    "data_fingerprint": "sha256:" + "1" * 16,
}


def grid(rates, activations, optimizers, batch_sizes, hidden, seeds) -> list[dict]:
    """One configuration per point of the grid, seed included."""
    points = itertools.product(rates, activations, optimizers, batch_sizes, hidden, range(seeds))
    return [
        {
            "learning_rate": rate,
            "activation": activation,
            "optimizer": optimizer,
            "gd": "minibatch",
            "batch_size": batch,
            "hidden": width,
            "epochs": EPOCHS,
            "data": {"name": "spirals", "noise": 0.2},
            "seed": seed,
        }
        for rate, activation, optimizer, batch, width, seed in points
    ]


def sweeps() -> dict[str, list[dict]]:
    """Every sweep's configurations, by name."""
    small = [grid(RATES[1:3], ACTIVATIONS[:2], OPTIMIZERS[:1], (32,), HIDDEN[:1], 5)] * SMALL
    return {
        BIG: grid(RATES, ACTIVATIONS, OPTIMIZERS, BATCH_SIZES, HIDDEN, 10),
        CURVES: grid(RATES, ACTIVATIONS, OPTIMIZERS[:1], BATCH_SIZES, HIDDEN[:1], 10),
        **{f"small-{i:02d}": configs for i, configs in enumerate(small)},
    }


def curve(config: dict, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Epoch metrics (epochs × 7, in ``EPOCH_METRICS`` order) and how the run ended."""
    rate, seed = config["learning_rate"], config["seed"]
    epoch = np.arange(1, EPOCHS + 1)
    speed = min(rate * 30, 3.0) * (1.5 if config["optimizer"] == "adam" else 1.0)
    val = 1.1 * np.exp(-speed * epoch / 20) + 0.05 + np.abs(rng.normal(0, 0.02, EPOCHS))
    train = val * 0.9
    metrics = np.column_stack(
        [train, val, 1 - val / 2, 1 - val / 1.8, np.full(EPOCHS, 1.0), np.full(EPOCHS, rate)]
    )
    metrics = np.column_stack([metrics, rng.uniform(0.01, 0.02, EPOCHS)])
    if rate == RATES[-1] and seed % 3 == 0:
        at = int(rng.integers(5, EPOCHS // 2))
        metrics = metrics[:at]
        metrics[-1, 0], metrics[-1, 1] = np.inf, np.nan
        return metrics, "diverged"
    return metrics, "completed"


def build(url: str) -> None:
    """Write the store at ``url`` (a new, empty database)."""
    store = open_store(url)
    rng = np.random.default_rng(0)
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    with store.write() as connection:
        for name in sweeps():
            connection.execute(insert(Sweep).values(name=name, status="finished", spec_hash=name))
        ids = dict(connection.execute(select(Sweep.name, Sweep.id)).all())
    for name, configs in sweeps().items():
        runs, counts, epochs = [], [], []
        for i, config in enumerate(configs):
            metrics, status = curve(config, rng)
            if i % 97 == 13:
                metrics, status = metrics[:3], "failed"
            began = start + timedelta(minutes=i)
            runs.append(_run(ids[name], config, status, began, len(metrics)))
            counts.append(len(metrics))
            epochs.extend(
                epoch_row(0, epoch, tuple(values))
                for epoch, values in enumerate(metrics.tolist(), 1)
            )
        with store.write() as connection:
            connection.execute(insert(Run), runs)
            run_ids = connection.scalars(
                select(Run.id).where(Run.sweep_id == ids[name]).order_by(Run.id)
            ).all()
            epochs = _numbered(epochs, run_ids, counts)
            marks = ", ".join("?" * len(EPOCH_COLUMNS))
            connection.exec_driver_sql(
                f"INSERT INTO epochs ({', '.join(EPOCH_COLUMNS)}) VALUES ({marks})", epochs
            )


def _run(sweep_id: int, config: dict, status: str, began: datetime, epochs: int) -> dict:
    """A runs-table row, as a finished run of ``epochs`` epochs leaves it."""
    seconds = epochs * 0.015
    ended = began + timedelta(seconds=seconds)
    typed = {key: config[key] for key in ("learning_rate", "activation", "optimizer", "gd")}
    return {
        "sweep_id": sweep_id,
        "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "status": status,
        "seed": config["seed"],
        **typed,
        "batch_size": config["batch_size"],
        "hidden": ",".join(map(str, config["hidden"])),
        "epochs": EPOCHS,
        "config": config,
        "started_at": began,
        "finished_at": ended,
        "heartbeat_at": ended,
        "duration_s": seconds,
        "error": ERROR if status == "failed" else None,
        "attempts": 1,
        **PROVENANCE,
    }


def _numbered(rows: list[tuple], run_ids: list[int], counts: list[int]) -> list[tuple]:
    """``rows`` (made with run id 0) with the run ids the database gave, in order."""
    owners = np.repeat(run_ids, counts).tolist()
    return [(owner, *row[1:]) for owner, row in zip(owners, rows, strict=True)]
