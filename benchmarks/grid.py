"""The 1,000-run digits grid end to end against this machine's GEMM-only limit (issue 14).

The grid of benchmarks/halving.py: scikit-learn's digits (standardised, 80/20 split), MLP
64-128-10, mini-batch 32, 50 epochs, learning_rate 10 values × activation 5 × optimizer 4 ×
5 seeds; the full grid, no scheduler. Trained, each in a fresh folder with a fresh database:

- end to end through the command line, as a user runs it: ``python -m nnlab sweep spec.yaml
  -j 2 --db ...`` in a subprocess, so the time includes the process's start-up, its workers'
  start-up and the HTML report it writes into reports/;
- in this process: ``nnlab.sweep(..., jobs=2, report=False)`` on fresh workers, then its report
  written and timed apart (what ``report=True`` does);
- with ``--jobs-one``, the command line again at ``-j 1`` (about twice as long), for the
  speed-up from one worker to two.

For each: wall-clock; the epochs run, the runs' summed ``duration_s`` (claim to outcome, in the
workers) and the epochs' summed ``seconds`` (the engine's own time), read back from the store.

The grid's arithmetic is counted from the epochs it actually ran (diverged runs stop early):
each epoch trains over the N_train samples (forward 2·Σ fan_in·fan_out per sample, weight
gradients the same, deltas for the layers after the first) and evaluates the N_val validation
samples (forward only); each run also evaluates its initial weights over N_train once (forward).
The GEMM-only limit is the time the bare matrix products of that work take on this machine:
for each kind of pass, its FLOPs over the GEMM-only rate of that shape (benchmarks/gemm.py:
(32×64)·(64×128) and the other products of a 32-row step; the forward over the validation and
the training set), measured in this run at 1 BLAS thread (as each worker runs) before and after
the sweeps, the faster kept; summed, and divided by the 2 cores. Targets: wall ≤ 2.2 × that
limit, and ≤ 60 s on the idle machine.

    pip install -e '.[bench]'
    python benchmarks/grid.py               # about 4 minutes on 2 idle cores
    python benchmarks/grid.py --jobs-one    # and -j 1: about 4 minutes more
    python benchmarks/grid.py --subnormals flush   # the runs with subnormal numbers flushed
    python benchmarks/grid.py --quick       # a smoke run: 16 runs of 5 epochs
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gemm import forward_flops_per_sample, gemm_rate, train_flops_per_sample
from halving import FULL, Grid, digits_npz, spec

import nnlab

JOBS = 2
SIZES = [64, 128, 10]
BATCH_SIZE = 32
TARGET_RATIO = 2.2
TARGET_SECONDS = 60
QUICK = {
    "learning_rate": [0.01, 0.1],
    "activation": ["tanh", "relu"],
    "optimizer": ["sgd", "adam"],
}


@dataclass
class Stored:
    """What a sweep's runs did, read back from the store."""

    runs: int
    epochs: int
    run_seconds: float  # the runs' summed duration_s
    epoch_seconds: float  # the epochs' summed seconds
    statuses: Counter


@dataclass
class Row:
    label: str
    seconds: float
    stored: Stored


def stored_work(db: str, name: str) -> Stored:
    lab = nnlab.connect(db)
    runs, epochs = lab.runs(sweep=name), lab.epochs(sweep=name)
    return Stored(
        len(runs),
        len(epochs),
        float(runs.duration_s.sum()),
        float(epochs.seconds.sum()),
        Counter(runs.status),
    )


def cli_sweep(folder: Path, text: str, name: str, jobs: int) -> tuple[float, Stored]:
    """``nnlab sweep`` end to end in a subprocess whose working directory is ``folder`` (a new
    database there, the report into its reports/): its wall-clock and what it stored."""
    folder.mkdir()
    (folder / "spec.yaml").write_text(text)
    db = f"sqlite:///{folder / 'nnlab.db'}"
    command = [sys.executable, "-m", "nnlab", "sweep", "spec.yaml", "-j", str(jobs), "--db", db]
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if not (folder / "reports" / f"{name}.html").exists():
        raise RuntimeError(f"nnlab sweep wrote no report in {folder / 'reports'}")
    return seconds, stored_work(db, name)


def in_process_sweep(folder: Path, text: str, name: str, jobs: int) -> tuple[float, float, Stored]:
    """``nnlab.sweep`` in this process on fresh workers, then its report: the seconds of each."""
    from joblib.externals.loky import get_reusable_executor

    folder.mkdir()
    db = f"sqlite:///{folder / 'nnlab.db'}"
    get_reusable_executor().shutdown(wait=True, kill_workers=True)  # it pays for its workers
    with contextlib.chdir(folder):
        start = time.perf_counter()
        nnlab.sweep(text, db, jobs=jobs, progress=False, report=False)
        trained = time.perf_counter()
        nnlab.write_report(nnlab.connect(db), [name])
        reported = time.perf_counter()
    return trained - start, reported - trained, stored_work(db, name)


def startup_seconds(repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs of ``python -m nnlab --version``: the interpreter and the
    command line's imports, before any work."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "nnlab", "--version"], check=True, capture_output=True
        )
        best = min(best, time.perf_counter() - start)
    return best


def grid_passes(
    sizes, n_train: int, n_val: int, batch_size: int, runs: int, epochs: int
) -> dict[str, tuple[int, int, bool]]:
    """The grid's arithmetic by kind of pass: label → (FLOPs, rows of its GEMMs, backward)."""
    train, forward = train_flops_per_sample(sizes), forward_flops_per_sample(sizes)
    return {
        f"training steps, {batch_size} rows": (epochs * n_train * train, batch_size, True),
        f"validation forward, {n_val} rows": (epochs * n_val * forward, n_val, False),
        f"initial-loss forward, {n_train} rows": (runs * n_train * forward, n_train, False),
    }


def gemm_rates(sizes, passes: dict) -> dict[str, float]:
    """GFLOP/s of the bare GEMMs of each pass at 1 BLAS thread."""
    return {
        label: gemm_rate(sizes, rows, threads=1, backward=backward)
        for label, (_, rows, backward) in passes.items()
    }


def limit_seconds(passes: dict, rates: dict, cores: int) -> float:
    """Seconds the passes' GEMMs alone take at ``rates`` (GFLOP/s per core) on ``cores``."""
    return sum(flops / (rates[label] * 1e9) for label, (flops, _, _) in passes.items()) / cores


def print_limit(passes: dict, rates: dict, cores: int) -> None:
    print(f"| pass | FLOPs | GEMM-only GFLOP/s (1 thread) | seconds on {cores} cores |")
    print("|---|---|---|---|")
    for label, (flops, _, _) in passes.items():
        seconds = flops / (rates[label] * 1e9) / cores
        print(f"| {label} | {flops:.3g} | {rates[label]:.1f} | {seconds:.1f} |")
    total = sum(flops for flops, _, _ in passes.values())
    limit = limit_seconds(passes, rates, cores)
    print(f"| all | {total:.3g} | {total / limit / cores / 1e9:.1f} | {limit:.1f} |\n")


def print_rows(rows: list[Row], limit: float) -> None:
    print(
        "| pipeline | wall s | ÷ GEMM-only limit | ÷ 60 s | runs | epochs | Σ run duration_s "
        "| Σ epoch seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        s = row.stored
        print(
            f"| {row.label} | {row.seconds:.1f} | {row.seconds / limit:.2f} | "
            f"{row.seconds / TARGET_SECONDS:.2f} | {s.runs:,} | {s.epochs:,} | "
            f"{s.run_seconds:.1f} | {s.epoch_seconds:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 runs of 5 epochs: a smoke run")
    parser.add_argument("--jobs-one", action="store_true", help="also the CLI at -j 1")
    parser.add_argument(
        "--subnormals",
        choices=("keep", "flush"),
        default="keep",
        help="the runs' subnormals setting (flush: the CPU's FTZ and DAZ while they train)",
    )
    args = parser.parse_args()
    grid = Grid(QUICK, 2, 5) if args.quick else Grid(FULL, 5, 50)
    name = "grid"
    from nnlab.sweeps.config import prepare_data

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        npz = digits_npz(folder)
        text = spec(npz, grid, name)
        if args.subnormals != "keep":
            setting = f"batch_size: 32, subnormals: {args.subnormals}}}"
            text = text.replace("batch_size: 32}", setting)
            if args.subnormals not in text:
                raise RuntimeError("the spec's train section has changed: put subnormals in")
        train_data, val_data, _ = prepare_data(
            {"name": str(npz), "val_fraction": 0.2, "standardize": True}
        )
        n_train, n_val = len(train_data.X), len(val_data.X)
        shapes = grid_passes(SIZES, n_train, n_val, BATCH_SIZE, 1, 1)
        before = gemm_rates(SIZES, shapes)
        single = gemm_rate(SIZES[:2], BATCH_SIZE, threads=1, backward=False)
        startup = startup_seconds()
        cli, cli_stored = cli_sweep(folder / "cli", text, name, JOBS)
        rows = [Row(f"nnlab sweep -j{JOBS} (CLI, with report)", cli, cli_stored)]
        trained, reported, stored = in_process_sweep(folder / "api", text, name, JOBS)
        rows += [
            Row(f"nnlab.sweep -j{JOBS} in process, training", trained, stored),
            Row(f"nnlab.sweep -j{JOBS} in process, + report", trained + reported, stored),
        ]
        if args.jobs_one:
            one, one_stored = cli_sweep(folder / "cli-1", text, name, 1)
            rows.append(Row("nnlab sweep -j1 (CLI, with report)", one, one_stored))
        after = gemm_rates(SIZES, shapes)
        single = max(single, gemm_rate(SIZES[:2], BATCH_SIZE, threads=1, backward=False))
    rates = {label: max(before[label], after[label]) for label in shapes}
    s = cli_stored
    passes = grid_passes(SIZES, n_train, n_val, BATCH_SIZE, s.runs, s.epochs)
    limit = limit_seconds(passes, rates, JOBS)
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(s.statuses.items()))
    print(
        f"digits 64-128-10 (N_train {n_train}, N_val {n_val}), mini-batch {BATCH_SIZE}, "
        f"{grid.epochs} epochs, {grid.runs:,} runs "
        f"({' × '.join(str(len(v)) for v in grid.axes.values())} × {grid.seeds} seeds), "
        f"float64, subnormals {args.subnormals}; {statuses}\n"
    )
    print_limit(passes, rates, JOBS)
    print(
        f"One ({BATCH_SIZE}×{SIZES[0]})·({SIZES[0]}×{SIZES[1]}) GEMM alone: {single:.1f} GFLOP/s "
        "at 1 thread (the training-steps row times every product of a 32-row step).\n"
    )
    print_rows(rows, limit)
    print(
        f"\nTargets: wall ≤ {TARGET_RATIO} × the GEMM-only limit ({TARGET_RATIO * limit:.1f} s) "
        f"and ≤ {TARGET_SECONDS} s, end to end through the CLI."
    )
    print(
        f"Outside training: CLI start-up (python -m nnlab --version) {startup:.2f} s; report "
        f"{reported:.1f} s; in-process training wall {trained:.1f} s against Σ run duration_s "
        f"/ {JOBS} = {stored.run_seconds / JOBS:.1f} s and Σ epoch seconds / {JOBS} = "
        f"{stored.epoch_seconds / JOBS:.1f} s."
    )
    if args.jobs_one:
        print(f"Speed-up from -j1 to -j{JOBS} (CLI): {rows[-1].seconds / cli:.2f}× (target ≥ 1.8×)")


if __name__ == "__main__":
    main()
