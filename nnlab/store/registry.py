"""Registering a sweep and its runs, all in one transaction (``RunQueue`` does the rest of a
run's life); renaming and deleting a sweep."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, insert, select, update

from nnlab.checks import check_name, close_matches, did_you_mean, plural
from nnlab.store.database import Store, StoreError, database_now, display_url, lock
from nnlab.store.models import (
    HYPERPARAMETER_COLUMNS,
    STALE_AFTER,
    Checkpoint,
    Epoch,
    Run,
    RungEntry,
    Sweep,
)


@dataclass(frozen=True)
class RunRow:
    """A run to register: its configuration, the hash that identifies it in its sweep, its
    seed, the hash its configuration has for every seed and, under a scheduler, its bracket
    (the rung it starts at is its bracket's first)."""

    config: Mapping
    config_hash: str
    seed: int
    configuration_hash: str | None = None
    bracket: int | None = None


def register_sweep(
    store: Store,
    name: str,
    runs: Iterable[RunRow],
    *,
    description: str = "",
    spec: str = "",
    spec_hash: str = "",
    replaces: str | None = None,
    scheduler: Mapping | None = None,
) -> int:
    """Create sweep ``name`` with its runs as ``pending``, atomically; return the sweep id.

    Runs already registered under the same sweep (same config hash) are left as they are, so
    registering again after an interruption adds only what is missing. A different
    ``spec_hash`` under an existing name is refused (checked under the same lock, so two
    processes cannot both register different specs under one name), unless the stored one is
    ``replaces``: then the sweep takes the new spec (one that extends it, its runs added).
    ``scheduler`` is its scheduler's ladder (``Ladder.as_dict()``), if it has one.
    """
    with store.write() as connection:
        lock(connection, f"sweep:{name}")  # two processes registering one sweep queue up
        sweep_id, known_hash = connection.execute(
            select(Sweep.id, Sweep.spec_hash).where(Sweep.name == name)
        ).first() or (None, None)
        if sweep_id is not None and known_hash and spec_hash and known_hash != spec_hash:
            if replaces is None or known_hash != replaces:
                raise StoreError(
                    f"a sweep named {name!r} already exists with a different spec; resume it "
                    "with its original spec, or give this one a new name"
                )
            new_spec = {"spec": spec, "spec_hash": spec_hash, "description": description}
            connection.execute(update(Sweep).where(Sweep.id == sweep_id).values(**new_spec))
        if sweep_id is None:
            sweep_id = connection.scalar(
                insert(Sweep)
                .values(
                    name=name,
                    description=description,
                    spec=spec,
                    spec_hash=spec_hash,
                    scheduler=None if scheduler is None else dict(scheduler),
                )
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
    return {
        "sweep_id": sweep_id,
        "config_hash": run.config_hash,
        "configuration_hash": run.configuration_hash,
        "bracket": run.bracket,
        "rung": run.bracket,  # bracket b starts at rung b
        "seed": run.seed,
        "status": "pending",
        "config": config,
        "hidden": None if hidden is None else ",".join(str(int(w)) for w in hidden),
        "attempts": 0,
        **values,
    }


def sweep_spec(store: Store, name: str) -> tuple[str, str] | None:
    """The spec hash and text sweep ``name`` was registered with, or None for a new sweep."""
    with store.read() as connection:
        row = connection.execute(select(Sweep.spec_hash, Sweep.spec).where(Sweep.name == name))
        return row.first()


class UnknownSweepError(StoreError):
    """A sweep name the database does not hold; the message names close matches, and
    ``matches`` lists them."""

    def __init__(self, message: str, matches: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.matches = list(matches)


def unknown_sweep(connection, name: str, url) -> UnknownSweepError:
    """The error for sweep ``name`` missing from the database at ``url``, with a did-you-mean
    (or the names it holds, when none is close)."""
    names = list(connection.scalars(select(Sweep.name).order_by(Sweep.id)))
    hint = did_you_mean(name, names)
    if not hint:
        shown = ", ".join(repr(n) for n in names[:10]) + (", …" if len(names) > 10 else "")
        hint = f"; it holds {shown}" if names else "; it holds no sweep yet"
    message = f"no sweep named {name!r} in {display_url(url)}{hint}"
    return UnknownSweepError(message, close_matches(name, names))


@dataclass(frozen=True)
class Deleted:
    """What ``delete_sweep`` removed."""

    sweep: str
    runs: int
    epochs: int


def delete_sweep(store: Store, name: str) -> Deleted:
    """Delete sweep ``name`` with its runs and their epochs, in one transaction.

    Refused (``StoreError``) while a runner holds any of its runs: a ``running`` run whose
    heartbeat is within ``STALE_AFTER`` seconds of the database's clock. Raises
    ``UnknownSweepError`` for a name the database does not hold.
    """
    with store.write() as connection:
        sweep_id = _sweep_id(connection, store, name, "delete")
        runs = select(Run.id).where(Run.sweep_id == sweep_id)
        epochs = connection.execute(delete(Epoch).where(Epoch.run_id.in_(runs))).rowcount
        connection.execute(delete(Checkpoint).where(Checkpoint.run_id.in_(runs)))
        connection.execute(delete(RungEntry).where(RungEntry.sweep_id == sweep_id))
        count = connection.execute(delete(Run).where(Run.sweep_id == sweep_id)).rowcount
        connection.execute(delete(Sweep).where(Sweep.id == sweep_id))
    return Deleted(name, count, epochs)


def rename_sweep(store: Store, old: str, new: str) -> None:
    """Rename sweep ``old`` to ``new``: a non-empty name of up to 200 characters without
    control or bidi characters, that no other sweep has. Refused, like ``delete_sweep``,
    while a runner holds one of its runs (it finds its sweep by name)."""
    check_name("the new sweep name", new, error=StoreError)
    with store.write() as connection:
        lock(connection, f"sweep:{new}")  # against registering a sweep under the new name
        sweep_id = _sweep_id(connection, store, old, "rename")
        if connection.scalar(select(Sweep.id).where(Sweep.name == new)) is not None:
            raise StoreError(f"a sweep named {new!r} already exists; choose another new name")
        connection.execute(update(Sweep).where(Sweep.id == sweep_id).values(name=new))


def _sweep_id(connection, store: Store, name: str, action: str) -> int:
    """The id of sweep ``name``, its runs locked against claims; refused while it has runs a
    live runner holds."""
    lock(connection, f"sweep:{name}")
    sweep_id = connection.scalar(select(Sweep.id).where(Sweep.name == name))
    if sweep_id is None:
        raise unknown_sweep(connection, name, store.url)
    connection.execute(select(Run.id).where(Run.sweep_id == sweep_id).with_for_update()).all()
    live_since = database_now(connection) - timedelta(seconds=STALE_AFTER)
    held = connection.execute(
        select(Run.hostname, Run.pid).where(
            Run.sweep_id == sweep_id, Run.status == "running", Run.heartbeat_at >= live_since
        )
    ).all()
    if held:
        holders = ", ".join(sorted({f"{host} pid {pid}" for host, pid in held}))
        raise StoreError(
            f"cannot {action} sweep {name!r}: {plural(len(held), 'run')} running, held by a "
            f"live runner ({holders}); stop it, or wait until it has been silent for "
            f"{STALE_AFTER:g} s"
        )
    return sweep_id
