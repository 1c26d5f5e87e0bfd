"""``nnlab`` and ``python -m nnlab``: the command line, started so that Ctrl-C at any moment,
even while the libraries load, ends it with a message and status 130, never a traceback."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C


def main() -> None:
    try:
        from nnlab.cli import main as run  # loads pandas, matplotlib, SQLAlchemy: ~1 s

        run()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
