"""``nnlab serve`` at scale (issue 11): a real server over a store of 10,000+ runs × 100 epochs.

Builds the store of ``benchmarks/service_store.py`` (or reuses the one at ``--db``), starts
``nnlab serve`` as a subprocess on a free loopback port (through ``counted_serve.py``, which
counts the SQL statements it sends), and measures with httpx what the pages ask of it: the
sweeps listing, a 10,000-run sweep page's first data, the curves of 1,000 runs, the database
queries per second while 1 and then 20 clients follow a sweep that a writer process is
training; then in headless Chromium (``service_browser.py``) the sweep page's first paint,
an epoch's way from its commit to the page, and the statements per second (and per path)
while 1 and then 20 pages follow a training sweep; and the server's peak memory after all of
that.

    python benchmarks/service.py [--db PATH] [--repeat 20]    # ~1.5 min once the store exists

Without ``--db`` the store is built in a temporary directory (~15 s) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import nnlab
from nnlab.store import RunWriter, delete_sweep, open_store, register_sweep
from nnlab.store.models import EPOCH_METRICS
from nnlab.store.registry import RunRow

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service_browser as browser
import service_store as generated

HERE = Path(__file__).resolve().parent
LIVE = "live"  # trained by a writer process while clients follow it
LIVE_RUNS = 20
CLIENTS = 20
WATCH_SECONDS = 5.0  # each of the two SSE phases
ECHO = "live-echo"  # one run, whose epochs are timed from commit to the page
PAGES = {1: "live-1-page", CLIENTS: f"live-{CLIENTS}-pages"}  # trained while pages watch
PAGE_SECONDS = 8.0  # each of the two browser phases: the runs end one by one over it
TARGETS = {  # measurement -> (target, unit); lower is better for all
    "sweeps": (200, "ms"),
    "first data": (1000, "ms"),
    "paint": (1000, "ms"),
    "live": (2000, "ms"),
    "curves": (1000, "ms"),
    "points": (1500, "points"),
    "x1": (1.5, "× 1 client"),
    "x1 page": (1.5, "× 1 page"),
    "memory": (300, "MB"),
}


def ensure_store(path: Path) -> str:
    """The URL of the generated store at ``path``, built first if there is none, with fresh
    sweeps ``LIVE`` and ``PAGES`` of ``LIVE_RUNS`` pending runs, and ``ECHO`` of one."""
    url = f"sqlite:///{path}"
    if not path.exists():
        start = time.perf_counter()
        generated.build(url)
        print(f"built {path} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    store = open_store(url)
    existing = set(nnlab.connect(url).sweeps().name)
    for name, runs in [
        (LIVE, LIVE_RUNS),
        *((name, LIVE_RUNS) for name in PAGES.values()),
        (ECHO, 1),
    ]:
        if name in existing:
            delete_sweep(store, name)
        rows = [RunRow({"activation": "relu", "seed": i}, f"{name}-{i}", i) for i in range(runs)]
        register_sweep(store, name, rows, description="trained while watched")
    return url


def train_live(
    url: str, seconds: float, sweep: str = LIVE, in_turn: bool = False, started=None
) -> None:
    """Train the runs of ``sweep`` together for about ``seconds``: each logs an epoch every
    ``seconds / 100`` and commits twice a second, as ``nnlab sweep`` workers would. All end
    together, or ``in_turn``: the i-th of n after ``100 * i / n`` epochs, so that they end one
    by one all along. ``started`` (an event) is set once every run started."""
    store = open_store(url)
    writers = []
    for run_id in nnlab.connect(url).runs(sweep=sweep).run_id:
        writer = RunWriter(store, int(run_id), flush_seconds=0.5, heartbeat_seconds=0)
        writer.start()
        writers.append(writer)
    ends = {
        writer: generated.EPOCHS * (i + 1) // len(writers) if in_turn else generated.EPOCHS
        for i, writer in enumerate(writers)
    }
    if started is not None:
        started.set()
    for epoch in range(1, generated.EPOCHS + 1):
        time.sleep(seconds / generated.EPOCHS)
        for writer in writers:
            if epoch > ends[writer]:
                continue
            loss = 1.0 / epoch + writer.run_id * 1e-4
            metrics = dict.fromkeys(EPOCH_METRICS, 0.5) | {"train_loss": loss, "val_loss": loss}
            writer.log({"epoch": epoch, **metrics})
            if epoch == ends[writer]:
                writer.finish("completed")


class Server:
    """``counted_serve.py`` over ``url`` on a free port of 127.0.0.1."""

    def __init__(self, url: str, directory: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.count_file = Path(directory) / "statements"
        command = [sys.executable, str(HERE / "counted_serve.py"), url, str(self.port)]
        self.process = subprocess.Popen([*command, str(self.count_file)], stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base}/api/sweeps", timeout=5).raise_for_status()
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"nnlab serve did not start: {self.process.stderr.read()}")

    def statements(self) -> int:
        time.sleep(0.15)  # the file is written every 0.1 s
        return int(self.count_file.read_text())

    def counts(self) -> tuple[int, dict]:
        """The statements sent, and the requests and statements of each path."""
        return browser.read_counts(self.count_file)

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        (line,) = [line for line in status.splitlines() if line.startswith("VmHWM:")]
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# longer than the server keeps a shared answer (its poll interval, 0.5 s, with no live feed):
# every timed request below is read from the database, not served from the shared answers
UNSHARED_SECONDS = 0.6


def timed(client: httpx.Client, paths: list[str], repeat: int) -> tuple[float, float, list]:
    """Milliseconds to GET every one of ``paths`` in turn: the first time, the median of
    ``repeat`` more, each a read (``UNSHARED_SECONDS`` apart); and the last JSON answers."""
    times = []
    for _ in range(repeat + 1):
        time.sleep(UNSHARED_SECONDS)
        start = time.perf_counter()
        answers = []
        for path in paths:
            response = client.get(path)
            response.raise_for_status()
            answers.append(response.json())
        times.append((time.perf_counter() - start) * 1000)
    return times[0], statistics.median(times[1:]), answers


def largest_series(curves: list[dict]) -> int:
    return max(len(series["epochs"]) for series in curves)


async def follow(base: str, clients: int, seconds: float, server: Server) -> tuple[float, int]:
    """Statements per second the server sends while ``clients`` follow ``LIVE``'s events for
    ``seconds`` (counted once they are all connected), and the fewest events one received."""
    received = [0] * clients
    connected = asyncio.Event()
    ready = [0]

    async def watch(i: int, client: httpx.AsyncClient) -> None:
        async with client.stream("GET", f"/api/sweeps/{LIVE}/events") as response:
            ready[0] += 1
            if ready[0] == clients:
                connected.set()
            async for line in response.aiter_lines():
                received[i] += line.startswith("event:")

    async with httpx.AsyncClient(base_url=base, timeout=None) as client:
        tasks = [asyncio.create_task(watch(i, client)) for i in range(clients)]
        await connected.wait()
        await asyncio.sleep(1.0)  # the feed's first read done
        before = await asyncio.to_thread(server.statements)
        received[:] = [0] * clients
        await asyncio.sleep(seconds)
        after = await asyncio.to_thread(server.statements)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return (after - before) / seconds, min(received)


def first_paint_in_browser(chromium, base: str, sweep: str) -> list[dict]:
    """For 3 fresh pages of sweep ``sweep`` in turn, the milliseconds from the start of the
    navigation to its first screen drawn (progress and the first page of the ranking: the
    page's ``nnlab-painted`` mark) and to its curves drawn too (``nnlab-charted``)."""
    return browser.marks(chromium, f"{base}/sweeps/{sweep}", ("nnlab-painted", "nnlab-charted"))


def _median(paints: list[dict]) -> float:
    return statistics.median(paint["nnlab-painted"] for paint in paints)


def watch_in_pages(chromium, server: Server, url: str, pages: int):
    """``browser.follow_in_pages`` with ``pages`` pages on ``PAGES[pages]`` while a writer
    trains it, its runs ending one by one."""

    def train():
        spawn = multiprocessing.get_context("spawn")
        started = spawn.Event()
        args = (url, PAGE_SECONDS, PAGES[pages], True, started)
        writer = spawn.Process(target=train_live, args=args)
        writer.start()
        return writer, started

    sweep = PAGES[pages]
    return browser.follow_in_pages(
        chromium, server.base, sweep, pages, server.counts, train, PAGE_SECONDS
    )


def row(label: str, figure: float | None, kind: str | None) -> tuple:
    """A line of the table: ``figure`` against the target of ``kind`` (None: none)."""
    if kind is None:
        return (label, f"{figure:,.1f}", "", "", "")
    target, unit = TARGETS[kind]
    if figure is None:
        return (label, "TODO", f"≤ {target:,} {unit}", "", "")
    ratio = figure / target
    return (label, f"{figure:,.1f}", f"≤ {target:,} {unit}", f"{ratio:.2f}", _verdict(ratio))


def _verdict(ratio: float) -> str:
    return "pass" if ratio <= 1 else "FAIL"


def measure(url: str, repeat: int, directory: str) -> tuple[list[tuple], dict]:
    """The table's rows, and per path the requests and statements per second of the browser
    phases (``{pages: {path: (requests, statements)}}``)."""
    server = Server(url, directory)
    try:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            _, sweeps, (listing,) = timed(client, ["/api/sweeps"], repeat)
            big = [f"/api/sweeps/{generated.BIG}", f"/api/sweeps/{generated.BIG}/configurations"]
            page = [big[0], f"{big[1]}?limit=50"]
            cold, warm, _ = timed(client, page, 5)
            filtered = [f"{big[1]}?limit=50&sort=learning_rate&order=desc&activation=relu"]
            _, sorted_page, _ = timed(client, filtered, 5)
            curves = f"/api/sweeps/{generated.CURVES}/curves?max_points=1500"
            _, per_run, (runs,) = timed(client, [curves], 3)
            _, grouped, (groups,) = timed(client, [f"{curves}&by=learning_rate"], 3)
            (echo_run,) = client.get(f"/api/sweeps/{ECHO}/runs").json()
        points = max(largest_series(runs), largest_series(groups))
        writer = multiprocessing.get_context("spawn").Process(
            target=train_live, args=(url, 2 * WATCH_SECONDS + 6)
        )
        writer.start()
        one, one_events = asyncio.run(follow(server.base, 1, WATCH_SECONDS, server))
        many, many_events = asyncio.run(follow(server.base, CLIENTS, WATCH_SECONDS, server))
        writer.join()
        with browser.chromium() as chromium:  # after asyncio.run: Playwright runs its own loop
            paints = first_paint_in_browser(chromium, server.base, generated.BIG)
            listed = statistics.median(browser.until(chromium, f"{server.base}/", "a.sweep-link"))
            echo = browser.commit_to_dom(chromium, server.base, url, ECHO, echo_run["run_id"])
            followed = {pages: watch_in_pages(chromium, server, url, pages) for pages in PAGES}
        memory = server.peak_rss_mb()
    finally:
        server.stop()
    (one_page, _, one_live), (many_pages, _, many_live) = followed.values()
    rows = [
        row(f"GET /api/sweeps ({len(listing)} sweeps), median of {repeat}", sweeps, "sweeps"),
        row("sweep page first data: the sweep + 50 ranked rows, cold", cold, "first data"),
        row("sweep page first data, again (median of 5 reads)", warm, "first data"),
        row("  the same page sorted and filtered", sorted_page, "first data"),
        row(f"{generated.BIG} page first paint, first visit", paints[0]["nnlab-painted"], "paint"),
        row("  its curves drawn", paints[0]["nnlab-charted"], "curves"),
        row("  as Playwright sees it (goto to both)", paints[0]["outside"], None),
        row("  the next 2 fresh pages, first paint (median)", _median(paints[1:]), "paint"),
        row("sweeps page (/) first a.sweep-link in Chromium (median of 3)", listed, None),
        row(f"curves of {len(runs):,} runs, one series each", per_run, "curves"),
        row(f"curves of {len(runs):,} runs, bands by learning_rate", grouped, "curves"),
        row("largest series (points)", points, "points"),
        row(f"SQL statements/s following a live sweep, 1 client ({one_events} events)", one, None),
        row(f"  {CLIENTS} clients ({many:.1f}/s, ≥ {many_events} events each)", many / one, "x1"),
        row("live: epoch committed → shown in the page, median of 12", echo[0], "live"),
        row("  the slowest of the 12", echo[1], "live"),
        row(
            f"SQL statements/s, 1 page on a training sweep ({one_live} epochs live)", one_page, None
        ),
        row(
            f"  {CLIENTS} pages ({many_pages:.1f}/s, ≥ {many_live} epochs live each)",
            many_pages / one_page,
            "x1 page",
        ),
        row("server peak RSS (VmHWM)", memory, "memory"),
    ]
    return rows, {pages: by_path for pages, (_, by_path, _) in followed.items()}


def print_paths(by_pages: dict[int, dict[str, tuple[float, float]]]) -> None:
    """Requests and statements per second by path in the browser phases, the busiest first."""
    paths = sorted(
        set().union(*by_pages.values()),
        key=lambda p: -max(b.get(p, (0, 0))[1] for b in by_pages.values()),
    )
    headers = ["path"] + [f"{n} page{'s' * (n > 1)}: requests/s, statements/s" for n in by_pages]
    cells = [
        (path, *(", ".join(f"{x:.1f}" for x in b.get(path, (0, 0))) for b in by_pages.values()))
        for path in paths
    ]
    print()
    print_table(cells, headers)


def print_table(rows: list[tuple], headers=("measurement", "figure", "target", "ratio", "result")):
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in rows:
        aligned = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        print("| " + " | ".join(aligned) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="the store to use, built there if missing")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = ensure_store(args.db or Path(directory) / "serve-bench.db")
        rows, by_path = measure(url, args.repeat, directory)
    print_table(rows)
    print_paths(by_path)


if __name__ == "__main__":
    main()
