"""Sweeps on other joblib backends: threads, and a real Dask cluster (scheduler and worker
processes on loopback) writing to a shared PostgreSQL database, including workers that die."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from test_sweep_run import N_RUNS, SLOW, SPEC, curves, wait_for_running

import nnlab
from nnlab.checks import InputError
from nnlab.store import open_store
from nnlab.sweeps.runner import SweepStalled, run_sweep
from nnlab.sweeps.spec import parse_spec

if not os.environ.get("CI"):  # under CI a missing Dask is an error, not a skip
    pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    from dask_cluster import DaskCluster

    cluster = DaskCluster(workers=2)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The curves of SPEC trained with the default backend (loky, one process)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'runs.db'}"
    run_sweep(parse_spec(SPEC), url)
    return curves(url)


def assert_same_curves(url: str, reference: dict) -> None:
    got = curves(url)
    assert got.keys() == reference.keys() and len(got) == N_RUNS * 5
    np.testing.assert_allclose([got[k] for k in got], [reference[k] for k in got], atol=1e-12)


def test_threading_backend_gives_the_same_curves(sqlite_url, reference):
    result = run_sweep(parse_spec(SPEC), sqlite_url, jobs=2, backend="threading")
    assert result.statuses == {"completed": N_RUNS}
    assert_same_curves(sqlite_url, reference)


def test_dask_cluster_writes_to_shared_postgres(cluster, pg_server, reference):
    url = pg_server.new_database()
    result = run_sweep(parse_spec(SPEC), url, backend="dask", scheduler=cluster.address)
    assert result.statuses == {"completed": N_RUNS}
    assert_same_curves(url, reference)
    pids = set(_pids(url))
    assert pids and pids <= set(cluster.worker_pids())  # trained in the cluster's workers


def _pids(url: str) -> list[int]:
    with open_store(url).read() as connection:
        return [pid for (pid,) in connection.exec_driver_sql("SELECT pid FROM runs")]


def test_dask_local_cluster_without_a_scheduler(sqlite_url, reference):
    environment = dict(os.environ)
    result = run_sweep(parse_spec(SPEC), sqlite_url, jobs=2, backend="dask")
    assert result.statuses == {"completed": N_RUNS}
    assert_same_curves(sqlite_url, reference)
    assert os.getpid() not in _pids(sqlite_url)
    # the local cluster's nannies set OPENBLAS_NUM_THREADS=1 and the like here: put back
    assert dict(os.environ) == environment


def test_a_killed_dask_worker_costs_only_a_retry(cluster, pg_server):
    url = pg_server.new_database()
    killed = []

    def kill_a_worker_mid_run():
        run_id, pid = wait_for_running(url)
        cluster.kill_worker(pid)
        killed.append(run_id)

    killer = threading.Thread(target=kill_a_worker_mid_run, daemon=True)
    killer.start()
    result = run_sweep(parse_spec(SLOW), url, backend="dask", scheduler=cluster.address)
    killer.join()
    assert killed and result.statuses == {"completed": N_RUNS}
    lab = nnlab.connect(url)
    assert set(lab.runs().status) == {"completed"}
    assert len(lab.epochs()) == N_RUNS * 400  # no duplicate (run, epoch) rows
    with open_store(url).read() as connection:
        attempts = connection.exec_driver_sql(f"SELECT attempts FROM runs WHERE id = {killed[0]}")
        assert attempts.scalar() == 2  # Dask ran its task again, which took its run back
    cluster.wait_for_workers(2)  # the nanny restarted the worker


def test_a_cluster_that_lost_all_its_workers_stalls_instead_of_hanging(pg_server, sqlite_url):
    from dask_cluster import DaskCluster

    url = pg_server.new_database()
    lonely = DaskCluster(workers=1, nanny=False)  # nothing restarts a killed worker
    try:
        threading.Thread(
            target=lambda: lonely.kill_worker(wait_for_running(url)[1]), daemon=True
        ).start()
        started = time.monotonic()
        with pytest.raises(SweepStalled, match="run the same command to resume"):
            run_sweep(
                parse_spec(SLOW), url, backend="dask", scheduler=lonely.address, stale_after=5
            )
        assert time.monotonic() - started < 60
    finally:
        lonely.stop()
    lab = nnlab.connect(url)
    assert lab.sweeps().status.tolist() == ["interrupted"]
    statuses = lab.runs().status
    assert "running" not in set(statuses) and "interrupted" in set(statuses)
    resumed = run_sweep(parse_spec(SLOW), url, jobs=2)  # another backend finishes the sweep
    assert set(lab.runs().status) == {"completed"}
    assert resumed.ran == N_RUNS - (statuses == "completed").sum()
    assert len(lab.epochs()) == N_RUNS * 400


def test_bad_backend_and_scheduler_settings_are_refused_before_anything_is_written(
    sqlite_url, pg_server
):
    with pytest.raises(InputError, match=r"backend 'spark'.*loky"):
        run_sweep(parse_spec(SPEC), sqlite_url, backend="spark")
    with pytest.raises(InputError, match="needs --backend dask"):
        run_sweep(parse_spec(SPEC), sqlite_url, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(InputError, match="cannot share an SQLite file"):
        run_sweep(parse_spec(SPEC), sqlite_url, backend="dask", scheduler="tcp://127.0.0.1:1")
    url = pg_server.new_database()
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        run_sweep(parse_spec(SPEC), url, backend="dask", scheduler="tcp://127.0.0.1:1")
    for database in (sqlite_url, url):
        assert nnlab.connect(database).sweeps().empty  # no sweep registered


def test_successive_halving_on_a_dask_cluster_decides_as_loky_does(cluster, pg_server, tmp_path):
    """The cluster's workers take the rung decisions in their own transactions on the shared
    PostgreSQL database: the same promotions, and the same curves, as one loky process."""
    from test_sweep_halving import curves as halving_curves
    from test_sweep_halving import decisions, outcomes, spec

    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    run_sweep(parse_spec(spec("sha")), reference)
    url = pg_server.new_database()
    result = run_sweep(parse_spec(spec("sha")), url, backend="dask", scheduler=cluster.address)
    assert result.unfinished == 0
    assert decisions(url) == decisions(reference)
    assert outcomes(url) == outcomes(reference)
    assert halving_curves(url, "halving") == halving_curves(reference, "halving")
    assert set(_pids(url)) <= set(cluster.worker_pids())


@pytest.mark.parametrize("missing", ["numba", "nnlab"])
def test_flush_on_dask_workers_without_numba_stops_before_the_sweep_is_registered(
    pg_server, tmp_path, missing
):
    """The workers are other machines, with their own packages: where they cannot flush
    subnormals (no numba there, or not even nnlab), the sweep says which and why before
    registering anything."""
    from dask_cluster import DaskCluster

    stub = tmp_path / f"no-{missing}"
    stub.mkdir()
    (stub / f"{missing}.py").write_text(
        f"raise ImportError('{missing} is not installed on this worker')\n"
    )
    path = os.pathsep.join(filter(None, [str(stub), os.environ.get("PYTHONPATH")]))
    url = pg_server.new_database()
    flushed = SPEC.replace("train: {", "train: {subnormals: flush, ")
    assert "subnormals: flush" in flushed
    workers = DaskCluster(workers=2, env={"PYTHONPATH": path})
    try:
        with pytest.raises(InputError) as refused:
            run_sweep(parse_spec(flushed), url, backend="dask", scheduler=workers.address)
    finally:
        workers.stop()
    message = str(refused.value)
    assert message.startswith("2 of 2 Dask workers cannot train subnormals='flush' runs; tcp://")
    assert f"{missing} is not installed on this worker" in message
    assert nnlab.connect(url).sweeps().empty
