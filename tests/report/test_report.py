"""HTML convergence reports: content, ranking, partial data, hostile names, paths, the CLI."""

from __future__ import annotations

import base64
import io
import math
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import pytest
from click.testing import CliRunner

import nnlab
from nnlab.checks import InputError
from nnlab.cli import cli
from nnlab.report import file_stem, mean_std, render_report, write_report
from nnlab.report.analysis import load_sweep
from nnlab.store import RunWriter, UnknownSweepError, open_store, register_sweep
from nnlab.store.queue import RunQueue
from nnlab.store.registry import RunRow
from nnlab.sweeps.runner import run_sweep
from nnlab.sweeps.spec import parse_spec

SPEC = textwrap.dedent("""\
    name: small
    description: two rates, three GD variants, two activations
    data: {name: spirals, n_samples: 90, classes: 3, noise: 0.2, val_fraction: 0.2}
    model: {hidden: [8]}
    train: {epochs: 6, optimizer: sgd}
    grid:
      learning_rate: [0.05, 0.5]
      gd: [batch, stochastic, minibatch]
      batch_size: [8]
      activation: [tanh, relu]
    seeds: [0, 1]
""")
PARTS = (
    "summary",
    "best",
    "curves",
    "fit",
    "heatmap",
    "gd",
    "marginal",
    "schedule",
    "failures",
    "spec",
)
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1">'


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> str:
    """A database holding one real, finished sweep: 24 runs of 6 epochs."""
    url = f"sqlite:///{tmp_path_factory.mktemp('real') / 'nnlab.db'}"
    run_sweep(parse_spec(SPEC), url)
    return url


def _as_trained(settings: dict) -> dict:
    """Settings as a sweep stores them: batch GD trains on every sample (batch size None),
    stochastic GD on one (see nnlab.sweeps.grid.as_trained)."""
    sizes = {"batch": None, "stochastic": 1}
    gd = settings["gd"]
    return {**settings, "batch_size": sizes[gd]} if gd in sizes else settings


def write_sweep(
    url: str, name: str, runs: list, *, status="finished", description="", accuracy=False
) -> None:
    """Register ``name`` and write each run as ``(settings, seed, run status, losses)``: its
    validation loss after each epoch (the training loss 0.9 × that), and with ``accuracy`` a
    validation accuracy of 1 / (1 + loss) (training: 1 / (1 + 0.9 × loss)). Pending runs get
    no epochs; running ones stay running."""
    store = open_store(url)
    base = {
        "learning_rate": 0.1,
        "batch_size": 16,
        "activation": "tanh",
        "gd": "minibatch",
        "optimizer": "sgd",
        "hidden": [4],
        "epochs": 4,
    }
    rows = [
        RunRow(_as_trained({**base, **settings, "seed": seed}), f"{i}", seed)
        for i, (settings, seed, _, _) in enumerate(runs)
    ]
    sweep_id = register_sweep(store, name, rows, description=description, spec=f"name: {name}\n")
    ids = nnlab.connect(url).runs(sweep=name).run_id.tolist()
    for run_id, (_, _, run_status, losses) in zip(ids, runs, strict=True):
        if run_status == "pending":
            continue
        with RunWriter(store, run_id, flush_seconds=0, heartbeat_seconds=0) as writer:
            writer.start()
            for epoch, loss in enumerate(losses, 1):
                writer.log(_record(epoch, loss, accuracy))
            if run_status == "running":
                writer.flush()
            else:
                error = "Traceback (most recent call last):\nValueError: boom <b>" * (
                    run_status == "failed"
                )
                writer.finish(run_status, error or None)
    RunQueue(store, sweep_id).settle_sweep(ran=False)  # the status its runs give it
    assert nnlab.connect(url).sweep(name).status == status


def _record(epoch: int, loss: float, accuracy: bool) -> dict:
    record = {"epoch": epoch, "train_loss": loss * 0.9, "val_loss": loss, "seconds": 0.01}
    if accuracy:
        record.update(train_accuracy=1 / (1 + loss * 0.9), val_accuracy=1 / (1 + loss))
    return record


def parts(html: str) -> list[str]:
    return re.findall(r'data-part="([a-z]+)"', html)


def images(html: str) -> list[tuple[str, bytes]]:
    found = re.findall(r'src="data:image/([a-z+]+);base64,([^"]+)"', html)
    return [(mime, base64.b64decode(data)) for mime, data in found]


def figure(html: str, what: str) -> bytes:
    """The image whose alt text ends with ``what`` (``curves``, ``heatmaps``, …)."""
    (data,) = re.findall(rf'src="data:image/[a-z+]+;base64,([^"]+)" alt="[^"]*: {what}"', html)
    return base64.b64decode(data)


def svg_text(svg: bytes) -> str:
    """The text of an SVG figure (text stays text: svg.fonttype is none)."""
    return " ".join(ET.fromstring(svg).itertext())


# --- a real sweep -----------------------------------------------------------------------------


def test_a_real_sweep_gets_every_section_in_one_offline_file(real):
    html = render_report(nnlab.connect(real), ["small"])
    assert parts(html) == list(PARTS)
    assert "two rates, three GD variants, two activations" in html
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'' in html
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)
    figures = images(html)
    assert {mime for mime, _ in figures} == {"png", "svg+xml"}  # curves dense, the rest light
    for mime, data in figures:
        if mime == "png":
            assert matplotlib.image.imread(io.BytesIO(data)).std() > 0.05
        else:
            assert ET.fromstring(data).tag.endswith("svg")
    assert "24: 24 completed" in html
    assert "learning_rate (2 values), batch_size (3 values), activation (2 values), gd (3" in html


def test_the_report_is_a_pure_function_of_the_store(real):
    lab = nnlab.connect(real)
    html = render_report(lab, ["small"])
    assert render_report(lab, ["small"]) == html
    page = "nnlab.render_report(nnlab.connect(sys.argv[1]), ['small'])"
    script = f"import sys, nnlab; sys.stdout.write({page})"
    command = [sys.executable, "-c", script, real]
    fresh = subprocess.run(command, capture_output=True, text=True, check=True)
    assert fresh.stdout == html  # another process, same store: the same page


def test_a_report_from_postgresql_matches_the_one_from_sqlite(real, pg_server):
    url = pg_server.new_database()
    run_sweep(parse_spec(SPEC), url)
    html = render_report(nnlab.connect(url), ["small"])
    assert parts(html) == list(PARTS) and "Best configurations" in html
    columns = ["learning_rate", "gd", "activation", "final_mean", "best_mean"]
    tables = []
    for database in (url, real):
        view = load_sweep(nnlab.connect(database), "small")
        view.set_threshold(0.5)
        tables.append(view.configurations[columns])
    on_postgres, on_sqlite = tables
    assert on_postgres.to_dict("records") == on_sqlite.to_dict("records")  # same runs, same curves


def test_the_heatmaps_pair_the_settings_and_the_gd_comparison_uses_seconds(real):
    html = render_report(nnlab.connect(real), ["small"])
    _fit, heatmap, gd, marginal = [
        svg_text(data) for mime, data in images(html) if mime == "svg+xml"
    ]
    assert "learning_rate × activation" in heatmap and "activation × gd" in heatmap
    assert "all" in heatmap  # batch GD's batch size
    assert "against wall-clock time" in gd and "seconds of training" in gd
    assert "learning_rate" in marginal and "activation" in marginal


def test_write_report_defaults_to_the_reports_folder(real, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = nnlab.write_report(nnlab.connect(real), ["small"])  # the top-level entry point
    assert path == Path("reports/small.html") and path.read_text().startswith("<!doctype html>")
    assert path.read_text() == nnlab.render_report(nnlab.connect(real), ["small"])
    folder = tmp_path / "out"
    folder.mkdir()
    assert write_report(nnlab.connect(real), ["small"], folder) == folder / "small.html"


def test_cli_writes_the_report_and_prints_its_path(real, tmp_path):
    target = tmp_path / "deep" / "r.html"
    args = ["report", "small", "--db", real, "-o", str(target), "--metric", "train_loss"]
    result = CliRunner().invoke(cli, [*args, "--threshold", "0.9"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(target)
    html = target.read_text()
    assert "Metric <b>train_loss</b>; threshold <b>0.9</b> (as given)" in html
    assert "final train_loss" in html


def test_cli_unknown_sweep_exits_2_naming_it_and_writes_nothing(real, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["report", "smal", "--db", real])
    assert result.exit_code == 2
    assert "no sweep named 'smal'" in result.output and "Did you mean 'small'?" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "accuracy"], "'accuracy' is not one of 'val_loss', 'train_loss'"),
        (["--threshold", "-1"], "threshold must be a finite number > 0, got -1.0"),
    ],
)
def test_cli_bad_options_exit_2(real, args, message):
    result = CliRunner().invoke(cli, ["report", "small", "--db", real, *args])
    assert result.exit_code == 2 and message in result.output


def test_python_api_errors_name_the_mistake(real):
    lab = nnlab.connect(real)
    with pytest.raises(UnknownSweepError, match="no sweep named 'nope'"):
        render_report(lab, ["small", "nope"])
    with pytest.raises(InputError, match="unknown metric 'loss'"):
        render_report(lab, ["small"], metric="loss")
    with pytest.raises(InputError, match="name at least one sweep"):
        render_report(lab, [])


def test_the_report_imports_neither_engine_nor_runner():
    code = (
        "import sys, nnlab.report; "
        "print(sorted(m for m in sys.modules if m.startswith(('nnlab.engine', 'nnlab.sweeps'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


# --- ranking --------------------------------------------------------------------------------


def test_a_configuration_with_a_diverged_seed_never_ranks_first(sqlite_url):
    # configuration A: two superb seeds and one that diverged; B: three mediocre seeds
    superb, mediocre, blown = [1.0, 0.1, 0.01, 0.001], [1.0, 0.6, 0.4, 0.3], [1.0, 50.0, 1e4]
    runs = [
        ({"learning_rate": 0.5}, 0, "completed", superb),
        ({"learning_rate": 0.5}, 1, "completed", superb),
        ({"learning_rate": 0.5}, 2, "diverged", blown),
        ({"learning_rate": 0.05}, 0, "completed", mediocre),
        ({"learning_rate": 0.05}, 1, "completed", mediocre),
        ({"learning_rate": 0.05}, 2, "completed", mediocre),
    ]
    write_sweep(sqlite_url, "rank", runs)
    lab = nnlab.connect(sqlite_url)
    view = load_sweep(lab, "rank")
    view.set_threshold(0.5)
    table = view.configurations
    assert table.learning_rate.tolist() == [0.05, 0.5]
    assert table.diverged.tolist() == [0, 1] and table.final_mean.iloc[1] == pytest.approx(0.001)
    assert table.epochs_to_threshold.tolist() == [3.0, 2.0]  # 0.4 ≤ 0.5 at epoch 3, 0.1 at 2
    html = render_report(lab, ["rank"], threshold=0.5)
    rows = re.findall(r"<tr( class=\"troubled\")?><td>(0\.5|0\.05)</td>", html)
    assert rows[:2] == [("", "0.05"), (' class="troubled"', "0.5")]
    assert "1/3</td>" in html  # diverged k/n
    # the table `nnlab sweep` prints at the end is this one
    summary = lab.configurations("rank")
    assert summary.configuration.tolist() == table.configuration.tolist()
    assert summary.final_val_loss_mean.tolist() == table.final_mean.tolist()


def test_a_mean_over_seeds_reads_the_same_in_the_report_and_the_terminal():
    assert mean_std(0.123456, 0.0123) == "0.1235 ± 0.012"
    assert mean_std(0.5, math.nan) == "0.5"  # a lone clean seed has no spread
    assert mean_std(math.nan, math.nan) == "–"  # no clean seed at all


# --- partial data ---------------------------------------------------------------------------


def test_a_sweep_still_running_says_so_and_shows_what_it_has(sqlite_url):
    runs = [
        ({"learning_rate": 0.1}, 0, "completed", [1.0, 0.5, 0.3, 0.2]),
        ({"learning_rate": 0.2}, 0, "running", [1.0, 0.4]),
        ({"learning_rate": 0.3}, 0, "pending", []),
    ]
    write_sweep(sqlite_url, "live", runs, status="running")
    html = render_report(nnlab.connect(sqlite_url), ["live"])
    assert "The sweep is still running: 1 of 3 runs have finished (1 running, 1 pending" in html
    assert parts(html) == list(PARTS) and "data:image/svg+xml" in html
    assert "1/1</td>" in html  # the unfinished column of the running and the pending run


def test_an_interrupted_sweep_says_how_to_resume(sqlite_url):
    runs = [
        ({"learning_rate": 0.1}, 0, "completed", [1.0, 0.5, 0.3, 0.2]),
        ({"learning_rate": 0.2}, 0, "interrupted", [1.0, 0.4]),
    ]
    write_sweep(sqlite_url, "cut", runs, status="interrupted")
    html = render_report(nnlab.connect(sqlite_url), ["cut"])
    assert "The sweep was interrupted with 1 of 2 runs unfinished: run `nnlab sweep` on its" in html
    assert "<dt>ended</dt><dd>20" in html and "not yet" not in html  # it stopped, at that time


def test_a_sweep_without_epochs_explains_every_empty_section(sqlite_url):
    runs = [({"learning_rate": rate}, 0, "pending", []) for rate in (0.1, 1)]
    write_sweep(sqlite_url, "empty", runs, status="pending")
    html = render_report(nnlab.connect(sqlite_url), ["empty"])
    assert "No epoch has been logged yet: there is nothing to plot." in html
    assert "No curves yet: no epoch has been logged." in html
    assert "No marginal effects: no run has finished without diverging." in html
    assert "threshold <b>none</b>" in html and "data:image" not in html


def test_a_sweep_whose_runs_all_failed_lists_the_errors(sqlite_url):
    write_sweep(
        sqlite_url, "broken", [({"activation": a}, 0, "failed", []) for a in ("tanh", "relu")]
    )
    html = render_report(nnlab.connect(sqlite_url), ["broken"])
    assert "2 of 2 runs failed: see the failures below." in html
    assert "<code>ValueError: boom &lt;b&gt;</code>" in html
    assert "<td>activation tanh</td>" in html


def test_all_diverged(sqlite_url):
    runs = [({"learning_rate": r}, s, "diverged", [1.0, 80.0, 1e5]) for r in (1, 2) for s in (0, 1)]
    write_sweep(sqlite_url, "blown", runs)
    html = render_report(nnlab.connect(sqlite_url), ["blown"])
    assert "Every finished run diverged (4 of 4): no configuration converged." in html
    assert "2/2</td>" in html and "data:image/png" not in html  # few curves: SVG
    assert "No marginal effects: no run has finished without diverging." in html


def test_a_single_run(sqlite_url):
    write_sweep(sqlite_url, "one", [({}, 0, "completed", [1.0, 0.5, 0.4, 0.35])])
    html = render_report(nnlab.connect(sqlite_url), ["one"])
    assert "A single run: there are no seeds to aggregate" in html
    assert "No heatmap: it needs two settings that vary in the grid; nothing varies." in html
    assert "One GD variant only (minibatch)" in html
    assert "<td>the only one</td>" in html and "0.35" in html


def test_a_sweep_with_no_runs(sqlite_url):
    register_sweep(open_store(sqlite_url), "bare", [])
    html = render_report(nnlab.connect(sqlite_url), ["bare"])
    assert "This sweep has no runs." in html and parts(html) == list(PARTS)


# --- several sweeps -------------------------------------------------------------------------


def test_several_sweeps_side_by_side(real, tmp_path):
    runs = [({"learning_rate": r}, 0, "completed", [1.0, r, r / 2, r / 4]) for r in (0.4, 0.8)]
    write_sweep(real, "other", runs)
    lab = nnlab.connect(real)
    html = render_report(lab, ["small", "other", "small"])
    assert parts(html)[0] == "comparison" and parts(html).count("best") == 2
    assert '<a href="#sweep-1">small</a><a href="#sweep-2">other</a>' in html
    assert "Convergence report: small, other" in html
    assert write_report(lab, ["small", "other"], directory=tmp_path).name == "small-vs-other.html"


def test_each_sweep_keeps_its_own_threshold_unless_one_is_given(sqlite_url):
    # issue 10: one threshold for all sweeps changed each sweep's numbers
    for name, scale in (("low", 0.1), ("high", 1.0)):
        runs = [
            ({"learning_rate": r}, 0, "completed", [2.0, scale * r * 10, scale * r * 5])
            for r in (0.1, 0.2)
        ]
        write_sweep(sqlite_url, name, runs)
    lab = nnlab.connect(sqlite_url)
    alone = {}
    for name in ("low", "high"):
        alone[name] = re.search(r"threshold <b>([0-9.]+)</b>", render_report(lab, [name]))[1]
    assert alone == {"low": "0.075", "high": "0.75"}
    html = render_report(lab, ["low", "high"])
    assert "threshold <b>each sweep&#39;s own</b> (see its section;" in html
    for name, level in alone.items():
        section = html[html.index(f'data-sweep="{name}"') :]
        assert f"time to the threshold (<b>{level}</b>: the median best val_loss" in section
        assert f"<b>{level}</b> (the median best val_loss" in html  # side by side, too
    given = render_report(lab, ["low", "high"], threshold=0.5)
    assert given.count("<b>0.5</b> (as given)") == 3  # the header and each side-by-side table


# --- hostile names and paths ----------------------------------------------------------------


def test_every_user_string_is_escaped(sqlite_url):
    runs = [({"activation": name}, 0, "completed", [1, 0.5]) for name in ("<b>x</b>", "tanh")]
    write_sweep(sqlite_url, HOSTILE, runs, description="</p><script>alert(1)</script>")
    html = render_report(nnlab.connect(sqlite_url), [HOSTILE])
    assert "<script" not in html and "<img src=x" not in html and "<b>x</b>" not in html
    assert "&lt;img src=x onerror=&#34;document.body.dataset.pwned=1&#34;&gt;" in html
    assert "&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html  # the setting, in the tables
    drawn = [svg_text(data) for mime, data in images(html) if mime == "svg+xml"]  # parses
    assert any("<b>x</b>" in text for text in drawn)  # the figures show it as written


def test_math_text_in_names_and_settings_is_drawn_as_written(sqlite_url):
    runs = [
        ({"activation": act, "learning_rate": r}, 0, "completed", [1.0, r])
        for act in (r"$\foo$", "$x")
        for r in (0.1, 0.2)
    ]
    write_sweep(sqlite_url, r"$\foo$ sweep", runs, description="costs $5 and $6")
    html = render_report(nnlab.connect(sqlite_url), [r"$\foo$ sweep"])
    assert r"$\foo$ sweep" in html and "costs $5 and $6" in html
    drawn = " ".join(svg_text(data) for mime, data in images(html) if mime == "svg+xml")
    assert r"$\foo$" in drawn and "$x" in drawn


@pytest.mark.parametrize("name", ["../../x", "/etc/x", "..", "a/../../b", "C:\\x", ".hidden"])
def test_sweep_names_never_write_outside_the_folder(sqlite_url, tmp_path, name):
    write_sweep(sqlite_url, name, [({}, 0, "completed", [1.0, 0.5])])
    folder = tmp_path / "reports"
    path = write_report(nnlab.connect(sqlite_url), [name], directory=folder)
    assert path.parent == folder and not path.name.startswith(".")
    written = {p for p in tmp_path.rglob("*") if not p.name.startswith("nnlab.db")}
    assert written == {folder, path}


def test_file_names_are_safe_and_distinct():
    assert file_stem("quickstart") == "quickstart"
    assert file_stem("gd-variants") == "gd-variants"
    assert re.fullmatch(r"x-[0-9a-f]{8}", file_stem("../../x"))
    assert re.fullmatch(r"sweep-[0-9a-f]{8}", file_stem(".."))
    assert file_stem("a b") != file_stem("a-b") != file_stem("A B")
    assert file_stem("Réglages rapides").startswith("reglages-rapides-")


# --- paths ----------------------------------------------------------------------------------


def test_output_with_a_trailing_slash_is_a_folder(sqlite_url, tmp_path):
    write_sweep(sqlite_url, "s", [({}, 0, "completed", [1.0, 0.5])])
    path = write_report(nnlab.connect(sqlite_url), ["s"], f"{tmp_path / 'new'}/")
    assert path == tmp_path / "new" / "s.html" and path.is_file()
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["s.html"]  # no partial file left
