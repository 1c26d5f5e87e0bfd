"""Reading results: the pandas API, the run_summary view in plain SQL, read-only `nnlab sql`."""

from __future__ import annotations

import json
import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import sqlalchemy
from click.testing import CliRunner
from conftest import ACTIVATIONS
from sqlalchemy.engine import make_url

import nnlab
from nnlab.checks import InputError
from nnlab.cli import cli
from nnlab.store import RunWriter, StoreError, UnknownSweepError, open_store, register_sweep
from nnlab.store.query import SWEEP_COLUMNS, UnknownRunError, quantiles
from nnlab.store.registry import RunRow


def test_runs_frame_is_typed(filled):
    runs = nnlab.connect(filled).runs()
    assert len(runs) == 6
    assert str(runs.learning_rate.dtype) == "float64"
    assert str(runs.batch_size.dtype) == "Int64"
    assert str(runs.seed.dtype) == "int64" and str(runs.epochs_run.dtype) == "int64"
    assert str(runs.final_val_loss.dtype) == "float64"
    ids = {"run_id", "sweep", "status", "seed"}
    settings = {"learning_rate", "batch_size", "activation", "gd", "optimizer", "hidden"}
    results = {"final_train_loss", "final_val_loss", "best_val_loss", "best_epoch"}
    assert set(runs.columns) >= {*ids, *settings, *results, "epochs_run", "duration_s"}
    means = runs.groupby("activation").final_val_loss.mean()
    assert means["relu"] < means["tanh"] < means["sigmoid"]


def test_runs_filters(filled):
    lab = nnlab.connect(filled)
    assert len(lab.runs(sweep="acts")) == 6
    assert len(lab.runs(status="completed")) == 6
    assert len(lab.runs(status=["pending", "failed"])) == 0


def test_epochs_frame_carries_hyperparameters(filled):
    lab = nnlab.connect(filled)
    epochs = lab.epochs(sweep="acts")
    assert len(epochs) == 6 * 4
    curve = epochs.groupby(["activation", "epoch"]).val_loss.median()
    assert curve["relu", 4] < curve["relu", 1]
    some = lab.runs().run_id.tolist()[:2]
    assert set(lab.epochs(runs=some).run_id) == set(some)
    assert lab.sweeps().name.tolist() == ["acts"]
    assert lab.sweeps().runs.tolist() == [6]


def train_only(url: str) -> None:
    """Sweep ``train-only`` without a validation split: one run completed at a final training
    loss of 0.5, one diverged lower (not a best), one pending; and sweep ``empty``, no runs."""
    store = open_store(url)
    runs = [RunRow({"activation": a}, a, 0) for a in ("relu", "tanh", "sigmoid")]
    register_sweep(store, "train-only", runs)
    register_sweep(store, "empty", [])
    ids = nnlab.connect(url).runs(sweep="train-only").run_id.tolist()
    for run_id, losses, status in ((ids[0], [0.9, 0.5], "completed"), (ids[1], [0.1], "diverged")):
        writer = RunWriter(store, run_id, flush_seconds=0)
        writer.start()
        for epoch, loss in enumerate(losses, 1):
            writer.log({"epoch": epoch, "train_loss": loss, "grad_norm": 1.0, "seconds": 0.01})
        writer.finish(status)


def test_sweeps_sum_up_their_runs_in_one_row_each(filled):
    train_only(filled)
    lab = nnlab.connect(filled)
    sweeps = lab.sweeps()
    assert list(sweeps.columns) == list(SWEEP_COLUMNS)
    sweeps = sweeps.set_index("name")
    acts, runs = sweeps.loc["acts"], lab.runs(sweep="acts")
    started = [lab.run(run_id)["started_at"] for run_id in runs.run_id]
    assert acts.statuses == {"completed": 6} and acts.started_at == min(started)
    assert acts.last_activity == lab.sweep("acts").last_activity
    assert (acts.metric, acts.best) == ("val_loss", runs.final_val_loss.min())
    trained = sweeps.loc["train-only"]
    assert trained.statuses == {"completed": 1, "diverged": 1, "pending": 1}
    assert (trained.metric, trained.best) == (lab.default_metric(["train-only"]), 0.5)
    empty = sweeps.loc["empty"]
    assert empty.statuses == {} and empty.runs == 0 and empty.metric == "val_loss"
    assert pd.isna(empty.best) and pd.isna(empty.started_at) and pd.isna(empty.last_activity)


def test_sweeps_read_all_the_sweeps_together_not_one_by_one(filled):
    for i in range(5):
        register_sweep(open_store(filled), f"more-{i}", [RunRow({"gd": "batch"}, "b", 0)])
    lab = nnlab.connect(filled)
    statements = []
    listen = sqlalchemy.event.listen
    listen(lab.store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert len(lab.sweeps()) == 6
    assert len([sql for sql in statements if "SELECT" in sql]) == 3


def test_view_works_from_a_plain_sqlite_client(filled_sqlite):
    filled = filled_sqlite
    path = filled.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        sql = "SELECT activation, avg(final_val_loss) FROM run_summary GROUP BY 1"
        rows = dict(connection.execute(sql).fetchall())
    expected = nnlab.connect(filled).runs().groupby("activation").final_val_loss.mean()
    assert rows == pytest.approx(expected.to_dict())


def test_cli_lists_sweeps_and_runs(filled):
    runner = CliRunner()
    sweeps = runner.invoke(cli, ["sweeps", "--db", filled])
    assert sweeps.exit_code == 0 and "acts" in sweeps.output and "activations" in sweeps.output
    runs = runner.invoke(cli, ["runs", "--db", filled, "--sweep", "acts", "--format", "json"])
    records = json.loads(runs.output)
    assert len(records) == 6 and {r["activation"] for r in records} == set(ACTIVATIONS)


# --- the read API reports are built on: one sweep's details, settings, failures, curves ---


def test_sweep_details(filled):
    details = nnlab.connect(filled).sweep("acts")
    assert (details.name, details.description, details.status) == ("acts", "activations", "pending")
    assert details.statuses == {"completed": 6} and details.runs == 6
    assert details.created_at.utcoffset().total_seconds() == 0
    assert abs(details.last_activity - details.created_at).total_seconds() < 60  # heartbeats
    assert details.provenance["nnlab_version"] == [nnlab.__version__]
    assert details.provenance["data_fingerprint"] == []  # fill() records none


def test_an_unknown_sweep_is_an_error_naming_close_matches(filled):
    lab = nnlab.connect(filled)
    close = r"no sweep named 'act' .*Did you mean 'acts'\?"
    with pytest.raises(UnknownSweepError, match=close) as hit:
        lab.sweep("act")
    assert hit.value.matches == ["acts"]
    with pytest.raises(StoreError, match=r"no sweep named 'zzz' .*; it holds 'acts'") as missed:
        lab.sweep("zzz")
    assert missed.value.matches == []


def test_one_run_as_a_record(filled):
    lab = nnlab.connect(filled)
    row = lab.runs(sweep="acts").iloc[0]
    run = lab.run(int(row.run_id))
    for key, value in row.items():  # a setting the config leaves out is NULL: NaN on both
        assert run[key] == value or (pd.isna(run[key]) and pd.isna(value)), key
    assert run["config"]["activation"] == row.activation and run["config"]["hidden"] == [4]
    assert run["attempts"] == 1 and run["error"] is None
    assert run["nnlab_version"] == nnlab.__version__
    assert run["started_at"] <= run["finished_at"]
    with pytest.raises(UnknownRunError, match=r"^no run with id 999 in "):
        lab.run(999)


def test_a_reader_can_be_used_from_other_threads(filled_sqlite, tmp_path):
    """Regression (issue 11): the SQLite reader's connections were bound to the thread that
    opened them, so a threaded server's second request failed."""
    copy = tmp_path / "copy.db"  # a file this process has never opened to write
    source, target = sqlite3.connect(make_url(filled_sqlite).database), sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    lab = nnlab.connect(f"sqlite:///{copy}")
    assert len(lab.sweeps()) == 1
    with ThreadPoolExecutor(max_workers=4) as pool:
        counts = list(pool.map(lambda _: len(lab.runs(sweep="acts")), range(16)))
    assert counts == [6] * 16


@pytest.mark.parametrize(
    "read",
    [
        lambda lab: lab.runs(sweep="act"),
        lambda lab: lab.runs(sweep="act", status="completed"),
        lambda lab: lab.epochs(sweep="act"),
        lambda lab: lab.curves("act"),
        lambda lab: lab.configurations("act"),
        lambda lab: lab.settings("act"),
        lambda lab: lab.failures("act"),
        lambda lab: lab.default_metric(["acts", "act"]),
    ],
    ids=[
        "runs",
        "runs-status",
        "epochs",
        "curves",
        "configurations",
        "settings",
        "failures",
        "default_metric",
    ],
)
def test_a_mistyped_sweep_name_is_an_error_not_an_empty_table(filled, read):
    with pytest.raises(UnknownSweepError, match=r"^no sweep named 'act' .*Did you mean 'acts'\?$"):
        read(nnlab.connect(filled))


def test_cli_runs_of_a_mistyped_sweep_exit_2_with_one_line(filled):
    result = CliRunner().invoke(cli, ["runs", "--db", filled, "--sweep", "act"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: no sweep named 'act' in ")
    assert result.output.strip().endswith("Did you mean 'acts'?")
    assert len(result.output.strip().splitlines()) == 1


def test_settings_flatten_the_configuration_with_typed_hyperparameters(db_url):
    store = open_store(db_url)
    config = {"hidden": [8, 4], "learning_rate": 0.1, "activation": "tanh", "optimizer": "sgd"}
    configs = [
        # the sweep layer stores a batch-GD run's batch size as NULL (see grid.as_values)
        {
            **config,
            "gd": gd,
            "batch_size": None if gd == "batch" else 32,
            "data": {"name": "spirals", "noise": noise},
        }
        for gd in ("batch", "minibatch")
        for noise in (0.1, 0.3)
    ]
    rows = [RunRow(c, f"{c['gd']}-{c['data']['noise']}", 0) for c in configs]
    register_sweep(store, "grid", rows)
    settings = nnlab.connect(db_url).settings("grid")
    assert settings.gd.tolist() == ["batch", "batch", "minibatch", "minibatch"]
    assert settings.batch_size.isna().tolist() == [True, True, False, False]  # batch GD: all
    assert settings["data.noise"].tolist() == [0.1, 0.3, 0.1, 0.3]
    assert set(settings.hidden) == {"8,4"} and set(settings["data.name"]) == {"spirals"}
    assert list(settings.columns[:4]) == ["run_id", "seed", "configuration", "learning_rate"]
    assert [json.loads(key) for key in settings.configuration] == configs


def write_runs(store, sweep: str, runs: list) -> None:
    """Register ``sweep`` with ``runs`` as ``(learning rate, seed, status, losses)``: the
    validation loss after each epoch, the training loss twice that, the accuracy 1 - loss."""
    rows = [
        RunRow({"learning_rate": rate, "seed": seed}, f"{rate}-{seed}", seed)
        for rate, seed, _, _ in runs
    ]
    register_sweep(store, sweep, rows)
    run_ids = nnlab.connect(store.url).runs(sweep=sweep).run_id
    for run_id, (_, _, status, losses) in zip(run_ids, runs, strict=True):
        with RunWriter(store, run_id, flush_seconds=0) as writer:
            writer.start()
            for epoch, loss in enumerate(losses, 1):
                scores = {"val_loss": loss, "train_loss": 2 * loss, "val_accuracy": 1 - loss}
                writer.log({"epoch": epoch, **scores, "seconds": 0.1})
            writer.finish(status)


def test_configurations_score_the_clean_seeds_and_rank_the_troubled_last(db_url):
    store = open_store(db_url)
    runs = [
        (0.5, 0, "completed", [0.9, 0.1]),
        (0.5, 1, "diverged", [0.9, math.nan]),
        (0.05, 0, "completed", [0.8, 0.4, 0.5]),
        (0.05, 1, "early_stopped", [0.8, 0.2, 0.3]),
    ]
    write_runs(store, "rank", runs)
    table = nnlab.connect(db_url).configurations("rank")
    assert table.learning_rate.tolist() == [0.05, 0.5]  # a superb seed does not outrank a blown one
    clean, troubled = table.iloc[0], table.iloc[1]
    assert json.loads(clean.configuration) == {"learning_rate": 0.05}
    counts = ["runs", "finished", "diverged", "failed", "troubled"]
    assert clean[counts].tolist() == [2, 2, 0, 0, 0] and troubled[counts].tolist() == [
        2,
        2,
        1,
        0,
        1,
    ]
    assert clean.final_val_loss_mean == pytest.approx(0.4)
    assert clean.final_val_loss_std == pytest.approx(math.sqrt(0.02))  # of 0.5 and 0.3
    assert clean.best_val_loss_mean == pytest.approx(0.3)  # of 0.4 and 0.2
    assert clean.final_val_accuracy_mean == pytest.approx(0.6)
    assert troubled.final_val_loss_mean == pytest.approx(0.1)  # its one clean seed
    assert math.isnan(troubled.final_val_loss_std)
    by_training = nnlab.connect(db_url).configurations("rank", "train_loss")
    assert by_training.best_train_loss_mean.tolist() == pytest.approx([0.6, 0.2])
    assert by_training.final_train_accuracy_mean.isna().all()  # none was recorded


def test_failures_carry_their_error_text(filled):
    store = open_store(filled)
    run_id = int(nnlab.connect(filled).runs().run_id.iloc[0])
    writer = RunWriter(store, run_id)
    writer.start(claimable=("completed",))
    writer.finish("failed", "Traceback (most recent call last):\nValueError: boom")
    failures = nnlab.connect(filled).failures("acts")
    assert failures.run_id.tolist() == [run_id]
    assert failures.error.iloc[0].endswith("ValueError: boom")
    assert failures.attempts.iloc[0] == 2


def test_curves_read_only_the_metrics_asked_for_with_nan_restored(filled):
    store = open_store(filled)
    register_sweep(store, "nan", [RunRow({"activation": "relu"}, "r", 0)])
    run_id = int(nnlab.connect(filled).runs(sweep="nan").run_id.iloc[0])
    writer = RunWriter(store, run_id)
    writer.start()
    writer.log({"epoch": 1, "train_loss": 1.0, "val_loss": float("nan"), "seconds": 0.5})
    writer.log({"epoch": 2, "train_loss": float("nan"), "val_loss": 0.5, "seconds": 0.5})
    writer.finish("diverged")
    curves = nnlab.connect(filled).curves("nan", ["val_loss", "seconds"])
    assert list(curves.columns) == ["run_id", "epoch", "val_loss", "seconds"]
    assert curves.val_loss.isna().tolist() == [True, False]
    assert len(nnlab.connect(filled).curves("acts")) == 6 * 4
    with pytest.raises(InputError, match=r"unknown metric 'val_los'.*Did you mean 'val_loss'"):
        nnlab.connect(filled).curves("acts", ["val_los"])


def test_curves_of_some_runs_read_only_theirs(filled):
    # the service's best-10 curves of a 10,000-run sweep read the 100 runs drawn, not all
    lab = nnlab.connect(filled)
    first, second, *_ = lab.runs(sweep="acts").run_id.tolist()
    curves = lab.curves("acts", ["val_loss"], runs=[second, first])
    assert curves.run_id.tolist() == [first] * 4 + [second] * 4
    assert lab.curves("acts", runs=[]).empty


def test_progress_reads_only_what_is_new(filled_sqlite):
    lab = nnlab.connect(filled_sqlite)
    start = lab.progress("acts")
    assert set(start.statuses.values()) == {"completed"} and len(start.statuses) == 6
    assert set(start.last_epochs.values()) == {4} and start.epochs.empty
    assert lab.progress("acts", start.last_epochs).epochs.empty
    first = min(start.last_epochs)
    new = lab.progress("acts", {**start.last_epochs, first: 2}).epochs
    assert list(new.run_id) == [first, first] and list(new.epoch) == [3, 4]
    expected = lab.curves("acts").query(f"run_id == {first} and epoch > 2")
    assert list(new.val_loss) == list(expected.val_loss)
    assert len(lab.progress("acts", {}).epochs) == 24  # a run not in after: from epoch 0


def test_progress_of_a_run_without_epochs_and_a_nan(sqlite_url):
    store = open_store(sqlite_url)
    register_sweep(store, "empty", [])
    assert lab_progress_is_empty(nnlab.connect(sqlite_url).progress("empty"))
    config = {"learning_rate": 1.0, "activation": "relu", "hidden": [4], "epochs": 2}
    register_sweep(store, "one", [RunRow(config, "a", 0)])
    lab = nnlab.connect(sqlite_url)
    run_id = int(lab.runs(sweep="one").run_id.iloc[0])
    assert lab.progress("one").last_epochs == {run_id: 0}
    writer = RunWriter(store, run_id, flush_seconds=0)
    writer.start()
    writer.log({"epoch": 1, "train_loss": math.nan, "val_loss": 1.0, "seconds": 0.01})
    progress = lab.progress("one", {})
    assert progress.statuses == {run_id: "running"}
    assert math.isnan(progress.epochs.train_loss.iloc[0]) and progress.epochs.val_loss[0] == 1.0
    with pytest.raises(UnknownSweepError):
        lab.progress("nope")


def lab_progress_is_empty(progress) -> bool:
    return progress.statuses == {} and progress.last_epochs == {} and progress.epochs.empty


def test_quantiles_of_infinite_values_stay_infinite_without_a_warning():
    values = np.array([[1.0, np.nan], [np.inf, np.nan], [np.inf, 2.0]])
    q25, median, q75 = quantiles(values)
    assert q25.tolist() == [np.inf, 2.0] and median.tolist() == [np.inf, 2.0]
    assert q75.tolist() == [np.inf, 2.0]
