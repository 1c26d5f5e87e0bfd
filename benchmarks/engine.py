"""Training throughput of nnlab's engine against scikit-learn, PyTorch and a hand-written loop.

Same data, architecture, initial scale, plain SGD with a constant learning rate, float64
everywhere; median of --repeats runs; 1 and 2 BLAS threads. Prints samples/s, ratios, and the
GFLOP/s nnlab reaches beside two limits measured next to each row with the same thread count:
the machine's GEMM-only rate for that shape (the bare matrix products of one training step of
that batch size, benchmarks/gemm.py: step FLOPs over the time of its GEMMs alone) and a square
1536² matmul (the machine's peak). Then the peak RSS of training on the synthetic problem against
what the data, parameters and one batch's activations need.

    pip install -e '.[bench]'
    python benchmarks/engine.py            # full table (a few minutes on 2 cores)
    python benchmarks/engine.py --quick    # one repeat, fewer samples: a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from itertools import pairwise

import numpy as np
import numpy_loop
from gemm import gemm_rate, train_flops_per_sample
from threadpoolctl import threadpool_limits

from nnlab.engine import MLP, train, train_many

LEARNING_RATE = 0.01
PAUSE_S = 0.3
# samples processed per measurement, by batch size: enough for a stable time, small enough to finish
WORK = {1: 3_000, 32: 40_000, 256: 100_000, "full": 100_000}


def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    return "digits 64-128-10", np.ascontiguousarray(X), y.astype(np.int64), [64, 128, 10]


def synthetic(n=20_000, d=100, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    teacher = rng.standard_normal((d, classes))
    y = (X @ teacher).argmax(axis=1).astype(np.int64)
    return f"synthetic {n}x{d}-256-256-10", X, y, [d, 256, 256, classes]


def run_nnlab(X, y, sizes, batch_size, epochs):
    net = MLP(sizes, activation="relu", seed=0)
    gd = "batch" if batch_size == len(X) else "minibatch"
    train(net, X, y, gd=gd, batch_size=batch_size, learning_rate=LEARNING_RATE, epochs=epochs)


def run_nnlab_packed(X, y, sizes, batch_size, epochs):
    """PACKED runs at once (nnlab.engine.train_many): learning rates spread around the others'
    one, the same seed, so they train as one pack; its samples count every run's."""
    gd = "batch" if batch_size == len(X) else "minibatch"
    runs = [
        (
            MLP(sizes, activation="relu", seed=0),
            {
                "gd": gd,
                "batch_size": batch_size,
                "epochs": epochs,
                "learning_rate": LEARNING_RATE * (0.5 + k / PACKED),
                "divergence_factor": None,
            },
        )
        for k in range(PACKED)
    ]
    train_many(runs, X, y, max_pack=PACKED)


def run_numpy_loop(X, y, sizes, batch_size, epochs):
    numpy_loop.train(X, y, sizes, batch_size, LEARNING_RATE, epochs)


def run_sklearn(X, y, sizes, batch_size, epochs):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=tuple(sizes[1:-1]),
        activation="relu",
        solver="sgd",
        momentum=0.0,
        learning_rate_init=LEARNING_RATE,
        batch_size=batch_size,
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=epochs + 1,
        shuffle=True,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)


def run_torch(X, y, sizes, batch_size, epochs):
    import torch

    torch.manual_seed(0)
    layers = []
    for fan_in, fan_out in pairwise(sizes):
        layers += [torch.nn.Linear(fan_in, fan_out, dtype=torch.float64), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    criterion = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n = len(X)
    for _ in range(epochs):
        order = torch.randperm(n)
        total = 0.0
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = criterion(model(Xt[index]), yt[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)


PACKED = 10  # runs trained together by "nnlab packed"
IMPLEMENTATIONS = {
    "nnlab": run_nnlab,
    "nnlab packed": run_nnlab_packed,
    "numpy loop": run_numpy_loop,
    "sklearn": run_sklearn,
    "torch": run_torch,
}
if importlib.util.find_spec("torch") is None:  # its columns print as "—"
    del IMPLEMENTATIONS["torch"]


def measure(X, y, sizes, batch_size, repeats, work):
    """Median samples/s of each implementation on a slice of the data sized to ``work``.

    Each runs once untimed first (imports, caches). Then they take turns within each repeat, in
    a rotating order with a short pause between runs (PyTorch's OpenMP threads keep spinning for
    a moment after it returns), so a slow spell of the machine hits them alike.
    """
    n = min(len(X), max(work, batch_size)) if batch_size != len(X) else len(X)
    Xs, ys = X[:n], y[:n]
    epochs = max(1, math.ceil(work / n))
    rates = {impl: [] for impl in IMPLEMENTATIONS}
    order = list(IMPLEMENTATIONS.items())
    for _, fn in order:
        fn(Xs, ys, sizes, min(batch_size, n), 1)
    for repeat in range(repeats):
        for impl, fn in order[repeat % len(order) :] + order[: repeat % len(order)]:
            start = time.perf_counter()
            fn(Xs, ys, sizes, min(batch_size, n), epochs)
            runs = PACKED if impl == "nnlab packed" else 1
            rates[impl].append(runs * epochs * n / (time.perf_counter() - start))
            time.sleep(PAUSE_S)
    return {impl: statistics.median(values) for impl, values in rates.items()}


def gemm_peak(threads, size=1536, repeats=5):
    """GFLOP/s of a square float64 matmul with this many BLAS threads: the machine's own peak."""
    a = np.random.default_rng(0).standard_normal((size, size))
    with threadpool_limits(threads):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def nnlab_rate(rates: dict, sizes) -> float:
    """GFLOP/s of nnlab's training from its samples/s in ``rates`` (one run at a time)."""
    return rates["nnlab"] * train_flops_per_sample(sizes) / 1e9


def packed_rate(rates: dict, sizes) -> float:
    """GFLOP/s of ``PACKED`` runs trained together, every run's samples counted."""
    return rates["nnlab packed"] * train_flops_per_sample(sizes) / 1e9


def torch_threads(threads):
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def throughput_table(repeats, work_scale):
    rows = []
    problems = [digits(), synthetic()]
    for threads in (1, 2):
        torch_threads(threads)
        for name, X, y, sizes in problems:
            for batch in (1, 32, 256, "full"):
                batch_size = len(X) if batch == "full" else batch
                work = int(WORK[batch] * work_scale)
                if name.startswith("synthetic") and batch == 1:
                    work //= 3
                # the machine's speed drifts (it is shared): measure the peak next to each row
                peak = gemm_peak(threads)
                gemm_only = gemm_rate(sizes, batch_size, threads)
                with threadpool_limits(threads):
                    rates = measure(X, y, sizes, batch_size, repeats, work)
                gflops, packed = nnlab_rate(rates, sizes), packed_rate(rates, sizes)
                rows.append((name, batch, threads, rates, gflops, packed, gemm_only, peak))
                print_row(rows[-1], flush=True)
    return rows


HEADER = (
    f"| {'problem':<30} | {'batch':>5} | thr | {'nnlab':>9} | {'packed ×10':>10} | "
    f"{'numpy loop':>10} | "
    f"{'sklearn':>9} | {'torch':>9} | {'×sklearn':>8} | {'×torch':>6} | {'×loop':>5} | "
    f"{'GFLOP/s':>7} | {'packed':>6} | {'GEMM-only':>9} | {'×GEMM':>5} | {'packed ×GEMM':>12} | "
    f"{'% peak':>6} |"
)


def print_row(row, flush=False):
    name, batch, threads, r, gflops, packed, gemm_only, peak = row
    print(
        f"| {name:<30} | {batch!s:>5} | {threads:>3} | {r['nnlab']:>9,.0f} | "
        f"{r['nnlab packed']:>10,.0f} | "
        f"{r['numpy loop']:>10,.0f} | {r['sklearn']:>9,.0f} | {_rate(r, 'torch'):>9} | "
        f"{r['nnlab'] / r['sklearn']:>8.2f} | {_ratio(r, 'torch'):>6} | "
        f"{r['nnlab'] / r['numpy loop']:>5.2f} | {gflops:>7.1f} | {packed:>6.1f} | "
        f"{gemm_only:>9.1f} | {gflops / gemm_only:>5.2f} | {packed / gemm_only:>12.2f} | "
        f"{100 * gflops / peak:>5.0f}% |",
        flush=flush,
    )


def _rate(rates: dict, impl: str) -> str:
    return f"{rates[impl]:,.0f}" if impl in rates else "—"


def _ratio(rates: dict, impl: str) -> str:
    return f"{rates['nnlab'] / rates[impl]:.2f}" if impl in rates else "—"


MEMORY_PROBE = r"""
import json, sys
import numpy as np
from nnlab.engine import MLP, train  # noqa: E402
def rss():  # VmHWM: the peak of this process alone (ru_maxrss survives exec from a big parent)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
gd, batch_size = sys.argv[1], int(sys.argv[2])
n, d, sizes = 20_000, 100, [100, 256, 256, 10]
net = MLP(sizes, activation="relu", seed=0)
rng = np.random.default_rng(0)
X = np.empty((n, d)); rng.standard_normal(out=X)
y = rng.integers(0, 10, n)
baseline = rss()
train(net, X, y, gd=gd, batch_size=batch_size, learning_rate=0.01, epochs=2)
rows = n if gd == "batch" else batch_size
print(json.dumps({"baseline": baseline, "peak": rss(), "data": X.nbytes + y.nbytes,
                  "params": net.flat.nbytes, "activations": rows * sum(sizes[1:]) * 8}))
"""


def memory_table():
    print("\nPeak RSS training the synthetic 20000×100-256-256-10 problem (2 epochs):\n")
    print(f"| {'gd':<10} | {'batch':>5} | {'peak RSS':>9} | {'budget':>9} | {'ratio':>5} |")
    print(f"|{'-' * 12}|{'-' * 7}|{'-' * 11}|{'-' * 11}|{'-' * 7}|")
    for gd, batch_size in (("minibatch", 32), ("minibatch", 256), ("batch", 0)):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, gd, str(batch_size)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        m = json.loads(out)
        # baseline is measured with the data already in memory, so it is counted once
        budget = m["baseline"] + m["params"] + m["activations"]
        print(
            f"| {gd:<10} | {batch_size or 'full':>5} | {m['peak'] / 2**20:>6.0f} MB | "
            f"{budget / 2**20:>6.0f} MB | {m['peak'] / budget:>5.2f} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 repeat, a tenth of the work")
    args = parser.parse_args()
    repeats, scale = (1, 0.1) if args.quick else (args.repeats, 1.0)
    print(f"numpy {np.__version__}, float64, plain SGD lr={LEARNING_RATE}, samples/s (higher is")
    print(f"better), median of {repeats}; ratios are nnlab / other. GFLOP/s: nnlab's;")
    print("GEMM-only: the bare GEMMs of one step of that shape (step FLOPs / their time alone);")
    print("×GEMM: nnlab / GEMM-only; % peak: of a square 1536² matmul; both at the row's threads.")
    if "torch" not in IMPLEMENTATIONS:
        print("(PyTorch is not installed: its columns are skipped; pip install -e '.[bench]')")
    print()
    print(HEADER)
    print("|" + "|".join("-" * len(cell) for cell in HEADER.split("|")[1:-1]) + "|")
    throughput_table(repeats, scale)
    print(
        "\nGEMM peak (square float64 matmul): "
        + ", ".join(f"{t} thread(s) {gemm_peak(t):.1f} GFLOP/s" for t in (1, 2))
    )
    memory_table()


if __name__ == "__main__":
    main()
