"""The compiled path against the NumPy path, piece by piece and per packed step (issue 14).

Each piece the compiled path replaces, timed on the shapes of the 1,000-run digits grid
(64-128-10, batches of 32 rows) for a pack of K runs, NumPy's and numba's taking turns in the
same run, in µs per run:

- each update rule's step over the (K, 9,610) parameter matrix;
- each hidden activation's layer step (bias add and activation) and delta step (derivative and
  bias gradient) over the (K, 32, 128) hidden block;
- softmax cross-entropy (loss, probabilities and the output delta) over the (K, rows, 10)
  output block, at a step's 32 rows and at the validation pass's 359 (no delta there);
- and whole packed epochs of ``train_many`` (K runs of one activation and optimizer), per run
  and step, with ``NNLAB_KERNELS`` set each way.

A piece's "×" is NumPy's time over numba's. Both paths give the same bits in float64
(tests/engine/test_engine_kernels.py); this script checks that once more for the pieces.

    pip install -e '.[bench,fast]'
    python benchmarks/kernels.py            # about a minute, on one core
    python benchmarks/kernels.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import os
import time
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

from nnlab.engine import MLP, kernels, train_many
from nnlab.engine.optimizers import make_optimizer

SIZES = [64, 128, 10]
BATCH = 32
PARAMETERS = (SIZES[0] + 1) * SIZES[1] + (SIZES[1] + 1) * SIZES[2]
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")


def best_of(function, number: int, repeat: int = 5) -> float:
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def rule_row(name: str, K: int, number: int) -> tuple[float, float]:
    """µs a run of one ``step()`` of rule ``name``: NumPy, compiled."""
    rng = np.random.default_rng(0)
    grad = rng.standard_normal((K, PARAMETERS))
    times, results = [], []
    for choice in ("numpy", "numba"):
        os.environ[kernels.ENVIRONMENT] = choice
        theta = np.random.default_rng(1).standard_normal((K, PARAMETERS))
        rule = make_optimizer(name, theta, grad, np.full((K, 1), 0.01))
        for _ in range(3):
            rule.step()
        results.append(theta.copy())
        times.append(best_of(rule.step, number) / K)
    if not np.array_equal(*results):
        raise AssertionError(f"{name}: the compiled rule's weights differ from NumPy's")
    return times[0], times[1]


def layer_row(activation: str, K: int, number: int) -> tuple[float, float, float, float]:
    """µs a run of the layer step and of the delta step: NumPy, compiled, for each."""
    rng = np.random.default_rng(0)
    shape = (K, BATCH, SIZES[1])
    Z0, M = rng.standard_normal(shape), rng.standard_normal(shape)
    # b a view into the rows of a (K, P) parameter matrix, as in a pack
    b = rng.standard_normal((K, PARAMETERS))[:, : SIZES[1]]
    dtype = np.dtype("float64")
    times, outputs = [], []
    for choice in ("numpy", "numba"):
        os.environ[kernels.ENVIRONMENT] = choice
        layer = kernels.hidden_layer(activation, dtype, PARAMETERS)
        delta = kernels.hidden_delta(activation, dtype, PARAMETERS)
        Z, gb = Z0.copy(), np.empty(b.shape)
        layer(Z, b)
        A = Z.copy()
        delta(Z, M.copy(), gb)  # NumPy's sigmoid derivative uses M as scratch
        outputs.append((A, Z, gb))
        # each timed call on fresh inputs (a step repeated on its own output would overflow,
        # or sink into subnormals): the time of the copies is measured apart and taken off
        times.append(_step_times(layer, delta, Z0, M, A, b, number, K))
    numpy_out, numba_out = outputs
    if not all(np.array_equal(x, y) for x, y in zip(numpy_out, numba_out, strict=True)):
        raise AssertionError(f"{activation}: the compiled steps differ from NumPy's")
    return times[0][0], times[1][0], times[0][1], times[1][1]


def loss_row(K: int, rows: int, with_delta: bool, number: int) -> tuple[float, float]:
    """µs a run of softmax cross-entropy on (K, rows, classes): NumPy, compiled."""
    rng = np.random.default_rng(0)
    Z0 = rng.standard_normal((K, rows, SIZES[-1])) * 3
    T = rng.integers(0, SIZES[-1], rows)
    times, outputs = [], []
    for choice in ("numpy", "numba"):
        os.environ[kernels.ENVIRONMENT] = choice
        loss = kernels.output_loss("cross_entropy", "softmax", PARAMETERS)
        Z, D = np.empty_like(Z0), np.empty_like(Z0) if with_delta else None
        np.copyto(Z, Z0)
        outputs.append((loss(Z, T, D, 1.0 / rows), Z.copy(), None if D is None else D.copy()))
        times.append(_loss_time(loss, Z, Z0, T, D, number) / K)
    for expected, got in zip(*outputs, strict=True):
        if expected is not None and not np.array_equal(expected, got):
            raise AssertionError("the compiled softmax cross-entropy differs from NumPy's")
    return times[0], times[1]


def _loss_time(loss, Z, Z0, T, D, number: int) -> float:
    """Seconds of one call of ``loss`` on fresh logits, the copy that restores them taken off."""
    total = best_of(lambda: (np.copyto(Z, Z0), loss(Z, T, D, 1.0 / len(T))), number)
    return total - best_of(lambda: np.copyto(Z, Z0), number)


def _step_times(layer, delta, Z0, M, A, b, number: int, K: int) -> tuple[float, float]:
    """µs a run of ``layer`` and of ``delta``, each timed call on fresh inputs (a step
    repeated on its own output would overflow, or sink into subnormals): the copies that
    restore them are timed apart and taken off."""
    work, scratch = np.empty_like(Z0), np.empty_like(M)
    sums = np.empty((K, PARAMETERS))[:, : b.shape[1]]  # a view, as a pack's bias gradient is

    def restore(source):
        np.copyto(work, source)
        np.copyto(scratch, M)

    forward = best_of(lambda: (restore(Z0), layer(work, b)), number)
    backward = best_of(lambda: (restore(A), delta(work, scratch, sums)), number)
    copies = best_of(lambda: restore(A), number)
    return (forward - copies) / K, (backward - copies) / K


def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-12)
    n = int(0.8 * len(X))
    return X[:n], y[:n], X[n:], y[n:]


def epoch_row(data, optimizer: str, activation: str, K: int, epochs: int) -> tuple[float, float]:
    """µs a run and step of ``epochs`` packed epochs (validation included): NumPy, compiled."""
    X, y, X_val, y_val = data
    steps = -(-len(X) // BATCH) * epochs
    times = []
    for choice in ("numpy", "numba"):
        os.environ[kernels.ENVIRONMENT] = choice
        runs = [
            (
                MLP(SIZES, activation=activation, seed=k % 2),
                {
                    "learning_rate": 0.001 * (k + 1),
                    "optimizer": optimizer,
                    "gd": "minibatch",
                    "batch_size": BATCH,
                    "epochs": epochs,
                    "seed": k % 2,
                },
            )
            for k in range(K)
        ]
        start = time.perf_counter()
        train_many(runs, X, y, val=(X_val, y_val))
        times.append((time.perf_counter() - start) / K / steps)
    return times[0], times[1]


def warm_up() -> None:
    """Numba loads (or, the first time, compiles) each kernel at its first call."""
    for K in (1, 2):
        for name in OPTIMIZERS:
            rule_row(name, K, 1)
        for activation in ACTIVATIONS:
            layer_row(activation, K, 1)
        loss_row(K, BATCH, True, 1)
        loss_row(K, BATCH, False, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run")
    parser.add_argument("--runs", type=int, default=10, help="K, the runs in a pack")
    args = parser.parse_args()
    number, epochs = (50, 1) if args.quick else (500, 4)
    K = args.runs
    with threadpool_limits(1):  # one BLAS thread, as a sweep's worker runs
        report(K, number, epochs)


def report(K: int, number: int, epochs: int) -> None:
    warm_up()
    print(f"digits {'-'.join(map(str, SIZES))}, {PARAMETERS:,} parameters, packs of K = {K}")
    print("\n| update rule | NumPy µs/run | compiled µs/run | × |\n|---|---:|---:|---:|")
    for name in OPTIMIZERS:
        numpy_time, numba_time = rule_row(name, K, number)
        print(
            f"| {name} | {numpy_time * 1e6:.2f} | {numba_time * 1e6:.2f} | "
            f"{numpy_time / numba_time:.2f} |"
        )
    print(
        f"\n| hidden activation ({BATCH}×{SIZES[1]} a run) | layer: NumPy | compiled | × "
        "| delta: NumPy | compiled | × |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for activation in ACTIVATIONS:
        f_np, f_nb, b_np, b_nb = layer_row(activation, K, number)
        print(
            f"| {activation} | {f_np * 1e6:.2f} | {f_nb * 1e6:.2f} | {f_np / f_nb:.2f} "
            f"| {b_np * 1e6:.2f} | {b_nb * 1e6:.2f} | {b_np / b_nb:.2f} |"
        )
    print(
        f"\n| softmax cross-entropy ({SIZES[-1]} classes) | NumPy µs/run | compiled µs/run | × |"
        "\n|---|---:|---:|---:|"
    )
    for rows, with_delta, what in ((BATCH, True, "a step"), (359, False, "validation")):
        numpy_time, numba_time = loss_row(K, rows, with_delta, number)
        print(
            f"| {what}: {rows} rows{', with delta' if with_delta else ''} | "
            f"{numpy_time * 1e6:.2f} | {numba_time * 1e6:.2f} | {numpy_time / numba_time:.2f} |"
        )
    data = digits()
    print(
        f"\n| packed epochs ({epochs}, validation included) | NumPy µs/run/step "
        "| compiled µs/run/step | × |\n|---|---:|---:|---:|"
    )
    for optimizer, activation in (
        ("sgd", "relu"),
        ("sgd", "tanh"),
        ("adam", "relu"),
        ("momentum", "sigmoid"),
    ):
        numpy_time, numba_time = epoch_row(data, optimizer, activation, K, epochs)
        print(
            f"| {optimizer}, {activation} | {numpy_time * 1e6:.1f} | {numba_time * 1e6:.1f} "
            f"| {numpy_time / numba_time:.2f} |"
        )


if __name__ == "__main__":
    main()
