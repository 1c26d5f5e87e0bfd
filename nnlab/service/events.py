"""Live events of a sweep as Server-Sent Events: one ``SweepFeed`` per watched sweep polls the
database once per interval for all its clients and fans each batch out to their queues."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from nnlab.service.records import frame_records
from nnlab.store import Lab

HISTORY = 500  # events a feed keeps for clients that reconnect with Last-Event-ID
QUEUE_SIZE = 1000  # events a client may fall behind before it is disconnected
KEEP_ALIVE_SECONDS = 15.0
LINGER_SECONDS = 10.0  # a feed keeps its place this long after its last client leaves
RESET = "event: reset\ndata: {}\n\n"  # the client missed events the feed no longer holds


class SweepFeed:
    """The events of sweep ``name``: new epochs and status changes, each with a sequence
    number, read by one asyncio task while anyone listens (``polls`` counts its reads)."""

    def __init__(self, lab: Lab, name: str, poll_seconds: float) -> None:
        self.lab = lab
        self.name = name
        self.poll_seconds = poll_seconds
        self.polls = 0
        self.status_changes = 0  # status events published: what a ranking depends on
        # from the clock, so an id from an earlier server never names one of this one's events
        self.sequence = time.time_ns() // 1000
        self.history: deque[tuple[int, str]] = deque(maxlen=HISTORY)
        self.subscribers: set[asyncio.Queue] = set()
        self._marks: dict[int, int] = {}
        self._statuses: dict[int, str] = {}
        self._task: asyncio.Task | None = None
        self._starting = asyncio.Lock()

    async def subscribe(self, last_id: str | None) -> asyncio.Queue:
        """A queue of the events to come, led by those after ``last_id`` (the client's
        Last-Event-ID), or by a reset when the feed no longer holds them.

        Raises ``UnknownSweepError`` when the database holds no sweep of this name.
        """
        async with self._starting:
            if self._task is None or self._task.done():
                await self._read(None)  # where the runs are now: events are what comes after
                self.sequence += 1  # no event has this id: one from before is a reset
                self.history.clear()
                self._task = asyncio.create_task(self._follow())
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        if last_id is not None:
            for text in self._since(last_id):
                queue.put_nowait(text)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.discard(queue)

    def _since(self, last_id: str) -> list[str]:
        held = [sequence for sequence, _ in self.history]
        if last_id == str(self.sequence):
            return []
        if last_id.isdigit() and int(last_id) in held:
            return [text for sequence, text in self.history if sequence > int(last_id)]
        return [RESET]

    async def _follow(self) -> None:
        idle = 0.0
        try:
            while self.subscribers or idle < LINGER_SECONDS:
                await asyncio.sleep(self.poll_seconds)
                if self.subscribers:
                    idle = 0.0
                    for kind, data in await self._read(self._marks):
                        self._publish(kind, data)
                else:
                    idle += self.poll_seconds
        finally:  # the database failed, or the server stops: end every stream
            for queue in list(self.subscribers):
                self._drop(queue)

    def _drop(self, queue: asyncio.Queue) -> None:
        """End ``queue``'s stream now, whatever it still holds."""
        self.subscribers.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    async def _read(self, after: dict[int, int] | None) -> list[tuple[str, list[dict]]]:
        """Read the runs once, move the marks; the batch of events the read found."""
        self.polls += 1
        progress = await run_in_threadpool(self.lab.progress, self.name, after)
        changed = [
            {"run_id": run_id, "status": status}
            for run_id, status in progress.statuses.items()
            if self._statuses.get(run_id) != status
        ]
        # a retried run starts its epochs again: follow it from where it now is
        self._marks = {**self._marks, **progress.last_epochs}
        self._statuses = progress.statuses
        batch = [("epochs", frame_records(progress.epochs)), ("status", changed)]
        return [(kind, data) for kind, data in batch if data]

    def _publish(self, kind: str, data: list[dict]) -> None:
        self.sequence += 1
        self.status_changes += kind == "status"
        text = f"id: {self.sequence}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
        self.history.append((self.sequence, text))
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:  # too slow: drop it, it can resume with Last-Event-ID
                self._drop(queue)

    def close(self) -> None:
        """End every stream of this feed now, and stop reading."""
        for queue in list(self.subscribers):
            self._drop(queue)
        if self._task is not None:
            self._task.cancel()

    def __repr__(self) -> str:
        return f"SweepFeed({self.name!r}, clients={len(self.subscribers)}, polls={self.polls})"


class Feeds:
    """The feeds of the sweeps being watched, by name, made on the first request for one."""

    def __init__(self, lab: Lab, poll_seconds: float) -> None:
        self.lab = lab
        self.poll_seconds = poll_seconds
        self.by_name: dict[str, SweepFeed] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def generation(self, name: str, statuses: bool = False) -> int | None:
        """What changes whenever sweep ``name``'s feed publishes an event (with ``statuses``:
        a status event) while it follows the sweep; None when it does not."""
        feed = self.by_name.get(name)
        if feed is None or feed._task is None or feed._task.done():
            return None
        return feed.status_changes if statuses else feed.sequence

    def close_soon(self) -> None:
        """End every stream (the server is stopping; clients may reconnect to another):
        callable from any thread, e.g. a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        for feed in self.by_name.values():
            feed.close()

    async def stream(self, name: str, last_id: str | None) -> AsyncIterator[str]:
        """Subscribe to sweep ``name`` (raising ``UnknownSweepError`` before anything is sent)
        and give the Server-Sent Events text to send it."""
        self._loop = asyncio.get_running_loop()
        # kept before the first subscription reads: clients arriving meanwhile share it
        feed = self.by_name.get(name)
        if feed is None:
            feed = self.by_name[name] = SweepFeed(self.lab, name, self.poll_seconds)
        try:
            queue = await feed.subscribe(last_id)
        except Exception:
            if not feed.subscribers and self.by_name.get(name) is feed:
                del self.by_name[name]
            raise
        return _events(feed, queue)


async def _events(feed: SweepFeed, queue: asyncio.Queue) -> AsyncIterator[str]:
    try:
        yield f"retry: {int(feed.poll_seconds * 2000)}\n\n"
        while True:
            try:
                text = await asyncio.wait_for(queue.get(), KEEP_ALIVE_SECONDS)
            except TimeoutError:
                text = ": keep-alive\n\n"
            if text is None:
                return
            yield text
    finally:
        feed.unsubscribe(queue)
