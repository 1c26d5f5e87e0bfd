"""The report's figures drawn in forked processes: the same page, and every fault of a child
drawn again in the parent (nnlab/report/drawing.py)."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from nnlab.report import drawing, render_report
from nnlab.report.drawing import drawn
import nnlab
from nnlab.sweeps.runner import run_sweep
from nnlab.sweeps.spec import parse_spec

pytestmark = pytest.mark.skipif(drawing.processes() < 2, reason="needs two cores and fork")

SPEC = textwrap.dedent("""\
    name: {name}
    data: {{name: spirals, n_samples: 90, classes: 3, noise: 0.2, val_fraction: 0.2}}
    model: {{hidden: [8]}}
    train: {{epochs: 4, optimizer: sgd}}
    grid:
      learning_rate: [0.05, 5.0]
      gd: [batch, minibatch]
      batch_size: [8]
    seeds: [0, 1]
    """)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('drawing') / 'nnlab.db'}"
    for name in ("one", "two"):
        run_sweep(parse_spec(SPEC.format(name=name)), url)
    return nnlab.connect(url)


def _alone(monkeypatch) -> None:
    monkeypatch.setattr(drawing, "processes", lambda: 1)


@pytest.mark.parametrize("sweeps", [["one"], ["one", "two"]])
def test_the_page_drawn_on_two_processes_is_the_page_drawn_on_one(lab, sweeps, monkeypatch):
    forked = render_report(lab, sweeps)
    _alone(monkeypatch)
    assert render_report(lab, sweeps) == forked
    assert forked.count("data:image/") >= 4 * len(sweeps)


def _pid() -> int:
    return os.getpid()


def test_a_child_draws_its_share_and_the_results_keep_their_order():
    parent = os.getpid()
    pids = drawn([_pid] * 4, [4.0, 1.0, 1.0, 1.0])
    assert pids[0] == parent  # the heaviest task is the parent's share
    assert set(pids[1:]) == {pids[1]} and pids[1] != parent
    assert drawn([lambda k=k: k * k for k in range(7)]) == [k * k for k in range(7)]


def test_shares_go_heaviest_first_to_the_lightest_process():
    assert drawing._shares([3.0, 1.0, 2.0, 1.5, 1.0, 0.5], 2) == [[0, 1, 5], [2, 3, 4]]
    assert drawing._shares([1.0], 2) == [[0]]
    assert drawing._shares([1.0, 1.0], 8) == [[0], [1]]


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


class _InChild:
    """A task that records the child's pid in ``folder`` and then misbehaves there only."""

    def __init__(self, folder: Path, fault) -> None:
        self.parent, self.folder, self.fault = os.getpid(), folder, fault

    def __call__(self) -> str:
        if os.getpid() == self.parent:
            return "drawn by the parent"
        (self.folder / "child").write_text(str(os.getpid()))
        self.fault()
        return "drawn by the child"


def _child_pid(folder: Path) -> int:
    return int((folder / "child").read_text())


def _raise() -> None:
    raise RuntimeError("only in the child")


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _hang() -> None:
    time.sleep(3600)


@pytest.mark.parametrize("fault", [_raise, _crash, _hang], ids=["raises", "crashes", "hangs"])
def test_what_a_child_fails_to_draw_the_parent_draws(tmp_path, monkeypatch, fault):
    monkeypatch.setattr(drawing, "DEADLINE", 0.5)
    start = time.monotonic()
    results = drawn([lambda: "first", _InChild(tmp_path, fault)], [2.0, 1.0])
    assert results == ["first", "drawn by the parent"]
    assert time.monotonic() - start < 10
    assert _gone(_child_pid(tmp_path))


def test_stop_signals_sent_to_a_child_do_not_stop_it(tmp_path):
    def interrupt() -> None:
        for name in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(os.getpid(), name)

    results = drawn([lambda: "first", _InChild(tmp_path, interrupt)], [2.0, 1.0])
    assert results == ["first", "drawn by the child"]
    assert _gone(_child_pid(tmp_path))


def test_an_error_in_the_parent_kills_the_child_and_propagates(tmp_path):
    def stopped() -> None:
        while not (tmp_path / "child").exists():
            time.sleep(0.01)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drawn([stopped, _InChild(tmp_path, _hang)], [2.0, 1.0])
    assert _gone(_child_pid(tmp_path))


def test_a_figure_that_cannot_be_drawn_raises_as_it_does_alone():
    def broken() -> None:
        raise ValueError("no such figure")

    with pytest.raises(ValueError, match="no such figure"):
        drawn([lambda: "first", broken], [2.0, 1.0])
