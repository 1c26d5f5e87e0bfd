"""Managing sweeps: deleting one with its runs and epochs, renaming one (store and CLI)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

import nnlab
from nnlab.cli import cli
from nnlab.store import (
    RunWriter,
    StoreError,
    UnknownSweepError,
    delete_sweep,
    open_store,
    register_sweep,
    rename_sweep,
)
from nnlab.store.models import STALE_AFTER, Epoch, Run, Sweep
from nnlab.store.registry import RunRow


def counts(url: str) -> tuple[int, int, int]:
    with open_store(url).read() as connection:
        tables = (Sweep, Run, Epoch)
        return tuple(connection.scalar(select(func.count()).select_from(t)) for t in tables)


def test_delete_removes_the_sweep_its_runs_and_epochs_only(filled):
    store = open_store(filled)
    register_sweep(store, "keep", [RunRow({"activation": "relu"}, "r", 0)])
    assert counts(filled) == (2, 7, 24)
    deleted = delete_sweep(store, "acts")
    assert (deleted.runs, deleted.epochs) == (6, 24)
    assert counts(filled) == (1, 1, 0)
    assert nnlab.connect(filled).sweeps().name.tolist() == ["keep"]


def test_delete_of_an_unknown_sweep_suggests_the_name(filled):
    with pytest.raises(UnknownSweepError, match=r"no sweep named 'act' .*Did you mean 'acts'\?"):
        delete_sweep(open_store(filled), "act")


def hold_a_run(url: str) -> RunWriter:
    """A run of 'acts' claimed by a live runner (this process), beating."""
    store = open_store(url)
    run_id = int(nnlab.connect(url).runs(sweep="acts").run_id.iloc[0])
    writer = RunWriter(store, run_id)
    writer.start(claimable=("completed",))
    return writer


def test_delete_and_rename_are_refused_while_a_live_runner_holds_a_run(filled):
    writer = hold_a_run(filled)
    try:
        for change in (lambda s: delete_sweep(s, "acts"), lambda s: rename_sweep(s, "acts", "b")):
            with pytest.raises(StoreError, match=r"sweep 'acts': 1 run running, held by a live"):
                change(open_store(filled))
        assert counts(filled) == (1, 6, 20)  # its own epochs went when it was claimed again
    finally:
        writer.close()


def test_delete_goes_ahead_once_the_holder_is_silent_for_the_stale_window(filled):
    writer = hold_a_run(filled)
    writer.close()  # the runner stopped beating, its run still 'running'
    store = open_store(filled)
    silent = datetime.now(UTC) - timedelta(seconds=STALE_AFTER + 5)
    with store.write() as connection:
        connection.execute(update(Run).values(heartbeat_at=silent))
    assert delete_sweep(store, "acts").runs == 6
    assert counts(filled) == (0, 0, 0)


def test_rename_keeps_the_runs_under_the_new_name(filled):
    store = open_store(filled)
    rename_sweep(store, "acts", "activations-v2")
    lab = nnlab.connect(filled)
    assert lab.sweeps().name.tolist() == ["activations-v2"]
    assert len(lab.runs(sweep="activations-v2")) == 6
    with pytest.raises(UnknownSweepError):
        lab.runs(sweep="acts")


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("", "must be a non-empty name of up to 200 characters, got ''"),
        ("   ", "must be a non-empty name of up to 200 characters"),
        ("x" * 201, "must be a non-empty name of up to 200 characters"),
        ("bad\x1b[31m", "contains the control character U+001B"),
        ("evil\u202eexe", "contains the control character U+202E"),
        ("other", "a sweep named 'other' already exists"),
    ],
    ids=["empty", "blank", "long", "escape", "bidi", "taken"],
)
def test_rename_refuses_bad_or_taken_names(filled, new, message):
    store = open_store(filled)
    register_sweep(store, "other", [])
    with pytest.raises(StoreError, match=re.escape(message)):
        rename_sweep(store, "acts", new)
    assert sorted(nnlab.connect(filled).sweeps().name) == ["acts", "other"]


def test_rename_of_an_unknown_sweep_suggests_the_name(filled):
    with pytest.raises(UnknownSweepError, match=r"Did you mean 'acts'\?"):
        rename_sweep(open_store(filled), "acst", "new")


def test_cli_delete_asks_first_and_keeps_everything_on_no(filled_sqlite):
    runner = CliRunner()
    refused = runner.invoke(cli, ["sweeps", "delete", "acts", "--db", filled_sqlite], input="n\n")
    assert "delete sweep 'acts', its 6 runs and their epochs?" in refused.output
    assert refused.exit_code == 1 and counts(filled_sqlite) == (1, 6, 24)
    done = runner.invoke(cli, ["sweeps", "--db", filled_sqlite, "delete", "acts", "--yes"])
    assert done.exit_code == 0, done.output
    assert done.output == "deleted sweep 'acts': 6 runs, 24 epochs\n"
    assert counts(filled_sqlite) == (0, 0, 0)


def test_cli_rename_and_its_mistakes_exit_2_in_one_line(filled_sqlite):
    runner = CliRunner()
    renamed = runner.invoke(cli, ["sweeps", "rename", "acts", "acts-v1", "--db", filled_sqlite])
    assert renamed.output == "renamed sweep 'acts' to 'acts-v1'\n"
    mistakes = [("act", "x", "Did you mean 'acts-v1'?"), ("acts-v1", "", "a non-empty name")]
    for old, new, message in mistakes:
        result = runner.invoke(cli, ["sweeps", "rename", old, new, "--db", filled_sqlite])
        assert result.exit_code == 2 and message in result.output
        assert len(result.output.strip().splitlines()) == 1
    listed = runner.invoke(cli, ["sweeps", "--db", filled_sqlite, "--format", "csv"])
    assert "acts-v1" in listed.output
