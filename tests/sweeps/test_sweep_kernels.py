"""A sweep on the compiled path stores what it stores on the NumPy path, and a bad
``NNLAB_KERNELS`` stops it before anything is written."""

from __future__ import annotations

import textwrap

from click.testing import CliRunner
from conftest import require_numba
from test_sweep_packed import stored_runs

import nnlab
from nnlab.cli import cli
from nnlab.engine import MLP
from nnlab.engine.kernels import AUTO_PARAMETERS

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
    require_numba()
    assert MLP([2, 48, 48, 3]).flat.size >= AUTO_PARAMETERS
    stored = {}
    for kernels in ("numpy", "numba"):
        monkeypatch.setenv("NNLAB_KERNELS", kernels)  # the workers inherit it
        url = f"sqlite:///{tmp_path / kernels}.db"
        result = nnlab.sweep(SPEC, url, jobs=2, report=False, progress=False)
        assert result.unfinished == 0
        stored[kernels] = stored_runs(url)
    assert len(stored["numba"]) == 60
    assert stored["numba"] == stored["numpy"]
    statuses = {status for _, status, _ in stored["numba"].values()}
    assert {"completed", "diverged"} <= statuses


def test_a_bad_choice_stops_the_sweep_before_anything_is_written(tmp_path, monkeypatch):
    spec = tmp_path / "kernels.yaml"
    spec.write_text(SPEC)
    monkeypatch.setenv("NNLAB_KERNELS", "gpu")
    out = CliRunner().invoke(cli, ["sweep", str(spec), "--db", str(tmp_path / "k.db")])
    assert out.exit_code == 2
    assert "NNLAB_KERNELS='gpu': expected one of auto, numba, numpy" in out.output
    assert "Traceback" not in out.output
    assert not (tmp_path / "k.db").exists()
