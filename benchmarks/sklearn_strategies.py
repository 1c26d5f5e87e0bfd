"""scikit-learn's study "Compare stochastic learning strategies for MLPClassifier", through nnlab.

The gallery example (examples/neural_networks/plot_mlp_training_curves.py) trains seven strategies
(plain SGD, momentum and Nesterov's momentum, each with a constant or an inverse-scaling learning
rate of 0.2, and Adam at 0.01) on four data sets (iris, digits, circles, moons, min-max scaled;
15 epochs at most on digits, 400 on the others). Here every (data set, strategy) cell runs with
seeds 0-9, through scikit-learn's ``MLPClassifier`` and through nnlab's engine with the same
settings, in one process and interleaved. For each cell the table gives the final training loss
and the epochs run, median [min-max] over the seeds, and whether nnlab's median falls inside
scikit-learn's seed range widened by 10% of its width on each side; then each library's
wall-clock over the whole study.

``--oracle`` checks the arithmetic instead: nnlab starts from scikit-learn's initial weights and
draws scikit-learn's batch order, and the two loss curves are compared epoch by epoch.

    pip install scikit-learn threadpoolctl      # from the bench extra (not all of it: torch)
    python benchmarks/sklearn_strategies.py               # the study, about a minute
    python benchmarks/sklearn_strategies.py --oracle      # the oracle check, seed 0: ~5 s
    python benchmarks/sklearn_strategies.py --datasets iris --seeds 2   # a quick subset
    python benchmarks/sklearn_strategies.py --write-data sweeps/data/sklearn   # the sweep's CSVs
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import MinMaxScaler
from threadpoolctl import threadpool_limits

from nnlab.engine import MLP, train
from nnlab.engine import optimizers as nnlab_optimizers
from nnlab.engine import training as nnlab_training

HIDDEN = 100
ALPHA = 1e-4
TOL = 1e-4
N_ITER_NO_CHANGE = 10
# scikit-learn stops once more than n_iter_no_change epochs in a row failed to improve by tol
TOL_PATIENCE = N_ITER_NO_CHANGE + 1
POWER_T = 0.5
MOMENTUM = 0.9
WIDEN = 0.1
ORACLE_RTOL = 1e-12


@dataclass(frozen=True)
class Strategy:
    """One of the example's ``params``, in both libraries' words."""

    label: str
    sklearn: dict
    optimizer: str
    schedule: str
    learning_rate: float


def _sgd(schedule: str, momentum: float, nesterov: bool) -> dict:
    return {
        "solver": "sgd",
        "learning_rate": schedule,
        "momentum": momentum,
        "nesterovs_momentum": nesterov,
        "learning_rate_init": 0.2,
    }


# The example's order. Its labels for the two inverse-scaling momentum runs are swapped (the one
# labelled "with momentum" sets nesterovs_momentum=True): these labels follow the settings.
STRATEGIES = [
    Strategy("constant", _sgd("constant", 0, False), "sgd", "constant", 0.2),
    Strategy("constant, momentum", _sgd("constant", MOMENTUM, False), "momentum", "constant", 0.2),
    Strategy("constant, Nesterov", _sgd("constant", MOMENTUM, True), "nesterov", "constant", 0.2),
    Strategy("invscaling", _sgd("invscaling", 0, False), "sgd", "invscaling", 0.2),
    Strategy(
        "invscaling, Nesterov", _sgd("invscaling", MOMENTUM, True), "nesterov", "invscaling", 0.2
    ),
    Strategy(
        "invscaling, momentum", _sgd("invscaling", MOMENTUM, False), "momentum", "invscaling", 0.2
    ),
    Strategy("adam", {"solver": "adam", "learning_rate_init": 0.01}, "adam", "constant", 0.01),
]


def load_datasets() -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """The example's four data sets, min-max scaled as it does: name -> (X, y, max_iter)."""
    iris = datasets.load_iris()
    digits = datasets.load_digits()
    raw = {
        "iris": (iris.data, iris.target),
        "digits": (digits.data, digits.target),
        "circles": datasets.make_circles(noise=0.2, factor=0.5, random_state=1),
        "moons": datasets.make_moons(noise=0.3, random_state=0),
    }
    # "digits is larger but converges fairly quickly"
    max_iter = {"digits": 15}
    return {
        name: (MinMaxScaler().fit_transform(X), y.astype(np.int64), max_iter.get(name, 400))
        for name, (X, y) in raw.items()
    }


def fit_sklearn(X, y, strategy: Strategy, seed: int, max_iter: int) -> MLPClassifier:
    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        activation="relu",
        alpha=ALPHA,
        batch_size="auto",
        power_t=POWER_T,
        tol=TOL,
        n_iter_no_change=N_ITER_NO_CHANGE,
        random_state=seed,
        max_iter=max_iter,
        **strategy.sklearn,
    )
    return clf.fit(X, y)


def nnlab_network(X, y, seed: int) -> MLP:
    """scikit-learn's shape: one sigmoid output for two classes, else a softmax over them."""
    classes = int(y.max()) + 1
    outputs = 1 if classes == 2 else classes
    return MLP([X.shape[1], HIDDEN, outputs], activation="relu", init="sklearn", seed=seed)


def fit_nnlab(net: MLP, X, y, strategy: Strategy, seed: int, max_iter: int):
    return train(
        net,
        X,
        y,
        gd="minibatch",
        batch_size="auto",
        learning_rate=strategy.learning_rate,
        learning_rate_schedule=strategy.schedule,
        power_t=POWER_T,
        alpha=ALPHA,
        optimizer=strategy.optimizer,
        momentum=MOMENTUM,
        epochs=max_iter,
        seed=seed,
        val=None,
        tol=TOL,
        tol_patience=TOL_PATIENCE,
        # scikit-learn has no divergence stop (it trains on and raises only if weights end up
        # non-finite): only a non-finite loss stops nnlab, so loss spikes play out as there
        divergence_factor=None,
    )


def write_data(data, folder: Path) -> None:
    """Each data set as ``folder/<name>.csv``: the scaled features, then the class in ``label``
    (iris's species by name), every float written to round-trip exactly."""
    folder.mkdir(parents=True, exist_ok=True)
    iris = datasets.load_iris()
    names = {
        "iris": [n.removesuffix(" (cm)").replace(" ", "_") for n in iris.feature_names],
        "digits": [f"pixel_{i}" for i in range(64)],
    }
    for name, (X, y, _) in data.items():
        columns = names.get(name, [f"x{i + 1}" for i in range(X.shape[1])])
        labels = iris.target_names[y] if name == "iris" else y
        lines = [",".join([*columns, "label"])]
        for row, label in zip(X.tolist(), labels, strict=True):
            lines.append(",".join([*map(repr, row), str(label)]))
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
        print(f"wrote {folder / name}.csv: {X.shape[0]} rows, {X.shape[1]} features")


# --- the study --------------------------------------------------------------------------------


@dataclass
class Cell:
    """A (data set, strategy) cell: final training loss and epochs run, by side, one per seed.
    The sides are ``sklearn``, ``nnlab``, and with ``--self-check`` ``sklearn'``: scikit-learn
    again on as many other seeds, to see how often the criterion fails a library against itself.
    """

    data: str
    strategy: Strategy
    loss: dict[str, list[float]] = field(default_factory=dict)
    epochs: dict[str, list[int]] = field(default_factory=dict)

    def add(self, side: str, loss: float, epochs: int) -> None:
        self.loss.setdefault(side, []).append(float(loss))
        self.epochs.setdefault(side, []).append(int(epochs))

    def verdicts(self, side: str) -> tuple[bool, bool]:
        """Whether ``side``'s median loss and median epochs are inside scikit-learn's range."""
        return (
            inside(self.loss[side], self.loss["sklearn"]),
            inside(self.epochs[side], self.epochs["sklearn"]),
        )


def run_study(data, seeds: list[int], self_check: bool) -> tuple[list[Cell], dict[str, float]]:
    seconds = {"sklearn": 0.0, "nnlab": 0.0}
    cells = []
    for name, (X, y, max_iter) in data.items():
        for strategy in STRATEGIES:
            cell = Cell(name, strategy)
            for seed in seeds:
                # alternate which library goes first, so neither always runs on a warmer cache
                order = ("sklearn", "nnlab") if seed % 2 == 0 else ("nnlab", "sklearn")
                for library in order:
                    start = time.perf_counter()
                    if library == "sklearn":
                        clf = fit_sklearn(X, y, strategy, seed, max_iter)
                    else:
                        net = nnlab_network(X, y, seed)
                        result = fit_nnlab(net, X, y, strategy, seed, max_iter)
                    seconds[library] += time.perf_counter() - start
                cell.add("sklearn", clf.loss_, clf.n_iter_)
                cell.add("nnlab", result.final.train_loss, result.epochs_run)
                if self_check:  # untimed
                    other = fit_sklearn(X, y, strategy, seed + len(seeds), max_iter)
                    cell.add("sklearn'", other.loss_, other.n_iter_)
            cells.append(cell)
    return cells, seconds


def widened(values) -> tuple[float, float]:
    """The seed range [min, max] widened by WIDEN of its width on each side."""
    low, high = min(values), max(values)
    margin = WIDEN * (high - low)
    return low - margin, high + margin


def inside(values, reference) -> bool:
    """Whether the median of ``values`` is inside the widened range of ``reference``."""
    low, high = widened(reference)
    return low <= statistics.median(values) <= high


def _spread(values, fmt: str) -> str:
    median = statistics.median(values)
    return f"{median:{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def _yes(verdict: bool) -> str:
    return "yes" if verdict else "NO"


def print_table(cells: list[Cell]) -> None:
    self_check = "sklearn'" in cells[0].loss
    columns = [
        ("data", 7),
        ("strategy", 20),
        ("sklearn loss", 25),
        ("nnlab loss", 25),
        ("in", 3),
        ("sklearn epochs", 15),
        ("nnlab epochs", 15),
        ("in", 3),
    ]
    if self_check:
        columns.append(("sklearn' in", 11))
    print("| " + " | ".join(f"{name:<{width}}" for name, width in columns) + " |")
    print("|" + "|".join("-" * (width + 2) for _, width in columns) + "|")
    for c in cells:
        loss_in, epochs_in = c.verdicts("nnlab")
        values = [
            c.data,
            c.strategy.label,
            _spread(c.loss["sklearn"], ".4f"),
            _spread(c.loss["nnlab"], ".4f"),
            _yes(loss_in),
            _spread(c.epochs["sklearn"], ".0f"),
            _spread(c.epochs["nnlab"], ".0f"),
            _yes(epochs_in),
        ]
        if self_check:
            values.append(" / ".join(map(_yes, c.verdicts("sklearn'"))))
        cells_text = (f"{v:<{w}}" for v, (_, w) in zip(values, columns, strict=True))
        print("| " + " | ".join(cells_text) + " |")


def print_summary(cells: list[Cell], seconds: dict[str, float], n_seeds: int) -> None:
    print()
    for side in [s for s in ("nnlab", "sklearn'") if s in cells[0].loss]:
        verdicts = [c.verdicts(side) for c in cells]
        both = sum(a and b for a, b in verdicts)
        losses, epochs = sum(a for a, _ in verdicts), sum(b for _, b in verdicts)
        print(
            f"{side} inside scikit-learn's widened seed range: {both} of {len(cells)} cells "
            f"(loss {losses}, epochs {epochs})"
        )
    runs = len(cells) * n_seeds
    print()
    print("| library      | runs | seconds | × nnlab |")
    print("|--------------|------|---------|---------|")
    for library in ("sklearn", "nnlab"):
        ratio = seconds[library] / seconds["nnlab"]
        print(f"| {library:<12} | {runs:>4} | {seconds[library]:>7.2f} | {ratio:>7.2f} |")


# --- the oracle ---------------------------------------------------------------------------------


def sklearn_initial_weights(X, y, seed: int) -> tuple[list, list]:
    """scikit-learn's initial ``coefs_`` and ``intercepts_`` for ``random_state=seed``, from its
    public API: one epoch of plain SGD at a learning rate of 1e-300 moves no weight by even one
    ulp (the gradients are far below 1e280), so the fitted weights are the initial ones."""
    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        solver="sgd",
        momentum=0,
        learning_rate_init=1e-300,
        max_iter=1,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return clf.coefs_, clf.intercepts_


def sklearn_batch_order(coefs, intercepts, seed: int) -> np.random.RandomState:
    """A generator in the state scikit-learn's is in once it has drawn the initial weights.

    ``MLPClassifier`` draws each layer's weights, then its biases, from ``RandomState(seed)`` as
    uniforms (one double each), then shuffles its sample index with the same generator every
    epoch (``sklearn.utils.shuffle``: the permutation ``RandomState.shuffle`` makes of an
    ``arange``, applied to the previous epoch's order). nnlab shuffles its order in place with
    ``rng.shuffle``, which composes in the same way: handing it this generator gives it
    scikit-learn's batches. The draws are checked against scikit-learn's weights on the way.
    """
    rng = np.random.RandomState(seed)
    for W, b in zip(coefs, intercepts, strict=True):
        bound = np.sqrt(6.0 / sum(W.shape))
        assert np.array_equal(rng.uniform(-bound, bound, W.shape), W)
        assert np.array_equal(rng.uniform(-bound, bound, b.shape), b)
    return rng


class SklearnEpsilonAdam(nnlab_optimizers.Adam):
    """nnlab's Adam with ε where scikit-learn puts it: on the uncorrected root √s,
    θ ← θ − η √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m / (√s + ε), rather than on √ŝ."""

    def step(self) -> None:
        self.t += 1
        g = self.grad
        self.first *= self.beta1
        self.first += (1.0 - self.beta1) * g
        self.second *= self.beta2
        self.second += (1.0 - self.beta2) * g * g
        rate = self.learning_rate * np.sqrt(1.0 - self.beta2**self.t) / (1.0 - self.beta1**self.t)
        self.params -= rate * self.first / (np.sqrt(self.second) + self.epsilon)


def fit_nnlab_like_sklearn(X, y, strategy: Strategy, seed: int, max_iter: int, adam=None):
    """nnlab's loop from scikit-learn's initial weights, drawing scikit-learn's batch order;
    ``adam`` replaces nnlab's Adam class when given."""
    coefs, intercepts = sklearn_initial_weights(X, y, seed)
    rng = sklearn_batch_order(coefs, intercepts, seed)
    net = nnlab_network(X, y, seed)
    for index, (W, b) in enumerate(zip(coefs, intercepts, strict=True)):
        net.params[2 * index][...] = W
        net.params[2 * index + 1][...] = b

    class SharedOrder(nnlab_training._Trainer):
        # the one change the oracle makes to nnlab's loop: where its shuffles come from
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.rng = rng

    rules = {"adam": adam} if adam is not None else {}
    with (
        mock.patch.object(nnlab_training, "_Trainer", SharedOrder),
        mock.patch.dict(nnlab_optimizers.OPTIMIZERS, rules),
    ):
        return fit_nnlab(net, X, y, strategy, seed, max_iter)


def compare_curves(X, y, strategy: Strategy, seeds, max_iter: int, adam=None):
    """Over the seeds: (largest relative difference of the loss curves, largest at epoch 1,
    runs that stopped at the same epoch, epochs scikit-learn ran)."""
    worst = first = 0.0
    same, epochs = 0, []
    for seed in seeds:
        curve = np.array(fit_sklearn(X, y, strategy, seed, max_iter).loss_curve_)
        result = fit_nnlab_like_sklearn(X, y, strategy, seed, max_iter, adam)
        ours = np.array([record.train_loss for record in result.history])
        n = min(len(ours), len(curve))
        difference = np.abs(ours[:n] - curve[:n]) / np.abs(curve[:n])
        worst, first = max(worst, float(difference.max())), max(first, float(difference[0]))
        same += len(ours) == len(curve)
        epochs.append(len(curve))
    return worst, first, same, epochs


def run_oracle(data, seeds: list[int]) -> None:
    """The loss curves of both libraries from the same start and batches; SGD, momentum and
    Nesterov must agree to ORACLE_RTOL at every epoch and stop at the same epoch. Adam is shown
    twice: as nnlab computes it, and with ε moved to scikit-learn's place."""
    print(
        "| data    | strategy                | epochs  | same stop | max rel. difference "
        "| at epoch 1 | verdict |"
    )
    print(
        "|---------|-------------------------|---------|-----------|---------------------"
        "|------------|---------|"
    )
    for name, (X, y, max_iter) in data.items():
        rows = [(s.label, s, None) for s in STRATEGIES]
        rows.append(("adam, ε on √s (sklearn)", STRATEGIES[-1], SklearnEpsilonAdam))
        for label, strategy, adam in rows:
            worst, first, same, epochs = compare_curves(X, y, strategy, seeds, max_iter, adam)
            checked = strategy.optimizer != "adam" or adam is not None
            passed = worst <= ORACLE_RTOL and same == len(seeds)
            verdict = ("pass" if passed else "FAIL") if checked else "—"
            print(
                f"| {name:<7} | {label:<23} | {min(epochs):>3}–{max(epochs):<3} "
                f"| {same:>2} of {len(seeds):<3} | {worst:>19.1e} | {first:>10.1e} | {verdict:<7} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle", action="store_true", help="the oracle check, not the study")
    parser.add_argument(
        "--seeds", type=int, help="seeds 0..N-1 (default 10 for the study, 1 for --oracle)"
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["iris", "digits", "circles", "moons"],
        help="a subset of the four data sets",
    )
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="also run scikit-learn on seeds N..2N-1 (untimed) and judge it by the same rule",
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--write-data", type=Path, metavar="FOLDER", help="write the CSVs, only")
    args = parser.parse_args()
    data = {name: d for name, d in load_datasets().items() if name in args.datasets}
    if args.write_data is not None:
        write_data(data, args.write_data)
        return
    seeds = list(range(args.seeds or (1 if args.oracle else 10)))
    # as the example does: some strategies reach max_iter before the loss settles
    warnings.filterwarnings("ignore", category=ConvergenceWarning, module="sklearn")
    with threadpool_limits(args.threads):
        if args.oracle:
            run_oracle(data, seeds)
            return
        # one untimed run of each library first: imports, BLAS start-up, first-call caches
        X, y, _ = next(iter(data.values()))
        fit_sklearn(X, y, STRATEGIES[0], 0, 5)
        fit_nnlab(nnlab_network(X, y, 0), X, y, STRATEGIES[0], 0, 5)
        cells, seconds = run_study(data, seeds, args.self_check)
    print_table(cells)
    print_summary(cells, seconds, len(seeds))
    if args.json is not None:
        runs = [
            {"data": c.data, "strategy": c.strategy.label, "loss": c.loss, "epochs": c.epochs}
            for c in cells
        ]
        args.json.write_text(json.dumps({"seconds": seconds, "cells": runs}, indent=1))


if __name__ == "__main__":
    main()
