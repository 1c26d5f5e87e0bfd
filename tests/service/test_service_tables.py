"""GET /api/sweeps/{name}/configurations paged, sorted and filtered on the server (issue 11),
through a real uvicorn server against the ranking ``nnlab.connect`` reads directly."""

from __future__ import annotations

import itertools

import pytest
from served import client_of, fill_with_trouble, get_json

import nnlab
from nnlab.store import open_store, register_sweep
from nnlab.store.registry import RunRow

RATES = (0.1, 0.01, 1.0)
ACTIVATIONS = ("relu", "tanh")
BATCHES = (32, None)  # None: batch GD, a null batch_size
NOISES = (0.2, 0.3)


def write_grid(url: str) -> str:
    """``fill_with_trouble``'s sweeps, and sweep ``grid``: 3 learning rates × 2 activations × 2
    batch sizes × 2 data noises, one seed each, all pending."""
    fill_with_trouble(url)
    rows = [
        RunRow(
            {
                "learning_rate": rate,
                "activation": activation,
                "gd": "minibatch" if batch else "batch",
                "batch_size": batch,
                "data": {"name": "moons", "noise": noise},
            },
            f"{rate}-{activation}-{batch}-{noise}",
            0,
        )
        for rate, activation, batch, noise in itertools.product(RATES, ACTIVATIONS, BATCHES, NOISES)
    ]
    register_sweep(open_store(url), "grid", rows)
    return url


@pytest.fixture(scope="module")
def served_url(tmp_path_factory) -> str:
    return write_grid(f"sqlite:///{tmp_path_factory.mktemp('tables') / 'nnlab.db'}")


@pytest.fixture(scope="module")
def client(served_url):
    with client_of(served_url) as client:
        yield client


def ranked(client, query: str, sweep: str = "grid") -> tuple[list[dict], int]:
    """The rows and the X-Total-Count of the ranking of ``sweep`` with ``query``."""
    response = client.get(f"/api/sweeps/{sweep}/configurations?{query}")
    assert response.status_code == 200, response.text
    return response.json(), int(response.headers["x-total-count"])


def test_without_parameters_it_is_the_whole_ranking_with_its_count(client, served_url):
    rows, total = ranked(client, "", "acts")
    expected = nnlab.connect(served_url).configurations("acts", "val_loss")
    assert [row["configuration"] for row in rows] == expected.configuration.tolist()
    assert total == len(rows) == 3


def test_pages_put_together_are_the_ranking(client):
    everything, total = ranked(client, "")
    pages = [ranked(client, f"limit=10&offset={offset}") for offset in (0, 10, 20, 30)]
    assert [len(rows) for rows, _ in pages] == [10, 10, 4, 0]
    assert {count for _, count in pages} == {total} == {24}
    assert [row for rows, _ in pages for row in rows] == everything


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sorting_is_stable_with_nulls_last_either_way(client, order):
    rows, _ = ranked(client, f"sort=batch_size&order={order}")
    sizes = [row["batch_size"] for row in rows]
    assert sizes == [32] * 12 + [None] * 12
    everything, _ = ranked(client, "")
    ties = [row["configuration"] for row in everything if row["batch_size"] == 32]
    assert [row["configuration"] for row in rows[:12]] == ties
    rates = [row["learning_rate"] for row in ranked(client, f"sort=learning_rate&order={order}")[0]]
    assert rates == sorted(rates, reverse=order == "desc")


def test_sort_defaults_to_ascending_and_any_column_sorts(client):
    rows, _ = ranked(client, "sort=configuration")
    assert [row["configuration"] for row in rows] == sorted(row["configuration"] for row in rows)


def test_filters_keep_the_rows_with_any_of_their_values(client):
    rows, total = ranked(client, "activation=relu&learning_rate=0.1&data.noise=0.2")
    assert total == len(rows) == 2
    assert {(r["activation"], r["learning_rate"], r["data.noise"]) for r in rows} == {
        ("relu", 0.1, 0.2)
    }
    rows, total = ranked(client, "learning_rate=1&learning_rate=0.01&batch_size=32&limit=3")
    assert total == 8 and len(rows) == 3
    assert {row["learning_rate"] for row in rows} <= {1.0, 0.01}
    _, total = ranked(client, "batch_size=null&gd=batch")
    assert total == 12
    assert ranked(client, "activation=gelu") == ([], 0)


def test_the_token_parameter_is_not_a_filter(client):
    assert ranked(client, "token=abc")[1] == 24


@pytest.mark.parametrize(
    ("query", "named", "near"),
    [
        ("sort=learnig_rate", "unknown sort column 'learnig_rate'", ["learning_rate"]),
        ("activatoin=relu", "unknown filter 'activatoin'", ["activation"]),
        ("runs=1", "unknown filter 'runs'", []),  # a count, not a setting
        ("order=up", "unknown order 'up'", []),
        ("order=des&sort=runs", "unknown order 'des'", ["desc"]),
    ],
)
def test_an_unknown_column_or_order_is_400_with_did_you_mean(client, query, named, near):
    answer = get_json(client, f"/api/sweeps/grid/configurations?{query}", status=400)
    assert answer["error"].startswith(named)
    assert answer["did_you_mean"][: len(near)] == near


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("limit=0", "limit must be an integer from 1 to 1000, got '0'"),
        ("limit=1001", "limit must be an integer from 1 to 1000, got '1001'"),
        ("limit=ten", "limit must be an integer from 1 to 1000, got 'ten'"),
        ("offset=-1", "offset must be a non-negative integer, got '-1'"),
        ("offset=1.5", "offset must be a non-negative integer, got '1.5'"),
    ],
)
def test_a_bad_limit_or_offset_is_400_naming_it(client, query, expected):
    answer = get_json(client, f"/api/sweeps/grid/configurations?{query}", status=400)
    assert answer["error"] == expected


def test_an_unknown_sweep_is_still_404(client):
    answer = get_json(client, "/api/sweeps/gird/configurations?limit=5", status=404)
    assert answer["did_you_mean"] == ["grid"]
