"""nnlab serve is safe by construction: loopback or a token, only the hosts it serves, only
GET and HEAD, no files, the security headers on every answer, the database never created.
Every request goes through a real uvicorn server."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from conftest import fill
from served import free_port, get_when_listening, nnlab_serve, running

from nnlab import service
from nnlab.service.app import create_app
from nnlab.service.guards import SECURITY_HEADERS

TOKEN = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def served_url(tmp_path_factory) -> str:
    return fill(f"sqlite:///{tmp_path_factory.mktemp('safety') / 'nnlab.db'}")


@pytest.fixture(scope="module")
def base(served_url):
    with running(create_app(served_url)) as base:
        yield base


@pytest.fixture(scope="module")
def guarded(served_url):
    """The same database served with a token, as for a non-loopback bind."""
    with running(create_app(served_url, token=TOKEN)) as base:
        yield base


def assert_secured(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name


def test_every_answer_carries_the_security_headers(base):
    answers = [
        httpx.get(f"{base}/api/sweeps"),
        httpx.get(f"{base}/api/sweeps/nope"),
        httpx.get(f"{base}/nothing/here"),
        httpx.post(f"{base}/api/sweeps"),
        httpx.get(f"{base}/api/sweeps", headers={"Host": "evil.example"}),
    ]
    assert [answer.status_code for answer in answers] == [200, 404, 404, 405, 400]
    for answer in answers:
        assert_secured(answer)
        assert answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", ""])
def test_a_foreign_host_header_is_refused(base, host):
    answer = httpx.get(f"{base}/api/sweeps", headers={"Host": host})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("unknown host")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST:1234"])
def test_the_loopback_names_are_served(base, host):
    assert httpx.get(f"{base}/api/sweeps", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "http://evil.example:8765", "http://127.0.0.1.evil.example", "null"],
)
def test_a_foreign_origin_is_refused(base, origin):
    """A page on another site (or a sandboxed one, Origin: null) cannot read the API through
    a visitor's browser, even with its name rebound to 127.0.0.1 (DNS rebinding)."""
    answer = httpx.get(f"{base}/api/sweeps", headers={"Origin": origin})
    assert answer.status_code == 403
    assert answer.json() == {"error": f"cross-origin request from {origin!r} refused"}
    assert_secured(answer)


@pytest.mark.parametrize(
    "origin", ["http://127.0.0.1:8765", "http://localhost", "http://[::1]:1", "HTTP://LOCALHOST"]
)
def test_a_same_host_origin_passes(base, origin):
    assert httpx.get(f"{base}/api/sweeps", headers={"Origin": origin}).status_code == 200


def test_the_policy_allows_only_the_ui_s_own_files():
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("path", ["/api/sweeps", "/api/runs/1", "/nowhere"])
def test_only_get_and_head(base, method, path):
    answer = httpx.request(method, f"{base}{path}")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD"


def test_head_answers_without_a_body(base):
    answer = httpx.head(f"{base}/api/sweeps")
    assert answer.status_code == 200 and answer.content == b""


def raw_get(base: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (an HTTP client would normalise the dots away)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        connection.sendall(request.encode())
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    return int(answer.split()[1]), answer


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../etc/passwd",
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%252e%252e/%252e%252e/etc/passwd",
        "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/../../../etc/passwd",
        "/api/sweeps/..%2f..%2f..%2fetc%2fpasswd",
        "/..%5c..%5cetc%5cpasswd",
        "/etc/passwd",
    ],
)
def test_no_route_serves_files(base, path):
    status, answer = raw_get(base, path)
    assert status == 404
    assert b"root:" not in answer


def test_without_the_token_nothing_is_answered(guarded):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "nnlab_token=wrong"}):
        answer = httpx.get(f"{guarded}/api/sweeps", headers=headers)
        assert answer.status_code == 401, headers
        assert "token" in answer.json()["error"]
        assert_secured(answer)
    assert httpx.get(f"{guarded}/api/sweeps?token=wrong").status_code == 401


def test_the_token_as_query_then_cookie(guarded):
    with httpx.Client(base_url=guarded) as browser:
        first = browser.get(f"/api/sweeps?token={TOKEN}")
        assert first.status_code == 200
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"nnlab_token={TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert browser.get("/api/sweeps/acts").status_code == 200  # the cookie alone


def test_the_token_as_a_bearer_header(guarded):
    answer = httpx.get(f"{guarded}/api/sweeps", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.json()[0]["name"] == "acts"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    assert service.token_for(host, None) is None
    assert service.token_for(host, "given") == "given"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "myhost.example"])
def test_any_other_host_gets_a_new_token(host):
    first, second = service.token_for(host, None), service.token_for(host, None)
    assert len(first) >= 40 and first != second
    assert service.token_for(host, "given") == "given"


def test_the_url_to_open_is_the_root_with_the_token():
    assert service.address("127.0.0.1", 8765, None) == "http://127.0.0.1:8765/"
    assert service.address("::1", 80, "t0k") == "http://[::1]:80/?token=t0k"
    assert service.address("0.0.0.0", 1, "t").startswith(f"http://{socket.gethostname()}:1/?")


def test_the_bound_host_is_allowed():
    loopback = ("localhost", "127.0.0.1", "[::1]")
    assert service.allowed_hosts("192.168.1.20") == (*loopback, "192.168.1.20")
    assert "[fe80::1]" in service.allowed_hosts("fe80::1")
    assert socket.gethostname().lower() in service.allowed_hosts("0.0.0.0")


def test_nnlab_serve_binds_loopback_by_default(served_url):
    port = free_port()
    with nnlab_serve("--db", served_url, "--port", str(port)) as server:
        try:
            lines = [server.stderr.readline(), server.stderr.readline()]
            assert lines[1] == f"open http://127.0.0.1:{port}/\n", lines  # the web UI's root
            answer = get_when_listening(f"http://127.0.0.1:{port}/api/sweeps")
            assert answer.status_code == 200 and answer.json()[0]["name"] == "acts"
        finally:
            server.terminate()


def test_ctrl_c_stops_the_service_at_once_though_an_event_stream_is_open(served_url):
    """A browser tab keeps its event stream open forever: the stop ends it, then exits 0."""
    port = free_port()
    with nnlab_serve("--db", served_url, "--port", str(port)) as server:
        get_when_listening(f"http://127.0.0.1:{port}/api/sweeps")
        url = f"http://127.0.0.1:{port}/api/sweeps/acts/events"
        with httpx.stream("GET", url, timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")  # the stream is open
            started = time.monotonic()
            server.send_signal(signal.SIGINT)
            _, errors = server.communicate(timeout=30)
            assert [line for line in lines if line] == []  # ended by the server
    assert server.returncode == 0 and time.monotonic() - started < 1.5, errors
    assert "Traceback" not in errors and errors.strip().endswith("stopped")


def test_a_missing_database_is_an_error_not_created(tmp_path):
    missing = tmp_path / "missing.db"
    with nnlab_serve("--db", str(missing), "--port", str(free_port())) as server:
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 2
    assert errors.strip().count("\n") == 0 and "no database at" in errors
    assert not missing.exists()


def test_without_uvicorn_it_says_what_to_install(served_url):
    hide = "import sys; sys.modules['uvicorn'] = None; from nnlab.cli import main; main()"
    command = [sys.executable, "-c", hide, "serve", "--db", served_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "Error: nnlab serve needs uvicorn, which is not installed: pip install uvicorn"
    )
