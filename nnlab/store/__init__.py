"""The tracking store: sweeps, runs and epochs in SQLite or PostgreSQL via SQLAlchemy."""

from nnlab.store.database import DEFAULT_URL, ENV_VAR, Store, StoreError, open_store, resolve_url
from nnlab.store.registry import UnknownSweepError, delete_sweep, register_sweep, rename_sweep
from nnlab.store.writer import Provenance, RunWriter

_READING = ("Lab", "SweepDetails", "connect")


def __getattr__(name: str):
    """The reading API (it needs pandas) loads on first use: a worker process that only
    writes runs never imports pandas."""
    if name in _READING:
        from nnlab.store import query

        return getattr(query, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "Lab",
    "Provenance",
    "RunWriter",
    "Store",
    "StoreError",
    "SweepDetails",
    "UnknownSweepError",
    "connect",
    "delete_sweep",
    "open_store",
    "register_sweep",
    "rename_sweep",
    "resolve_url",
]
