"""Running sweeps: real joblib workers and databases, failures isolated, resume, no duplicates."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import from_a_terminal, wait_for_exec
from sqlalchemy import select, text, update

import nnlab
from nnlab.checks import InputError
from nnlab.cli import cli
from nnlab.store import StoreError, open_store
from nnlab.store.models import Epoch, Run, utcnow
from nnlab.store.process import ProcessIdentity
from nnlab.sweeps.runner import SweepStopped, run_sweep
from nnlab.sweeps.spec import SpecError, parse_spec

SPEC = textwrap.dedent("""\
    name: small
    data: {name: spirals, n_samples: 90, classes: 3, noise: 0.2, val_fraction: 0.2}
    model: {hidden: [8]}
    train: {epochs: 5, optimizer: sgd}
    grid:
      learning_rate: [0.05, 0.5]
      gd: [batch, minibatch]
      batch_size: [8]
      activation: [tanh, relu]
    seeds: [0, 1]
""")
N_RUNS = 2 * 2 * 2 * 2


def curves(url: str) -> dict:
    epochs = nnlab.connect(url).epochs()  # the run's hyperparameters come alongside
    return {
        (r.learning_rate, r.gd, r.activation, r.seed, r.epoch): (r.train_loss, r.val_loss)
        for r in epochs.itertuples()
    }


def test_a_sweep_trains_and_logs_every_run(db_url):
    seen = []
    result = run_sweep(parse_spec(SPEC), db_url, on_result=lambda run, status: seen.append(status))
    assert result.total == N_RUNS and result.statuses == {"completed": N_RUNS}
    assert len(seen) == N_RUNS
    lab = nnlab.connect(db_url)
    runs = lab.runs(sweep="small")
    assert set(runs.status) == {"completed"} and set(runs.epochs_run) == {5}
    assert len(lab.epochs(sweep="small")) == N_RUNS * 5
    assert lab.sweeps().status.tolist() == ["finished"]


def test_a_run_that_raises_fails_alone(sqlite_url):
    spec = parse_spec(SPEC)
    run_sweep(spec, sqlite_url)
    # a run whose stored configuration the engine rejects (no spec can say this: validation
    # refuses it) raises inside its worker when the sweep trains it again
    with open_store(sqlite_url).write() as connection:
        config = connection.scalar(select(Run.config).where(Run.id == 3))
        broken = {**config, "loss": "cross_entropy", "output": "identity"}
        connection.execute(update(Run).where(Run.id == 3).values(status="pending", config=broken))
    result = run_sweep(spec, sqlite_url, jobs=2, retry_failed=True)
    assert result.statuses == {"failed": 1}
    runs = nnlab.connect(sqlite_url).runs()
    with open_store(sqlite_url).read() as connection:
        error = connection.scalar(select(Run.error).where(Run.id == 3))
    assert "does not fit output activation 'identity'" in error and "Traceback" in error
    assert (runs.status == "completed").sum() == N_RUNS - 1


def test_an_edited_comment_or_description_does_not_block_resume(sqlite_url):
    run_sweep(parse_spec(SPEC), sqlite_url)
    edited = SPEC.replace("name: small", "name: small   # renamed? no\ndescription: notes")
    edited = edited.replace("0.05", "5e-2")
    assert run_sweep(parse_spec(edited), sqlite_url).ran == 0


def test_same_curves_with_one_or_two_workers(tmp_path):
    one, two = (f"sqlite:///{tmp_path / name}" for name in ("one.db", "two.db"))
    run_sweep(parse_spec(SPEC), one, jobs=1)
    run_sweep(parse_spec(SPEC), two, jobs=2)
    a, b = curves(one), curves(two)
    assert a.keys() == b.keys() and len(a) == N_RUNS * 5
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=0, atol=1e-12)


def test_resume_runs_only_what_is_unfinished(sqlite_url, tmp_path):
    spec = parse_spec(SPEC)
    run_sweep(spec, sqlite_url)
    reference = curves(sqlite_url)
    assert run_sweep(spec, sqlite_url).ran == 0  # nothing left to do

    store = open_store(sqlite_url)
    with store.write() as connection:  # as if the sweep had been killed
        ids = [row[0] for row in connection.exec_driver_sql("SELECT id FROM runs LIMIT 3")]
        connection.execute(update(Run).where(Run.id == ids[0]).values(status="interrupted"))
        connection.execute(
            update(Run)
            .where(Run.id == ids[1])
            .values(status="running", heartbeat_at=utcnow() - timedelta(hours=1))
        )
        connection.execute(update(Run).where(Run.id == ids[2]).values(status="pending"))
        connection.execute(Epoch.__table__.delete().where(Epoch.run_id == ids[2]))
    result = run_sweep(spec, sqlite_url)
    assert result.ran == 3 and result.statuses == {"completed": 3}
    assert len(nnlab.connect(sqlite_url).epochs()) == N_RUNS * 5  # replaced, not duplicated
    assert curves(sqlite_url) == reference


def _hold(url: str, run_id: int, **holder) -> None:
    """Make ``run_id`` look held by another runner: running, with a fresh heartbeat unless
    ``heartbeat_at`` says otherwise."""
    with open_store(url).write() as connection:
        held = {"status": "running", "lease": "theirs-1", "heartbeat_at": utcnow(), **holder}
        connection.execute(update(Run).where(Run.id == run_id).values(**held))


def _all_final(url: str) -> bool:
    lab = nnlab.connect(url)
    return set(lab.runs().status) <= {"completed", "diverged"} and lab.sweeps().status.tolist() == [
        "finished"
    ]


def test_a_run_held_elsewhere_is_waited_for_then_taken_over_when_silent(sqlite_url):
    spec = parse_spec(SPEC)
    run_sweep(spec, sqlite_url)
    _hold(
        sqlite_url,
        1,
        hostname="elsewhere",
        pid=4242,
        boot_id="their-boot",
        heartbeat_at=utcnow() - timedelta(seconds=57),
    )
    waits, started = [], time.monotonic()
    result = run_sweep(spec, sqlite_url, on_wait=waits.append)  # stale after the default 60 s
    waited = time.monotonic() - started
    assert [run.holder for run in waits[0]] == ["elsewhere pid 4242"]
    assert 2 < waited < 30, waited  # it waited for the holder to go silent, then trained it
    assert result.statuses == {"completed": 1} and result.before == N_RUNS - 1
    assert _all_final(sqlite_url)


def test_a_run_whose_local_holder_dies_is_taken_over_at_once(sqlite_url):
    spec = parse_spec(SPEC)
    run_sweep(spec, sqlite_url)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = Path(f"/proc/{holder.pid}/stat").read_text().rpartition(")")[2].split()[19]
    here = ProcessIdentity.here()
    _hold(sqlite_url, 1, **{**vars(here), "pid": holder.pid, "process_start": int(start)})
    waits: list = []
    resumed = threading.Thread(
        target=lambda: waits.append(run_sweep(spec, sqlite_url, on_wait=waits.append))
    )
    resumed.start()
    deadline = time.monotonic() + 30
    while not waits:  # the resume waits for the live holder...
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert waits[0][0].pid == holder.pid and resumed.is_alive()
    holder.kill()  # ...which dies: its run is trained at once, not after the 60 s window
    holder.wait()
    resumed.join(timeout=20)
    assert not resumed.is_alive()
    assert waits[-1].statuses == {"completed": 1} and _all_final(sqlite_url)


def test_failed_runs_rerun_only_when_asked(sqlite_url):
    spec = parse_spec(SPEC)
    run_sweep(spec, sqlite_url)
    with open_store(sqlite_url).write() as connection:
        connection.execute(update(Run).where(Run.id == 1).values(status="failed"))
    assert run_sweep(spec, sqlite_url).ran == 0
    assert run_sweep(spec, sqlite_url, retry_failed=True).ran == 1


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        ("epochs: 5", "epochs: 6", "its model or train settings differ"),
        ("noise: 0.2", "noise: 0.3", "its data settings differ"),
        (
            "learning_rate: [0.05, 0.5]",
            "learning_rate: [0.05, 1.0]",
            "it drops grid.learning_rate 0.5",
        ),
        ("seeds: [0, 1]", "seeds: [1, 2]", "it drops seeds 0"),
        ("  batch_size: [8]\n", "", "its grid axes differ: batch_size"),
    ],
)
def test_a_changed_spec_under_the_same_name_is_refused_saying_why(sqlite_url, old, new, why):
    run_sweep(parse_spec(SPEC), sqlite_url)
    changed = parse_spec(SPEC.replace(old, new), source="s.yaml")
    pattern = rf"s.yaml: a sweep named 'small' already exists with a different spec \({why}\)"
    with pytest.raises(SpecError, match=pattern + ".*name: small-2"):
        run_sweep(changed, sqlite_url)
    assert nnlab.connect(sqlite_url).sweep("small").spec == SPEC  # nothing changed


def test_a_finished_sweep_is_extended_by_new_grid_values_and_seeds(sqlite_url):
    run_sweep(parse_spec(SPEC), sqlite_url)
    reference = curves(sqlite_url)
    wider = SPEC.replace("[0.05, 0.5]", "[0.05, 0.5, 1.0]").replace("[0, 1]", "[0, 1, 2]")
    result = run_sweep(parse_spec(wider), sqlite_url)
    assert result.before == N_RUNS and result.total == 3 * 2 * 2 * 3  # lr × gd × act × seeds
    assert result.ran == result.total - N_RUNS  # only the new runs trained
    lab = nnlab.connect(sqlite_url)
    assert lab.sweep("small").spec == wider and lab.sweeps().status.tolist() == ["finished"]
    assert {k: v for k, v in curves(sqlite_url).items() if k in reference} == reference
    assert run_sweep(parse_spec(wider), sqlite_url).ran == 0  # the extended spec resumes


def test_dry_run_says_what_the_real_run_would_do_and_writes_nothing(tmp_path):
    db = tmp_path / "runs.db"
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    runner = CliRunner()
    fresh = runner.invoke(cli, ["sweep", str(spec), "--db", str(db), "--dry-run"])
    assert fresh.exit_code == 0 and "a new sweep: every run would train" in fresh.output
    assert not db.exists()
    run_sweep(parse_spec(SPEC), f"sqlite:///{db}")
    before = db.read_bytes()
    spec.write_text(SPEC.replace("[0.05, 0.5]", "[0.05, 0.5, 1.0]"))
    wider = runner.invoke(cli, ["sweep", str(spec), "--db", str(db), "--dry-run"])
    assert (
        f"extends the stored sweep with new grid values or seeds: {N_RUNS} runs final, 8 would"
        in wider.output
    )
    spec.write_text(SPEC.replace("epochs: 5", "epochs: 6"))
    refused = runner.invoke(cli, ["sweep", str(spec), "--db", str(db), "--dry-run"])
    assert refused.exit_code == 2 and "its model or train settings differ" in refused.output
    assert db.read_bytes() == before


def test_cli_sweep_dry_run_and_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the report goes to ./reports/
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    runner = CliRunner()
    dry = runner.invoke(cli, ["sweep", str(spec), "--db", url, "--dry-run"])
    assert dry.exit_code == 0 and f"{N_RUNS} runs" in dry.output
    assert not (tmp_path / "runs.db").exists()
    run = runner.invoke(cli, ["sweep", str(spec), "--db", url, "-j", "2", "-q"])
    assert run.exit_code == 0, run.output
    assert f"{N_RUNS} completed" in run.output
    report = tmp_path / "reports" / "small.html"
    assert f"report: {Path('reports') / 'small.html'}" in run.output
    assert "Best configurations" in report.read_text()
    report.unlink()
    again = runner.invoke(cli, ["sweep", str(spec), "--db", url, "-q", "--no-report"])
    assert again.exit_code == 0 and "report:" not in again.output and not report.exists()


def test_cli_bad_spec_exits_2_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("batch_size: [8]", "batch_size: [8, 5000]"))
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--db", url])
    assert result.exit_code == 2
    assert f"{spec}:8: grid.batch_size: batch_size 5000 is larger than the 72" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs.db").exists()


SLOW = SPEC.replace("epochs: 5", "epochs: 400").replace("n_samples: 90", "n_samples: 300")


def _start_sweep(
    tmp_path, spec_text: str, url: str, *options: str, ignoring: tuple[str, ...] = ()
) -> subprocess.Popen:
    """``nnlab sweep`` as a user starts it (``ignoring``: see ``from_a_terminal``)."""
    spec = tmp_path / "slow.yaml"
    spec.write_text(spec_text)
    command = [sys.executable, "-m", "nnlab", "sweep", str(spec), "--db", url, "-j", "2", "-q"]
    return subprocess.Popen(
        from_a_terminal([*command, "--no-report", *options], ignoring),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_running(url: str, not_pid: int = -1, timeout: float = 120) -> tuple[int, int]:
    """(run id, pid) of the first run that a process other than ``not_pid`` is training."""
    query = text("SELECT id, pid FROM runs WHERE status = 'running' AND pid != :pid LIMIT 1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open_store(url, create=False).read() as connection:
                row = connection.execute(query, {"pid": not_pid}).first()
        except Exception:  # the sweep may still be creating the database
            row = None
        if row:
            return tuple(row)
        time.sleep(0.05)
    raise AssertionError("no run started")


def test_a_killed_worker_costs_only_its_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    sweep = _start_sweep(tmp_path, SLOW, url)
    run_id, pid = wait_for_running(url, sweep.pid)
    os.kill(pid, signal.SIGKILL)
    _, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err
    runs = nnlab.connect(url).runs()
    assert set(runs.status) == {"completed"}, runs.status.tolist()
    with open_store(url).read() as connection:
        attempts = connection.exec_driver_sql(f"SELECT attempts FROM runs WHERE id = {run_id}")
        assert attempts.scalar() == 2  # it was trained again
    epochs = nnlab.connect(url).epochs()
    assert len(epochs) == N_RUNS * 400  # no duplicate (run, epoch) rows


def test_sigterm_interrupts_and_the_sweep_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    sweep = _start_sweep(tmp_path, SLOW, url)
    wait_for_running(url, sweep.pid)
    sweep.send_signal(signal.SIGTERM)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert re.search(r"runs; trained now: .*; left: (\d+ interrupted|\d+ pending)", out), out
    runs = nnlab.connect(url).runs()
    assert "running" not in set(runs.status)
    assert "interrupted" in set(runs.status)
    assert nnlab.connect(url).sweeps().status.tolist() == ["interrupted"]
    resumed = _start_sweep(tmp_path, SLOW, url)
    resumed.communicate(timeout=300)
    assert resumed.returncode == 0
    assert set(nnlab.connect(url).runs().status) == {"completed"}
    assert len(nnlab.connect(url).epochs()) == N_RUNS * 400


@pytest.mark.parametrize("stop", ["SIGHUP to the runner", "SIGINT to the process group"])
def test_a_closed_terminal_or_ctrl_c_stops_the_sweep_cleanly(tmp_path, stop):
    """A closed terminal sends SIGHUP; Ctrl-C sends SIGINT to the runner and its workers."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    sweep = _start_sweep(tmp_path, SLOW, url)
    wait_for_running(url, sweep.pid)
    if stop.startswith("SIGHUP"):
        sweep.send_signal(signal.SIGHUP)
    else:
        os.killpg(sweep.pid, signal.SIGINT)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err
    assert err.strip().splitlines() == [  # the whole of stderr: no traceback
        "interrupted: in-flight runs are marked interrupted; run the same command again to resume"
    ]
    runs = nnlab.connect(url).runs()
    assert "running" not in set(runs.status) and "interrupted" in set(runs.status)
    assert nnlab.connect(url).sweeps().status.tolist() == ["interrupted"]


@pytest.mark.parametrize(
    "stop, after",
    [("SIGINT", after) for after in (0.2, 0.4, 0.55, 0.7, 0.85, 1.0)]
    + [("SIGTERM", 0.3), ("SIGHUP", 0.6)],
)
def test_a_stop_while_nnlab_starts_is_one_line(tmp_path, stop, after):
    """Ctrl-C (to the process group), SIGTERM or SIGHUP in the second nnlab takes to start:
    while it imports (NumPy's random module once lost a Ctrl-C), reads the spec (click once
    said "Aborted!"), creates the database (a closed connection's error once hid it), or
    starts its workers. Each is status 130, one line, and a database either not yet written
    or whose runs are not left running."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    sweep = _start_sweep(tmp_path, SLOW, url)
    time.sleep(after)
    if stop == "SIGINT":
        os.killpg(sweep.pid, signal.SIGINT)
    else:
        sweep.send_signal(getattr(signal, stop))
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 130 and len(err.splitlines()) == 1, err
    assert err.startswith("interrupted"), err
    with contextlib.suppress(StoreError):  # not created yet, or created without its schema
        assert "running" not in set(nnlab.connect(url).runs().status)


def _completed(url: str) -> int:
    with open_store(url, create=False).read() as connection:
        return connection.scalar(text("SELECT count(*) FROM runs WHERE status = 'completed'"))


def test_a_sweep_started_with_nohup_trains_on_when_the_terminal_closes(tmp_path):
    """nohup ignores SIGHUP so that closing the terminal does not end the command: nnlab
    leaves it ignored, and still stops on SIGTERM."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    sweep = _start_sweep(tmp_path, SLOW, url, ignoring=("SIGHUP",))
    try:
        wait_for_running(url, sweep.pid)
        os.killpg(sweep.pid, signal.SIGHUP)  # the terminal closes: the runner and its workers
        completed = _completed(url)
        deadline = time.monotonic() + 120
        while _completed(url) == completed:  # it trains on: another run completes
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.stderr.read()
            time.sleep(0.05)
        sweep.send_signal(signal.SIGTERM)
        _, err = sweep.communicate(timeout=120)
    finally:
        sweep.kill()
    assert sweep.returncode == 130, err
    assert err.startswith("interrupted: in-flight runs are marked interrupted")
    assert nnlab.connect(url).sweeps().status.tolist() == ["interrupted"]


def test_a_sweep_started_with_ctrl_c_ignored_keeps_ignoring_it(tmp_path):
    """A shell script's ``nnlab sweep ... &`` starts with SIGINT ignored, so that a Ctrl-C
    meant for the script's foreground does not stop it: Ctrl-C pressed again and again, from
    nnlab's first instant (its imports, opening the database, training) to its last, changes
    nothing (CI once started pytest so, and a sweep took a Ctrl-C in the middle of starting)."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    sweep = _start_sweep(tmp_path, SPEC, url, ignoring=("SIGINT",))
    wait_for_exec(sweep)  # nnlab's first instant, with SIGINT ignored as the shell started it
    presses, deadline = 0, time.monotonic() + 120
    while sweep.poll() is None:
        assert time.monotonic() < deadline, "the sweep did not end"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sweep.pid, signal.SIGINT)  # the runner and its workers, as Ctrl-C does
            presses += 1
        time.sleep(0.02)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 0, err
    assert presses > 10
    assert set(nnlab.connect(url).runs().status) == {"completed"}


def test_configurations_aggregate_seeds_and_rank_diverged_last(sqlite_url):
    spec = SPEC.replace("learning_rate: [0.05, 0.5]", "learning_rate: [0.05, 500.0]")
    run_sweep(parse_spec(spec), sqlite_url)
    table = nnlab.connect(sqlite_url).configurations("small")
    assert len(table) == N_RUNS // 2 and set(table.runs) == {2}  # two seeds each
    troubled = (table.diverged + table.failed) > 0
    assert troubled.any() and not troubled.all()
    first_troubled = troubled.to_numpy().argmax()
    assert not troubled.iloc[:first_troubled].any() and troubled.iloc[first_troubled:].all()
    calm = table[~troubled]
    assert calm.final_val_loss_mean.is_monotonic_increasing
    assert set(table[troubled].learning_rate) == {500.0}


def test_cli_prints_the_best_configurations(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC)
    db = str(tmp_path / "r.db")
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--db", db, "-q", "--no-report"])
    assert "all 8 configurations, best first" in result.output and " ± " in result.output
    assert "final_val_loss" in result.output


def test_without_validation_data_the_summary_ranks_by_training_loss(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.replace("val_fraction: 0.2", "val_fraction: 0.0"))
    db = str(tmp_path / "r.db")
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--db", db, "-q", "--no-report"])
    assert result.exit_code == 0 and "final_train_loss" in result.output and " ± " in result.output
    table = nnlab.connect(db).configurations("small", "train_loss")
    assert table.final_train_loss_mean.notna().all()
    assert table.final_train_loss_mean.is_monotonic_increasing  # no seed diverged here
    with pytest.raises(InputError, match="metric 'loss'"):
        nnlab.connect(db).configurations("small", "loss")


SUMMARY = re.compile(
    r"sweep 'small': (\d+) runs; trained now: (?:(\d+) completed|none); final before: (\d+)"
    r"(?:; finished by another runner: (\d+))?$",
    re.MULTILINE,
)


def test_two_runners_on_one_database_train_each_run_once(tmp_path):
    """Each run is claimed atomically: the second runner leaves what the first one holds to
    it, waits for it, and each runner's summary accounts for every run."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    medium = SPEC.replace("epochs: 5", "epochs: 60").replace("n_samples: 90", "n_samples: 300")
    first = _start_sweep(tmp_path, medium, url)
    second = _start_sweep(tmp_path, medium, url)
    trained = 0
    for sweep in (first, second):
        out, err = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, err
        total, now, before, elsewhere = (int(n or 0) for n in SUMMARY.search(out).groups())
        assert total == now + before + elsewhere == N_RUNS, out
        trained += now
    assert trained == N_RUNS  # between them, each run trained once
    runs = nnlab.connect(url).runs()
    assert set(runs.status) == {"completed"} and len(runs) == N_RUNS
    assert len(nnlab.connect(url).epochs()) == N_RUNS * 60
    with open_store(url).read() as connection:
        attempts = {row[0] for row in connection.exec_driver_sql("SELECT attempts FROM runs")}
    assert attempts == {1}


def test_a_run_that_always_kills_its_worker_fails_alone(sqlite_url):
    """Every worker that trains run 1 dies (SIGKILL, as an OOM kill would): after the second
    death, the run alone is failed; the runs that shared the pool complete."""
    deaths = []

    def kill_whoever_trains_run_1():
        while len(deaths) < 2:
            with contextlib.suppress(Exception):  # the database may not exist yet
                with open_store(sqlite_url, create=False).read() as connection:
                    row = connection.exec_driver_sql(
                        "SELECT pid, attempts FROM runs WHERE id = 1 AND status = 'running'"
                    ).first()
                if row and row.attempts > len(deaths) and row.pid != os.getpid():
                    os.kill(row.pid, signal.SIGKILL)
                    deaths.append(row.pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_whoever_trains_run_1, daemon=True)
    killer.start()
    result = run_sweep(parse_spec(SLOW), sqlite_url, jobs=2)
    killer.join(timeout=5)
    assert len(set(deaths)) == 2
    runs = nnlab.connect(sqlite_url).runs().set_index("run_id")
    assert runs.status[1] == "failed" and (runs.status.drop(1) == "completed").all()
    assert result.statuses == {"completed": N_RUNS - 1, "failed": 1}
    with open_store(sqlite_url).read() as connection:
        error = connection.scalar(select(Run.error).where(Run.id == 1))
    assert "died, twice" in error


def test_stale_after_decides_which_running_runs_are_taken_over(sqlite_url):
    spec = parse_spec(SPEC)
    run_sweep(spec, sqlite_url)
    # silent for 30 s, its process unknown here: stale for a 20 s window, so trained at once
    _hold(sqlite_url, 1, hostname="elsewhere", heartbeat_at=utcnow() - timedelta(seconds=30))
    waits: list = []
    result = run_sweep(spec, sqlite_url, stale_after=20, on_wait=waits.append)
    assert result.statuses == {"completed": 1} and waits == []


def _kill_loky_workers(stop: threading.Event) -> None:
    """SIGKILL every loky worker process of this one as soon as it appears."""
    me = str(os.getpid())
    while not stop.is_set():
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError):
                fields = dict(
                    line.split(":\t", 1)
                    for line in status.read_text().splitlines()
                    if ":\t" in line
                )
                command = (status.parent / "cmdline").read_bytes()
                if fields.get("PPid", "").strip() == me and b"popen_loky" in command:
                    os.kill(int(status.parent.name), signal.SIGKILL)
        time.sleep(0.01)


def test_workers_that_keep_dying_before_any_run_stop_the_sweep(sqlite_url):
    stop = threading.Event()
    killer = threading.Thread(target=_kill_loky_workers, args=(stop,), daemon=True)
    killer.start()
    try:
        with pytest.raises(SweepStopped, match="died before settling any run"):
            run_sweep(parse_spec(SPEC), sqlite_url, jobs=2)
    finally:
        stop.set()
        killer.join()
    lab = nnlab.connect(sqlite_url)
    assert lab.sweeps().status.tolist() == ["interrupted"]
    assert set(lab.runs().status) == {"pending"}  # resumable, nothing lost
    assert run_sweep(parse_spec(SPEC), sqlite_url, jobs=2).statuses == {"completed": N_RUNS}


def test_a_sweep_killed_outright_resumes_to_the_same_results(tmp_path):
    """SIGKILL to the runner and its workers at once (an OOM kill of the job, a lost machine):
    nothing gets to mark anything. Resuming releases the runs whose processes are gone, and
    the sweep ends as if it had never been stopped."""
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    run_sweep(parse_spec(SLOW), reference, jobs=2)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    sweep = _start_sweep(tmp_path, SLOW, url)
    wait_for_running(url, sweep.pid)
    os.killpg(sweep.pid, signal.SIGKILL)  # the runner and its loky workers
    sweep.communicate(timeout=30)  # reaps it and closes its pipes
    assert "running" in set(nnlab.connect(url).runs().status)  # left as they were
    # at once, with the default 60 s stale window: the dead holders are known to be dead
    resumed = _start_sweep(tmp_path, SLOW, url)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert _all_final(url)
    assert f"sweep 'small': {N_RUNS} runs; trained now: " in out
    assert len(nnlab.connect(url).epochs()) == N_RUNS * 400  # no duplicate (run, epoch) rows
    assert curves(url) == curves(reference)
