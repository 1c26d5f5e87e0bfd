"""nnlab: run grids of small neural-network training experiments and study their convergence."""

__version__ = "0.1.0"


def connect(url: str | None = None):
    """Open the tracking database for reading, e.g. ``nnlab.connect().runs()``.

    See ``nnlab.store.Lab``; the store is imported here lazily, so the engine alone stays light.
    """
    from nnlab.store import connect as _connect

    return _connect(url)
