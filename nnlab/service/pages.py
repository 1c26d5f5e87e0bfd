"""The service's web pages: an HTML shell per view, rendered by Jinja2 with every value
escaped, that loads its script from ``/static/``; the script draws the view from the JSON API
and keeps it live.

Static files are the package's own, read once and served by their fixed names: no request
path ever reaches the filesystem. Nothing on a page is inline script (the Content-Security-
Policy forbids it); what a script needs to know comes in ``data-`` attributes.
"""

from __future__ import annotations

import functools
from importlib import resources
from urllib.parse import quote

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from nnlab import __version__
from nnlab.service.paths import SegmentedPath  # noqa: F401  (registers the sweep convertor)
from nnlab.store import UnknownSweepError
from nnlab.store.query import UnknownRunError

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
MOST_COMPARED = 12  # sweeps or runs on one compare page


@functools.cache
def static_files() -> dict[str, tuple[bytes, str]]:
    """Each file of the package's ``static`` folder by name: its bytes and media type."""
    folder = resources.files("nnlab.service") / "static"
    files = {}
    for entry in folder.iterdir():
        media_type = MEDIA_TYPES.get("." + entry.name.rpartition(".")[2])
        if media_type is not None:
            files[entry.name] = (entry.read_bytes(), media_type)
    return files


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("nnlab.service", "templates"),
        autoescape=True,  # every name, description, setting and error is escaped
        undefined=jinja2.StrictUndefined,
    )
    # a sweep's name as one path segment, its slashes escaped too (urlencode keeps them)
    environment.filters["segment"] = functools.partial(quote, safe="")
    return environment


def page(template: str, status: int = 200, **values) -> HTMLResponse:
    html = _environment().get_template(template).render(version=__version__, **values)
    return HTMLResponse(html, status_code=status)


async def static(request: Request) -> Response:
    found = static_files().get(request.path_params["name"])
    if found is None:
        return _missing("No such file.", [])
    content, media_type = found
    return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})


async def sweeps(request: Request) -> HTMLResponse:
    return page("sweeps.html.j2", title="Sweeps", location=request.app.state.lab.location)


async def sweep(request: Request) -> HTMLResponse:
    name = request.path_params["name"]
    try:
        details = await run_in_threadpool(request.app.state.lab.sweep, name)
    except UnknownSweepError as unknown:
        return _missing(str(unknown), [("/sweeps/", match) for match in unknown.matches])
    return page("sweep.html.j2", title=name, sweep=details)


async def run(request: Request) -> HTMLResponse:
    run_id = request.path_params["run_id"]
    try:
        record = await run_in_threadpool(request.app.state.lab.run, run_id)
    except UnknownRunError as unknown:
        return _missing(str(unknown), [])
    return page("run.html.j2", title=f"run {run_id}", run=record)


async def compare(request: Request) -> HTMLResponse:
    query = request.query_params
    names = _listed(query.getlist("sweeps"))
    ids = _listed(query.getlist("runs"))
    bad = [given for given in ids if not given.isdigit()]
    if bad:
        return _missing(f"run ids are whole numbers, got {bad[0]!r}", [], status=400)
    if len(names) + len(ids) > MOST_COMPARED:
        return _missing(f"compare at most {MOST_COMPARED} sweeps or runs at once", [], 400)
    lab = request.app.state.lab
    try:
        for name in names:
            await run_in_threadpool(lab.sweep, name)
        for run_id in ids:
            await run_in_threadpool(lab.run, int(run_id))
    except (UnknownSweepError, UnknownRunError) as unknown:
        return _missing(str(unknown), [("/sweeps/", m) for m in unknown.matches])
    return page("compare.html.j2", title="Compare", sweeps=names, runs=ids)


def _listed(values: list[str]) -> list[str]:
    """``?sweeps=a&sweeps=b`` and ``?sweeps=a,b`` alike, each once, in order."""
    items = (item.strip() for value in values for item in value.split(","))
    return list(dict.fromkeys(item for item in items if item))


def _missing(message: str, links: list[tuple[str, str]], status: int = 404) -> HTMLResponse:
    return page("missing.html.j2", status, title="Not found", message=message, links=links)


ROUTES = [
    Route("/", sweeps),
    Route("/sweeps/{name:sweep}", sweep),
    Route("/runs/{run_id:int}", run),
    Route("/compare", compare),
    Route("/static/{name}", static),
]
