"""``nnlab serve``: a live, read-only web UI and JSON API over the tracking database, on its
own (``serve``) or beside a sweep training into it (``serving``).

Safe by construction: it binds 127.0.0.1 unless told otherwise, and any other address needs a
token; it answers only GET and HEAD, only for the hosts it serves, never serves files, and
opens the database read-only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets
import signal
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator

from nnlab import stops
from nnlab.checks import InputError, check_number
from nnlab.store.database import display_url, open_store, resolve_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
DEFAULT_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 60.0
GRACE_SECONDS = 2
TOKEN = re.compile(r"[A-Za-z0-9_.~-]+")  # what a URL's query and a cookie carry as they are


class MissingExtra(InputError):
    """The service's packages (starlette, uvicorn) are not installed."""


def serve(
    db: str | None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    *,
    open_browser: bool = False,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
) -> None:
    """Serve the database at ``db`` on ``host``:``port`` until interrupted.

    A ``host`` other than loopback needs a ``token``; one is made when none is given. The URL
    to open (the web UI's root, with ``?token=``) is printed on stderr, and with
    ``open_browser`` opened in the default browser once the server listens. Live events
    read the database every ``poll_seconds`` (in (0, 60]).

    Raises ``MissingExtra`` without starlette or uvicorn, ``StoreError`` for a database that
    cannot be opened (a missing SQLite file is not created), ``InputError`` for a bad
    ``poll_seconds``.
    """
    uvicorn, create_app = _packages()
    poll_seconds = check_poll_seconds(poll_seconds)
    token = token_for(host, token)
    hosts = allowed_hosts(host)
    app = create_app(db, token=token, allowed_hosts=hosts, poll_seconds=poll_seconds)
    listener = listen(host, port)  # a taken port or a bad host: one line, before any URL
    try:
        url = address(host, listener.getsockname()[1], token)
        print(f"serving {display_url(resolve_url(db))} read-only", file=sys.stderr)
        print(f"open {url}", file=sys.stderr, flush=True)
        server = _server(uvicorn, app, host=host, port=port)
        if open_browser:
            _open_when_listening(server, url)
        with contextlib.suppress(KeyboardInterrupt), _hangup_stops(server):
            server.run(sockets=[listener])  # uvicorn re-raises the Ctrl-C it stopped on
    finally:
        listener.close()
    print("stopped", file=sys.stderr)


@contextlib.contextmanager
def _hangup_stops(server) -> Iterator[None]:
    """A closed terminal (SIGHUP) stops ``server`` as gracefully as uvicorn stops on SIGINT
    and SIGTERM, unless it is ignored (``nohup``); raised in its event loop, it logged a
    cancelled task's traceback."""
    elsewhere = threading.current_thread() is not threading.main_thread()
    if elsewhere or signal.SIGHUP in stops.ignored():
        yield
        return
    previous = signal.signal(signal.SIGHUP, server.handle_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


@contextlib.contextmanager
def serving(db: str | None, port: int = DEFAULT_PORT, path: str = "/") -> Iterator[str]:
    """Serve the database at ``db`` read-only on loopback ``port`` (0: any free one) from a
    background thread while the ``with`` block runs, e.g. a sweep training into it; yield
    the URL of ``path`` there. The database is created first if it is new.

    Raises ``InputError`` when the port is taken (before anything else is done), and what
    ``serve`` raises.
    """
    uvicorn, create_app = _packages()
    listener = listen(DEFAULT_HOST, port)
    try:
        open_store(db)  # the sweep would create it a moment later; the server cannot
        server = _server(uvicorn, create_app(db))
        # a thread's uvicorn installs no signal handlers (it checks): Ctrl-C and SIGTERM stay
        # the sweep's, in the main thread
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name="nnlab-serve", daemon=True
        )
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped as it started")
            time.sleep(0.01)
        try:
            yield f"http://{DEFAULT_HOST}:{listener.getsockname()[1]}{path}"
        finally:
            server.stop()
            thread.join(timeout=GRACE_SECONDS + 3)
    finally:
        listener.close()


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port``; ``InputError`` when that cannot be (taken, or not
    an address of this machine)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port}: {error.strerror}; choose another port"
        ) from None
    return sock


def wait_until_stopped(ready: Callable[[], None] = lambda: None) -> None:
    """Return on Ctrl-C, SIGTERM or SIGHUP, those not ignored (``nnlab.stops``; called from the
    main thread). ``ready()`` runs once those are caught, e.g. to tell the user how to stop: a
    signal sent as soon as they read it is never the default one that kills."""
    with contextlib.suppress(KeyboardInterrupt), stops.taken():
        ready()
        while True:
            time.sleep(3600)


def check_poll_seconds(value: object, name: str = "poll_seconds") -> float:
    """How often live events read the database: seconds in (0, ``MAX_POLL_SECONDS``]."""
    return check_number(name, value, above=0, at_most=MAX_POLL_SECONDS)


def open_in_browser(url: str) -> None:
    """Open ``url`` in the default browser; with none to open, say so on stderr."""
    try:
        opened = webbrowser.open(url)
    except webbrowser.Error:
        opened = False
    if not opened:
        print(f"note: no browser could be opened; open {url} yourself", file=sys.stderr)


def _open_when_listening(server, url: str) -> None:
    """Open ``url`` from a thread as soon as ``server`` listens (never, if it fails to)."""

    def opener() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.02)
        open_in_browser(url)

    threading.Thread(target=opener, name="nnlab-open", daemon=True).start()


def _packages():
    try:
        import uvicorn

        from nnlab.service.app import create_app
    except ModuleNotFoundError as error:
        raise MissingExtra(
            f"nnlab serve needs {error.name}, which is not installed: pip install {error.name}"
        ) from None
    return uvicorn, create_app


def _server(uvicorn, app, **where):
    """A uvicorn server of ``app`` (``where``: ``host``, ``port``), which first ends every
    event stream when told to stop (a browser tab keeps its stream open forever, and the stop
    would otherwise wait for it), and leaves ignored a stop signal that is ignored now."""
    feeds = app.state.feeds
    ignored = stops.ignored()  # uvicorn would take over Ctrl-C even where it is ignored

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if sig in ignored:
                return
            feeds.close_soon()
            super().handle_exit(sig, frame)

        def stop(self) -> None:
            """Stop from another thread."""
            feeds.close_soon()
            self.should_exit = True

    config = uvicorn.Config(
        app,
        **where,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    return Server(config)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_for(host: str, token: str | None) -> str | None:
    """The token requests must carry: the one given, else a new one unless ``host`` is
    loopback (where there is none). ``InputError`` for a given one that is empty, or that a
    URL or a cookie cannot carry as it is."""
    if token is not None and not TOKEN.fullmatch(token):
        shown = repr(token) if len(token) <= 40 else repr(token[:37]) + "..."
        raise InputError(
            f"--token must be letters, digits, '-', '_', '.' or '~' (one or more), got {shown}"
        )
    if token is not None or is_loopback(host):
        return token
    return secrets.token_urlsafe(32)


def allowed_hosts(host: str) -> tuple[str, ...]:
    """The Host headers to answer: loopback names, ``host`` itself, and for a wildcard bind
    this machine's names."""
    named = f"[{host}]" if ":" in host else host
    machine = (socket.gethostname(), socket.getfqdn()) if host in WILDCARD_HOSTS else ()
    return tuple(dict.fromkeys(name.lower() for name in (*LOOPBACK_HOSTS, named, *machine)))


def address(host: str, port: int, token: str | None, path: str = "/") -> str:
    """The URL to open: the web UI's ``path`` (its root), with the token when there is one."""
    shown = socket.gethostname() if host in WILDCARD_HOSTS else host
    shown = f"[{shown}]" if ":" in shown else shown
    query = f"?token={token}" if token else ""
    return f"http://{shown}:{port}{path}{query}"
