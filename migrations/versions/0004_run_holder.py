"""runs.boot_id, runs.pid_namespace, runs.process_start: who holds a run, beyond its pid.

With the host name and pid already recorded, these tell one process from every other: the
host's boot id (a rebooted machine reuses pids), its pid namespace (containers sharing a host
name have pids of their own) and the process's start time (pids are reused). A resumed sweep
takes over at once a run whose holder is provably gone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("boot_id", "pid_namespace", "process_start")


def upgrade() -> None:
    op.add_column("runs", sa.Column("boot_id", sa.String(length=40), nullable=True))
    op.add_column("runs", sa.Column("pid_namespace", sa.String(length=40), nullable=True))
    op.add_column("runs", sa.Column("process_start", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
