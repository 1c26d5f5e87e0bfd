"""Hostile sweep specs: each is refused with one line naming file:line and key, quickly, in
bounded memory, before a database exists. The real parser, planner and command line, no mocks."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnlab.sweeps.budget import DataShape, estimate, worker_budget
from nnlab.sweeps.config import RunConfig
from nnlab.sweeps.grid import expand_grid
from nnlab.sweeps.runner import plan
from nnlab.sweeps.spec import SpecError, SweepSpec, load_spec, parse_spec

SPEC = textwrap.dedent("""\
    name: hostile
    data: {name: spirals, n_samples: 120, classes: 3, noise: 0.2, val_fraction: 0.2}
    model: {hidden: [8]}
    train: {epochs: 2, optimizer: sgd}
    grid:
      learning_rate: [0.03, 0.3]
      gd: [batch, minibatch]
      batch_size: [16]
    seeds: [0, 1]
""")
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)  # 9**9 strings, under 1 KB: nnlab 0.1 spent 2 GB and 30 s on it before the unknown key 'a'
NOT_APPLYING = "  momentum: [" + ", ".join(f"0.{i:03d}" for i in range(999)) + "]\n"


def refused(text: str, source: str = "s.yaml") -> str:
    """The one-line message with which ``text`` is refused, by parsing or by planning."""
    start = time.monotonic()
    with pytest.raises(SpecError) as error:
        plan(parse_spec(text, source=source))
    message = str(error.value)
    assert "\n" not in message and "\r" not in message and len(message) < 500, message
    assert message.startswith(f"{source}:"), message
    assert time.monotonic() - start < 5
    return message


def edit(old: str, new: str) -> str:
    assert old in SPEC
    return SPEC.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BOMB + "name: x\n", r"s.yaml:2: b\[0\]: aliases \(\*a\) are not supported"),
        (
            "name: a\ndata: " + "[" * 3000 + "]" * 3000 + "\n",
            r":2: data\[0\].*nested up to 50 deep",
        ),
        ("name: a\ndata:\n" + "- " * 3000 + "x\n", r":3: data\[0\].*nested up to 50 deep"),
        ("seeds: [" + "0, " * 20_000 + "0]\n", r":1: seeds\[\d+\]: a spec may hold up to 10000"),
        (SPEC + "name: again\n", r"s.yaml:10: name: duplicate key: lines 1 and 10"),
        (
            edit("noise: 0.2", "noise: 0.2, noise: 0.3"),
            r":2: data.noise: duplicate key: lines 2 and 2",
        ),
        (
            edit("noise: 0.2", "noise: !!binary aGVsbG8="),
            r":2: data.noise: tag !!binary is not supp",
        ),
        (
            edit("noise: 0.2", "noise: !!timestamp 2024-01-01"),
            r"data.noise: tag !!timestamp is not",
        ),
        (edit("noise: 0.2", "noise: 2024-01-01"), r":2: data.noise: noise must be a finite number"),
        (edit("noise: 0.2", "noise: !!python/name:os.system"), r"data.noise: tag !!python/name:os"),
        (edit("epochs: 2", "epochs: " + "9" * 5000), r":4: train.epochs: an integer of 5000 char"),
        (
            edit("seeds: [0, 1]", "seeds: [18446744073709551616]"),
            r":9: seeds\[0\]: must be an integer in \[0, 2\*\*32\)",
        ),
        (
            edit("seeds: [0, 1]", "seeds: 1000000000000"),
            r":9: seeds: a count of seeds must be in \[1, 100_000\]",
        ),
        (
            edit("noise: 0.2", "noise: 0.2, target: [1]"),
            r":2: data.target: target must be non-empty text, got \[1\]",
        ),
        (
            edit("noise: 0.2", "noise: 0.2, task: {a: 1}"),
            r":2: data.task: task must be non-empty text",
        ),
        (
            edit("noise: 0.2", "noise: 0.2, other: [1]"),
            r":2: data.other: other must be text, a number",
        ),
        (
            edit("noise: 0.2", "noise: .nan"),
            r":2: data.noise: noise must be a finite number >= 0, got nan",
        ),
        (
            edit("n_samples: 120", "n_samples: 1e30"),
            r":2: data.n_samples: n_samples must be an integer >= 1, got 1e\+30",
        ),
        (
            edit("n_samples: 120", "n_samples: 1000000000"),
            r"data.n_samples: n_samples must be an integer in \[1, 1_000_000\]",
        ),
        (
            edit("classes: 3", "classes: 1000000"),
            r":2: data.classes: classes must be an integer in \[2, 1_000\]",
        ),
        (
            edit("val_fraction: 0.2", 'standardize: "false"'),
            r":2: data.standardize: standardize must be true or false, got 'false'",
        ),
        (
            edit("val_fraction: 0.2", "val_fraction: 1"),
            r"data.val_fraction: val_fraction must be a finite number in \[0, 1\)",
        ),
        (edit("val_fraction: 0.2", "val_fraction: '0.2'"), r"data.val_fraction: .* got '0.2'"),
        (
            edit("noise: 0.2", "noise: 0.2, seed: 4294967296"),
            r"data.seed: seed must be an integer in \[0, 4_294_967_295\]",
        ),
        (
            edit("noise: 0.2", "noise: 0.2, seed: true"),
            r"data.seed: seed must be an integer >= 0, got True",
        ),
        (
            edit("grid:\n", "grid:\n  data.noise: [0.1, [0.2]]\n"),
            r":6: grid.data.noise\[1\]: noise must be a finite",
        ),
        (
            edit("grid:\n", "grid:\n  data.n_samples: [100, 10000000]\n"),
            r"grid.data.n_samples\[1\]: n_samples must be an integer in",
        ),
        (
            edit("name: hostile", "name: \u202eelif"),
            r":1: name: '\\u202eelif' contains the control character U\+202E",
        ),
        (
            edit("name: hostile", 'name: "a\\0b"'),
            r":1: name: 'a\\x00b' contains the control character U\+0000",
        ),
        (
            edit("name: hostile", 'name: "red\\e[31m"'),
            r"name: .* contains the control character U\+001B",
        ),
        (
            edit("name: hostile", 'name: a\ndescription: "x\\u2067y"'),
            r":2: description: .* U\+2067",
        ),
        (edit("name: spirals", 'name: "spi\\u202drals"'), r":2: data.name: .* U\+202D"),
        (edit("noise: 0.2", 'noise: 0.2, target: "y\\x1b"'), r":2: data.target: .* U\+001B"),
        (
            edit("gd: [batch, minibatch]", 'gd: [batch, "mini\\u2066batch"]'),
            r":7: grid.gd\[1\]: .* U\+2066",
        ),
        (
            edit("name: hostile", 'name: a\n"\\u202ex": 1'),
            r"s.yaml:1: spec: key '\\u202ex' contains",
        ),
        (
            SPEC + "exclude:\n  - {optimizer: sgd}\n",
            r":10: exclude: excludes every run of the grid",
        ),
        (
            edit("grid:\n", "grid:\n" + NOT_APPLYING + NOT_APPLYING.replace("momentum", "beta1")),
            r":5: grid: the grid has 7_984_008 combinations .* more than 10 times --max-runs 10000",
        ),
        (  # under the raw product's bound, over --max-runs once expanded (the fuzzer's find)
            edit("seeds: [0, 1]", "seeds: 2564"),
            r"s.yaml:5: grid: the grid has more than 10000 runs; narrow it",
        ),
    ],
    ids=lambda value: "spec" if "\n" in value else re.sub(r"\W+", "_", value)[:60].strip("_"),
)
def test_hostile_specs_are_refused_on_one_line(text, message):
    shown = refused(text)
    assert re.search(message, shown), shown


def test_a_run_that_cannot_fit_in_memory_is_refused_naming_the_layers():
    text = edit("hidden: [8]", "hidden: [100000, 100000]")
    message = refused(text)
    assert message.startswith("s.yaml:3: model.hidden: a run needs about 149 GiB of memory")
    assert "a worker may use (50% of physical memory)" in message
    in_grid = refused(edit("grid:\n", "grid:\n  hidden: [[8], [100000, 100000]]\n"))
    assert in_grid.startswith("s.yaml:6: grid.hidden: a run needs about")


def test_a_data_set_too_big_for_memory_is_refused_before_it_is_generated():
    text = edit(
        "name: spirals, n_samples: 120, classes: 3",
        "name: blobs, n_samples: 1000000, n_features: 1000, classes: 3",
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    message = refused(text)
    assert message.startswith("s.yaml:2: data.n_samples: a run needs about 37.4 GiB")
    assert "37.4 GiB for the data" in message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KiB: not 8 GB


def test_the_memory_estimate_counts_weights_optimizer_state_and_one_chunk():
    shape = DataShape(n_samples=100_000, n_features=10, n_outputs=2)
    sgd = estimate(RunConfig(hidden=(1000,), gd="batch", optimizer="sgd"), shape)
    adam = estimate(RunConfig(hidden=(1000,), gd="batch", optimizer="adam"), shape)
    n_params = 11 * 1000 + 1001 * 2
    chunk = 2048 * (1000 + 2 + 2 + 1000)  # activations, output delta, scratch: one chunk
    assert sgd.network == (3 * n_params + chunk) * 8  # weights, gradient, chunk gradient
    assert adam.network - sgd.network == 2 * n_params * 8
    assert sgd.data == 100_000 * 12 * (8 * 4 + 8)  # 4 float64 copies and one cast for training
    mini = estimate(RunConfig(hidden=(1000,), gd="minibatch", batch_size=32), shape)
    assert mini.data - sgd.data == 32 * 12 * 8  # the batch's copy
    float32 = estimate(RunConfig(hidden=(1000,), gd="stochastic", dtype="float32"), shape)
    assert float32.network == (2 * n_params + 1 * 2004) * 4
    assert (
        0
        < worker_budget(2)
        < worker_budget(1)
        <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    )


def test_a_run_that_fits_alone_is_refused_when_workers_share_the_memory():
    shape = DataShape(n_samples=96, n_features=2, n_outputs=3)  # the spec's training set
    width = 1000
    while estimate(RunConfig(hidden=(width, width), gd="batch"), shape).total < worker_budget(2):
        width = int(width * 1.05)  # the first width over a two-worker share: under one's whole
    assert estimate(RunConfig(hidden=(width, width), gd="batch"), shape).total < worker_budget(1)
    text = edit("model: {hidden: [8]}", f"model: {{hidden: [{width}, {width}]}}")
    assert plan(parse_spec(text, source="s.yaml"), workers=1)  # nothing is allocated to plan
    with pytest.raises(SpecError, match=r"s.yaml:3: model.hidden: .* \(1/2 of 50% of physical"):
        plan(parse_spec(text, source="s.yaml"), workers=2)


def test_max_runs_bounds_the_raw_product_too():
    text = edit("grid:\n", "grid:\n  momentum: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]\n")
    assert len(expand_grid(parse_spec(text), max_runs=10)) == 8  # 48 raw: under 10 × 10
    with pytest.raises(SpecError, match=r"s.yaml:5: grid: the grid has 48 combinations"):
        expand_grid(parse_spec(text, source="s.yaml"), max_runs=4)


# --- spec files that are not files ---------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "spec.yaml"
    os.mkfifo(path)
    return path


def test_a_fifo_a_device_or_a_directory_is_refused_without_blocking(fifo, tmp_path):
    for path in (fifo, Path("/dev/zero"), tmp_path):
        start = time.monotonic()
        with pytest.raises(SpecError, match=rf"^{path}: cannot read the spec: not a regular file$"):
            load_spec(path)
        assert time.monotonic() - start < 1


def test_text_that_is_not_utf8_or_too_large_is_refused(tmp_path):
    latin1, utf16, big = tmp_path / "latin1.yaml", tmp_path / "utf16.yaml", tmp_path / "big.yaml"
    latin1.write_bytes(b"name: a\ndescription: caf\xe9\n")
    utf16.write_text(SPEC, encoding="utf-16")
    big.write_bytes(b"# " + b"x" * (1 << 20) + b"\n" + SPEC.encode())
    with pytest.raises(SpecError, match=r"latin1.yaml:2: the spec is not UTF-8 text \(byte 0xe9"):
        load_spec(latin1)
    with pytest.raises(SpecError, match=r"utf16.yaml:1: the spec is not UTF-8 text.*UTF-16"):
        load_spec(utf16)
    with pytest.raises(SpecError, match=r"big.yaml: the spec is larger than 1_048_576 bytes"):
        load_spec(big)
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + SPEC.encode())
    assert load_spec(tmp_path / "bom.yaml").name == "hostile"


# --- the command line: exit 2, one line, no traceback, no database ------------------------------

MEMORY_LIMIT = 3 << 30  # address space of the CLI process: a blow-up fails instead of swapping


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.parametrize(
    "spec",
    ["bomb", "fifo", "dev_zero", "utf16", "huge_seed", "hidden", "standardize", "collapse"],
)
def test_the_cli_refuses_hostile_specs_with_one_line_and_no_database(spec, tmp_path):
    texts = {
        "bomb": BOMB + SPEC.replace("name: hostile", "nme: x"),
        "huge_seed": edit("seeds: [0, 1]", "seeds: [18446744073709551616]"),
        "hidden": edit("hidden: [8]", "hidden: [100000, 100000]"),
        "standardize": edit("val_fraction: 0.2", 'standardize: "false"'),
        "collapse": edit(
            "grid:\n", "grid:\n" + NOT_APPLYING + NOT_APPLYING.replace("momentum", "beta1")
        ),
    }
    path = tmp_path / "spec.yaml"
    if spec == "fifo":
        os.mkfifo(path)
    elif spec == "dev_zero":
        path = Path("/dev/zero")
    elif spec == "utf16":
        path.write_text(SPEC, encoding="utf-16")
    else:
        path.write_text(texts[spec])
    db = tmp_path / "runs.db"
    process = subprocess.run(
        [sys.executable, "-m", "nnlab.cli", "sweep", str(path), "--db", str(db), "--no-report"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
    )
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}"), process.stderr
    assert not db.exists()


# --- fuzzing: mutations of a valid spec ----------------------------------------------------------

KEYS = [
    "name",
    "description",
    "data",
    "model",
    "train",
    "grid",
    "seeds",
    "exclude",
    "hidden",
    "learning_rate",
    "gd",
    "batch_size",
    "n_samples",
    "classes",
    "noise",
    "val_fraction",
    "standardize",
    "seed",
    "target",
    "data.noise",
    "data.n_samples",
    "optimizer",
    "epochs",
]
ODD_CHARS = "\x00\x1b\u202e\u2066\ufeff\x85\u2028\x7f\x9bé💥\t\r"
ODD = [*ODD_CHARS, "\x1b[2J"]
huge_numbers = st.sampled_from(
    [
        "1e30",
        "-1",
        "0",
        "1000000000",
        "18446744073709551616",
        "1e400",
        ".nan",
        "-.inf",
        "9" * 60,
        "0x10",
        "1:30",
    ]
)
STRANGE = [
    "true",
    '"false"',
    "null",
    "~",
    "[]",
    "{}",
    "2024-01-01",
    "!!binary aGk=",
    "!!set {a}",
    "&x 1",
    "*x",
    "'",
    '"',
    "[1, [2, [3]]]",
    "!foo 1",
]
scalars = st.one_of(
    huge_numbers,
    st.sampled_from(STRANGE),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.sampled_from(list("abc: -[]{},&*!|>'\"#%@`" + ODD_CHARS)), max_size=12),
)


def _mutate(data: st.DataObject) -> str:
    lines = SPEC.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        kind = data.draw(st.sampled_from(["value", "key", "insert", "nest", "bytes", "delete"]))
        line = lines[i]
        indent, rest = line[: len(line) - len(line.lstrip())], line.strip()
        if kind == "value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[i] = f"{key}: {data.draw(scalars)}\n"
        elif kind == "key":
            lines[i] = (
                f"{indent}{data.draw(st.sampled_from(KEYS + ODD))}: {rest.split(':', 1)[-1]}\n"
            )
        elif kind == "insert":
            lines.insert(i, f"{indent}{data.draw(st.sampled_from(KEYS))}: {data.draw(scalars)}\n")
        elif kind == "nest":
            depth = data.draw(st.integers(1, 200))
            lines[i] = f"{line.split(':', 1)[0]}: {'[' * depth}1{']' * depth}\n"
        elif kind == "bytes":
            at = data.draw(st.integers(0, len(line)))
            lines[i] = (
                line[:at] + data.draw(st.sampled_from([*ODD, "\ud800", "*a", "&a"])) + line[at:]
            )
        else:
            del lines[i]
    return "".join(lines)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_specs_plan_or_fail_with_one_line(data):
    text = _mutate(data)
    start = time.monotonic()
    _planned_or_refused_in_one_line(text)
    assert time.monotonic() - start < 3


def _planned_or_refused_in_one_line(text: str) -> SweepSpec | None:
    """The spec of ``text`` if it plans to some runs; None if refused, in one line."""
    try:
        parsed = parse_spec(text, source="f.yaml")
        points = plan(parsed)
    except SpecError as error:
        message = str(error)
        assert message.startswith("f.yaml") and len(message.splitlines()) == 1, message
        return None
    assert points
    return parsed


SCHEDULER_KEYS = ["type", "metric", "min_epochs", "eta", "grace", "epochs"]
SCHEDULER_VALUES = st.one_of(
    scalars, st.sampled_from(["sha", "asha", "hyperband", "val_loss", "train_accuracy", "1", "3"])
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_schedulers_plan_or_fail_with_one_line(data):
    keys = data.draw(st.lists(st.sampled_from(SCHEDULER_KEYS + ODD), max_size=5))
    entries = ", ".join(f"{key}: {data.draw(SCHEDULER_VALUES)}" for key in keys)
    text = SPEC + data.draw(st.sampled_from(["scheduler: {%s}\n", "scheduler: [%s]\n"])) % entries
    parsed = _planned_or_refused_in_one_line(text)
    assert parsed is None or parsed.scheduler["type"] in ("sha", "asha", "hyperband")
