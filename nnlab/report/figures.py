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

from nnlab.report.analysis import (
    DIVERGED,
    RATE,
    SweepView,
    configuration_label,
    matches,
    pair_cells,
    setting_label,
    setting_pairs,
    setting_values,
)
from nnlab.store.query import quantiles

STYLE = {
    "text.usetex": False,
    "text.parse_math": False,  # every Text made while drawing: titles, labels, legends, ticks
    "svg.fonttype": "none",  # text stays text: a fraction of the size of glyph outlines
    "svg.hashsalt": "nnlab",  # the same store gives the same file
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    # a title on its panel's top edge, never moved: nothing is drawn above a panel, and moving
    # it measured the y axis again for every title at every draw and layout pass
    "axes.titley": 1.0,
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
PLAIN_NUMBER = FuncFormatter(lambda value, _: f"{value:g}")
# A diverged run leaves the chart upwards: a triangle on the top edge at the epoch it did.
DIVERGED_MARK = {"marker": "^", "linestyle": "none", "markersize": 5, "clip_on": False}
# Past this many configurations for one value, their thin lines are spaghetti: only the median
# and the band are drawn.
THIN_LINES = 12
WIDE_HEATMAP = 4  # columns of cells past which a heatmap takes more room, in smaller text
TOP = 3  # best configurations drawn where curves are compared
# Bands under medians, the configurations' thin lines under both.
Z_THIN, Z_BAND, Z_MEDIAN = 1, 2, 3


@dataclass(frozen=True)
class Chart:
    """A figure as the page shows it: ``uri`` is the image, else ``caption`` says why none."""

    caption: str
    uri: str | None = None
    alt: str = ""


def groups(runs: pd.DataFrame, setting: str | None) -> Iterator[tuple[str, np.ndarray]]:
    """(label, row positions) for each value of ``setting``; one group of every run for None."""
    if setting is None:
        yield "all runs", np.arange(len(runs))
        return
    for value in setting_values(runs, setting):
        yield setting_label(setting, value), np.flatnonzero(matches(runs[setting], value))


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
        "lines: each configuration's median over its seeds (left out for a value with more "
        f"than {THIN_LINES} configurations). The y axis spans the runs that did not diverge "
        "(up to their 99th percentile); ▲ on the top edge marks the epoch a diverged run left "
        "the chart, and it counts as off the chart from then on."
    )
    if view.scheduler is not None:
        caption += (
            f" Under the sweep's scheduler ({view.scheduler['type']}), a pruned run's curve "
            "stops at its rung and no run is carried past the last rung its configuration "
            "reached: past each rung, the median and band are over the runs that trained there."
        )
    return Chart(caption, _encode(fig, dense=curves > SVG_CURVES), f"{view.name}: curves")


def _facet(ax, view: SweepView, settled: np.ndarray, setting, limits) -> int:
    """Draw the runs grouped by ``setting``; return how many curves that took."""
    epochs, ceiling = view.curves.epochs, limits[1] * 10
    drawn = 0
    for color, (label, rows) in zip(itertools.cycle(COLORS), groups(view.runs, setting)):
        drawn += _thin_lines(ax, view, settled, rows, color, ceiling)
        quartiles = np.minimum(quantiles(settled[rows]), ceiling)
        band(ax, epochs, quartiles, color, f"{label} ({len(rows)})")
        mark_divergence(ax, settled, view.diverged, rows, limits, color)
        drawn += 1
    ax.set_title("all runs" if setting is None else f"by {setting}")
    epoch_axis(ax)
    log_y(ax, limits)
    legend_below(ax, setting)
    return drawn


def _thin_lines(ax, view: SweepView, settled, rows, color, ceiling) -> int:
    """Each configuration's median over seeds (each run, when all rows are one
    configuration), as one LineCollection; none past ``THIN_LINES`` configurations."""
    configurations = view.runs.configuration.to_numpy()[rows]
    distinct = list(dict.fromkeys(configurations))
    if len(distinct) > THIN_LINES:
        return 0
    if len(distinct) > 1:
        lines = [quantiles(settled[rows[configurations == c]], (0.5,))[0] for c in distinct]
    else:
        lines = list(settled[rows]) if 1 < len(rows) <= THIN_LINES else []
    epochs = view.curves.epochs
    segments = [np.column_stack([epochs, np.minimum(line, ceiling)]) for line in lines]
    thin = LineCollection(segments, colors=[color], linewidths=0.6, alpha=0.35, zorder=Z_THIN)
    ax.add_collection(thin)
    return len(segments)


def band(ax, x, quartiles: np.ndarray, color, label: str, **style) -> None:
    """The interquartile range as a band under the median, drawn over any thin lines. A
    curve of one or two epochs gets markers (a lone point draws no line)."""
    low, mid, high = quartiles
    ax.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0, zorder=Z_BAND)
    median_line(ax, x, mid, color, label, **style)


def median_line(ax, x, mid: np.ndarray, color, label: str | None, **style) -> None:
    """A median curve; one of one or two epochs gets markers (a lone point draws no line)."""
    if len(x) <= 2:
        style.setdefault("marker", "o")
    ax.plot(x, mid, color=color, linewidth=2, label=label, zorder=Z_MEDIAN, **style)
    lone = _lone_points(np.asarray(mid, dtype=float))
    if lone.any() and "marker" not in style:  # a curve cut after one epoch (pruned) is a dot
        ax.plot(np.asarray(x)[lone], np.asarray(mid)[lone], "o", color=color, markersize=3)


def _lone_points(values: np.ndarray) -> np.ndarray:
    """Where ``values`` is finite with no finite neighbour: a point no line segment draws."""
    finite = np.isfinite(values)
    before = np.concatenate([[False], finite[:-1]])
    after = np.concatenate([finite[1:], [False]])
    return finite & ~before & ~after


def legend_below(ax, title: str | None = None, columns: int = 2) -> None:
    """The legend under the panel, where it hides no curve."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=columns, title=title)


def mark_divergence(ax, settled, diverged, rows: np.ndarray, limits, color) -> None:
    """A ▲ on the top edge of the panel at the epoch each diverged run left it."""
    gone = rows[diverged[rows]]
    if gone.size:
        at = exit_epochs(settled[gone], limits[1])
        top = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(at, np.ones(at.shape), color=color, transform=top, **DIVERGED_MARK)


def exit_epochs(settled: np.ndarray, top: float) -> np.ndarray:
    """For each row of ``settled`` (diverged runs × epochs), the first epoch whose loss is
    above ``top``, or the last epoch of all when it stays on the chart."""
    above = settled > top
    return np.where(above.any(axis=1), above.argmax(axis=1) + 1, settled.shape[1])


def _positive_range(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values) & (values > 0)]
    return (values.min(), values.max()) if values.size else (0.1, 10.0)


def loss_limits(settled: np.ndarray, diverged: np.ndarray) -> tuple[float, float]:
    """A log-axis range from the lowest loss of the runs that did not diverge to their 99th
    percentile, with a margin (diverged runs and the rare spike leave it upwards, a ▲ marking
    where), or of every run when all diverged."""
    values = settled[~diverged] if not diverged.all() else settled
    values = values[np.isfinite(values) & (values > 0) & (values < DIVERGED)]
    if not values.size:
        return 0.1, 10.0
    low, high = values.min() * 0.8, np.percentile(values, 99) * 1.3
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
    axis.set_major_locator(_InViewLogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(PLAIN_NUMBER)
    axis.set_minor_locator(NullLocator())


class _InViewLogLocator(LogLocator):
    """``LogLocator``'s ticks inside the view only: it adds a decade or two on either side,
    each one a tick matplotlib makes and updates at every layout pass and draw, never shown."""

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        ticks = super().tick_values(vmin, vmax)
        if min(vmin, vmax) <= 0:  # matplotlib replaces a limit of 0 with the data's own
            return ticks
        low, high = np.log10(sorted((vmin, vmax)))
        slack = (high - low) * 1e-9  # looser than matplotlib's own test of a tick in view
        with np.errstate(divide="ignore"):
            at = np.log10(ticks)
        return ticks[(at >= low - slack) & (at <= high + slack)]


# --- two settings at a time: heatmaps -------------------------------------------------------


def heatmap_chart(view: SweepView) -> Chart:
    """Median final loss over each pair of grid settings (at most ``PAIRS``, the most varied
    first), a panel per pair, the diverged runs counted in each cell."""
    if len(view.axes) < 2:
        varies = f"only {view.axes[0]} varies" if view.axes else "nothing varies"
        return Chart(f"No heatmap: it needs two settings that vary in the grid; {varies}.")
    if not (view.clean | view.diverged).any():
        return Chart("No heatmap yet: no run has finished.")
    pairs = setting_pairs(view.runs, view.axes)
    cells = [pair_cells(view.runs, rows, columns) for rows, columns in pairs]
    norm = _norm([median for median, _, _ in cells])
    tallest = max(len(setting_values(view.runs, rows)) for rows, _ in pairs)
    widest = max(len(setting_values(view.runs, columns)) for _, columns in pairs)
    per_row = 3 if widest <= WIDE_HEATMAP else 2  # room for each cell's text
    fig, panels = _panels(len(pairs), columns=per_row, height=1.2 + 0.4 * tallest)
    for ax, (rows, columns), cell in zip(panels, pairs, cells, strict=True):
        _heatmap(ax, *cell, norm)
        ax.set_title(f"{rows} × {columns}")
        _label_cells(ax, view.runs, rows, columns)
    bar = fig.colorbar(
        ScalarMappable(norm, "viridis_r"), ax=panels, label=f"median final {view.metric}"
    )
    plain_log_ticks(bar.ax.yaxis, norm.vmin, norm.vmax)
    total = math.comb(len(view.axes), 2)
    left_out = f" ({total - len(pairs)} less varied pairs left out)" if total > len(pairs) else ""
    caption = (
        f"Median final {view.metric} over the runs in each cell that finished without "
        "diverging (over seeds and every other setting), for each pair of grid settings, the "
        f"pairs whose runs fill the most cells first{left_out}. 'k/n div.' counts the cell's "
        "runs that diverged; grey: no run finished cleanly; '–': no run has both values (batch "
        "GD's batch size is 'all')."
    )
    return Chart(caption, _encode(fig, dense=False), f"{view.name}: heatmaps")


def _label_cells(ax, runs: pd.DataFrame, rows: str, columns: str) -> None:
    across = setting_values(runs, columns)
    down = setting_values(runs, rows)
    ax.set_xticks(range(len(across)), [setting_label(columns, v) for v in across])
    ax.set_yticks(range(len(down)), [setting_label(rows, v) for v in down])
    ax.tick_params(axis="x", labelrotation=30 if len(across) > 4 else 0)
    ax.set(xlabel=columns, ylabel=rows)


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
        dark = not np.isnan(value) and norm(value) > 0.6
        color = "white" if dark else "black"
        text = _cell_text(value, diverged[i, j], total[i, j])
        size = 7.5 if median.shape[1] <= WIDE_HEATMAP else 6.5
        # in_layout=False: centred in its cell, inside the panel, so no layout pass measures it
        ax.text(j, i, text, ha="center", va="center", fontsize=size, color=color, in_layout=False)


def _cell_text(median: float, diverged: int, total: int) -> str:
    if total == 0:
        return "–"
    lines = [] if np.isnan(median) else [f"{median:.3g}"]
    if diverged:
        lines.append(f"{diverged}/{total} div.")
    return "\n".join(lines)


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
        quartiles = np.minimum(quantiles(settled[rows]), limits[1] * 10)
        seconds = quantiles(view.curves.elapsed[rows], (0.5,))[0]
        for ax, x in ((by_epoch, view.curves.epochs), (by_time, seconds)):
            band(ax, x, quartiles, color, f"{label} ({len(rows)})")
        mark_divergence(by_epoch, settled, view.diverged, rows, limits, color)
    by_epoch.set(ylabel=view.metric, title="against epochs")
    epoch_axis(by_epoch)
    by_time.set(xlabel="seconds of training (median over runs)", title="against wall-clock time")
    by_time.set_xscale("log")
    plain_log_ticks(by_time.xaxis, *_positive_range(view.curves.elapsed))
    for ax in (by_epoch, by_time):
        log_y(ax, limits)
        legend_below(ax, "gd")
    caption = (
        "An epoch of batch GD is one update on every sample, of stochastic GD one update per "
        "sample, of mini-batch GD one per batch: per epoch, stochastic GD updates most and costs "
        "most, so the right panel puts them on the clock. Median over each variant's runs (all "
        "other settings and seeds), band: interquartile range."
    )
    return Chart(caption, _encode(fig, dense=False), f"{view.name}: GD variants")


# --- training vs validation: loss and accuracy ---------------------------------------------


def fit_chart(view: SweepView, top: int = TOP) -> Chart:
    """The best configurations' training and validation loss on one panel and, for a
    classification sweep, their training and validation accuracy on another."""
    if not view.has_epochs:
        return Chart("No curves yet: no epoch has been logged.")
    if not view.clean.any():
        return Chart("No best configuration yet: no run has finished without diverging.")
    parts = [p for p in ("val", "train") if np.isfinite(view.series[f"{p}_loss"]).any()]
    kinds = ["loss", "accuracy"] if view.has_accuracy else ["loss"]
    fig, panels = _panels(len(kinds), columns=2, height=3.4)
    best = view.configurations.head(top)
    for ax, kind in zip(panels, kinds, strict=True):
        drawn = _fit_lines(ax, view, best, [f"{part}_{kind}" for part in parts])
        ax.set(title=f"{kind} of the best {len(best)}", ylabel=kind)
        epoch_axis(ax)
        if kind == "loss":
            log_y(ax, loss_limits(drawn, np.zeros(len(drawn), dtype=bool)))
    fig.legend(*panels[0].get_legend_handles_labels(), loc="outside lower center")
    lines = "solid: validation, dashed: training" if len(parts) == 2 else _ONE_SIDE[parts[0]]
    missing = "" if view.has_accuracy else " No accuracy was recorded (a regression loss)."
    caption = (
        f"The best {len(best)} configurations, ranked as in the table: median over their "
        f"seeds after each epoch ({lines}). A validation loss that rises while the training "
        f"loss falls is overfitting.{missing}"
    )
    return Chart(caption, _encode(fig, dense=False), f"{view.name}: training vs validation")


# What the training-vs-validation figure draws when a sweep logged only one side
_ONE_SIDE = {"val": "validation only", "train": "training only: no validation data"}


def _fit_lines(ax, view: SweepView, best: pd.DataFrame, series: list[str]) -> np.ndarray:
    """Each best configuration's median of each of ``series``, validation solid, training
    dashed; return the medians drawn (curves × epochs)."""
    configurations = view.runs.configuration.to_numpy()
    settled = {name: view.settled_series(name) for name in series}
    drawn = []
    for color, row in zip(itertools.cycle(COLORS), best.itertuples()):
        rows = np.flatnonzero(configurations == row.configuration)
        for name in series:
            mid = quantiles(settled[name][rows], (0.5,))[0]
            label = configuration_label(view, row) if name == series[0] else None
            style = {"linestyle": "--"} if name.startswith("train") else {}
            median_line(ax, view.curves.epochs, mid, color, label, **style)
            drawn.append(mid)
    return np.array(drawn)


# --- marginal effect of each setting --------------------------------------------------------


def marginal_chart(view: SweepView) -> Chart:
    """Final loss of the clean runs against each grid setting's values, as box plots."""
    if not view.axes:
        return Chart("No marginal effects: nothing in the grid varies.")
    if not view.clean.any():
        return Chart("No marginal effects: no run has finished without diverging.")
    finals = view.runs.final.to_numpy()
    fig, panels = _panels(len(view.axes), columns=3, height=2.6)
    box = {"widths": 0.5, "showfliers": True, "flierprops": {"markersize": 3}}
    for ax, setting in zip(panels, view.axes, strict=True):
        labels, boxes = [], {}  # position: the values of its box
        for position, (label, rows) in enumerate(groups(view.runs, setting)):
            values = finals[rows[view.clean[rows]]]
            values = values[np.isfinite(values)]
            if values.size:
                boxes[position] = values
            trouble = int(view.diverged[rows].sum())
            labels.append(f"{label}\n{trouble}/{len(rows)} div." if trouble else label)
        if boxes:  # all of a panel's boxes in one call: each call reads every rcParam again
            ax.boxplot(list(boxes.values()), positions=list(boxes), **box)
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


def schedule_chart(view: SweepView) -> Chart:
    """Each epoch's learning rate, a line per distinct schedule of the grid (its median over
    the runs that share it), when any run's changed."""
    rates = view.series[RATE]
    present = np.isfinite(rates)  # an epoch logged without its η (an old store) is NaN
    high = np.where(present, rates, -np.inf).max(axis=1, initial=-np.inf)
    low = np.where(present, rates, np.inf).min(axis=1, initial=np.inf)
    if not (present.any(axis=1) & (high > low)).any():
        return Chart("Every run kept its learning rate: no schedule changed it.")
    setting = "learning_rate_schedule" if "learning_rate_schedule" in view.axes else None
    fig, (ax,) = _panels(1, columns=1, height=2.8)
    x = view.curves.epochs
    for index, (label, rows) in enumerate(groups(view.runs, setting)):
        median = quantiles(rates[rows])[1]
        if np.isfinite(median).any():
            median_line(ax, x, median, COLORS[index % len(COLORS)], label)
    finite = rates[np.isfinite(rates) & (rates > 0)]
    log_y(ax, (finite.min() * 0.8, finite.max() * 1.25))
    epoch_axis(ax)
    ax.set_ylabel("learning rate η")
    legend_below(ax, title=setting)
    caption = (
        "The learning rate each epoch trained with (the median over the runs of each schedule; "
        "an adaptive schedule's runs divide theirs at different epochs)."
    )
    return Chart(caption, _encode(fig, dense=False), f"{view.name}: learning rate by epoch")


# --- several sweeps side by side ------------------------------------------------------------


def comparison_chart(views: list[SweepView], top: int = TOP) -> Chart:
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
            quartiles = np.minimum(quantiles(loss[rows]), limits[1] * 10)
            band(ax, view.curves.epochs, quartiles, color, configuration_label(view, row))
        if ax.lines:
            legend_below(ax, columns=1)  # configurations' labels are long
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


def _widen_single_epoch(fig: Figure) -> None:
    """An epoch axis spanning a single epoch gets room around it."""
    for ax in fig.axes:
        low, high = ax.get_xlim()
        if ax.get_xlabel() == "epoch" and high - low < 1:
            ax.set_xlim(0.5, 1.5)


def _encode(fig: Figure, dense: bool) -> str:
    """The figure as a ``data:`` URI, PNG when ``dense`` else SVG. The caller draws and encodes
    inside ``matplotlib.rc_context(STYLE)``, so no text is parsed as math, tick labels
    included (they are made while saving)."""
    _widen_single_epoch(fig)
    # Lay the figure out once and save it without its layout engine: with one, savefig draws
    # the whole figure twice (once only to lay it out), which cost a third of each figure.
    if dense:
        fig.dpi = PNG_DPI  # laid out at the resolution it is saved at
    fig.get_layout_engine().execute(fig)
    fig.set_layout_engine(None)
    buffer = io.BytesIO()
    if dense:
        fig.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
        mime = "image/png"
    else:
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        mime = "image/svg+xml"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
