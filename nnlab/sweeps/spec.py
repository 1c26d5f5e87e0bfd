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
import math
import os
import re
import reprlib
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nnlab.checks import InputError, did_you_mean, quoted
from nnlab.data.synthetic import MAX_CLASSES, MAX_FEATURES, MAX_SAMPLES
from nnlab.params import MAX_EPOCHS, PARAMS, by_name, count, number
from nnlab.store.rungs import SCHEDULERS

TOP_LEVEL = (
    "name",
    "description",
    "data",
    "model",
    "train",
    "grid",
    "seeds",
    "exclude",
    "scheduler",
)
SCHEDULER_KEYS = ("type", "metric", "min_epochs", "eta")
SCHEDULER_METRICS = ("val_loss", "train_loss", "val_accuracy", "train_accuracy")
MAX_ETA = 1_000
RUN_KEYS = tuple(param.name for param in PARAMS)
MODEL_KEYS = tuple(param.name for param in PARAMS if param.section == "model")
TRAIN_KEYS = tuple(param.name for param in PARAMS if param.section == "train")
EPOCHS_DEFAULT = by_name()["epochs"].default
DEFAULT_VAL_FRACTION = 0.2  # nnlab.sweeps.config.DATA_DEFAULTS's, which imports the engine
DATA_PREFIX = "data."


# A spec is a small hand-written file: these ceilings refuse anything else before it is built.
MAX_SPEC_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 50  # nesting of lists and mappings; a real spec nests 4 deep
MAX_NODES = 10_000  # YAML values; parsing 10,000 takes a fraction of a second, 500,000 take 16 s
MAX_TEXT = 10_000  # characters in one string
MAX_INT_DIGITS = 40  # characters in an integer (Python refuses to parse 4,300 digits)
SEED_LIMIT = 2**32  # seeds are below this (NumPy's legacy seeds; a database's 64-bit integer)
MAX_SEEDS = 100_000  # a count of seeds; --max-runs bounds the runs anyway

# Only these tags build values: JSON's types. !!binary, !!timestamp, !!set, !!python/... refused.
JSON_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")
) | {"!"}
# What may not appear in a string a terminal will show: C0/C1 controls, DEL, and the bidi
# marks and overrides that make text display in an order other than it is stored.
UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class _Refused(yaml.YAMLError):
    """Raised while composing: the key path and line of what the spec may not contain."""

    def __init__(self, path: tuple, line: int, message: str) -> None:
        super().__init__(message)
        self.path, self.line, self.message = path, line, message


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as text; a grid of learning rates means it as a number.

    The composer refuses, before anything is built from them: aliases (a kilobyte of nested
    aliases, "billion laughs", expands to gigabytes), tags of other than JSON's types, nesting
    deeper than ``MAX_DEPTH`` (it recurses) and more than ``MAX_NODES`` values. Dates, ``<<``
    merges and ``=`` stay plain text.
    """

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.path: list = []  # key path of the node being composed
        self.nodes = 0

    def compose_node(self, parent, index):
        event, part = self.peek_event(), _path_part(index)
        where = ((*self.path, part)[1:], event.start_mark.line + 1)  # [0]: the document's
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(*where, f"aliases (*{event.anchor}) are not supported; write it out")
        if (problem := self._problem(event)) is not None:
            raise _Refused(*where, problem)
        self.nodes += 1
        self.path.append(part)
        try:
            return super().compose_node(parent, index)
        finally:
            self.path.pop()

    def _problem(self, event) -> str | None:
        """Why the value starting at ``event`` may not be composed, or None."""
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in JSON_TAGS:
            tag = tag.replace("tag:yaml.org,2002:", "!!")
            return f"tag {tag} is not supported: a spec holds only JSON values"
        if self.nodes >= MAX_NODES or len(self.path) > MAX_DEPTH:
            return f"a spec may hold up to {MAX_NODES} values nested up to {MAX_DEPTH} deep"
        long = isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_INT_DIGITS
        if long and self.resolve(yaml.ScalarNode, event.value, event.implicit).endswith(":int"):
            return f"an integer of {len(event.value)} characters is too long"
        return None


def _path_part(index) -> object:
    """The key path entry of a node: its key, its index, or ``?`` for a key itself."""
    if isinstance(index, yaml.ScalarNode):
        return index.value
    return index if isinstance(index, int) else "?"


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in JSON_TAGS]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_shown = reprlib.Repr()  # values in messages: long lists and strings abbreviated
_shown.maxstring = _shown.maxother = 80
_shown.maxlist = _shown.maxdict = 8


class SpecError(InputError):
    """A mistake in a sweep spec; the message starts with ``file:line: key.path:``."""


# One check per run parameter, each returning the value in canonical form: from the table.
FIELD_CHECKS = {param.name: param.check for param in PARAMS}


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{name} must be non-empty text, got {_shown.repr(value)}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {_shown.repr(value)}")
    return value


# Checks of the data parameters nnlab knows, run on the spec before any data is generated (the
# generators check their own ranges again). Others must still be JSON scalars.
DATA_CHECKS = {
    "name": _text,
    "target": _text,
    "task": _text,
    "n_samples": count(1, MAX_SAMPLES),
    "classes": count(2, MAX_CLASSES),
    "n_features": count(1, MAX_FEATURES),
    "noise": number(at_least=0),
    "factor": number(above=0, below=1),
    "seed": count(0, SEED_LIMIT - 1),
    "val_fraction": number(at_least=0, below=1),
    "standardize": _flag,
}


def _data_value(name: str, value: object) -> object:
    """A data parameter: checked if nnlab knows it, else any JSON scalar (the loader names
    parameters it does not take). Whole numbers stay integers: 1.0 is not a sample count."""
    if name in DATA_CHECKS:
        checked = DATA_CHECKS[name](name, value)
        return value if isinstance(value, int) and isinstance(checked, float) else checked
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if value is not None and not isinstance(value, str | int | float):
        raise InputError(
            f"{name} must be text, a number, true/false or null, got {_shown.repr(value)}"
        )
    return value


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
    # type (sha, asha, hyperband), metric, min_epochs, eta; None: every run trains in full
    scheduler: Mapping | None = None
    lines: Mapping = field(default_factory=dict, compare=False, repr=False)

    @property
    def spec_hash(self) -> str:
        """A hash of what the spec trains: its data, settings, grid, seeds and exclusions as
        parsed (so ``0.1`` and ``1e-1`` agree). The description, comments and layout of the file
        do not count: editing them does not stop a sweep from resuming."""
        trained = {
            "data": self.data,
            "base": self.base,
            "grid": self.grid,
            "seeds": self.seeds,
            "exclude": self.exclude,
        }
        if self.scheduler is not None:  # so that a spec without one keeps its hash
            trained["scheduler"] = self.scheduler
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
    return parse_spec(_read_text(Path(path)), source=str(path))


def _read_text(path: Path) -> str:
    """The text of a regular file of up to ``MAX_SPEC_BYTES`` bytes of UTF-8. Opened without
    blocking and checked before reading: a FIFO, a device (/dev/zero) or a directory is
    refused, not waited on or read forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise SpecError(f"{path}: cannot read the spec: {error.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecError(f"{path}: cannot read the spec: not a regular file")
        data = os.read(fd, MAX_SPEC_BYTES + 1)  # a regular file gives all it has at once
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: the spec is larger than {MAX_SPEC_BYTES:_} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        utf16 = " (it looks like UTF-16)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise SpecError(
            f"{path}:{line}: the spec is not UTF-8 text (byte 0x{data[error.start]:02x} at "
            f"offset {error.start}){utf16}; save it as UTF-8"
        ) from None


def parse_spec(text: str, source: str = "<spec>") -> SweepSpec:
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"{source}: the spec is longer than {MAX_SPEC_BYTES:_} characters")
    try:
        document, lines = _compose(text)
    except _Refused as error:
        raise _Validator(source, {error.path: error.line}).fail(error.path, error.message) from None
    except yaml.YAMLError as error:
        raise SpecError(f"{source}{_yaml_problem(error, text)}") from None
    validator = _Validator(source, lines)
    validator.safe_text((), document)
    return validator.spec(document, text)


def _compose(text: str) -> tuple[object, dict[tuple, int]]:
    """The document, and the line of each key path."""
    loader = _Loader(text)  # a SafeLoader subclass; it checks the characters here
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
        return document, _key_lines(node)
    finally:
        loader.dispose()


def _yaml_problem(error: yaml.YAMLError, text: str) -> str:
    """``:line: not valid YAML: problem``, on one line."""
    if isinstance(error, yaml.reader.ReaderError):
        line = text[: error.position].count("\n") + 1
        problem = f"character #x{error.character:04x} is not allowed"
    else:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(error, "problem", None) or str(error)
    where = f":{line}" if line else ""
    return f"{where}: not valid YAML: {' '.join(str(problem).split())}"


def _is_data_key(key: object) -> bool:
    return isinstance(key, str) and key.startswith(DATA_PREFIX)


def _key_lines(node, path: tuple = ()) -> dict[tuple, int]:
    """1-based line of every key path in the YAML node tree; a key written twice in one
    mapping (YAML would keep the last silently) is refused."""
    lines = {path: node.start_mark.line + 1} if node is not None else {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            line = key.start_mark.line + 1
            if not isinstance(key, yaml.ScalarNode):
                raise _Refused(path, line, "keys must be text or numbers, not lists or mappings")
            if (*path, key.value) in lines:
                first = lines[(*path, key.value)]
                raise _Refused((*path, key.value), line, f"duplicate key: lines {first} and {line}")
            lines[(*path, key.value)] = line
            lines.update(
                {
                    k: v
                    for k, v in _key_lines(value, (*path, key.value)).items()
                    if k != (*path, key.value)
                }
            )
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_key_lines(item, (*path, index)))
    return lines


def _key_path(path: tuple) -> str:
    """``grid.learning_rate[1]``; a key that is not plain printable text is shown quoted."""
    parts = [
        f"[{p}]"
        if isinstance(p, int)
        else f".{p}"
        if isinstance(p, str) and p.isprintable() and len(p) <= 80
        else f".{_shown.repr(p)}"
        for p in path
    ]
    shown = parts if len(parts) <= 8 else [*parts[:8], "..."]  # a path 50 deep is not read
    return "".join(shown).removeprefix(".")


def _unsafe(text: str, path: tuple) -> str | None:
    """Why ``text`` may not be in a spec, or None."""
    if len(text) > MAX_TEXT:
        return f"is longer than {MAX_TEXT:_} characters"
    bad = UNSAFE_TEXT.search(
        text.replace("\n", "").replace("\t", "") if path == ("description",) else text
    )
    return f"contains the control character U+{ord(bad.group()):04X}" if bad else None


class _Validator:
    def __init__(self, source: str, lines: dict[tuple, int]) -> None:
        self.source, self.lines = source, lines

    def fail(self, path: tuple, message: str) -> SpecError:
        line = next(
            (self.lines[path[:i]] for i in range(len(path), -1, -1) if path[:i] in self.lines), None
        )
        where = f"{self.source}:{line}" if line else self.source
        return SpecError(f"{where}: {_key_path(path) or 'spec'}: {message}")

    def safe_text(self, path: tuple, value: object) -> None:
        """Refuse strings, keys included, that are too long or hold what a terminal would
        act on (controls, bidi overrides): names and values are printed. Only a description
        may span lines."""
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and (reason := _unsafe(key, ())):
                    raise self.fail(path, f"key {_shown.repr(key)} {reason}")
                self.safe_text((*path, key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.safe_text((*path, index), item)
        elif isinstance(value, str) and (reason := _unsafe(value, path)):
            raise self.fail(path, f"{_shown.repr(value)} {reason}")

    def mapping(self, path: tuple, value: object, allowed: tuple[str, ...] | None) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping of keys to values, got {_shown.repr(value)}")
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
                ("name",),
                f"must be a non-empty name of up to 200 characters, got {_shown.repr(name)}",
            )
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise self.fail(("description",), f"must be text, got {_shown.repr(description)}")
        data = self.data(spec.get("data"))
        base = self.settings("model", spec.get("model", {}), MODEL_KEYS)
        base |= self.settings("train", spec.get("train", {}), TRAIN_KEYS)
        grid = self.grid(spec.get("grid", {}))
        return SweepSpec(
            name=name.strip(),
            description=description,
            data=data,
            base=base,
            grid=grid,
            seeds=self.seeds(spec.get("seeds", [0])),
            exclude=self.exclude(spec.get("exclude", [])),
            text=text,
            source=self.source,
            scheduler=self.scheduler(spec.get("scheduler"), data, base, grid),
            lines=self.lines,
        )

    def scheduler(self, value: object, data: dict, base: dict, grid: dict) -> dict | None:
        """``scheduler: {type: sha, metric: val_loss, min_epochs: 1, eta: 3}``, checked
        against the runs it would stop: one ``train.epochs`` for all, above ``min_epochs``,
        and a metric every run records."""
        if value is None:
            return None
        entries = self.mapping(("scheduler",), value, SCHEDULER_KEYS)
        kind = entries.get("type")
        if kind not in SCHEDULERS:
            raise self.fail(
                ("scheduler", "type"),
                f"must be one of {quoted(SCHEDULERS)}, got {_shown.repr(kind)}"
                + did_you_mean(str(kind), SCHEDULERS),
            )
        validated = data.get("val_fraction", DEFAULT_VAL_FRACTION) > 0 and all(
            v > 0 for v in grid.get(f"{DATA_PREFIX}val_fraction", (1,))
        )
        metric = entries.get("metric", "val_loss" if validated else "train_loss")
        if metric not in SCHEDULER_METRICS:
            raise self.fail(
                ("scheduler", "metric"),
                f"must be one of {quoted(SCHEDULER_METRICS)}, got {_shown.repr(metric)}"
                + did_you_mean(str(metric), SCHEDULER_METRICS),
            )
        if metric.startswith("val_") and not validated:
            raise self.fail(
                ("scheduler", "metric"),
                f"{metric} needs validation data, and data.val_fraction is 0 for some runs: "
                "rank by train_loss, or hold out data",
            )
        checks = {"min_epochs": count(1, MAX_EPOCHS), "eta": count(2, MAX_ETA)}
        steps = {}
        for key, default in (("min_epochs", 1), ("eta", 3)):
            try:
                steps[key] = checks[key](key, entries.get(key, default))
            except InputError as error:
                raise self.fail(("scheduler", key), str(error)) from None
        if "epochs" in grid:
            raise self.fail(
                ("grid", "epochs"),
                "a sweep with a scheduler trains every run to one train.epochs, its last "
                "rung: move epochs out of the grid",
            )
        epochs = base.get("epochs", EPOCHS_DEFAULT)
        if epochs <= steps["min_epochs"]:
            raise self.fail(
                ("scheduler", "min_epochs"),
                f"must be below train.epochs ({epochs}), the last rung: with "
                f"min_epochs {steps['min_epochs']} no run could be stopped early",
            )
        return {"type": kind, "metric": metric, **steps}

    def settings(self, section: str, value: object, allowed: tuple[str, ...]) -> dict:
        entries = self.mapping((section,), value, allowed)
        return {key: self.field((section, key), key, v) for key, v in entries.items()}

    def data(self, value: object) -> dict:
        if value is None:
            raise self.fail(("data",), "missing: name a data set, e.g. {name: spirals}")
        data = dict(self.mapping(("data",), value, None))
        if not isinstance(data.get("name"), str):
            raise self.fail(("data", "name"), "must name a synthetic set or a .csv/.npz file")
        return {key: self.data_value(("data", key), key, v) for key, v in data.items()}

    def data_value(self, path: tuple, key: object, value: object) -> object:
        if not isinstance(key, str):
            raise self.fail(path, f"a data parameter is named by text, got {_shown.repr(key)}")
        try:
            return _data_value(key, value)
        except InputError as error:
            raise self.fail(path, str(error)) from None

    def grid(self, value: object) -> dict:
        data_keys = [k for k in value if _is_data_key(k)] if isinstance(value, dict) else []
        allowed = (*RUN_KEYS, *data_keys)
        grid = {}
        for key, values in self.mapping(("grid",), value, allowed).items():
            if not isinstance(values, list) or not values:
                raise self.fail(
                    ("grid", key), f"must be a non-empty list of values, got {_shown.repr(values)}"
                )
            if key.startswith(DATA_PREFIX):
                name = key[len(DATA_PREFIX) :]
                grid[key] = tuple(
                    self.data_value(("grid", key, i), name, v) for i, v in enumerate(values)
                )
            else:
                grid[key] = tuple(
                    self.field(("grid", key, i), key, v) for i, v in enumerate(values)
                )
        return grid

    def seeds(self, value: object) -> tuple[int, ...]:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= MAX_SEEDS:
                raise self.fail(
                    ("seeds",), f"a count of seeds must be in [1, {MAX_SEEDS:_}], got {value}"
                )
            return tuple(range(value))
        if not isinstance(value, list) or not value:
            raise self.fail(
                ("seeds",),
                f"must be a count or a non-empty list of integers, got {_shown.repr(value)}",
            )
        for i, seed in enumerate(value):
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
                raise self.fail(
                    ("seeds", i), f"must be an integer in [0, 2**32), got {_shown.repr(seed)}"
                )
        return tuple(dict.fromkeys(value))

    def exclude(self, value: object) -> tuple[dict, ...]:
        if not isinstance(value, list):
            raise self.fail(
                ("exclude",), f"must be a list of partial configurations, got {_shown.repr(value)}"
            )
        allowed = (*RUN_KEYS, *(k for k in self._grid_keys()))
        excluded = []
        for i, item in enumerate(value):
            point = self.mapping(("exclude", i), item, allowed)
            excluded.append(
                {
                    k: self.data_value(("exclude", i, k), k[len(DATA_PREFIX) :], v)
                    if _is_data_key(k)
                    else self.field(("exclude", i, k), k, v)
                    for k, v in point.items()
                }
            )
        return tuple(excluded)

    def _grid_keys(self) -> list[str]:
        return [path[1] for path in self.lines if len(path) == 2 and path[0] == "grid"]
