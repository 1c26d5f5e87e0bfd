"""Strictly read-only SQL over the tracking database, for ``nnlab sql``.

SQLite: the file is opened with ``mode=ro`` (``immutable=1`` on read-only media) *and* an
authorizer that allows nothing but reading (``mode=ro`` alone still lets ``ATTACH`` create files
and ``VACUUM INTO`` write a copy); a progress handler enforces the time limit and
``SQLITE_LIMIT_LENGTH`` caps the size of any one value. PostgreSQL: a read-only session with a
``statement_timeout``, over a role that cannot touch server files, run programs or signal other
connections (a superuser or a member of such a role is refused), and no ``COPY``. On both, at
most ``max_rows`` rows (and ``MAX_RESULT_BYTES``) are fetched, so memory stays bounded.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from nnlab.checks import check_int, check_number
from nnlab.store.database import (
    StoreError,
    check_sqlite_file_exists,
    open_store,
    resolve_url,
    sqlite_reader_uri,
)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_ROWS = 10_000
MAX_VALUE_BYTES = 10_000_000  # SQLite: the largest string or blob a query may make or return
MAX_RESULT_BYTES = 100_000_000  # the most text and bytes held from one result, roughly

# Pragmas that only report; the first group takes a table, index or count as its argument,
# the second none (with an argument they would write a setting).
NAMED_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "integrity_check",
        "quick_check",
        "foreign_key_check",
    }
)
READ_PRAGMAS = frozenset(
    {
        "table_list",
        "user_version",
        "schema_version",
        "page_count",
        "page_size",
        "journal_mode",
        "compile_options",
        "database_list",
        "collation_list",
        "function_list",
        "freelist_count",
        "data_version",
        "encoding",
    }
)
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
# The authorizer's action codes, by name (sqlite3's result and limit codes reuse the numbers).
_ACTIONS = (
    "CREATE_INDEX",
    "CREATE_TABLE",
    "CREATE_TEMP_INDEX",
    "CREATE_TEMP_TABLE",
    "CREATE_TEMP_TRIGGER",
    "CREATE_TEMP_VIEW",
    "CREATE_TRIGGER",
    "CREATE_VIEW",
    "DELETE",
    "DROP_INDEX",
    "DROP_TABLE",
    "DROP_TEMP_INDEX",
    "DROP_TEMP_TABLE",
    "DROP_TEMP_TRIGGER",
    "DROP_TEMP_VIEW",
    "DROP_TRIGGER",
    "DROP_VIEW",
    "INSERT",
    "PRAGMA",
    "READ",
    "SELECT",
    "TRANSACTION",
    "UPDATE",
    "ATTACH",
    "DETACH",
    "ALTER_TABLE",
    "REINDEX",
    "ANALYZE",
    "CREATE_VTABLE",
    "DROP_VTABLE",
    "FUNCTION",
    "SAVEPOINT",
    "RECURSIVE",
)
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ")
    for name in _ACTIONS
    if hasattr(sqlite3, f"SQLITE_{name}")
}
_WRITES = {"INSERT", "UPDATE", "DELETE"}

READER_ROLE_HOWTO = (
    "CREATE ROLE nnlab_reader LOGIN PASSWORD '…'; GRANT CONNECT ON DATABASE {db} TO "
    "nnlab_reader; GRANT USAGE ON SCHEMA public TO nnlab_reader; GRANT SELECT ON ALL TABLES IN "
    "SCHEMA public TO nnlab_reader; then --db postgresql://nnlab_reader@HOST/{db}"
)
# Built-in roles that reach beyond the database: server files, programs, other connections.
POWERFUL_ROLES = (
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
)
_LEADING_NOISE = re.compile(r"(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.DOTALL)


class ReadOnlyError(StoreError):
    """The query tried to change something, or ran too long."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    truncated: bool = False  # more rows (or bytes) than allowed: the rest were not fetched


def run_query(
    sql: str,
    url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> QueryResult:
    """Run one read-only query; raise ``ReadOnlyError`` for anything that would write, and
    ``InputError`` for a time limit that is not a positive finite number of seconds."""
    check_number("timeout (seconds)", timeout, above=0)
    check_int("max_rows", max_rows, 1)
    url = resolve_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_query(sql, url, timeout, max_rows)
    return _postgres_query(sql, url, timeout, max_rows)


def _collect(rows: Iterable[tuple], max_rows: int) -> tuple[list[tuple], bool]:
    """Up to ``max_rows`` rows (and about ``MAX_RESULT_BYTES``); whether there were more."""
    kept: list[tuple] = []
    size = 0
    for row in rows:
        size += sum(len(v) if isinstance(v, str | bytes) else 16 for v in row)
        if len(kept) == max_rows or size > MAX_RESULT_BYTES:
            return kept, True
        kept.append(row)
    return kept, False


def _fetched(cursor, chunk: int = 500) -> Iterable[tuple]:
    while batch := cursor.fetchmany(chunk):
        yield from batch


def _sqlite_query(sql: str, url: str, timeout: float, max_rows: int) -> QueryResult:
    path = make_url(url).database
    if not path or path == ":memory:":
        raise StoreError(f"no database at {path!r}; run a sweep first or pass --db")
    check_sqlite_file_exists(url)
    leftovers = _journal_files(path)
    connection = sqlite3.connect(sqlite_reader_uri(path), uri=True)
    refused: list[str] = []
    try:
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        connection.set_authorizer(_authorizer(refused))
        limit = _TimeLimit(timeout)
        connection.set_progress_handler(limit.reached, 10_000)
        try:
            cursor = connection.execute(sql)
            rows, truncated = _collect(_fetched(cursor), max_rows)
        except sqlite3.DatabaseError as error:
            if str(error) == "interrupted" and not limit.passed:
                # a Ctrl-C, raised inside the progress handler: sqlite3 turns it into the
                # error that stopping at the time limit gives
                raise KeyboardInterrupt from None
            raise _explain(error, refused, timeout, limit.passed) from None
        columns = [d[0] for d in cursor.description or ()]
        return QueryResult(columns, rows, truncated)
    finally:
        connection.close()
        _tidy(path, leftovers)


class _TimeLimit:
    """The progress handler that stops a query at its deadline, and whether it did."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.passed = False

    def reached(self) -> int:
        self.passed = self.passed or time.monotonic() > self.deadline
        return int(self.passed)


def _journal_files(path: str) -> set[Path]:
    return {p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()}


def _tidy(path: str, before: set[Path]) -> None:
    """A read-only connection cannot remove the ``-wal``/``-shm`` files it leaves; a writable
    one that opens and closes last does (SQLite's own clean-up, safe alongside any writer)."""
    if _journal_files(path) <= before or sqlite_reader_uri(path).endswith("immutable=1"):
        return
    connection = sqlite3.connect(sqlite_reader_uri(path, mode="rw"), uri=True)
    try:
        connection.execute("PRAGMA schema_version").fetchall()
    finally:
        connection.close()


def _authorizer(refused: list[str]):
    def authorize(action, arg1, arg2, _db, _trigger):
        if action in _ALLOWED:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and arg2 != "load_extension":
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master" and _trigger is None:
            # SQLite asks this when a table-valued pragma (pragma_table_info) first loads; a
            # real schema write is impossible anyway (mode=ro, writable_schema refused)
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (
            arg1 in NAMED_PRAGMAS or (arg1 in READ_PRAGMAS and arg2 is None)
        ):
            return sqlite3.SQLITE_OK
        refused.append(_refusal(_ACTION_NAMES.get(action, str(action)), arg1, arg2))
        return sqlite3.SQLITE_DENY

    return authorize


def _refusal(action: str, arg1: str | None, arg2: str | None) -> str:
    """What was refused, in the user's terms: ``writing table runs (UPDATE)``."""
    if action in _WRITES and arg1 in ("sqlite_master", "sqlite_temp_master"):
        return "changing the schema (CREATE, DROP or ALTER writes sqlite_master)"
    if action in _WRITES:
        return f"writing table {arg1} ({action})"
    if action == "PRAGMA":
        if arg2 is None:
            return f"PRAGMA {arg1} (not a read-only pragma)"
        return f"PRAGMA {arg1}={arg2} (changes a setting)"
    if action == "FUNCTION":
        return f"calling {arg2}() (loads code)"
    if action in ("ATTACH", "DETACH"):
        return f"{action} {arg1 or ''} (opens or creates another database file)".replace("  ", " ")
    if action in ("TRANSACTION", "SAVEPOINT"):
        return f"{arg1} (transaction control)"
    if action.startswith(("CREATE", "DROP", "ALTER")):
        return f"{action} {arg1} (changes the schema)"
    return f"{action} {arg1 or ''}".strip()


def _explain(error: Exception, refused: list[str], timeout: float, late: bool) -> StoreError:
    message = str(error)
    if late and message == "interrupted":
        return ReadOnlyError(f"query stopped after the {timeout:g} s time limit (--timeout)")
    if refused:
        return ReadOnlyError(
            f"nnlab sql is read-only: refused: {refused[0]}. Only SELECT queries (and read-only "
            "PRAGMAs) run here; change data with nnlab's commands"
        )
    if "too big" in message:
        return StoreError(
            f"SQL error: a value is larger than nnlab sql's limit of {MAX_VALUE_BYTES:,} bytes"
        )
    if re.search(r"readonly|read-only|may not be modified", message):
        return ReadOnlyError(f"nnlab sql is read-only: {message}")
    return StoreError(f"SQL error: {message}")


def _postgres_query(sql: str, url: str, timeout: float, max_rows: int) -> QueryResult:
    """A connection of its own, read-only for its whole session, and the query sent with the
    extended protocol, which takes exactly one statement: ``COMMIT; DELETE …`` cannot escape.
    Rows stream one by one, so no more than ``max_rows`` are ever held."""
    _refuse_copy(sql)
    store = open_store(url, read_only=True)
    import psycopg  # the PostgreSQL driver: open_store has said how to install it if missing

    connection = store.engine.raw_connection()
    try:
        connection.driver_connection.autocommit = True  # each statement its own transaction…
        cursor = connection.cursor()
        _check_role(cursor, make_url(url).database)
        cursor.execute("SET default_transaction_read_only = on")  # …and each one read-only
        cursor.execute(f"SET statement_timeout = {max(1, math.ceil(timeout * 1000))}")
        result = _postgres_stream(cursor, sql, max_rows)
        cursor.close()
    except psycopg.Error as error:
        raise _explain_postgres(error, timeout) from None
    finally:
        connection.invalidate()  # never hand a read-only session back to the pool
    return result


def _postgres_stream(cursor, sql: str, max_rows: int) -> QueryResult:
    rows = cursor.stream(sql, binary=True)  # binary results force the extended protocol
    columns: list[str] = []

    def named(stream):
        for row in stream:
            if not columns:
                columns.extend(d.name for d in cursor.description)
            yield tuple(row)

    kept, truncated = _collect(named(rows), max_rows)
    rows.close()  # cancels the query if rows are left
    if not columns and cursor.description:
        columns = [d.name for d in cursor.description]
    return QueryResult(columns, kept, truncated)


def _refuse_copy(sql: str) -> None:
    """``COPY`` reads and writes files on the server (or streams outside a query): refused
    here by its text, and by the role check for anything that hides it."""
    statement = sql[_LEADING_NOISE.match(sql).end() :]
    if re.match(r"copy\b", statement, re.IGNORECASE):
        raise ReadOnlyError(
            "nnlab sql is read-only: refused: COPY (reads or writes files on the server); "
            "use a SELECT and --format csv"
        )


def _check_role(cursor, database: str | None) -> None:
    """Refuse a role that could read or write server files, run programs or signal other
    connections: arbitrary SQL must not run with that power."""
    cursor.execute(
        "SELECT current_user, EXISTS (SELECT 1 FROM pg_roles WHERE rolsuper AND "
        "pg_has_role(current_user, oid, 'MEMBER')), "
        + ", ".join(f"pg_has_role(current_user, '{role}', 'MEMBER')" for role in POWERFUL_ROLES)
    )
    user, superuser, *members = cursor.fetchone()
    powers = [f"a member of {r}" for r, m in zip(POWERFUL_ROLES, members, strict=True) if m]
    powers = ["a superuser"] if superuser else powers
    if powers:
        raise ReadOnlyError(
            f"nnlab sql refuses to run as {user!r}, {' and '.join(powers[:2])}: arbitrary SQL "
            "could reach server files, programs or other connections; connect as a read-only "
            f"role: {READER_ROLE_HOWTO.format(db=database or 'DB')}"
        )


def _explain_postgres(error: Exception, timeout: float) -> StoreError:
    message = str(error).strip()
    first = message.splitlines()[0] if message else type(error).__name__
    if "statement timeout" in message:
        return ReadOnlyError(f"query stopped after the {timeout:g} s time limit (--timeout)")
    if "read-only transaction" in message:
        return ReadOnlyError(f"nnlab sql is read-only: {first}")
    if re.search(r"permission denied|must be (a )?superuser", message):
        return ReadOnlyError(
            f"refused by the server: {first} (nnlab sql's role may only read the tables)"
        )
    return StoreError(f"SQL error: {first}")
