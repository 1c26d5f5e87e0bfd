"""Reports on sweeps with a scheduler (successive halving, Hyperband): real sweeps, trained here.

What is checked against what: the rendered page against the store's reading API (``Lab.rungs``,
``Lab.budget``, ``Lab.configurations``), and the curves the figures aggregate against each run's
status and rung: a pruned run stops where it stopped.
"""

from __future__ import annotations

import html as markup
import re
import textwrap

import numpy as np
import pytest
from test_report import PARTS, parts

import nnlab
from nnlab.report import render_report
from nnlab.report.analysis import DIVERGED, load_sweep
from nnlab.store.query import quantiles
from nnlab.sweeps.runner import run_sweep
from nnlab.sweeps.spec import parse_spec

# 8 configurations × 2 seeds, 9 epochs: rungs at 1, 3 and 9; a learning rate of 30 diverges
SPEC = textwrap.dedent("""\
    name: {name}
    data: {{name: spirals, n_samples: 90, classes: 3, noise: 0.2, val_fraction: 0.2}}
    model: {{hidden: [8], loss: cross_entropy}}
    train: {{epochs: 9, optimizer: sgd, gd: minibatch, batch_size: 16}}
    grid:
      learning_rate: [0.03, 0.3, 1.0, 30.0]
      activation: [tanh, relu]
    seeds: 2
""")
SCHEDULERS = {"sha": "Successive halving (sha)", "hyperband": "Hyperband"}


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    """A database of three real sweeps of one grid: under sha, under hyperband, and in full."""
    url = f"sqlite:///{tmp_path_factory.mktemp('halving') / 'nnlab.db'}"
    for kind in SCHEDULERS:
        scheduler = f"scheduler: {{type: {kind}, metric: val_loss, min_epochs: 1, eta: 3}}\n"
        run_sweep(parse_spec(SPEC.format(name=kind) + scheduler), url, jobs=1)
    run_sweep(parse_spec(SPEC.format(name="full")), url, jobs=1)
    return url


def section(page: str, part: str) -> str:
    found = re.search(rf'<section class="part" data-part="{part}">(.*?)</section>', page, re.S)
    assert found, f"no {part} section"
    return found.group(1)


def table(html: str) -> tuple[list[str], list[list[str]]]:
    """The first table in ``html``: its header and its rows, as text."""
    head = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", html.split("</thead>")[0])
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    rows = [
        re.findall(r"<td(?: [^>]*)?>(.*?)</td>", row)
        for row in re.findall(r"<tr(?: [^>]*)?>(.*?)</tr>", body)
    ]
    return [markup.unescape(h) for h in head], [[markup.unescape(c) for c in r] for r in rows]


@pytest.mark.parametrize("kind", SCHEDULERS)
def test_the_rungs_table_and_the_budget_are_the_stores(url, kind):
    lab = nnlab.connect(url)
    page = render_report(lab, [kind])
    assert parts(page) == ["summary", "halving", *PARTS[1:]]
    halving = section(page, "halving")
    assert f"<h3>{SCHEDULERS[kind]}</h3>" in halving
    head, rows = table(halving)
    rungs, scheduler = lab.rungs(kind), lab.scheduler(kind)
    brackets = scheduler["brackets"] > 1
    assert brackets == (kind == "hyperband")
    columns = ["rung", "epoch", "entered", "promoted", "pruned", "waiting"]
    assert head == [
        *(["bracket"] if brackets else []),
        "rung",
        "epoch",
        "configurations entered",
        "promoted",
        "pruned",
        "waiting",
        "best val_loss",
    ]
    expected = [
        [
            *([str(row.bracket)] if brackets else []),
            *(str(getattr(row, c)) for c in columns),
            f"{row.best:.4g}",
        ]
        for row in rungs.itertuples()
    ]
    assert rows == expected and len(rows) == len(rungs) > 2
    assert rungs.pruned.sum() > 0  # the sweep did prune: the table has something to say
    budget = lab.budget(kind)
    assert 0 < budget.fraction < 1
    assert f"Budget: <b>{budget}</b>" in markup.unescape(halving)
    summary = markup.unescape(section(page, "summary"))
    assert f"<dt>budget</dt><dd>{budget}</dd>" in summary
    rung_epochs = ", ".join(map(str, scheduler["rungs"]))
    assert f"{kind} by val_loss, eta 3, rungs at {rung_epochs} epochs" in summary


@pytest.mark.parametrize("kind", SCHEDULERS)
def test_the_best_configurations_show_the_epochs_each_reached(url, kind):
    lab = nnlab.connect(url)
    head, rows = table(section(render_report(lab, [kind]), "best"))
    assert head[:3] == ["learning_rate", "activation", "epochs"]
    ranked, rungs = lab.configurations(kind), lab.scheduler(kind)["rungs"]
    assert [row[2] for row in rows] == [str(rungs[rung]) for rung in ranked.rung]
    # seeds the scheduler stopped are counted as pruned, not as unfinished
    pruned = head.index("pruned")
    assert [row[pruned] for row in rows] == [
        f"{n}/{total}"
        for n, total in zip(
            (ranked.configuration.map(_pruned_seeds(lab, kind))), ranked.runs, strict=True
        )
    ]
    assert "unfinished" not in head


def _pruned_seeds(lab, sweep: str) -> dict:
    runs = lab.runs(sweep=sweep).merge(lab.settings(sweep)[["run_id", "configuration"]])
    return (runs.status == "pruned").groupby(runs.configuration).sum().to_dict()


def test_a_sweep_without_a_scheduler_shows_none_of_it(url):
    lab = nnlab.connect(url)
    assert lab.scheduler("full") is None
    page = render_report(lab, ["full"])
    assert parts(page) == list(PARTS)
    assert "<dt>budget</dt>" not in page and "<dt>scheduler</dt>" not in page
    assert "Successive halving" not in page and "pruned" not in page
    head, _ = table(section(page, "best"))
    assert "epochs" not in head
    # its runs that ended cleanly keep their last loss to the end of the chart
    view = load_sweep(lab, "full")
    settled = view.settled()
    assert np.isfinite(settled[view.clean]).all()


@pytest.mark.parametrize("kind", SCHEDULERS)
def test_a_pruned_run_stops_at_its_rung_in_the_aggregates(url, kind):
    lab = nnlab.connect(url)
    view = load_sweep(lab, kind)
    settled, runs = view.settled(), view.runs
    rungs = np.asarray(lab.scheduler(kind)["rungs"])
    assert settled.shape[1] == rungs[-1]
    pruned = np.flatnonzero(view.pruned)
    assert pruned.size and not view.clean[pruned].any() and not view.diverged[pruned].any()
    for i in pruned:
        stop = rungs[runs.rung.iloc[i]]
        assert runs.epochs_run.iloc[i] == stop
        assert np.isfinite(settled[i, :stop]).all() and (settled[i, :stop] < DIVERGED).all()
        assert np.isnan(settled[i, stop:]).all()  # not carried on, not off the chart
    # past each rung, the aggregates are over the runs that trained there, and only those
    trained = view.curves.logged
    assert (np.isfinite(settled) == (trained | _carried(view, rungs))).all()
    median = quantiles(settled, (0.5,))[0]
    last = np.isfinite(settled[:, -1])
    assert median[-1] == pytest.approx(np.median(settled[last, -1]))
    assert set(runs.status[last]) <= {"completed", "converged", "early_stopped"}


def _carried(view, rungs: np.ndarray) -> np.ndarray:
    """Where a diverged or cleanly ended run counts past its last epoch: up to the last rung
    its configuration reached, no further."""
    reached = view.runs.groupby("configuration").rung.transform("max").to_numpy(dtype=int)
    epochs = view.curves.epochs[None, :]
    ended = (view.clean | view.diverged)[:, None]
    return (
        ended
        & (epochs > view.runs.epochs_run.to_numpy()[:, None])
        & (epochs <= rungs[reached][:, None])
    )


def test_a_diverged_run_under_hyperband_is_off_the_chart_up_to_its_rung_only(url):
    view = load_sweep(nnlab.connect(url), "hyperband")
    diverged = np.flatnonzero(view.diverged)
    assert diverged.size  # a learning rate of 30 with relu diverges at once
    rungs = np.asarray(view.scheduler["rungs"])
    settled = view.settled()
    for i in diverged:
        stop = rungs[view.runs.rung.iloc[i]]
        assert stop < rungs[-1]  # its configuration was never promoted to the end
        assert (settled[i, view.runs.epochs_run.iloc[i] : stop] == DIVERGED).all()
        assert np.isnan(settled[i, stop:]).all()


def test_the_notes_count_pruned_runs_as_final(url):
    lab = nnlab.connect(url)
    page = render_report(lab, ["sha"])
    pruned = lab.sweep("sha").statuses["pruned"]
    note = (
        f"{pruned} of 16 runs were pruned by the sweep&#39;s scheduler (sha): they stopped at a "
        "rung, so their curves end there"
    )
    assert note in page
    assert "No run has finished" not in page and "Every finished run diverged" not in page
    caption = "a pruned run&#39;s curve stops at its rung"
    assert caption in section(page, "curves")
    assert caption not in render_report(lab, ["full"])
