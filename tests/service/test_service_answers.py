"""Shared answers (issue 11): clients asking the same question of the same state of a sweep
cost one read of the database, and an answer read before an event is never served after it.
Through a real uvicorn server, counting the SQL statements its engine really executes."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from served import running
from sqlalchemy import event
from test_service_events import Listener, log

import nnlab
from nnlab.service.answers import Answers
from nnlab.service.app import create_app
from nnlab.service.views import RunSettings
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.registry import RunRow

SLOW_POLL = 3.0  # long enough that only the feed's events can make an answer new


@pytest.fixture
def live(sqlite_url):
    """Sweep ``live`` of two pending runs, served with a slow poll, and a count of the SQL
    statements the server runs."""
    store = open_store(sqlite_url)
    config = {"learning_rate": 0.1, "activation": "relu", "hidden": [4], "epochs": 5}
    register_sweep(store, "live", [RunRow(config, f"s{seed}", seed) for seed in (0, 1)])
    ids = [int(i) for i in nnlab.connect(sqlite_url).runs(sweep="live").run_id]
    app = create_app(sqlite_url, poll_seconds=SLOW_POLL)
    statements = []
    event.listen(
        app.state.lab.store.engine, "before_cursor_execute", lambda *a: statements.append(1)
    )
    with running(app) as base:
        yield app, base, store, ids, statements


def test_twenty_clients_asking_at_once_cost_one_read(live):
    app, base, _, _, statements = live
    paths = ["/api/sweeps/live/curves?by=activation", "/api/sweeps/live/configurations?limit=5"]
    with httpx.Client(base_url=base) as client:
        alone = [client.get(path).content for path in paths]
    one_client = len(statements)
    statements.clear()
    app.state.answers = Answers(max_age=SLOW_POLL)  # nothing shared from before
    app.state.settings = RunSettings()
    with ThreadPoolExecutor(20) as pool, httpx.Client(base_url=base) as client:
        answers = list(pool.map(lambda i: client.get(paths[i % 2]), range(40)))
    assert all(answer.status_code == 200 for answer in answers)
    assert [answer.content for answer in answers[:2]] == alone
    assert answers[1].headers["x-total-count"] == "1"
    assert app.state.answers.reads == 3  # the sweep's standing, then each question once
    assert len(statements) == one_client  # 40 requests, the statements of 2


def test_an_answer_read_before_an_event_is_not_served_after_it(live):
    _, base, store, (first, _), _ = live
    listener = Listener(base)  # the sweep's feed now follows it
    with httpx.Client(base_url=base) as client:
        assert client.get("/api/sweeps/live").json()["statuses"] == {"pending": 2}
        writer = RunWriter(store, first, flush_seconds=0)
        writer.start()
        log(writer, 1)
        writer.finish("completed")
        started = time.monotonic()
        while listener.next("status", timeout=2 * SLOW_POLL)["data"][-1]["status"] != "completed":
            pass
        assert time.monotonic() - started < SLOW_POLL + 1  # younger than an answer may be kept
        # the event announced the run's end: a page refetching on it sees the end
        details = client.get("/api/sweeps/live").json()
        assert details["statuses"] == {"completed": 1, "pending": 1}
        assert client.get("/api/sweeps/live/runs").json()[0]["status"] == "completed"


def test_answers_are_kept_only_as_long_as_their_age_allows(live):
    app, base, store, (first, _), _ = live
    # an age long enough for a claim and a request on a busy machine (0.3 s was not, in CI)
    app.state.answers = Answers(max_age=2.0)
    with httpx.Client(base_url=base) as client:
        assert client.get("/api/sweeps").json()[0]["statuses"] == {"pending": 2}
        RunWriter(store, first, flush_seconds=0).start()  # no feed follows: only age tells
        assert client.get("/api/sweeps").json()[0]["statuses"] == {"pending": 2}  # shared
        time.sleep(2.1)
        assert client.get("/api/sweeps").json()[0]["statuses"] == {"pending": 1, "running": 1}


def test_the_token_is_no_part_of_the_question(sqlite_url, tmp_path):
    from conftest import fill

    app = create_app(fill(sqlite_url), token="secret", poll_seconds=5)
    with running(app) as base, httpx.Client(base_url=base) as client:
        client.get("/api/sweeps?token=secret")  # sets the cookie
        client.get("/api/sweeps")
        client.get("/api/sweeps", headers={"Authorization": "Bearer secret"})
        assert app.state.answers.reads == 1
        client.get("/api/sweeps/acts/curves?by=activation")
        client.get("/api/sweeps/acts/curves?by=seed")
        assert app.state.answers.reads == 4  # and the sweep's standing, once for both


def test_a_failed_read_is_not_kept_and_a_left_asker_does_not_cancel_the_others():
    async def scenario():
        answers = Answers(max_age=60)
        calls = []

        async def failing():
            calls.append("fail")
            raise RuntimeError("the database went away")

        for _ in range(2):
            with pytest.raises(RuntimeError):
                await answers.get("q", None, failing)
        assert calls == ["fail", "fail"]

        async def slow():
            await asyncio.sleep(0.05)
            return "value"

        leaving = asyncio.ensure_future(answers.get("slow", None, slow))
        staying = asyncio.ensure_future(answers.get("slow", None, slow))
        await asyncio.sleep(0)
        leaving.cancel()
        assert await staying == "value"
        assert answers.reads == 3

    asyncio.run(scenario())


def test_runs_joining_a_sweep_are_in_its_next_answers(live):
    """Each sweep's settings are kept between answers: runs registered later (a sweep
    extended) must still show, in its ranking and its grid."""
    _, base, store, _, _ = live
    config = {"learning_rate": 0.1, "activation": "relu", "hidden": [4], "epochs": 5}
    with httpx.Client(base_url=base) as client:
        assert client.get("/api/sweeps/live/configurations").headers["x-total-count"] == "1"
        time.sleep(SLOW_POLL + 0.1)  # past the answers' age (no feed follows)
        wider = {**config, "learning_rate": 0.5}
        register_sweep(store, "live", [RunRow(wider, "wider-0", 0)])
        ranked = client.get("/api/sweeps/live/configurations").json()
        assert sorted(row["learning_rate"] for row in ranked) == [0.1, 0.5]
        assert client.get("/api/sweeps/live").json()["axes"] == ["learning_rate"]
