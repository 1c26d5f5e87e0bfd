"""Registering a sweep and its runs, all in one transaction (``RunQueue`` does the rest of a
run's life)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import insert, select

from nnlab.store.database import Store, StoreError, lock
from nnlab.store.models import HYPERPARAMETER_COLUMNS, Run, Sweep


@dataclass(frozen=True)
class RunRow:
    """A run to register: its configuration, the hash that identifies it in its sweep, its seed."""

    config: Mapping
    config_hash: str
    seed: int


def register_sweep(
    store: Store,
    name: str,
    runs: Iterable[RunRow],
    *,
    description: str = "",
    spec: str = "",
    spec_hash: str = "",
) -> int:
    """Create sweep ``name`` with its runs as ``pending``, atomically; return the sweep id.

    Runs already registered under the same sweep (same config hash) are left as they are, so
    registering again after an interruption adds only what is missing. A different
    ``spec_hash`` under an existing name is refused (checked under the same lock, so two
    processes cannot both register different specs under one name).
    """
    with store.write() as connection:
        lock(connection, f"sweep:{name}")  # two processes registering one sweep queue up
        sweep_id, known_hash = connection.execute(
            select(Sweep.id, Sweep.spec_hash).where(Sweep.name == name)
        ).first() or (None, None)
        if sweep_id is not None and known_hash and spec_hash and known_hash != spec_hash:
            raise StoreError(
                f"a sweep named {name!r} already exists with a different spec; resume it with "
                f"its original spec, or give this one a new name"
            )
        if sweep_id is None:
            sweep_id = connection.scalar(
                insert(Sweep)
                .values(name=name, description=description, spec=spec, spec_hash=spec_hash)
                .returning(Sweep.id)
            )
        known = set(connection.scalars(select(Run.config_hash).where(Run.sweep_id == sweep_id)))
        rows = [_run_values(sweep_id, run) for run in runs if run.config_hash not in known]
        if rows:
            connection.execute(insert(Run), rows)
    return sweep_id


def _run_values(sweep_id: int, run: RunRow) -> dict:
    config = dict(run.config)
    hidden = config.get("hidden")
    values = {name: config.get(name) for name in HYPERPARAMETER_COLUMNS if name != "hidden"}
    if config.get("gd") in ("batch", "stochastic"):
        values["batch_size"] = None if config["gd"] == "batch" else 1
    return {
        "sweep_id": sweep_id,
        "config_hash": run.config_hash,
        "seed": run.seed,
        "status": "pending",
        "config": config,
        "hidden": None if hidden is None else ",".join(str(int(w)) for w in hidden),
        "attempts": 0,
        **values,
    }


def sweep_spec_hash(store: Store, name: str) -> str | None:
    """The spec hash sweep ``name`` was registered with, or None for a new sweep."""
    with store.read() as connection:
        return connection.scalar(select(Sweep.spec_hash).where(Sweep.name == name))
