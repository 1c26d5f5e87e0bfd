"""``nnlab serve --open --poll-seconds`` and ``nnlab sweep --serve``, as a user runs them: real
processes, a real server on a free loopback port, real signals; and ``service.serving``, the
same from Python."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import fill, from_a_terminal
from served import free_port, get_when_listening, nnlab_serve

from nnlab import service

NAME = "watch me?now"  # a space and a question mark: the printed URL quotes both
PAGE = quote(NAME, safe="")


def spec(tmp_path: Path, epochs: int, runs: int = 2) -> Path:
    """A sweep spec of ``runs`` learning rates on a small spirals set."""
    rates = ", ".join(str(0.05 * (i + 1)) for i in range(runs))
    text = f"""\
name: {NAME}
data: {{name: spirals, n_samples: 200, classes: 2, noise: 0.2, val_fraction: 0.2}}
model: {{hidden: [8]}}
train: {{epochs: {epochs}, optimizer: sgd, gd: stochastic}}
grid: {{learning_rate: [{rates}]}}
seeds: [0]
"""
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def nnlab_sweep(
    tmp_path: Path, spec: Path, *args: str, ignoring: tuple[str, ...] = ()
) -> subprocess.Popen:
    command = [sys.executable, "-m", "nnlab", "sweep", str(spec), "-q", "--no-report", *args]
    db = ["--db", str(tmp_path / "nnlab.db")]
    return subprocess.Popen(
        from_a_terminal([*command, *db], ignoring),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def runs_of(base: str) -> list[dict]:
    answer = httpx.get(f"{base}/api/sweeps/{PAGE}/runs", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_sweep_is_served_while_it_trains_and_ctrl_c_interrupts_it(tmp_path):
    """The URL comes before the first epoch; the API answers mid-sweep; Ctrl-C then is the
    sweep's interruption, as without --serve: status 130, its one message."""
    port = free_port()
    with nnlab_sweep(
        tmp_path, spec(tmp_path, epochs=2000, runs=3), "--serve", "--port", str(port)
    ) as sweep:
        try:
            line = sweep.stderr.readline()
            assert line == f"serving the sweep read-only at http://127.0.0.1:{port}/sweeps/{PAGE}\n"
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not any(run["status"] == "running" for run in _runs_or_none(base)):
                assert time.monotonic() < deadline and sweep.poll() is None, "no run trains"
                time.sleep(0.1)
            assert {run["status"] for run in runs_of(base)} != {"completed"}  # mid-sweep
            sweep.send_signal(signal.SIGINT)
            _, errors = sweep.communicate(timeout=60)
        finally:
            sweep.kill()
    assert sweep.returncode == 130, errors
    assert errors.splitlines() == [
        "interrupted: in-flight runs are marked interrupted; run the same command again to resume"
    ]
    with pytest.raises(httpx.ConnectError):  # the server stopped with the sweep
        httpx.get(f"{base}/api/sweeps", timeout=5)


def _runs_or_none(base: str) -> list[dict]:
    """The sweep's runs, or none before it is registered."""
    answer = httpx.get(f"{base}/api/sweeps/{PAGE}/runs", timeout=10)
    return answer.json() if answer.status_code == 200 else []


def test_after_the_sweep_it_serves_until_ctrl_c_then_exits_0(tmp_path):
    port = free_port()
    with nnlab_sweep(tmp_path, spec(tmp_path, epochs=3), "--serve", "--port", str(port)) as sweep:
        try:
            url = f"http://127.0.0.1:{port}/sweeps/{PAGE}"
            assert sweep.stderr.readline() == f"serving the sweep read-only at {url}\n"
            finished = sweep.stderr.readline()
            assert finished == f"sweep finished; still serving {url}, Ctrl-C to stop\n"
            runs = runs_of(f"http://127.0.0.1:{port}")
            assert [run["status"] for run in runs] == ["completed", "completed"]
            assert sweep.poll() is None  # still serving
            sweep.send_signal(signal.SIGINT)
            out, errors = sweep.communicate(timeout=30)
        finally:
            sweep.kill()
    assert sweep.returncode == 0, errors
    assert errors == "stopped\n"
    assert out.startswith(f"sweep {NAME!r}: 2 runs")


def test_sigterm_after_the_sweep_stops_the_server_too(tmp_path):
    port = free_port()
    with nnlab_sweep(tmp_path, spec(tmp_path, epochs=3), "--serve", "--port", str(port)) as sweep:
        try:
            sweep.stderr.readline(), sweep.stderr.readline()  # serving, then finished
            sweep.terminate()
            _, errors = sweep.communicate(timeout=30)
        finally:
            sweep.kill()
    assert sweep.returncode == 0 and errors == "stopped\n"


def test_after_a_sweep_started_with_ctrl_c_ignored_it_serves_on_until_sigterm(tmp_path):
    """A shell script's ``nnlab sweep --serve ... &`` starts with SIGINT ignored: the server
    after the sweep leaves it so, and stops on SIGTERM."""
    port = free_port()
    tiny = spec(tmp_path, epochs=3)
    with nnlab_sweep(tmp_path, tiny, "--serve", "--port", str(port), ignoring=("SIGINT",)) as sweep:
        try:
            sweep.stderr.readline(), sweep.stderr.readline()  # serving, then finished
            sweep.send_signal(signal.SIGINT)
            time.sleep(0.5)  # it would have begun to stop by now
            assert [run["status"] for run in runs_of(f"http://127.0.0.1:{port}")] == [
                "completed",
                "completed",
            ]  # answered after the Ctrl-C
            assert sweep.poll() is None
            sweep.terminate()
            _, errors = sweep.communicate(timeout=30)
        finally:
            sweep.kill()
    assert sweep.returncode == 0 and errors == "stopped\n"


def test_serve_started_with_ctrl_c_ignored_serves_on_until_sigterm(served_url):
    """uvicorn takes Ctrl-C even where it is ignored; ``nnlab serve`` leaves it ignored."""
    port = free_port()
    with nnlab_serve("--db", served_url, "--port", str(port), ignoring=("SIGINT",)) as server:
        try:
            server.stderr.readline(), server.stderr.readline()  # serving, open
            assert get_when_listening(f"http://127.0.0.1:{port}/api/sweeps").status_code == 200
            server.send_signal(signal.SIGINT)
            time.sleep(0.5)  # uvicorn would have begun to stop by now
            assert httpx.get(f"http://127.0.0.1:{port}/api/sweeps").status_code == 200
            assert server.poll() is None
            server.terminate()
            _, errors = server.communicate(timeout=30)
        finally:
            server.kill()
    assert server.returncode == 0 and errors.endswith("stopped\n")


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_a_closed_terminal_stops_serve_as_ctrl_c_does(served_url, stop):
    """A hangup raised inside uvicorn's event loop used to print a cancelled task's
    traceback; SIGTERM used to end it killed, without its line."""
    port = free_port()
    with nnlab_serve("--db", served_url, "--port", str(port)) as server:
        try:
            server.stderr.readline(), server.stderr.readline()  # serving, open
            assert get_when_listening(f"http://127.0.0.1:{port}/api/sweeps").status_code == 200
            server.send_signal(getattr(signal, stop))
            _, errors = server.communicate(timeout=30)
        finally:
            server.kill()
    assert (server.returncode, errors) == (0, "stopped\n")


def test_a_taken_port_is_an_error_before_anything_trains(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sweep = nnlab_sweep(tmp_path, spec(tmp_path, epochs=3), "--serve", "--port", str(port))
        out, errors = sweep.communicate(timeout=60)
    assert sweep.returncode == 2 and out == ""
    assert errors == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another port\n"
    )
    assert not (tmp_path / "nnlab.db").exists()  # nothing written


def test_port_without_serve_is_a_mistake(tmp_path):
    sweep = nnlab_sweep(tmp_path, spec(tmp_path, epochs=3), "--port", "8000")
    _, errors = sweep.communicate(timeout=60)
    assert sweep.returncode == 2
    assert errors == "Error: --port 8000 is the port of --serve: add --serve, or drop --port\n"


@pytest.fixture(scope="module")
def served_url(tmp_path_factory) -> str:
    return fill(f"sqlite:///{tmp_path_factory.mktemp('serving') / 'nnlab.db'}")


def test_open_opens_the_printed_url_once_the_server_listens(served_url, tmp_path):
    """``$BROWSER`` is the default browser for Python's ``webbrowser``: here, a script that
    notes the URL it was given and whether the server answered it by then."""
    seen = tmp_path / "seen"
    browser = tmp_path / "browser"
    fetch = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + 'api/sweeps')"
    browser.write_text(f'#!/bin/sh\n{sys.executable} -c "{fetch}" "$1" && echo "$1" > {seen}\n')
    browser.chmod(0o755)
    port = free_port()
    env = {**os.environ, "BROWSER": str(browser)}
    with nnlab_serve("--db", served_url, "--port", str(port), "--open", env=env) as server:
        try:
            lines = [server.stderr.readline(), server.stderr.readline()]
            assert lines[1] == f"open http://127.0.0.1:{port}/\n"
            deadline = time.monotonic() + 20
            while not seen.exists() or not seen.read_text():
                assert time.monotonic() < deadline, "the browser was not opened"
                time.sleep(0.05)
            assert seen.read_text() == f"http://127.0.0.1:{port}/\n"
        finally:
            server.send_signal(signal.SIGINT)
            _, errors = server.communicate(timeout=30)
    assert server.returncode == 0 and errors == "stopped\n"


def test_open_without_a_browser_is_one_note(served_url, tmp_path):
    port = free_port()
    env = {"PATH": str(tmp_path), "BROWSER": str(tmp_path / "no-such-browser")}
    with nnlab_serve("--db", served_url, "--port", str(port), "--open", env=env) as server:
        try:
            server.stderr.readline(), server.stderr.readline()
            note = server.stderr.readline()
            url = f"http://127.0.0.1:{port}/"
            assert note == f"note: no browser could be opened; open {url} yourself\n"
            assert get_when_listening(f"{url}api/sweeps").status_code == 200  # still serving
        finally:
            server.send_signal(signal.SIGINT)
            _, errors = server.communicate(timeout=30)
    assert server.returncode == 0 and errors == "stopped\n"


@pytest.mark.parametrize("seconds", ["0", "-1", "60.5", "nan", "inf"])
def test_poll_seconds_out_of_range_is_one_line(served_url, seconds):
    with nnlab_serve("--db", served_url, "--poll-seconds", seconds) as server:
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 2
    assert errors == (
        f"Error: --poll-seconds must be a finite number in (0, 60], got {float(seconds)!r}\n"
    )


def test_serve_on_a_taken_port_is_one_line_and_no_url(served_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with nnlab_serve("--db", served_url, "--port", str(port)) as server:
            _, errors = server.communicate(timeout=30)
    assert server.returncode == 2
    assert errors == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another port\n"
    )


@pytest.mark.parametrize("host", ["nosuchhost.invalid", "192.0.2.1"])  # unknown; not ours
def test_serve_on_a_host_it_cannot_listen_on_is_one_line(served_url, host):
    with nnlab_serve("--db", served_url, "--host", host, "--port", "8765") as server:
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 2
    assert errors.startswith(f"Error: cannot listen on {host}:8765: ") and errors.count("\n") == 1


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_on_a_port_out_of_range_is_a_usage_error(served_url, port):
    with nnlab_serve("--db", served_url, "--port", port) as server:
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 2
    assert f"Invalid value for '--port': {port} is not in the range 0<=x<=65535." in errors
    assert "Traceback" not in errors


def test_serve_on_port_0_prints_the_port_it_listens_on(served_url):
    with nnlab_serve("--db", served_url, "--port", "0") as server:
        try:
            server.stderr.readline()
            url = server.stderr.readline().removeprefix("open ").strip()
            assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
            assert get_when_listening(f"{url}api/sweeps").status_code == 200
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=30)


@pytest.mark.parametrize("token", ["", " ", "a b", "a;b", "a&b", "naïve"])
def test_a_token_no_url_or_cookie_carries_as_it_is_is_one_line(served_url, token):
    """An empty token would let ``?token=`` in; ``a;b`` would be cut short in the cookie."""
    with nnlab_serve("--db", served_url, "--host", "0.0.0.0", "--token", token) as server:
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 2
    assert errors == (
        f"Error: --token must be letters, digits, '-', '_', '.' or '~' (one or more), "
        f"got {token!r}\n"
    )


def test_poll_seconds_sets_the_retry_of_the_event_stream(served_url):
    """Clients reconnect after twice the poll interval: it shows what the server polls at."""
    port = free_port()
    with nnlab_serve("--db", served_url, "--port", str(port), "--poll-seconds", "2.5") as server:
        try:
            get_when_listening(f"http://127.0.0.1:{port}/api/sweeps")
            events = f"http://127.0.0.1:{port}/api/sweeps/acts/events"
            with httpx.stream("GET", events, timeout=30) as stream:
                assert next(stream.iter_lines()) == "retry: 5000"
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=30)


def test_serving_in_python_is_one_with_block(served_url):
    with service.serving(served_url, 0, "/sweeps/acts") as page:
        base = page.removesuffix("/sweeps/acts")
        assert base.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base}/api/sweeps").json()[0]["name"] == "acts"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/api/sweeps", timeout=5)


def test_serving_creates_a_new_database_for_the_sweep_to_fill(tmp_path):
    """``nnlab sweep --serve`` starts serving before the sweep creates its database."""
    with service.serving(f"sqlite:///{tmp_path / 'new.db'}", 0) as root:
        assert httpx.get(f"{root}api/sweeps").json() == []
