"""Opening the tracking database: URL resolution, engine settings, schema versions.

SQLite gets WAL, a busy timeout, ``synchronous=NORMAL``, foreign keys, and ``BEGIN IMMEDIATE`` for
write transactions (a deferred BEGIN that later writes can fail with "database is locked" under
concurrent writers whatever the timeout). Engines are cached per process: a forked joblib worker
never reuses its parent's connections.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

DEFAULT_URL = "sqlite:///nnlab.db"
ENV_VAR = "NNLAB_DB"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class StoreError(Exception):
    """A problem with the database the user named: bad URL, wrong schema version, locked, ..."""


def resolve_url(url: str | None = None) -> str:
    """The URL given, else ``$NNLAB_DB``, else ``sqlite:///nnlab.db`` in the working directory.

    A bare file path (``runs.db``) is taken as an SQLite file.
    """
    url = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise StoreError(f"cannot parse database URL {url!r}: {error}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database {parsed.get_backend_name()!r} in {url!r}; "
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def open_engine(url: str) -> Engine:
    """A new engine for ``url`` with nnlab's connection settings."""
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return _postgres_engine(url)


def _postgres_engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # like SQLite's synchronous=NORMAL: a commit does not wait for its WAL flush, so a
        # server crash may lose the last fraction of a second, never consistency; a crashed
        # writer process loses nothing it committed
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
        dbapi_connection.commit()

    return engine


def _sqlite_engine(url: str) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:" and not Path(path).parent.exists():
        raise StoreError(f"cannot create the database {path!r}: its folder does not exist")
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # take transaction control from the sqlite3 module, so we choose how BEGIN locks
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = "IMMEDIATE" if connection.get_execution_options().get("write") else "DEFERRED"
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _migrations_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("nnlab.migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(_migrations_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@dataclass
class SchemaState:
    current: str | None
    head: str
    empty: bool  # no tables at all: a new database

    @property
    def known(self) -> bool:
        script = ScriptDirectory.from_config(_migrations_config())
        revisions = {revision.revision for revision in script.walk_revisions()}
        return self.current is None or self.current in revisions


def schema_state(engine: Engine) -> SchemaState:
    with engine.connect() as connection:
        empty = not inspect(connection).get_table_names()
        return SchemaState(current_revision(connection), head_revision(), empty)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic, in one write transaction."""
    from alembic import command

    with engine.connect().execution_options(write=True) as connection:
        command.upgrade(_migrations_config(connection), revision)
        connection.commit()


def check_schema(engine: Engine, url: str) -> None:
    """Create a new database at head; refuse an older or newer one with the way out."""
    state = schema_state(engine)
    if state.current == state.head:
        return
    if state.empty:
        upgrade(engine)
        return
    if state.current is None:
        raise StoreError(
            f"{display_url(url)} holds tables but no nnlab schema version: "
            "it is not an nnlab database"
        )
    if not state.known:
        raise StoreError(
            f"{display_url(url)} is at schema revision {state.current}, newer than this nnlab "
            f"(which knows up to {state.head}); upgrade nnlab to use it"
        )
    raise StoreError(
        f"{display_url(url)} is at schema revision {state.current}, this nnlab needs {state.head}; "
        f"run `nnlab db upgrade --db {display_url(url)}` (nothing was changed)"
    )


def display_url(url: str) -> str:
    """The URL with any password hidden."""
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """An open tracking database: its URL and this process's engine."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self.dialect = engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
        with (
            self.engine.connect().execution_options(write=True) as connection,
            connection.begin(),
        ):
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection

    def __repr__(self) -> str:
        return f"Store({display_url(self.url)!r})"


_stores: dict[tuple[str, int], Store] = {}


def close_stores() -> None:
    """Dispose of this process's engines; the next ``open_store`` connects (and checks) anew."""
    _forget_inherited()
    for store in _stores.values():
        store.engine.dispose()
    _stores.clear()


def _forget_inherited() -> None:
    """Drop engines a forked child inherited, without closing their connections: those
    belong to the parent, and closing a PostgreSQL socket here would end its session."""
    pid = os.getpid()
    for key in [key for key in _stores if key[1] != pid]:
        _stores.pop(key).engine.dispose(close=False)


def open_store(url: str | None = None) -> Store:
    """Open (and create, when new) the tracking database at ``url``.

    Raises ``StoreError`` for an unusable URL or a schema at another revision.
    """
    url = resolve_url(url)
    key = (url, os.getpid())
    store = _stores.get(key)
    if store is None:
        _forget_inherited()
        engine = open_engine(url)
        try:
            check_schema(engine, url)
        except OperationalError as error:
            engine.dispose()
            raise StoreError(f"cannot open {display_url(url)}: {error.orig}") from None
        except BaseException:
            engine.dispose()
            raise
        store = _stores[key] = Store(url, engine)
    return store
