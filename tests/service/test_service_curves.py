"""GET /api/sweeps/{name}/curves (issue 11): each run's curve, or the median and IQR by a grid
setting, cut to max_points on the server, through a real uvicorn server against what
``nnlab.connect`` reads directly and what pandas computes from it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from served import client_of, get_json

import nnlab
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.registry import RunRow

EPOCHS = 30
RATES = (0.1, 0.01)


def write_sweep(url: str) -> str:
    """Sweep ``long``: 2 learning rates × 3 seeds of 30 epochs; seed 2 of the first rate stops
    after 20, and seed 1 logs a NaN validation loss at epoch 7."""
    store = open_store(url)
    config = {"activation": "tanh", "hidden": [4], "epochs": EPOCHS}
    rows = [
        RunRow({**config, "learning_rate": rate}, f"lr{rate}-{seed}", seed)
        for rate in RATES
        for seed in range(3)
    ]
    register_sweep(store, "long", rows, description="long curves")
    for run in nnlab.connect(url).runs(sweep="long").itertuples():
        writer = RunWriter(store, run.run_id, flush_seconds=0)
        writer.start()
        last = 20 if (run.learning_rate, run.seed) == (RATES[0], 2) else EPOCHS
        for epoch in range(1, last + 1):
            loss = (1 + run.seed) / (epoch * run.learning_rate * 10) + 0.001 * epoch
            val = math.nan if (run.seed, epoch) == (1, 7) else loss * 1.1
            metrics = {"train_loss": loss, "val_loss": val, "seconds": 0.01}
            writer.log({"epoch": epoch, "learning_rate": run.learning_rate, **metrics})
        writer.finish("completed")
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served_url(request, tmp_path_factory) -> str:
    if request.param == "sqlite":
        return write_sweep(f"sqlite:///{tmp_path_factory.mktemp('curves') / 'nnlab.db'}")
    return write_sweep(request.getfixturevalue("pg_server").new_database())


@pytest.fixture(scope="module")
def lab(served_url):
    return nnlab.connect(served_url)


@pytest.fixture(scope="module")
def client(served_url):
    with client_of(served_url) as client:
        yield client


def as_float(values: list) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=float)


@pytest.mark.parametrize("max_points", [2, 7, 29, 30, 500])
def test_each_run_keeps_its_first_and_last_epoch(client, lab, max_points):
    series = get_json(client, f"/api/sweeps/long/curves?metric=val_loss&max_points={max_points}")
    curves = lab.curves("long", ["val_loss"]).set_index(["run_id", "epoch"]).val_loss
    assert [s["run_id"] for s in series] == sorted(curves.index.unique("run_id"))
    for run in series:
        logged = curves.loc[run["run_id"]]
        epochs = run["epochs"]
        assert len(epochs) == len(run["values"]) <= max_points
        assert epochs[0] == logged.index[0] and epochs[-1] == logged.index[-1]
        assert epochs == sorted(set(epochs))
        if max_points >= len(logged):
            assert epochs == logged.index.tolist()
        expected = logged.loc[epochs].to_numpy()
        np.testing.assert_array_equal(as_float(run["values"]), expected)  # to the last bit


def test_downsampled_epochs_are_evenly_spaced(client):
    (run, *_) = get_json(client, "/api/sweeps/long/curves?max_points=4")
    assert run["epochs"] == [1, 11, 20, 30]


def test_nan_is_null(client):
    series = get_json(client, "/api/sweeps/long/curves?metric=val_loss&max_points=30")
    seed1 = series[1]
    assert seed1["values"][6] is None and seed1["epochs"][6] == 7
    assert None not in series[0]["values"]


def test_the_default_is_val_loss_at_up_to_500_points(client, lab):
    series = get_json(client, "/api/sweeps/long/curves")
    assert len(series[0]["epochs"]) == EPOCHS
    first = lab.curves("long", ["val_loss"]).val_loss.iloc[0]
    assert series[0]["values"][0] == first


@pytest.mark.parametrize("metric", ["train_loss", "val_loss"])
@pytest.mark.parametrize("max_points", [5, 500])
def test_grouped_median_and_iqr_are_pandas(client, lab, metric, max_points):
    path = f"/api/sweeps/long/curves?metric={metric}&by=learning_rate&max_points={max_points}"
    groups = get_json(client, path)
    settings = lab.settings("long")
    logged = lab.curves("long", [metric]).merge(settings[["run_id", "learning_rate"]])
    by_epoch = logged.groupby(["learning_rate", "epoch"])[metric]
    assert [group["value"] for group in groups] == sorted(RATES)
    for group in groups:
        runs = settings.run_id[settings.learning_rate == group["value"]].tolist()
        assert group["runs"] == runs
        epochs = group["epochs"]
        assert len(epochs) <= max_points and (epochs[0], epochs[-1]) == (1, EPOCHS)
        for name, q in (("q25", 0.25), ("median", 0.5), ("q75", 0.75)):
            expected = by_epoch.quantile(q).loc[group["value"]].loc[epochs].to_numpy()
            np.testing.assert_allclose(as_float(group[name]), expected, rtol=1e-12)


def test_a_group_past_its_runs_last_epoch(client, lab):
    """Rate 0.1's third seed stopped at epoch 20: after that, its other two seeds count."""
    (_, first) = get_json(client, "/api/sweeps/long/curves?metric=train_loss&by=learning_rate")
    curves = lab.curves("long", ["train_loss"])
    late = curves[curves.run_id.isin(first["runs"]) & (curves.epoch == 25)].train_loss
    assert late.size == 2
    assert first["median"][24] == pytest.approx(late.median(), rel=1e-12)


@pytest.mark.parametrize(
    ("query", "message", "did_you_mean"),
    [
        ("metric=val_los", "unknown metric 'val_los'", ["val_loss"]),
        ("metric=grad_norm", "unknown metric 'grad_norm'", []),
        (
            "by=learning_rat",
            "unknown setting 'learning_rat'",
            ["learning_rate", "learning_rate_schedule"],
        ),
        ("by=run_id", "unknown setting 'run_id'", []),
    ],
)
def test_a_bad_metric_or_setting_is_400_with_did_you_mean(client, query, message, did_you_mean):
    answer = get_json(client, f"/api/sweeps/long/curves?{query}", status=400)
    assert answer["error"].startswith(message) and "\n" not in answer["error"]
    assert answer["did_you_mean"] == did_you_mean


@pytest.mark.parametrize("max_points", ["1", "1501", "0", "-5", "2.5", "many", "", "1" * 30])
def test_max_points_outside_2_to_1500_is_400(client, max_points):
    answer = get_json(client, f"/api/sweeps/long/curves?max_points={max_points}", status=400)
    assert answer["error"] == (f"max_points must be an integer from 2 to 1500, got {max_points!r}")


def test_an_unknown_sweep_is_404(client):
    for query in ("", "?by=learning_rate"):
        answer = get_json(client, f"/api/sweeps/lon/curves{query}", status=404)
        assert answer["did_you_mean"] == ["long"]


def test_each_schedules_learning_rate_is_a_curve(sqlite_url):
    """Issue 12: each epoch's η is a metric of the curves, as the schedule set it."""
    spec = {
        "name": "schedules",
        "data": {"name": "moons", "n_samples": 80, "val_fraction": 0.25},
        "model": {"hidden": [4]},
        "train": {"epochs": 6, "learning_rate": 0.2, "gamma": 0.5, "step_size": 2},
        "grid": {"learning_rate_schedule": ["constant", "step", "exponential"]},
        "seeds": [0, 1],
    }
    nnlab.sweep(spec, sqlite_url, report=False)
    expected = {
        "constant": [0.2] * 6,
        "step": [0.2, 0.2, 0.1, 0.1, 0.05, 0.05],
        "exponential": [0.2 * 0.5**k for k in range(6)],
    }
    with client_of(sqlite_url) as client:
        query = "metric=learning_rate&by=learning_rate_schedule"
        groups = get_json(client, f"/api/sweeps/schedules/curves?{query}")
        assert get_json(client, "/api/sweeps/schedules")["axes"] == ["learning_rate_schedule"]
    assert sorted(group["value"] for group in groups) == sorted(expected)
    for group in groups:
        assert group["epochs"] == list(range(1, 7)) and len(group["runs"]) == 2
        assert group["median"] == pytest.approx(expected[group["value"]], rel=1e-12)
