"""``subnormals: flush`` in a sweep: each run trains with subnormals flushed in whichever worker
takes it, the same at any ``-j``, and stored as a setting of the run;
where it cannot be had the sweep stops before anything is written."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
from conftest import SET_FTZ_DAZ_WITH_LIBM, require_glibc_fenv, require_numba
from test_sweep_packed import stored_runs

import nnlab

# inputs scaled up so that the sigmoid units saturate and meet subnormal numbers
SPEC = textwrap.dedent("""\
    name: subnormals
    data: {name: spirals, n_samples: 120, classes: 3, noise: 0.2, val_fraction: 0.25}
    model: {hidden: [24], activation: sigmoid}
    train: {epochs: 4, gd: minibatch, batch_size: 8, optimizer: adam}
    grid:
      learning_rate: [0.01, 10.0]
      subnormals: [keep, flush]
    seeds: 2
""")


def test_flushed_runs_are_stored_as_such_and_the_same_on_every_backend(tmp_path):
    require_numba()
    from threadpoolctl import threadpool_info

    def blas_threads() -> dict[str, int]:
        return {
            i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
        }

    before = blas_threads()  # SciPy's BLAS may load meanwhile (numba imports SciPy), not counted
    stored = {}
    # -j 1: in this process; threading: two threads of it, sharing one BLAS hold
    for backend, jobs in (("loky", 2), ("loky", 1), ("threading", 2)):
        url = f"sqlite:///{tmp_path / backend}-{jobs}.db"
        result = nnlab.sweep(SPEC, url, jobs=jobs, backend=backend, report=False, progress=False)
        assert result.unfinished == 0 and result.failed == 0
        stored[backend, jobs] = stored_runs(url)
    assert stored["loky", 2] == stored["loky", 1] == stored["threading", 2]
    modes = sorted(config.get("subnormals", "keep") for config, _, _ in stored["loky", 2].values())
    assert modes == ["flush"] * 4 + ["keep"] * 4
    # -j 1 and the threads trained in this process: its own thread is IEEE as before, and
    # BLAS has its threads back
    tiny = np.finfo(np.float64).tiny
    assert np.array([tiny])[0] / 4 == tiny / 4
    after = blas_threads()
    assert {path: after[path] for path in before} == before
    settings = nnlab.connect(f"sqlite:///{tmp_path / 'loky'}-2.db").settings("subnormals")
    assert sorted(set(settings.subnormals)) == ["flush", "keep"]


def test_flush_where_numba_is_missing_stops_the_sweep_before_anything_is_written(tmp_path):
    (tmp_path / "s.yaml").write_text(SPEC)
    db = tmp_path / "s.db"
    script = (
        "import runpy, sys; sys.modules['numba'] = None; "
        f"sys.argv = ['nnlab', 'sweep', 's.yaml', '--db', {str(db)!r}]; "
        "runpy.run_module('nnlab', run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().startswith("Error: subnormals='flush' needs numba")
    assert len(out.stderr.strip().splitlines()) == 1
    assert not db.exists()


def test_keep_in_a_runner_thread_that_flushes_without_numba_stops_before_anything_is_written(
    tmp_path,
):
    """At -j 1 the runs train in the runner's thread: where other code set FTZ/DAZ there and
    numba is missing, kept runs cannot train in IEEE arithmetic, and the sweep says so."""
    require_glibc_fenv()
    (tmp_path / "s.yaml").write_text(
        SPEC.replace("subnormals: [keep, flush]", "subnormals: [keep]")
    )
    db = tmp_path / "s.db"
    script = (
        "import runpy, sys; sys.modules['numba'] = None\n"
        + SET_FTZ_DAZ_WITH_LIBM
        + f"sys.argv = ['nnlab', 'sweep', 's.yaml', '-j', '1', '--db', {str(db)!r}]\n"
        "runpy.run_module('nnlab', run_name='__main__')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().startswith(
        "Error: subnormals='keep' in a thread that flushes subnormal numbers"
    )
    assert len(out.stderr.strip().splitlines()) == 1
    assert not db.exists()
