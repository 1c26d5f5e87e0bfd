"""Schema management: new databases at head, older ones told to upgrade, newer ones refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, text

import nnlab
from nnlab.cli import cli
from nnlab.store import StoreError, database, open_store
from nnlab.store.database import SCHEMA_REVISION, head_revision
from nnlab.store.models import Base

FIRST_REVISION = "0001"
ROOT = Path(__file__).parents[2]


def fresh_engine(url):
    return database.open_engine(database.resolve_url(url))


def test_new_database_is_created_at_head(db_url):
    store = open_store(db_url)
    with store.read() as connection:
        assert database.current_revision(connection) == database.head_revision()
        tables = set(inspect(connection).get_table_names())
        views = set(inspect(connection).get_view_names())
    assert {"sweeps", "runs", "epochs"} <= tables
    assert "run_summary" in views


def test_models_and_migrations_agree(db_url):
    """Autogenerate finds nothing to change between the models and the migrated schema."""
    store = open_store(db_url)
    with store.read() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_sqlite_settings(sqlite_url):
    store = open_store(sqlite_url)
    with store.read() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert pragma("PRAGMA busy_timeout").scalar() == database.SQLITE_BUSY_TIMEOUT_MS


def _database_at_first_revision(url) -> None:
    engine = fresh_engine(url)
    database.upgrade(engine, FIRST_REVISION)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sweeps (name, description, spec, spec_hash, status, created_at) "
                "VALUES ('old', 'kept', 'spec', 'h', 'finished', '2026-01-02 03:04:05+00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO runs (sweep_id, config_hash, status, seed, config, attempts, "
                "learning_rate, activation) "
                "VALUES (1, 'c1', 'completed', 3, '{}', 1, 0.5, 'tanh')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO epochs (run_id, epoch, train_loss, val_loss, train_accuracy) "
                "VALUES (1, 1, 0.9, 1.0, 0.25), (1, 2, 0.5, 0.75, 0.5)"
            )
        )
    engine.dispose()


def test_older_database_is_refused_untouched(db_url):
    _database_at_first_revision(db_url)
    with pytest.raises(StoreError, match="run `nnlab db upgrade") as error:
        open_store(db_url)
    assert FIRST_REVISION in str(error.value)
    engine = fresh_engine(db_url)
    with engine.connect() as connection:
        assert database.current_revision(connection) == FIRST_REVISION
    engine.dispose()


def test_upgrade_keeps_the_data(db_url):
    _database_at_first_revision(db_url)
    result = CliRunner().invoke(cli, ["db", "upgrade", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert f"{FIRST_REVISION} -> {database.head_revision()}" in result.output
    lab_runs = nnlab.connect(db_url).runs()
    assert list(lab_runs.sweep) == ["old"]
    row = lab_runs.iloc[0]
    assert (row.seed, row.learning_rate, row.activation) == (3, 0.5, "tanh")
    assert (row.final_train_loss, row.final_val_loss, row.best_val_loss) == (0.5, 0.75, 0.75)
    assert (row.final_train_accuracy, row.epochs_run) == (0.5, 2)  # the view column 0002 added
    # 0005: the settings every earlier run trained with, typed
    assert (row.learning_rate_schedule, row.init) == ("constant", "auto")
    assert (row.alpha, row.weight_decay) == (0.0, 0.0)


def test_newer_database_is_refused_with_both_revisions(db_url):
    open_store(db_url)
    engine = fresh_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe'"))
    engine.dispose()
    database.close_stores()
    with pytest.raises(StoreError) as error:
        open_store(db_url)
    assert "f00dcafe" in str(error.value)
    assert database.head_revision() in str(error.value)


def test_cli_reports_schema_state_and_exits_2_on_old_schema(sqlite_url):
    runner = CliRunner()
    Path(sqlite_url.removeprefix("sqlite:///")).touch()  # an empty file is an empty database
    result = runner.invoke(cli, ["db", "current", "--db", sqlite_url])
    assert "new: nnlab creates it on first use" in result.output
    _database_at_first_revision(sqlite_url)
    result = runner.invoke(cli, ["db", "current", "--db", sqlite_url])
    assert f"database {FIRST_REVISION}" in result.output and "behind" in result.output
    result = runner.invoke(cli, ["runs", "--db", sqlite_url])
    assert result.exit_code == 2
    assert "nnlab db upgrade" in result.output and "Traceback" not in result.output


def test_alembic_cli_works_on_the_same_database(tmp_path):
    """Alembic's own command line, pointed at nnlab's database with -x db=URL."""
    import subprocess
    import sys
    from pathlib import Path

    url = f"sqlite:///{tmp_path / 'via-alembic.db'}"
    root = Path(__file__).parents[2]
    upgrade = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(root / "alembic.ini"),
            "-x",
            f"db={url}",
            "upgrade",
            "head",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    current = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(root / "alembic.ini"),
            "-x",
            f"db={url}",
            "current",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert database.head_revision() in current.stdout
    open_store(url)  # nnlab accepts what Alembic made


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/x", "unsupported database 'mysql'"),
        ("sqlite:////no/such/folder/x.db", "its folder does not exist"),
        ("postgresql+psycopg://nobody@127.0.0.1:1/none", "cannot open"),
    ],
)
def test_bad_urls_are_clear_errors(url, message):
    with pytest.raises(StoreError, match=message):
        open_store(url)


def test_bad_url_on_the_command_line_exits_2():
    result = CliRunner().invoke(cli, ["sweeps", "--db", "mysql://localhost/x"])
    assert result.exit_code == 2
    assert "unsupported database" in result.output


def test_readers_do_not_create_databases(tmp_path):
    missing = tmp_path / "typo.db"
    result = CliRunner().invoke(cli, ["runs", "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 2 and "no database at" in result.output
    assert not missing.exists()
    with pytest.raises(StoreError, match="no database at"):
        nnlab.connect(f"sqlite:///{missing}")


@pytest.mark.parametrize("command", [["db", "current"], ["runs"], ["sweeps"], ["sql", "SELECT 1"]])
def test_read_only_commands_create_nothing(tmp_path, command):
    """`nnlab db current --db typo.db` used to create an empty typo.db."""
    missing = tmp_path / "typo.db"
    result = CliRunner().invoke(cli, [*command, "--db", str(missing)])
    assert result.exit_code == 2, result.output
    assert "no database at" in result.output and str(missing) in result.output
    assert list(tmp_path.iterdir()) == []


BLOCK_PSYCOPG = """
import sys
from importlib.abc import MetaPathFinder


class NoPsycopg(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("psycopg", "psycopg_binary", "psycopg_c"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoPsycopg())
from nnlab.cli import main

sys.argv = ["nnlab", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("command", [["runs"], ["sql", "SELECT 1"], ["db", "current"]])
def test_postgres_without_its_driver_says_what_to_install(command):
    """It used to print a 49-line ModuleNotFoundError."""
    url = "postgresql://someone@127.0.0.1:1/nnlab"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_PSYCOPG, *command, "--db", url],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: postgresql+psycopg://someone@127.0.0.1:1/nnlab needs the PostgreSQL driver "
        "psycopg, which is not installed: pip install 'nnlab[postgres]'"
    ]


def test_empty_postgres_database_is_not_created_by_a_reader(pg_server):
    url = pg_server.new_database()
    with pytest.raises(StoreError, match="no nnlab database at"):
        nnlab.connect(url)
    engine = fresh_engine(url)
    with engine.connect() as connection:
        assert inspect(connection).get_table_names() == []
    engine.dispose()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    for command in (["runs"], ["sweeps"], ["db", "current"], ["db", "upgrade"]):
        result = CliRunner().invoke(cli, [*command, "--db", f"sqlite:///{path}"])
        assert result.exit_code == 2, (command, result.output)
        assert "cannot open" in result.output and "Traceback" not in result.output
    assert path.read_text().startswith("these are my notes")


def test_someone_elses_database_is_left_alone(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, mine TEXT)")
    runner = CliRunner()
    current = runner.invoke(cli, ["db", "current", "--db", f"sqlite:///{path}"])
    assert "not an nnlab database" in current.output
    upgrade = runner.invoke(cli, ["db", "upgrade", "--db", f"sqlite:///{path}"])
    assert upgrade.exit_code == 2 and "not an nnlab database" in upgrade.output
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert tables == {"runs"}


def test_schema_revision_constant_is_the_migrations_head():
    assert head_revision() == SCHEMA_REVISION


def test_a_worker_loads_neither_pandas_nor_alembic(sqlite_url):
    open_store(sqlite_url)  # created at head here; a worker then only opens it and writes
    script = (
        "import sys; import nnlab.sweeps.runner; from nnlab.store import open_store;"
        f"open_store({sqlite_url!r});"
        "print(sorted(m for m in ('pandas', 'alembic') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"  # each costs a worker process about 0.4 s to import


def test_the_engine_keeps_the_stores_contract():
    """The store declares what it records (nnlab.store.models); the engine, which it does not
    import, must produce exactly that: epoch records with those fields, runs ending so."""
    from nnlab.engine import STATUSES, EpochRecord
    from nnlab.store.models import EPOCH_METRICS, FINISHED_STATUSES, RUN_STATUSES

    assert EpochRecord.__slots__ == ("epoch", *EPOCH_METRICS)
    assert set(STATUSES) == set(FINISHED_STATUSES) and set(FINISHED_STATUSES) <= set(RUN_STATUSES)


def test_a_new_sqlite_database_is_created_in_one_transaction(tmp_path):
    """Another process opening the file while it is being created sees it empty or at head,
    never half-migrated: at an older revision it would refuse it ("run nnlab db upgrade"), as
    the second of two sweeps started at once on a new file did."""
    import sqlite3

    from sqlalchemy import event

    path = tmp_path / "nnlab.db"
    engine = fresh_engine(f"sqlite:///{path}")
    seen = set()

    def look(*_):
        other = sqlite3.connect(path, timeout=0)  # another process's view, committed data only
        try:
            seen.update(other.execute("SELECT version_num FROM alembic_version").fetchall())
        except sqlite3.OperationalError:  # no such table yet
            pass
        finally:
            other.close()

    event.listen(engine, "after_cursor_execute", look)
    database.upgrade(engine)
    engine.dispose()
    assert seen <= {(head_revision(),)}
    assert open_store(f"sqlite:///{path}") is not None


@pytest.mark.parametrize("at_statement", [1, 5, 12])
def test_ctrl_c_while_a_new_sqlite_database_is_created(tmp_path, at_statement):
    """A real SIGINT arriving mid-statement while the schema is created (the first second of a
    sweep on a new file) is the KeyboardInterrupt that stops nnlab, not an error of the
    connection SQLAlchemy closed for it; the file is left without a half schema, and the next
    open creates it."""
    import signal

    from sqlalchemy import event

    path = tmp_path / "nnlab.db"
    engine = fresh_engine(f"sqlite:///{path}")
    statements = []

    def ctrl_c(*_):
        statements.append(1)
        if len(statements) == at_statement:
            signal.raise_signal(signal.SIGINT)  # handled at the next bytecode: mid-statement

    event.listen(engine, "before_cursor_execute", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        database.upgrade(engine)
    engine.dispose()
    assert len(statements) == at_statement
    with fresh_engine(f"sqlite:///{path}").connect() as connection:
        assert inspect(connection).get_table_names() == []
    store = open_store(f"sqlite:///{path}")
    with store.read() as connection:
        assert database.current_revision(connection) == head_revision()


def test_a_failed_migration_gives_back_its_connection_enforcing_foreign_keys(tmp_path):
    """Foreign keys are off while migrating; the pragma that turns them on again does nothing
    inside a transaction, so a failed migration rolls back first."""
    from sqlalchemy import event

    engine = fresh_engine(f"sqlite:///{tmp_path / 'nnlab.db'}")
    statements = []

    def fail(*_):
        statements.append(1)
        if len(statements) == 5:
            raise RuntimeError("the disk went away")

    event.listen(engine, "before_cursor_execute", fail)
    with pytest.raises(RuntimeError, match="the disk went away"):
        database.upgrade(engine)
    event.remove(engine, "before_cursor_execute", fail)
    with engine.connect() as connection:  # the same pooled connection
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert inspect(connection).get_table_names() == []
    engine.dispose()
