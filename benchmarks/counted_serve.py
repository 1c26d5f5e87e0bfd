"""``nnlab serve``, counting the SQL statements the server sends to its database and the
requests it answers: for ``benchmarks/service.py``, which reads the counts from files while
clients watch.

    python benchmarks/counted_serve.py DB PORT COUNT_FILE

Every statement of every engine in the process is counted (SQLAlchemy's
``before_cursor_execute``); the count is written to ``COUNT_FILE`` ten times a second, and
``COUNT_FILE.paths`` holds, as JSON, the requests and the statements of each path
(``{path: [requests, statements]}``; a sweep's event feed counts under the ``/events``
request that started it, whose context its task inherits).
"""

from __future__ import annotations

import collections
import contextvars
import itertools
import json
import os
import sys
import threading
import time

from sqlalchemy import event
from sqlalchemy.engine import Engine

import nnlab.service.app
from nnlab.service import serve

_statements = itertools.count(1)
_counted = [0]
_path = contextvars.ContextVar("path", default="(no request)")
_by_path: collections.Counter = collections.Counter()
_requests: collections.Counter = collections.Counter()
_lock = threading.Lock()  # the counters change in worker threads while the reporter reads


@event.listens_for(Engine, "before_cursor_execute")
def _count(*_) -> None:
    with _lock:
        _counted[0] = next(_statements)
        _by_path[_path.get()] += 1  # worker threads run in a copy of the request's context


class _CountRequests:
    """ASGI middleware: each HTTP request counted under its path, which it sets as the
    context of the statements it sends."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            with _lock:
                _requests[scope["path"]] += 1
            _path.set(scope["path"])
        await self.app(scope, receive, send)


def _counted_app(*args, _create=nnlab.service.app.create_app, **kwargs):
    app = _create(*args, **kwargs)
    app.add_middleware(_CountRequests)
    return app


def _write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole (a reader never sees half of it)."""
    with open(f"{path}.new", "w") as file:
        file.write(text)
    os.replace(f"{path}.new", path)


def _report(path: str) -> None:
    while True:
        _write(path, str(_counted[0]))
        with _lock:
            paths = {p: [_requests[p], _by_path[p]] for p in set(_requests) | set(_by_path)}
        _write(f"{path}.paths", json.dumps(paths))
        time.sleep(0.1)


def main() -> None:
    db, port, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    nnlab.service.app.create_app = _counted_app  # serve() looks it up when called
    threading.Thread(target=_report, args=(count_file,), daemon=True).start()
    serve(db, port=port)


if __name__ == "__main__":
    main()
