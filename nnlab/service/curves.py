"""A sweep's curves as the service serves them: one series per run, or the median and
interquartile range of the runs grouped by a grid setting, each cut to at most ``max_points``
epochs on the server."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from nnlab.checks import InputError, check_choice, close_matches
from nnlab.service.records import json_value
from nnlab.store import Lab
from nnlab.store.query import quantiles

METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
MAX_POINTS = (2, 1500)  # the range W&B allows a chart
DEFAULT_POINTS = 500
NOT_SETTINGS = ("run_id", "configuration")
INTEGER = re.compile(r"[0-9]{1,9}")


class BadQuery(InputError):
    """A query parameter the route does not accept; ``matches`` are near misses of it."""

    def __init__(self, message: str, matches: list[str] = ()) -> None:
        super().__init__(message)
        self.matches = list(matches)


def check_query(query: Mapping[str, str]) -> tuple[str, str | None, int]:
    """``metric``, ``by`` and ``max_points`` of a request's ``query``, with their defaults;
    ``BadQuery`` for a metric or a number of points the route does not accept (``by`` is
    checked against the sweep's settings as it is read)."""
    low, high = MAX_POINTS
    metric = query.get("metric", "val_loss")
    max_points = query.get("max_points", str(DEFAULT_POINTS))
    if not INTEGER.fullmatch(max_points) or not low <= int(max_points) <= high:
        raise BadQuery(f"max_points must be an integer from {low} to {high}, got {max_points!r}")
    return _choice("metric", metric, METRICS), query.get("by"), int(max_points)


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


def run_series(lab: Lab, sweep: str, metric: str, max_points: int) -> list[dict]:
    """One ``{run_id, epochs, values}`` per run of ``sweep`` that logged an epoch."""
    curves = lab.curves(sweep, [metric])
    series = []
    for run_id, logged in curves.groupby("run_id", sort=True):
        rows = logged.iloc[kept(len(logged), max_points)]
        epochs, values = rows.epoch.tolist(), rows[metric].tolist()
        series.append({"run_id": int(run_id), "epochs": epochs, "values": json_value(values)})
    return series


def grouped_series(lab: Lab, sweep: str, metric: str, by: str, max_points: int) -> list[dict]:
    """One ``{value, runs, epochs, median, q25, q75}`` per value of setting ``by``: the
    quartiles over that value's runs at each epoch any run of the sweep logged, NaN left out
    (``quantiles``, as the report's bands)."""
    settings = lab.settings(sweep)
    _choice("setting", by, [c for c in settings.columns if c not in NOT_SETTINGS])
    curves = lab.curves(sweep, [metric])
    table = curves.pivot(index="run_id", columns="epoch", values=metric)
    epochs = table.columns.to_numpy()[kept(len(table.columns), max_points)]
    table = table.reindex(index=settings.run_id, columns=epochs)
    groups = []
    for value, runs in settings.groupby(by, dropna=False, sort=True).run_id:
        q25, median, q75 = quantiles(table.loc[runs].to_numpy(dtype=float))
        group = {"value": value, "runs": runs.tolist(), "epochs": epochs.tolist()}
        bands = {"median": median.tolist(), "q25": q25.tolist(), "q75": q75.tolist()}
        groups.append(json_value({**group, **bands}))
    return groups


def read(lab: Lab, sweep: str, metric: str, by: str | None, max_points: int) -> list[dict]:
    if by is None:
        return run_series(lab, sweep, metric, max_points)
    return grouped_series(lab, sweep, metric, by, max_points)
