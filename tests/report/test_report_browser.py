"""Reports in a real browser: headless Chromium renders them from file://, offline.

Locally, without Debian's chromium installed, these tests skip; under CI (``CI`` set) a
missing browser is an error instead.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from test_report import HOSTILE, PARTS, write_sweep

import nnlab
from nnlab.report import write_report

QUIET = ("--disable-background-networking", "--disable-component-update", "--disable-sync")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *QUIET)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium not found: install Debian's chromium (.ci/run does)")
        pytest.skip("chromium not available here")
    return found


def browse(chromium: str, page: Path, tmp_path: Path, *args: str) -> str:
    """Run headless Chromium on ``page`` with a fresh profile; return what it printed."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [chromium, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def hostile_report(sqlite_url, tmp_path) -> Path:
    """A report on a sweep named like an HTML injection, with a failure and a diverged run."""
    runs = [
        ({"learning_rate": 0.1}, 0, "completed", [1.0, 0.5, 0.3, 0.2]),
        ({"learning_rate": 0.1}, 1, "completed", [1.0, 0.6, 0.35, 0.25]),
        ({"learning_rate": 1.0}, 0, "diverged", [1.0, 90.0, 1e4]),
        ({"learning_rate": 1.0}, 1, "failed", []),
    ]
    write_sweep(sqlite_url, HOSTILE, runs, description=HOSTILE)
    return write_report(nnlab.connect(sqlite_url), [HOSTILE], directory=tmp_path / "reports")


def test_the_dom_has_every_section_and_a_hostile_name_stays_text(
    chromium, hostile_report, tmp_path
):
    dom = browse(chromium, hostile_report, tmp_path, "--dump-dom")
    assert re.findall(r'data-part="([a-z]+)"', dom) == list(PARTS)
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert "data-pwned" not in body
    assert not re.search(r'<img[^>]*\bsrc="x"', dom)  # no element was injected
    assert "&lt;img src=x onerror=" in dom  # the name is shown as the text it is
    assert "ValueError: boom" in dom


def test_the_page_is_not_blank(chromium, hostile_report, tmp_path):
    shot = tmp_path / "shot.png"
    browse(chromium, hostile_report, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    pixels = matplotlib.image.imread(io.BytesIO(shot.read_bytes()))
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels[..., :3].std() > 0.05  # text, tables and figures, not an empty page
    # the figures drew (the policy lets data: images in): their first colour, tab:blue, shows
    blue = np.abs(pixels[..., :3] - np.array([31, 119, 180]) / 255).max(axis=-1) < 0.05
    assert blue.sum() > 200
