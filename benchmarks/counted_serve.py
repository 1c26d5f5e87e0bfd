"""``nnlab serve``, counting the SQL statements the server sends to its database: for
``benchmarks/service.py``, which reads the count from a file while clients watch.

    python benchmarks/counted_serve.py DB PORT COUNT_FILE

Every statement of every engine in the process is counted (SQLAlchemy's
``before_cursor_execute``); the count is written to ``COUNT_FILE`` ten times a second.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time

from sqlalchemy import event
from sqlalchemy.engine import Engine

from nnlab.service import serve

_statements = itertools.count(1)
_counted = [0]


@event.listens_for(Engine, "before_cursor_execute")
def _count(*_) -> None:
    _counted[0] = next(_statements)


def _report(path: str) -> None:
    """Write the count to ``path`` every 0.1 s, whole (a reader never sees half of it)."""
    while True:
        with open(f"{path}.new", "w") as file:
            file.write(str(_counted[0]))
        os.replace(f"{path}.new", path)
        time.sleep(0.1)


def main() -> None:
    db, port, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    threading.Thread(target=_report, args=(count_file,), daemon=True).start()
    serve(db, port=port)


if __name__ == "__main__":
    main()
