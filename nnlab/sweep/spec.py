"""Sweep specs: a YAML file that names a grid. Parsing and validation happen here, before
anything touches a database; every error names the key path and the file's line.

    name: gd-variants
    description: batch vs stochastic vs mini-batch on spirals
    data: {name: spirals, n_samples: 600, classes: 3, noise: 0.2, val_fraction: 0.2}
    model: {hidden: [16, 16], loss: cross_entropy}
    train: {epochs: 40, optimizer: sgd}
    grid:
      learning_rate: [0.01, 0.1, 1.0]
      gd: [batch, stochastic, minibatch]
      batch_size: [16, 64]
    seeds: [0, 1, 2]          # or a count: seeds: 3
    exclude:                  # optional partial configurations to leave out
      - {gd: stochastic, learning_rate: 1.0}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from nnlab.checks import InputError, check_choice, check_int, check_number, did_you_mean, quoted
from nnlab.engine import GD_VARIANTS, HIDDEN_ACTIVATIONS, LOSS_NAMES, OPTIMIZERS
from nnlab.engine.mlp import DTYPES
from nnlab.sweep.run import RunConfig

TOP_LEVEL = ("name", "description", "data", "model", "train", "grid", "seeds", "exclude")
MODEL_KEYS = ("hidden", "activation", "output", "loss", "dtype")
RUN_KEYS = tuple(f.name for f in fields(RunConfig) if f.name not in ("data", "seed"))
TRAIN_KEYS = tuple(key for key in RUN_KEYS if key not in MODEL_KEYS)
DATA_PREFIX = "data."


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as text; a grid of learning rates means it as a number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class SpecError(InputError):
    """A mistake in a sweep spec; the message starts with ``file:line: key.path:``."""


def _hidden(name: str, value: object) -> tuple[int, ...]:
    widths = [value] if isinstance(value, int) else value
    if not isinstance(widths, list | tuple):
        raise InputError(f"{name} must be a list of layer widths like [16, 16], got {value!r}")
    return tuple(check_int(f"{name} width", width, 1) for width in widths)


def _optional(check):
    return lambda name, value: None if value is None else check(name, value)


# One check per run parameter, each returning the value in canonical form.
FIELD_CHECKS = {
    "hidden": _hidden,
    "activation": lambda n, v: check_choice(n, v, HIDDEN_ACTIVATIONS),
    "output": _optional(lambda n, v: check_choice(n, v, ("softmax", "sigmoid", "identity"))),
    "loss": _optional(lambda n, v: check_choice(n, v, LOSS_NAMES)),
    "dtype": lambda n, v: check_choice(n, v, DTYPES),
    "gd": lambda n, v: check_choice(n, v, GD_VARIANTS),
    "batch_size": _optional(lambda n, v: check_int(n, v, 1)),
    "learning_rate": lambda n, v: check_number(n, v, above=0),
    "optimizer": lambda n, v: check_choice(n, v, OPTIMIZERS),
    "momentum": lambda n, v: check_number(n, v, at_least=0, below=1),
    "beta1": lambda n, v: check_number(n, v, at_least=0, below=1),
    "beta2": lambda n, v: check_number(n, v, at_least=0, below=1),
    "epsilon": lambda n, v: check_number(n, v, above=0),
    "epochs": lambda n, v: check_int(n, v, 1),
    "patience": _optional(lambda n, v: check_int(n, v, 1)),
    "min_delta": lambda n, v: check_number(n, v, at_least=0),
    "tol": _optional(lambda n, v: check_number(n, v, at_least=0)),
    "divergence_factor": _optional(lambda n, v: check_number(n, v, above=1)),
}
assert set(FIELD_CHECKS) == set(RUN_KEYS), "every RunConfig field needs a check"


@dataclass(frozen=True)
class SweepSpec:
    """A validated spec: the fixed settings, the grid axes and the seeds."""

    name: str
    description: str
    data: Mapping
    base: Mapping  # model and train settings shared by every run
    grid: Mapping  # key -> tuple of values; data parameters as "data.<param>"
    seeds: tuple[int, ...]
    exclude: tuple[Mapping, ...]
    text: str  # the spec as written, stored with the sweep
    source: str = "<spec>"
    lines: Mapping = field(default_factory=dict, compare=False, repr=False)

    @property
    def spec_hash(self) -> str:
        """A hash of what the spec trains: its data, settings, grid, seeds and exclusions as
        parsed (so ``0.1`` and ``1e-1`` agree). The description, comments and layout of the file
        do not count: editing them does not stop a sweep from resuming."""
        trained = {"data": self.data, "base": self.base, "grid": self.grid, "seeds": self.seeds,
                   "exclude": self.exclude}  # fmt: skip
        canonical = json.dumps(trained, sort_keys=True, separators=(",", ":"), default=_plain)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def text_hash(self) -> str:
        """The hash of the file's text, which nnlab 0.1 stored as the spec hash: a sweep
        registered so still resumes."""
        return "sha256:" + hashlib.sha256(self.text.encode()).hexdigest()

    def error(self, path: tuple, message: str) -> SpecError:
        """A SpecError for the key at ``path``, located at its line in the file."""
        return _Validator(self.source, self.lines).fail(path, message)


def _plain(value: object) -> object:
    return dict(value) if isinstance(value, Mapping) else list(value)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate the spec at ``path``; raise ``SpecError`` naming file, line and key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(f"{path}: cannot read the spec: {error.strerror}") from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "<spec>") -> SweepSpec:
    try:
        document = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
        lines = _key_lines(yaml.compose(text, Loader=_Loader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise SpecError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from None
    return _Validator(source, lines).spec(document, text)


def _is_data_key(key: object) -> bool:
    return isinstance(key, str) and key.startswith(DATA_PREFIX)


def _key_lines(node, path: tuple = ()) -> dict[tuple, int]:
    """1-based line of every key path in the YAML node tree."""
    lines = {path: node.start_mark.line + 1} if node is not None else {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(*path, key.value)] = key.start_mark.line + 1
            lines.update({k: v for k, v in _key_lines(value, (*path, key.value)).items()
                          if k != (*path, key.value)})  # fmt: skip
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_key_lines(item, (*path, index)))
    return lines


class _Validator:
    def __init__(self, source: str, lines: dict[tuple, int]) -> None:
        self.source, self.lines = source, lines

    def fail(self, path: tuple, message: str) -> SpecError:
        line = next((self.lines[path[:i]] for i in range(len(path), -1, -1)
                     if path[:i] in self.lines), None)  # fmt: skip
        where = f"{self.source}:{line}" if line else self.source
        key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        return SpecError(f"{where}: {key or 'spec'}: {message}")

    def mapping(self, path: tuple, value: object, allowed: tuple[str, ...] | None) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping of keys to values, got {value!r}")
        for key in value:
            if allowed is not None and key not in allowed:
                hint = did_you_mean(key, allowed)
                raise self.fail(
                    (*path, key), f"unknown key; expected one of {quoted(allowed)}{hint}"
                )
        return value

    def field(self, path: tuple, key: str, value: object):
        try:
            return FIELD_CHECKS[key](key, value)
        except InputError as error:
            raise self.fail(path, str(error)) from None

    def spec(self, document: object, text: str) -> SweepSpec:
        spec = self.mapping((), document, TOP_LEVEL)
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise self.fail(
                ("name",), f"must be a non-empty name of up to 200 characters, got {name!r}"
            )
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise self.fail(("description",), f"must be text, got {description!r}")
        data = self.data(spec.get("data"))
        base = self.settings("model", spec.get("model", {}), MODEL_KEYS)
        base |= self.settings("train", spec.get("train", {}), TRAIN_KEYS)
        grid = self.grid(spec.get("grid", {}))
        return SweepSpec(
            name=name.strip(), description=description, data=data, base=base, grid=grid,
            seeds=self.seeds(spec.get("seeds", [0])), exclude=self.exclude(spec.get("exclude", [])),
            text=text, source=self.source, lines=self.lines,
        )  # fmt: skip

    def settings(self, section: str, value: object, allowed: tuple[str, ...]) -> dict:
        entries = self.mapping((section,), value, allowed)
        return {key: self.field((section, key), key, v) for key, v in entries.items()}

    def data(self, value: object) -> dict:
        if value is None:
            raise self.fail(("data",), "missing: name a data set, e.g. {name: spirals}")
        data = dict(self.mapping(("data",), value, None))
        if not isinstance(data.get("name"), str):
            raise self.fail(("data", "name"), "must name a synthetic set or a .csv/.npz file")
        return data

    def grid(self, value: object) -> dict:
        data_keys = [k for k in value if _is_data_key(k)] if isinstance(value, dict) else []
        allowed = (*RUN_KEYS, *data_keys)
        grid = {}
        for key, values in self.mapping(("grid",), value, allowed).items():
            if not isinstance(values, list) or not values:
                raise self.fail(
                    ("grid", key), f"must be a non-empty list of values, got {values!r}"
                )
            if key == f"{DATA_PREFIX}name" and not all(isinstance(v, str) for v in values):
                raise self.fail(("grid", key), f"must list data set names or paths, got {values!r}")
            if key.startswith(DATA_PREFIX):
                grid[key] = tuple(values)
            else:
                grid[key] = tuple(
                    self.field(("grid", key, i), key, v) for i, v in enumerate(values)
                )
        return grid

    def seeds(self, value: object) -> tuple[int, ...]:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise self.fail(("seeds",), f"a count of seeds must be >= 1, got {value}")
            return tuple(range(value))
        if not isinstance(value, list) or not value:
            raise self.fail(
                ("seeds",), f"must be a count or a non-empty list of integers, got {value!r}"
            )
        for i, seed in enumerate(value):
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise self.fail(("seeds", i), f"must be an integer >= 0, got {seed!r}")
        return tuple(dict.fromkeys(value))

    def exclude(self, value: object) -> tuple[dict, ...]:
        if not isinstance(value, list):
            raise self.fail(
                ("exclude",), f"must be a list of partial configurations, got {value!r}"
            )
        allowed = (*RUN_KEYS, *(k for k in self._grid_keys()))
        excluded = []
        for i, item in enumerate(value):
            point = self.mapping(("exclude", i), item, allowed)
            excluded.append({
                k: v if _is_data_key(k) else self.field(("exclude", i, k), k, v)
                for k, v in point.items()
            })  # fmt: skip
        return tuple(excluded)

    def _grid_keys(self) -> list[str]:
        return [path[1] for path in self.lines if len(path) == 2 and path[0] == "grid"]
