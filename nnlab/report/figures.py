"""The report's figures, drawn with matplotlib (Agg, no pyplot) from ``SweepView``s.

Each figure comes back as a ``Chart``: a ``data:`` URI the page shows as an image (SVG for light
figures, PNG for dense ones), or, when the sweep cannot support it, the reason why. No text in any
figure is parsed as math text (``STYLE`` turns it off, and log axes get plain-number labels):
sweep names and settings are the user's, and a title such as ``$\\foo$`` would make matplotlib
raise.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator
from matplotlib.transforms import blended_transform_factory

from nnlab.report.analysis import DIVERGED, SweepView, configuration_label, setting_label

STYLE = {
    "text.usetex": False,
    "text.parse_math": False,  # every Text made while drawing: titles, labels, legends, ticks
    "svg.fonttype": "none",  # text stays text: a fraction of the size of glyph outlines
    "svg.hashsalt": "nnlab",  # the same store gives the same file
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
}
# Beyond this many curves a figure is a PNG: an SVG grows by ~2.5 KiB a curve, a PNG does not.
SVG_CURVES = 40
PNG_DPI = 110
COLORS = matplotlib.color_sequences["tab10"]
QUARTILES = (0.25, 0.5, 0.75)
PLAIN_NUMBER = FuncFormatter(lambda value, _: f"{value:g}")
DIVERGED_MARK = {"marker": "x", "linestyle": "none", "markersize": 6, "clip_on": False}


@dataclass(frozen=True)
class Chart:
    """A figure as the page shows it: ``uri`` is the image, else ``caption`` says why none."""

    caption: str
    uri: str | None = None
    alt: str = ""


def quantiles(values: np.ndarray, qs=QUARTILES) -> np.ndarray:
    """Per column of ``values`` (rows × columns), the quantiles ``qs`` over its non-NaN rows,
    linearly interpolated; NaN for a column without any. Returns shape (len(qs), columns)."""
    ordered = np.sort(values, axis=0)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(values), axis=0)
    columns = np.flatnonzero(count)
    out = np.full((len(qs), values.shape[1]), np.nan)
    for i, q in enumerate(qs):
        position = q * (count[columns] - 1)
        low = np.floor(position).astype(int)
        high = np.ceil(position).astype(int)
        a, b = ordered[low, columns], ordered[high, columns]
        out[i, columns] = a + (b - a) * (position - low)
    return out


def setting_values(runs: pd.DataFrame, setting: str) -> list:
    """The values ``setting`` takes: numbers in increasing order (``all`` last), other values in
    the order of the grid."""
    values = list(pd.unique(runs[setting]))
    if pd.api.types.is_numeric_dtype(runs[setting]):
        return sorted((v for v in values if not pd.isna(v)), key=float) + [
            v for v in values if pd.isna(v)
        ]
    return values


def groups(runs: pd.DataFrame, setting: str | None) -> Iterator[tuple[str, np.ndarray]]:
    """(label, row positions) for each value of ``setting``; one group of every run for None."""
    if setting is None:
        yield "all runs", np.arange(len(runs))
        return
    for value in setting_values(runs, setting):
        yield setting_label(setting, value), np.flatnonzero(matches(runs[setting], value))


def matches(column: pd.Series, value) -> np.ndarray:
    """Where ``column`` holds ``value``, a missing value matching a missing one."""
    same = column.isna() if pd.isna(value) else (column == value).fillna(False)
    return same.to_numpy(dtype=bool)


# --- convergence curves ---------------------------------------------------------------------


def convergence_chart(view: SweepView) -> Chart:
    """Loss against epoch on a log axis, one panel per grid setting, a line per value."""
    if not view.has_epochs:
        return Chart("No curves yet: no epoch has been logged.")
    facets = view.axes or [None]
    settled = view.settled()
    limits = loss_limits(settled, view.diverged)
    fig, axes = _panels(len(facets), columns=2, height=3.2)
    curves = sum(
        _facet(ax, view, settled, setting, limits) for ax, setting in zip(axes, facets, strict=True)
    )
    axes[0].set_ylabel(view.metric)
    by = "each grid setting" if view.axes else "all runs together (nothing in the grid varies)"
    caption = (
        f"{view.metric} against epoch, grouped by {by}. Thick line: the median over every run "
        "with that value (all other settings and seeds); band: the interquartile range; thin "
        "lines: each configuration's median over its seeds. × marks where a run diverged; a "
        "diverged run counts as off the chart from then on."
    )
    return Chart(caption, _encode(fig, dense=curves > SVG_CURVES), f"{view.name}: curves")


def _facet(ax, view: SweepView, settled: np.ndarray, setting, limits) -> int:
    """Draw the runs grouped by ``setting``; return how many curves that took."""
    epochs, ceiling = view.curves.epochs, limits[1] * 10
    drawn = 0
    for color, (label, rows) in zip(itertools.cycle(COLORS), groups(view.runs, setting)):
        drawn += _thin_lines(ax, view, settled, rows, color, ceiling)
        low, mid, high = np.minimum(quantiles(settled[rows]), ceiling)
        ax.fill_between(epochs, low, high, color=color, alpha=0.18, linewidth=0)
        ax.plot(epochs, mid, color=color, linewidth=2, label=f"{label} ({len(rows)})")
        mark_divergence(ax, view, rows, color)
        drawn += 1
    ax.set_title("all runs" if setting is None else f"by {setting}")
    epoch_axis(ax)
    log_y(ax, limits)
    ax.legend(loc="lower left", title=setting)
    return drawn


def _thin_lines(ax, view: SweepView, settled, rows, color, ceiling) -> int:
    """Each configuration's median over seeds (each run, when all rows are one
    configuration), as one LineCollection."""
    configurations = view.runs.configuration.to_numpy()[rows]
    if len(set(configurations)) > 1:
        lines = [quantiles(settled[rows[configurations == c]], (0.5,))[0]
                 for c in dict.fromkeys(configurations)]  # fmt: skip
    else:
        lines = list(settled[rows]) if len(rows) > 1 else []
    epochs = view.curves.epochs
    segments = [np.column_stack([epochs, np.minimum(line, ceiling)]) for line in lines]
    ax.add_collection(LineCollection(segments, colors=[color], linewidths=0.6, alpha=0.35))
    return len(segments)


def mark_divergence(ax, view: SweepView, rows: np.ndarray, color) -> None:
    """An × at the top of the panel over the epoch each diverged run diverged at."""
    diverged = rows[view.diverged[rows]]
    if diverged.size:
        at = view.runs.epochs_run.to_numpy()[diverged]
        top = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(at, np.full(at.shape, 0.97), color=color, transform=top, **DIVERGED_MARK)


def _positive_range(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values) & (values > 0)]
    return (values.min(), values.max()) if values.size else (0.1, 10.0)


def loss_limits(settled: np.ndarray, diverged: np.ndarray) -> tuple[float, float]:
    """A log-axis range for the runs that did not diverge (diverged ones leave it upwards,
    an × marking where), or for every run when all diverged."""
    values = settled[~diverged] if not diverged.all() else settled
    values = values[np.isfinite(values) & (values > 0) & (values < DIVERGED)]
    if not values.size:
        return 0.1, 10.0
    low, high = values.min() * 0.8, values.max() * 1.3
    return low, max(high, low * 10)


def epoch_axis(ax) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def log_y(ax, limits) -> None:
    ax.set_yscale("log")
    ax.set_ylim(*limits)
    plain_log_ticks(ax.yaxis, *limits)


def plain_log_ticks(axis, low: float, high: float) -> None:
    """Ticks on a log axis (of a panel or a colour bar) at 1, 2, 5 × 10^k (only 10^k over
    more than three decades), labelled as plain numbers, never as math text; no minor ticks,
    which cost more to lay out than the curves do to draw."""
    wide = high / low > 1e3
    axis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(PLAIN_NUMBER)
    axis.set_minor_locator(NullLocator())


# --- learning rate × batch size heatmap -----------------------------------------------------


def heatmap_chart(view: SweepView) -> Chart:
    """Median final loss over learning rate × batch size, a panel per (activation, GD)."""
    runs = view.runs
    if not all(runs[s].nunique(dropna=False) > 1 for s in ("learning_rate", "batch_size")):
        return Chart(
            "No heatmap: it needs both the learning rate and the batch size to vary in the grid "
            "(batch GD counts as batch size 'all', stochastic GD as 1)."
        )
    if not (view.clean | view.diverged).any():
        return Chart("No heatmap yet: no run has finished.")
    activations, variants = setting_values(runs, "activation"), setting_values(runs, "gd")
    rates = setting_values(runs, "learning_rate")
    sizes = {_key(gd): setting_values(runs[matches(runs.gd, gd)], "batch_size") for gd in variants}
    cells = _cells(view, activations, rates, sizes)
    norm = _norm([median for median, _, _ in cells.values()])
    widths = [max(1.5, 0.9 * len(sizes[_key(gd)])) for gd in variants]
    size = (1.8 + sum(widths), len(activations) * (1.0 + 0.42 * len(rates)))
    fig = Figure(figsize=size, layout="constrained")
    panels = fig.subplots(len(activations), len(variants), squeeze=False,
                          gridspec_kw={"width_ratios": widths})  # fmt: skip
    for (i, activation), (j, gd) in itertools.product(enumerate(activations), enumerate(variants)):
        ax, columns = panels[i, j], sizes[_key(gd)]
        _heatmap(ax, *cells[_key(activation), _key(gd)], norm)
        ax.set_title(f"{setting_label('activation', activation)} · {setting_label('gd', gd)}")
        ax.set_xticks(range(len(columns)), [setting_label("batch_size", s) for s in columns])
        ax.set_yticks(range(len(rates)), [setting_label("learning_rate", r) for r in rates])
        ax.set_xlabel("batch size")
        ax.set_ylabel("learning rate" if j == 0 else "")
    bar = fig.colorbar(
        ScalarMappable(norm, "viridis_r"), ax=panels, label=f"median final {view.metric}"
    )
    plain_log_ticks(bar.ax.yaxis, norm.vmin, norm.vmax)
    others = [a for a in view.axes if a not in ("learning_rate", "batch_size", "activation", "gd")]
    caption = (
        f"Median final {view.metric} over the runs in each cell that finished without diverging "
        f"(over seeds{' and ' + ', '.join(others) if others else ''}); 'k/n div.' counts the "
        "cell's runs that diverged; grey: no run finished cleanly."
    )
    return Chart(caption, _encode(fig, dense=False), f"{view.name}: heatmap")


def _cells(view: SweepView, activations: list, rates: list, sizes: dict) -> dict:
    """For each (activation, GD variant) panel, the (rates × sizes[gd]) arrays of the median
    final loss of its clean runs, of its diverged runs, and of all its runs."""
    runs = view.runs.assign(clean_final=view.runs.final.where(view.clean), bad=view.diverged)
    stats = runs.groupby(["activation", "gd", "learning_rate", "batch_size"], dropna=False).agg(
        median=("clean_final", "median"), diverged=("bad", "sum"), total=("run_id", "size")
    )
    row = {_key(rate): i for i, rate in enumerate(rates)}
    column = {gd: {_key(size): j for j, size in enumerate(values)} for gd, values in sizes.items()}
    cells = {}
    for activation, gd in itertools.product(map(_key, activations), sizes):
        shape = (len(rates), len(sizes[gd]))
        cells[activation, gd] = (np.full(shape, np.nan), np.zeros(shape, int), np.zeros(shape, int))
    for (activation, gd, rate, size), stat in stats.iterrows():
        panel = (_key(activation), _key(gd))
        median, diverged, total = cells[panel]
        i, j = row[_key(rate)], column[panel[1]][_key(size)]
        median[i, j], diverged[i, j], total[i, j] = stat["median"], stat.diverged, stat.total
    return cells


def _key(value):
    """A setting's value as a dict key: every kind of missing value is None."""
    return None if pd.isna(value) else value


def _norm(medians: list[np.ndarray]) -> LogNorm:
    values = np.concatenate([m.ravel() for m in medians])
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return LogNorm(0.1, 1.0)
    low, high = values.min(), values.max()
    return LogNorm(low, high if high > low else low * 1.01)


def _heatmap(ax, median, diverged, total, norm) -> None:
    cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="#d9d9d9")
    ax.imshow(np.ma.masked_invalid(median), cmap=cmap, norm=norm, origin="lower", aspect="auto")
    ax.grid(False)
    for (i, j), value in np.ndenumerate(median):
        lines = [] if np.isnan(value) else [f"{value:.3g}"]
        if diverged[i, j]:
            lines.append(f"{diverged[i, j]}/{total[i, j]} div.")
        dark = not np.isnan(value) and norm(value) > 0.6
        ax.text(j, i, "\n".join(lines), ha="center", va="center", fontsize=7.5,
                color="white" if dark else "black")  # fmt: skip


# --- batch vs stochastic vs mini-batch ------------------------------------------------------


def gd_chart(view: SweepView) -> Chart:
    """Each GD variant's loss against epochs and against seconds of training."""
    if "gd" not in view.axes:
        variants = ", ".join(map(str, setting_values(view.runs, "gd"))) or "none"
        return Chart(
            f"One GD variant only ({variants}): put gd: [batch, stochastic, minibatch] in the "
            "grid to compare them."
        )
    if not view.has_epochs:
        return Chart("No curves yet: no epoch has been logged.")
    settled = view.settled()
    limits = loss_limits(settled, view.diverged)
    fig, (by_epoch, by_time) = _panels(2, columns=2, height=3.2)
    for color, (label, rows) in zip(itertools.cycle(COLORS), groups(view.runs, "gd")):
        low, mid, high = np.minimum(quantiles(settled[rows]), limits[1] * 10)
        seconds = quantiles(view.curves.elapsed[rows], (0.5,))[0]
        for ax, x in ((by_epoch, view.curves.epochs), (by_time, seconds)):
            ax.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)
            ax.plot(x, mid, color=color, linewidth=2, label=f"{label} ({len(rows)})")
        mark_divergence(by_epoch, view, rows, color)
    by_epoch.set(ylabel=view.metric, title="against epochs")
    epoch_axis(by_epoch)
    by_time.set(xlabel="seconds of training (median over runs)", title="against wall-clock time")
    by_time.set_xscale("log")
    plain_log_ticks(by_time.xaxis, *_positive_range(view.curves.elapsed))
    for ax in (by_epoch, by_time):
        log_y(ax, limits)
        ax.legend(loc="lower left", title="gd")
    caption = (
        "An epoch of batch GD is one update on every sample, of stochastic GD one update per "
        "sample, of mini-batch GD one per batch: per epoch, stochastic GD updates most and costs "
        "most, so the right panel puts them on the clock. Median over each variant's runs (all "
        "other settings and seeds), band: interquartile range."
    )
    return Chart(caption, _encode(fig, dense=False), f"{view.name}: GD variants")


# --- marginal effect of each setting --------------------------------------------------------


def marginal_chart(view: SweepView) -> Chart:
    """Final loss of the clean runs against each grid setting's values, as box plots."""
    if not view.axes:
        return Chart("No marginal effects: nothing in the grid varies.")
    if not view.clean.any():
        return Chart("No marginal effects: no run has finished without diverging.")
    finals = view.runs.final.to_numpy()
    fig, panels = _panels(len(view.axes), columns=3, height=2.6)
    for ax, setting in zip(panels, view.axes, strict=True):
        labels = []
        for position, (label, rows) in enumerate(groups(view.runs, setting)):
            values = finals[rows[view.clean[rows]]]
            values = values[np.isfinite(values)]
            if values.size:
                ax.boxplot([values], positions=[position], widths=0.5, showfliers=True,
                           flierprops={"markersize": 3})  # fmt: skip
            trouble = int(view.diverged[rows].sum())
            labels.append(f"{label}\n{trouble}/{len(rows)} div." if trouble else label)
        ax.set_xticks(range(len(labels)), labels)
        ax.tick_params(axis="x", labelrotation=30 if len(labels) > 4 else 0)
        ax.set_title(setting)
        values = finals[view.clean & np.isfinite(finals) & (finals > 0)]
        log_y(ax, (values.min() * 0.8, values.max() * 1.25) if values.size else (0.1, 10))
    panels[0].set_ylabel(f"final {view.metric}")
    caption = (
        f"Final {view.metric} of the runs that finished without diverging, for each value of "
        "each grid setting (over all other settings and seeds). 'k/n div.' counts the runs with "
        "that value that diverged."
    )
    return Chart(caption, _encode(fig, dense=False), f"{view.name}: marginal effects")


# --- several sweeps side by side ------------------------------------------------------------


def comparison_chart(views: list[SweepView], top: int = 3) -> Chart:
    """Each sweep's best configurations' curves, one panel per sweep, on a shared axis."""
    settled = [view.settled() for view in views]
    limits = loss_limits(
        np.concatenate([loss.ravel() for loss in settled]),
        np.concatenate(
            [np.repeat(v.diverged, loss.shape[1]) for v, loss in zip(views, settled, strict=True)]
        ),
    )
    fig, panels = _panels(len(views), columns=len(views), height=3.2, sharey=True)
    for ax, view, loss in zip(panels, views, settled, strict=True):
        ax.set_title(view.name)
        epoch_axis(ax)
        best = view.configurations.head(top).itertuples()
        for color, row in zip(itertools.cycle(COLORS), best):
            rows = np.flatnonzero(view.runs.configuration.to_numpy() == row.configuration)
            low, mid, high = np.minimum(quantiles(loss[rows]), limits[1] * 10)
            ax.fill_between(view.curves.epochs, low, high, color=color, alpha=0.18, lw=0)
            ax.plot(view.curves.epochs, mid, color=color, lw=2,
                    label=configuration_label(view, row))  # fmt: skip
        if ax.lines:
            ax.legend(loc="lower left")
        else:
            ax.text(0.5, 0.5, "no curves yet", ha="center", transform=ax.transAxes)
        log_y(ax, limits)
    panels[0].set_ylabel(views[0].metric)
    caption = (
        f"The best {top} configurations of each sweep, ranked as in its table: median "
        f"{views[0].metric} over seeds, band: interquartile range."
    )
    return Chart(caption, _encode(fig, dense=False), "best configurations of each sweep")


# --- figure plumbing ------------------------------------------------------------------------


def _panels(n: int, columns: int, height: float, sharey: bool = False):
    """A figure of ``n`` panels in rows of ``columns``; the spare ones hidden."""
    columns = max(1, min(n, columns))
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(min(11.0, 3.8 * columns + 0.6), height * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharey=sharey).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _show_short_curves(fig: Figure) -> None:
    """A curve of one or two points gets markers (a lone point draws no line), and an epoch
    axis spanning a single epoch gets room around it."""
    for ax in fig.axes:
        for line in ax.lines:
            if len(line.get_xdata()) <= 2 and line.get_marker() in ("None", "", None):
                line.set_marker("o")
        low, high = ax.get_xlim()
        if ax.get_xlabel() == "epoch" and high - low < 1:
            ax.set_xlim(0.5, 1.5)


def _encode(fig: Figure, dense: bool) -> str:
    """The figure as a ``data:`` URI, PNG when ``dense`` else SVG. The caller draws and encodes
    inside ``matplotlib.rc_context(STYLE)``, so no text is parsed as math, tick labels
    included (they are made while saving)."""
    _show_short_curves(fig)
    buffer = io.BytesIO()
    if dense:
        fig.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
        mime = "image/png"
    else:
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        mime = "image/svg+xml"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
