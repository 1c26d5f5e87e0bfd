"""Registering a sweep and its runs, all in one transaction."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, insert, select, update

from nnlab.store.database import Store, StoreError, database_now, lock
from nnlab.store.models import STALE_AFTER, Run, Sweep, heartbeat_interval, utcnow

# Typed run columns copied out of a run's configuration, for SQL.
TYPED_COLUMNS = ("learning_rate", "batch_size", "activation", "gd", "optimizer", "epochs")


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
    values = {name: config.get(name) for name in TYPED_COLUMNS}
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


def set_sweep_status(store: Store, sweep_id: int, status: str) -> None:
    finished = utcnow() if status in ("finished", "interrupted") else None
    with store.write() as connection:
        connection.execute(
            update(Sweep).where(Sweep.id == sweep_id).values(status=status, finished_at=finished)
        )


def runs_to_do(
    store: Store, sweep_id: int, *, retry_failed: bool = False, stale_after: float = STALE_AFTER
) -> list[tuple[int, dict]]:
    """(run id, config) of every run a (re)started sweep must train: pending and interrupted
    ones, running ones whose heartbeat is older than ``stale_after`` seconds (their process
    died), and failed ones when ``retry_failed``."""
    statuses = ["pending", "interrupted", *(["failed"] if retry_failed else [])]
    with store.read() as connection:
        stale = database_now(connection) - timedelta(seconds=stale_after)
        wanted = Run.status.in_(statuses) | (
            (Run.status == "running") & ((Run.heartbeat_at < stale) | Run.heartbeat_at.is_(None))
        )
        rows = connection.execute(
            select(Run.id, Run.config).where(Run.sweep_id == sweep_id, wanted).order_by(Run.id)
        )
        return [(run_id, config) for run_id, config in rows]


def release_dead_runs(store: Store, sweep_id: int, stale_after: float = STALE_AFTER) -> int:
    """Mark interrupted the sweep's running runs whose process, on this machine, is gone (a
    runner killed with its workers), so that a resume need not wait out the stale window.
    A run whose heartbeat is younger than two beats (see ``heartbeat_interval``) is left
    alone, whatever its pid says (a container sharing this host name has pids of its own).
    Returns how many."""
    here = socket.gethostname()
    with store.read() as connection:
        beats = timedelta(seconds=2 * heartbeat_interval(stale_after))
        quiet = database_now(connection) - beats
        held = connection.execute(
            select(Run.id, Run.pid, Run.lease).where(
                Run.sweep_id == sweep_id, Run.status == "running", Run.hostname == here,
                Run.heartbeat_at < quiet,
            )
        ).all()  # fmt: skip
    dead = [(run_id, pid, lease) for run_id, pid, lease in held if pid and not _alive(pid)]
    with store.write() as connection:
        for run_id, pid, lease in dead:  # only if still held by that same dead attempt
            connection.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == "running", Run.pid == pid,
                       Run.lease.is_not_distinct_from(lease))
                .values(status="interrupted")
            )  # fmt: skip
    return len(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def latest_heartbeat(store: Store, sweep_id: int):
    """The most recent heartbeat of any of the sweep's runs (None before the first)."""
    with store.read() as connection:
        return connection.scalar(select(func.max(Run.heartbeat_at)).where(Run.sweep_id == sweep_id))


def interrupt_running(store: Store, sweep_id: int, lease_prefix: str | None = None) -> int:
    """Mark the sweep's running runs interrupted (their runner is stopping): all of them, or
    only those held under leases starting with ``lease_prefix`` (one runner's, when several
    share the sweep). Returns how many."""
    held = Run.status == "running"
    if lease_prefix is not None:
        held &= Run.lease.startswith(f"{lease_prefix}-", autoescape=True)
    with store.write() as connection:
        result = connection.execute(
            update(Run).where(Run.sweep_id == sweep_id, held).values(status="interrupted")
        )
        return result.rowcount


def run_statuses(store: Store, run_ids: list[int]) -> dict[int, str]:
    with store.read() as connection:
        rows = connection.execute(select(Run.id, Run.status).where(Run.id.in_(run_ids)))
        return dict(rows.all())


def mark_failed(store: Store, run_id: int, error: str) -> None:
    with store.write() as connection:
        connection.execute(update(Run).where(Run.id == run_id).values(status="failed", error=error))
