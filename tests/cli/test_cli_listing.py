"""`nnlab runs` and `nnlab sweeps` at a terminal's width: columns that fit, nothing cut short."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

import nnlab
from nnlab.cli import RUN_TABLE, SHORT_HEADERS, cli
from nnlab.store import open_store, register_sweep
from nnlab.store.registry import RunRow


def at_width(width: int, *args: str):
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": str(width)})


@pytest.fixture
def wide(filled_sqlite) -> str:
    """The filled sweep plus one with a long name and description, and long float values."""
    config = {
        "learning_rate": 0.000123456789,
        "batch_size": 16,
        "activation": "leaky_relu",
        "gd": "stochastic",
        "optimizer": "nesterov",
        "hidden": [128, 64, 32],
        "epochs": 9,
    }
    register_sweep(
        open_store(filled_sqlite),
        "learning-rates-and-momentum-2024",
        [RunRow(config, "h", 4294967295)],
        description="from too small to divergent, with plain SGD and Adam " * 3,
    )
    return filled_sqlite


def test_runs_fit_120_columns_with_every_default_column(filled_sqlite):
    result = at_width(120, "runs", "--db", filled_sqlite)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [SHORT_HEADERS.get(c, c) for c in RUN_TABLE]
    assert "…" not in result.output and max(len(line.rstrip()) for line in lines) <= 120
    runs = nnlab.connect(filled_sqlite).runs()
    for row, line in zip(runs.itertuples(), lines[1:-1], strict=True):
        assert line.split()[0] == str(row.run_id)
        assert f" {row.final_val_loss:.4g} " in line and f" {row.duration_s:.4g}" in line
    assert lines[-1] == "(6 runs)"


def test_long_values_are_never_cut_at_120_columns(wide):
    result = at_width(120, "runs", "--db", wide)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert max(len(line.rstrip()) for line in result.output.splitlines()) <= 120
    assert " 0.0001235 " in result.output and " 128,64,32 " in result.output
    assert "learning-rates-and-momentum-2" in result.output  # a long name wraps, whole
    assert "(7 runs)" in result.output


def test_sweeps_fit_120_columns_wrapping_the_description(wide):
    result = at_width(120, "sweeps", "--db", wide)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert max(len(line.rstrip()) for line in result.output.splitlines()) <= 120
    assert "learning-rates-and-momentum-2024" in result.output
    assert result.output.count("divergent") == 3  # all of it, over several lines
    assert result.output.splitlines()[-1] == "(2 sweeps)"


def test_a_narrow_terminal_leaves_out_the_least_telling_columns_and_says_which(wide):
    result = at_width(80, "runs", "--db", wide)
    assert "…" not in result.output
    header, note = result.output.splitlines()[0].split(), result.output.splitlines()[-1]
    assert {"run", "status", "final_val", "lr", "gd"} <= set(header)
    assert note.startswith("left out to fit 80 columns: ")
    assert "duration_s" in note and "--columns" in note


def test_columns_picks_and_orders_columns_in_every_format(filled_sqlite):
    table = at_width(120, "runs", "--db", filled_sqlite, "--columns", "gd,run_id,final_val_loss")
    assert table.output.splitlines()[0].split() == ["gd", "run", "final_val"]
    rows = at_width(
        120, "runs", "--db", filled_sqlite, "--columns", "gd, run_id", "--format", "csv"
    )
    assert rows.output.splitlines()[0] == "gd,run_id"
    one = at_width(120, "sweeps", "--db", filled_sqlite, "--columns", "name", "--format", "json")
    assert json.loads(one.output) == [{"name": "acts"}]


def test_csv_and_json_stay_complete_and_exact(filled_sqlite):
    runs = nnlab.connect(filled_sqlite).runs()
    text = at_width(80, "runs", "--db", filled_sqlite, "--format", "csv").output
    records = list(csv.DictReader(io.StringIO(text)))
    assert list(records[0]) == list(runs.columns)
    assert float(records[0]["final_val_loss"]) == runs.final_val_loss.iloc[0]  # full precision
    listed = json.loads(at_width(80, "sweeps", "--db", filled_sqlite, "--format", "json").output)
    assert set(listed[0]) == set(nnlab.connect(filled_sqlite).sweeps().columns)


@pytest.mark.parametrize("command", ["runs", "sweeps"])
def test_an_unknown_column_is_one_line_with_a_suggestion(filled_sqlite, command):
    result = at_width(120, command, "--db", filled_sqlite, "--columns", "status,stauts")
    assert result.exit_code == 2
    assert "unknown column 'stauts'" in result.output
    assert "Did you mean 'status'" in result.output  # for sweeps: "or 'statuses'?"
    assert "Traceback" not in result.output
