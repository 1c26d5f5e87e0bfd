"""What the service's pages show of a sweep beyond the reading API's own tables: its details
with the grid and an ETA, a heatmap of two grid settings, its failures grouped by message.

The analysis is the report's (``nnlab.report.analysis``): one home for both.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from nnlab.checks import InputError, check_choice, close_matches
from nnlab.report.analysis import (
    failure_groups,
    grid_axes,
    pair_cells,
    setting_label,
    setting_values,
)
from nnlab.service.records import frame_records, json_value
from nnlab.store import Lab
from nnlab.store.query import METRICS
from nnlab.store.queue import FINAL_STATUSES


@dataclass(frozen=True)
class Standing:
    """Where a sweep's configurations stand, as several routes need it at once: the metric
    they are ranked by, the ranking (``Lab.configurations``), each run's settings
    (``Lab.settings``) and the grid's axes. It changes only when a run's status does."""

    metric: str
    ranking: pd.DataFrame
    settings: pd.DataFrame
    axes: list[str]
    # which read this is: answers made from it are shared only while it is the one in use
    # (an id() could be a later standing's once this one is gone)
    serial: int = field(default_factory=lambda: next(_READS), compare=False)


_READS = itertools.count(1)


def standing(lab: Lab, name: str, settings: RunSettings | None = None) -> Standing:
    """Sweep ``name``'s standing as the database has it now (its settings from ``settings``
    when given: they are kept while its runs stay the same)."""
    metric = lab.default_metric([name])
    held = settings.of(lab, name) if settings is not None else lab.settings(name)
    ranking = lab.configurations(name, metric, held)
    return Standing(metric, ranking, held, grid_axes(held))


class RunSettings:
    """Each sweep's ``Lab.settings``, read again only when runs join or leave it (a run's
    settings never change once registered): on 10,000 runs, half the time of a standing."""

    def __init__(self, most: int = 16) -> None:  # a 10,000-run sweep's are a few MB
        self.most = most
        self._held: dict[str, tuple[tuple, pd.DataFrame]] = {}
        self._reading = threading.Lock()  # two routes asking at once: one read

    def of(self, lab: Lab, name: str) -> pd.DataFrame:
        with self._reading:
            return self._of(lab, name)

    def _of(self, lab: Lab, name: str) -> pd.DataFrame:
        registration = lab.registration(name)
        held = self._held.get(name)
        if held is not None and held[0] == registration:
            return held[1]
        settings = lab.settings(name)
        if len(self._held) >= self.most:
            self._held.pop(next(iter(self._held)))
        self._held[name] = (registration, settings)
        return settings


class BadSetting(InputError):
    """A setting the sweep does not have; ``matches`` are near misses of it."""

    def __init__(self, message: str, matches: list[str] = ()) -> None:
        super().__init__(message)
        self.matches = list(matches)


class Schedules:
    """Each sweep's scheduler and rungs (``Lab.scheduler``, ``Lab.rungs``), read again only
    when its runs' status counts change (a rung changes only as runs pause, end or are
    decided) or once ``max_age`` seconds old (a promoted run can pause again at the next rung
    and leave the counts as they were)."""

    def __init__(self, max_age: float = 5.0, most: int = 64) -> None:
        self.max_age = max_age
        self.most = most
        self.reads = 0
        self._held: dict[str, tuple[tuple, float, dict | None, list[dict]]] = {}
        self._reading = threading.Lock()

    def of(self, lab: Lab, name: str, statuses: dict[str, int]) -> tuple[dict | None, list[dict]]:
        """``name``'s scheduler (None without one) and its rungs as JSON rows, for a sweep
        whose runs are now in ``statuses`` (``Lab.sweep``'s counts)."""
        key = tuple(sorted(statuses.items()))
        with self._reading:
            held = self._held.get(name)
            if held is not None and held[0] == key and time.monotonic() - held[1] <= self.max_age:
                return held[2], held[3]
            self.reads += 1
            scheduler = lab.scheduler(name)
            rungs = [] if scheduler is None else frame_records(lab.rungs(name))
            if name not in self._held and len(self._held) >= self.most:
                self._held.pop(next(iter(self._held)))
            self._held[name] = (key, time.monotonic(), scheduler, rungs)
            return scheduler, rungs


def details(
    lab: Lab,
    name: str,
    settings: pd.DataFrame,
    now: datetime | None = None,
    schedules: Schedules | None = None,
) -> dict:
    """Sweep ``name`` as ``Lab.sweep`` has it, with ``runs`` (the total), ``axes`` (the settings
    its grid varies), ``metric`` (what it is ranked by), ``final`` (runs that ended, failed
    and pruned ones too; paused ones wait at a rung), ``eta_seconds``: the time its unfinished
    runs would take at the rate runs have ended since the first started (None when none has
    ended, or none is left, and for a scheduled sweep, whose runs end at very different
    epochs), and its ``scheduler`` (None without one), ``rungs`` (``Lab.rungs``' rows; none
    without a scheduler) and ``budget`` (``{spent, full, fraction}``, ``Lab.budget``; None
    without a scheduler). ``schedules`` keeps the scheduler and rungs between calls."""
    sweep = lab.sweep(name)
    final = sum(n for status, n in sweep.statuses.items() if status in FINAL_STATUSES)
    if schedules is None:
        scheduler = lab.scheduler(name)
        rungs = [] if scheduler is None else frame_records(lab.rungs(name))
    else:
        scheduler, rungs = schedules.of(lab, name, sweep.statuses)
    budget = None
    if scheduler is not None:
        spent = lab.budget(name)
        budget = {"spent": spent.spent, "full": spent.full, "fraction": spent.fraction}
    left = sweep.runs - final
    extra = {
        "runs": sweep.runs,
        "final": final,
        "axes": grid_axes(settings),
        "metric": lab.default_metric([name]),
        "eta_seconds": None
        if scheduler is not None
        else eta_seconds(sweep.started_at, final, left, now),
        "scheduler": scheduler,
        "rungs": rungs,
        "budget": budget,
    }
    return json_value({**json_value(sweep), **extra})


def eta_seconds(started: datetime | None, final: int, left: int, now: datetime | None) -> float:
    """Seconds until ``left`` more runs end, at the rate ``final`` ended since ``started``."""
    if started is None or final == 0 or left == 0:
        return None
    now = now or datetime.now(UTC)
    started = started if started.tzinfo else started.replace(tzinfo=UTC)
    elapsed = max((now - started).total_seconds(), 0.0)
    return round(elapsed / final * left, 1)


def heatmap(
    lab: Lab, name: str, rows: str, columns: str, metric: str | None, standing: Standing
) -> dict:
    """The median final ``metric`` of the clean runs in each cell of setting ``rows`` × setting
    ``columns``, with each cell's diverged and total runs, and the values' labels (as the
    report's heatmaps); ``metric`` None: the one the sweep is ranked by."""
    metric = check_choice("metric", metric or standing.metric, METRICS)
    runs = final_results(lab, name, metric, standing.settings)
    settings = [c for c in runs.columns if c not in ("run_id", "status", "final", "configuration")]
    for setting in (rows, columns):
        if setting not in settings:
            message = f"unknown setting {setting!r}: expected one of {', '.join(settings)}"
            raise BadSetting(message, close_matches(setting, settings))
    median, diverged, total = pair_cells(runs, rows, columns)
    labels = {s: [setting_label(s, v) for v in setting_values(runs, s)] for s in (rows, columns)}
    return json_value(
        {
            "rows": rows,
            "columns": columns,
            "metric": metric,
            "row_values": labels[rows],
            "column_values": labels[columns],
            "median": median.tolist(),
            "diverged": diverged.tolist(),
            "total": total.tolist(),
        }
    )


def failures(lab: Lab, name: str, standing: Standing) -> list[dict]:
    """The failed runs of ``name`` grouped by their error's last line, most frequent first."""
    return json_value(failure_groups(lab.failures(name), standing.settings, standing.axes))


def final_results(lab: Lab, name: str, metric: str, settings: pd.DataFrame) -> pd.DataFrame:
    """One row per run of ``name``: ``run_id``, its ``settings``, ``status`` and ``final``, the
    ``metric`` at its last epoch."""
    results = lab.runs(sweep=name)[["run_id", "status", f"final_{metric}"]]
    results = results.rename(columns={f"final_{metric}": "final"})
    return settings.merge(results, on="run_id", how="left", validate="one_to_one")
