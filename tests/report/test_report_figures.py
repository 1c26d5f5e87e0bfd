"""The report's figures: markers, axis ranges, dense sweeps, heatmaps, accuracy, legends."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from test_report import PARTS, figure, parts, svg_text, write_sweep
from test_report import real as real  # the module's fixture: one real, finished sweep

import nnlab
from nnlab.report import render_report
from nnlab.report.analysis import DIVERGED, load_sweep, pair_cells, setting_pairs
from nnlab.report.figures import (
    THIN_LINES,
    _facet,
    exit_epochs,
    legend_below,
    loss_limits,
)


def markers(svg: bytes) -> int:
    """How many round markers (``o``) an SVG figure draws: each is a <use> of a path in <defs>
    made of Bézier curves (tick marks, the other <use>s, are straight)."""
    round_ids = re.findall(rb'<path id="(m[0-9a-f]+)" d="[^"]*C', svg)
    return sum(svg.count(b'xlink:href="#' + mark + b'"') for mark in round_ids)


def seeds(settings: dict, losses: list, n: int, status="completed") -> list:
    """``n`` seeds of one configuration, each seed's curve a little lower than the last."""
    return [(settings, s, status, [loss * (1 - 0.05 * s) for loss in losses]) for s in range(n)]


def test_box_plots_carry_no_markers_on_their_caps_and_medians(sqlite_url):
    # issue 10: every 2-point line got a marker, box-plot whiskers, caps and medians too
    curve = [1.0, 0.6, 0.4, 0.3]
    runs = seeds({"learning_rate": 0.1}, curve, 4) + seeds({"learning_rate": 0.2}, curve, 4)
    write_sweep(sqlite_url, "boxes", runs)
    html = render_report(nnlab.connect(sqlite_url), ["boxes"])
    marginal = figure(html, "marginal effects")
    assert b"<path" in marginal and markers(marginal) == 0  # no outliers: no marker at all
    assert markers(figure(html, "curves")) == 0  # 4-epoch curves: lines only


def test_a_single_epoch_sweep_draws_its_points(sqlite_url):
    runs = [({"learning_rate": r}, 0, "completed", [0.5 + r]) for r in (0.1, 0.2)]
    write_sweep(sqlite_url, "one", runs)
    html = render_report(nnlab.connect(sqlite_url), ["one"])
    assert parts(html) == list(PARTS)
    curves = figure(html, "curves")
    assert markers(curves) == 4  # a point per learning rate, and one in its legend entry
    assert "0.5" in svg_text(curves) and "1.5" in svg_text(curves)  # room around epoch 1


def test_the_y_axis_spans_the_runs_that_did_not_diverge(sqlite_url):
    # 21 clean runs between 1 and 0.1, one of them spiking to 1,000 for one epoch; one diverged
    curve = list(np.geomspace(1.0, 0.1, 12))
    spiked = [*curve[:5], 1000.0, *curve[6:]]
    runs = [
        *seeds({"learning_rate": 0.01}, curve, 7),
        *seeds({"learning_rate": 0.03}, curve, 6),
        ({"learning_rate": 0.03}, 6, "completed", spiked),
        *seeds({"learning_rate": 0.1}, curve, 7),
        ({"learning_rate": 0.1}, 7, "diverged", [1.0, 90.0, 1e4]),
    ]
    write_sweep(sqlite_url, "spike", runs)
    text = svg_text(figure(render_report(nnlab.connect(sqlite_url), ["spike"]), "curves"))
    ticks = {float(token) for token in text.split() if re.fullmatch(r"[0-9.]+", token)}
    assert 1 in ticks and 0.1 in ticks
    assert max(ticks) <= 12  # the epochs; no loss tick at 10, 100 or 1,000


def test_loss_limits_are_the_clean_runs_to_their_99th_percentile():
    clean = np.tile(np.geomspace(1.0, 0.1, 100), (10, 1))
    clean[3, 50] = 1000.0  # one spike in 1,000 points
    settled = np.vstack([clean, np.full(100, DIVERGED)])
    low, high = loss_limits(settled, np.array([False] * 10 + [True]))
    assert low == pytest.approx(0.08) and high == pytest.approx(1.3, rel=0.01)


def test_a_diverged_run_is_marked_where_it_left_the_chart():
    settled = np.array([[1.0, 5.0, 50.0, DIVERGED], [1.0, 2.0, 3.0, 4.0], [20.0, 1, 1, 1]])
    assert exit_epochs(settled, top=10.0).tolist() == [3, 4, 1]


def test_thin_lines_give_way_to_the_band_past_many_configurations(sqlite_url):
    rates = np.geomspace(0.01, 1.0, THIN_LINES + 3)
    runs = [
        ({"learning_rate": float(r), "gd": gd}, 0, "completed", [1.0, 0.5 - r / 4, 0.3])
        for r in rates
        for gd in ("batch", "stochastic")
    ]
    write_sweep(sqlite_url, "dense", runs)
    view = load_sweep(nnlab.connect(sqlite_url), "dense")
    settled, limits = view.settled(), loss_limits(view.settled(), view.diverged)
    thin = {}
    for setting in ("learning_rate", "gd"):
        ax = Figure().add_subplot()
        _facet(ax, view, settled, setting, limits)
        lines = [c for c in ax.collections if isinstance(c, LineCollection)]
        thin[setting] = sum(len(c.get_segments()) for c in lines)
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert all(b.get_zorder() > c.get_zorder() for b in bands for c in lines)
        assert all(line.get_zorder() > b.get_zorder() for line in ax.lines for b in bands)
    # by learning rate: 2 configurations per value, drawn; by gd: 15 per value, left out
    assert thin == {"learning_rate": 2 * len(rates), "gd": 0}


def test_a_heatmap_for_each_pair_of_grid_settings(real):
    view = load_sweep(nnlab.connect(real), "small")
    pairs = setting_pairs(view.runs, view.axes)
    assert len(pairs) == 6 and pairs[-1] == ("batch_size", "gd")  # nested: fills 3 cells of 9
    text = svg_text(figure(render_report(nnlab.connect(real), ["small"]), "heatmaps"))
    for rows, columns in pairs:
        assert f"{rows} × {columns}" in text


def test_heatmap_cells_hold_the_median_of_the_clean_runs_and_count_the_diverged(sqlite_url):
    runs = [
        ({"learning_rate": 0.1, "activation": "tanh"}, 0, "completed", [1.0, 0.2]),
        ({"learning_rate": 0.1, "activation": "tanh"}, 1, "completed", [1.0, 0.4]),
        ({"learning_rate": 0.1, "activation": "relu"}, 0, "completed", [1.0, 0.5]),
        ({"learning_rate": 0.9, "activation": "tanh"}, 0, "diverged", [1.0, 300.0]),
        ({"learning_rate": 0.9, "activation": "tanh"}, 1, "completed", [1.0, 0.7]),
    ]
    write_sweep(sqlite_url, "cells", runs)
    view = load_sweep(nnlab.connect(sqlite_url), "cells")
    median, diverged, total = pair_cells(view.runs, "learning_rate", "activation")
    np.testing.assert_allclose(median, [[0.3, 0.5], [0.7, np.nan]])  # rows 0.1, 0.9; tanh, relu
    assert diverged.tolist() == [[0, 0], [1, 0]] and total.tolist() == [[2, 1], [2, 0]]
    text = svg_text(figure(render_report(nnlab.connect(sqlite_url), ["cells"]), "heatmaps"))
    assert "1/2 div." in text and "–" in text  # the empty cell (0.9, relu)


def test_at_most_six_pairs_of_settings_the_fullest_first(sqlite_url):
    axes = {
        "learning_rate": (0.1, 0.2),
        "activation": ("tanh", "relu"),
        "gd": ("batch", "stochastic"),
        "optimizer": ("sgd", "adam"),
        "hidden": ([4], [8]),
    }
    grid = [dict(zip(axes, values, strict=True)) for values in zip(*axes.values(), strict=True)]
    grid += [{**grid[0], "learning_rate": 0.2}, {**grid[0], "activation": "relu"}]
    runs = [(settings, 0, "completed", [1.0, 0.5]) for settings in grid]
    write_sweep(sqlite_url, "wide", runs)
    view = load_sweep(nnlab.connect(sqlite_url), "wide")
    pairs = setting_pairs(view.runs, view.axes)
    assert len(pairs) == 6 and pairs[0] == ("learning_rate", "activation")  # fills 4 cells
    html = render_report(nnlab.connect(sqlite_url), ["wide"])
    assert len(view.axes) == 6  # batch GD makes the batch size vary too ('all')
    assert "(9 less varied pairs left out)" in html


def test_heatmaps_with_many_columns_get_more_room_and_smaller_text(sqlite_url):
    activations = ("tanh", "relu", "sigmoid", "identity", "softplus")
    runs = [
        ({"learning_rate": r, "activation": a}, 0, "diverged", [1.0, 500.0])
        for r in (0.1, 0.2)
        for a in activations
    ]
    write_sweep(sqlite_url, "many", [*runs, ({}, 1, "completed", [1.0, 0.5])])
    heatmap = figure(render_report(nnlab.connect(sqlite_url), ["many"]), "heatmaps")
    assert b"learning_rate \xc3\x97 activation" in heatmap  # rows × five columns
    # a line of text per cell, two in the cell (0.1, tanh): its median and "1/2 div."
    assert heatmap.count(b"font-size: 6.5px") == 2 * len(activations) + 1
    assert heatmap.count(b"font-size: 7.5px") == 0


def test_classification_sweeps_show_accuracy(real):
    html = render_report(nnlab.connect(real), ["small"])
    head = re.search(r"<thead>(.*?)</thead>", html).group(1)
    assert 'final val_loss</th><th class="num">final val_accuracy</th>' in head
    fit = svg_text(figure(html, "training vs validation"))
    assert "loss of the best 3" in fit and "accuracy of the best 3" in fit
    assert "solid: validation, dashed: training" in html
    assert "No accuracy was recorded" not in html


def test_the_accuracy_column_is_over_the_clean_seeds(sqlite_url):
    runs = [
        ({"learning_rate": 0.1}, 0, "completed", [1.0, 0.25]),  # accuracy 1 / 1.25 = 0.8
        ({"learning_rate": 0.1}, 1, "completed", [1.0, 1.0]),  # 0.5
        ({"learning_rate": 0.1}, 2, "diverged", [1.0, 500.0]),  # left out
        ({"learning_rate": 0.2}, 0, "completed", [1.0, 0.5]),
    ]
    write_sweep(sqlite_url, "acc", runs, accuracy=True)
    view = load_sweep(nnlab.connect(sqlite_url), "acc")
    view.set_threshold(None)
    table = view.configurations.set_index("learning_rate")
    assert table.accuracy_mean[0.1] == pytest.approx(0.65)
    assert table.accuracy_std[0.1] == pytest.approx(np.std([0.8, 0.5], ddof=1))
    html = render_report(nnlab.connect(sqlite_url), ["acc"])
    assert '<td class="num">0.65 ± 0.21</td>' in html


def test_regression_sweeps_show_no_accuracy_and_say_so(sqlite_url):
    write_sweep(sqlite_url, "reg", seeds({"learning_rate": 0.1}, [1.0, 0.5], 2))
    html = render_report(nnlab.connect(sqlite_url), ["reg"])
    assert "No accuracy was recorded (a regression loss" in html
    assert "accuracy</th>" not in html
    fit = svg_text(figure(html, "training vs validation"))
    assert "loss of the best 1" in fit and "accuracy of the best" not in fit


@pytest.mark.parametrize("columns", [1, 2])  # 1: the comparison's long labels
def test_a_legend_below_its_panel_hides_no_curve(columns):
    # issue 10: legends in the lower left covered the curves
    fig = Figure(layout="constrained")
    ax = fig.add_subplot()
    for rate in (0.03, 0.3, 3.0):
        ax.plot([1, 2, 3], [3, 2, 1], label=f"a long configuration label, learning_rate {rate}")
    legend_below(ax, "setting", columns)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    assert ax.get_legend().get_window_extent(renderer).y1 < ax.get_window_extent(renderer).y0


def test_the_learning_rate_of_each_schedule_is_drawn(sqlite_url):
    """Issue 12: each epoch's η, a line per schedule of the grid; none when none changed it."""
    spec = {
        "name": "schedules",
        "data": {"name": "moons", "n_samples": 80, "val_fraction": 0.25},
        "model": {"hidden": [4]},
        "train": {"epochs": 5, "learning_rate": 0.2, "gamma": 0.5},
        "grid": {"learning_rate_schedule": ["constant", "exponential", "cosine"]},
        "seeds": [0],
    }
    nnlab.sweep(spec, sqlite_url, report=False)
    lab = nnlab.connect(sqlite_url)
    text = svg_text(figure(render_report(lab, ["schedules"]), "learning rate by epoch"))
    assert all(name in text for name in ("constant", "exponential", "cosine"))
    view = load_sweep(lab, "schedules")
    rates = view.series["learning_rate"]
    assert rates[view.runs.learning_rate_schedule == "exponential"].tolist() == [
        [0.2 * 0.5**k for k in range(5)]
    ]
    flat = {**spec, "name": "flat", "grid": {"activation": ["tanh", "relu"]}}
    nnlab.sweep(flat, sqlite_url, report=False)
    page = render_report(lab, ["flat"])
    assert "Every run kept its learning rate: no schedule changed it." in page
