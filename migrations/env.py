"""Alembic environment: runs nnlab's revisions against the database nnlab would open.

Called by nnlab itself (which passes its own connection in ``config.attributes["connection"]``)
or by Alembic's CLI, where the URL comes from ``-x db=URL``, else ``NNLAB_DB``, else the default.
"""

from __future__ import annotations

from alembic import context

from nnlab.store.database import open_engine, resolve_url
from nnlab.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = resolve_url(context.get_x_argument(as_dictionary=True).get("db"))
    engine = open_engine(url)
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("nnlab's migrations run online only: give a database with -x db=URL")
run_migrations_online()
