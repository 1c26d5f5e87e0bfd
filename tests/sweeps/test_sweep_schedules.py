"""Issue 12's settings in sweeps: schedules, the L2 penalty, weight decay and initialisation are
grid axes like any other, stored typed and queryable, each epoch's learning rate recorded;
``batch_size: auto`` is stored as the size it is; settings that do not fit together are refused
before anything trains. Real sweeps on a real SQLite file."""

from __future__ import annotations

import math
import sqlite3

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

import nnlab
from nnlab.cli import cli
from nnlab.sweeps.spec import SpecError

EPOCHS = 6
BASE = {
    "name": "schedules",
    "data": {"name": "moons", "n_samples": 80, "val_fraction": 0.25},
    "model": {"hidden": [4], "activation": "tanh"},
    "train": {"epochs": EPOCHS, "learning_rate": 0.2, "gamma": 0.5, "step_size": 2},
    "seeds": [0],
}


def expected_rates(schedule: str) -> list[float]:
    eta = 0.2
    if schedule == "step":
        return [eta * 0.5 ** ((e - 1) // 2) for e in range(1, EPOCHS + 1)]
    if schedule == "cosine":
        return [eta * (1 + math.cos(math.pi * (e - 1) / EPOCHS)) / 2 for e in range(1, 7)]
    return [eta] * EPOCHS


def test_schedules_penalties_and_inits_are_axes_stored_typed(sqlite_url):
    grid = {
        "learning_rate_schedule": ["constant", "step", "cosine"],
        "init": ["auto", "sklearn"],
        "alpha": [0.0, 0.01],
        "weight_decay": [0.0, 0.001],
    }
    nnlab.sweep({**BASE, "grid": grid}, sqlite_url, report=False)
    lab = nnlab.connect(sqlite_url)
    runs = lab.runs(sweep="schedules")
    assert len(runs) == 24 and set(runs.status) <= {"completed", "converged"}
    epochs = lab.epochs(sweep="schedules")
    for run in runs.itertuples():
        config = lab.run(run.run_id)["config"]
        typed = (run.learning_rate_schedule, run.init, run.alpha, run.weight_decay)
        assert typed == (
            config["learning_rate_schedule"],
            config["init"],
            config["alpha"],
            config["weight_decay"],
        )
        logged = epochs[epochs.run_id == run.run_id].epoch_learning_rate.tolist()
        assert logged == pytest.approx(expected_rates(run.learning_rate_schedule), rel=1e-12)
    with sqlite3.connect(make_url(sqlite_url).database) as connection:
        (stepped,) = connection.execute(
            "SELECT count(*) FROM run_summary WHERE learning_rate_schedule = 'step' "
            "AND init = 'sklearn' AND alpha > 0"
        ).fetchone()
    assert stepped == 2  # × weight_decay 0 and 0.001


def test_a_penalty_and_an_init_change_what_trains(sqlite_url):
    grid = {"init": ["auto", "sklearn", "pytorch"], "alpha": [0.0, 1.0]}
    nnlab.sweep({**BASE, "grid": grid}, sqlite_url, report=False)
    runs = nnlab.connect(sqlite_url).runs(sweep="schedules")
    finals = runs.set_index(["init", "alpha"]).final_train_loss
    assert finals.nunique() == 6  # every setting trained something of its own
    # the training loss includes 0.5·α·Σ‖W‖²/m: a heavy penalty keeps it up
    assert all(finals[(init, 1.0)] > finals[(init, 0.0)] for init in ("auto", "sklearn"))


def test_batch_size_auto_is_stored_as_the_size_it_is(sqlite_url):
    spec = {**BASE, "train": {**BASE["train"], "batch_size": "auto"}, "grid": {}}
    nnlab.sweep(spec, sqlite_url, report=False)
    (run,) = nnlab.connect(sqlite_url).runs(sweep="schedules").itertuples()
    assert run.batch_size == 60  # min(200, the 60 training samples)
    assert nnlab.connect(sqlite_url).run(run.run_id)["config"]["batch_size"] == 60
    again = nnlab.plan(spec, sqlite_url)
    assert again.resumption == "same" and again.to_train == 0  # the spec's own hash


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"learning_rate_schedule": "adaptive"}, "'adaptive' needs tol"),
        (
            {"learning_rate_schedule": "cosine", "min_learning_rate": 0.5},
            "min_learning_rate=0.5 is above learning_rate=0.2",
        ),
        ({"learning_rate_schedule": "cyclic"}, "unknown learning_rate_schedule 'cyclic'"),
        ({"gamma": 1.5}, "gamma must be a finite number in (0, 1], got 1.5"),
        ({"alpha": -1}, "alpha must be"),
        ({"batch_size": "big"}, "batch_size"),
    ],
)
def test_settings_that_do_not_fit_are_refused_before_anything_trains(tmp_path, train, message):
    spec = {**BASE, "train": {**BASE["train"], **train}, "grid": {}}
    url = f"sqlite:///{tmp_path / 'nnlab.db'}"
    with pytest.raises(SpecError) as error:
        nnlab.sweep(spec, url, report=False)
    assert message in str(error.value)
    assert not (tmp_path / "nnlab.db").exists()


def test_nnlab_train_takes_the_new_options():
    result = CliRunner().invoke(
        cli,
        [
            "train",
            *("--data", "moons", "--epochs", "4", "--hidden", "4", "--every", "1"),
            *("--learning-rate-schedule", "exponential", "--gamma", "0.5", "--alpha", "0.01"),
            *("--init", "pytorch", "--batch-size", "auto", "--weight-decay", "0.001"),
        ],
    )
    assert result.exit_code == 0, result.output
    for rate in ("0.1", "0.05", "0.025", "0.0125"):
        assert rate in result.output
