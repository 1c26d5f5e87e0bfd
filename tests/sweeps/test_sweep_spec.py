"""Sweep specs: validation with file:line:key messages, grid expansion, dedupe by canonical hash."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnlab.sweeps.config import RunConfig
from nnlab.sweeps.grid import (
    GridPoint,
    canonical,
    check_data,
    config_hash,
    expand_grid,
    from_values,
)
from nnlab.sweeps.spec import SpecError, load_spec, parse_spec

SPEC = textwrap.dedent("""\
    name: gd-variants
    description: batch vs stochastic vs mini-batch on spirals
    data: {name: spirals, n_samples: 600, classes: 3, noise: 0.2, val_fraction: 0.2}
    model: {hidden: [16, 16], loss: cross_entropy}
    train: {epochs: 40, optimizer: sgd}
    grid:
      learning_rate: [0.01, 0.1, 1.0]
      gd: [batch, stochastic, minibatch]
      batch_size: [16, 64]
      activation: [sigmoid, tanh, relu]
    seeds: [0, 1, 2]
""")


def test_the_issue_example_expands_without_duplicates():
    spec = parse_spec(SPEC)
    points = expand_grid(spec)
    # batch and stochastic ignore batch_size: 3 lr × (1 + 1 + 2) gd×bs × 3 activations × 3 seeds
    assert len(points) == 3 * 4 * 3 * 3
    assert len({p.config_hash for p in points}) == len(points)
    batch = [p for p in points if p.config.gd == "batch"]
    assert all(canonical(p.config)["batch_size"] is None for p in batch)
    assert spec.spec_hash.startswith("sha256:") and spec.text == SPEC


def test_seeds_as_a_count_and_number_spellings():
    spec = parse_spec(
        SPEC.replace("seeds: [0, 1, 2]", "seeds: 2").replace(
            "learning_rate: [0.01, 0.1, 1.0]", "learning_rate: [0.1, 1e-1, 0.10]"
        )
    )
    assert spec.seeds == (0, 1)
    assert len(expand_grid(spec)) == 1 * 4 * 3 * 2  # 0.1, 1e-1 and 0.10 are one value


def test_exclude_removes_points():
    spec = parse_spec(
        SPEC + "exclude:\n  - {gd: stochastic}\n  - {gd: minibatch, batch_size: 64}\n"
    )
    gds = {(p.config.gd, p.config.batch_size) for p in expand_grid(spec)}
    assert ("stochastic", 32) not in gds and ("minibatch", 64) not in gds
    assert ("minibatch", 16) in gds


def test_data_parameters_can_be_grid_axes():
    spec = parse_spec(SPEC.replace("seeds: [0, 1, 2]", "seeds: 1") + "")
    text = SPEC.replace("grid:\n", "grid:\n  data.noise: [0.1, 0.3]\n")
    noises = {p.config.data["noise"] for p in expand_grid(parse_spec(text))}
    assert noises == {0.1, 0.3}
    assert len(expand_grid(spec)) == 3 * 4 * 3


def test_max_runs_is_enforced():
    with pytest.raises(SpecError, match="more than 100 runs"):
        expand_grid(parse_spec(SPEC), max_runs=100)


def test_load_spec_from_a_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC)
    assert load_spec(path).name == "gd-variants"
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "learning_rate: [",
            "learning_rat: [",
            r":7: grid.learning_rat: unknown key.*Did you mean 'learning_rate'",
        ),
        (
            "[0.01, 0.1, 1.0]",
            "[0.01, -0.1]",
            r":7: grid.learning_rate\[1\]: learning_rate must be a finite number > 0, got -0.1",
        ),
        (
            "batch_size: [16, 64]",
            "batch_size: [16, 0]",
            r":9: grid.batch_size\[1\]: batch_size must be an integer >= 1, got 0",
        ),
        (
            "batch_size: [16, 64]",
            "batch_size: []",
            r":9: grid.batch_size: must be a non-empty list",
        ),
        (
            "[sigmoid, tanh, relu]",
            "[sigmoid, tahn]",
            r":10: grid.activation\[1\]: unknown activation 'tahn'.*Did you mean 'tanh'",
        ),
        ("gd: [batch,", "gd: [full,", r":8: grid.gd\[0\]: unknown gd 'full'"),
        (
            "optimizer: sgd",
            "optimizer: rmsprop",
            r":5: train.optimizer: unknown optimizer 'rmsprop'",
        ),
        (
            "optimizer: sgd",
            "optimiser: sgd",
            r":5: train.optimiser: unknown key.*Did you mean 'optimizer'",
        ),
        ("name: gd-variants", "nme: gd-variants", r":1: nme: unknown key.*Did you mean 'name'"),
        (
            "seeds: [0, 1, 2]",
            "seeds: 0",
            r":11: seeds: a count of seeds must be in \[1, 100_000\], got 0",
        ),
        (
            "seeds: [0, 1, 2]",
            "seeds: [0, -1]",
            r":11: seeds\[1\]: must be an integer in \[0, 2\*\*32\), got -1",
        ),
        (
            "hidden: [16, 16]",
            "hidden: [16, 0]",
            r":4: model.hidden: hidden width must be an integer >= 1, got 0",
        ),
        (
            "data: {name: spirals",
            "data: {nam: spirals",
            r":3: data.name: must name a synthetic set",
        ),
        (
            "grid:\n",
            "grid: [1, 2]\nfoo:\n",
            r"not valid YAML|foo: unknown key|grid: must be a mapping",
        ),
    ],
)
def test_validation_errors_name_file_line_and_key(old, new, message):
    assert old in SPEC
    with pytest.raises(SpecError, match=message) as error:
        parse_spec(SPEC.replace(old, new, 1), source="sweeps/x.yaml")
    assert str(error.value).startswith("sweeps/x.yaml")


def test_invalid_yaml_names_the_line():
    with pytest.raises(SpecError, match=r"x.yaml:\d+: not valid YAML"):
        parse_spec("name: a\ngrid: {learning_rate: [0.1\n", source="x.yaml")


# --- properties of the canonical hash ------------------------------------------------------------

rates = st.floats(min_value=1e-6, max_value=10, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(lr=rates, batch=st.integers(1, 512), seed=st.integers(0, 2**31))
def test_hash_ignores_parameters_that_do_not_apply(lr, batch, seed):
    a = RunConfig(gd="batch", learning_rate=lr, batch_size=batch, seed=seed, momentum=0.5)
    b = RunConfig(gd="batch", learning_rate=lr, batch_size=None, seed=seed, momentum=0.9)
    assert config_hash(a) == config_hash(b)
    c = RunConfig(gd="minibatch", learning_rate=lr, batch_size=batch, seed=seed)
    d = RunConfig(gd="minibatch", learning_rate=lr, batch_size=batch + 1, seed=seed)
    assert config_hash(c) != config_hash(d)


@settings(max_examples=60, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(["n_samples", "noise", "classes", "seed"]), st.integers(1, 100), min_size=1
    )
)
def test_hash_ignores_key_order(data):
    forward = RunConfig(data={"name": "spirals", **data})
    backward = RunConfig(data=dict(reversed(list({"name": "spirals", **data}.items()))))
    assert config_hash(forward) == config_hash(backward)


@settings(max_examples=40, deadline=None)
@given(
    lrs=st.lists(st.sampled_from([0.001, 0.01, 0.1, 1.0]), min_size=1, max_size=4),
    gds=st.lists(st.sampled_from(["batch", "stochastic", "minibatch"]), min_size=1, max_size=3),
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=3),
    seeds=st.lists(st.integers(0, 5), min_size=1, max_size=3),
)
def test_expansion_has_no_duplicates_and_covers_every_distinct_run(lrs, gds, sizes, seeds):
    text = textwrap.dedent(f"""\
        name: p
        data: {{name: spirals}}
        grid: {{learning_rate: {lrs}, gd: {gds}, batch_size: {sizes}}}
        seeds: {seeds}
    """)
    points = expand_grid(parse_spec(text))
    hashes = [p.config_hash for p in points]
    assert len(hashes) == len(set(hashes))
    distinct = {
        (lr, gd, size if gd == "minibatch" else None, seed)
        for lr in lrs
        for gd in gds
        for size in sizes
        for seed in seeds
    }
    assert len(points) == len(distinct)
    assert all(isinstance(p, GridPoint) and from_values(p.values) == p.config for p in points)


# --- data-level checks, before anything touches a database ---------------------------------------


def test_unknown_data_set_is_located_at_the_data_key():
    spec = parse_spec(SPEC.replace("name: spirals", "name: spiralz"), source="s.yaml")
    with pytest.raises(SpecError, match=r"s.yaml:3: data: unknown dataset 'spiralz'.*Did you mean"):
        check_data(spec, expand_grid(spec))


def test_missing_data_file_is_an_error(tmp_path):
    text = SPEC.replace(
        "{name: spirals, n_samples: 600, classes: 3, noise: 0.2, val_fraction: 0.2}",
        f"{{name: {tmp_path}/gone.csv, target: y}}",
    )
    spec = parse_spec(text, source="s.yaml")
    with pytest.raises(SpecError, match=r"s.yaml:3: data: .*gone.csv"):
        check_data(spec, expand_grid(spec))


def test_batch_size_larger_than_the_training_set():
    spec = parse_spec(
        SPEC.replace("batch_size: [16, 64]", "batch_size: [16, 1000]"), source="s.yaml"
    )
    with pytest.raises(
        SpecError, match=r"s.yaml:9: grid.batch_size: batch_size 1000 is larger than the 480"
    ):
        check_data(spec, expand_grid(spec))


def test_batch_size_auto_passes_the_memory_check():
    # the memory estimate compared "auto" with the number of samples (a TypeError)
    spec = parse_spec(SPEC.replace("batch_size: [16, 64]", "batch_size: [16, auto]"))
    check_data(spec, expand_grid(spec))


def test_a_good_spec_passes_the_data_checks():
    spec = parse_spec(SPEC)
    check_data(spec, expand_grid(spec))


ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_spec_is_valid(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # specs name their files relative to the repository root
    spec = load_spec(path)
    points = expand_grid(spec)
    check_data(spec, points)
    assert points


def test_patience_without_validation_data_is_refused_before_running():
    text = SPEC.replace("val_fraction: 0.2", "val_fraction: 0").replace(
        "train: {epochs: 40, optimizer: sgd}", "train: {epochs: 40, optimizer: sgd, patience: 3}"
    )
    spec = parse_spec(text, source="s.yaml")
    with pytest.raises(
        SpecError, match=r"s.yaml:5: train.patience: early stopping needs validation"
    ):
        check_data(spec, expand_grid(spec))


def test_hash_ignores_data_spellings_and_explicit_defaults():
    plain = RunConfig(data={"name": "spirals", "noise": 1})
    spelled = RunConfig(data={"name": "spirals", "noise": 1.0, "val_fraction": 0.2, "seed": 0})
    assert config_hash(plain) == config_hash(spelled)
    assert config_hash(RunConfig(min_delta=0.5)) == config_hash(RunConfig(min_delta=0.0))
    assert config_hash(RunConfig(patience=3, min_delta=0.5)) != config_hash(
        RunConfig(patience=3, min_delta=0.0)
    )


def test_exclude_rules_see_the_defaults_a_spec_leaves_out():
    # optimizer is neither a grid axis nor set in the spec: it is the default, sgd
    text = SPEC.replace("train: {epochs: 40, optimizer: sgd}", "train: {epochs: 40}")
    spec = parse_spec(text + "exclude:\n  - {optimizer: sgd, learning_rate: 1.0}\n")
    assert {p.config.learning_rate for p in expand_grid(spec)} == {0.01, 0.1}


def test_axis_values_blank_what_does_not_apply():
    from nnlab.sweeps.grid import axis_values

    batch = RunConfig(gd="batch", batch_size=16, data={"name": "spirals", "noise": 0.3})
    assert axis_values(batch, ["gd", "batch_size", "data.noise"]) == ["batch", None, 0.3]
    mini = RunConfig(gd="minibatch", batch_size=16)
    assert axis_values(mini, ["batch_size"]) == [16]


def test_axis_values_of_a_setting_at_its_default():
    # the hash leaves out round-2 settings at their defaults; the plan still shows them
    from nnlab.sweeps.grid import axis_values

    config = RunConfig(learning_rate_schedule="constant", init="auto")
    assert axis_values(config, ["learning_rate_schedule", "init"]) == ["constant", "auto"]


def test_a_loss_that_does_not_fit_the_output_is_refused_before_running():
    text = SPEC.replace(
        "activation: [sigmoid, tanh, relu]",
        "activation: [sigmoid, tanh, relu]\n  output: [softmax, identity]",
    )
    spec = parse_spec(text, source="s.yaml")
    with pytest.raises(
        SpecError,
        match=r"s.yaml:\d+: grid.output: loss 'cross_entropy' does not "
        r"fit output activation 'identity'; cross_entropy needs output softmax",
    ):
        check_data(spec, expand_grid(spec))


def test_the_spec_hash_covers_what_trains_not_how_it_is_written():
    spec = parse_spec(SPEC)
    relaid = parse_spec(
        "# a comment\n"
        + SPEC.replace("0.01", "1e-2").replace(
            "description: batch vs stochastic vs mini-batch on spirals", "description: other words"
        )
    )
    assert relaid.spec_hash == spec.spec_hash
    assert parse_spec(SPEC.replace("seeds: [0, 1, 2]", "seeds: [0, 1]")).spec_hash != spec.spec_hash
