"""The tracking schema: sweeps, their runs, and every run's epochs.

The Alembic revisions in ``migrations/`` create exactly these tables (a test compares them);
change a model only together with a new revision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# The store's contract with what it records, declared here and nowhere else: a run ends in one of
# FINISHED_STATUSES (how training ended), "pruned" (its sweep's scheduler stopped it) or
# "failed"; an epoch record carries "epoch" and the EPOCH_METRICS, by those names (the engine's
# EpochRecord conforms; a test checks it); a run's settings whose names are in
# HYPERPARAMETER_COLUMNS are copied into typed columns.
RUN_STATUSES = (
    "pending",
    "running",
    "completed",
    "converged",
    "early_stopped",
    "diverged",
    "failed",
    "interrupted",
    "paused",  # a scheduled run that reached its rung, checkpointed, waiting for the decision
    "pruned",  # stopped at its rung by the sweep's scheduler: final
)
FINISHED_STATUSES = ("completed", "converged", "early_stopped", "diverged")  # the engine's
PRUNED, PAUSED = "pruned", "paused"
CLEAN_STATUSES = ("completed", "converged", "early_stopped")  # finished without diverging
SWEEP_STATUSES = ("pending", "running", "finished", "interrupted")

# Metrics of an epoch row, in order; a NaN among them is stored as NULL and named in nan_fields.
EPOCH_METRICS = (
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "grad_norm",
    "learning_rate",
    "seconds",
)

HYPERPARAMETER_COLUMNS = ("learning_rate", "batch_size", "activation", "gd", "optimizer", "hidden")
HYPERPARAMETER_COLUMNS += ("epochs",)  # requested; the epochs table holds those that ran
HYPERPARAMETER_COLUMNS += ("learning_rate_schedule", "init", "alpha", "weight_decay")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# A running run writes its heartbeat every HEARTBEAT_SECONDS; one silent for STALE_AFTER
# seconds is presumed dead, and a resumed sweep trains it again.
HEARTBEAT_SECONDS = 10.0
STALE_AFTER = 60.0


def heartbeat_interval(stale_after: float = STALE_AFTER) -> float:
    """Seconds between a running run's heartbeats: at least four fit in the stale window."""
    return min(HEARTBEAT_SECONDS, stale_after / 4)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC and read back timezone-aware on every backend (SQLite has no
    time zones: it would hand back naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        str: Text,
    }


class Sweep(Base):
    """A named grid of runs, with the spec it was expanded from."""

    __tablename__ = "sweeps"
    __table_args__ = (CheckConstraint(_one_of("status", SWEEP_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(default="")
    spec: Mapped[str] = mapped_column(default="")
    spec_hash: Mapped[str] = mapped_column(String(80), default="")
    # its scheduler's ladder (nnlab.store.rungs.Ladder.as_dict()); NULL: runs train in full
    scheduler: Mapped[dict[str, Any] | None]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Run(Base):
    """One training run: a configuration, how it went, and where it ran."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("sweep_id", "config_hash"),
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        Index("ix_runs_sweep_status", "sweep_id", "status"),
        Index("ix_runs_configuration", "sweep_id", "configuration_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    config_hash: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    seed: Mapped[int]
    # typed copies of the core hyperparameters, for SQL; the whole configuration is in `config`
    learning_rate: Mapped[float | None] = mapped_column(Float)
    batch_size: Mapped[int | None]  # NULL: the whole training set per update
    activation: Mapped[str | None] = mapped_column(String(40))
    gd: Mapped[str | None] = mapped_column(String(20))
    optimizer: Mapped[str | None] = mapped_column(String(20))
    hidden: Mapped[str | None] = mapped_column(String(200))  # widths, e.g. "16,16"
    epochs: Mapped[int | None]  # requested; the epochs table holds those that ran
    learning_rate_schedule: Mapped[str | None] = mapped_column(String(20))
    init: Mapped[str | None] = mapped_column(String(20))
    alpha: Mapped[float | None] = mapped_column(Float)
    weight_decay: Mapped[float | None] = mapped_column(Float)
    config: Mapped[dict[str, Any]]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None]
    attempts: Mapped[int] = mapped_column(default=0)
    lease: Mapped[str | None] = mapped_column(String(40))  # the attempt that holds the run
    nnlab_version: Mapped[str | None] = mapped_column(String(40))
    numpy_version: Mapped[str | None] = mapped_column(String(40))
    python_version: Mapped[str | None] = mapped_column(String(40))
    hostname: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None]
    # with hostname and pid, what tells the holding process from any other (see store.process)
    boot_id: Mapped[str | None] = mapped_column(String(40))
    pid_namespace: Mapped[str | None] = mapped_column(String(40))
    process_start: Mapped[int | None] = mapped_column(BigInteger)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    data_fingerprint: Mapped[str | None] = mapped_column(String(80))
    # what its runs that differ only in seed share: the hash of its configuration at seed 0
    configuration_hash: Mapped[str | None] = mapped_column(String(80))
    # under a scheduler (sha, asha, hyperband): the run's bracket, and its rung: the one it
    # trains to (pending, running), waits at (paused) or stopped at (pruned, or any end)
    bracket: Mapped[int | None]
    rung: Mapped[int | None]


class Checkpoint(Base):
    """The latest checkpoint of a scheduled run paused at a rung: the bytes of the engine's
    ``Checkpoint.to_bytes()`` (the store does not read them). Deleted once the run is final."""

    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


RUNG_DECISIONS = ("promoted", "pruned")


class RungEntry(Base):
    """A configuration that reached a rung of its sweep's scheduler: its score there (the mean
    of its seeds' ``metric`` at the rung; NULL: a seed diverged or failed, the worst), and the
    decision once made, which is never made again."""

    __tablename__ = "rung_entries"
    __table_args__ = (
        CheckConstraint(
            f"decision IS NULL OR {_one_of('decision', RUNG_DECISIONS)}", name="decision"
        ),
        Index("ix_rung_entries_rung", "sweep_id", "bracket", "rung"),
    )

    sweep_id: Mapped[int] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    configuration_hash: Mapped[str] = mapped_column(String(80), primary_key=True)
    rung: Mapped[int] = mapped_column(primary_key=True)
    bracket: Mapped[int]
    epoch: Mapped[int]  # the rung's epoch
    score: Mapped[float | None] = mapped_column(Float)
    seeds: Mapped[int]
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    decision: Mapped[str | None] = mapped_column(String(20))
    decided_at: Mapped[datetime | None]


class Epoch(Base):
    """One epoch of one run. NaN metrics are NULL here and listed in ``nan_fields``."""

    __tablename__ = "epochs"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    grad_norm: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
    nan_fields: Mapped[str | None] = mapped_column(String(200))
