"""Strictly read-only SQL over the tracking database, for ``nnlab sql``.

SQLite: the file is opened with ``mode=ro`` *and* an authorizer that allows nothing but reading
(``mode=ro`` alone still lets ``ATTACH`` create files and ``VACUUM INTO`` write a copy), and a
progress handler enforces the time limit. PostgreSQL: a read-only transaction with a
``statement_timeout``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url

from nnlab.store.database import StoreError, open_store, resolve_url

DEFAULT_TIMEOUT_S = 10.0

# Pragmas that only report; the first group takes a table or index name as its argument, the
# second none (with an argument they would write a setting).
NAMED_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
                           "foreign_key_list"})  # fmt: skip
READ_PRAGMAS = frozenset({"table_list", "user_version", "schema_version", "page_count",
                          "page_size", "journal_mode", "compile_options", "database_list",
                          "collation_list", "function_list"})  # fmt: skip
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
# The authorizer's action codes, by name (sqlite3's result and limit codes reuse the numbers).
_ACTIONS = ("CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE",
            "CREATE_TEMP_TRIGGER", "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "DELETE",
            "DROP_INDEX", "DROP_TABLE", "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER",
            "DROP_TEMP_VIEW", "DROP_TRIGGER", "DROP_VIEW", "INSERT", "PRAGMA", "READ", "SELECT",
            "TRANSACTION", "UPDATE", "ATTACH", "DETACH", "ALTER_TABLE", "REINDEX", "ANALYZE",
            "CREATE_VTABLE", "DROP_VTABLE", "FUNCTION", "SAVEPOINT", "RECURSIVE")  # fmt: skip
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ").lower()
    for name in _ACTIONS
    if hasattr(sqlite3, f"SQLITE_{name}")
}


class ReadOnlyError(StoreError):
    """The query tried to change something, or ran too long."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]


def run_query(sql: str, url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> QueryResult:
    """Run one read-only query; raise ``ReadOnlyError`` for anything that would write."""
    url = resolve_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_query(sql, make_url(url).database, timeout)
    return _postgres_query(sql, url, timeout)


def _sqlite_query(sql: str, path: str | None, timeout: float) -> QueryResult:
    if not path or path == ":memory:" or not Path(path).exists():
        raise StoreError(f"no database at {path!r}; run a sweep first or pass --db")
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    refused: list[str] = []
    try:
        connection.set_authorizer(_authorizer(refused))
        deadline = time.monotonic() + timeout
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cursor = connection.execute(sql)
            rows = cursor.fetchall()
        except sqlite3.DatabaseError as error:
            raise _explain(error, refused, timeout) from None
        columns = [d[0] for d in cursor.description or ()]
        return QueryResult(columns, rows)
    finally:
        connection.close()


def _authorizer(refused: list[str]):
    def authorize(action, arg1, arg2, _db, _trigger):
        if action in _ALLOWED:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and arg2 != "load_extension":
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (
            arg1 in NAMED_PRAGMAS or (arg1 in READ_PRAGMAS and arg2 is None)
        ):
            return sqlite3.SQLITE_OK
        what = _ACTION_NAMES.get(action, str(action))
        detail = " ".join(str(a) for a in (arg1, arg2) if a)
        refused.append(f"{what} {detail}".strip())
        return sqlite3.SQLITE_DENY

    return authorize


def _explain(error: Exception, refused: list[str], timeout: float) -> StoreError:
    message = str(error)
    if "interrupted" in message:
        return ReadOnlyError(f"query stopped after the {timeout:g} s time limit (--timeout)")
    if refused:
        return ReadOnlyError(
            f"nnlab sql is read-only: refused {refused[0]!r}. Only SELECT queries (and read-only "
            "PRAGMAs) run here; change data with nnlab's commands"
        )
    if "readonly" in message or "read-only" in message:
        return ReadOnlyError(f"nnlab sql is read-only: {message}")
    return StoreError(f"SQL error: {message}")


def _postgres_query(sql: str, url: str, timeout: float) -> QueryResult:
    """A connection of its own, read-only for its whole session, and the query sent with the
    extended protocol, which takes exactly one statement: ``COMMIT; DELETE …`` cannot escape."""
    import psycopg  # the PostgreSQL driver, present wherever a PostgreSQL URL works

    store = open_store(url, create=False)
    connection = store.engine.raw_connection()
    try:
        connection.driver_connection.autocommit = True  # each statement its own transaction…
        cursor = connection.cursor()
        cursor.execute("SET default_transaction_read_only = on")  # …and each one read-only
        cursor.execute(f"SET statement_timeout = {int(timeout * 1000)}")
        cursor.execute(sql, binary=True)  # binary results force the extended protocol
        columns = [d.name for d in cursor.description or ()]
        rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        cursor.close()
    except psycopg.Error as error:
        raise _explain_postgres(error, timeout) from None
    finally:
        connection.invalidate()  # never hand a read-only session back to the pool
    return QueryResult(columns, rows)


def _explain_postgres(error: Exception, timeout: float) -> StoreError:
    message = str(error).strip()
    if "statement timeout" in message:
        return ReadOnlyError(f"query stopped after the {timeout:g} s time limit (--timeout)")
    if "read-only transaction" in message:
        return ReadOnlyError(f"nnlab sql is read-only: {message.splitlines()[0]}")
    return StoreError(f"SQL error: {message.splitlines()[0]}")
