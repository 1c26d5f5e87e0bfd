"""Successive halving, ASHA and Hyperband: real runs, real joblib workers and databases.

What is checked against what: a scheduled sweep against the same grid trained in full (a
promoted run's epochs equal the full run's), against itself under other ``-j``, backends and
a kill (the same decisions), and against the rules of its rungs (counts, cuts, budget).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import text

import nnlab
from nnlab.cli import cli
from nnlab.store import open_store
from nnlab.store.rungs import Ladder
from nnlab.sweeps.runner import run_sweep
from nnlab.sweeps.spec import SpecError, parse_spec

GRID = textwrap.dedent("""\
    name: {name}
    data: {{name: spirals, n_samples: 150, classes: 3, noise: 0.2}}
    model: {{hidden: [8], loss: cross_entropy}}
    train: {{epochs: 12, optimizer: sgd, gd: minibatch, batch_size: 16}}
    grid:
      learning_rate: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 30.0]
      activation: [tanh, relu]
    seeds: 2
""")
CONFIGURATIONS, SEEDS = 14, 2


def spec(kind: str | None, name: str = "halving", **scheduler) -> str:
    text_ = GRID.format(name=name)
    if kind is None:
        return text_
    settings = {"type": kind, "min_epochs": 1, "eta": 3, **scheduler}
    inline = ", ".join(f"{key}: {value}" for key, value in settings.items())
    return text_ + f"scheduler: {{{inline}}}\n"


def decisions(url: str, name: str = "halving") -> dict:
    """(configuration, rung) -> decision, as recorded."""
    with open_store(url).read() as connection:
        rows = connection.execute(
            text(
                "SELECT g.configuration_hash, g.rung, g.decision, g.score FROM rung_entries g "
                "JOIN sweeps s ON s.id = g.sweep_id WHERE s.name = :name"
            ),
            {"name": name},
        )
        return {(c, rung): (decision, score) for c, rung, decision, score in rows}


def outcomes(url: str, name: str = "halving") -> dict:
    """(learning rate, activation, seed) -> (status, rung, epochs run)."""
    runs = nnlab.connect(url).runs(sweep=name)
    return {
        (r.learning_rate, r.activation, r.seed): (r.status, r.rung, r.epochs_run)
        for r in runs.itertuples()
    }


def curves(url: str, name: str) -> dict:
    epochs = nnlab.connect(url).epochs(sweep=name)
    return {
        (r.learning_rate, r.activation, r.seed, r.epoch): (r.train_loss, r.val_loss, r.grad_norm)
        for r in epochs.itertuples()
    }


# --- the ladder ---


@pytest.mark.parametrize(
    ("min_epochs", "eta", "max_epochs", "rungs"),
    [(1, 3, 50, (1, 3, 9, 27, 50)), (2, 3, 50, (2, 6, 18, 50)), (1, 2, 8, (1, 2, 4, 8))],
)
def test_rungs_are_at_min_epochs_times_powers_of_eta_then_the_last_epoch(
    min_epochs, eta, max_epochs, rungs
):
    assert Ladder("sha", "val_loss", min_epochs, eta, max_epochs).epochs == rungs


@pytest.mark.parametrize("configurations", [1, 2, 7, 200, 1000])
def test_hyperband_shares_every_configuration_among_its_brackets(configurations):
    ladder = Ladder("hyperband", "val_loss", 1, 3, 27)
    sizes = ladder.bracket_sizes(configurations)
    assert len(sizes) == ladder.brackets == 4 and sum(sizes) == configurations
    if configurations >= 100:  # the most aggressive bracket gets the most configurations
        assert sizes == sorted(sizes, reverse=True)


# --- the spec ---


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        ("{type: halving}", "scheduler.type: must be one of 'sha', 'asha', 'hyperband'"),
        ("{type: sha, eta: 1}", "scheduler.eta: eta must be"),
        ("{type: sha, min_epochs: 12}", "scheduler.min_epochs: must be below train.epochs (12)"),
        ("{type: sha, metric: loss}", "scheduler.metric: must be one of 'val_loss'"),
        ("{type: sha, grace: 1}", "scheduler.grace: unknown key"),
        ("[sha]", "scheduler: must be a mapping"),
    ],
)
def test_a_bad_scheduler_is_refused_naming_the_key_and_its_line(scheduler, message):
    with pytest.raises(SpecError) as refused:
        parse_spec(GRID.format(name="x") + f"scheduler: {scheduler}\n", source="s.yaml")
    assert f"s.yaml:9: {message}" in str(refused.value)


def test_a_scheduler_needs_one_epochs_and_a_metric_the_runs_record():
    with pytest.raises(SpecError, match=r"grid\.epochs: a sweep with a scheduler trains every"):
        parse_spec(spec("sha").replace("grid:\n", "grid:\n  epochs: [5, 12]\n"))
    no_validation = spec("sha").replace("noise: 0.2", "noise: 0.2, val_fraction: 0")
    with pytest.raises(SpecError, match="val_loss needs validation data"):
        parse_spec(no_validation.replace("eta: 3", "eta: 3, metric: val_loss"))
    assert parse_spec(no_validation).scheduler["metric"] == "train_loss"  # the default then


def test_the_cli_refuses_a_bad_scheduler_in_one_line_with_status_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GRID.format(name="x") + "scheduler: {type: sha, eta: 0}\n")
    result = CliRunner().invoke(cli, ["sweep", str(path), "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2, result.output
    assert "scheduler.eta" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.db").exists()


# --- successive halving ---


def test_sha_promotes_the_best_third_and_a_promoted_run_trains_on_as_if_never_paused(db_url):
    result = run_sweep(parse_spec(spec("sha")), db_url, jobs=2)
    run_sweep(parse_spec(spec(None, name="full")), db_url, jobs=2)
    lab = nnlab.connect(db_url)
    # rungs at 1, 3, 9, 12 epochs: 14 configurations, then 4, then 1, then 1
    rungs = lab.rungs("halving")
    assert rungs.epoch.tolist() == [1, 3, 9, 12]
    assert rungs.entered.tolist() == [14, 4, 1, 1]
    assert rungs.promoted.tolist() == [4, 1, 1, 0]
    assert (rungs.promoted + rungs.pruned + rungs.waiting).tolist()[:-1] == [14, 4, 1]
    assert result.total == CONFIGURATIONS * SEEDS and result.unfinished == 0
    runs = lab.runs(sweep="halving")
    assert set(runs.status) <= {"completed", "pruned", "diverged"}
    assert (runs.status == "pruned").sum() > CONFIGURATIONS  # most were stopped
    # every epoch it trained is the full sweep's epoch, to the bit: resumed, not retrained
    pruned, full = curves(db_url, "halving"), curves(db_url, "full")
    assert pruned.keys() <= full.keys()
    for key, losses in pruned.items():
        np.testing.assert_allclose(losses, full[key], rtol=1e-12, atol=0)
    # a run pruned at rung k has exactly the epochs of rung k; the budget counts each once
    epochs_at = dict(zip(rungs.rung, rungs.epoch, strict=True))
    stopped = runs[runs.status == "pruned"]
    assert (stopped.epochs_run == stopped.rung.map(epochs_at)).all()
    budget = lab.budget("halving")
    assert budget.spent == runs.epochs_run.sum() == len(lab.epochs(sweep="halving"))
    assert budget.full == CONFIGURATIONS * SEEDS * 12
    with open_store(db_url).read() as connection:  # nothing left behind
        assert connection.execute(text("SELECT count(*) FROM checkpoints")).scalar() == 0


def test_the_best_configuration_is_the_one_trained_to_the_end(sqlite_url):
    run_sweep(parse_spec(spec("sha")), sqlite_url)
    best = nnlab.connect(sqlite_url).configurations("halving").iloc[0]
    assert best.rung == 3 and best.runs == SEEDS  # the last rung, both seeds
    assert np.isfinite(best.final_val_loss_mean)


def test_a_diverged_seed_makes_its_configuration_the_worst(sqlite_url):
    """Learning rate 30 diverges; its configurations are never promoted, whatever its other
    seed looks like."""
    run_sweep(parse_spec(spec("sha")), sqlite_url)
    entries = decisions(sqlite_url)
    runs = nnlab.connect(sqlite_url).runs(sweep="halving")
    diverged = set(runs.learning_rate[runs.status == "diverged"])
    assert diverged  # the grid is made so
    assert all(score is not None or decision == "pruned" for decision, score in entries.values())
    assert set(runs.learning_rate[runs.rung > 0]).isdisjoint({30.0})


@pytest.mark.parametrize(("jobs", "backend"), [(1, "loky"), (2, "threading")])
def test_sha_decides_the_same_whatever_the_workers(tmp_path, jobs, backend):
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    run_sweep(parse_spec(spec("sha")), reference, jobs=2)
    url = f"sqlite:///{tmp_path / 'other.db'}"
    run_sweep(parse_spec(spec("sha")), url, jobs=jobs, backend=backend)
    assert decisions(url) == decisions(reference)
    assert outcomes(url) == outcomes(reference)


def test_hyperband_runs_each_bracket_as_its_own_halving(sqlite_url):
    run_sweep(parse_spec(spec("hyperband")), sqlite_url, jobs=2)
    lab = nnlab.connect(sqlite_url)
    rungs = lab.rungs("halving")
    assert lab.scheduler("halving")["brackets"] == 4
    entered = rungs.groupby("bracket").entered.first()  # at each bracket's first rung
    assert entered.sum() == CONFIGURATIONS
    runs = lab.runs(sweep="halving")
    # bracket b starts at rung b: its runs train at least to that rung's epochs
    brackets = rungs.groupby("bracket").epoch.first()
    with open_store(sqlite_url).read() as connection:
        bracket_of = dict(connection.execute(text("SELECT id, bracket FROM runs")).all())
    clean = runs[runs.status != "diverged"]
    assert (clean.epochs_run >= clean.run_id.map(bracket_of).map(brackets)).all()
    assert set(runs.status) <= {"completed", "pruned", "diverged"}
    last = rungs[rungs.bracket == 3]  # the last bracket trains its configurations in full
    assert last.rung.tolist() == [3] and last.epoch.tolist() == [12]


# --- ASHA ---


def test_asha_promotes_without_waiting_and_keeps_its_decisions_on_resume(sqlite_url):
    run_sweep(parse_spec(spec("asha")), sqlite_url, jobs=2)
    lab = nnlab.connect(sqlite_url)
    rungs = lab.rungs("halving")
    assert rungs.entered.iloc[0] == CONFIGURATIONS and rungs.waiting.sum() == 0
    assert rungs.promoted.iloc[0] >= CONFIGURATIONS // 3  # at least what sha keeps
    with open_store(sqlite_url).read() as connection:
        first_up, last_in = connection.execute(
            text(
                "SELECT (SELECT min(decided_at) FROM rung_entries WHERE rung = 0 AND "
                "decision = 'promoted'), (SELECT max(entered_at) FROM rung_entries WHERE "
                "rung = 0)"
            )
        ).one()
    assert first_up < last_in  # promoted before the rung was complete
    before = decisions(sqlite_url)
    again = run_sweep(parse_spec(spec("asha")), sqlite_url, jobs=2)
    assert again.ran == 0 and decisions(sqlite_url) == before


# --- faults ---


def _start(tmp_path, spec_text: str, url: str) -> subprocess.Popen:
    path = tmp_path / "halving.yaml"
    path.write_text(spec_text)
    command = [sys.executable, "-m", "nnlab.cli", "sweep", str(path), "--db", url, "-j", "2"]
    return subprocess.Popen(
        [*command, "-q", "--no-report"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


SLOW = spec("sha").replace("n_samples: 150", "n_samples: 600").replace("epochs: 12", "epochs: 60")


def _wait_for_paused(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open_store(url, create=False).read() as connection:
                query = "SELECT count(*) FROM runs WHERE rung > 0 AND status = 'running'"
                if connection.execute(text(query)).scalar():
                    return
        except Exception:  # the sweep may still be creating the database
            pass
        time.sleep(0.05)
    raise AssertionError("no promoted run started")


def test_a_sweep_killed_mid_rung_resumes_to_the_same_decisions_and_curves(tmp_path):
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    run_sweep(parse_spec(SLOW), reference, jobs=2)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    sweep = _start(tmp_path, SLOW, url)
    _wait_for_paused(url)  # a promoted run is training from its checkpoint
    os.killpg(sweep.pid, signal.SIGKILL)  # the runner and its workers: nothing is marked
    sweep.communicate(timeout=30)
    resumed = _start(tmp_path, SLOW, url)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "sha by val_loss, eta 3, rungs at 1, 3, 9, 27, 60 epochs" in out
    assert decisions(url) == decisions(reference)
    assert outcomes(url) == outcomes(reference)
    assert curves(url, "halving") == curves(reference, "halving")  # no epoch twice or lost


def test_two_runners_on_one_sweep_promote_once(tmp_path, pg_server):
    """Two runners share a PostgreSQL sweep: each decision is taken once, under the rungs'
    lock, and the sweep ends as a single runner would have left it."""
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    run_sweep(parse_spec(SLOW), reference, jobs=2)
    url = pg_server.new_database()
    first, second = _start(tmp_path, SLOW, url), _start(tmp_path, SLOW, url)
    for runner in (first, second):
        _, err = runner.communicate(timeout=300)
        assert runner.returncode == 0, err
    assert decisions(url) == decisions(reference)
    assert outcomes(url) == outcomes(reference)


def test_a_scheduled_sweep_takes_no_new_runs_and_keeps_its_scheduler(sqlite_url):
    run_sweep(parse_spec(spec("sha")), sqlite_url)
    wider = spec("sha").replace("[tanh, relu]", "[tanh, relu, sigmoid]")
    with pytest.raises(SpecError, match="it adds runs to a sweep with a scheduler"):
        run_sweep(parse_spec(wider), sqlite_url)
    with pytest.raises(SpecError, match="its scheduler differs"):
        run_sweep(parse_spec(spec("sha", eta=2)), sqlite_url)
    with pytest.raises(SpecError, match="its scheduler differs"):
        run_sweep(parse_spec(spec(None)), sqlite_url)


def test_the_cli_prints_the_rungs_and_the_budget(tmp_path):
    path = tmp_path / "halving.yaml"
    path.write_text(spec("sha"))
    db = str(tmp_path / "h.db")
    result = CliRunner().invoke(cli, ["sweep", str(path), "--db", db, "-q", "--no-report"])
    assert result.exit_code == 0, result.output
    budget = nnlab.connect(db).budget("halving")
    assert f"{budget.spent} epochs of {CONFIGURATIONS * SEEDS * 12}" in result.output
    assert f"({budget.spent / (CONFIGURATIONS * SEEDS * 12):.1%} of the full grid" in result.output
    assert "rung epoch configurations promoted pruned waiting best val_loss" in result.output


def test_the_dry_run_says_how_many_epochs_sha_will_train(tmp_path):
    path = tmp_path / "halving.yaml"
    path.write_text(spec("sha").replace("3.0, 30.0", "3.0"))  # nothing diverges
    db = str(tmp_path / "h.db")
    planned = CliRunner().invoke(cli, ["sweep", str(path), "--db", db, "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert not (tmp_path / "h.db").exists()
    ran = CliRunner().invoke(cli, ["sweep", str(path), "--db", db, "-q", "--no-report"])
    assert ran.exit_code == 0, ran.output
    spent = nnlab.connect(db).budget("halving").spent
    runs = nnlab.connect(db).runs(sweep="halving")
    assert set(runs.status) <= {"completed", "pruned"}  # none stopped by itself
    assert f"at most {spent} epochs of the full grid's {len(runs) * 12}" in planned.output


def _registered_with_a_broken_seed(url: str, learning_rate: float) -> tuple[int, dict, str]:
    """Register the sha sweep, nothing trained, with the seed-1 run of (``learning_rate``,
    relu) given a stored configuration the engine rejects (no spec can say this: validation
    refuses it), so that it raises when trained; returns its id, its configuration as it was,
    and its configuration hash."""
    from sqlalchemy import select, update

    from nnlab.store.models import Run

    def stop(*_):
        raise KeyboardInterrupt  # registered, nothing trained

    with pytest.raises(KeyboardInterrupt):
        run_sweep(parse_spec(spec("sha")), url, on_start=stop)
    with open_store(url).write() as connection:
        run_id, config, name = connection.execute(
            select(Run.id, Run.config, Run.configuration_hash).where(
                Run.learning_rate == learning_rate, Run.activation == "relu", Run.seed == 1
            )
        ).one()
        broken = {**config, "loss": "cross_entropy", "output": "identity"}
        connection.execute(update(Run).where(Run.id == run_id).values(config=broken))
    return run_id, config, name


def test_a_failed_seed_makes_its_configuration_the_worst(sqlite_url):
    """A seed whose run raises (a stored configuration the engine rejects) fails alone; its
    configuration is scored the worst at its rung and pruned, its other seed with it."""
    _, _, name = _registered_with_a_broken_seed(sqlite_url, 0.3)
    run_sweep(parse_spec(spec("sha")), sqlite_url, jobs=2)
    assert decisions(sqlite_url)[(name, 0)] == ("pruned", None)
    runs = nnlab.connect(sqlite_url).runs(sweep="halving")
    mine = runs[(runs.learning_rate == 0.3) & (runs.activation == "relu")]
    assert sorted(mine.status) == ["failed", "pruned"] and set(mine.rung) == {0}


REGRESSION = textwrap.dedent("""\
    name: sine
    data: {{name: sine, n_samples: 150, val_fraction: {val}}}
    model: {{hidden: [8], loss: mse}}
    train: {{epochs: 9, optimizer: sgd, gd: minibatch, batch_size: 16}}
    grid: {{learning_rate: [0.01, 0.1, 0.3]}}
    scheduler: {{type: sha, metric: {metric}}}
""")


@pytest.mark.parametrize(
    ("metric", "val", "message"),
    [
        ("val_accuracy", 0.2, "scheduler.metric: val_accuracy is not recorded for 'sine'"),
        ("train_accuracy", 0.2, "scheduler.metric: train_accuracy is not recorded for 'sine'"),
    ],
)
def test_a_metric_the_runs_never_record_is_refused_before_anything_trains(
    tmp_path, metric, val, message
):
    """Accuracy on a regression set is never recorded: every configuration would score the
    worst and be pruned at rung 0, the sweep 'finished' with nothing trained past epoch 1."""
    path = tmp_path / "sine.yaml"
    path.write_text(REGRESSION.format(metric=metric, val=val))
    db = f"sqlite:///{tmp_path / 'nnlab.db'}"
    result = CliRunner().invoke(cli, ["sweep", str(path), "--db", db, "--no-report"])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "nnlab.db").exists() or not nnlab.connect(db).runs().shape[0]


def test_runs_promoted_elsewhere_between_two_reads_are_trained_not_a_stop(sqlite_url):
    """Another runner pauses the last run of a rung, promoting a configuration, just after
    this runner found nothing to claim (the other runner's runs all running): this runner then
    finds runs neither paused nor held, pending; it trains them, it does not stop saying the
    rungs' records are broken."""
    import sqlite3
    from dataclasses import asdict

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from nnlab.store.process import ProcessIdentity

    run_sweep(parse_spec(spec("sha")), sqlite_url, jobs=2)
    path = sqlite_url.removeprefix("sqlite:///")
    me = asdict(ProcessIdentity.here())  # a live holder: "another runner" of this sweep
    top = Ladder("sha", "val_loss", 1, 3, 12).top
    with sqlite3.connect(path) as db:
        held = [i for (i,) in db.execute("SELECT id FROM runs WHERE status = 'completed'")]
        marks = ", ".join(f"{name} = :{name}" for name in me)
        db.execute(
            f"UPDATE runs SET status = 'running', lease = 'elsewhere', "
            f"heartbeat_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), {marks} "
            f"WHERE status = 'completed'",
            me,
        )
    promoted = []

    def promote_after_todo(conn, cursor, statement, *_):
        if not promoted and "coalesce(runs.rung" in statement and "FROM runs" in statement:
            promoted.append(True)
            with sqlite3.connect(path) as other:  # the other runner's commit, in between
                other.execute(
                    f"UPDATE runs SET status = 'pending', rung = {top} WHERE status = 'running'"
                )

    event.listen(Engine, "after_cursor_execute", promote_after_todo)
    try:
        result = run_sweep(parse_spec(spec("sha")), sqlite_url, jobs=2)
    finally:
        event.remove(Engine, "after_cursor_execute", promote_after_todo)
    assert promoted and result.statuses["completed"] == len(held) and not result.unfinished
    assert nnlab.connect(sqlite_url).sweeps().status.tolist() == ["finished"]


def test_a_failed_seed_retried_is_scored_anew_if_its_rung_is_undecided(tmp_path, db_url):
    """A seed fails, its configuration enters rung 0 scored the worst, and the sweep stops
    before the rung is decided. Retried (``retry_failed``), the seed trains: its configuration
    is scored again from it, and the sweep decides as if it had never failed, instead of
    pruning the configuration on its stale score (which a sweep stopped a moment earlier,
    before the configuration entered, would not have)."""
    from sqlalchemy import update

    from nnlab.store.models import Run

    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    run_sweep(parse_spec(spec("sha")), reference, jobs=2)
    url = db_url
    run_id, config, name = _registered_with_a_broken_seed(url, 1.0)

    def stop(*_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # once the seed has failed
        run_sweep(parse_spec(spec("sha")), url, on_result=lambda _, s: s == "failed" and stop())
    assert decisions(url)[(name, 0)] == (None, None)  # entered, scored the worst, undecided
    with open_store(url).write() as connection:
        connection.execute(update(Run).where(Run.id == run_id).values(config=config))
    run_sweep(parse_spec(spec("sha")), url, jobs=2, retry_failed=True)
    assert decisions(reference)[(name, 0)][0] == "promoted"
    assert decisions(url) == decisions(reference)
    assert outcomes(url) == outcomes(reference)
