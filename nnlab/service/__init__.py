"""``nnlab serve``: a live, read-only JSON API over the tracking database.

Safe by construction: it binds 127.0.0.1 unless told otherwise, and any other address needs a
token; it answers only GET and HEAD, only for the hosts it serves, never serves files, and
opens the database read-only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
import sys

from nnlab.checks import InputError
from nnlab.store.database import display_url, resolve_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class MissingExtra(InputError):
    """The service's packages (starlette, uvicorn) are not installed."""


def serve(
    db: str | None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None
) -> None:
    """Serve the database at ``db`` on ``host``:``port`` until interrupted.

    A ``host`` other than loopback needs a ``token``; one is made when none is given. The URL
    to open (with ``?token=``) is printed on stderr.

    Raises ``MissingExtra`` without starlette or uvicorn, ``StoreError`` for a database that
    cannot be opened (a missing SQLite file is not created).
    """
    try:
        import uvicorn

        from nnlab.service.app import create_app
    except ModuleNotFoundError as error:
        raise MissingExtra(
            f"nnlab serve needs {error.name}, which is not installed: pip install 'nnlab[serve]'"
        ) from None
    token = token_for(host, token)
    app = create_app(db, token=token, allowed_hosts=allowed_hosts(host))
    print(f"serving {display_url(resolve_url(db))} read-only", file=sys.stderr)
    print(f"open {address(host, port, token)}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it stopped on
        _server(uvicorn, app.state.feeds)(config).run()
    print("stopped", file=sys.stderr)


def _server(uvicorn, feeds):
    class Server(uvicorn.Server):
        """uvicorn's server, which first ends every event stream when told to stop: a browser
        tab keeps its stream open forever, and the stop would otherwise wait for it."""

        def handle_exit(self, sig, frame) -> None:
            feeds.close_soon()
            super().handle_exit(sig, frame)

    return Server


GRACE_SECONDS = 2


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_for(host: str, token: str | None) -> str | None:
    """The token requests must carry: the one given, else a new one unless ``host`` is
    loopback (where there is none)."""
    if token is not None or is_loopback(host):
        return token
    return secrets.token_urlsafe(32)


def allowed_hosts(host: str) -> tuple[str, ...]:
    """The Host headers to answer: loopback names, ``host`` itself, and for a wildcard bind
    this machine's names."""
    named = f"[{host}]" if ":" in host else host
    machine = (socket.gethostname(), socket.getfqdn()) if host in WILDCARD_HOSTS else ()
    return tuple(dict.fromkeys(name.lower() for name in (*LOOPBACK_HOSTS, named, *machine)))


def address(host: str, port: int, token: str | None) -> str:
    """The URL to open: the sweeps listing, with the token when there is one."""
    shown = socket.gethostname() if host in WILDCARD_HOSTS else host
    shown = f"[{shown}]" if ":" in shown else shown
    query = f"?token={token}" if token else ""
    return f"http://{shown}:{port}/api/sweeps{query}"
