"""README's examples run as written, after its quick start, in a fresh folder.

Every ```python block is executed, in order, in one interpreter; every `nnlab ...` line of a
```bash block is run in a shell, except those that need a server this test does not start (a
PostgreSQL URL, a Dask scheduler) or that install packages.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
QUICK_START = "nnlab sweep sweeps/quickstart.yaml -j 2"
NEEDS_A_SERVER = (
    "postgresql://",
    "--scheduler",
    "--backend dask",
    "dask ",
    "pip ",
    "bash ",
    "serve",
)


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def commands() -> list[str]:
    """The `nnlab` command lines of the bash blocks, continuation lines joined."""
    lines = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("nnlab ") and not any(skip in line for skip in NEEDS_A_SERVER):
                lines.append(line)
    return lines


@pytest.fixture(scope="module")
def after_quick_start(tmp_path_factory) -> Path:
    """A fresh folder with the repository's sweeps/, after README's main job."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "sweeps", folder / "sweeps")
    assert f"&& {QUICK_START}" in README
    command = [sys.executable, "-m", "nnlab", *QUICK_START.split()[1:]]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return folder


def test_readme_has_examples_to_run():
    assert len(blocks("python")) >= 4 and len(commands()) >= 10


def test_every_python_example_runs(after_quick_start):
    script = "\n\n".join(blocks("python"))
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=after_quick_start, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("command", commands())
def test_every_command_runs(after_quick_start, command):
    shell = command.replace("nnlab ", f"{sys.executable} -m nnlab ", 1)
    # a command that asks (sweeps delete) is answered as a user would
    done = subprocess.run(
        shell, shell=True, cwd=after_quick_start, capture_output=True, text=True, input="y\n"
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
