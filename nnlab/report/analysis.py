"""What a report says about a sweep, computed from the store's read API (``Lab``) alone.

A ``SweepView`` holds one sweep's runs with their grid settings and results, and every run's
loss and accuracy curves as (runs × epochs) arrays; the figures and the page are drawn from it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nnlab.checks import check_choice, check_number
from nnlab.store import Lab, SweepDetails
from nnlab.store.models import CLEAN_STATUSES, PAUSED, PRUNED
from nnlab.store.query import ACCURACY, METRICS, Budget

# A diverged run's loss once it has stopped: finite, so that quantiles over runs stay defined
# (one diverged seed of two puts the median off the chart instead of dropping out of it).
DIVERGED = 1e300
# Every curve a report reads: the losses, and the accuracies classification sweeps record.
SERIES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
RATE = "learning_rate"  # the series of each epoch's η (epochs.learning_rate)
PAIRS = 6  # heatmaps of at most this many pairs of grid settings


@dataclass(frozen=True)
class Curves:
    """Every run's loss after each epoch: ``loss[i, e]`` is run ``i`` after epoch ``e + 1``,
    ``logged[i, e]`` whether that epoch was logged at all, and ``elapsed[i, e]`` the seconds of
    training the run had done by then (the sum of its epochs' wall-clock times)."""

    loss: np.ndarray  # shape (n_runs, n_epochs); NaN where not logged or NaN
    logged: np.ndarray  # bool, same shape
    elapsed: np.ndarray  # same shape; NaN where not logged

    @property
    def epochs(self) -> np.ndarray:
        """1, 2, …, the longest run's last epoch."""
        return np.arange(1, self.loss.shape[1] + 1)

    def settled(
        self, diverged: np.ndarray, ended: np.ndarray, until: np.ndarray | None = None
    ) -> np.ndarray:
        """The loss to aggregate over runs, as long as the longest run. A ``diverged`` run
        counts as ``DIVERGED`` from a non-finite loss on and after its last epoch (it would
        never have come back); a run that ``ended`` cleanly before the longest keeps its last
        loss (it had converged, or stopped early); any other run (still going, paused at a
        rung, or pruned there by a scheduler) is unknown (NaN) past its last epoch, and a
        metric never logged stays NaN. With ``until`` (an epoch per run), a diverged or ended
        run is carried no further than its epoch ``until``: under a scheduler, the last rung
        its configuration reached, past which none of its seeds trained."""
        loss = self.loss.copy()
        after = np.cumsum(self.logged[:, ::-1], axis=1)[:, ::-1] == 0  # past the last epoch
        if until is not None:
            after &= self.epochs[None, :] <= np.asarray(until)[:, None]
        diverged = diverged[:, None]
        loss[diverged & self.logged & ~np.isfinite(loss)] = DIVERGED
        loss[diverged & after] = DIVERGED
        last = np.maximum(self.logged.sum(axis=1) - 1, 0)
        final = loss[np.arange(len(loss)), last] if loss.size else np.zeros(len(loss))
        carried = ended[:, None] & after
        loss[carried] = np.broadcast_to(final[:, None], loss.shape)[carried]
        return loss


@dataclass
class SweepView:
    """One sweep as the report shows it.

    ``runs`` has one row per run, in the order of ``curves``: ``run_id``, ``seed``, ``status``,
    ``configuration`` and every setting (see ``Lab.settings``), ``final`` and ``best`` (the
    metric at the last epoch, and its lowest), ``epochs_run``, and, once a threshold is set,
    ``reached_epoch`` and ``reached_seconds``. ``series`` holds the (runs × epochs) curve of
    each of ``SERIES``, NaN where not logged. ``configurations`` is ``Lab.configurations``
    with its scores named ``final_mean``, ``best_mean``, ``accuracy_mean`` (and ``_std``), a
    ``pruned`` count of seeds and, once a threshold is set, ``THRESHOLD_COLUMNS``.

    A sweep with a scheduler also has its ``scheduler`` (``Lab.scheduler``), its ``rungs``
    (``Lab.rungs``) and its ``budget`` (``Lab.budget``); without one they are None.
    """

    details: SweepDetails
    metric: str
    axes: list[str]  # the settings that differ between runs: the sweep's grid
    runs: pd.DataFrame
    curves: Curves
    failures: pd.DataFrame
    series: dict[str, np.ndarray]
    configurations: pd.DataFrame
    threshold: float | None = None
    scheduler: dict | None = None
    rungs: pd.DataFrame | None = None
    budget: Budget | None = None

    @property
    def name(self) -> str:
        return self.details.name

    @property
    def accuracy(self) -> str:
        """The accuracy measured on the same data as ``metric``."""
        return ACCURACY[self.metric]

    @property
    def has_accuracy(self) -> bool:
        """Whether any epoch recorded an accuracy (classification; regression has none)."""
        return any(np.isfinite(self.series[name]).any() for name in ACCURACY.values())

    @property
    def diverged(self) -> np.ndarray:
        return (self.runs.status == "diverged").to_numpy()

    @property
    def clean(self) -> np.ndarray:
        """Runs that finished without diverging (a pruned run did not finish: see ``scored``)."""
        return self.runs.status.isin(CLEAN_STATUSES).to_numpy()

    @property
    def pruned(self) -> np.ndarray:
        """Runs the sweep's scheduler stopped at their rung."""
        return (self.runs.status == PRUNED).to_numpy()

    @property
    def scored(self) -> np.ndarray:
        """Runs scored as their configuration is: clean, or pruned (scored where they
        stopped)."""
        return self.clean | self.pruned

    @property
    def reached_epochs(self) -> np.ndarray | None:
        """Under a scheduler, for each run the epoch of the highest rung its configuration
        reached (the furthest any of its seeds trained); None without one."""
        if self.scheduler is None:
            return None
        epochs = np.asarray(self.scheduler["rungs"])
        rung = self.runs.rung.astype("float64").groupby(self.runs.configuration).transform("max")
        rung = rung.fillna(0).to_numpy(dtype=int).clip(0, len(epochs) - 1)
        return epochs[rung]

    @property
    def has_epochs(self) -> bool:
        return bool(self.curves.logged.any())

    def settled(self) -> np.ndarray:
        """The curves to aggregate over runs (see ``Curves.settled``): a pruned run stops at
        its rung, and under a scheduler no run is carried past the last rung its
        configuration reached, so that past a rung the aggregates are over the runs that
        trained there."""
        return self.curves.settled(self.diverged, self.clean, self.reached_epochs)

    def settled_series(self, name: str) -> np.ndarray:
        """Curve ``name`` of ``SERIES`` to aggregate over runs: a run that ended cleanly keeps
        its last value, any other is unknown (NaN) past its last epoch."""
        curves = Curves(self.series[name], self.curves.logged, self.curves.elapsed)
        none = np.zeros(len(self.runs), dtype=bool)
        return curves.settled(none, self.clean, self.reached_epochs)

    def set_threshold(self, threshold: float | None) -> None:
        """Time each run, and each configuration's clean seeds, to ``threshold``."""
        self.threshold = threshold
        self.runs = self.runs.assign(**_time_to(self.curves, threshold))
        ranked = self.configurations.drop(columns=list(THRESHOLD_COLUMNS), errors="ignore")
        timed = ranked.join(_time_configurations(self.runs[self.scored]), on="configuration")
        self.configurations = timed.assign(reached=timed.reached.fillna(0).astype(int))


def load_sweep(lab: Lab, name: str, metric: str = "val_loss") -> SweepView:
    """Read sweep ``name`` and its runs' curves of ``metric`` from ``lab``.

    Raises ``UnknownSweepError`` for a name the store does not hold.
    """
    check_choice("metric", metric, METRICS)
    details = lab.sweep(name)
    settings = lab.settings(name)
    statuses = lab.runs(sweep=name)[["run_id", "status", "rung", "duration_s"]]
    runs = settings.merge(statuses, on="run_id", how="left", validate="one_to_one")
    axes = grid_axes(settings)
    curves, series = read_curves(lab, name, runs.run_id.to_numpy(), metric)
    runs = runs.assign(**_results(curves))
    ranked = _ranked(lab, name, metric)
    view = SweepView(details, metric, axes, runs, curves, lab.failures(name), series, ranked)
    scheduler = lab.scheduler(name)
    if scheduler is not None:
        view.scheduler, view.rungs, view.budget = scheduler, lab.rungs(name), lab.budget(name)
    return view


def _ranked(lab: Lab, name: str, metric: str) -> pd.DataFrame:
    """``Lab.configurations`` with its scores named as the page reads them."""
    ranked = lab.configurations(name, metric)
    scores = {"final": f"final_{metric}", "best": f"best_{metric}"}
    scores["accuracy"] = f"final_{ACCURACY[metric]}"
    names = {
        f"{column}_{stat}": f"{score}_{stat}"
        for score, column in scores.items()
        for stat in ("mean", "std")
    }
    return ranked.rename(columns=names)


def setting_label(setting: str, value) -> str:
    """How a setting's value reads: ``0.03``, ``64``, ``tanh``; a NULL batch size (batch GD,
    the whole training set per update) as ``all``."""
    if value is None or pd.isna(value):
        return "all" if setting == "batch_size" else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def configuration_label(view: SweepView, row) -> str:
    """``learning_rate 0.03, gd batch`` for a row of ``view.configurations``."""
    # by label, not attribute: itertuples renames settings such as data.noise
    at = view.configurations.at
    label = ", ".join(f"{axis} {setting_label(axis, at[row.Index, axis])}" for axis in view.axes)
    return label or "the only configuration"


def grid_axes(settings: pd.DataFrame) -> list[str]:
    """The settings whose values differ between runs (the seed aside), in column order."""
    candidates = [c for c in settings.columns if c not in ("run_id", "seed", "configuration")]
    return [c for c in candidates if settings[c].nunique(dropna=False) > 1]


def read_curves(
    lab: Lab, name: str, run_ids: np.ndarray, metric: str
) -> tuple[Curves, dict[str, np.ndarray]]:
    """The ``Curves`` of ``metric`` and the (runs × epochs) array of each of ``SERIES``, rows
    in ``run_ids`` order."""
    epochs = lab.curves(name, [*SERIES, "epoch_learning_rate", "seconds"])
    epochs = epochs.rename(columns={"epoch_learning_rate": RATE})
    width = int(epochs.epoch.max()) if len(epochs) else 0
    row = pd.Index(run_ids).get_indexer(epochs.run_id)
    keep = row >= 0  # a run registered after the runs were read cannot have a row
    row, column = row[keep], epochs.epoch.to_numpy()[keep] - 1
    shape = (len(run_ids), width)
    series = {}
    for series_name in (*SERIES, RATE):
        series[series_name] = np.full(shape, np.nan)
        series[series_name][row, column] = epochs[series_name].to_numpy()[keep]
    seconds, logged = np.zeros(shape), np.zeros(shape, dtype=bool)
    seconds[row, column] = np.nan_to_num(epochs.seconds.to_numpy()[keep])
    logged[row, column] = True
    elapsed = np.where(logged, np.cumsum(seconds, axis=1), np.nan)
    return Curves(series[metric], logged, elapsed), series


def _results(curves: Curves) -> dict[str, np.ndarray]:
    """Each run's last logged epoch, its metric there, and its lowest finite metric."""
    epochs_run = curves.logged.sum(axis=1)
    final = np.full(len(epochs_run), np.nan)
    ran = np.flatnonzero(epochs_run)
    final[ran] = curves.loss[ran, epochs_run[ran] - 1]
    finite = np.where(np.isfinite(curves.loss), curves.loss, np.inf)
    best = finite.min(axis=1, initial=np.inf)
    best = np.where(np.isfinite(best), best, np.nan)
    return {"final": final, "best": best, "epochs_run": epochs_run}


def _time_to(curves: Curves, threshold: float | None) -> dict[str, np.ndarray]:
    """The first epoch at which each run's metric was at most ``threshold``, and the seconds
    of training it took to get there (NaN for runs that never got there)."""
    n = curves.loss.shape[0]
    if threshold is None or curves.loss.shape[1] == 0:
        return {"reached_epoch": np.full(n, np.nan), "reached_seconds": np.full(n, np.nan)}
    below = curves.logged & (curves.loss <= threshold)
    first = below.argmax(axis=1)
    reached = below.any(axis=1)
    rows = np.arange(n)
    return {
        "reached_epoch": np.where(reached, first + 1.0, np.nan),
        "reached_seconds": np.where(reached, curves.elapsed[rows, first], np.nan),
    }


def default_threshold(views: list[SweepView]) -> float | None:
    """The median over every clean run's best metric, to two significant digits: about half
    of the runs that converge get there. None when no run finished cleanly."""
    best = np.concatenate([view.runs.best.to_numpy()[view.clean] for view in views])
    best = best[np.isfinite(best) & (best > 0)]
    return float(f"{np.median(best):.2g}") if best.size else None


def check_threshold(threshold: float | None) -> float | None:
    return None if threshold is None else check_number("threshold", threshold, above=0)


THRESHOLD_COLUMNS = ("reached", "epochs_to_threshold", "seconds_to_threshold")


def _time_configurations(clean: pd.DataFrame) -> pd.DataFrame:
    """``THRESHOLD_COLUMNS`` per configuration of the ``clean`` runs: ``reached`` (how many
    got to the threshold) and the mean epochs and seconds they took."""
    return clean.groupby("configuration").agg(
        reached=("reached_epoch", "count"),
        epochs_to_threshold=("reached_epoch", "mean"),
        seconds_to_threshold=("reached_seconds", "mean"),
    )


def explain(view: SweepView) -> list[str]:
    """What a reader should know before trusting the figures: a sweep still running or
    interrupted, nothing logged or finished yet, every run diverged, too few runs to
    aggregate, failures, a grid that does not vary."""
    counts, total = view.details.statuses, view.details.runs
    finished = sum(counts.get(s, 0) for s in (*CLEAN_STATUSES, "diverged", PRUNED))
    notes = [_status_note(view, finished)] if view.details.status != "finished" else []
    if total == 0:
        return [*notes, "This sweep has no runs."]
    if not view.has_epochs:
        notes.append("No epoch has been logged yet: there is nothing to plot.")
    elif finished == 0:
        notes.append(
            "No run has finished yet: the tables count finished runs only; the curves show "
            "the runs as far as they got."
        )
    elif not (view.clean | view.pruned).any():
        notes.append(
            f"Every finished run diverged ({finished} of {finished}): no configuration "
            "converged. A smaller learning rate is the usual cure."
        )
    notes.extend(_size_notes(view, total))
    if counts.get(PRUNED) and view.scheduler is not None:
        notes.append(
            f"{counts[PRUNED]} of {total} runs were pruned by the sweep's scheduler "
            f"({view.scheduler['type']}): they stopped at a rung, so their curves end there, "
            "and the heatmap and the effect of each setting show the runs that trained to the "
            "end only."
        )
    if view.has_epochs and not view.has_accuracy:
        notes.append(
            "No accuracy was recorded (a regression loss, or targets that are not class ids): "
            "the tables and figures show losses only."
        )
    if counts.get("failed"):
        notes.append(f"{counts['failed']} of {total} runs failed: see the failures below.")
    return notes


def _status_note(view: SweepView, finished: int) -> str:
    counts, total = view.details.statuses, view.details.runs
    if view.details.status == "interrupted":
        return (
            f"The sweep was interrupted with {total - finished - counts.get('failed', 0)} of "
            f"{total} runs unfinished: run `nnlab sweep` on its spec again to resume, then "
            "write this report again."
        )
    last = view.details.last_activity
    heard = f"; last heartbeat {last:%Y-%m-%d %H:%M:%S} UTC" if last else ""
    paused = f", {counts[PAUSED]} paused at a rung" if counts.get(PAUSED) else ""
    return (
        f"The sweep is still {view.details.status}: {finished} of {total} runs have finished "
        f"({counts.get('running', 0)} running, {counts.get('pending', 0)} pending{paused}"
        f"{heard}). "
        "This report shows what was logged so far; write it again when the sweep ends."
    )


def _size_notes(view: SweepView, total: int) -> list[str]:
    if total == 1:
        return ["A single run: there are no seeds to aggregate, so no bands, only its curve."]
    notes = []
    if not view.axes:
        notes.append(
            "Every run has the same settings but its seed: the heatmap, the GD comparison and "
            "the marginal effects need a setting that varies."
        )
    elif view.runs.configuration.value_counts().max() == 1:
        notes.append(
            "One seed per configuration: the spread between seeds is unknown, so a "
            "configuration's figures are single runs. Add seeds to see how reliable each is."
        )
    return notes


def failure_groups(failures: pd.DataFrame, runs: pd.DataFrame, axes: list[str]) -> list[dict]:
    """The ``failures`` (``Lab.failures``) grouped by their error's last line (``ValueError:
    …``), most frequent first: ``message``, ``runs`` (their ids), ``settings`` of the first (its
    ``axes`` as ``runs``, one row per run, has them), and its ``error``."""
    if failures.empty:
        return []
    messages = failures.error.fillna("").map(_last_line)
    runs = runs.set_index("run_id")
    grouped = []
    for message, rows in failures.groupby(messages, sort=False):
        first = rows.iloc[0]
        settings = runs.loc[first.run_id]
        label = ", ".join(f"{a} {setting_label(a, settings[a])}" for a in axes)
        group = {"message": message, "runs": rows.run_id.tolist(), "settings": label}
        grouped.append({**group, "error": first.error or ""})
    return sorted(grouped, key=lambda group: -len(group["runs"]))


def _last_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no error recorded)"


# --- what the report and the service both show ---------------------------------------------


def setting_values(runs: pd.DataFrame, setting: str) -> list:
    """The values ``setting`` takes: numbers in increasing order (``all`` last), other values in
    the order of the grid."""
    values = list(pd.unique(runs[setting]))
    if pd.api.types.is_numeric_dtype(runs[setting]):
        return sorted((v for v in values if not pd.isna(v)), key=float) + [
            v for v in values if pd.isna(v)
        ]
    return values


def setting_pairs(runs: pd.DataFrame, axes: list[str], most: int = PAIRS) -> list[tuple]:
    """Up to ``most`` pairs of grid settings (rows, columns), those whose runs fill the most
    cells first, ties in grid order: a pair whose values come only together (batch size and
    GD variant) fills few and comes last."""
    pairs = list(itertools.combinations(axes, 2))
    filled = {pair: runs.groupby(list(pair), dropna=False).ngroups for pair in pairs}
    return sorted(pairs, key=lambda pair: -filled[pair])[:most]


def pair_cells(runs: pd.DataFrame, rows: str, columns: str) -> tuple[np.ndarray, ...]:
    """The (values of ``rows`` × values of ``columns``) arrays of the median ``final`` metric
    of each cell's clean runs, of its diverged runs, and of all its runs (``runs`` has a
    ``run_id``, ``status`` and ``final`` per run, and its settings)."""
    clean = runs.status.isin(CLEAN_STATUSES)
    runs = runs.assign(clean_final=runs.final.where(clean), bad=runs.status == "diverged")
    stats = runs.groupby([rows, columns], dropna=False).agg(
        median=("clean_final", "median"), diverged=("bad", "sum"), total=("run_id", "size")
    )
    row = {_key(value): i for i, value in enumerate(setting_values(runs, rows))}
    column = {_key(value): j for j, value in enumerate(setting_values(runs, columns))}
    shape = (len(row), len(column))
    median, diverged, total = np.full(shape, np.nan), np.zeros(shape, int), np.zeros(shape, int)
    i = [row[_key(a)] for a in stats.index.get_level_values(0)]
    j = [column[_key(b)] for b in stats.index.get_level_values(1)]
    median[i, j], diverged[i, j], total[i, j] = stats["median"], stats.diverged, stats.total
    return median, diverged, total


def _key(value):
    """A setting's value as a dict key: every kind of missing value is None."""
    return None if pd.isna(value) else value


def matches(column: pd.Series, value) -> np.ndarray:
    """Where ``column`` holds ``value``, a missing value matching a missing one."""
    same = column.isna() if pd.isna(value) else (column == value).fillna(False)
    return same.to_numpy(dtype=bool)
