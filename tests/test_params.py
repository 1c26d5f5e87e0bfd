"""The table of hyperparameters drives every layer: one entry, and a new parameter is validated
in specs, hashed, stored, listed, offered by `nnlab train` and shown in the report."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from nnlab.params import PARAMS, When
from nnlab.sweeps.config import RunConfig
from nnlab.sweeps.grid import canonical
from nnlab.sweeps.spec import FIELD_CHECKS, MODEL_KEYS, TRAIN_KEYS

# Declares one parameter, then uses nnlab as a user would. It configures nothing the engine
# knows (configures=None: a label the run carries), so no engine change is needed to train.
SCRIPT = textwrap.dedent("""\
    import json, sys
    from nnlab import params

    params.declare(params.Param("cohort", str, "none", params.choice(("none", "a", "b")),
                                "Which cohort the run belongs to.", configures=None,
                                choices=("none", "a", "b")))

    import nnlab
    from click.testing import CliRunner
    from nnlab.cli import cli
    from nnlab.sweeps.grid import expand_grid
    from nnlab.sweeps.spec import SpecError, parse_spec

    url, base = sys.argv[1], sys.argv[2]
    try:
        parse_spec(base.replace("epochs: 3", "epochs: 3, cohort: c"), source="s.yaml")
    except SpecError as error:
        print("refused:", error)
    plain = sorted(p.config_hash for p in expand_grid(parse_spec(base)))
    result = nnlab.sweep(base + "  cohort: [a, b]\\n", url, report=False)
    settings = nnlab.connect(url).settings("labelled")
    html = nnlab.render_report(nnlab.connect(url), ["labelled"])
    help_text = CliRunner().invoke(cli, ["train", "--help"]).output
    trained = CliRunner().invoke(cli, ["train", "--cohort", "b", "--epochs", "2"])
    print(json.dumps({
        "runs": result.ran,
        "cohorts": sorted(settings.cohort),
        "plain_hashes": plain,
        "in_report": html.count("cohort"),
        "option": "--cohort [none|a|b]" in help_text,
        "trained": trained.exit_code,
    }))
""")
BASE = textwrap.dedent("""\
    name: labelled
    data: {name: spirals, n_samples: 90, classes: 3}
    model: {hidden: [4]}
    train: {epochs: 3}
    grid:
      learning_rate: [0.1, 0.5]
""")


def test_a_parameter_declared_once_reaches_every_layer(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url, BASE], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    refusal, report = done.stdout.strip().splitlines()
    assert refusal == (
        "refused: s.yaml:4: train.cohort: unknown cohort 'c'; expected one of 'none', 'a', 'b'"
    )
    seen = json.loads(report)
    assert seen["runs"] == 4 and seen["cohorts"] == ["a", "a", "b", "b"]  # a grid axis, stored
    assert seen["in_report"] > 0 and seen["option"] and seen["trained"] == 0
    # declared or not, a run that leaves it at its default hashes as before: resumable
    from nnlab.sweeps.grid import expand_grid
    from nnlab.sweeps.spec import parse_spec

    assert seen["plain_hashes"] == sorted(p.config_hash for p in expand_grid(parse_spec(BASE)))


def test_every_layer_takes_its_parameters_from_the_table():
    names = [param.name for param in PARAMS]
    assert list(FIELD_CHECKS) == names and set(MODEL_KEYS) | set(TRAIN_KEYS) == set(names)
    fields = [name for name in RunConfig.__dataclass_fields__ if name not in ("data", "seed")]
    assert fields == names
    assert RunConfig().learning_rate == next(p.default for p in PARAMS if p.name == "learning_rate")


def test_a_parameter_that_does_not_apply_leaves_the_hash():
    momentum = next(p for p in PARAMS if p.name == "momentum")
    assert momentum.applies == When("optimizer", ("momentum", "nesterov"))
    sgd = [canonical(RunConfig(optimizer="sgd", momentum=m))["momentum"] for m in (0.5, 0.9)]
    nesterov = canonical(RunConfig(optimizer="nesterov", momentum=0.5))["momentum"]
    assert sgd == [None, None] and nesterov == 0.5
    assert json.dumps(canonical(RunConfig()), sort_keys=True)  # plain JSON, hashable
