"""Subnormal numbers in the 1,000-run grid: what they cost, and what flushing them gives.

A float64 below 2.2e-308 in magnitude (a float32 below 1.2e-38) is subnormal, and an Intel core
takes a slow microcode path for each arithmetic operation that reads or makes one. Saturated
units make them: a sigmoid held at its clamp (σ ≈ 3e-308), softmax probabilities of e^-700, and
the products of such small numbers in the deltas and the weight gradients. The grid's large
learning rates (1, 3, 10) saturate its sigmoid networks for most of their 50 epochs.

A run's ``subnormals: flush`` setting flushes them (nnlab/engine/arithmetic.py): the x86 MXCSR
register's FTZ (subnormal results become 0) and DAZ (subnormal operands are read as 0) bits, for
every SSE/AVX operation of the thread that trains the run (NumPy's loops, OpenBLAS at one
thread, numba's kernels). Measured here, on one core:

- each of the grid's packs (one activation × optimizer, the 10 learning rates, seed 0, digits
  64-128-10, mini-batch 32, 50 epochs, as ``nnlab sweep`` packs them), trained with
  ``subnormals`` keep (IEEE arithmetic) and flush in turns, the faster of ``--repeat`` kept for
  each: µs a run and step, and whether the runs' records (every epoch's losses, accuracies and
  gradient norm, and how many epochs ran) are the same under both;
- one activation × optimizer (``--by-rate``, sigmoid/adam by default) trained as ten packs of one
  learning rate each (10 seeds), 10 epochs: what each learning rate's steps cost.

    pip install -e '.[bench,fast]'
    python benchmarks/subnormals.py            # about 2-4 minutes on one core
    python benchmarks/subnormals.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import time
import timeit

import numpy as np
from kernels import ACTIVATIONS, BATCH, OPTIMIZERS, SIZES, digits
from threadpoolctl import threadpool_limits

from nnlab.engine import MLP, arithmetic, train_many
from nnlab.engine.activations import bias_gradient
from nnlab.engine.packed import _Pack, _prepared

LEARNING_RATES = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
MODES = ("keep", "flush")
METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "grad_norm")


def grid_run(activation: str, optimizer: str, rate: float, seed: int, epochs: int, **settings):
    """One run of the grid: its network, and its ``train`` settings (``settings`` added)."""
    net = MLP(SIZES, activation=activation, seed=seed)
    return net, {
        "loss": "cross_entropy", "gd": "minibatch", "batch_size": BATCH, "epochs": epochs,
        "learning_rate": rate, "optimizer": optimizer, "seed": seed, **settings,
    }  # fmt: skip


def train_pack(data, activation: str, optimizer: str, rates, seeds, epochs: int, mode: str):
    """Seconds to train the pack of (rate, seed) runs, its run-epochs, and each run's records."""
    X, y, X_val, y_val = data
    records = {point: [] for point in itertools.product(rates, seeds)}
    runs = [
        grid_run(
            activation,
            optimizer,
            rate,
            seed,
            epochs,
            subnormals=mode,
            on_epoch=records[rate, seed].append,
        )
        for rate, seed in records
    ]
    start = time.perf_counter()
    train_many(runs, X, y, val=(X_val, y_val))
    seconds = time.perf_counter() - start
    return seconds, sum(len(r) for r in records.values()), records


def compare(kept: dict, flushed: dict) -> tuple[int, int, set, float]:
    """Runs whose epoch count differs; runs with any metric not equal, which metrics, and the
    largest relative difference of one between the two."""
    lengths = sum(len(kept[p]) != len(flushed[p]) for p in kept)
    differing, names, worst = 0, set(), 0.0
    for point, records in kept.items():
        pairs = [
            (name, getattr(a, name), getattr(b, name))
            for a, b in zip(records, flushed[point], strict=False)
            for name in METRICS
            if getattr(a, name) is not None
        ]
        unequal = [(name, a, b) for name, a, b in pairs if a != b]
        differing += bool(unequal)
        names |= {name for name, _, _ in unequal}
        for _, a, b in unequal:
            if np.isfinite(a) and np.isfinite(b):
                worst = max(worst, abs(a - b) / max(abs(a), abs(b)))
    return lengths, differing, names, worst


def per_step(seconds: float, run_epochs: int, steps: int) -> float:
    return seconds / (run_epochs * steps) * 1e6


def grid_table(data, combos, epochs: int, repeat: int) -> None:
    steps = -(-len(data[0]) // BATCH)
    print(
        f"The grid's packs (10 learning rates, seed 0, {epochs} epochs), µs a run and step\n\n"
        "| pack | run-epochs | keep | flush | × | runs with other epochs | runs with other "
        "metrics | which | largest relative difference |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|---:|"
    )
    totals = [0.0, 0.0]
    for activation, optimizer in combos:
        best, records = [float("inf")] * 2, [None, None]
        for _ in range(repeat):
            for index, mode in enumerate(MODES):
                seconds, run_epochs, recorded = train_pack(
                    data, activation, optimizer, LEARNING_RATES, [0], epochs, mode
                )
                best[index] = min(best[index], seconds)
                records[index] = recorded
        totals = [total + seconds for total, seconds in zip(totals, best, strict=True)]
        lengths, differing, names, worst = compare(*records)
        kept, flushed = (per_step(s, run_epochs, steps) for s in best)
        print(
            f"| {activation}/{optimizer} | {run_epochs} | {kept:.1f} | {flushed:.1f} | "
            f"{kept / flushed:.2f} | {lengths} | {differing} | {', '.join(sorted(names))} | "
            f"{worst:.1e} |"
        )
    print(
        f"\nAll {len(combos)} packs: {totals[0]:.1f} s kept, {totals[1]:.1f} s flushed "
        f"({totals[0] / totals[1]:.2f}×)\n"
    )


def rate_table(data, activation: str, optimizer: str, epochs: int) -> None:
    steps = -(-len(data[0]) // BATCH)
    print(
        f"{activation}/{optimizer}, one pack of 10 seeds per learning rate, {epochs} epochs, "
        "µs a run and step\n\n| learning rate | keep | flush | × |\n|---:|---:|---:|---:|"
    )
    for rate in LEARNING_RATES:
        times = []
        for mode in MODES:
            seconds, run_epochs, _ = train_pack(
                data, activation, optimizer, [rate], range(10), epochs, mode
            )
            times.append(per_step(seconds, run_epochs, steps))
        print(f"| {rate:g} | {times[0]:.1f} | {times[1]:.1f} | {times[0] / times[1]:.2f} |")
    print()


def _subnormal(a: np.ndarray) -> int:
    return int(np.count_nonzero((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))


def where_table(data, activation: str, optimizer: str, epochs: int, number: int) -> None:
    """Each piece of one packed step, on the state a pack of the grid reaches after ``epochs``
    kept epochs, timed kept and flushed on the same batch: where the subnormals' time goes."""
    X, y, X_val, y_val = data
    runs = [grid_run(activation, optimizer, rate, 0, epochs + 1) for rate in LEARNING_RATES]
    trainers, _ = _prepared(runs, X, y, (X_val, y_val), None)
    pack = _Pack(trainers)
    for epoch in range(1, epochs + 1):
        pack._epoch(epoch)
    bp, K, m = pack.backprop, len(pack.active), BATCH
    xb, tb = np.ascontiguousarray(pack.X[:m]), np.ascontiguousarray(pack.T[:m])
    (W1, b1, gW1, gb1), (W2, b2, gW2, gb2) = bp._layers
    Z1, Z2 = bp._rows_of(bp.activations[0], m, SIZES[1]), bp._rows_of(bp.activations[1], m, 10)
    D = bp._rows_of(bp.output_delta, m, SIZES[2])
    up = bp._scratch[: K * m * SIZES[1]].reshape(K, m, SIZES[1])
    saved = (pack.theta.copy(), bp.flat_grad.copy(), pack.optimizer.state())

    def restore() -> None:
        pack.theta[...], bp.flat_grad[...] = saved[0], saved[1]
        pack.optimizer.load_state({k: np.copy(v) for k, v in saved[2].items()})

    def us(function) -> float:  # µs a run, the best of 5
        return min(timeit.repeat(function, number=number, repeat=5)) / number / K * 1e6

    def layer() -> None:
        for start, stop, step, _ in bp._segments:
            step(Z1[start:stop], b1[start:stop])

    def delta(upstream) -> None:
        for start, stop, _, step in bp._segments:
            step(Z1[start:stop], upstream[start:stop], gb1[start:stop])

    # each piece on the values the step gives it (saved below): a piece that works in place
    # is given its input afresh each time, and that copy's time is taken off its own
    saved_step: dict[str, np.ndarray] = {}

    def given(buffer: np.ndarray, name: str):
        return lambda: np.copyto(buffer, saved_step[name])

    def then(first, second):
        return lambda: (first(), second())

    T1 = np.swapaxes  # the transposed views a step takes
    pieces = {
        "X·W1": (lambda: np.matmul(xb, W1, out=Z1), None),
        "hidden layer (bias, activation)": (layer, given(Z1, "pre1")),
        "A1·W2": (lambda: np.matmul(saved_step["A1"], W2, out=Z2), None),
        "output bias add": (lambda: Z2.__iadd__(b2[:, None, :]), given(Z2, "pre2")),
        "softmax cross-entropy, delta": (lambda: bp.loss(Z2, tb, D, 1 / m), given(Z2, "logits")),
        "output bias gradient": (lambda: bias_gradient(saved_step["D"], gb2), None),
        "A1ᵀ·D (output weights' gradient)": (
            lambda: np.matmul(T1(saved_step["A1"], -1, -2), saved_step["D"], out=gW2),
            None,
        ),
        "D·W2ᵀ (upstream)": (lambda: np.matmul(saved_step["D"], T1(W2, -1, -2), out=up), None),
        "hidden delta (derivative, bias gradient)": (
            lambda: delta(saved_step["upstream"]),
            given(Z1, "A1"),
        ),
        "Xᵀ·D1 (hidden weights' gradient)": (
            lambda: np.matmul(xb.T, saved_step["D1"], out=gW1),
            None,
        ),
        "update rule": (pack.optimizer.step, restore),
        "the whole step": (lambda: pack._update(xb, tb), restore),
    }
    times, counts = {}, {}
    for mode in MODES:
        with arithmetic.training(mode):
            restore()
            np.matmul(xb, W1, out=Z1)
            saved_step["pre1"] = Z1.copy()
            layer()
            saved_step["A1"] = A1 = Z1.copy()
            np.matmul(A1, W2, out=Z2)
            saved_step["pre2"] = Z2.copy()
            Z2 += b2[:, None, :]
            saved_step["logits"] = Z2.copy()
            bp.loss(Z2, tb, D, 1 / m)
            saved_step["D"] = D.copy()
            np.matmul(D, T1(W2, -1, -2), out=up)
            saved_step["upstream"] = up.copy()
            delta(saved_step["upstream"])
            saved_step["D1"] = D1 = Z1.copy()  # the hidden delta, as Xᵀ·D1 takes it
            terms_out = A1[:, :, :, None] * D[:, :, None, :]  # each term of A1ᵀ·D
            terms_hidden = xb[None, :, :, None] * D1[:, :, None, :]  # each term of Xᵀ·D1
            counts[mode] = (
                _subnormal(D), _subnormal(A1), _subnormal(terms_out), _subnormal(up),
                _subnormal(D1), _subnormal(terms_hidden),
            )  # fmt: skip
            for name, (piece, setup) in pieces.items():
                if setup is None:
                    times[mode, name] = us(piece)
                else:
                    times[mode, name] = us(then(setup, piece)) - us(setup)
    kept = counts["keep"]
    print(
        f"{activation}/{optimizer}, the grid's 10 learning rates after {epochs} kept epochs "
        f"({K} runs left), one step of {m} rows, µs a run, each piece on the values the step "
        f"gives it. Subnormal numbers, kept (none flushed): output delta {kept[0]} of "
        f"{D.size}; hidden activations {kept[1]} of {up.size}; terms of A1ᵀ·D {kept[2]} of "
        f"{terms_out.size}; upstream {kept[3]} and hidden delta {kept[4]} of {up.size}; terms "
        f"of Xᵀ·D1 {kept[5]} of {terms_hidden.size}\n\n"
        "| piece | keep | flush | extra kept |\n|---|---:|---:|---:|"
    )
    for name in pieces:
        keep, flush = times["keep", name], times["flush", name]
        print(f"| {name} | {keep:.1f} | {flush:.1f} | {keep - flush:+.1f} |")
    summed = [sum(times[mode, name] for name in list(pieces)[:-1]) for mode in MODES]
    rest = [
        times[mode, "the whole step"] - total for mode, total in zip(MODES, summed, strict=True)
    ]
    print(
        f"| the pieces, summed | {summed[0]:.1f} | {summed[1]:.1f} | {summed[0] - summed[1]:+.1f} |"
    )
    print(
        f"| the whole step less its pieces (the accuracy count, Python's dispatch, the cache) "
        f"| {rest[0]:.1f} | {rest[1]:.1f} | {rest[0] - rest[1]:+.1f} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two packs of 3 epochs")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each pack, the best kept")
    parser.add_argument("--by-rate", default="sigmoid/adam", help="ACTIVATION/OPTIMIZER")
    parser.add_argument(
        "--where", default=None, help="ACTIVATION/OPTIMIZER: only the table of its step's pieces"
    )
    args = parser.parse_args()
    combos = list(itertools.product(ACTIVATIONS, OPTIMIZERS))
    epochs, repeat = (3, 1) if args.quick else (50, args.repeat)
    if args.quick:
        combos = [("sigmoid", "adam"), ("relu", "sgd")]
    arithmetic.check("flush")  # numba and x86-64, or a one-line error
    data = digits()
    with threadpool_limits(1), np.errstate(all="ignore"):  # one BLAS thread, as a worker runs
        train_pack(data, "relu", "sgd", [0.01], [0], 1, "flush")  # numba's kernels loaded
        if args.where:
            where_table(
                data, *args.where.split("/"), 2 if args.quick else 25, 30 if args.quick else 300
            )
            return
        grid_table(data, combos, epochs, repeat)
        rate_table(data, *args.by_rate.split("/"), 2 if args.quick else 10)


if __name__ == "__main__":
    main()
