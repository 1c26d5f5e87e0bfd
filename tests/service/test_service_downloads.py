"""nnlab serve's downloads, through a real uvicorn server: a sweep's runs and epochs as CSV,
and its report as the page ``nnlab report`` writes; sweep names chosen to do harm stay
harmless in file names, cells and pages."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote

import pandas as pd
import pytest
from conftest import fill
from served import HOSTILE_NAMES, add_sweep, client_of

import nnlab
from nnlab.report import file_stem, render_report
from nnlab.service import downloads
from nnlab.service.guards import REPORT_POLICY, SECURITY_HEADERS


@pytest.fixture(scope="module")
def served_url(tmp_path_factory) -> str:
    url = fill(f"sqlite:///{tmp_path_factory.mktemp('downloads') / 'nnlab.db'}")
    for name in HOSTILE_NAMES:
        add_sweep(url, name)
    return url


@pytest.fixture(scope="module")
def client(served_url):
    with client_of(served_url) as client:
        yield client


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def downloaded(client, path: str, filename: str) -> pd.DataFrame:
    """The CSV attachment at ``path``, named ``filename``, read by pandas."""
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == f'attachment; filename="{filename}"'
    return pd.read_csv(io.StringIO(answer.text))


def test_the_runs_download_is_the_runs_of_the_sweep(client, served_url):
    got = downloaded(client, "/api/sweeps/acts/runs.csv", "acts-runs.csv")
    expected = nnlab.connect(served_url).runs(sweep="acts")
    assert list(got.columns) == list(expected.columns)
    assert got.run_id.tolist() == expected.run_id.tolist()
    assert got.final_val_loss.tolist() == expected.final_val_loss.tolist()  # to the last bit


def test_the_epochs_download_is_every_epoch_of_the_sweep(client, served_url):
    got = downloaded(client, "/api/sweeps/acts/epochs.csv", "acts-epochs.csv")
    expected = nnlab.connect(served_url).epochs(sweep="acts")
    assert list(got.columns) == list(expected.columns)
    assert got[["run_id", "epoch"]].equals(expected[["run_id", "epoch"]])
    assert got.val_loss.tolist() == expected.val_loss.tolist()


def test_the_epochs_come_a_chunk_of_runs_at_a_time(served_url, monkeypatch):
    """A header, then one piece per ``RUNS_PER_CHUNK`` runs: never the whole sweep at once."""
    monkeypatch.setattr(downloads, "RUNS_PER_CHUNK", 4)
    lab = nnlab.connect(served_url)
    runs = downloads.run_ids(lab, "acts")
    chunks = list(downloads.epochs_csv(lab, "acts", runs))
    assert len(runs) == 6 and len(chunks) == 3
    assert chunks[0].count("\n") == 1  # the header alone
    assert [len(rows(chunks[0] + chunk)) for chunk in chunks[1:]] == [4 * 4, 2 * 4]


def test_a_sweep_without_epochs_downloads_a_header(tmp_path):
    url = f"sqlite:///{tmp_path / 'nnlab.db'}"
    add_sweep(url, "empty", runs=1, epochs=0)
    with client_of(url) as client:
        answer = client.get("/api/sweeps/empty/epochs.csv")
    assert answer.status_code == 200
    assert answer.text.startswith("run_id,sweep,") and answer.text.count("\n") == 1


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_never_reaches_the_file_name(client, name):
    stem = file_stem(name)
    assert re.fullmatch(r"[a-z0-9-]+", stem)
    for suffix in ("runs.csv", "epochs.csv"):
        answer = client.get(f"/api/sweeps/{quote(name, safe='')}/{suffix}")
        assert answer.status_code == 200, answer.text
        disposition = answer.headers["content-disposition"]
        assert disposition == f'attachment; filename="{stem}-{suffix}"'


def test_a_cell_a_spreadsheet_would_run_is_text(client):
    """A sweep named ``=HYPERLINK(…)``: its name cells start with ``'``; numbers stay numbers,
    negative ones included."""
    name = HOSTILE_NAMES[2]
    answer = client.get(f"/api/sweeps/{quote(name, safe='')}/runs.csv")
    assert {row["sweep"] for row in rows(answer.text)} == {"'" + name}
    frame = pd.DataFrame({"text": ["=1+2", "+1", "-1", "@A1", "\tx", "plain"], "n": [-1.5] * 6})
    defused = rows(downloads.csv_text(frame))
    assert [row["text"] for row in defused] == ["'=1+2", "'+1", "'-1", "'@A1", "'\tx", "plain"]
    assert {row["n"] for row in defused} == {"-1.5"}


@pytest.mark.parametrize("suffix", ["runs.csv", "epochs.csv", "report"])
def test_an_unknown_sweep_is_a_json_404_with_near_misses(client, suffix):
    path = "/sweeps/act/report" if suffix == "report" else f"/api/sweeps/act/{suffix}"
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["did_you_mean"] == ["acts"]
    assert "content-disposition" not in answer.headers


def test_the_report_is_the_page_nnlab_report_writes(client, served_url):
    answer = client.get("/sweeps/acts/report")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.text == render_report(nnlab.connect(served_url), ["acts"])
    assert "content-disposition" not in answer.headers
    assert answer.headers["content-security-policy"] == REPORT_POLICY
    assert "script-src" not in REPORT_POLICY and "frame-ancestors 'none'" in REPORT_POLICY
    for header in ("X-Frame-Options", "X-Content-Type-Options", "Cache-Control"):
        assert answer.headers[header] == SECURITY_HEADERS[header]


def test_the_report_as_a_download(client):
    answer = client.get("/sweeps/acts/report?download=1")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="acts-report.html"'
    assert client.get("/sweeps/acts/report?download=yes").status_code == 400


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_is_text_in_the_report(client, name):
    answer = client.get(f"/sweeps/{quote(name, safe='')}/report?download=1")
    assert answer.status_code == 200, answer.text
    assert f'filename="{file_stem(name)}-report.html"' in answer.headers["content-disposition"]
    assert "<img src=x" not in answer.text
    if "<" in name:
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in answer.text
