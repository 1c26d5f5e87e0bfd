"""The whole tracking schema: sweeps, runs, epochs and the run_summary view.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RUN_STATUSES = (
    "'pending', 'running', 'completed', 'converged', 'early_stopped', 'diverged', 'failed', "
    "'interrupted'"
)
SWEEP_STATUSES = "'pending', 'running', 'finished', 'interrupted'"

# One row per run with its hyperparameters and how far it got: the figures lab.runs() returns.
# The correlated subqueries ride the epochs primary key (run_id, epoch).
RUN_SUMMARY = """
CREATE VIEW run_summary AS
SELECT
    r.id AS run_id,
    s.name AS sweep,
    r.status,
    r.seed,
    r.learning_rate,
    r.batch_size,
    r.activation,
    r.gd,
    r.optimizer,
    r.hidden,
    (SELECT e.train_loss FROM epochs e WHERE e.run_id = r.id
        ORDER BY e.epoch DESC LIMIT 1) AS final_train_loss,
    (SELECT e.val_loss FROM epochs e WHERE e.run_id = r.id
        ORDER BY e.epoch DESC LIMIT 1) AS final_val_loss,
    (SELECT min(e.val_loss) FROM epochs e WHERE e.run_id = r.id) AS best_val_loss,
    (SELECT e.epoch FROM epochs e WHERE e.run_id = r.id AND e.val_loss IS NOT NULL
        ORDER BY e.val_loss, e.epoch LIMIT 1) AS best_epoch,
    (SELECT count(*) FROM epochs e WHERE e.run_id = r.id) AS epochs_run,
    r.duration_s
FROM runs r
JOIN sweeps s ON s.id = r.sweep_id
"""


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("spec_hash", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"status IN ({SWEEP_STATUSES})", name=op.f("ck_sweeps_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
        sa.UniqueConstraint("name", name=op.f("uq_sweeps_name")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("config_hash", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("learning_rate", sa.Float(), nullable=True),
        sa.Column("batch_size", sa.Integer(), nullable=True),
        sa.Column("activation", sa.String(length=40), nullable=True),
        sa.Column("gd", sa.String(length=20), nullable=True),
        sa.Column("optimizer", sa.String(length=20), nullable=True),
        sa.Column("hidden", sa.String(length=200), nullable=True),
        sa.Column("epochs", sa.Integer(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("nnlab_version", sa.String(length=40), nullable=True),
        sa.Column("numpy_version", sa.String(length=40), nullable=True),
        sa.Column("python_version", sa.String(length=40), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("data_fingerprint", sa.String(length=80), nullable=True),
        sa.CheckConstraint(f"status IN ({RUN_STATUSES})", name=op.f("ck_runs_status")),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name=op.f("fk_runs_sweep_id_sweeps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("sweep_id", "config_hash", name=op.f("uq_runs_sweep_id")),
    )
    op.create_index("ix_runs_sweep_status", "runs", ["sweep_id", "status"])
    op.create_table(
        "epochs",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("train_accuracy", sa.Float(), nullable=True),
        sa.Column("val_accuracy", sa.Float(), nullable=True),
        sa.Column("grad_norm", sa.Float(), nullable=True),
        sa.Column("learning_rate", sa.Float(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("nan_fields", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_epochs_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "epoch", name=op.f("pk_epochs")),
    )
    op.execute(RUN_SUMMARY)


def downgrade() -> None:
    op.execute("DROP VIEW run_summary")
    op.drop_table("epochs")
    op.drop_index("ix_runs_sweep_status", table_name="runs")
    op.drop_table("runs")
    op.drop_table("sweeps")
