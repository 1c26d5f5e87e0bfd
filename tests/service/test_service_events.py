"""Live events (issue 11): a sweep's new epochs and status changes as Server-Sent Events,
through a real uvicorn server and real streaming clients, while a real writer commits."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time

import httpx
import pytest
from served import running

import nnlab
from nnlab.service.app import create_app
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.registry import RunRow

POLL = 0.2


@pytest.fixture
def live(db_url):
    """A sweep ``live`` of two pending runs, served, and its two run ids."""
    store = open_store(db_url)
    config = {"learning_rate": 0.1, "activation": "relu", "hidden": [4], "epochs": 5}
    register_sweep(store, "live", [RunRow(config, f"s{seed}", seed) for seed in (0, 1)])
    ids = [int(i) for i in nnlab.connect(db_url).runs(sweep="live").run_id]
    app = create_app(db_url, poll_seconds=POLL)
    with running(app) as base:
        yield app, base, store, ids


class Listener:
    """One streaming client in a thread: the events it received, as (id, event, data, time)."""

    def __init__(self, base: str, last_id: str | None = None) -> None:
        self.events: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.stop = False
        headers = {"Last-Event-ID": last_id} if last_id else {}
        self.thread = threading.Thread(target=self._listen, args=(base, headers), daemon=True)
        self.thread.start()
        assert self.connected.wait(5)

    def _listen(self, base: str, headers: dict) -> None:
        with contextlib.suppress(httpx.TransportError):  # the server stopped after the test
            self._read(httpx.stream("GET", f"{base}/api/sweeps/live/events", headers=headers))

    def _read(self, stream) -> None:
        with stream as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            self.connected.set()
            event = {}
            for line in response.iter_lines():
                if self.stop:
                    return
                if not line:
                    if "event" in event:
                        self.events.put({**event, "at": time.monotonic()})
                    event = {}
                elif not line.startswith(":"):
                    field, _, value = line.partition(": ")
                    event[field] = json.loads(value) if field == "data" else value

    def next(self, kind: str, timeout: float = 3.0) -> dict:
        """The next event of ``kind``, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if event["event"] == kind:
                return event


def log(writer: RunWriter, epoch: int) -> float:
    writer.log({"epoch": epoch, "train_loss": 1 / epoch, "val_loss": float("nan"), "seconds": 0.01})
    return time.monotonic()


def test_epochs_and_statuses_arrive_within_2s_of_the_commit(live):
    _, base, store, (first, _) = live
    listener = Listener(base)
    writer = RunWriter(store, first, flush_seconds=0)
    writer.start()
    assert listener.next("status")["data"] == [{"run_id": first, "status": "running"}]
    committed = log(writer, 1)
    event = listener.next("epochs")
    assert event["at"] - committed < 2.0
    expected = {"run_id": first, "epoch": 1, "train_loss": 1.0, "val_loss": None}
    assert event["data"] == [{**expected, "train_accuracy": None, "val_accuracy": None}]
    log(writer, 2)
    writer.finish("completed")
    assert [e["epoch"] for e in listener.next("epochs")["data"]] == [2]
    assert listener.next("status")["data"] == [{"run_id": first, "status": "completed"}]


def test_last_event_id_resumes_without_duplicates(live):
    _, base, store, (first, _) = live
    listener = Listener(base)
    writer = RunWriter(store, first, flush_seconds=0)
    writer.start()
    log(writer, 1)
    seen = listener.next("epochs")
    listener.stop = True
    for epoch in (2, 3):
        log(writer, epoch)
        time.sleep(POLL * 2)  # its own event each, while the first listener is gone
    resumed = Listener(base, last_id=seen["id"])
    got = [resumed.next("epochs")]
    while got[-1]["data"][-1]["epoch"] < 3:  # one event each, or one for both on a busy box
        got.append(resumed.next("epochs"))
    assert [row["epoch"] for e in got for row in e["data"]] == [2, 3]
    assert int(got[0]["id"]) > int(seen["id"])
    log(writer, 4)
    assert [e["epoch"] for e in resumed.next("epochs")["data"]] == [4]
    assert Listener(base, last_id="12345").next("reset")["data"] == {}


def test_twenty_clients_cost_the_polls_of_one(live):
    app, base, store, ids = live
    feeds = app.state.feeds

    def polls_over(window: float) -> int:
        before = feeds.by_name["live"].polls
        time.sleep(window)
        return feeds.by_name["live"].polls - before

    one = Listener(base)
    alone = polls_over(1.0)
    crowd = [Listener(base) for _ in range(19)]
    together = polls_over(1.0)
    assert abs(together - alone) <= 1 and together <= 1.0 / POLL + 1
    writer = RunWriter(store, ids[1], flush_seconds=0)
    writer.start()
    log(writer, 1)
    for listener in (one, *crowd):
        assert listener.next("epochs")["data"][0]["run_id"] == ids[1]


def test_clients_arriving_at_once_share_one_feed_and_all_end_on_stop(live):
    """Twenty tabs reconnecting together (after a restart, say): one feed reads for them all,
    and stopping the server ends every stream, not only those of the last feed made."""
    app, base, _, _ = live
    arrivals = [threading.Thread(target=lambda: crowd.append(Listener(base))) for _ in range(20)]
    crowd: list[Listener] = []
    for arrival in arrivals:
        arrival.start()
    for arrival in arrivals:
        arrival.join(10)
    assert len(crowd) == 20
    assert len(app.state.feeds.by_name["live"].subscribers) == 20
    app.state.feeds.close_soon()
    for listener in crowd:
        listener.thread.join(2)
        assert not listener.thread.is_alive()


def test_unknown_sweep_is_a_404(live):
    _, base, _, _ = live
    response = httpx.get(f"{base}/api/sweeps/lvie/events")
    assert response.status_code == 404
    assert response.json()["did_you_mean"] == ["live"]
    assert response.headers["x-frame-options"] == "DENY"
