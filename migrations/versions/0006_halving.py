"""Successive halving, ASHA and Hyperband: a sweep's ``scheduler``; run statuses ``paused``
and ``pruned``; runs' ``configuration_hash``, ``bracket`` and ``rung``; the ``checkpoints`` of
paused runs; the ``rung_entries`` that record each configuration's score at a rung and its
rung's decision; ``rung`` in run_summary.

Runs stored before this belong to no scheduler: their bracket and rung stay NULL, and so does
their configuration hash (nnlab reads a configuration from the settings, as it always has).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD_STATUSES = (
    "pending",
    "running",
    "completed",
    "converged",
    "early_stopped",
    "diverged",
    "failed",
    "interrupted",
)
NEW_STATUSES = (*OLD_STATUSES, "paused", "pruned")
SETTINGS = ("epochs", "learning_rate_schedule", "init", "alpha", "weight_decay")
FINALS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def _one_of(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def _final(column: str) -> str:
    return (
        f"(SELECT e.{column} FROM epochs e WHERE e.run_id = r.id "
        f"ORDER BY e.epoch DESC LIMIT 1) AS final_{column}"
    )


def _run_summary(rung: bool) -> str:
    # 0005's view, with the run's rung after its duration
    typed = ", ".join(f"r.{name}" for name in SETTINGS if name != "epochs")
    return f"""
CREATE VIEW run_summary AS
SELECT
    r.id AS run_id, s.name AS sweep, r.status, r.seed,
    r.learning_rate, r.batch_size, r.activation, r.gd, r.optimizer, r.hidden, {typed},
    {", ".join(_final(column) for column in FINALS)},
    (SELECT min(e.val_loss) FROM epochs e WHERE e.run_id = r.id) AS best_val_loss,
    (SELECT e.epoch FROM epochs e WHERE e.run_id = r.id AND e.val_loss IS NOT NULL
        ORDER BY e.val_loss, e.epoch LIMIT 1) AS best_epoch,
    (SELECT count(*) FROM epochs e WHERE e.run_id = r.id) AS epochs_run,
    r.duration_s{", r.rung" if rung else ""}
FROM runs r
JOIN sweeps s ON s.id = r.sweep_id
"""


def _statuses(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_runs_status"), sa.text(_one_of(values)))


def upgrade() -> None:
    op.execute("DROP VIEW run_summary")
    op.add_column("sweeps", sa.Column("scheduler", sa.JSON(), nullable=True))
    op.add_column("runs", sa.Column("configuration_hash", sa.String(length=80), nullable=True))
    op.add_column("runs", sa.Column("bracket", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("rung", sa.Integer(), nullable=True))
    _statuses(NEW_STATUSES)
    op.create_index("ix_runs_configuration", "runs", ["sweep_id", "configuration_hash"])
    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_checkpoints_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "rung_entries",
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("configuration_hash", sa.String(length=80), nullable=False),
        sa.Column("rung", sa.Integer(), nullable=False),
        sa.Column("bracket", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("seeds", sa.Integer(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "decision IS NULL OR decision IN ('promoted', 'pruned')",
            name=op.f("ck_rung_entries_decision"),
        ),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["sweeps.id"],
            name=op.f("fk_rung_entries_sweep_id_sweeps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "sweep_id", "configuration_hash", "rung", name=op.f("pk_rung_entries")
        ),
    )
    op.create_index("ix_rung_entries_rung", "rung_entries", ["sweep_id", "bracket", "rung"])
    op.execute(_run_summary(rung=True))


def downgrade() -> None:
    op.execute("DROP VIEW run_summary")
    op.drop_index("ix_rung_entries_rung", table_name="rung_entries")
    op.drop_table("rung_entries")
    op.drop_table("checkpoints")
    # runs paused or pruned have no status before this revision: they become interrupted
    # (a paused run is resumable; a pruned one would train on, which is what 0005 knew)
    op.execute("UPDATE runs SET status = 'interrupted' WHERE status IN ('paused', 'pruned')")
    op.drop_index("ix_runs_configuration", table_name="runs")
    _statuses(OLD_STATUSES)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("rung")
        batch.drop_column("bracket")
        batch.drop_column("configuration_hash")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("scheduler")
    op.execute(_run_summary(rung=False))
