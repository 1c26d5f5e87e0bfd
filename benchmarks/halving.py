"""Successive halving against the full grid and against Optuna's SuccessiveHalvingPruner.

The 1,000-run digits grid (issue 13): scikit-learn's digits (standardised, 80/20 split), MLP
64-128-10, mini-batch 32, 50 epochs, learning_rate 10 values × activation 5 × optimizer 4 ×
5 seeds. In one run, at 2 jobs:

- the full grid (``nnlab sweep``, no scheduler): the anchor;
- ``scheduler: {type: sha, min_epochs: 1, eta: 3}`` and the same with ``asha`` (ASHA also at
  ``-j 1``, for its speed-up from one worker to two); then ``sha`` with ``min_epochs: 2``, whose
  rungs (2, 6, 18, 50) make the last cut later, at more epochs;
- Optuna: ``GridSampler`` over the same grid with the seed as an axis, SQLite storage,
  ``SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)``, ``n_jobs=2`` threads (BLAS
  held to one thread each), the validation loss reported every epoch; the objective trains with
  nnlab's engine on the same data, so that only the scheduling differs.

For each: epochs trained (read back from the store), wall-clock, both as ratios to the full
grid; the best configuration it found and where that configuration ranks in the full grid's
ranking (mean final validation loss over seeds), with its loss there against the full grid's
best. nnlab's best is the top of ``lab.configurations`` of the scheduled sweep; Optuna's is the
configuration of ``study.best_trial``.

    pip install -e '.[bench]'
    python benchmarks/halving.py            # about 5 minutes on 2 idle cores
    python benchmarks/halving.py --quick    # a smoke run: an 80-run grid of 9 epochs
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import nnlab

JOBS = 2
FULL = {
    "learning_rate": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
    "activation": ["sigmoid", "tanh", "relu", "leaky_relu", "identity"],
    "optimizer": ["sgd", "momentum", "nesterov", "adam"],
}
QUICK = {
    "learning_rate": [0.01, 0.1, 1.0, 10.0],
    "activation": ["tanh", "relu"],
    "optimizer": ["sgd", "adam"],
}
AXES = ("learning_rate", "activation", "optimizer")


@dataclass
class Grid:
    axes: dict
    seeds: int
    epochs: int

    @property
    def runs(self) -> int:
        return int(np.prod([len(v) for v in self.axes.values()])) * self.seeds


@dataclass
class Row:
    label: str
    seconds: float
    epochs: int
    best: tuple | None = (
        None  # the configuration it found best: (learning_rate, activation, optimizer)
    )
    notes: list[str] = field(default_factory=list)


def _plain(values) -> tuple:
    """A configuration as plain Python values (NumPy scalars print as np.float64(...))."""
    return tuple(v.item() if isinstance(v, np.generic) else v for v in values)


def digits_npz(folder: Path) -> Path:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    path = folder / "digits.npz"
    np.savez(path, X=X.astype(np.float64), y=y.astype(np.int64))
    return path


def spec(
    npz: Path, grid: Grid, name: str, scheduler: str | None = None, min_epochs: int = 1
) -> str:
    axes = "\n".join(f"  {axis}: {json.dumps(values)}" for axis, values in grid.axes.items())
    text = (
        textwrap.dedent(f"""\
        name: {name}
        data: {{name: {npz}, val_fraction: 0.2, standardize: true}}
        model: {{hidden: [128], loss: cross_entropy}}
        train: {{epochs: {grid.epochs}, gd: minibatch, batch_size: 32}}
        grid:
        """)
        + axes
        + f"\nseeds: {grid.seeds}\n"
    )
    if scheduler is not None:
        text += (
            f"scheduler: {{type: {scheduler}, metric: val_loss, min_epochs: {min_epochs}, "
            "eta: 3}\n"
        )
    return text


def nnlab_row(
    db: str,
    npz: Path,
    grid: Grid,
    name: str,
    scheduler: str | None,
    jobs: int,
    min_epochs: int = 1,
) -> Row:
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True, kill_workers=True)  # each pays for its workers
    start = time.perf_counter()
    text = spec(npz, grid, name, scheduler, min_epochs)
    result = nnlab.sweep(text, db, jobs=jobs, progress=False, report=False)
    seconds = time.perf_counter() - start
    lab = nnlab.connect(db)
    best = lab.configurations(name).iloc[0]
    label = f"nnlab sweep -j{jobs}, " + (f"{scheduler} eta 3" if scheduler else "full grid")
    if scheduler and min_epochs != 1:
        label += f", min_epochs {min_epochs}"
    notes = [] if result.unfinished == 0 else [f"{result.unfinished} runs unfinished"]
    return Row(label, seconds, lab.budget(name).spent, _plain(best[a] for a in AXES), notes)


def optuna_row(folder: Path, npz: Path, grid: Grid) -> Row:
    import optuna
    from threadpoolctl import threadpool_limits

    from nnlab.engine import MLP, train
    from nnlab.sweeps.config import prepare_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train_data, val_data, _ = prepare_data(
        {"name": str(npz), "val_fraction": 0.2, "standardize": True}
    )
    space = {**grid.axes, "seed": list(range(grid.seeds))}

    def objective(trial: optuna.Trial) -> float:
        point = {axis: trial.suggest_categorical(axis, values) for axis, values in space.items()}
        net = MLP([64, 128, 10], activation=point["activation"], seed=point["seed"])

        def report(record) -> None:
            trial.report(record.val_loss, record.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned

        result = train(
            net,
            train_data.X,
            train_data.y,
            val=(val_data.X, val_data.y),
            loss="cross_entropy",
            gd="minibatch",
            batch_size=32,
            epochs=grid.epochs,
            learning_rate=point["learning_rate"],
            optimizer=point["optimizer"],
            seed=point["seed"],
            on_epoch=report,
        )
        if result.status == "diverged":  # as nnlab ranks it: the worst
            return float("inf")
        return result.final.val_loss

    url = f"sqlite:///{folder / 'optuna.db'}"
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    sampler = optuna.samplers.GridSampler(space, seed=0)
    start = time.perf_counter()
    study = optuna.create_study(study_name="grid", storage=url, sampler=sampler, pruner=pruner)
    with threadpool_limits(1):
        study.optimize(objective, n_trials=grid.runs, n_jobs=JOBS, catch=(Exception,))
    seconds = time.perf_counter() - start
    trials = optuna.load_study(study_name="grid", storage=url).trials
    epochs = sum(len(t.intermediate_values) for t in trials)
    best = tuple(study.best_trial.params[a] for a in AXES)
    states = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    notes = [", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))]
    label = f"Optuna GridSampler + SuccessiveHalvingPruner(1, 3), SQLite, n_jobs={JOBS}"
    return Row(label, seconds, epochs, best, notes)


def full_ranking(db: str, name: str) -> tuple[list[tuple], dict[tuple, float]]:
    ranked = nnlab.connect(db).configurations(name)
    keys = [_plain(row[a] for a in AXES) for _, row in ranked.iterrows()]
    losses = dict(zip(keys, ranked.final_val_loss_mean, strict=True))
    return keys, losses


def print_table(rows: list[Row], anchor: Row, ranking: list[tuple], losses: dict) -> None:
    best_loss = losses[ranking[0]]
    header = (
        f"{'pipeline':<66} {'epochs':>7} {'÷full':>6} {'seconds':>8} {'×full':>6} "
        f"{'rank':>5} {'loss vs best':>12}  best configuration"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        rank = ranking.index(row.best) + 1 if row.best in ranking else None
        gap = losses.get(row.best, float("nan")) / best_loss - 1
        print(
            f"{row.label:<66} {row.epochs:>7,} {anchor.epochs / row.epochs:>6.1f} "
            f"{row.seconds:>8.1f} {row.seconds / anchor.seconds:>6.3f} "
            f"{rank if rank else '–':>5} {gap:>+12.2%}  {row.best}"
            + (f"  [{'; '.join(row.notes)}]" if row.notes else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="an 80-run grid of 9 epochs")
    parser.add_argument("--no-optuna", action="store_true", help="skip Optuna's row")
    args = parser.parse_args()
    grid = Grid(QUICK, 5, 9) if args.quick else Grid(FULL, 5, 50)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        npz = digits_npz(folder)
        db = f"sqlite:///{folder / 'nnlab.db'}"
        print(
            f"digits 64-128-10, mini-batch 32, {grid.epochs} epochs, {grid.runs:,} runs "
            f"({' × '.join(str(len(v)) for v in grid.axes.values())} × {grid.seeds} seeds)\n"
        )
        full = nnlab_row(db, npz, grid, "full", None, JOBS)
        rows = [full, nnlab_row(db, npz, grid, "sha", "sha", JOBS)]
        # ASHA at -j2 and -j1, interleaved, twice: the speed-up is the ratio of the medians
        ashas = {JOBS: [], 1: []}
        for repeat in range(2):
            for jobs in (JOBS, 1):
                ashas[jobs].append(nnlab_row(db, npz, grid, f"asha-{jobs}-{repeat}", "asha", jobs))
        asha, asha_one = (min(ashas[j], key=lambda row: row.seconds) for j in (JOBS, 1))
        speed_up = statistics.median(r.seconds for r in ashas[1]) / statistics.median(
            r.seconds for r in ashas[JOBS]
        )
        rows += [asha, asha_one]
        # the trade-off: a first rung of 2 epochs, so the last cut is made at 18 of 50
        rows.append(nnlab_row(db, npz, grid, "sha-2", "sha", JOBS, min_epochs=2))
        if not args.no_optuna:
            try:
                rows.append(optuna_row(folder, npz, grid))
            except ImportError:
                print("(Optuna not installed: its row is skipped; pip install -e '.[bench]')")
        ranking, losses = full_ranking(db, "full")
        print_table(rows, full, ranking, losses)
        print(
            f"\nASHA speed-up from -j1 to -j{JOBS}: {speed_up:.2f}× (median of 2 interleaved "
            f"runs each: {', '.join(f'{r.seconds:.1f}' for r in ashas[1])} s at -j1, "
            f"{', '.join(f'{r.seconds:.1f}' for r in ashas[JOBS])} s at -j{JOBS}; target ≥ 1.8×)"
        )
        print("ASHA rows: the faster of the two runs at each -j")
        print("rank: where the pipeline's best configuration ranks in the full grid (1 = best);")
        print("loss vs best: its mean final val_loss in the full grid against the full grid's best")


if __name__ == "__main__":
    main()
