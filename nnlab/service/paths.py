"""A sweep's name in a path, as one segment: its pages and API are ``/sweeps/{name:sweep}`` and
``/api/sweeps/{name:sweep}/...`` with the name percent-encoded, slashes too (``a%2Fb``).

Routing on the decoded path could not tell the sweep ``a/b`` (``/sweeps/a%2Fb``) from a path of
two segments (``/sweeps/a/b``), and ``/api/sweeps/x%2Fruns`` would be the runs of sweep ``x``;
so routes match the path as it was sent, each segment decoded with its own slashes kept
escaped, and the ``sweep`` convertor decodes the name.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor


class SweepName(Convertor):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("sweep", SweepName())


class SegmentedPath:
    """Route on the request's path as sent (``raw_path``): each segment decoded, a ``/`` or
    ``%`` within it kept escaped (``%2F``, ``%25``) for a ``sweep`` convertor to decode."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw is not None:
            segments = (unquote(segment) for segment in raw.decode("utf-8", "replace").split("/"))
            path = "/".join(s.replace("%", "%25").replace("/", "%2F") for s in segments)
            scope = {**scope, "path": path}
        await self.app(scope, receive, send)
