"""Answers shared between clients: every browser watching a sweep asks the same questions
after the same event (its ranking, its curves), and the database should answer each once.

An answer is kept for one poll interval at most, and only while its sweep's live feed has
published nothing since: an answer read before an event is never served after it. So a page
that refetches on an event always sees the state that event announced, and 20 pages cost the
reads of one.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

MOST_ANSWERS = 256  # kept at once; the least recently asked go first


@dataclass
class Answer:
    stamp: Hashable  # the sweep's feed generation it was read under
    made: float  # time.monotonic() when it was asked for
    result: asyncio.Future


class Answers:
    """Results of ``compute()`` by question (a hashable ``key``), shared while younger than
    ``max_age`` seconds and read under the same ``stamp``; concurrent askers of one question
    wait for the same read. Failures are not kept."""

    def __init__(self, max_age: float, most: int = MOST_ANSWERS) -> None:
        self.max_age = max_age
        self.most = most
        self.reads = 0  # how many questions were read rather than shared
        self._answers: OrderedDict[Hashable, Answer] = OrderedDict()

    async def get(
        self,
        key: Hashable,
        stamp: Hashable,
        compute: Callable[[], Awaitable],
        max_age: float | None = None,
    ):
        """``compute()``'s result, shared (see the class); ``max_age`` overrides the
        default for this question."""
        now = time.monotonic()
        answer = self._answers.get(key)
        oldest = self.max_age if max_age is None else max_age
        if answer is None or answer.stamp != stamp or now - answer.made > oldest:
            answer = Answer(stamp, now, asyncio.ensure_future(self._read(compute)))
            answer.result.add_done_callback(_retrieved)
            self._answers[key] = answer
            while len(self._answers) > self.most:
                self._answers.popitem(last=False)
        self._answers.move_to_end(key)
        try:
            # shielded: one asker leaving (a closed tab) must not cancel the others' read
            return await asyncio.shield(answer.result)
        except Exception:
            if self._answers.get(key) is answer:
                del self._answers[key]
            raise

    async def _read(self, compute: Callable[[], Awaitable]):
        self.reads += 1
        return await compute()


def _retrieved(result: asyncio.Future) -> None:
    """Take a finished read's exception, so one whose askers all left is not reported as
    never retrieved (its askers, if any, got it already)."""
    if not result.cancelled():
        result.exception()
