"""Stochastic and small-batch grids end to end: the cost per sample when the steps are tiny.

Issue 14 asks these to get ≥ 2× faster than at commit 0ffcb08; run this script there and on
the change, and compare. Two grids, each through the command line as a user runs it (``python
-m nnlab sweep spec.yaml -j 2 --db ...`` in a fresh folder with a fresh database, the HTML
report included):

- ``sweeps/quickstart.yaml`` as shipped: 3-class spirals (300 samples, 240 to train), 2-16-3,
  30 epochs, learning_rate 2 × batch_size 2 × activation 2 × gd [batch, stochastic,
  minibatch] × 2 seeds = 32 runs (batch_size applies to mini-batch only);
- ``spirals``: the same data and network (tanh, plain SGD, 30 epochs), dominated by tiny
  steps: learning_rate [0.01, 0.03, 0.1, 0.3, 1.0] × (gd stochastic, or minibatch with
  batch_size [1, 4, 16]) × 3 seeds = 60 runs, of which 45 take one or four samples a step.

For each: wall-clock; the runs' summed ``duration_s`` (claim to outcome, in the workers); the
training samples the runs went through (epochs run × N_train, read back from the store) per
second of wall-clock and per second of the runs' own durations. Medians of ``--repeat`` runs,
the two grids taking turns.

    python benchmarks/small_grids.py             # about 1-2 minutes on 2 idle cores
    python benchmarks/small_grids.py --quick     # one repeat of 3 epochs: a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import yaml
from grid import JOBS, Stored, cli_sweep

from nnlab.sweeps.config import prepare_data

QUICKSTART = Path(__file__).resolve().parent.parent / "sweeps" / "quickstart.yaml"
SPIRALS = {
    "name": "spirals",
    "description": "stochastic and tiny mini-batch GD on 3-class spirals (benchmarks/small_grids)",
    "data": {"name": "spirals", "n_samples": 300, "classes": 3, "noise": 0.2},
    "model": {"hidden": [16], "activation": "tanh"},
    "train": {"epochs": 30, "optimizer": "sgd"},
    "grid": {
        "learning_rate": [0.01, 0.03, 0.1, 0.3, 1.0],
        "gd": ["stochastic", "minibatch"],
        "batch_size": [1, 4, 16],  # only counts for minibatch
    },
    "seeds": 3,
}


def grids(quick: bool) -> list[dict]:
    specs = [yaml.safe_load(QUICKSTART.read_text()), SPIRALS]
    if quick:
        specs = [{**s, "train": {**s["train"], "epochs": 3}} for s in specs]
    return specs


def n_train(spec: dict) -> int:
    train_data, _, _ = prepare_data(spec["data"])
    return len(train_data.X)


def median_row(spec: dict, walls: list[float], stored: list[Stored]) -> str:
    wall = statistics.median(walls)
    run_seconds = statistics.median(s.run_seconds for s in stored)
    samples = stored[0].epochs * n_train(spec)  # the same in every repeat: runs are deterministic
    return (
        f"| {spec['name']} | {stored[0].runs} | {stored[0].epochs:,} | {wall:.1f} | "
        f"{', '.join(f'{w:.1f}' for w in walls)} | {run_seconds:.1f} | {samples / wall:,.0f} | "
        f"{samples / run_seconds:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat of 3 epochs")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each grid (medians)")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    specs = grids(args.quick)
    walls = {s["name"]: [] for s in specs}
    stored = {s["name"]: [] for s in specs}
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(repeat):
            for s in specs:
                folder = Path(tmp) / f"{s['name']}-{attempt}"
                seconds, work = cli_sweep(folder, yaml.safe_dump(s), s["name"], JOBS)
                walls[s["name"]].append(seconds)
                stored[s["name"]].append(work)
    print(
        f"nnlab sweep -j{JOBS} end to end (CLI, fresh database, with report), median of "
        f"{repeat}{' (--quick: 3 epochs)' if args.quick else ''}; samples: training samples "
        "the runs went through\n"
    )
    print(
        "| grid | runs | epochs | wall s | wall s of each repeat | Σ run duration_s | "
        "samples/s (wall) | samples/s (run durations) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in specs:
        print(median_row(s, walls[s["name"]], stored[s["name"]]))


if __name__ == "__main__":
    main()
