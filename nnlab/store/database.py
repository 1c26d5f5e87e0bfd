"""Opening the tracking database: URL resolution, engine settings, schema versions.

SQLite gets WAL, a busy timeout, ``synchronous=NORMAL``, foreign keys, and ``BEGIN IMMEDIATE`` for
write transactions (a deferred BEGIN that later writes can fail with "database is locked" under
concurrent writers whatever the timeout). Engines are cached per process: a forked joblib worker
never reuses its parent's connections.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

DEFAULT_URL = "sqlite:///nnlab.db"
ENV_VAR = "NNLAB_DB"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class StoreError(Exception):
    """A problem with the database the user named: bad URL, wrong schema version, locked, ..."""


class NoDatabase(StoreError):
    """The SQLite file named does not exist (and a reader never creates one)."""


class StoreFault(Exception):
    """The database failed under a running sweep: the disk is full, the file was deleted or
    replaced, an I/O error. Not the user's mistake (exit status 1): what was committed stays,
    and the sweep resumes once the cause is fixed."""


def store_fault(error: DBAPIError, store: Store | None = None) -> StoreFault:
    """A database error as a one-line ``StoreFault``."""
    detail = (str(error.orig).strip().splitlines() or [type(error.orig).__name__])[0]
    where = f" ({display_url(store.url)})" if store is not None else ""
    return StoreFault(f"the database failed{where}: {detail}")


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


def portable_url(url: str) -> str:
    """``url`` as another process, started elsewhere, must see it: an SQLite file's path made
    absolute (a worker's working directory may differ)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = parsed.database
    if path.startswith("file:"):  # a URI filename: left as written
        return url
    return parsed.set(database=str(Path(path).absolute())).render_as_string(hide_password=False)


def open_engine(url: str, *, read_only: bool = False) -> Engine:
    """A new engine for ``url`` with nnlab's connection settings; ``read_only`` opens an
    existing SQLite file without changing it (see ``sqlite_reader_uri``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        on_disk = parsed.database not in (None, "", ":memory:")
        return _sqlite_reader_engine(url) if read_only and on_disk else _sqlite_engine(url)
    return _postgres_engine(url)


POSTGRES_EXTRA = "pip install 'nnlab[postgres]'"


def _postgres_engine(url: str) -> Engine:
    try:
        import psycopg  # noqa: F401  (SQLAlchemy imports it too; here to say what is missing)
    except ModuleNotFoundError:
        raise StoreError(
            f"{display_url(url)} needs the PostgreSQL driver psycopg, which is not installed: "
            f"{POSTGRES_EXTRA}"
        ) from None
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


def on_read_only_media(path: str) -> bool:
    """The file or its folder cannot be written (a read-only mount, say): SQLite cannot make
    the ``-shm`` file a WAL database needs even to be read."""
    return not (os.access(path, os.W_OK) and os.access(Path(path).absolute().parent, os.W_OK))


def sqlite_reader_uri(path: str, mode: str = "ro") -> str:
    """The URI that opens the SQLite file at ``path`` for reading without creating anything:
    ``mode=ro``, or ``immutable=1`` on read-only media (no locks, no ``-shm``) unless a ``-wal``
    file there holds data that only a WAL-aware open sees."""
    uri = f"file:{quote(str(Path(path).resolve()))}?mode={mode}"
    wal = Path(f"{path}-wal")
    if on_read_only_media(path) and not (wal.exists() and wal.stat().st_size > 0):
        return f"{uri}&immutable=1"
    return uri


def _sqlite_reader_engine(url: str) -> Engine:
    """Readers open an existing file, never create one and never write: ``mode=rw`` with
    ``query_only`` where the file can be written (so that closing the last connection removes
    ``-wal``/``-shm`` as usual), ``immutable=1`` on read-only media."""
    path = make_url(url).database
    check_sqlite_file_exists(url)
    uri = sqlite_reader_uri(path, mode="ro" if on_read_only_media(path) else "rw")
    timeout = SQLITE_BUSY_TIMEOUT_MS / 1000

    def connect() -> sqlite3.Connection:
        # the pool hands a connection to one thread at a time, but not always the thread that
        # opened it (a threaded reader such as nnlab serve): as SQLAlchemy's own file engines
        return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)

    engine = create_engine(url, creator=connect)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA query_only=ON")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN DEFERRED")

    return engine


def _migrations_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("nnlab.migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_migrations_config())


def head_revision() -> str:
    return _script().get_current_head()


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands against this nnlab's migrations."""

    current: str | None
    head: str
    empty: bool  # no tables at all: a new database

    @property
    def foreign(self) -> bool:
        """Tables but no nnlab schema version: somebody else's database."""
        return self.current is None and not self.empty

    @property
    def newer(self) -> bool:
        known = {revision.revision for revision in _script().walk_revisions()}
        return self.current is not None and self.current not in known

    @property
    def verdict(self) -> str:
        if self.current == self.head:
            return "up to date"
        if self.empty:
            return "new: nnlab creates it on first use"
        if self.foreign:
            return "not an nnlab database: nnlab will not touch it"
        if self.newer:
            return "newer than this nnlab: upgrade nnlab"
        return "behind: run nnlab db upgrade"


def schema_state(engine: Engine) -> SchemaState:
    with _translated(engine.url), engine.connect() as connection:
        empty = not inspect(connection).get_table_names()
        return SchemaState(current_revision(connection), head_revision(), empty)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic, in one write transaction.

    On PostgreSQL an advisory lock serialises processes that upgrade (or create) the same
    database at once; on SQLite ``BEGIN IMMEDIATE`` already does.
    """
    from alembic import command

    with (
        _translated(engine.url),  # errors of connecting too
        engine.connect().execution_options(write=True) as connection,
        _foreign_keys_unenforced(connection),
    ):
        lock(connection, "schema")
        if not connection.in_transaction():
            # SQLite (BEGIN IMMEDIATE): Alembic, whose SQLite DDL is not transactional, would
            # otherwise commit each revision on its own, and another process could find the
            # database half-migrated; inside this transaction it runs them all in it
            connection.begin()
        command.upgrade(_migrations_config(connection), revision)
        _check_foreign_keys(connection)
        connection.commit()


@contextmanager
def _foreign_keys_unenforced(connection: Connection) -> Iterator[None]:
    """SQLite changes a table's constraints by copying it to a new one and dropping the old,
    and dropping a table its rows' children refer to deletes them (``ON DELETE CASCADE``):
    a migration that rebuilt ``runs`` would delete every epoch. So foreign keys are not
    enforced while migrating (the pragma only takes effect outside a transaction), and are
    checked before the migration commits."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.dbapi_connection  # before the transaction begins
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        if not connection.invalidated:  # a Ctrl-C mid-statement closed it: nothing to put back
            if connection.in_transaction():  # the migration failed: inside one, the pragma
                connection.rollback()  # would do nothing
            raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise StoreError(f"the migration broke {len(broken)} foreign keys, e.g. {broken[0]}")


def database_now(connection: Connection) -> datetime:
    """The database server's current time (UTC): the clock heartbeats are written with, so
    that runners on machines with skewed clocks agree on which runs are stale. SQLite runs in
    this process, so its clock is this machine's."""
    if connection.dialect.name == "sqlite":
        return datetime.now(UTC)
    return connection.scalar(select(func.now())).astimezone(UTC)


def lock(connection: Connection, name: str) -> None:
    """Serialise transactions that take the same named lock, until the transaction ends."""
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(
            hashlib.sha256(f"nnlab:{name}".encode()).digest()[:8], "big", signed=True
        )
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")


# The head of migrations/ (a test keeps them equal): a database found at it is used without
# loading Alembic, which would cost every worker process ~0.4 s of imports.
SCHEMA_REVISION = "0006"


def _at_schema_revision(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            return versions.scalars().all() == [SCHEMA_REVISION]
    except DBAPIError:  # no such table (a new or foreign database), or no server: look closer
        return False


def check_schema(engine: Engine, url: str, create: bool = True) -> None:
    """Create a new database at head (when ``create``); refuse any other revision, saying how
    to get out of it."""
    if _at_schema_revision(engine):
        return
    state = schema_state(engine)
    where = display_url(url)
    if state.current == state.head:
        return
    if state.empty or (create and not state.foreign and not state.newer and _unused(engine)):
        # new, or older but holding no sweep yet (another process may be creating it right
        # now): nothing to lose, so bring it to head; the upgrade waits for any other one
        if not create:
            raise StoreError(f"no nnlab database at {where} yet: run a sweep, or check --db")
        upgrade(engine)
        if schema_state(engine).current != state.head:
            raise StoreError(f"{where} could not be brought to revision {state.head}")
        return
    if state.foreign:
        raise StoreError(f"{where} holds tables but no nnlab schema version: not an nnlab database")
    if state.newer:
        raise StoreError(
            f"{where} is at schema revision {state.current}, newer than this nnlab "
            f"(which knows up to {state.head}); upgrade nnlab to use it"
        )
    raise StoreError(
        f"{where} is at schema revision {state.current}, this nnlab needs {state.head}; "
        f"run `nnlab db upgrade --db {where}` (nothing was changed)"
    )


def _unused(engine: Engine) -> bool:
    with _translated(engine.url), engine.connect() as connection:
        return connection.exec_driver_sql("SELECT count(*) FROM sweeps").scalar() == 0


def upgrade_database(url: str | None = None) -> tuple[SchemaState, SchemaState]:
    """``nnlab db upgrade``: bring the database at ``url`` to head; return the states before
    and after. A foreign or newer database is refused untouched."""
    url = resolve_url(url)
    engine = open_engine(url)
    try:
        before = schema_state(engine)
        if before.foreign or before.newer:
            check_schema(engine, url)  # raises with the reason
        upgrade(engine)
        return before, schema_state(engine)
    finally:
        engine.dispose()


def database_state(url: str | None = None) -> SchemaState:
    """``nnlab db current``: the schema state of the database at ``url``, changing nothing."""
    url = resolve_url(url)
    engine = open_engine(url, read_only=True)
    try:
        return schema_state(engine)
    finally:
        engine.dispose()


@contextmanager
def _translated(url: URL) -> Iterator[None]:
    """Database errors on opening (unreachable server, not a database file) as StoreErrors."""
    try:
        yield
    except DBAPIError as error:
        detail = str(error.orig).strip().splitlines()[0]
        where = url.render_as_string(hide_password=True)
        raise StoreError(f"cannot open {where}: {detail}") from None


def display_url(url: str) -> str:
    """The URL with any password hidden."""
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """An open tracking database: its URL and this process's engine."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self.path = _sqlite_path(url)
        opened = _file_identity(self.path)
        self._file = None if opened == _GONE else opened  # e.g. a "file:" URI: not checked
        if self._file is not None:  # a new connection opens whatever the path names now
            event.listen(engine, "connect", lambda *_: self.check_file())

    @property
    def file(self) -> tuple[int, int] | None:
        """The SQLite file opened (device and inode), None for a server."""
        return self._file

    def expect_file(self, identity: tuple[int, int] | None) -> None:
        """Hold this store to ``identity``, the file another process opened at the same path
        (a worker checks it writes where its runner does), and check it at once."""
        if identity is not None and self._file is not None:
            self._file = tuple(identity)
            self.check_file()

    def check_file(self) -> None:
        """Raise ``StoreFault`` if an SQLite file's path no longer names the file that was
        opened (deleted, or replaced by another): writes would go to an unlinked file and be
        lost, and reads would see another database. A ``stat``: about 2 µs."""
        if self._file is not None and _file_identity(self.path) != self._file:
            raise StoreFault(
                f"the database file {self.path} was deleted or replaced while in use; what was "
                "written to it since is lost. Restore the file (or start anew) and run the same "
                "command to resume"
            )

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Around work that must not outlive its database: check the file is still the one
        opened (before and after), and turn a failing database (disk full, I/O error) into a
        one-line ``StoreFault`` instead of the driver's traceback."""
        self.check_file()
        try:
            yield
        except DBAPIError as error:
            raise store_fault(error, self) from error
        self.check_file()

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


def _sqlite_path(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def _file_identity(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return _GONE
    return stat.st_dev, stat.st_ino


_GONE = (-1, -1)


_stores: dict[tuple[str, int], Store] = {}  # (url, pid): stores that may create and write
_readers: dict[tuple[str, int], Store] = {}  # opened read_only


def close_stores() -> None:
    """Dispose of this process's engines; the next ``open_store`` connects (and checks) anew."""
    _forget_inherited()
    for stores in (_stores, _readers):
        for store in stores.values():
            store.engine.dispose()
        stores.clear()


def _forget_inherited() -> None:
    """Drop engines a forked child inherited, without closing their connections: those
    belong to the parent, and closing a PostgreSQL socket here would end its session."""
    pid = os.getpid()
    for stores in (_stores, _readers):
        for key in [key for key in stores if key[1] != pid]:
            stores.pop(key).engine.dispose(close=False)


def open_store(url: str | None = None, *, create: bool = True, read_only: bool = False) -> Store:
    """Open the tracking database at ``url``, creating it when new and ``create`` is set.

    ``create=False`` (a sweep's workers): a mistyped URL is an error, not a new database.
    ``read_only=True`` (readers: ``nnlab.connect``, ``nnlab sql``) implies it, and opens an
    SQLite file without changing it (see ``sqlite_reader_uri``).

    Raises ``StoreError`` for an unusable URL or database, or a schema at another revision.
    """
    url = resolve_url(url)
    create = create and not read_only
    key = (url, os.getpid())
    stores = _readers if read_only else _stores
    store = _stores.get(key) or stores.get(key)  # a store that writes reads too
    if store is not None:
        return store
    with _opening:  # threads opening one URL at once share one engine
        if key not in stores:
            _forget_inherited()
            if not create:
                check_sqlite_file_exists(url)
            engine = open_engine(url, read_only=read_only)
            try:
                check_schema(engine, url, create=create)
            except BaseException:
                engine.dispose()
                raise
            stores[key] = Store(url, engine)
        return stores[key]


_opening = threading.Lock()


def check_sqlite_file_exists(url: str) -> None:
    parsed = make_url(url)
    path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if path not in (None, "", ":memory:") and not Path(path).exists():
        raise NoDatabase(f"no database at {path!r}: run a sweep first, or check --db")
