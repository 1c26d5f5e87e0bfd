"""Writing runs: registration, live epoch logging, NaN/inf, concurrent writers, a killed writer."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

import nnlab
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.models import Run, utcnow
from nnlab.store.process import ProcessIdentity
from nnlab.store.queue import RunQueue
from nnlab.store.registry import RunRow
from nnlab.store.writer import RunLost


def config(**overrides) -> dict:
    base = {
        "learning_rate": 0.1,
        "batch_size": 16,
        "activation": "tanh",
        "gd": "minibatch",
        "optimizer": "sgd",
        "hidden": [8, 8],
        "epochs": 10,
    }
    return {**base, **overrides}


def register(url, n_runs=1, name="s"):
    store = open_store(url)
    rows = [RunRow(config(learning_rate=0.1 * (i + 1)), f"hash{i}", seed=i) for i in range(n_runs)]
    register_sweep(store, name, rows, description="test sweep")
    with store.read() as connection:
        return store, list(connection.scalars(select(Run.id).order_by(Run.id)))


def record(epoch: int, loss: float = 1.0, **values) -> dict:
    base = {
        "epoch": epoch,
        "train_loss": loss,
        "val_loss": loss * 1.5,
        "train_accuracy": 0.5,
        "val_accuracy": 0.25,
        "grad_norm": 0.1,
        "learning_rate": 0.1,
        "seconds": 0.001,
    }
    return {**base, **values}


def test_registration_is_typed_and_idempotent(db_url):
    store, ids = register(db_url, n_runs=3)
    runs = nnlab.connect(db_url).runs()
    assert list(runs.status) == ["pending"] * 3
    assert runs.learning_rate.tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert runs.batch_size.tolist() == [16, 16, 16]
    assert runs.hidden.tolist() == ["8,8"] * 3
    # registering the same sweep again adds nothing and keeps ids
    register_sweep(store, "s", [RunRow(config(), "hash0", 0), RunRow(config(), "new", 9)])
    again = nnlab.connect(db_url).runs()
    assert len(again) == 4 and again.run_id.tolist()[:3] == ids


def test_batch_gd_is_stored_with_the_batch_size_it_trains_with(db_url):
    """NULL (every sample) for batch GD, 1 for stochastic: in the typed column and the
    configuration alike, whatever batch_size the spec's defaults carried."""
    from nnlab.sweeps.config import RunConfig
    from nnlab.sweeps.grid import as_trained, as_values

    store = open_store(db_url)
    trained = [as_trained(RunConfig(gd=gd, batch_size=64)) for gd in ("batch", "stochastic")]
    rows = [RunRow(as_values(config), config.gd, 0) for config in trained]
    register_sweep(store, "b", rows)
    runs = nnlab.connect(db_url).runs()
    assert runs.batch_size.isna().tolist() == [True, False] and runs.batch_size[1] == 1
    configs = nnlab.connect(db_url).settings("b").batch_size
    assert configs.isna().tolist() == [True, False] and configs[1] == 1


def test_epochs_are_committed_live_and_visible_to_other_readers(db_url):
    store, (run_id,) = register(db_url)
    writer = RunWriter(store, run_id, flush_seconds=0.0)
    writer.start(data_fingerprint="sha256:abc")
    lab = nnlab.connect(db_url)
    for epoch in range(1, 4):
        writer.log(record(epoch, loss=1.0 / epoch))
        assert len(lab.epochs()) == epoch  # already committed, before the run ends
    assert lab.runs().status.tolist() == ["running"]
    writer.finish("completed")
    run = lab.runs().iloc[0]
    assert (run.status, run.epochs_run, run.best_epoch) == ("completed", 3, 3)
    assert run.final_train_loss == pytest.approx(1 / 3)
    assert run.duration_s > 0


def test_buffered_rows_wait_for_the_flush_interval(db_url):
    store, (run_id,) = register(db_url)
    writer = RunWriter(store, run_id, flush_seconds=60.0)
    writer.start()
    for epoch in range(1, 6):
        writer.log(record(epoch))
    assert len(nnlab.connect(db_url).epochs()) == 0
    writer.finish("completed")
    assert len(nnlab.connect(db_url).epochs()) == 5


def test_provenance_is_recorded(db_url):
    store, (run_id,) = register(db_url)
    writer = RunWriter(store, run_id)
    writer.start(data_fingerprint="sha256:feed")
    writer.finish("completed")
    with store.read() as connection:
        run = connection.execute(select(Run.__table__).where(Run.id == run_id)).one()
    assert run.pid == os.getpid() and run.hostname
    assert run.numpy_version and run.python_version and run.nnlab_version == nnlab.__version__
    assert run.data_fingerprint == "sha256:feed" and run.attempts == 1
    assert run.started_at.utcoffset().total_seconds() == 0  # timezone-aware UTC


def test_nan_and_inf_round_trip(db_url):
    store, (run_id,) = register(db_url)
    writer = RunWriter(store, run_id, flush_seconds=0)
    writer.start()
    writer.log(record(1, loss=math.inf, val_loss=-math.inf, grad_norm=math.nan))
    writer.log(record(2, loss=math.nan, val_accuracy=None))
    writer.finish("diverged")
    epochs = nnlab.connect(db_url).epochs()
    first, second = epochs.iloc[0], epochs.iloc[1]
    assert first.train_loss == math.inf and first.val_loss == -math.inf
    assert math.isnan(first.grad_norm)
    assert math.isnan(second.train_loss) and math.isnan(second.val_accuracy)
    with store.read() as connection:
        flags = connection.exec_driver_sql("SELECT nan_fields FROM epochs ORDER BY epoch").all()
    assert [f[0] for f in flags] == ["grad_norm", "train_loss,val_loss"]  # NULL vs NaN apart
    assert nnlab.connect(db_url).runs().status.tolist() == ["diverged"]


def test_restart_replaces_partial_epochs(db_url):
    store, (run_id,) = register(db_url)
    first = RunWriter(store, run_id, flush_seconds=0)
    first.start()
    for epoch in range(1, 4):
        first.log(record(epoch, loss=9.0))
    # the process died here; a new attempt starts over
    second = RunWriter(store, run_id, flush_seconds=0)
    second.start()
    for epoch in range(1, 3):
        second.log(record(epoch, loss=1.0))
    second.finish("completed")
    epochs = nnlab.connect(db_url).epochs()
    assert epochs.epoch.tolist() == [1, 2] and set(epochs.train_loss) == {1.0}
    with store.read() as connection:
        assert connection.scalar(select(Run.attempts).where(Run.id == run_id)) == 2


def _write_epochs(url: str, run_id: int, epochs: int, delay: float = 0.0) -> None:
    from nnlab.store import RunWriter, open_store

    writer = RunWriter(open_store(url), run_id, flush_seconds=0.05)
    writer.start()
    for epoch in range(1, epochs + 1):
        writer.log(record(epoch, loss=1.0 / epoch))
        if delay:
            time.sleep(delay)
    writer.finish("completed")


def test_four_concurrent_writer_processes(db_url):
    _, ids = register(db_url, n_runs=4)
    open_store(db_url).engine.dispose()  # children open their own engines
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_epochs, args=(db_url, i, 2500)) for i in ids]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    epochs = nnlab.connect(db_url).epochs()
    assert len(epochs) == 4 * 2500
    for _, group in epochs.groupby("run_id"):
        assert group.epoch.tolist() == list(range(1, 2501))
    assert set(nnlab.connect(db_url).runs().status) == {"completed"}


def test_writer_killed_mid_run_leaves_a_consistent_database(sqlite_url, tmp_path):
    _, (run_id,) = register(sqlite_url)
    context = multiprocessing.get_context("spawn")
    writer = context.Process(target=_write_epochs, args=(sqlite_url, run_id, 100_000, 0.001))
    writer.start()
    lab = nnlab.connect(sqlite_url)
    deadline = time.monotonic() + 60
    while len(lab.epochs()) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = connection.execute("SELECT epoch, train_loss FROM epochs ORDER BY epoch").fetchall()
    assert len(rows) >= 200
    assert [epoch for epoch, _ in rows] == list(range(1, len(rows) + 1))  # no gap, no partial
    assert all(loss == pytest.approx(1.0 / epoch) for epoch, loss in rows)
    unfinished = lab.runs(status="running")
    assert unfinished.run_id.tolist() == [run_id]  # findable as not finished


def test_unknown_status_is_refused(db_url):
    store, (run_id,) = register(db_url)
    with pytest.raises(ValueError, match="unknown run status 'done'"):
        RunWriter(store, run_id).finish("done")


def _forked_child_writes(url: str, run_id: int) -> None:
    from nnlab.store import database

    open_store(url)
    assert all(pid == os.getpid() for _, pid in database._stores)  # the parent's engine dropped
    _write_epochs(url, run_id, 5)
    database.close_stores()


def test_forked_worker_gets_its_own_engine_and_leaves_the_parents_alone(db_url):
    store, (first, second) = register(db_url, n_runs=2)
    with store.read() as connection:  # the parent holds a pooled connection
        connection.exec_driver_sql("SELECT 1")
    child = multiprocessing.get_context("fork").Process(
        target=_forked_child_writes, args=(db_url, first)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    # the parent's own pooled connection still works after the child went away
    _write_epochs(db_url, second, 3)
    assert nnlab.connect(db_url).runs().epochs_run.tolist() == [5, 3]


def test_engine_epochs_land_in_the_store_as_trained(db_url):
    """The real hand-off: train(on_epoch=writer.log) stores exactly the engine's history."""
    from nnlab.data import spirals
    from nnlab.engine import MLP, train

    store, (run_id,) = register(db_url)
    data = spirals(n_samples=90, classes=3, seed=0)
    writer = RunWriter(store, run_id, flush_seconds=0)
    writer.start()
    result = train(
        MLP([2, 8, 3], activation="tanh"),
        data.X,
        data.y,
        gd="minibatch",
        batch_size=16,
        learning_rate=0.5,
        epochs=6,
        val=(data.X, data.y),
        on_epoch=writer.log,
    )
    writer.finish(result.status)
    stored = nnlab.connect(db_url).epochs()
    assert stored.epoch.tolist() == [r.epoch for r in result.history]
    for column in (
        "train_loss",
        "val_loss",
        "train_accuracy",
        "val_accuracy",
        "grad_norm",
        "seconds",
    ):
        assert stored[column].tolist() == [getattr(r, column) for r in result.history]
    assert nnlab.connect(db_url).runs().status.tolist() == [result.status]


def _status(store, run_id: int) -> tuple[str, int]:
    with store.read() as connection:
        return connection.execute(select(Run.status, Run.attempts).where(Run.id == run_id)).one()


def test_an_attempt_that_lost_its_run_writes_nothing_more(db_url):
    store, (run_id,) = register(db_url)
    writer = RunWriter(store, run_id, flush_seconds=0, heartbeat_seconds=0)
    assert writer.start(claimable=("pending",))
    writer.log(record(1))
    RunQueue(store, 1).interrupt()  # its runner stops
    with pytest.raises(RunLost, match=f"run {run_id} is no longer held"):
        writer.log(record(2))
    with pytest.raises(RunLost):
        writer.finish("completed")
    assert tuple(_status(store, run_id)) == ("interrupted", 1)
    assert nnlab.connect(db_url).epochs().epoch.tolist() == [1]


def test_a_reexecuted_task_takes_back_its_run_and_fences_the_old_attempt(db_url):
    store, (run_id,) = register(db_url)
    first = RunWriter(store, run_id, flush_seconds=0, heartbeat_seconds=0)
    assert first.start(claimable=("pending",), lease="task-1")
    first.log(record(1))
    other = RunWriter(store, run_id, heartbeat_seconds=0)
    assert not other.start(claimable=("pending",), lease="task-2")  # held, heartbeat fresh
    again = RunWriter(store, run_id, flush_seconds=0, heartbeat_seconds=0)
    assert again.start(claimable=("pending",), lease="task-1")  # the same task, run again
    with pytest.raises(RunLost):  # the first attempt, were it still alive, is fenced off
        first.log(record(2))
    again.log(record(1))
    again.finish("completed")
    assert tuple(_status(store, run_id)) == ("completed", 2)
    assert nnlab.connect(db_url).epochs().epoch.tolist() == [1]
    finished = RunWriter(store, run_id, heartbeat_seconds=0)
    assert not finished.start(claimable=("pending",), lease="task-1")  # finished stays finished


def _heartbeat(store, run_id: int):
    with store.read() as connection:
        return connection.scalar(select(Run.heartbeat_at).where(Run.id == run_id))


def test_a_background_heartbeat_keeps_a_long_epoch_alive(db_url):
    store, (run_id,) = register(db_url)
    with RunWriter(store, run_id, heartbeat_seconds=0.3) as writer:
        writer.start()
        first = _heartbeat(store, run_id)
        time.sleep(1.6)  # no epoch logged meanwhile (SQLite's clock ticks in whole seconds)
        assert _heartbeat(store, run_id) > first
    stopped = _heartbeat(store, run_id)
    time.sleep(1.2)
    assert _heartbeat(store, run_id) == stopped  # closing the writer stops the heartbeat


def test_runs_whose_holder_is_provably_gone_are_taken_over_at_once(db_url):
    store, ids = register(db_url, n_runs=5)
    here, dead = ProcessIdentity.here(), _dead_pid()
    holders = [
        {"pid": dead},  # a process of this boot and pid namespace that has exited
        {},  # this very process: alive
        {"process_start": here.process_start + 1},  # pid reused by a later process
        {"pid": dead, "pid_namespace": "pid:[1]"},  # another container: cannot be proved dead
        {"pid": dead, "boot_id": "another-boot"},  # another boot or machine: likewise
    ]
    with store.write() as connection:
        for run_id, holder in zip(ids, holders, strict=True):
            connection.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(
                    status="running",
                    heartbeat_at=utcnow(),
                    lease=f"lease-{run_id}",
                    **{**vars(here), **holder},
                )
            )
    assert RunQueue(store, 1).take_over_dead() == 2  # without waiting for a stale heartbeat
    statuses = [_status(store, run_id)[0] for run_id in ids]
    assert statuses == ["interrupted", "running", "interrupted", "running", "running"]


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: state first, start time 20th."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def test_an_exited_but_unreaped_holder_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # a zombie until we wait()
    deadline = time.monotonic() + 10
    while _proc_stat(child.pid)[0] != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.01)
    here = ProcessIdentity.here()
    zombie = ProcessIdentity(
        **{**vars(here), "pid": child.pid, "process_start": int(_proc_stat(child.pid)[19])}
    )
    assert zombie.is_gone() and not here.is_gone()
    child.wait()


def test_a_stopping_runner_interrupts_only_its_own_runs(db_url):
    store, ids = register(db_url, n_runs=2)
    for run_id, lease in zip(ids, ("mine-1", "theirs-1"), strict=True):
        RunWriter(store, run_id, heartbeat_seconds=0).start(lease=lease)
    assert RunQueue(store, 1).interrupt(lease_prefix="mine") == 1
    assert [_status(store, run_id)[0] for run_id in ids] == ["interrupted", "running"]


def _dead_pid() -> int:
    process = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    process.start()
    process.join()
    return process.pid
