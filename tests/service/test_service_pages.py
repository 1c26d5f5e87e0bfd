"""The web UI's pages and the JSON they draw from (issue 11): HTML shells with no inline script
and every user string escaped, the package's static files by fixed name only, and the
heatmap, failures, details and per-configuration curves, checked against what pandas computes
from ``nnlab.connect``. Every request goes through a real uvicorn server on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from served import client_of, fill_with_trouble, get_json

import nnlab
from nnlab.service.pages import static_files
from nnlab.service.views import eta_seconds

HOSTILE = '"><img src=x onerror=alert(1)>'
GRID = {"learning_rate": [0.05, 0.5], "activation": ["tanh", "relu"]}


def run_grid(url: str) -> str:
    """Sweep ``grid``: learning rate × activation × 2 seeds, 4 epochs on moons, trained for
    real; and sweep ``HOSTILE`` of one configuration."""
    spec = {
        "name": "grid",
        "description": "two axes",
        "data": {"name": "moons", "n_samples": 80, "val_fraction": 0.25},
        "model": {"hidden": [4]},
        "train": {"epochs": 4},
        "grid": GRID,
        "seeds": [0, 1],
    }
    nnlab.sweep(spec, url, report=False)
    hostile = {**spec, "name": HOSTILE, "description": "<b>bold</b>", "grid": {}, "seeds": [0]}
    nnlab.sweep(hostile, url, report=False)
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served_url(request, tmp_path_factory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'nnlab.db'}"
    else:
        url = request.getfixturevalue("pg_server").new_database()
    return fill_with_trouble(run_grid(url))


@pytest.fixture(scope="module")
def client(served_url):
    with client_of(served_url) as client:
        yield client


@pytest.fixture(scope="module")
def lab(served_url):
    return nnlab.connect(served_url)


class Markup(HTMLParser):
    """What a page's HTML holds: its script and style tags, event-handler and style
    attributes, and every element's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self.inline: list[str] = []
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        if tag == "script":
            self.scripts.append(attributes)
        if tag == "style" or "style" in attributes:
            self.inline.append(f"style on <{tag}>")
        self.inline += [f"{name} on <{tag}>" for name in attributes if name.startswith("on")]

    def handle_data(self, data) -> None:
        if self.lasttag == "script" and data.strip():
            self.inline.append(f"inline script {data[:40]!r}")


def parsed(client, path: str, status: int = 200) -> tuple[Markup, str]:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    markup = Markup()
    markup.feed(response.text)
    return markup, response.text


PAGES = ["/", "/sweeps/grid", "/runs/1", "/compare?sweeps=grid,acts", "/compare"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_load_their_script_from_static_and_hold_no_inline_script(client, path):
    markup, _ = parsed(client, path)
    assert markup.inline == []
    sources = [script["src"] for script in markup.scripts]
    assert len(sources) == 1 and sources[0].startswith("/static/")
    assert sources[0].removeprefix("/static/") in static_files()


def test_a_hostile_sweep_name_and_description_are_escaped_text(client):
    markup, text = parsed(client, f"/sweeps/{quote(HOSTILE, safe='')}")
    assert "<img" not in text and "<b>" not in text
    assert [tag for tag, _ in markup.elements].count("img") == 0
    main = next(attributes for tag, attributes in markup.elements if tag == "main")
    assert main["data-sweep"] == HOSTILE  # the script reads it back exactly
    assert "&lt;b&gt;bold&lt;/b&gt;" in text


def test_unknown_pages_are_404_pages_with_a_did_you_mean(client):
    _, text = parsed(client, "/sweeps/gird", status=404)
    assert "&#39;gird&#39;" in text
    assert 'href="/sweeps/grid"' in text
    parsed(client, "/runs/99999", status=404)
    _, text = parsed(client, "/compare?runs=1,x", status=400)
    assert "&#39;x&#39;" in text
    parsed(client, "/compare?sweeps=grid,nope", status=404)
    parsed(client, "/compare?runs=" + ",".join(map(str, range(1, 14))), status=400)


def test_static_files_are_served_by_fixed_name_with_their_types(client):
    for name, (content, media_type) in static_files().items():
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.content == content
        assert response.headers["content-type"] == media_type
    assert {"charts.js", "common.js", "sweep.js", "style.css"} <= set(static_files())


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../etc/passwd",
        "/static/..%2F..%2Fetc%2Fpasswd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/%252e%252e%252fetc%252fpasswd",
        "/static/..\\..\\etc\\passwd",
        "/static/",
        "/static/sweep.js.map",
        "/static/../app.py",
        "/static/%2e%2e%2fapp.py",
    ],
)
def test_no_path_reaches_the_filesystem(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert b"root:" not in response.content and b"create_app" not in response.content


def test_details_name_the_grid_and_the_ranking_metric(client):
    details = get_json(client, "/api/sweeps/grid")
    assert details["axes"] == ["learning_rate", "activation"]
    assert details["metric"] == "val_loss"
    assert details["final"] == details["runs"] == 8
    assert details["eta_seconds"] is None  # nothing left
    assert details["started_at"] is not None


def test_a_failed_run_has_ended_and_leaves_nothing_to_wait_for(client):
    details = get_json(client, "/api/sweeps/broken")
    assert details["statuses"] == {"failed": 1}
    assert details["final"] == details["runs"] == 1
    assert details["eta_seconds"] is None


def test_eta_is_the_time_left_at_the_rate_runs_ended():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert eta_seconds(start, 4, 12, start + timedelta(seconds=10)) == 30.0
    assert eta_seconds(start.replace(tzinfo=None), 1, 1, start + timedelta(seconds=3)) == 3.0
    assert eta_seconds(None, 4, 12, start) is None
    assert eta_seconds(start, 0, 12, start) is None


def test_the_heatmap_holds_the_median_final_loss_of_the_clean_runs_in_each_cell(client, lab):
    cells = get_json(client, "/api/sweeps/grid/heatmap?rows=activation&columns=learning_rate")
    assert (cells["row_values"], cells["column_values"]) == (["tanh", "relu"], ["0.05", "0.5"])
    runs = lab.runs(sweep="grid")
    for i, activation in enumerate(GRID["activation"]):
        for j, rate in enumerate(GRID["learning_rate"]):
            cell = runs[(runs.activation == activation) & (runs.learning_rate == rate)]
            clean = cell[cell.status == "completed"]
            assert cells["total"][i][j] == len(cell) == 2
            assert cells["diverged"][i][j] == (cell.status == "diverged").sum()
            if len(clean):
                assert cells["median"][i][j] == pytest.approx(clean.final_val_loss.median())


def test_the_heatmap_names_a_bad_setting_with_a_did_you_mean(client):
    body = get_json(client, "/api/sweeps/grid/heatmap?rows=activaton&columns=seed", status=400)
    assert "activaton" in body["error"] and body["did_you_mean"] == ["activation"]
    body = get_json(client, "/api/sweeps/grid/heatmap?rows=activation&columns=x&metric=acc", 400)
    assert "metric" in body["error"]
    get_json(client, "/api/sweeps/nope/heatmap?rows=a&columns=b", status=404)


def test_the_heatmap_of_an_accuracy_is_a_400_naming_the_metrics_it_has(client):
    query = "rows=activation&columns=learning_rate&metric=val_accuracy"
    body = get_json(client, f"/api/sweeps/grid/heatmap?{query}", status=400)
    assert body["error"].startswith("unknown metric 'val_accuracy'; expected one of")
    assert "'val_loss'" in body["error"]


def test_failures_are_grouped_by_their_last_line(client, lab):
    (group,) = get_json(client, "/api/sweeps/broken/failures")
    assert group["message"] == "RuntimeError: the loss blew up"
    assert group["runs"] == lab.runs(sweep="broken").run_id.tolist()
    assert group["error"].startswith("Traceback")
    assert get_json(client, "/api/sweeps/grid/failures") == []


def test_curves_by_configuration_follow_the_ranking_and_hold_each_ones_seeds(client, lab):
    ranked = lab.configurations("grid")
    settings = lab.settings("grid")
    groups = get_json(client, "/api/sweeps/grid/curves?by=configuration&top=3")
    assert [g["value"] for g in groups] == ranked.configuration.head(3).tolist()
    for group, (_, best) in zip(groups, ranked.head(3).iterrows(), strict=True):
        seeds = settings.run_id[settings.configuration == best.configuration].tolist()
        assert group["runs"] == seeds
        assert group["label"] == (
            f"learning_rate {best.learning_rate:g}, activation {best.activation}"
        )
    body = get_json(client, "/api/sweeps/grid/curves?by=configuration&top=0", status=400)
    assert body["error"] == "top must be an integer from 1 to 100, got '0'"


def test_each_runs_curve_names_its_configuration(client, lab):
    series = get_json(client, "/api/sweeps/grid/curves")
    settings = lab.settings("grid").set_index("run_id")
    for run in series:
        assert run["configuration"] == settings.configuration[run["run_id"]]
        rate, activation = settings.loc[run["run_id"], ["learning_rate", "activation"]]
        assert run["label"] == f"learning_rate {rate:g}, activation {activation}"
