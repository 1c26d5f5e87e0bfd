"""run_summary: add each run's final training and validation accuracy.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _final(column: str) -> str:
    return (
        f"(SELECT e.{column} FROM epochs e WHERE e.run_id = r.id "
        f"ORDER BY e.epoch DESC LIMIT 1) AS final_{column}"
    )


def _run_summary(accuracy: bool) -> str:
    finals = ["train_loss", "val_loss", *(["train_accuracy", "val_accuracy"] if accuracy else [])]
    return f"""
CREATE VIEW run_summary AS
SELECT
    r.id AS run_id, s.name AS sweep, r.status, r.seed,
    r.learning_rate, r.batch_size, r.activation, r.gd, r.optimizer, r.hidden,
    {", ".join(_final(column) for column in finals)},
    (SELECT min(e.val_loss) FROM epochs e WHERE e.run_id = r.id) AS best_val_loss,
    (SELECT e.epoch FROM epochs e WHERE e.run_id = r.id AND e.val_loss IS NOT NULL
        ORDER BY e.val_loss, e.epoch LIMIT 1) AS best_epoch,
    (SELECT count(*) FROM epochs e WHERE e.run_id = r.id) AS epochs_run,
    r.duration_s
FROM runs r
JOIN sweeps s ON s.id = r.sweep_id
"""


def upgrade() -> None:
    op.execute("DROP VIEW run_summary")
    op.execute(_run_summary(accuracy=True))


def downgrade() -> None:
    op.execute("DROP VIEW run_summary")
    op.execute(_run_summary(accuracy=False))
