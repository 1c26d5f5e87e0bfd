"""`nnlab sql`: strictly read-only, time- and size-bounded, on SQLite and on PostgreSQL (over a
role that cannot reach server files, programs or other connections)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import fill, from_a_terminal
from sqlalchemy.engine import make_url

import nnlab
from nnlab.checks import InputError
from nnlab.cli import cli
from nnlab.store import database, open_store
from nnlab.store.sql import MAX_VALUE_BYTES, ReadOnlyError, run_query

ROOT = Path(__file__).parents[2]
ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n"


def make_role(pg_server, url: str, *grants: str) -> str:
    """``url`` over a new login role that may read the tables (the README's recipe), plus any
    further ``grants`` (role names) it is made a member of."""
    import psycopg

    name, database = f"reader_{uuid.uuid4().hex[:8]}", make_url(url).database
    dsn = f"host=127.0.0.1 port={pg_server.port} user=postgres dbname={database}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        for statement in (
            f"CREATE ROLE {name} LOGIN",
            f"GRANT CONNECT ON DATABASE {database} TO {name}",
            f"GRANT USAGE ON SCHEMA public TO {name}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name}",
            *(f"GRANT {role} TO {name}" for role in grants),
        ):
            connection.execute(statement)
    return make_url(url).set(username=name).render_as_string(hide_password=False)


@pytest.fixture
def reader_pg(pg_server, filled_pg) -> str:
    return make_role(pg_server, filled_pg)


@pytest.fixture(params=["sqlite", "postgresql"])
def readable(request) -> str:
    """A filled database as `nnlab sql` may use it: the SQLite file, or a PostgreSQL reader."""
    return request.getfixturevalue("filled_sqlite" if request.param == "sqlite" else "reader_pg")


def sql(*args: str):
    return CliRunner().invoke(cli, ["sql", *args])


def test_nnlab_db_environment_variable(readable, monkeypatch):
    monkeypatch.setenv("NNLAB_DB", readable)
    result = CliRunner().invoke(cli, ["sql", "SELECT count(*) AS n FROM runs", "--format", "csv"])
    assert result.output.splitlines() == ["n", "6"]


def test_sql_formats(readable):
    query = "SELECT activation, count(*) AS n FROM run_summary GROUP BY 1 ORDER BY 1"
    csv_out = sql(query, "--db", readable, "--format", "csv").output
    assert csv_out.splitlines() == ["activation,n", "relu,2", "sigmoid,2", "tanh,2"]
    js = json.loads(sql(query, "--db", readable, "--format", "json").output)
    assert js[0] == {"activation": "relu", "n": 2}
    table = sql(query, "--db", readable).output
    assert "sigmoid" in table and "(3 rows)" in table


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


REFUSED_ON_SQLITE = [
    "INSERT INTO sweeps (name) VALUES ('x')",
    "UPDATE runs SET status = 'failed'",
    "DELETE FROM epochs",
    "DROP TABLE epochs",
    "CREATE TABLE t (x)",
    "ATTACH DATABASE '{tmp}/evil.db' AS evil",
    "VACUUM INTO '{tmp}/copy.db'",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "PRAGMA writable_schema = 1",
    "UPDATE sqlite_master SET sql = 'x'",
    "SELECT load_extension('libevil')",
    "CREATE TEMP TABLE t AS SELECT 1",
]


@pytest.mark.parametrize("statement", REFUSED_ON_SQLITE)
def test_sql_refuses_anything_that_writes_on_sqlite(filled_sqlite, statement, tmp_path):
    path = Path(filled_sqlite.removeprefix("sqlite:///"))
    open_store(filled_sqlite).engine.dispose()  # checkpoint WAL so the file alone holds the data
    before = _digest(path)
    result = sql(statement.format(tmp=tmp_path), "--db", filled_sqlite)
    assert result.exit_code == 2, result.output
    assert "read-only" in result.output or "not authorized" in result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert _digest(path) == before
    assert not (tmp_path / "evil.db").exists() and not (tmp_path / "copy.db").exists()
    assert len(nnlab.connect(filled_sqlite).epochs()) == 24


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("UPDATE runs SET seed = 1", "refused: writing table runs (UPDATE)"),
        ("DELETE FROM epochs", "refused: writing table epochs (DELETE)"),
        ("PRAGMA journal_mode=DELETE", "refused: PRAGMA journal_mode=DELETE (changes a setting)"),
        ("DROP TABLE epochs", "refused: changing the schema"),
        ("SELECT load_extension('x')", "refused: calling load_extension() (loads code)"),
    ],
)
def test_sql_refusal_names_what_was_refused(filled_sqlite, statement, named):
    result = sql(statement, "--db", filled_sqlite)
    assert result.exit_code == 2 and named in result.output, result.output


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("PRAGMA table_info(runs)", "learning_rate"),
        ("PRAGMA integrity_check", "ok"),
        ("PRAGMA quick_check", "ok"),
        ("PRAGMA foreign_key_check", "(0 rows)"),
        ("PRAGMA foreign_key_check(runs)", "(0 rows)"),
        ("SELECT name FROM pragma_table_info('runs') WHERE name = 'seed'", "seed"),
        ("SELECT * FROM pragma_integrity_check", "ok"),
    ],
)
def test_sql_read_only_pragmas_work(filled_sqlite, statement, expected):
    result = sql(statement, "--db", filled_sqlite)
    assert result.exit_code == 0, result.output
    assert expected in result.output


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO sweeps (name) VALUES ('x')",
        "DELETE FROM epochs",
        "DROP TABLE epochs",
        "CREATE TABLE t (x int)",
    ],
)
def test_sql_refuses_writes_on_postgres(reader_pg, statement):
    result = sql(statement, "--db", reader_pg)
    assert result.exit_code == 2, result.output
    assert "read-only" in result.output or "permission denied" in result.output
    assert len(nnlab.connect(reader_pg).epochs()) == 24


def test_sql_time_limit(readable):
    endless = f"SELECT count(*) FROM ({ENDLESS})"
    if readable.startswith("postgresql"):
        endless = "SELECT pg_sleep(5)"
    result = sql(endless, "--db", readable, "--timeout", "0.5")
    assert result.exit_code == 2, result.output
    assert "0.5 s time limit" in result.output


def test_ctrl_c_stops_a_query_as_ctrl_c_not_as_the_time_limit(readable):
    """sqlite3 turns a Ctrl-C taken inside the time limit's progress handler into the same
    "interrupted" error as the limit: it used to say "stopped after the 60 s time limit" a
    second in."""
    endless = f"SELECT count(*) FROM ({ENDLESS})"
    if readable.startswith("postgresql"):
        endless = "SELECT pg_sleep(30)"
    command = [sys.executable, "-m", "nnlab", "sql", endless, "--db", readable, "--timeout", "60"]
    query = subprocess.Popen(
        from_a_terminal(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(3)  # nnlab loads, the query runs
    started = time.monotonic()
    query.send_signal(signal.SIGINT)
    out, errors = query.communicate(timeout=30)
    assert (query.returncode, out, errors) == (130, "", "interrupted\n")
    assert time.monotonic() - started < 5


def test_ctrl_c_inside_the_time_limits_handler_is_a_ctrl_c(filled_sqlite):
    """The same in this process, where the Ctrl-C surely lands mid-query: a real SIGINT sent
    to this thread a second into a query that would run for a minute."""
    main = threading.main_thread().ident
    ctrl_c = threading.Timer(1.0, signal.pthread_kill, (main, signal.SIGINT))
    started = time.monotonic()  # before the timer starts: its second is inside what is timed
    ctrl_c.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_query(f"SELECT count(*) FROM ({ENDLESS})", filled_sqlite, timeout=60)
    finally:
        ctrl_c.cancel()
    # the Ctrl-C's, not an instant error's nor the limit's (a timer may wake a hair early)
    assert 0.9 <= time.monotonic() - started < 10


def test_a_query_naming_a_status_unquoted_is_an_sql_error_not_a_ctrl_c(filled_sqlite):
    """``interrupted`` is a status: forgetting its quotes gives SQLite's "no such column:
    interrupted", which once read as a Ctrl-C (and before that as the time limit)."""
    result = sql("SELECT count(*) FROM runs WHERE status = interrupted", "--db", filled_sqlite)
    assert result.exit_code == 2
    assert result.output == "Error: SQL error: no such column: interrupted\n"


@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "0", "-1"])
def test_sql_refuses_a_timeout_that_is_not_a_positive_finite_number(readable, timeout):
    """nan used to disable the limit on SQLite; 0 meant none at all on PostgreSQL."""
    result = sql("SELECT 1", "--db", readable, "--timeout", timeout)
    assert result.exit_code == 2, result.output
    assert "timeout (seconds) must be a finite number > 0" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(InputError, match="must be a finite number > 0"):
        run_query("SELECT 1", readable, timeout=float(timeout))


def test_a_tiny_timeout_still_limits_postgres(reader_pg):
    """0.0001 s used to round to statement_timeout = 0: no limit at all."""
    started = time.monotonic()
    with pytest.raises(ReadOnlyError, match="time limit"):
        run_query("SELECT pg_sleep(3)", reader_pg, timeout=0.0001)
    assert time.monotonic() - started < 2


def test_sql_stops_at_max_rows_and_says_so(readable):
    endless = ENDLESS
    if readable.startswith("postgresql"):
        endless = "SELECT generate_series(1, 1000000000000) AS i"
    started = time.monotonic()
    result = CliRunner().invoke(
        cli,
        ["sql", endless, "--db", readable, "--max-rows", "5", "--format", "csv", "--timeout", "20"],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["i", "1", "2", "3", "4", "5"]
    assert "stopped after 5 rows" in result.stderr and "--max-rows" in result.stderr
    assert time.monotonic() - started < 10  # the rest were never computed
    whole = run_query("SELECT count(*) FROM runs", readable, max_rows=1)
    assert whole.rows == [(6,)] and not whole.truncated


def test_sql_default_row_cap(filled_sqlite):
    result = run_query(ENDLESS, filled_sqlite)
    assert len(result.rows) == 10_000 and result.truncated


@pytest.mark.parametrize("max_rows", ["0", "-3"])
def test_sql_refuses_a_bad_max_rows(filled_sqlite, max_rows):
    result = sql("SELECT 1", "--db", filled_sqlite, "--max-rows", max_rows)
    assert result.exit_code == 2 and f"got {max_rows}" in result.output, result.output


def test_a_value_over_the_size_cap_is_refused(filled_sqlite):
    result = sql("SELECT randomblob(50000000)", "--db", filled_sqlite)
    assert result.exit_code == 2, result.output[:200]
    assert f"a value is larger than nnlab sql's limit of {MAX_VALUE_BYTES:,} bytes" in result.output


# peak memory as VmHWM: ru_maxrss would carry over the forking pytest process's own peak
MEASURED = """
import re, sys, time
from nnlab.store.sql import run_query
started = time.monotonic()
try:
    run_query("SELECT randomblob(400000000)", sys.argv[1], timeout=1)
except Exception as error:
    print(type(error).__name__, error, file=sys.stderr)
seconds = time.monotonic() - started
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(seconds, int(peak) // 1024)
"""


def test_a_huge_value_stops_quickly_in_bounded_memory(filled_sqlite):
    """randomblob(400000000) under --timeout 1 used to run 15 s and take 2 GB: a single SQLite
    step, which the time limit cannot interrupt. Measured in a process of its own."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, filled_sqlite],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    seconds, megabytes = done.stdout.split()
    assert "StoreError" in done.stderr and "limit of" in done.stderr
    assert float(seconds) < 2 and int(megabytes) < 200, done.stdout


def test_sql_syntax_error_is_a_clear_message(readable):
    result = sql("SELEC nothing", "--db", readable)
    assert result.exit_code == 2
    assert "SQL error" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "statement",
    [
        "COMMIT; DELETE FROM epochs",
        "SELECT 1; DELETE FROM epochs",
        "SET default_transaction_read_only = off",
    ],
)
def test_sql_cannot_escape_read_only_on_postgres(reader_pg, filled_pg, statement):
    """One statement only (extended protocol) in a read-only session: no way out of it."""
    result = sql(statement, "--db", reader_pg)
    sql("DELETE FROM epochs", "--db", reader_pg)
    assert len(nnlab.connect(filled_pg).epochs()) == 24, result.output


def test_sql_on_a_missing_database_is_an_error(tmp_path):
    result = sql("SELECT 1", "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 2 and "no database at" in result.output
    assert list(tmp_path.iterdir()) == []


# --- PostgreSQL: never with the power to touch server files, programs or other sessions ---


def test_sql_refuses_a_superuser(filled_pg):
    result = sql("SELECT count(*) FROM runs", "--db", filled_pg)  # the test server's superuser
    assert result.exit_code == 2, result.output
    assert "refuses to run as 'postgres', a superuser" in result.output
    assert "CREATE ROLE nnlab_reader LOGIN" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "role",
    [
        "pg_read_server_files",
        "pg_write_server_files",
        "pg_execute_server_program",
        "pg_signal_backend",
    ],
)
def test_sql_refuses_a_role_with_powers_beyond_the_database(pg_server, filled_pg, role):
    result = sql("SELECT 1", "--db", make_role(pg_server, filled_pg, role))
    assert result.exit_code == 2, result.output
    assert f"a member of {role}" in result.output


def test_sql_refuses_copy(reader_pg, tmp_path):
    target = tmp_path / "out.csv"
    for statement in (
        f"COPY (SELECT * FROM runs) TO '{target}'",
        f"/* a comment */ -- and another\n  copy runs TO '{target}'",
    ):
        result = sql(statement, "--db", reader_pg)
        assert result.exit_code == 2, result.output
        assert "refused: COPY" in result.output
    assert not target.exists()


@pytest.mark.parametrize(
    "statement", ["SELECT pg_read_file('/etc/passwd')", "SELECT pg_ls_dir('.')"]
)
def test_a_reader_cannot_read_server_files(reader_pg, statement):
    result = sql(statement, "--db", reader_pg)
    assert result.exit_code == 2, result.output
    assert "refused by the server: permission denied" in result.output
    assert "root:" not in result.output


def test_a_reader_cannot_end_a_running_sweeps_connection(pg_server, filled_pg, reader_pg):
    import psycopg

    database = make_url(filled_pg).database
    dsn = f"host=127.0.0.1 port={pg_server.port} user=postgres dbname={database}"
    with psycopg.connect(dsn, autocommit=True) as sweep:
        pid = sweep.execute("SELECT pg_backend_pid()").fetchone()[0]
        result = sql(f"SELECT pg_terminate_backend({pid})", "--db", reader_pg)
        assert result.exit_code == 2, result.output
        assert "refused by the server" in result.output and "superuser" in result.output
        assert sweep.execute("SELECT 1").fetchone() == (1,)  # still connected


def test_a_reader_role_can_select(reader_pg):
    result = run_query("SELECT activation, count(*) FROM runs GROUP BY 1 ORDER BY 1", reader_pg)
    assert result.rows == [("relu", 2), ("sigmoid", 2), ("tanh", 2)]


# --- SQLite files read where they lie: read-only media, and nothing left behind ---

READ_COMMANDS = [
    ["sql", "SELECT count(*) AS n FROM runs", "--format", "csv"],
    ["runs"],
    ["sweeps"],
    ["db", "current"],
]


def nnlab_cli(*args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "nnlab.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def checkpointed(url: str) -> Path:
    """The database file with its WAL folded in and no -wal/-shm beside it."""
    open_store(url)
    database.close_stores()
    path = Path(url.removeprefix("sqlite:///"))
    assert sorted(p.name for p in path.parent.iterdir()) == ["nnlab.db"]
    return path


@pytest.fixture
def read_only_mount(tmp_path):
    """A folder holding a filled database, bind-mounted read-only (as root, chmod would not
    stop anyone); skipped where mounting is not permitted."""
    source, mounted = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    checkpointed(fill(f"sqlite:///{source / 'nnlab.db'}"))
    bind = subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bind.stderr.decode().strip()}")
    try:
        remount = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(mounted)], capture_output=True
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.decode().strip()}")
        yield mounted / "nnlab.db"
    finally:
        database.close_stores()  # this process's reader holds the file open
        subprocess.run(["umount", str(mounted)], check=True)


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_read_only_commands_work_on_read_only_media(read_only_mount, command):
    """A WAL database there could not be read at all: SQLite could not make its -shm."""
    with pytest.raises(OSError):
        (read_only_mount.parent / "probe").touch()  # the mount really is read-only
    done = nnlab_cli(*command, "--db", str(read_only_mount))
    assert done.returncode == 0, done.stderr
    expected = {"sql": "n\n6\n", "runs": "(6 runs)", "sweeps": "acts", "db": "up to date"}
    assert expected[command[0]] in done.stdout
    assert sorted(p.name for p in read_only_mount.parent.iterdir()) == ["nnlab.db"]
    assert len(nnlab.connect(str(read_only_mount)).runs()) == 6  # the Python API too


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_read_only_commands_leave_no_wal_files_behind(filled_sqlite, command):
    path = checkpointed(filled_sqlite)
    before = _digest(path)
    done = nnlab_cli(*command, "--db", str(path))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in path.parent.iterdir()) == ["nnlab.db"]
    assert _digest(path) == before


def test_sql_leaves_a_running_writers_wal_files_alone(filled_sqlite):
    store = open_store(filled_sqlite)  # a sweep's open connection keeps -wal and -shm
    with store.read() as connection:
        connection.exec_driver_sql("SELECT count(*) FROM runs").scalar()
        path = Path(filled_sqlite.removeprefix("sqlite:///"))
        assert run_query("SELECT count(*) FROM runs", filled_sqlite).rows == [(6,)]
        assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
        connection.exec_driver_sql("SELECT count(*) FROM epochs").scalar()  # still usable
