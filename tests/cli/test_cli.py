"""The `nnlab` command line: a thin shell whose output and exit codes users rely on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from nnlab import __version__
from nnlab.cli import cli

README = Path(__file__).parents[2] / "README.md"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version_and_help():
    assert invoke("--version").output.strip() == f"nnlab, version {__version__}"
    result = invoke("--help")
    assert result.exit_code == 0
    assert "train" in result.output


def test_train_prints_epochs_and_status():
    result = invoke(
        "train",
        "--data",
        "spirals",
        "--hidden",
        "16,16",
        "--activation",
        "tanh",
        "--gd",
        "minibatch",
        "--batch-size",
        "32",
        "--learning-rate",
        "0.1",
        "--optimizer",
        "sgd",
        "--epochs",
        "6",
        "--seed",
        "0",
        "--every",
        "1",
    )
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if re.match(r"\s+\d+\s", line)]
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(float(row[1])) for row in rows)
    assert "completed after 6 epochs, 48 updates" in result.output


def test_train_gd_variants_count_updates():
    # 300 spiral points, 240 for training: batch = 1 update per epoch, stochastic = 240
    batch = invoke("train", "--gd", "batch", "--epochs", "3")
    stochastic = invoke("train", "--gd", "stochastic", "--epochs", "2")
    assert "3 updates" in batch.output
    assert "480 updates" in stochastic.output


def test_train_is_deterministic_from_seed():
    first = invoke("train", "--epochs", "3", "--seed", "7", "--every", "1").output
    again = invoke("train", "--epochs", "3", "--seed", "7", "--every", "1").output
    other = invoke("train", "--epochs", "3", "--seed", "8", "--every", "1").output

    def losses(out: str) -> list[str]:
        return [line.split()[1] for line in out.splitlines() if re.match(r"\s+\d+\s", line)]

    assert losses(first) == losses(again)
    assert losses(first) != losses(other)


def test_train_on_a_csv_file(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    label = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    path = tmp_path / "points.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": label}).to_csv(path)
    result = invoke("train", "--data", str(path), "--target", "label", "--epochs", "5")
    assert result.exit_code == 0, result.output
    assert "completed after 5 epochs" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--learning-rate", "-1"], "--learning-rate must be a finite number > 0, got -1.0"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1 (or 'auto' for"),
        (["--batch-size", "big"], "'big' is not an int or 'auto'"),
        (["--batch-size", "5000"], "--batch-size 5000 is larger than the 240 training samples"),
        (["--data", "spiralz"], "Did you mean 'spirals'?"),
        (["--activation", "sigmoidal"], "'sigmoidal' is not one of"),
        (["--hidden", "16,x"], "not a comma-separated list of layer widths"),
        (["--hidden", "0"], "layer widths must be >= 1"),
        (["--loss", "cross_entropy", "--output", "identity"], "does not fit output activation"),
        (["--data", "missing.csv", "--target", "y"], "missing.csv"),
        (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
        (["--data", str(README.parent / "sweeps/data/moons.csv")], "moons.csv' needs --target"),
    ],
)
def test_bad_input_exits_2_with_a_message(args, message):
    result = CliRunner().invoke(cli, ["train", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_csv_feature_names_the_column(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0], "colour": ["r", "g", "b", "r"], "y": [0, 1, 0, 1]}
    ).to_csv(path, index=False)
    result = CliRunner().invoke(cli, ["train", "--data", str(path), "--target", "y"])
    assert result.exit_code == 2
    assert "colour" in result.output


def test_console_script_runs_in_a_fresh_process():
    """The installed entry point, as a user runs it: no traceback for a user mistake."""
    process = subprocess.run(
        [sys.executable, "-m", "nnlab.cli", "train", "--learning-rate", "0"],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 2
    assert "--learning-rate must be a finite number > 0" in process.stderr
    assert "Traceback" not in process.stderr


def _commands(group, prefix="nnlab"):
    """Every command a user can run, groups that run without a subcommand included."""
    for name, command in group.commands.items():
        if not isinstance(command, click.Group) or command.invoke_without_command:
            yield f"{prefix} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix} {name}")


def _options(command) -> set[str]:
    return {opt for p in command.params for opt in p.opts + p.secondary_opts if opt[0] == "-"}


def _readme_docs(readme: str, name: str) -> str:
    """Where README documents a command: the option table after "`nnlab train` options:",
    else the command table's row that starts with the command."""
    heading = f"`{name}` options:"
    if heading in readme:
        return readme.split(heading, 1)[1].split("\n\n", 2)[1]
    rows = [line for line in readme.splitlines() if line.startswith((f"| `{name}`", f"| `{name} "))]
    assert rows, f"README has no table row for {name}"
    return rows[0]


def test_readme_documents_every_command_and_option():
    """Each command's row (or option table) in README lists exactly the options it has."""
    readme = README.read_text()
    for name, command in _commands(cli):
        docs = _readme_docs(readme, name)
        for opt in _options(command) - {"--help"}:
            assert f"`{opt}" in docs or f"{opt}`" in docs, f"README: {name} lacks {opt}"
        documented = set(re.findall(r"`(--[a-z][a-z0-9-]*)", docs))
        assert documented <= _options(command), (
            f"README: {name} has no {documented - _options(command)}"
        )


def test_readme_mentions_only_options_that_exist():
    every = set().union(*(_options(command) for _, command in _commands(cli)), _options(cli))
    every.add("--help")
    mentioned = set(re.findall(r"nnlab [a-z ]*?(--[a-z][a-z0-9-]*)", README.read_text()))
    assert mentioned <= every, mentioned - every


def test_every_help_describes_every_option_and_shows_an_example():
    for name, command in [("nnlab", cli), *_commands(cli)]:
        assert "Example:" in (command.help or ""), f"{name} --help has no example"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts[0]} has no help"
    assert "report" in invoke("sweep", "--help").output.split("Options:")[0]


def test_train_on_xor_works_with_the_defaults():
    """Regression (issue 10): the default batch size of 32 was larger than xor's 4 samples."""
    result = CliRunner().invoke(cli, ["train", "--data", "xor", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "completed after 3 epochs" in result.output
    assert "Error" not in result.output


def test_counts_are_singular_for_one():
    result = invoke("train", "--gd", "batch", "--epochs", "1")
    assert "after 1 epoch, 1 update;" in result.output
