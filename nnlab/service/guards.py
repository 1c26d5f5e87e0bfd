"""The service's safety rules, one ASGI middleware each, outermost first in ``create_app``."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    # the web UI's pages: their own scripts, styles and API only; no inline script, no eval
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a ?token= URL never leaks to another site
    "Cache-Control": "no-store",
}
# the report page (as ``nnlab report`` writes it, with this policy in a <meta>): inline style
# and data: figures, and still no script at all
REPORT_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
READ_METHODS = ("GET", "HEAD")
TOKEN_COOKIE = "nnlab_token"


def error(status: int, message: str, headers=None, **fields) -> JSONResponse:
    """A JSON error response: ``{"error": message, **fields}``."""
    return JSONResponse({"error": message, **fields}, status_code=status, headers=headers)


POLICY = "Content-Security-Policy"


class SecurityHeaders:
    """Every response, errors included, carries ``SECURITY_HEADERS``; a response that sets
    its own Content-Security-Policy (the report page) keeps it."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        async def send_secured(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault(POLICY, SECURITY_HEADERS[POLICY])
                headers.update({k: v for k, v in SECURITY_HEADERS.items() if k != POLICY})
            await send(message)

        await self.app(scope, receive, send_secured if scope["type"] == "http" else send)


class HostCheck:
    """A request whose Host header names none of ``allowed`` is refused (400): a page on
    another site whose name was rebound to this machine's address cannot read the API."""

    def __init__(self, app, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = {host.lower() for host in allowed}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            if host_name(host) not in self.allowed:
                response = error(400, f"unknown host {host!r}: use one this service serves")
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


class OriginCheck:
    """A request whose Origin header names a host not in ``allowed`` is refused (403): a page
    on another site cannot make a browser read the API, even through a rebound name. Requests
    without an Origin (same-origin GETs, curl) pass."""

    def __init__(self, app, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = {host.lower() for host in allowed}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            origin = Headers(scope=scope).get("origin")
            if origin is not None and origin_host(origin) not in self.allowed:
                response = error(403, f"cross-origin request from {origin!r} refused")
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def origin_host(origin: str) -> str:
    """The host an Origin header names, as ``host_name`` gives it: ``http://[::1]:8765`` ->
    ``[::1]``; ``null`` and anything unparsable -> ``""`` (never allowed)."""
    try:
        return host_name(urlsplit(origin.strip()).netloc.rpartition("@")[2])
    except ValueError:
        return ""


def host_name(host: str) -> str:
    """``Host`` header without its port: ``127.0.0.1:8765`` -> ``127.0.0.1``, ``[::1]:80`` ->
    ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]


class MethodCheck:
    """Only GET and HEAD: anything else is 405 on every path."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] not in READ_METHODS:
            message = f"{scope['method']} is not allowed: this service only reads"
            response = error(405, message, headers={"Allow": ", ".join(READ_METHODS)})
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


class TokenCheck:
    """With a ``token``, a request must carry it: ``?token=``, ``Authorization: Bearer``, or
    the cookie set on the first request that carried it. Without one (a loopback bind),
    everything passes."""

    def __init__(self, app, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.token is None:
            return await self.app(scope, receive, send)
        request = Request(scope)
        if self._matches(request.cookies.get(TOKEN_COOKIE)) or self._matches(_bearer(request)):
            return await self.app(scope, receive, send)
        if not self._matches(request.query_params.get("token")):
            response = error(401, "a token is needed: add ?token=… as printed by nnlab serve")
            return await response(scope, receive, send)

        async def send_cookie(message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                MutableHeaders(scope=message).append("Set-Cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_cookie)

    def _matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def _bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None
