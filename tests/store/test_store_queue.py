"""The run queue: claims of several runs at once, the status rules, a sweep's derived status."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

import nnlab
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.models import Epoch, Run
from nnlab.store.queue import RunQueue, sweep_status
from nnlab.store.registry import RunRow
from nnlab.store.writer import Provenance


def register(url: str, n_runs: int) -> tuple[RunQueue, list[int]]:
    store = open_store(url)
    config = {"learning_rate": 0.1, "gd": "batch", "hidden": [4], "epochs": 2}
    sweep_id = register_sweep(store, "q", [RunRow(config, f"h{i}", i) for i in range(n_runs)])
    with store.read() as connection:
        ids = list(connection.scalars(select(Run.id).order_by(Run.id)))
    return RunQueue(store, sweep_id), ids


def statuses(queue: RunQueue) -> list[str]:
    with queue.store.read() as connection:
        return list(connection.scalars(select(Run.status).order_by(Run.id)))


def test_several_runs_are_claimed_at_once_and_each_only_once(db_url):
    queue, ids = register(db_url, 4)
    provenance = vars(Provenance.here())
    mine = queue.claim({run_id: f"mine-{run_id}" for run_id in ids[:3]}, provenance)
    assert [(a.run_id, a.lease, a.number) for a in mine] == [
        (run_id, f"mine-{run_id}", 1) for run_id in ids[:3]
    ]
    theirs = queue.claim({ids[0]: "theirs-1", ids[3]: "theirs-4"}, provenance)
    assert [a.run_id for a in theirs] == [ids[3]]  # the held one is not taken
    assert statuses(queue) == ["running"] * 4
    runs = nnlab.connect(db_url).runs()
    assert set(runs.status) == {"running"}
    with queue.store.read() as connection:  # the holder is recorded, beyond its pid
        held = connection.execute(select(Run.pid, Run.boot_id, Run.process_start)).all()
    here = Provenance.here()
    assert set(held) == {(here.pid, here.boot_id, here.process_start)}


def test_a_reclaimed_run_drops_its_previous_attempts_epochs(db_url):
    queue, (run_id,) = register(db_url, 1)
    with RunWriter(queue.store, run_id, flush_seconds=0, heartbeat_seconds=0) as writer:
        writer.start(lease="task-1")
        writer.log({"epoch": 1, "train_loss": 1.0})
    queue.interrupt()
    (attempt,) = queue.claim({run_id: "task-2"}, vars(Provenance.here()))
    assert attempt.number == 2
    with queue.store.read() as connection:
        assert connection.scalar(select(Epoch.epoch).where(Epoch.run_id == run_id)) is None


@pytest.mark.parametrize(
    ("tally", "ran", "expected"),
    [
        ({"completed": 3, "diverged": 1, "failed": 1}, True, "finished"),
        ({}, True, "finished"),  # a grid with no run: nothing left to do
        ({"completed": 3, "pending": 1}, True, "interrupted"),  # never 'finished' with one left
        ({"completed": 3, "running": 1}, True, "running"),  # held by a runner
        ({"pending": 4}, True, "interrupted"),  # a runner stopped before starting any
        ({"pending": 4}, False, "pending"),  # no runner yet
        ({"completed": 1, "interrupted": 1}, False, "interrupted"),
    ],
)
def test_a_sweeps_status_is_what_its_runs_say(tally, ran, expected):
    assert sweep_status(tally, ran) == expected


def test_settling_writes_the_derived_status_and_what_is_left(sqlite_url):
    queue, ids = register(sqlite_url, 3)
    with queue.store.write() as connection:
        connection.execute(update(Run).where(Run.id != ids[2]).values(status="completed"))
    assert queue.settle_sweep() == {"pending": 1}
    assert nnlab.connect(sqlite_url).sweeps().status.tolist() == ["interrupted"]
    with queue.store.write() as connection:
        connection.execute(update(Run).values(status="failed"))
    assert queue.settle_sweep() == {}
    assert nnlab.connect(sqlite_url).sweeps().status.tolist() == ["finished"]
