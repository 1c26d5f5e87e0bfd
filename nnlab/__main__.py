"""``nnlab`` and ``python -m nnlab``: the command line, started so that Ctrl-C at any moment,
even while the libraries load, ends it with a message and status 130, never a traceback."""

from __future__ import annotations

import sys

from nnlab import stops

EXIT_INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C


def main() -> None:
    # Ctrl-C, SIGTERM or SIGHUP, from the first instant: while the libraries load (pandas,
    # matplotlib, SQLAlchemy: about a second) it is taken once the import is done; any second
    # one is ignored, as nnlab is ending anyway
    try:
        with stops.taken(once=True):
            from nnlab.cli import main as run

            run()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
