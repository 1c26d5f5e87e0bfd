"""Shared fixtures: small seeded data sets for the engine, fresh databases for the store."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nnlab.data import sine, spirals


@pytest.fixture
def regression() -> tuple[np.ndarray, np.ndarray]:
    """40 noisy samples of sin(x): X of shape (40, 1), y float of shape (40, 1)."""
    data = sine(n_samples=40, seed=0)
    return data.X, data.y


@pytest.fixture
def classification() -> tuple[np.ndarray, np.ndarray]:
    """30 spiral points in 3 classes: X of shape (30, 2), y int64 class ids of shape (30,)."""
    data = spirals(n_samples=30, classes=3, seed=0)
    return data.X, data.y


# --- the tracking store: every store test runs on SQLite and on a real PostgreSQL server ---


@pytest.fixture(scope="session")
def pg_server():
    from postgres import PostgresServer

    try:
        server = PostgresServer()
    except (FileNotFoundError, OSError) as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not available here: {error}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: an SQLite file, or a new database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nnlab.db'}"
    return request.getfixturevalue("pg_server").new_database()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'nnlab.db'}"
