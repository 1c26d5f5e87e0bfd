"""runs.lease: which attempt holds a running run.

A runner writes a fresh lease when it claims a run, and every later write of that attempt
(heartbeat, epochs, outcome) is conditional on it, so an attempt that lost its run (declared
stale, interrupted, taken over) can no longer write. A task that its scheduler re-executes
after a worker died carries the same lease, so it may take back its own run at once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("lease", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease")
