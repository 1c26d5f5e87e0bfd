"""Database faults under a running sweep: a full disk, the database file deleted or replaced.

Each is the real thing: a tmpfs too small for the sweep, a file unlinked or renamed over while
`nnlab sweep` runs in its own process. The sweep says so in one line and exits 1; what it
committed stays intact, and the same command resumes it once the cause is gone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nnlab

SPEC = textwrap.dedent("""\
    name: faults
    data: {name: spirals, n_samples: 90, classes: 3, noise: 0.2}
    model: {hidden: [8]}
    train: {epochs: 1500, optimizer: sgd}
    grid:
      learning_rate: [0.01, 0.02, 0.03, 0.04]
      gd: [batch]
    seeds: [0, 1]
""")
N_RUNS, EPOCHS = 8, 1500


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs: room for the schema and a few runs' epochs, not for the sweep."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        if os.environ.get("CI"):
            raise RuntimeError(f"cannot mount a tmpfs: {result.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def sweep(spec: Path, db: Path, *options: str, wait: bool = True):
    command = [
        sys.executable,
        "-m",
        "nnlab",
        "sweep",
        str(spec),
        "--db",
        str(db),
        "-j",
        "2",
        "-q",
        "--no-report",
        *options,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        process.out, process.err = process.communicate(timeout=300)
    return process


def write_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "faults.yaml"
    spec.write_text(SPEC)
    return spec


def one_line_error(process, *fragments: str) -> None:
    lines = process.err.strip().splitlines()
    assert process.returncode == 1, process.err
    assert len(lines) == 1 and lines[0].startswith("error: "), process.err
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


def test_a_full_disk_stops_the_sweep_in_one_line_and_it_resumes(tmp_path, small_disk):
    spec, db = write_spec(tmp_path), small_disk / "runs.db"
    full = sweep(spec, db)
    one_line_error(full, "database or disk is full")
    # what is left is said, if the full disk let the runner settle the sweep's status
    assert "trained now" not in full.out or "; left: " in full.out, full.out

    copy = tmp_path / "copy"  # read it where there is room (a reader may need the -shm)
    copy.mkdir()
    for file in small_disk.iterdir():
        shutil.copy(file, copy)
    with sqlite3.connect(copy / "runs.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        statuses = dict(connection.execute("SELECT status, count(*) FROM runs GROUP BY 1"))
        counts = connection.execute("SELECT count(*) FROM epochs GROUP BY run_id").fetchall()
    assert statuses.get("completed", 0) >= 1 and "running" not in statuses, statuses
    assert set(counts) == {(EPOCHS,)} or statuses.get("interrupted")  # whole runs, or resumable

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = sweep(spec, db)
    assert resumed.returncode == 0, resumed.err
    assert f"{N_RUNS} runs; trained now: " in resumed.out
    lab = nnlab.connect(f"sqlite:///{db}")
    assert set(lab.runs().status) == {"completed"} and lab.sweeps().status.tolist() == ["finished"]
    assert len(lab.epochs()) == N_RUNS * EPOCHS  # nothing duplicated, nothing missing


def _wait_for_epochs(db: Path, process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                if connection.execute("SELECT count(*) FROM epochs").fetchone()[0]:
                    return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError("no epoch was written")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return list(connection.iterdump())


@pytest.mark.parametrize("fault", ["deleted", "replaced"])
def test_a_database_file_deleted_or_replaced_under_a_sweep_stops_it(tmp_path, fault):
    spec, db = write_spec(tmp_path), tmp_path / "runs.db"
    other = tmp_path / "other.db"  # an nnlab database of its own, to be put in its place
    other_spec = tmp_path / "other.yaml"
    other_spec.write_text(SPEC.replace("name: faults", "name: other").replace("1500", "3"))
    assert sweep(other_spec, other).returncode == 0
    before = _dump(other)

    running = sweep(spec, db, wait=False)
    _wait_for_epochs(db, running)
    for suffix in ("", "-wal", "-shm"):  # rm runs.db*, as a user would
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if fault == "replaced":  # ... then cp other.db runs.db
        shutil.copy(other, db)
    running.out, running.err = running.communicate(timeout=120)
    one_line_error(running, f"{db} was deleted or replaced while in use")
    assert "trained now" not in running.out
    if fault == "replaced":  # the database put there was not written to
        assert _digest(db) == _digest(other) and _dump(db) == before
    else:
        assert not db.exists()  # nor was a new one created
