"""A sweep on the compiled path stores what it stores on the NumPy path, and a bad
``NNLAB_KERNELS`` stops it before anything is written."""

from __future__ import annotations

import textwrap

from click.testing import CliRunner
from conftest import require_numba
from joblib.externals.loky import get_reusable_executor
from test_sweep_packed import stored_runs

import nnlab
from nnlab.cli import cli
from nnlab.engine import MLP
from nnlab.engine.kernels import AUTO_PARAMETERS
from nnlab.store import open_store

# 2-48-48-3: 2,691 parameters, so that auto compiles it too
SPEC = textwrap.dedent("""\
    name: kernels
    data: {name: spirals, n_samples: 120, classes: 3, noise: 0.2, val_fraction: 0.25}
    model: {hidden: [48, 48]}
    train: {epochs: 5, gd: minibatch, batch_size: 8, patience: 2}
    grid:
      learning_rate: [0.01, 0.3, 30.0]
      activation: [sigmoid, tanh, relu, leaky_relu, identity]
      optimizer: [sgd, momentum, nesterov, adam]
    seeds: 1
""")


def test_a_compiled_sweep_stores_the_numpy_sweep_s_epochs_to_the_bit(tmp_path, monkeypatch):
    """On every backend: loky and Dask workers (processes), and threading, which runs the
    kernels side by side in one process (they release the GIL)."""
    require_numba()
    assert MLP([2, 48, 48, 3]).flat.size >= AUTO_PARAMETERS
    stored = {}
    for kernels, backend in (
        ("numpy", "loky"),
        ("numba", "loky"),
        ("numba", "threading"),
        ("numba", "dask"),
    ):
        monkeypatch.setenv("NNLAB_KERNELS", kernels)
        url = f"sqlite:///{tmp_path / kernels}-{backend}.db"
        result = nnlab.sweep(SPEC, url, jobs=2, backend=backend, report=False, progress=False)
        assert result.unfinished == 0
        stored[kernels, backend] = stored_runs(url)
    reference = stored.pop(("numpy", "loky"))
    assert len(reference) == 60
    for runs in stored.values():
        assert runs == reference
    statuses = {status for _, status, _ in reference.values()}
    assert {"completed", "diverged"} <= statuses


def test_the_workers_take_the_runner_s_choice_even_when_reused(tmp_path, monkeypatch):
    """Workers started under one NNLAB_KERNELS and reused by a sweep under another train on
    the runner's choice. Seen through a numba the workers cannot import (a package of that
    name that raises ImportError, first on their path): under numba every run fails naming
    it, under numpy every run completes."""
    require_numba()
    poisoned = tmp_path / "poisoned"
    (poisoned / "numba").mkdir(parents=True)
    (poisoned / "numba" / "__init__.py").write_text("raise ImportError('numba blocked')\n")
    # loky starts its workers on this process's sys.path (this process has numba imported)
    monkeypatch.syspath_prepend(str(poisoned))
    get_reusable_executor().shutdown(wait=True, kill_workers=True)  # workers with that path
    spec = SPEC.replace("[0.01, 0.3, 30.0]", "[0.01, 0.3]").replace(
        "[sigmoid, tanh, relu, leaky_relu, identity]", "[tanh, relu]"
    )
    for kernels, statuses in (("numpy", {"completed", "early_stopped"}), ("numba", {"failed"})):
        monkeypatch.setenv("NNLAB_KERNELS", kernels)
        url = f"sqlite:///{tmp_path / kernels}.db"
        nnlab.sweep(spec, url, jobs=2, report=False, progress=False)
        with open_store(url, create=False).read() as connection:
            rows = connection.exec_driver_sql("SELECT status, error FROM runs").all()
        assert len(rows) == 16 and {row[0] for row in rows} <= statuses, rows[:3]
        if kernels == "numba":
            assert all("NNLAB_KERNELS=numba, but numba cannot be imported" in e for _, e in rows)
    get_reusable_executor().shutdown(wait=True, kill_workers=True)


def test_a_bad_choice_stops_the_sweep_before_anything_is_written(tmp_path, monkeypatch):
    spec = tmp_path / "kernels.yaml"
    spec.write_text(SPEC)
    monkeypatch.setenv("NNLAB_KERNELS", "gpu")
    out = CliRunner().invoke(cli, ["sweep", str(spec), "--db", str(tmp_path / "k.db")])
    assert out.exit_code == 2
    assert "NNLAB_KERNELS='gpu': expected one of auto, numba, numpy" in out.output
    assert "Traceback" not in out.output
    assert not (tmp_path / "k.db").exists()
