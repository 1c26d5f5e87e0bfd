"""The service's ASGI app: a short list of routes over the reading API (``Lab``) — JSON, CSV
downloads, the report page — behind small middlewares that each enforce one safety rule.

Every route only reads; the database is opened read-only, so nothing here can change it.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from nnlab.report import render_report
from nnlab.service import LOOPBACK_HOSTS, pages, views
from nnlab.service.answers import Answers
from nnlab.service.curves import BadQuery, check_query, read
from nnlab.service.downloads import CSV_TYPE, attachment, epochs_csv, run_ids, runs_csv
from nnlab.service.events import Feeds
from nnlab.service.guards import (
    POLICY,
    REPORT_POLICY,
    HostCheck,
    MethodCheck,
    OriginCheck,
    SecurityHeaders,
    TokenCheck,
    error,
)
from nnlab.service.paths import SegmentedPath
from nnlab.service.records import frame_records, json_value
from nnlab.service.tables import TableQuery, check_table_query, page
from nnlab.store import Lab, UnknownSweepError, open_store
from nnlab.store.query import METRICS as HEATMAP_METRICS  # what a configuration is ranked by
from nnlab.store.query import UnknownRunError, ranking_columns

EPOCH = re.compile(r"[0-9]{1,18}")  # what ?after= may be: a non-negative int


def create_app(
    url: str | None,
    *,
    token: str | None = None,
    allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
    poll_seconds: float = 0.5,
) -> Starlette:
    """The read-only JSON API over the database at ``url``.

    A sweep's live events (``/api/sweeps/{name}/events``) come from one read of the database
    every ``poll_seconds`` for all the clients watching it.

    Requests must name one of ``allowed_hosts`` in their Host header (against DNS
    rebinding) and in their Origin header when they carry one (against other sites' pages),
    and, when ``token`` is given, carry it (``?token=``, ``Authorization:
    Bearer``, or the cookie the first accepted request sets).

    Raises ``StoreError`` when the database cannot be opened (a missing SQLite file is never
    created).
    """
    lab = Lab(open_store(url, read_only=True))
    allowed_hosts = tuple(allowed_hosts)
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(HostCheck, allowed=allowed_hosts),
        Middleware(OriginCheck, allowed=allowed_hosts),
        Middleware(MethodCheck),
        Middleware(TokenCheck, token=token),
        Middleware(SegmentedPath),
    ]
    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers={
            HTTPException: _http_error,
            UnknownSweepError: _unknown,
            UnknownRunError: _unknown,
        },
    )
    app.state.lab = lab
    app.state.feeds = Feeds(lab, poll_seconds)
    app.state.answers = Answers(max_age=poll_seconds)
    app.state.settings = views.RunSettings()
    app.state.schedules = views.Schedules()
    return app


async def sweeps(request: Request) -> Response:
    return await _shared(request, lambda lab: frame_records(lab.sweeps()))


async def sweep(request: Request) -> Response:
    name = request.path_params["name"]
    state = request.app.state
    settings = state.settings  # not the standing: the page's first answer
    schedules = state.schedules  # the rungs: read again only when run statuses change

    def reading(lab: Lab) -> dict:
        return views.details(lab, name, settings.of(lab, name), schedules=schedules)

    return await _shared(request, reading, name)


async def runs(request: Request) -> Response:
    name = request.path_params["name"]
    return await _shared(request, lambda lab: frame_records(lab.runs(sweep=name)), sweep=name)


async def configurations(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        query = check_table_query(request.query_params.multi_items())
        standing = await _standing(request, name)
        # the sort and filter columns are checked against the ranking
        return await _shared(request, lambda lab: _ranking(standing, query), name, standing)
    except BadQuery as bad:
        return error(400, str(bad), did_you_mean=bad.matches)


async def run(request: Request) -> JSONResponse:
    run_id = request.path_params["run_id"]
    return await _read(request, lambda lab: json_value(lab.run(run_id)))


async def epochs(request: Request) -> JSONResponse:
    run_id = request.path_params["run_id"]
    after = request.query_params.get("after", "0")
    if not EPOCH.fullmatch(after):
        return error(400, f"after must be a non-negative integer (an epoch), got {after!r}")
    return await _read(request, lambda lab: _epochs_after(lab, run_id, int(after)))


async def curves(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        metric, by, points, top = check_query(request.query_params)
        standing = await _standing(request, name)
        # `by` is checked against the sweep's settings
        drawn = functools.partial(read, metric=metric, by=by, max_points=points, top=top)
        reading = functools.partial(drawn, sweep=name, standing=standing)
        return await _shared(request, reading, name, standing)
    except BadQuery as bad:
        return error(400, str(bad), did_you_mean=bad.matches)


async def heatmap(request: Request) -> Response:
    name, query = request.path_params["name"], request.query_params
    rows, columns = query.get("rows", ""), query.get("columns", "")
    try:
        metric = check_query(query, metrics=HEATMAP_METRICS)[0]
        standing = await _standing(request, name)
        cells = functools.partial(views.heatmap, rows=rows, columns=columns, metric=metric)
        reading = functools.partial(cells, name=name, standing=standing)
        return await _shared(request, reading, name, standing)
    except (BadQuery, views.BadSetting) as bad:
        return error(400, str(bad), did_you_mean=bad.matches)


async def failures(request: Request) -> Response:
    name = request.path_params["name"]
    standing = await _standing(request, name)
    return await _shared(request, lambda lab: views.failures(lab, name, standing), name, standing)


async def events(request: Request) -> StreamingResponse:
    name = request.path_params["name"]
    last_id = request.headers.get("last-event-id")
    stream = await request.app.state.feeds.stream(name, last_id)
    return StreamingResponse(stream, media_type="text/event-stream")


# --- downloads: a sweep's runs and epochs as CSV, its report as the page nnlab report writes ---


async def runs_download(request: Request) -> Response:
    name = request.path_params["name"]
    text = await run_in_threadpool(runs_csv, request.app.state.lab, name)
    return Response(text, media_type=CSV_TYPE, headers=attachment(name, "runs.csv"))


async def epochs_download(request: Request) -> StreamingResponse:
    name = request.path_params["name"]
    lab = request.app.state.lab
    runs = await run_in_threadpool(run_ids, lab, name)  # an unknown sweep: 404 before any row
    # a plain iterator: Starlette reads each chunk in a worker thread
    chunks = epochs_csv(lab, name, runs)
    return StreamingResponse(chunks, media_type=CSV_TYPE, headers=attachment(name, "epochs.csv"))


async def report(request: Request) -> Response:
    name = request.path_params["name"]
    download = request.query_params.get("download", "0")
    if download not in ("0", "1"):
        return error(400, f"download must be 0 or 1, got {download!r}")
    page = await run_in_threadpool(_render, request.app.state.lab, name)
    headers = {POLICY: REPORT_POLICY}
    if download == "1":
        headers |= attachment(name, "report.html")
    return HTMLResponse(page, headers=headers)


_RENDERING = threading.Lock()  # matplotlib's style settings are global: one report at a time


def _render(lab: Lab, name: str) -> str:
    with _RENDERING:
        return render_report(lab, [name])


DOWNLOADS = [
    Route("/api/sweeps/{name:sweep}/runs.csv", runs_download),
    Route("/api/sweeps/{name:sweep}/epochs.csv", epochs_download),
    Route("/sweeps/{name:sweep}/report", report),
]

ROUTES = [
    Route("/api/sweeps", sweeps),
    Route("/api/sweeps/{name:sweep}", sweep),
    Route("/api/sweeps/{name:sweep}/runs", runs),
    Route("/api/sweeps/{name:sweep}/configurations", configurations),
    Route("/api/sweeps/{name:sweep}/curves", curves),
    Route("/api/sweeps/{name:sweep}/heatmap", heatmap),
    Route("/api/sweeps/{name:sweep}/failures", failures),
    Route("/api/runs/{run_id:int}", run),
    Route("/api/runs/{run_id:int}/epochs", epochs),
    Route("/api/sweeps/{name:sweep}/events", events),
    *DOWNLOADS,
    *pages.ROUTES,
]


async def _read(request: Request, reading) -> JSONResponse:
    """``reading(lab)`` in a worker thread (SQLAlchemy and pandas block), as JSON."""
    return JSONResponse(await run_in_threadpool(reading, request.app.state.lab))


@dataclass(frozen=True)
class Shared:
    """A shared answer: its JSON value and the headers that go with it."""

    value: object
    headers: dict[str, str]


async def _shared(request: Request, reading, sweep: str | None = None, standing=None) -> Response:
    """``_read``, shared with every client asking the same (path and query, the token aside)
    within a poll interval while ``sweep``'s feed publishes nothing and, when the answer is
    made from a sweep's ``standing``, from that same one (see ``Answers``)."""
    query = tuple(sorted(item for item in request.query_params.multi_items() if item[0] != "token"))
    key = (request.url.path, query)
    generation = request.app.state.feeds.generation(sweep) if sweep is not None else None
    stamp = (generation, standing.serial if standing is not None else None)

    async def answer() -> tuple[bytes, dict]:
        value = await run_in_threadpool(reading, request.app.state.lab)
        shared = value if isinstance(value, Shared) else Shared(value, {})
        return JSONResponse(shared.value).body, shared.headers

    body, headers = await request.app.state.answers.get(key, stamp, answer)
    return Response(body, media_type="application/json", headers=headers)


STANDING_SECONDS = 30.0  # how long a followed sweep's standing is kept between status events


async def _standing(request: Request, name: str) -> views.Standing:
    """Sweep ``name``'s standing, read once for every route and client that needs it until
    its feed publishes a status event (with no feed following the sweep: a poll interval)."""
    app = request.app
    stamp = app.state.feeds.generation(name, statuses=True)
    oldest = STANDING_SECONDS if stamp is not None else None
    lab, settings = app.state.lab, app.state.settings
    reading = functools.partial(run_in_threadpool, views.standing, lab, name, settings)
    return await app.state.answers.get(("standing", name), stamp, reading, max_age=oldest)


def _ranking(standing: views.Standing, query: TableQuery) -> Shared:
    """The page of the sweep's ranking that ``query`` asks for, and how many rows it kept
    (``X-Total-Count``)."""
    table = standing.ranking
    settings = [c for c in table.columns if c not in ranking_columns(standing.metric)]
    rows, total = page(table, settings, query)
    return Shared(frame_records(rows), {"X-Total-Count": str(total)})


def _epochs_after(lab: Lab, run_id: int, after: int) -> list[dict]:
    lab.run(run_id)  # an unknown id is a 404, not an empty list
    logged = lab.epochs(runs=[run_id])
    return frame_records(logged[logged.epoch > after])


async def _unknown(request: Request, exc: UnknownSweepError | UnknownRunError) -> JSONResponse:
    return error(404, str(exc), did_you_mean=list(exc.matches))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error(exc.status_code, exc.detail, headers=exc.headers)
