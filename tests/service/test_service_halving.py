"""A scheduled sweep through the service: real successive halving (and Hyperband) sweeps trained
into a real database and served by a real server. Its details carry the scheduler, the rungs
and the budget exactly as the reading API has them, its progress counts pruned runs as ended
and paused ones as not, and its page shows the rungs in a real browser, live."""

from __future__ import annotations

import math
import threading

import pytest
from browser import assert_clean, chromium, watched_page  # noqa: F401 (fixtures)
from served import add_sweep, get_json, running

import nnlab
from nnlab.service import views
from nnlab.service.app import create_app
from nnlab.service.records import frame_records
from nnlab.store.queue import FINAL_STATUSES
from nnlab.sweeps.runner import run_sweep
from nnlab.sweeps.spec import parse_spec

SPEC = """\
name: {name}
description: {kind} over learning rate x activation
data: {{name: spirals, n_samples: 120, classes: 3, noise: 0.2, val_fraction: 0.25}}
model: {{hidden: [8], loss: cross_entropy}}
train: {{epochs: 9, optimizer: sgd, gd: minibatch, batch_size: 32}}
grid:
  learning_rate: [0.01, 0.1, 1.0]
  activation: [tanh, relu, sigmoid]
seeds: 2
scheduler: {{type: {kind}, metric: val_loss, min_epochs: 1, eta: 3}}
"""


def spec(name: str, kind: str = "sha"):
    return parse_spec(SPEC.format(name=name, kind=kind))


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('halving') / 'nnlab.db'}"
    run_sweep(spec("halving"), url, jobs=1, backend="threading")
    run_sweep(spec("bands", "hyperband"), url, jobs=1, backend="threading")
    return add_sweep(url, "plain", runs=2, epochs=3)


@pytest.fixture(scope="module")
def lab(url):
    return nnlab.connect(url)


@pytest.fixture(scope="module")
def base(url):
    with running(create_app(url, poll_seconds=0.25)) as base:
        yield base


@pytest.fixture(scope="module")
def client(base):
    import httpx

    with httpx.Client(base_url=base) as client:
        yield client


@pytest.mark.parametrize("name", ["halving", "bands"])
def test_details_carry_the_scheduler_rungs_and_budget_the_lab_has(client, lab, name):
    details = get_json(client, f"/api/sweeps/{name}")
    assert details["scheduler"] == lab.scheduler(name)
    assert details["rungs"] == frame_records(lab.rungs(name))
    assert len(details["rungs"]) == len(lab.rungs(name)) > 1
    budget = lab.budget(name)
    assert details["budget"] == {
        "spent": budget.spent,
        "full": budget.full,
        "fraction": budget.fraction,
    }
    assert 0 < budget.spent < budget.full  # the halving stopped most runs early


def test_the_rungs_are_the_halving_cut(client, lab):
    """9 configurations enter rung 0 at epoch 1, 3 go on to epoch 3, 1 to the end."""
    rungs = get_json(client, "/api/sweeps/halving")["rungs"]
    entered = [(r["rung"], r["epoch"], r["entered"]) for r in rungs]
    assert entered == [(0, 1, 9), (1, 3, 3), (2, 9, 1)]
    decided = [(r["promoted"], r["pruned"], r["waiting"]) for r in rungs]
    assert decided == [(3, 6, 0), (1, 2, 0), (0, 0, 0)]
    assert all(isinstance(r["best"], float) and math.isfinite(r["best"]) for r in rungs)
    assert get_json(client, "/api/sweeps/bands")["scheduler"]["brackets"] > 1


def test_a_sweep_without_a_scheduler_has_none(client):
    details = get_json(client, "/api/sweeps/plain")
    assert details["scheduler"] is None
    assert details["rungs"] == []
    assert details["budget"] is None


def test_pruned_runs_have_ended_and_there_is_no_eta(client, lab):
    details = get_json(client, "/api/sweeps/halving")
    statuses = lab.sweep("halving").statuses
    assert details["statuses"] == statuses
    assert statuses["pruned"] == 16
    ended = sum(n for status, n in statuses.items() if status in FINAL_STATUSES)
    assert details["final"] == ended == details["runs"] == 18
    assert details["eta_seconds"] is None


def test_paused_runs_have_not_ended_and_rungs_are_read_once_per_status_counts(lab):
    class Counting:
        """A lab that counts the rungs it is asked for."""

        def __init__(self, lab):
            self.lab, self.asked = lab, 0

        def scheduler(self, name):
            return self.lab.scheduler(name)

        def rungs(self, name):
            self.asked += 1
            return self.lab.rungs(name)

    counting, schedules = Counting(lab), views.Schedules(max_age=60)
    statuses = lab.sweep("halving").statuses
    first = schedules.of(counting, "halving", statuses)
    assert schedules.of(counting, "halving", dict(statuses)) == first
    assert counting.asked == 1
    # a run paused at a rung: the counts change, the rungs are read again
    waiting = {**statuses, "pruned": statuses["pruned"] - 1, "paused": 1}
    schedules.of(counting, "halving", waiting)
    assert counting.asked == 2
    assert "paused" not in FINAL_STATUSES and "pruned" in FINAL_STATUSES


def test_the_ranking_says_how_far_each_configuration_reached(client, lab):
    ranking = get_json(client, "/api/sweeps/halving/configurations")
    expected = lab.configurations("halving")
    assert [row["rung"] for row in ranking] == expected.rung.tolist()
    assert ranking[0]["rung"] == 2  # the configuration that trained to the end ranks first


def test_a_pruned_configurations_curve_stops_where_its_runs_stopped(client, lab):
    groups = get_json(client, "/api/sweeps/halving/curves?by=configuration&top=9")
    configurations = lab.configurations("halving").set_index("configuration")
    epochs_at = lab.scheduler("halving")["rungs"]
    assert len(groups) == 9
    for group in groups:
        reached = epochs_at[int(configurations.rung[group["value"]])]
        logged = [e for e, m in zip(group["epochs"], group["median"], strict=True) if m is not None]
        assert logged == list(range(1, reached + 1)), group["label"]


# --- in a real browser ------------------------------------------------------------------------


def rung_cells(page) -> list[list[str]]:
    rows = page.locator("#rungs tbody tr")
    return [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]


def expected_cells(lab, name: str) -> list[list[str]]:
    rungs = lab.rungs(name)
    brackets = lab.scheduler(name)["brackets"] > 1
    cells = []
    for row in rungs.itertuples():
        counts = [row.rung, row.epoch, row.entered, row.promoted, row.pruned, row.waiting]
        counts = [row.bracket, *counts] if brackets else counts
        best = "–" if math.isnan(row.best) else f"{row.best:.4g}"
        cells.append([*map(str, counts), best])
    return cells


@pytest.mark.parametrize("name", ["halving", "bands"])
def test_the_rungs_panel_shows_the_rungs_and_the_budget(page, base, lab, name):
    page.goto(f"{base}/sweeps/{name}")
    page.wait_for_selector("body[data-charted=true]", timeout=15_000)
    assert page.locator("#rungs-panel").is_visible()
    headers = page.locator("#rungs thead th").all_inner_texts()
    assert headers[-1] == "best val_loss"
    assert ("bracket" in headers) == (name == "bands")
    assert rung_cells(page) == expected_cells(lab, name)
    assert page.locator("#budget-line").inner_text() == str(lab.budget(name))
    column = page.locator("#configurations thead th").all_inner_texts().index("rung reached")
    cells = page.locator("#configurations tbody tr").first.locator("td")
    top = int(lab.configurations(name).rung.iloc[0])
    reached = lab.scheduler(name)["rungs"][top]
    assert cells.nth(column).inner_text() == f"{top} ({reached} epochs)"
    bar = page.locator("#progress .bar").get_attribute("aria-label")
    assert "pruned by the scheduler" in bar
    assert_clean(page)


def test_a_sweep_without_a_scheduler_has_no_rungs_panel(page, base):
    page.goto(f"{base}/sweeps/plain")
    page.wait_for_selector("body[data-charted=true]", timeout=15_000)
    assert page.locator("#rungs-panel").is_hidden()
    assert "rung reached" not in page.locator("#configurations thead th").all_inner_texts()
    assert_clean(page)


def test_the_rungs_panel_follows_a_sweep_as_it_trains(page, base, lab, url):
    """The sweep waits after its first run ends until the page is open; the page then shows
    the rungs filling in without a reload, ending with the lab's."""
    opened, released = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def wait_for_the_page(run_id, status):
        opened.set()
        assert released.wait(30)

    def train():
        try:
            run_sweep(spec("live"), url, jobs=1, backend="threading", on_result=wait_for_the_page)
        except BaseException as error:  # reported by the test
            failed.append(error)
            opened.set()

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    try:
        assert opened.wait(60)
        assert not failed, failed
        page.goto(f"{base}/sweeps/live")
        page.wait_for_selector("body[data-painted=true]", timeout=15_000)
        page.wait_for_selector("#rungs tbody tr")
        assert page.locator("#rungs-panel").is_visible()
        before = page.locator("#budget-line").inner_text()
    finally:
        released.set()
    thread.join(60)
    assert not failed, failed
    # every rung in the end: the lab's, drawn from the live events
    final = expected_cells(lab, "live")
    page.wait_for_function(
        "(want) => JSON.stringify([...document.querySelectorAll('#rungs tbody tr')]"
        ".map((tr) => [...tr.children].map((td) => td.textContent))) === JSON.stringify(want)",
        arg=final,
        timeout=15_000,
    )
    assert page.locator("#budget-line").inner_text() == str(lab.budget("live")) != before
    assert_clean(page)
