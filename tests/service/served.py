"""A real nnlab serve for the tests: uvicorn in a thread on a free loopback port, and a database
to serve."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from conftest import fill, from_a_terminal

import nnlab
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.registry import RunRow

HOSTILE_NAMES = ('"><img src=x onerror=alert(1)>', "../../etc/passwd", '=HYPERLINK("http://x")')
ERROR = "Traceback (most recent call last):\nRuntimeError: the loss blew up"


@contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 and yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws="none", http="h11", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def client_of(url: str) -> Iterator[httpx.Client]:
    """An HTTP client of a real server of the database at ``url``."""
    from nnlab.service.app import create_app

    with running(create_app(url)) as base, httpx.Client(base_url=base) as client:
        yield client


def get_json(client: httpx.Client, path: str, status: int = 200):
    """GET ``path``, check its status and that it is JSON, and return the JSON."""
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def fill_with_trouble(url: str) -> str:
    """``fill``'s sweep ``acts``, and a sweep ``broken`` of one run that failed after an epoch
    with a NaN validation loss and an infinite training loss."""
    fill(url)
    store = open_store(url)
    config = {"learning_rate": 10.0, "activation": "relu", "hidden": [4], "epochs": 3}
    register_sweep(store, "broken", [RunRow(config, "lr10", 0)], description="fails")
    run_id = int(nnlab.connect(url).runs(sweep="broken").run_id.iloc[0])
    writer = RunWriter(store, run_id, flush_seconds=0)
    writer.start()
    metrics = {"train_loss": math.inf, "val_loss": math.nan, "grad_norm": 1e9, "seconds": 0.01}
    writer.log({"epoch": 1, "learning_rate": 10.0, **metrics})
    writer.finish("failed", error=ERROR)
    return url


def add_sweep(url: str, name: str, runs: int = 2, epochs: int = 3) -> str:
    """A completed sweep ``name`` of ``runs`` seeds of one tanh network, ``epochs`` epochs
    each, its loss falling from 1; returns ``url``."""
    store = open_store(url)
    config = {"learning_rate": 0.1, "activation": "tanh", "hidden": [4], "epochs": epochs}
    register_sweep(store, name, [RunRow(config, f"s{seed}", seed) for seed in range(runs)])
    for run_id in nnlab.connect(url).runs(sweep=name).run_id:
        with RunWriter(store, int(run_id), flush_seconds=0) as writer:
            writer.start()
            for epoch in range(1, epochs + 1):
                loss = 1.0 / epoch + 0.01 * int(run_id)
                metrics = {"train_loss": loss, "val_loss": loss + 0.1, "seconds": 0.01}
                writer.log({"epoch": epoch, "learning_rate": 0.1, "grad_norm": 1.0, **metrics})
            writer.finish("completed")
    return url


def nnlab_serve(*args: str, ignoring: tuple[str, ...] = (), **options) -> subprocess.Popen:
    """``nnlab serve`` as a user starts it (``ignoring``: see ``conftest.from_a_terminal``)."""
    command = from_a_terminal([sys.executable, "-m", "nnlab", "serve", *args], ignoring)
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_when_listening(url: str, seconds: float = 10) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url)
        except httpx.ConnectError:
            assert time.monotonic() < deadline, f"nothing listens at {url}"
            time.sleep(0.05)
