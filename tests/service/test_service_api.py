"""The JSON API of nnlab serve, through a real uvicorn server and a real HTTP client, against
what ``nnlab.connect`` reads directly."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import quote

import pandas as pd
import pytest
from served import ERROR, add_sweep, client_of, fill_with_trouble, get_json

import nnlab


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served_url(request, tmp_path_factory) -> str:
    """A filled database (``fill_with_trouble``): an SQLite file, or one on the test
    PostgreSQL, once per module."""
    if request.param == "sqlite":
        return fill_with_trouble(f"sqlite:///{tmp_path_factory.mktemp('serve') / 'nnlab.db'}")
    return fill_with_trouble(request.getfixturevalue("pg_server").new_database())


@pytest.fixture(scope="module")
def lab(served_url):
    return nnlab.connect(served_url)


@pytest.fixture(scope="module")
def client(served_url):
    with client_of(served_url) as client:
        yield client


def same(got, expected) -> bool:
    """A JSON value is what the reading API gave: null for NaN, infinities, NA and NaT; ISO
    8601 for times; floats to the last bit."""
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same(got[k], v) for k, v in expected.items())
    if isinstance(expected, list | tuple):
        return len(got) == len(expected) and all(map(same, got, expected))
    if expected is None or pd.isna(expected) or expected in (float("inf"), float("-inf")):
        return got is None
    if isinstance(expected, datetime):
        return datetime.fromisoformat(got) == expected
    return got == expected


def assert_rows(records: list[dict], frame: pd.DataFrame) -> None:
    assert [list(record) for record in records] == [list(frame.columns)] * len(frame)
    for record, expected in zip(records, frame.to_dict("records"), strict=True):
        assert same(record, expected), (record, expected)


def test_sweeps_lists_every_sweep(client, lab):
    records = get_json(client, "/api/sweeps")
    assert [record["name"] for record in records] == ["acts", "broken"]
    assert_rows(records, lab.sweeps())


def test_a_sweep_has_its_details_and_statuses(client, lab):
    details = get_json(client, "/api/sweeps/acts")
    expected = lab.sweep("acts")
    assert details["statuses"] == {"completed": 6} and details["runs"] == 6
    assert datetime.fromisoformat(details["created_at"]) == expected.created_at
    assert details["provenance"] == expected.provenance
    assert details["description"] == "activations" and details["finished_at"] is None


def test_runs_of_a_sweep(client, lab):
    assert_rows(get_json(client, "/api/sweeps/acts/runs"), lab.runs(sweep="acts"))


def test_configurations_ranked_by_the_default_metric(client, lab):
    records = get_json(client, "/api/sweeps/acts/configurations")
    assert_rows(records, lab.configurations("acts", "val_loss"))
    assert [record["activation"] for record in records] == ["relu", "tanh", "sigmoid"]


def test_a_failed_run_has_its_settings_provenance_and_error(client, lab):
    run_id = int(lab.runs(sweep="broken").run_id.iloc[0])
    run = get_json(client, f"/api/runs/{run_id}")
    assert run["status"] == "failed" and run["error"] == ERROR
    assert run["config"] == {
        "learning_rate": 10.0,
        "activation": "relu",
        "hidden": [4],
        "epochs": 3,
    }
    assert run["nnlab_version"] == nnlab.__version__ and run["hostname"]
    assert same(run, lab.run(run_id))


def test_nan_and_infinite_metrics_are_null(client, lab):
    run_id = int(lab.runs(sweep="broken").run_id.iloc[0])
    (epoch,) = get_json(client, f"/api/runs/{run_id}/epochs")
    assert epoch["train_loss"] is None and epoch["val_loss"] is None
    assert epoch["grad_norm"] == 1e9 and epoch["batch_size"] is None


def test_epochs_after_an_epoch(client, lab):
    run_id = int(lab.runs(sweep="acts").run_id.iloc[0])
    logged = lab.epochs(runs=[run_id])
    assert_rows(get_json(client, f"/api/runs/{run_id}/epochs"), logged)
    later = get_json(client, f"/api/runs/{run_id}/epochs?after=2")
    assert [epoch["epoch"] for epoch in later] == [3, 4]
    assert_rows(later, logged[logged.epoch > 2].reset_index(drop=True))
    assert get_json(client, f"/api/runs/{run_id}/epochs?after=4") == []


@pytest.mark.parametrize("after", ["-1", "1.5", "two", "", "1e3", "99999999999999999999"])
def test_after_must_be_a_non_negative_integer(client, after):
    answer = get_json(client, f"/api/runs/1/epochs?after={after}", status=400)
    assert "after must be a non-negative integer" in answer["error"]


def test_an_unknown_sweep_is_404_with_did_you_mean(client):
    for path in ("/api/sweeps/act", "/api/sweeps/act/runs", "/api/sweeps/act/configurations"):
        answer = get_json(client, path, status=404)
        assert answer["did_you_mean"] == ["acts"]
        assert (
            "no sweep named 'act'" in answer["error"] and "Did you mean 'acts'?" in answer["error"]
        )


def test_an_unknown_run_is_404(client):
    for path in ("/api/runs/999", "/api/runs/999/epochs"):
        answer = get_json(client, path, status=404)
        assert answer["did_you_mean"] == []
        assert answer["error"].startswith("no run with id 999 in ")


@pytest.mark.parametrize("run_id", ["9223372036854775808", "99999999999999999999999"])
def test_a_run_id_past_any_database_integer_is_404_not_500(client, run_id):
    for path in (f"/api/runs/{run_id}", f"/api/runs/{run_id}/epochs"):
        answer = get_json(client, path, status=404)
        assert answer["error"].startswith(f"no run with id {run_id} in ")
    for path in (f"/runs/{run_id}", f"/compare?runs={run_id}"):
        page = client.get(path)
        assert page.status_code == 404 and f"no run with id {run_id}" in page.text


def test_an_unknown_path_is_a_json_404(client):
    assert get_json(client, "/api/nothing", status=404) == {"error": "Not Found"}
    assert get_json(client, "/api/runs/abc", status=404) == {"error": "Not Found"}


def test_a_sweep_whose_name_holds_a_slash_or_a_percent_is_served_as_itself(tmp_path):
    """``/api/sweeps/x%2Fruns`` is sweep ``x/runs``, not the runs of sweep ``x``."""
    url = f"sqlite:///{tmp_path / 'nnlab.db'}"
    names = ["x", "x/runs", "../../etc/passwd", "a%2Fb", "50% off"]
    for runs, name in enumerate(names, start=1):
        add_sweep(url, name, runs=runs)
    with client_of(url) as client:
        for runs, name in enumerate(names, start=1):
            path = f"/api/sweeps/{quote(name, safe='')}"
            assert get_json(client, path)["name"] == name
            assert {row["sweep"] for row in get_json(client, f"{path}/runs")} == {name}
            assert len(get_json(client, f"{path}/runs")) == runs
            assert len(get_json(client, f"{path}/curves")) == runs
            page = client.get(f"/sweeps/{quote(name, safe='')}")
            assert page.status_code == 200, page.text
            links = re.findall(r'href="(/[^"]*)"', page.text)
            assert f"/api/sweeps/{quote(name, safe='')}/runs.csv" in links
            for link in links:
                assert client.get(link).status_code == 200, link
        assert len(get_json(client, "/api/sweeps/x/runs")) == 1  # the runs of x
