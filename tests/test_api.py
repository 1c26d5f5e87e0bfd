"""The one-line Python API: nnlab.sweep() and nnlab.train() after `import nnlab` alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pandas as pd
import pytest
import yaml

import nnlab
from nnlab.checks import InputError
from nnlab.sweeps.spec import SpecError

SPEC = textwrap.dedent("""\
    name: api
    data: {name: spirals, n_samples: 90, classes: 3, noise: 0.2}
    model: {hidden: [8]}
    train: {epochs: 4, optimizer: sgd}
    grid:
      learning_rate: [0.05, 0.5]
      gd: [batch, minibatch]
      batch_size: [8]
    seeds: [0, 1]
""")


def test_import_nnlab_alone_is_enough_for_a_sweep_and_a_training(tmp_path):
    script = textwrap.dedent(f"""\
        import nnlab
        result = nnlab.sweep({yaml.safe_load(SPEC)!r}, "sqlite:///{tmp_path}/runs.db")
        print(result.summary())
        print(type(result.best()).__name__, len(result.best()), result.report)
        print(nnlab.train(data="xor", n_samples=40, batch_size=4, epochs=3).history.shape)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    summary, best, history = done.stdout.splitlines()
    assert summary == "sweep 'api': 8 runs; trained now: 8 completed; final before: 0"
    assert best == "DataFrame 4 reports/api.html"  # four configurations; the report's path
    assert history == "(3, 8)"


def test_a_path_yaml_text_and_a_mapping_are_one_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "api.yaml"
    path.write_text(SPEC)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    first = nnlab.sweep(str(path), url, report=False)
    assert first.ran == 8 and first.report is None
    for spec in (SPEC, yaml.safe_load(SPEC), path):  # the same spec: each resumes, none trains
        again = nnlab.sweep(spec, url, report=False)
        assert again.ran == 0 and again.before == 8


def test_the_result_ranks_configurations_and_holds_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = nnlab.sweep(SPEC, f"sqlite:///{tmp_path / 'runs.db'}")
    assert result.report.resolve() == tmp_path / "reports" / "api.html"
    assert result.report.exists() and result.report_error is None
    best = result.best()
    assert isinstance(best, pd.DataFrame) and len(best) == 4 and len(result.best(2)) == 2
    losses = best.final_val_loss_mean.tolist()
    assert losses == sorted(losses) and result.metric == "val_loss"
    assert result.best().equals(nnlab.connect(result.url).configurations("api"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_report_loads_while_other_processes_train_and_never_beside_training_here(
    tmp_path, jobs
):
    """With workers training, this process imports the report's modules meanwhile (its first
    result waits until they are in); at -j 1 it trains itself, and imports nothing beside."""
    script = textwrap.dedent(f"""\
        import sys, time
        import nnlab
        seen = []
        def on_result(run_id, status):
            if seen:
                return
            deadline = time.monotonic() + (30 if {jobs} > 1 else 0)
            while "nnlab.report.page" not in sys.modules and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append("nnlab.report.page" in sys.modules)
        result = nnlab.sweep({yaml.safe_load(SPEC)!r}, "sqlite:///{tmp_path}/runs.db",
                             jobs={jobs}, on_result=on_result)
        print(seen[0], result.report, result.report_error)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(jobs > 1), "reports/api.html", "None"]
    assert (tmp_path / "reports" / "api.html").stat().st_size > 10_000


def test_a_sweep_runs_from_a_thread_other_than_the_main_one(tmp_path):
    """Signal handlers belong to the main thread: elsewhere nnlab.sweep installs none."""
    results, errors = [], []

    def work():
        try:
            results.append(nnlab.sweep(SPEC, f"sqlite:///{tmp_path / 'r.db'}", report=False))
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=120)
    assert not errors and results[0].statuses == {"completed": 8}


def test_bad_specs_and_settings_are_input_errors_naming_them(tmp_path):
    with pytest.raises(SpecError, match=r"<text>:4: train.epochs: epochs must be an integer"):
        nnlab.sweep(SPEC.replace("epochs: 4", "epochs: four"), f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(SpecError, match="<dict>"):
        nnlab.sweep({"name": "x"}, f"sqlite:///{tmp_path}/x.db")
    assert not (tmp_path / "x.db").exists()
    with pytest.raises(InputError, match=r"unknown setting 'learnig_rate'\. Did you mean"):
        nnlab.train(learnig_rate=0.1)


def test_train_takes_data_settings_beside_run_settings():
    trained = nnlab.train("spirals", n_samples=120, classes=4, hidden=[8], epochs=3, seed=1)
    assert trained.train_data.n_outputs == 4 and trained.status == "completed"
    history = trained.history
    assert list(history.epoch) == [1, 2, 3] and history.train_loss.notna().all()
    again = nnlab.train(
        {"name": "spirals", "n_samples": 120, "classes": 4}, hidden=[8], epochs=3, seed=1
    )
    assert again.history.drop(columns="seconds").equals(history.drop(columns="seconds"))
