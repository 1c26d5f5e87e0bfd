"""Sweeps across machines, for real: PostgreSQL, a Dask scheduler and each Dask worker on a host
of its own (a network namespace on a private LAN, see netns.py), every runner (`nnlab sweep`)
on another. A worker machine lost mid-sweep, and several runners starting at once on an empty
database: every run ends once, with the curves of a one-process run on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import numpy as np
import pytest
from test_sweep_run import SLOW, curves

import nnlab
from nnlab.store import StoreError, open_store
from nnlab.store.database import head_revision
from nnlab.store.models import FINISHED_STATUSES, Base
from nnlab.sweeps.runner import run_sweep
from nnlab.sweeps.spec import parse_spec

CI = bool(os.environ.get("CI"))  # under CI a missing capability is an error, not a skip
if not CI:
    pytest.importorskip("distributed")

SPEC = SLOW.replace("seeds: [0, 1]", "seeds: [0]")  # 8 runs of 400 epochs: ~0.3 s each
N_RUNS, EPOCHS = 8, 400
FINAL = {*FINISHED_STATUSES, "failed"}


def _unavailable(reason: str) -> None:
    if CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def network():
    from netns import Network, unavailable

    if reason := unavailable():
        _unavailable(reason)
    network = Network()
    yield network
    network.close()  # every process on every host killed, every namespace and link deleted


@pytest.fixture(scope="module")
def postgres(network):
    from netns import Postgres

    try:
        server = Postgres(network.add_host("postgres"))
    except FileNotFoundError as error:
        _unavailable(f"PostgreSQL not available here: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(network):
    from netns import MachineCluster

    cluster = MachineCluster(network, workers=2)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The curves of SPEC trained with the default backend (loky, one process) on SQLite."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'runs.db'}"
    run_sweep(parse_spec(SPEC), url)
    return curves(url)


# Imports everything first, says so, then waits for the gate: the runners' first database
# calls come within milliseconds of each other.
GATED_CLI = textwrap.dedent("""\
    import pathlib, sys, time
    import distributed, nnlab.sweeps.runner
    from nnlab.cli import main
    ready, gate = map(pathlib.Path, sys.argv[1:3])
    del sys.argv[1:3]
    ready.touch()
    while not gate.exists():
        time.sleep(0.002)
    main()
""")


def start_runner(
    host, tmp_path, url: str, scheduler: str, *options: str, gate=None
) -> subprocess.Popen:
    """`nnlab sweep SPEC` on ``host``, against the cluster at ``scheduler``."""
    spec = tmp_path / "machines.yaml"
    spec.write_text(SPEC)
    start = [sys.executable, "-m", "nnlab.cli"]
    if gate is not None:
        start = [
            sys.executable,
            "-c",
            GATED_CLI,
            str(tmp_path / f"{host.namespace}.ready"),
            str(gate),
        ]
    return host.popen(
        [
            *start,
            "sweep",
            str(spec),
            "--db",
            url,
            "--backend",
            "dask",
            "--scheduler",
            scheduler,
            "-q",
            "--no-report",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(runner: subprocess.Popen) -> str:
    out, err = runner.communicate(timeout=300)
    assert runner.returncode == 0, err
    assert "Traceback" not in err, err
    return next(line for line in out.splitlines() if line.startswith("sweep "))


def assert_every_run_ended_once(url: str) -> Counter:
    """Every run in a final status, with epochs 1..epochs_run each logged once; returns the
    runs' attempts (how many runs were trained how many times)."""
    lab = nnlab.connect(url)
    runs = lab.runs()
    assert len(runs) == N_RUNS and set(runs.status) <= FINAL, runs.status.tolist()
    assert lab.sweeps().status.tolist() == ["finished"]
    with open_store(url, create=False).read() as connection:
        logged = connection.exec_driver_sql(
            "SELECT run_id, count(*), count(DISTINCT epoch), min(epoch), max(epoch) "
            "FROM epochs GROUP BY run_id"
        ).all()
        attempts = dict(connection.exec_driver_sql("SELECT id, attempts FROM runs").all())
    epochs_run = dict(zip(runs.run_id, runs.epochs_run, strict=True))
    assert {run_id: (n, n, 1, n) for run_id, n in epochs_run.items()} == {
        run_id: tuple(rest) for run_id, *rest in logged
    }
    return attempts


def assert_same_curves(url: str, reference: dict) -> None:
    got = curves(url)
    assert got.keys() == reference.keys() and len(got) == N_RUNS * EPOCHS
    np.testing.assert_allclose([got[k] for k in got], [reference[k] for k in got], atol=1e-12)


class ConnectionSampler:
    """Samples the database's connections by client address, in a thread, until stopped;
    ``peaks`` holds the most seen at once from each address."""

    def __init__(self, postgres, database: str, every: float = 0.1) -> None:
        self.peaks: Counter = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(postgres, database, every))
        self._thread.start()

    def _sample(self, postgres, database: str, every: float) -> None:
        while not self._stop.wait(every):
            for address, n in postgres.connections(database).items():
                self.peaks[address] = max(self.peaks[address], n)
            self.samples += 1

    def stop(self) -> Counter:
        self._stop.set()
        self._thread.join()
        return self.peaks


def test_runners_starting_at_once_on_an_empty_database_create_its_schema_once(
    network, postgres, cluster, reference, tmp_path
):
    database = postgres.new_database()
    hosts = [network.add_host(f"runner{i}") for i in range(1, 4)]
    gate = tmp_path / "go"
    logged = len(postgres.log())
    sampler = ConnectionSampler(postgres, database)
    try:
        runners = [
            start_runner(host, tmp_path, postgres.url(database), cluster.address, gate=gate)
            for host in hosts
        ]
        _wait_for_files([tmp_path / f"{host.namespace}.ready" for host in hosts])
        gate.touch()
        summaries = [finish(runner) for runner in runners]
    finally:
        peaks = sampler.stop()
        for host in hosts:
            network.remove(host)
    assert all(0 < peaks[host.address] <= 2 for host in cluster.workers), peaks
    errors = [
        line.split("ERROR:")[1].strip()
        for line in postgres.log()[logged:].splitlines()
        if "ERROR:" in line
    ]
    # the only statement that failed: each runner's look for a schema, before it was made
    assert len(errors) <= len(hosts), errors
    assert all(e.startswith('relation "alembic_version" does not exist') for e in errors), errors
    url = postgres.local_url(database)
    with open_store(url, create=False).read() as connection:
        versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
        assert versions.scalars().all() == [head_revision()]
        tables = connection.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        assert sorted(tables.scalars()) == sorted({"alembic_version", *Base.metadata.tables})
    assert len(nnlab.connect(url).sweeps()) == 1
    assert set(assert_every_run_ended_once(url).values()) == {1}  # each run trained once
    assert_same_curves(url, reference)
    print(
        "\nrunners:",
        *summaries,
        f"peak connections by address: {dict(peaks)} (workers "
        f"{[host.address for host in cluster.workers]})",
        sep="\n  ",
    )


def _wait_for_files(paths, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        assert time.monotonic() < deadline, "the runners did not start"
        time.sleep(0.05)


def runs_training_on(host, url: str, timeout: float = 120) -> set[int]:
    """The ids of the runs processes on ``host`` hold: those seen running there from the
    first sighting until 0.1 s later (a worker claims the runs of its pack one by one)."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    first = None
    while time.monotonic() < deadline:
        try:
            with open_store(url, create=False).read() as connection:
                running = connection.exec_driver_sql(
                    "SELECT id, pid FROM runs WHERE status = 'running'"
                ).all()
        except StoreError:  # the runner has not created the schema yet
            running = []
        pids = host.pids()
        seen |= {run_id for run_id, pid in running if pid in pids}
        if seen and first is None:
            first = time.monotonic()
        if first is not None and time.monotonic() - first > 0.1:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"no run started on {host.namespace}")


def assert_only_their_runs_retried(attempts: dict[int, int], lost: set[int]) -> None:
    """A lost machine costs the runs it held a second attempt, and no other run anything."""
    retried = {run_id for run_id, count in attempts.items() if count == 2}
    assert set(attempts.values()) <= {1, 2}, attempts
    assert retried and retried <= lost, (attempts, lost)


def test_a_worker_machine_lost_mid_sweep_costs_only_a_retry(
    network, postgres, cluster, reference, tmp_path
):
    database = postgres.new_database()
    url = postgres.local_url(database)
    victim = cluster.add_worker()
    client = network.add_host("client")
    sampler = None
    try:
        cluster.wait_for_workers(3)
        sampler = ConnectionSampler(postgres, database)
        started = time.monotonic()
        runner = start_runner(client, tmp_path, postgres.url(database), cluster.address)
        lost = runs_training_on(victim, url)  # its pack
        cluster.lose(victim)  # its processes SIGKILLed, its namespace and link deleted
        lost_at = time.monotonic()
        summary = finish(runner)
        ended = time.monotonic()
    finally:
        peaks = sampler.stop() if sampler else Counter()
        for host in (victim, client):
            if host in network.hosts:
                network.remove(host)
    attempts = assert_every_run_ended_once(url)
    assert_only_their_runs_retried(attempts, lost)
    assert_same_curves(url, reference)
    workers = [host.address for host in (*cluster.workers, victim)]
    assert all(peaks[address] <= 2 for address in workers), peaks
    assert all(peaks[host.address] >= 1 for host in cluster.workers), peaks  # they were seen
    print(
        f"\n{summary}; runs {sorted(lost)} lost with its machine {lost_at - started:.1f} s in, "
        f"the sweep done {ended - lost_at:.1f} s later; peak connections by address "
        f"({sampler.samples} samples): {dict(peaks)} (client {client.address}, workers "
        f"{workers}, lost {victim.address})"
    )


def cut_off_a_worker_mid_sweep(cluster, network, postgres, tmp_path, stale_after: str) -> dict:
    """Run the sweep from a client host; once a worker machine trains a run, cut it off.
    Returns what happened."""
    database = postgres.new_database()
    victim = cluster.add_worker()
    client = network.add_host("client")
    url = postgres.url(database)
    seen = {"url": postgres.local_url(database)}
    try:
        cluster.wait_for_workers(len(cluster.workers))
        started = time.monotonic()
        runner = start_runner(client, tmp_path, url, cluster.address, "--stale-after", stale_after)
        seen["lost"] = runs_training_on(victim, seen["url"])
        cluster.cut_off(victim)
        seen["lost after"], cut_at = time.monotonic() - started, time.monotonic()
        _, seen["error"] = runner.communicate(timeout=300)
        seen["returned"], seen["returned after"] = runner.returncode, time.monotonic() - cut_at
    finally:
        for host in (victim, client):
            network.remove(host)
    seen["statuses"] = nnlab.connect(seen["url"]).runs().status.value_counts().to_dict()
    print("\n", seen)
    return seen


# A machine cut off is noticed by Dask only when its connection to it times out (about 30 s):
# with a shorter --stale-after the runner itself must leave the stuck tasks and train their
# runs again on the workers that are alive.
@pytest.mark.parametrize(
    "stale_after",
    ["60", "5"],
)
def test_a_worker_machine_cut_off_mid_sweep_is_taken_over(
    network, postgres, cluster, reference, tmp_path, stale_after
):
    """Nobody hears a machine go that loses its link first (no FIN): its run just falls
    silent, and must be trained again elsewhere, within the sweep, once it is stale. (Last in
    this module: the scheduler keeps a lost worker on its books for a while.)"""
    seen = cut_off_a_worker_mid_sweep(cluster, network, postgres, tmp_path, stale_after)
    assert seen["returned"] == 0, seen["error"]
    attempts = assert_every_run_ended_once(seen["url"])
    assert_only_their_runs_retried(attempts, seen["lost"])
    assert_same_curves(seen["url"], reference)
