"""Cost of an HTML report on a large sweep: 1,000 runs × 100 epochs, target < 5 s and < 5 MB.

Builds a synthetic sweep through nnlab's store API (``register_sweep`` + ``RunWriter``, as a
sweep writes it) on SQLite: learning_rate 5 × GD variant and batch size 4 (batch, stochastic,
mini-batch 16 and 64) × activation 2 × hidden 5 = 200 configurations × 5 seeds, every epoch
stored; the largest learning rate diverges for some seeds, a few runs fail. Then times
``render_report`` (after one untimed call) and its parts, and measures the file
``write_report`` writes.

    python benchmarks/report.py [--configurations 200] [--seeds 5] [--epochs 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time

import matplotlib
import numpy as np

import nnlab
from nnlab.report import figures as charts
from nnlab.report import render_report, write_report
from nnlab.report.analysis import default_threshold, load_sweep
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.queue import RunQueue
from nnlab.store.registry import RunRow

RATES = (0.003, 0.01, 0.03, 0.1, 0.3)
VARIANTS = (("batch", None), ("stochastic", None), ("minibatch", 16), ("minibatch", 64))
ACTIVATIONS = ("tanh", "relu")
HIDDEN = ([8], [16], [32], [16, 16], [32, 32])
NAME = "report-bench"


def configurations(n: int) -> list[dict]:
    grid = itertools.product(RATES, VARIANTS, ACTIVATIONS, HIDDEN)
    return [
        {
            "learning_rate": rate,
            "gd": gd,
            "batch_size": size,
            "activation": activation,
            "hidden": hidden,
            "optimizer": "sgd",
        }
        for rate, (gd, size), activation, hidden in itertools.islice(grid, n)
    ]


def curve(config: dict, seed: int, epochs: int, rng: np.random.Generator) -> tuple[list, str]:
    """A plausible loss curve and how the run ended: faster for larger steps and smaller
    batches; the largest learning rate blows up for about one seed in three."""
    speed = config["learning_rate"] * (3 if config["gd"] == "stochastic" else 1) * 20
    epoch = np.arange(1, epochs + 1)
    loss = (
        1.1 * np.exp(-speed * epoch / epochs * 5) + 0.05 + rng.normal(0, 0.01, epochs).cumsum() ** 2
    )
    if config["learning_rate"] == RATES[-1] and seed % 3 == 0:
        at = int(rng.integers(5, epochs // 2))
        loss[:at] *= np.exp(np.linspace(0, 5.5, at))
        return list(loss[:at]), "diverged"
    return list(loss), "completed"


def build(url: str, configs: int, seeds: int, epochs: int) -> None:
    store = open_store(url)
    points = [(config, seed) for config in configurations(configs) for seed in range(seeds)]
    rows = [
        RunRow({**config, "epochs": epochs, "seed": seed}, f"{i}", seed)
        for i, (config, seed) in enumerate(points)
    ]
    sweep_id = register_sweep(
        store,
        NAME,
        rows,
        description="synthetic curves for benchmarks/report.py",
        spec="name: report-bench\n",
        spec_hash="sha256:bench",
    )
    rng = np.random.default_rng(0)
    for run_id, (config, seed) in zip(_run_ids(url), points, strict=True):
        writer = RunWriter(store, run_id, heartbeat_seconds=0)
        writer.start()
        if run_id % 97 == 0:
            writer.finish("failed", "Traceback (most recent call last):\nValueError: synthetic")
            continue
        losses, status = curve(config, seed, epochs, rng)
        seconds = 0.002 * (30 if config["gd"] == "stochastic" else 1)
        for epoch, loss in enumerate(losses, 1):
            writer.log(
                {
                    "epoch": epoch,
                    "train_loss": loss * 0.9,
                    "val_loss": loss,
                    "train_accuracy": 0.8,
                    "val_accuracy": 0.7,
                    "grad_norm": 1.0,
                    "learning_rate": config["learning_rate"],
                    "seconds": seconds,
                }
            )
        writer.finish(status)
    RunQueue(store, sweep_id).settle_sweep()


def _run_ids(url: str) -> list[int]:
    return nnlab.connect(url).runs(sweep=NAME).run_id.tolist()


def parts(lab) -> list[tuple[str, float]]:
    """Seconds for each step of one report."""
    timings = []
    start = time.perf_counter()
    view = load_sweep(lab, NAME)
    view.set_threshold(default_threshold([view]))
    timings.append(("read the store and aggregate", time.perf_counter() - start))
    with matplotlib.rc_context(charts.STYLE):
        for label, chart in (
            ("convergence curves (PNG)", charts.convergence_chart),
            ("heatmap (SVG)", charts.heatmap_chart),
            ("GD variants (SVG)", charts.gd_chart),
            ("marginal effects (SVG)", charts.marginal_chart),
        ):
            start = time.perf_counter()
            chart(view)
            timings.append((label, time.perf_counter() - start))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configurations", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        start = time.perf_counter()
        build(url, args.configurations, args.seeds, args.epochs)
        built = time.perf_counter() - start
        lab = nnlab.connect(url)
        runs = len(lab.runs(sweep=NAME))
        render_report(lab, [NAME])  # untimed: imports, font cache
        totals = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            render_report(lab, [NAME])
            totals.append(time.perf_counter() - start)
        steps = parts(lab)
        size = write_report(lab, [NAME], directory=tmp).stat().st_size
    print(f"{runs} runs × {args.epochs} epochs, built through RunWriter in {built:.1f} s\n")
    print(f"| {'step':<44} | {'seconds':>7} |")
    print(f"|{'-' * 46}|{'-' * 9}|")
    for label, seconds in steps:
        print(f"| {label:<44} | {seconds:>7.2f} |")
    total = statistics.median(totals)
    print(f"| {f'render_report, median of {args.repeat} (target < 5 s)':<44} | {total:>7.2f} |")
    print(f"\nreport file: {size / 1e6:.2f} MB (target < 5 MB)")


if __name__ == "__main__":
    main()
