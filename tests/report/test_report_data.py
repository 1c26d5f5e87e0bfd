"""Reports on sweeps of unusual shape: a grid over a data parameter, runs that stop early, no
validation data."""

from __future__ import annotations

import numpy as np
import pytest
from test_report import PARTS, SPEC, parts, write_sweep

import nnlab
from nnlab.report import render_report
from nnlab.report.analysis import load_sweep
from nnlab.sweeps.runner import run_sweep
from nnlab.sweeps.spec import parse_spec


def test_a_grid_over_a_data_parameter_reports(sqlite_url):
    spec = SPEC.replace("activation: [tanh, relu]", "activation: [tanh]\n  data.noise: [0.1, 0.3]")
    run_sweep(parse_spec(spec), sqlite_url)
    html = render_report(nnlab.connect(sqlite_url), ["small"])
    assert "data.noise" in html and parts(html) == list(PARTS)


def test_runs_that_stopped_early_keep_their_last_loss_in_the_medians(sqlite_url):
    # two seeds converge and stop after 2 epochs, two run on to 6 and end higher
    long = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3]
    runs = [
        ({"learning_rate": 0.1}, 0, "converged", [1.0, 0.1]),
        ({"learning_rate": 0.1}, 1, "converged", [1.0, 0.1]),
        ({"learning_rate": 0.1}, 2, "completed", long),
        ({"learning_rate": 0.2}, 0, "completed", long),
    ]
    write_sweep(sqlite_url, "early", runs)
    view = load_sweep(nnlab.connect(sqlite_url), "early")
    settled = view.settled()
    assert settled[0].tolist() == [1.0, 0.1, 0.1, 0.1, 0.1, 0.1]  # carried to the end
    assert np.median(settled[:3, -1]) == pytest.approx(0.1)  # not 0.3: the stopped runs count


def test_without_validation_data_the_report_shows_the_training_loss(sqlite_url):
    spec = SPEC.replace("val_fraction: 0.2", "val_fraction: 0.0")
    run_sweep(parse_spec(spec), sqlite_url)
    html = render_report(nnlab.connect(sqlite_url), ["small"])
    assert "Metric <b>train_loss</b> (no validation data: the training loss instead)" in html
    assert "no run has finished without diverging" not in html
    assert "final train_accuracy" in html  # the accuracy on the same data as the loss
    assert "(training only: no validation data)" in html  # in training vs validation
