"""``nnlab`` and ``python -m nnlab``: the command line, started so that Ctrl-C at any moment,
even while the libraries load, ends it with a message and status 130, never a traceback."""

from __future__ import annotations

import signal
import sys

from nnlab import stops

EXIT_INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C


def main() -> None:
    # While the libraries load (pandas, matplotlib, SQLAlchemy: about a second) Ctrl-C is only
    # noted: raised inside an import, some library might swallow it, or print a traceback.
    noted: list[int] = []
    with stops.handled(lambda signum, frame: noted.append(signum), (signal.SIGINT,)):
        from nnlab.cli import main as run
    try:
        if noted:
            raise KeyboardInterrupt
        with stops.handled(stops.interrupt, (signal.SIGINT,)):  # taken outside imports
            run()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
