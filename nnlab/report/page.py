"""The HTML report on one or more sweeps: one self-contained file, readable offline.

>>> import nnlab
>>> lab = nnlab.connect()
>>> html = nnlab.render_report(lab, ["quickstart"])    # the page, as text
>>> nnlab.write_report(lab, ["quickstart"])            # reports/quickstart.html
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import jinja2
import matplotlib
import pandas as pd

from nnlab import __version__
from nnlab.checks import InputError
from nnlab.report.analysis import (
    SweepView,
    check_threshold,
    configuration_label,
    default_threshold,
    explain,
    failure_groups,
    load_sweep,
    setting_label,
)
from nnlab.report.figures import (
    STYLE,
    comparison_chart,
    convergence_chart,
    fit_chart,
    gd_chart,
    heatmap_chart,
    marginal_chart,
    schedule_chart,
)
from nnlab.report.text import mean_std
from nnlab.store import Lab

DEFAULT_DIRECTORY = "reports"
# What a scheduler's section is called, by its type
SCHEDULER_TITLES = {"sha": "Successive halving (sha)", "asha": "ASHA", "hyperband": "Hyperband"}
ROWS_SHOWN = 20  # best configurations listed before the rest fold away
COMPARED = 5  # best configurations of each sweep side by side


def render_report(
    lab: Lab, sweeps: Sequence[str], *, metric: str = "val_loss", threshold: float | None = None
) -> str:
    """The convergence report on ``sweeps`` (names) as one self-contained HTML page.

    It depends on nothing but what ``lab`` holds: the same store gives the same text. The
    threshold (the loss a run must reach to count as converged, for the epochs and seconds it
    took) defaults, for each sweep, to the median best ``metric`` of its runs that finished
    without diverging; a ``threshold`` given holds for every sweep.

    Raises ``UnknownSweepError`` (a ``StoreError``) for a name the store does not hold, and
    ``InputError`` for a bad ``metric`` or ``threshold`` or no sweep at all.
    """
    names = _sweep_names(sweeps)
    metric_note = ""
    if metric == "val_loss" and lab.default_metric(names) == "train_loss":
        metric, metric_note = "train_loss", " (no validation data: the training loss instead)"
    views = [load_sweep(lab, name, metric) for name in names]
    given = check_threshold(threshold)
    for view in views:
        view.set_threshold(given if given is not None else default_threshold([view]))
    with matplotlib.rc_context(STYLE):
        sections = [_section(view, index, given) for index, view in enumerate(views, 1)]
        comparison = _comparison(views, sections) if len(views) > 1 else None
    return _template().render(
        title=", ".join(names),
        metric=metric,
        metric_note=metric_note,
        threshold=_threshold_text(views, given),
        store=lab.location,
        version=__version__,
        sweeps=sections,
        comparison=comparison,
    )


def write_report(
    lab: Lab,
    sweeps: Sequence[str],
    path: str | os.PathLike | None = None,
    *,
    directory: str | os.PathLike = DEFAULT_DIRECTORY,
    metric: str = "val_loss",
    threshold: float | None = None,
) -> Path:
    """Write the report on ``sweeps`` to ``path`` (a file, or a folder to put it in), by
    default ``<directory>/<sweep name made file-safe>.html``; return where it went.

    The file is replaced atomically, so a reader never sees half a report. Sweep names never
    choose the folder: ``../../x`` or ``/etc/x`` becomes a file name inside ``directory``.
    """
    html = render_report(lab, sweeps, metric=metric, threshold=threshold)  # fails before writing
    if path is None:
        target = report_path(sweeps, directory)
    elif Path(path).is_dir() or str(path).endswith(("/", os.sep)):  # an existing or new folder
        target = report_path(sweeps, path)
    else:
        target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            partial.write_text(html, encoding="utf-8")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    except OSError as error:
        raise InputError(f"cannot write the report to {str(target)!r}: {error.strerror}") from None
    return target


def report_path(sweeps: Sequence[str], directory: str | os.PathLike = DEFAULT_DIRECTORY) -> Path:
    """``<directory>/<slug>.html`` for the sweeps' names, always inside ``directory``."""
    folder = Path(directory)
    target = folder / f"{'-vs-'.join(map(file_stem, _sweep_names(sweeps)))[:200]}.html"
    if target.parent != folder or target.name.startswith("."):  # file_stem makes this impossible
        raise InputError(f"refusing to write a report outside {str(folder)!r}: {target}")
    return target


def file_stem(name: str) -> str:
    """A file-name-safe stem for a sweep name: lowercase ASCII letters, digits and hyphens.

    A name that is not already one gets a short hash of itself appended, so distinct names
    never share a file: ``quickstart`` -> ``quickstart``, ``../../x`` -> ``x-9cdf6a50``.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:80].rstrip("-")
    if slug == name:
        return slug
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else f"sweep-{digest}"


def _sweep_names(sweeps: Sequence[str]) -> list[str]:
    if isinstance(sweeps, str):  # one name, not a sequence of one-letter names
        sweeps = [sweeps]
    names = list(dict.fromkeys(sweeps))
    if not names:
        raise InputError("name at least one sweep to report on")
    return names


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("nnlab.report", "templates"),
        autoescape=True,  # every sweep name, description, setting and error text is escaped
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template("report.html.j2")


def _threshold_text(views: list[SweepView], given: float | None) -> tuple[str, str]:
    """The threshold for the page's header: the one given, else the sweep's own, or for
    several sweeps a pointer to each one's."""
    if given is not None or len(views) == 1:
        return _threshold(views[0], given)
    return "each sweep's own", "see its section; set one for all with --threshold"


def _threshold(view: SweepView, given: float | None) -> tuple[str, str]:
    """The threshold ``view`` uses, and why."""
    if given is not None:
        return f"{given:g}", "as given"
    if view.threshold is None:
        return "none", "no run has finished without diverging yet, so none"
    return f"{view.threshold:g}", (
        f"the median best {view.metric} of the runs that finished without diverging; "
        "set your own with --threshold"
    )


# --- one sweep's section --------------------------------------------------------------------


def _section(view: SweepView, index: int, given: float | None) -> dict:
    return {
        "name": view.name,
        "anchor": f"sweep-{index}",
        "description": view.details.description,
        "notes": explain(view),
        "summary": _summary(view),
        "halving": _halving(view),
        "threshold": _threshold(view, given),
        "best": _best_table(view),
        "charts": {
            "curves": convergence_chart(view),
            "fit": fit_chart(view),
            "heatmap": heatmap_chart(view),
            "gd": gd_chart(view),
            "marginal": marginal_chart(view),
            "schedule": schedule_chart(view),
        },
        "failures": [
            {**group, "run_ids": _ids(group["runs"])}
            for group in failure_groups(view.failures, view.runs, view.axes)
        ],
        "spec": view.details.spec,
    }


def _summary(view: SweepView) -> list[tuple[str, str]]:
    """The sweep's header: what it is, when it ran, where, with what, how its runs ended."""
    details, provenance = view.details, view.details.provenance
    statuses = ", ".join(f"{n} {status}" for status, n in details.statuses.items())
    grid = ", ".join(
        f"{axis} ({view.runs[axis].nunique(dropna=False)} values)" for axis in view.axes
    )
    seeds = view.runs.seed.nunique()
    versions = " · ".join(
        f"{label} {' / '.join(provenance[f'{label.lower()}_version']) or '?'}"
        for label in ("nnlab", "NumPy", "Python")
    )
    scheduled = []
    if view.scheduler is not None:
        scheduled = [("scheduler", _scheduler_text(view.scheduler)), ("budget", str(view.budget))]
    return [
        ("status", details.status),
        ("runs", f"{details.runs}" + (f": {statuses}" if statuses else "")),
        ("grid", f"{grid or 'no setting varies'}; {seeds} seed{'s' * (seeds != 1)}"),
        *scheduled,
        ("created", _when(details.created_at)),
        ("ended", _when(details.finished_at) if details.finished_at else "not yet"),
        ("duration", _sweep_duration(view)),
        ("spec hash", details.spec_hash or "not recorded"),
        ("versions", versions),
        ("host", ", ".join(provenance["hostname"]) or "not recorded"),
        ("git commit", ", ".join(provenance["git_commit"]) or "not recorded"),
        ("data fingerprint", ", ".join(provenance["data_fingerprint"]) or "not recorded"),
    ]


def _scheduler_text(scheduler: dict) -> str:
    """``sha by val_loss, eta 3, rungs at 1, 3, 9, 27 epochs`` (and the brackets, if more
    than one)."""
    brackets = scheduler["brackets"]
    return (
        f"{scheduler['type']} by {scheduler['metric']}, eta {scheduler['eta']}, rungs at "
        f"{', '.join(map(str, scheduler['rungs']))} epochs"
        + (f", {brackets} brackets" if brackets > 1 else "")
    )


def _halving(view: SweepView) -> dict | None:
    """A scheduled sweep's rungs as a table (``Lab.rungs``: configurations that entered each,
    promoted, pruned, waiting, the best score) with its budget; None without a scheduler."""
    scheduler = view.scheduler
    if scheduler is None:
        return None
    brackets = scheduler["brackets"] > 1
    head = [*(["bracket"] if brackets else []), "rung", "epoch", "configurations entered"]
    head += ["promoted", "pruned", "waiting", f"best {scheduler['metric']}"]
    rows = [
        {
            "cells": [
                *([str(row.bracket)] if brackets else []),
                str(row.rung),
                str(row.epoch),
                str(row.entered),
                str(row.promoted),
                str(row.pruned),
                str(row.waiting),
                "–" if math.isnan(row.best) else f"{row.best:.4g}",
            ],
            "troubled": False,
        }
        for row in view.rungs.itertuples()
    ]
    table = {"head": head, "numeric": [True] * len(head), "rows": rows, "more": None}
    return {
        "title": SCHEDULER_TITLES.get(scheduler["type"], scheduler["type"]),
        "scheduler": _scheduler_text(scheduler),
        "budget": str(view.budget),
        "table": {**table, "empty": "This sweep's scheduler has no rungs."},
    }


def _sweep_duration(view: SweepView) -> str:
    details = view.details
    trained = view.runs.duration_s.sum()
    total = f"; its runs trained for {_duration(trained)} in all" if trained > 0 else ""
    if details.finished_at is None:
        return f"not finished{total}"
    return _duration((details.finished_at - details.created_at).total_seconds()) + total


def _best_table(view: SweepView) -> dict:
    """The ranked configurations as table cells; rows past ``ROWS_SHOWN`` under ``more``.
    The accuracy column appears for classification sweeps only, and columns for failed and
    unfinished seeds only when some configuration has any."""
    configurations, metric = view.configurations, view.metric
    extra = _extra_counts(configurations)
    extra = {name: counts for name, counts in extra.items() if (counts > 0).any()}
    settings = view.axes or ["configuration"]
    accuracy = [f"final {view.accuracy}"] if view.has_accuracy else []
    reached = ["epochs"] if view.scheduler is not None else []
    head = [
        *settings,
        *reached,
        f"final {metric}",
        *accuracy,
        f"best {metric}",
        "epochs to threshold",
        "seconds to threshold",
        "diverged",
        *extra,
    ]
    rows = []
    for i, row in zip(configurations.index, configurations.itertuples(), strict=True):
        cells = _best_cells(view, row, [counts[i] for counts in extra.values()])
        rows.append({"cells": cells, "troubled": row.troubled > 0})
    numeric = [False] * len(settings) + [True] * (len(head) - len(settings))
    table = {"head": head, "numeric": numeric, "empty": "This sweep has no runs.", "more": None}
    if len(rows) > ROWS_SHOWN:
        table["more"] = {**table, "rows": rows[ROWS_SHOWN:]}
    return {**table, "rows": rows[:ROWS_SHOWN]}


def _extra_counts(configurations) -> dict:
    if configurations.empty:
        return {}
    pruned = configurations.pruned
    unfinished = configurations.runs - configurations.finished - configurations.failed - pruned
    return {"failed": configurations.failed, "pruned": pruned, "unfinished": unfinished}


def _best_cells(view: SweepView, row, extra: list[int]) -> list[str]:
    at = view.configurations.at  # by label: itertuples renames settings such as data.noise
    settings = [setting_label(axis, at[row.Index, axis]) for axis in view.axes] or ["the only one"]
    reached = view.threshold is not None and row.reached > 0
    accuracy = [mean_std(row.accuracy_mean, row.accuracy_std)] if view.has_accuracy else []
    return [
        *settings,
        *([_rung_epochs(view.scheduler, row.rung)] if view.scheduler is not None else []),
        mean_std(row.final_mean, row.final_std),
        *accuracy,
        mean_std(row.best_mean, row.best_std),
        f"{row.epochs_to_threshold:.1f} ({row.reached}/{row.runs})" if reached else "–",
        f"{row.seconds_to_threshold:.3g} s" if reached else "–",
        f"{row.diverged}/{row.runs}",
        *(f"{count}/{row.runs}" for count in extra),
    ]


def _rung_epochs(scheduler: dict, rung) -> str:
    """The epoch of the highest rung a configuration reached; a dash before any."""
    return "–" if pd.isna(rung) else str(scheduler["rungs"][int(rung)])


def _ids(run_ids: list[int], shown: int = 20) -> str:
    more = f", … ({len(run_ids) - shown} more)" if len(run_ids) > shown else ""
    return ", ".join(map(str, run_ids[:shown])) + more


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# --- several sweeps side by side ------------------------------------------------------------


def _comparison(views: list[SweepView], sections: list[dict]) -> dict:
    return {
        "chart": comparison_chart(views),
        "sweeps": [
            {
                "name": view.name,
                "anchor": section["anchor"],
                "best": _compact_table(view),
                "threshold": section["threshold"],
            }
            for view, section in zip(views, sections, strict=True)
        ],
    }


def _compact_table(view: SweepView) -> dict:
    rows = [_compact_row(view, row) for row in view.configurations.head(COMPARED).itertuples()]
    head = ["configuration", f"final {view.metric}", "diverged"]
    numeric = [False, True, True]
    return {"head": head, "numeric": numeric, "rows": rows, "empty": "No runs.", "more": None}


def _compact_row(view: SweepView, row) -> dict:
    label = configuration_label(view, row)
    cells = [label, mean_std(row.final_mean, row.final_std), f"{row.diverged}/{row.runs}"]
    return {"cells": cells, "troubled": row.troubled > 0}
