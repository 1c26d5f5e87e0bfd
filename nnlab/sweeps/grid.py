"""Expanding a spec's grid into runs, each identified by a canonical configuration hash.

The hash ignores key order and number spelling (``0.1`` and ``1e-1`` are one value), and
parameters that mean nothing for a run are dropped before hashing (``batch_size`` outside
mini-batch GD, ``momentum`` outside momentum/nesterov, ...: each ``Param``'s ``applies``).
So a grid never yields two runs that would train the same way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace

from nnlab.checks import InputError
from nnlab.engine.losses import check_loss_output
from nnlab.engine.training import AUTO_BATCH_SIZE, check_schedule
from nnlab.params import AUTO_BATCH, PARAMS
from nnlab.sweeps.budget import DataShape, describe, estimate, worker_budget
from nnlab.sweeps.config import DATA_DEFAULTS, RunConfig, prepare_data
from nnlab.sweeps.spec import DATA_PREFIX, SweepSpec

DEFAULT_MAX_RUNS = 10_000
# Combinations visited per run allowed: a grid collapses when parameters do not apply (batch_size
# outside mini-batch) or are excluded, but expanding it costs its raw product all the same.
RAW_PER_RUN = 10


@dataclass(frozen=True)
class GridPoint:
    """One run of a sweep: its configuration and the hash that names it within the sweep."""

    config: RunConfig
    config_hash: str

    @property
    def values(self) -> dict:
        """The whole configuration as plain JSON-ready values (the runs table's ``config``)."""
        return as_values(self.config)


def as_trained(config: RunConfig) -> RunConfig:
    """``config`` with the batch size its run trains with: None (every sample) for batch GD,
    1 for stochastic GD, so that what is stored says what happened."""
    sizes = {"batch": None, "stochastic": 1}
    return replace(config, batch_size=sizes[config.gd]) if config.gd in sizes else config


def as_values(config: RunConfig) -> dict:
    """The configuration as stored (``runs.config``), plain JSON-ready values."""
    values = asdict(config)
    values["hidden"] = list(values["hidden"])
    values["data"] = dict(sorted(values["data"].items()))
    return values


def from_values(values: dict) -> RunConfig:
    """The RunConfig stored as ``values`` (see ``as_values``)."""
    return RunConfig(**{**values, "hidden": tuple(values["hidden"])})


def _number(value):
    """1 and 1.0 hash alike; True stays a boolean."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical(config: RunConfig) -> dict:
    """The configuration as hashed: parameters that do not apply to it set to None (see
    ``Param.applies``), data defaults filled in, whole floats written as integers; a parameter
    added since nnlab 0.1 only when it is away from its default."""
    values = as_values(config)
    data = {**DATA_DEFAULTS, **values["data"]}
    values["data"] = {key: _number(value) for key, value in sorted(data.items())}
    settings = dict(values)
    for param in PARAMS:
        if not param.applies_to(settings):
            values[param.name] = None
        if not param.hashed_at_default and settings[param.name] == param.default:
            del values[param.name]
    return values


def axis_values(config: RunConfig, axes: list[str]) -> list:
    """The run's value on each grid axis; None where that parameter does not apply to it."""
    settings = as_values(config)
    # not canonical(): it leaves out the parameters at their defaults that the hash omits
    applies = {param.name: param.applies_to(settings) for param in PARAMS}
    return [
        config.data.get(axis[len(DATA_PREFIX) :])
        if axis.startswith(DATA_PREFIX)
        else (settings[axis] if applies[axis] else None)
        for axis in axes
    ]


def config_hash(config: RunConfig) -> str:
    text = json.dumps(canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def expand_grid(spec: SweepSpec, max_runs: int = DEFAULT_MAX_RUNS) -> list[GridPoint]:
    """Every distinct run of the spec, in grid order, seeds innermost. A grid of more than
    ``max_runs`` runs, or whose raw product is over ``RAW_PER_RUN`` times that, is refused
    before it is expanded; one that its exclusions empty is refused too."""
    raw = math.prod(len(values) for values in spec.grid.values()) * len(spec.seeds)
    if raw > RAW_PER_RUN * max_runs:
        raise spec.error(
            ("grid",),
            f"the grid has {raw:_} combinations of values and seeds before parameters that do "
            f"not apply are dropped, more than {RAW_PER_RUN} times --max-runs {max_runs}; "
            "narrow it, or raise --max-runs if you mean it",
        )
    points: dict[str, GridPoint] = {}
    for config in _configs(spec):
        points.setdefault(config_hash(config), GridPoint(config, config_hash(config)))
        if len(points) > max_runs:
            raise spec.error(
                ("grid",),
                f"the grid has more than {max_runs} runs; narrow it, or raise --max-runs if "
                "you mean it",
            )
    if not points:
        raise spec.error(("exclude",), "excludes every run of the grid; nothing would train")
    return list(points.values())


def check_data(spec: SweepSpec, points: list[GridPoint], workers: int = 1) -> list[GridPoint]:
    """Load every data set the grid names (a missing file, an unknown data set or bad data is a
    SpecError) and check mini-batch sizes against the training set they will see, and each
    run's memory against the share of ``workers`` runs training at once (a synthetic set's
    before it is generated). Returns the points with ``batch_size: auto`` as the number it is
    for their training set (their hashes, the spec's, unchanged)."""
    shapes: dict[str, DataShape] = {}
    validation: dict[str, int] = {}
    tasks: dict[str, str] = {}
    budget = worker_budget(workers)
    checked = []
    for point in points:
        config = point.config
        key = json.dumps(dict(config.data), sort_keys=True)
        if key not in shapes:
            expected = DataShape.of_synthetic(dict(config.data))
            if expected is not None:
                _check_memory(spec, config, expected, budget, workers)
            shapes[key], validation[key], tasks[key] = _prepared_shape(spec, config)
        size = shapes[key].n_samples
        if config.batch_size == AUTO_BATCH:
            config = replace(config, batch_size=min(AUTO_BATCH_SIZE, size))
            point = GridPoint(config, point.config_hash)
        _check_memory(spec, config, shapes[key], budget, workers)
        if config.loss is not None and config.output is not None:
            try:
                check_loss_output(config.loss, config.output)
            except InputError as error:
                raise spec.error(_setting_path(spec, "output", "model"), str(error)) from None
        if config.patience is not None and not validation[key]:
            raise spec.error(
                ("train", "patience"),
                "early stopping needs validation data: set data.val_fraction above 0",
            )
        _check_schedule(spec, config)
        _check_scheduler_metric(spec, config, validation[key], tasks[key])
        if config.gd == "minibatch" and config.batch_size and config.batch_size > size:
            raise spec.error(
                _setting_path(spec, "batch_size", "train"),
                f"batch_size {config.batch_size} is larger than the {size} training samples "
                f"of {config.data.get('name')!r}",
            )
        checked.append(point)
    return checked


def _check_scheduler_metric(spec: SweepSpec, config: RunConfig, validation: int, task: str):
    """A scheduler ranks by a metric every run records: with none, every configuration would
    score the worst and be pruned at the first rung."""
    metric = (spec.scheduler or {}).get("metric")
    if metric is None:
        return
    name = config.data.get("name")
    if metric.endswith("_accuracy") and task != "classification":
        raise spec.error(
            ("scheduler", "metric"),
            f"{metric} is not recorded for {name!r}, a {task} set: rank by a loss",
        )
    if metric.startswith("val_") and not validation:
        raise spec.error(
            ("scheduler", "metric"),
            f"{metric} needs validation data, and {name!r} holds out no sample: rank by "
            "train_loss, or hold out more data",
        )


def _check_schedule(spec: SweepSpec, config: RunConfig) -> None:
    """The learning-rate schedule's settings together (the engine's own check)."""
    try:
        check_schedule(
            config.learning_rate_schedule,
            config.learning_rate,
            config.power_t,
            config.gamma,
            config.step_size,
            config.min_learning_rate,
            config.tol,
        )
    except InputError as error:
        path = _setting_path(spec, "learning_rate_schedule", "train")
        raise spec.error(path, str(error)) from None


def _prepared_shape(spec: SweepSpec, config: RunConfig) -> tuple[DataShape, int, str]:
    """The shape of the run's training set, its number of validation samples, and its
    task."""
    try:
        train_data, val_data, _ = prepare_data(config.data)
    except InputError as error:
        raise spec.error(("data",), str(error)) from None
    shape = DataShape(train_data.n_samples, train_data.n_features, train_data.n_outputs)
    return shape, val_data.n_samples, train_data.task


def _check_memory(spec, config: RunConfig, shape: DataShape, budget: int, workers: int) -> None:
    """Refuse a run that cannot fit, naming what makes it big: the layers or the data."""
    need = estimate(config, shape)
    if need.total > budget:
        path = (
            _setting_path(spec, "hidden", "model")
            if need.network >= need.data
            else _data_path(spec, "n_samples")
        )
        raise spec.error(path, describe(need, budget, workers))


def _data_path(spec: SweepSpec, param: str) -> tuple[str, ...]:
    """Where a data parameter was written: its grid axis, the data section, or that section."""
    if f"data.{param}" in spec.grid:
        return ("grid", f"data.{param}")
    return ("data", param) if param in spec.data else ("data",)


def _setting_path(spec: SweepSpec, key: str, section: str) -> tuple[str, str]:
    """Where a setting was written: its grid axis, or else its section."""
    return ("grid", key) if key in spec.grid else (section, key)


def _configs(spec: SweepSpec) -> Iterator[RunConfig]:
    keys = list(spec.grid)
    for combo in itertools.product(*spec.grid.values()):
        point = dict(zip(keys, combo, strict=True))
        if any(_matches(point, spec.base, rule) for rule in spec.exclude):
            continue
        settings = {
            **spec.base,
            **{k: v for k, v in point.items() if not k.startswith(DATA_PREFIX)},
        }
        data = {
            **spec.data,
            **{k[len(DATA_PREFIX) :]: v for k, v in point.items() if k.startswith(DATA_PREFIX)},
        }
        for seed in spec.seeds:
            yield as_trained(RunConfig(data=data, seed=seed, **settings))


# what a run gets for the settings a spec leaves out
RUN_DEFAULTS = {param.name: param.default for param in PARAMS}


def _matches(point: Mapping, base: Mapping, rule: Mapping) -> bool:
    """Whether a grid point, with the fixed settings and the defaults, has every value the
    rule names."""
    merged = {**RUN_DEFAULTS, **base, **point}
    return all(key in merged and merged[key] == value for key, value in rule.items())
