"""Sweep throughput and the parent's memory: `nnlab sweep` against the bare compute floor.

Workload W (issue 4): scikit-learn's digits (standardised, 80/20 split), MLP 64-128-10, plain
SGD, 30 epochs, learning_rate [0.003, 0.01, 0.03, 0.1, 0.3] × batch_size [16, 32, 64, 128] ×
activation [sigmoid, tanh, relu] × seeds [0, 1, 2] = 180 runs, every epoch stored. The floor is
the hand-written NumPy loop of benchmarks/numpy_loop.py over the same 180 configurations with
joblib, storing nothing. Then the parent process's peak RSS for a --dry-run of a 10,000-run grid
and for a 2,000-run sweep of tiny runs.

    pip install -e '.[bench]'
    python benchmarks/sweep.py

Not yet measured here: the scikit-learn + MLflow and Optuna pipelines of the issue.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here] + [str(_here)]

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import numpy_loop  # noqa: E402

import nnlab  # noqa: E402
from nnlab.sweep.runner import run_sweep  # noqa: E402
from nnlab.sweep.spec import parse_spec  # noqa: E402

RATES = [0.003, 0.01, 0.03, 0.1, 0.3]
BATCHES = [16, 32, 64, 128]
ACTIVATIONS = ["sigmoid", "tanh", "relu"]
SEEDS = [0, 1, 2]
EPOCHS = 30


def digits_npz(folder: Path) -> Path:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    path = folder / "digits.npz"
    np.savez(path, X=X.astype(np.float64), y=y.astype(np.int64))
    return path


def spec_w(npz: Path, name: str = "w") -> str:
    return textwrap.dedent(f"""\
        name: {name}
        data: {{name: {npz}, val_fraction: 0.2, standardize: true}}
        model: {{hidden: [128], loss: cross_entropy}}
        train: {{epochs: {EPOCHS}, gd: minibatch, optimizer: sgd}}
        grid:
          learning_rate: {RATES}
          batch_size: {BATCHES}
          activation: {ACTIVATIONS}
        seeds: {SEEDS}
    """)


def nnlab_w(folder: Path, npz: Path, jobs: int) -> float:
    url = f"sqlite:///{folder / f'w{jobs}.db'}"
    start = time.perf_counter()
    run_sweep(parse_spec(spec_w(npz)), url, jobs=jobs)
    return time.perf_counter() - start


def _floor_run(X, y, lr, batch, activation, seed):
    numpy_loop.train(X, y, [64, 128, 10], batch, lr, EPOCHS, seed, activation)


def floor_w(npz: Path, jobs: int) -> float:
    from nnlab.sweep.run import prepare_data

    train_data, _, _ = prepare_data({"name": str(npz), "val_fraction": 0.2})
    X, y = train_data.X, train_data.y
    grid = list(itertools.product(RATES, BATCHES, ACTIVATIONS, SEEDS))
    start = time.perf_counter()
    joblib.Parallel(n_jobs=jobs)(joblib.delayed(_floor_run)(X, y, *point) for point in grid)
    return time.perf_counter() - start


def read_time(folder: Path) -> tuple[float, int]:
    lab = nnlab.connect(f"sqlite:///{folder / 'w2.db'}")
    lab.epochs(sweep="w")  # warm
    start = time.perf_counter()
    epochs = lab.epochs(sweep="w")
    return time.perf_counter() - start, len(epochs)


PARENT_RSS = r"""
import json, sys
from nnlab.sweep.runner import plan, run_sweep
from nnlab.sweep.spec import parse_spec
spec = parse_spec(sys.argv[1])
if sys.argv[2] == "dry":
    points = plan(spec, max_runs=20_000)
else:
    run_sweep(spec, sys.argv[3], jobs=2)
status = open("/proc/self/status").read()
print(json.dumps({"peak_mb": int(status.split("VmHWM:")[1].split()[0]) / 1024}))
"""


def parent_rss(spec_text: str, mode: str, url: str = "") -> float:
    out = subprocess.run([sys.executable, "-c", PARENT_RSS, spec_text, mode, url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
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
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        npz = digits_npz(folder)
        floor2 = floor_w(npz, 2)
        nnlab2 = nnlab_w(folder, npz, 2)
        nnlab1 = nnlab_w(folder, npz, 1)
        read_s, rows = read_time(folder)
        runs = len(RATES) * len(BATCHES) * len(ACTIVATIONS) * len(SEEDS)
        print(f"Workload W: {runs} runs × {EPOCHS} epochs on digits (64-128-10, plain SGD)\n")
        print("| pipeline | seconds | × floor |")
        print("|---|---|---|")
        print(f"| bare NumPy loop, no storage, joblib -j2 (the floor) | {floor2:.1f} | 1.00 |")
        print(
            f"| nnlab sweep -j2 (live logging to SQLite) | {nnlab2:.1f} | {nnlab2 / floor2:.2f} |"
        )
        print(f"| nnlab sweep -j1 | {nnlab1:.1f} | {nnlab1 / floor2:.2f} |")
        print(f"\n-j2 speed-up over -j1: {nnlab1 / nnlab2:.2f}×; overhead per run over the floor "
              f"at -j2: {(nnlab2 - floor2) / runs * 1e3 * 2:.1f} ms of worker time")  # fmt: skip
        print(f"lab.epochs() reading all {rows:,} epoch rows: {read_s:.3f} s\n")
        dry = parent_rss(grid_spec("dry", 2500, 4, 10), "dry")
        tiny = parent_rss(grid_spec("tiny", 1000, 2, 3), "run", f"sqlite:///{folder / 't.db'}")
        print("| parent process | peak RSS |")
        print("|---|---|")
        print(f"| --dry-run of a 10,000-run grid | {dry:.0f} MB |")
        print(f"| 2,000-run sweep of tiny runs, -j2 | {tiny:.0f} MB |")


if __name__ == "__main__":
    main()
