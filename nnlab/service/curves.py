"""A sweep's curves as the service serves them: one series per run, or the median and
interquartile range of the runs grouped by a grid setting, each cut to at most ``max_points``
epochs on the server."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from nnlab.checks import InputError, check_choice, close_matches
from nnlab.report.analysis import matches, setting_label, setting_values
from nnlab.service import views
from nnlab.service.records import json_value
from nnlab.service.views import Standing
from nnlab.store import Lab
from nnlab.store.query import quantiles

METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
COLUMNS = {"learning_rate": "epoch_learning_rate"}  # as Lab.curves names it (apart from the run's)
MAX_POINTS = (2, 1500)  # the range W&B allows a chart
DEFAULT_POINTS = 500
TOP = (1, 100)  # best configurations drawn when grouped by configuration
DEFAULT_TOP = 10
NOT_SETTINGS = ("run_id",)
INTEGER = re.compile(r"[0-9]{1,9}")


class BadQuery(InputError):
    """A query parameter the route does not accept; ``matches`` are near misses of it."""

    def __init__(self, message: str, matches: list[str] = ()) -> None:
        super().__init__(message)
        self.matches = list(matches)


_NAMES = {column: metric for metric, column in COLUMNS.items()}


def check_query(
    query: Mapping[str, str], metrics: tuple[str, ...] = METRICS
) -> tuple[str | None, str | None, int, int]:
    """``metric`` (one of ``metrics``; None when not given: the sweep's own, see ``read``),
    ``by``, ``max_points`` and ``top`` of a request's ``query``, with their defaults;
    ``BadQuery`` for a metric or a number the route does not accept (``by`` is checked
    against the sweep's settings as it is read)."""
    metric = query.get("metric")
    max_points = _integer("max_points", query.get("max_points", str(DEFAULT_POINTS)), MAX_POINTS)
    top = _integer("top", query.get("top", str(DEFAULT_TOP)), TOP)
    metric = None if metric is None else _choice("metric", metric, metrics)
    return metric, query.get("by"), max_points, top


def _integer(name: str, given: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if not INTEGER.fullmatch(given) or not low <= int(given) <= high:
        raise BadQuery(f"{name} must be an integer from {low} to {high}, got {given!r}")
    return int(given)


def _choice(name: str, value: str, choices) -> str:
    try:
        return check_choice(name, value, choices)
    except InputError as error:
        raise BadQuery(str(error), close_matches(value, choices)) from None


def kept(n: int, max_points: int) -> np.ndarray:
    """Positions of the points to keep of ``n``: the first, the last, and evenly spaced ones
    between, at most ``max_points`` in all."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def run_series(
    lab: Lab, sweep: str, metric: str, max_points: int, standing: Standing
) -> list[dict]:
    """One ``{run_id, configuration, label, epochs, values}`` per run of ``sweep`` that logged
    an epoch; ``label`` names its grid settings."""
    settings = standing.settings.set_index("run_id")
    axes = standing.axes
    curves = lab.curves(sweep, [COLUMNS.get(metric, metric)]).rename(columns=_NAMES)
    series = []
    for run_id, logged in curves.groupby("run_id", sort=True):
        rows = logged.iloc[kept(len(logged), max_points)]
        run = settings.loc[run_id]
        label = ", ".join(f"{a} {setting_label(a, run[a])}" for a in axes)
        values = json_value(rows[metric].tolist())
        found = {"configuration": run.configuration, "label": label, "values": values}
        series.append({"run_id": int(run_id), "epochs": rows.epoch.tolist(), **found})
    return series


def grouped_series(
    lab: Lab, sweep: str, metric: str, by: str, max_points: int, standing: Standing, top: int
) -> list[dict]:
    """One ``{value, label, runs, epochs, median, q25, q75}`` per value of setting ``by``: the
    quartiles over that value's runs at each epoch any run of the sweep logged, NaN left out
    (``quantiles``, as the report's bands). ``by="configuration"`` groups the seeds of each of
    the ``top`` best configurations (the ranking of ``Lab.configurations``), best first, at
    each epoch any of their runs logged."""
    settings = standing.settings
    _choice("setting", by, [c for c in settings.columns if c not in NOT_SETTINGS])
    found = list(_groups(standing, by, top))
    # the best configurations are a few of the runs: read only theirs (a tenth of a second
    # rather than five on a 10,000-run sweep); grouped by a setting, every run is drawn
    drawn = [run for _, _, runs in found for run in runs] if by == "configuration" else None
    curves = lab.curves(sweep, [COLUMNS.get(metric, metric)], runs=drawn).rename(columns=_NAMES)
    table = curves.pivot(index="run_id", columns="epoch", values=metric)
    epochs = table.columns.to_numpy()[kept(len(table.columns), max_points)]
    table = table.reindex(index=settings.run_id, columns=epochs)
    groups = []
    for value, label, runs in found:
        q25, median, q75 = quantiles(table.loc[runs].to_numpy(dtype=float))
        group = {"value": value, "label": label, "runs": runs, "epochs": epochs.tolist()}
        bands = {"median": median.tolist(), "q25": q25.tolist(), "q75": q75.tolist()}
        groups.append(json_value({**group, **bands}))
    return groups


def _groups(standing: Standing, by: str, top: int):
    """(value, label, run ids) of each group: the values of setting ``by`` in order, or the
    ``top`` best configurations."""
    settings = standing.settings
    if by != "configuration":
        for value in setting_values(settings, by):
            runs = settings.run_id[matches(settings[by], value)]
            yield value, setting_label(by, value), runs.tolist()
        return
    seeds = settings.groupby("configuration", sort=False).run_id
    for _, best in standing.ranking.head(top).iterrows():
        label = ", ".join(f"{a} {setting_label(a, best[a])}" for a in standing.axes)
        yield (
            best.configuration,
            label or "the only one",
            seeds.get_group(best.configuration).tolist(),
        )


def read(
    lab: Lab,
    sweep: str,
    metric: str | None,
    by: str | None,
    max_points: int,
    top: int = DEFAULT_TOP,
    standing: Standing | None = None,
) -> list[dict]:
    """The curves the route serves (see the module); ``standing`` as read now if not given,
    ``metric`` the one it ranks by when None."""
    standing = standing or views.standing(lab, sweep)
    metric = metric or standing.metric
    if by is None:
        return run_series(lab, sweep, metric, max_points, standing)
    return grouped_series(lab, sweep, metric, by, max_points, standing, top)
