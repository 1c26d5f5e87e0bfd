"""runs.learning_rate_schedule, runs.init, runs.alpha, runs.weight_decay: typed copies of the
round-2 settings users filter on, in runs and in run_summary.

Every run stored before this trained with the values these settings default to (nnlab had no
other), so they are filled in as such: a NULL would say "unknown" of something known.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = {
    "learning_rate_schedule": (sa.String(length=20), "'constant'"),
    "init": (sa.String(length=20), "'auto'"),
    "alpha": (sa.Float(), "0.0"),
    "weight_decay": (sa.Float(), "0.0"),
}
FINALS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def _final(column: str) -> str:
    return (
        f"(SELECT e.{column} FROM epochs e WHERE e.run_id = r.id "
        f"ORDER BY e.epoch DESC LIMIT 1) AS final_{column}"
    )


def _run_summary(settings: tuple[str, ...]) -> str:
    typed = ", ".join(f"r.{name}" for name in settings)
    return f"""
CREATE VIEW run_summary AS
SELECT
    r.id AS run_id, s.name AS sweep, r.status, r.seed,
    r.learning_rate, r.batch_size, r.activation, r.gd, r.optimizer, r.hidden{typed and ", "}{typed},
    {", ".join(_final(column) for column in FINALS)},
    (SELECT min(e.val_loss) FROM epochs e WHERE e.run_id = r.id) AS best_val_loss,
    (SELECT e.epoch FROM epochs e WHERE e.run_id = r.id AND e.val_loss IS NOT NULL
        ORDER BY e.val_loss, e.epoch LIMIT 1) AS best_epoch,
    (SELECT count(*) FROM epochs e WHERE e.run_id = r.id) AS epochs_run,
    r.duration_s
FROM runs r
JOIN sweeps s ON s.id = r.sweep_id
"""


def upgrade() -> None:
    for name, (kind, default) in COLUMNS.items():
        op.add_column("runs", sa.Column(name, kind, nullable=True))
        op.execute(f"UPDATE runs SET {name} = {default}")
    op.execute("DROP VIEW run_summary")
    op.execute(_run_summary(tuple(COLUMNS)))


def downgrade() -> None:
    op.execute("DROP VIEW run_summary")
    op.execute(_run_summary(()))
    with op.batch_alter_table("runs") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
