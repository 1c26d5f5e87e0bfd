"""Sweeps train compatible runs together (packs), and each run's record is the run's alone."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from click.testing import CliRunner

import nnlab
from nnlab.checks import InputError
from nnlab.cli import cli
from nnlab.store import open_store
from nnlab.sweeps.config import train_config
from nnlab.sweeps.grid import from_values
from nnlab.sweeps.runner import longest_first, packs, run_sweep
from nnlab.sweeps.spec import parse_spec

SPEC = textwrap.dedent("""\
    name: packed
    data: {name: spirals, n_samples: 120, classes: 3, noise: 0.2, val_fraction: 0.25}
    model: {hidden: [8]}
    train: {epochs: 6, gd: minibatch, batch_size: 8, optimizer: adam, patience: 2}
    grid:
      learning_rate: [0.001, 0.01, 0.1, 1.0, 30.0]
      activation: [tanh, relu]
      weight_decay: [0.0, 0.01]
    seeds: [0, 1]
""")
N_RUNS = 5 * 2 * 2 * 2
METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "grad_norm")


def stored_runs(url: str) -> dict[int, tuple]:
    """Each run's config, status and epochs (every metric, exactly as stored)."""
    with open_store(url, create=False).read() as connection:
        runs = connection.exec_driver_sql("SELECT id, config, status FROM runs").all()
        epochs = connection.exec_driver_sql(
            f"SELECT run_id, epoch, learning_rate, {', '.join(METRICS)} FROM epochs "
            "ORDER BY run_id, epoch"
        ).all()
    by_run: dict[int, list] = {}
    for run_id, *row in epochs:
        by_run.setdefault(run_id, []).append(tuple(row))
    return {
        run_id: (json.loads(config) if isinstance(config, str) else config, status, by_run[run_id])
        for run_id, config, status in runs
    }


def alone(config: dict) -> tuple[str, list[tuple]]:
    """The run trained by itself, outside any sweep: its status and epochs."""
    result = train_config(from_values(config)).result
    rows = [
        (r.epoch, r.learning_rate, *(getattr(r, name) for name in METRICS)) for r in result.history
    ]
    return result.status, rows


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_every_run_of_a_packed_sweep_is_the_run_trained_alone(db_url):
    result = run_sweep(parse_spec(SPEC), db_url, jobs=2)
    assert sum(result.statuses.values()) == N_RUNS
    stored = stored_runs(db_url)
    assert len(stored) == N_RUNS
    for config, status, epochs in stored.values():
        assert (status, epochs) == alone(config)  # to the bit, through the database
    statuses = {status for _, status, _ in stored.values()}
    assert {"diverged", "early_stopped"} <= statuses  # runs left their packs early


def test_packed_runs_count_their_share_of_the_time(sqlite_url):
    start = time.monotonic()
    run_sweep(parse_spec(SPEC.replace("epochs: 6", "epochs: 30")), sqlite_url, jobs=2)
    elapsed = time.monotonic() - start
    with open_store(sqlite_url, create=False).read() as connection:
        durations = connection.exec_driver_sql("SELECT sum(duration_s) FROM runs").scalar()
        seconds = connection.exec_driver_sql("SELECT sum(seconds) FROM epochs").scalar()
    # shares of two workers' time: a run that trained beside nine others is not counted ten
    # times over
    assert 0 < seconds <= durations * (1 + 1e-9) and durations <= 2 * elapsed


def test_packing_changes_nothing_but_the_time(sqlite_url, tmp_path):
    run_sweep(parse_spec(SPEC), sqlite_url, jobs=2, backend="threading", max_pack=1)
    other = f"sqlite:///{tmp_path / 'packed.db'}"
    run_sweep(parse_spec(SPEC), other, jobs=1)
    one_by_one, packed = stored_runs(sqlite_url), stored_runs(other)
    assert {json.dumps(c, sort_keys=True): (s, e) for c, s, e in one_by_one.values()} == {
        json.dumps(c, sort_keys=True): (s, e) for c, s, e in packed.values()
    }


def items(configs: list[dict]) -> list[tuple[int, dict]]:
    return list(enumerate(configs, start=1))


def test_packs_group_runs_that_differ_only_in_their_own_settings():
    base = {"data": {"name": "spirals"}, "activation": "tanh", "seed": 0, "batch_size": 8}
    configs = [
        {**base, "learning_rate": 0.1},
        {**base, "learning_rate": 0.2, "momentum": 0.5, "init": "he_normal"},  # with 1
        {**base, "seed": 1},  # another shuffle, with 1
        {**base, "activation": "relu"},  # with 1
        {**base, "batch_size": 16},
        {**base, "learning_rate": 0.3, "epochs": 9, "patience": 3, "weight_decay": 0.1},
    ]
    tasks = packs(items(configs), jobs=1)
    # one pack but for other batches; side by side by activation, then seed
    assert [[run_id for run_id, _ in task] for task in tasks] == [[4, 1, 2, 6, 3], [5]]


def test_packs_are_balanced_and_leave_every_worker_work():
    configs = [{"learning_rate": 0.001 * k, "seed": 0} for k in range(1, 24)]
    sizes = sorted(len(task) for task in packs(items(configs), jobs=1, max_pack=10))
    assert sizes == [7, 8, 8]  # as few as fit, of sizes that differ by one
    assert len(packs(items(configs[:6]), jobs=2)) == 4  # two tasks per worker
    assert all(len(task) == 1 for task in packs(items(configs), jobs=2, max_pack=1))
    runs = [run_id for task in packs(items(configs), jobs=2) for run_id, _ in task]
    assert sorted(runs) == list(range(1, 24))


def test_the_longest_packs_go_first():
    configs = [
        {"gd": "batch", "epochs": 50, "learning_rate": 0.1},
        {"gd": "minibatch", "batch_size": 64, "epochs": 10, "learning_rate": 0.1},
        {"gd": "stochastic", "epochs": 10, "learning_rate": 0.1},
        {"gd": "minibatch", "batch_size": 8, "epochs": 10, "learning_rate": 0.1},
        {"gd": "minibatch", "batch_size": 8, "epochs": 10, "learning_rate": 0.2},
    ]
    tasks = longest_first(packs(items(configs), jobs=1))
    # work: 10 × (1 + 32), 20 × (1 + 32 / 8), 50 × 1 (one step an epoch), 10 × (1 + 32 / 64)
    assert [[run_id for run_id, _ in task] for task in tasks] == [[3], [4, 5], [1], [2]]


def test_max_pack_is_an_option_and_is_checked(tmp_path):
    spec = tmp_path / "packed.yaml"
    spec.write_text(SPEC)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    bad = CliRunner().invoke(cli, ["sweep", str(spec), "--db", db, "--max-pack", "0"])
    assert bad.exit_code == 2 and "--max-pack" in bad.output and "0" in bad.output
    with pytest.raises(InputError, match="max_pack"):
        nnlab.sweep(SPEC, db, max_pack=0, report=False, progress=False)
    assert not (tmp_path / "cli.db").exists()  # nothing written
