"""The tracking store: sweeps, runs and epochs in SQLite or PostgreSQL via SQLAlchemy."""

from nnlab.store.database import DEFAULT_URL, ENV_VAR, Store, StoreError, open_store, resolve_url
from nnlab.store.query import Lab, SweepDetails, UnknownSweepError, connect
from nnlab.store.registry import register_sweep
from nnlab.store.writer import Provenance, RunWriter

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
    "open_store",
    "register_sweep",
    "resolve_url",
]
