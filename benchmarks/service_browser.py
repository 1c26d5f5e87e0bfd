"""The browser's half of ``benchmarks/service.py``: the web UI of ``nnlab serve`` in real
headless Chromium (Debian's, driven by Playwright's sync API, as ``tests/service/browser.py``
does; never one ``playwright install`` downloads).

Every wait is ``page.wait_for_selector`` or a function evaluated through the DevTools protocol:
the pages' policy (``script-src 'self'``) forbids eval, so string expressions would fail.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nnlab.store import RunWriter, open_store
from nnlab.store.models import EPOCH_METRICS

PAINTED = "body[data-painted=true]"  # a sweep page's first screen: progress and the ranking
LIVE = "#live:not([hidden])"  # the page's event stream is open
TIMEOUT_MS = 60_000

# Notes, in the page, each value #live-epochs shows with the wall-clock time it appeared (the
# counter is re-created when the progress is redrawn, so the whole body is watched).
WATCH_COUNTER = """() => {
    window.__seen = [];
    const note = () => {
        const counter = document.getElementById("live-epochs");
        const value = counter ? Number(counter.textContent) : 0;
        const seen = window.__seen;
        if (!seen.length || seen[seen.length - 1][0] !== value) seen.push([value, Date.now()]);
    };
    const everything = { subtree: true, childList: true, characterData: true };
    new MutationObserver(note).observe(document.body, everything);
    note();
}"""


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium (a Playwright ``Browser``), closed after the block."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise RuntimeError("chromium not found: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def until(browser, url: str, selector: str, repeat: int = 3) -> list[float]:
    """Milliseconds, for each of ``repeat`` fresh pages in turn (each in its own context:
    nothing cached in the browser), from the start of ``page.goto(url)`` to ``selector`` on
    the page. The first is the one no other page helped: later ones may find the server's
    shared answers of the pages before them."""
    times = []
    for _ in range(repeat):
        context = browser.new_context()
        try:
            page = context.new_page()
            start = time.perf_counter()
            page.goto(url, wait_until="commit")
            page.wait_for_selector(selector, timeout=TIMEOUT_MS)
            times.append((time.perf_counter() - start) * 1000)
        finally:
            context.close()
    return times


def marks(browser, url: str, names: tuple[str, ...], repeat: int = 3) -> list[dict]:
    """For each of ``repeat`` fresh pages of ``url`` in turn, the milliseconds from the start
    of the navigation to each of the page's ``performance.mark``s ``names`` (the page's own
    clock, as a browser's first-paint figures are), and ``outside``: from the start of
    ``page.goto`` to the last of them, as Playwright sees it (with its round trips)."""
    found = []
    script = "(names) => names.map((n) => performance.getEntriesByName(n)[0].startTime)"
    for _ in range(repeat):
        context = browser.new_context()
        try:
            page = context.new_page()
            start = time.perf_counter()
            page.goto(url, wait_until="commit")
            for name in names:
                page.wait_for_function(
                    "(n) => performance.getEntriesByName(n).length > 0",
                    arg=name,
                    timeout=TIMEOUT_MS,
                )
            outside = (time.perf_counter() - start) * 1000
            times = page.evaluate(script, list(names))
            found.append({**dict(zip(names, times, strict=True)), "outside": outside})
        finally:
            context.close()
    return found


def log_epochs(url: str, run_id: int, epochs: int, interval: float, commits) -> None:
    """Train run ``run_id`` for ``epochs`` epochs, one every ``interval`` seconds, each
    committed as it is logged; put ``time.time()`` on ``commits`` after each commit."""
    writer = RunWriter(open_store(url), run_id, flush_seconds=0, heartbeat_seconds=0)
    writer.start()
    for epoch in range(1, epochs + 1):
        time.sleep(interval)
        loss = 1.0 / epoch
        metrics = dict.fromkeys(EPOCH_METRICS, 0.5) | {"train_loss": loss, "val_loss": loss}
        writer.log({"epoch": epoch, **metrics})  # flush_seconds=0: committed here
        commits.put(time.time())
    writer.finish("completed")


def commit_to_dom(browser, base: str, url: str, sweep: str, run_id: int, epochs: int = 12):
    """Milliseconds from each of ``epochs`` commits of run ``run_id`` (the only run of
    ``sweep``, pending) to the sweep's open page counting it in ``#live-epochs``: the median
    and the largest."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base}/sweeps/{sweep}")
        page.wait_for_selector(PAINTED, timeout=TIMEOUT_MS)
        page.wait_for_selector(LIVE, timeout=TIMEOUT_MS)
        page.evaluate(WATCH_COUNTER)
        spawn = multiprocessing.get_context("spawn")
        commits = spawn.Queue()
        writer = spawn.Process(target=log_epochs, args=(url, run_id, epochs, 0.3, commits))
        writer.start()
        committed = [commits.get(timeout=60) for _ in range(epochs)]
        writer.join()
        page.wait_for_selector(f"#live-epochs:text-is('{epochs}')", timeout=10_000)
        seen = page.evaluate("() => window.__seen")
    finally:
        context.close()
    latencies = [
        min(shown for value, shown in seen if value >= epoch) - at * 1000
        for epoch, at in enumerate(committed, 1)
    ]
    return statistics.median(latencies), max(latencies)


def follow_in_pages(
    browser,
    base: str,
    sweep: str,
    pages: int,
    counts: Callable[[], tuple[int, dict]],
    train: Callable[[], tuple[multiprocessing.Process, object]],
    seconds: float,
) -> tuple[float, dict[str, tuple[float, float]], int]:
    """``pages`` pages (each in its own context, as separate browsers would be: one context
    would hold at most 6 connections to the server) open on ``sweep`` while ``train()``
    starts a writer (and an event it sets once the runs started). The server's statements
    per second over the ``seconds`` that follow; per path, requests and statements per
    second; and the fewest epochs a page counted live."""
    contexts = [browser.new_context() for _ in range(pages)]
    try:
        opened = [context.new_page() for context in contexts]
        for page in opened:
            page.goto(f"{base}/sweeps/{sweep}", wait_until="commit")
        for page in opened:
            page.wait_for_selector(PAINTED, timeout=TIMEOUT_MS)
            page.wait_for_selector(LIVE, timeout=TIMEOUT_MS)
        time.sleep(1.0)  # the pages' first reads, and the feed's, are done
        writer, started = train()
        started.wait(60)
        before, paths_before = counts()
        time.sleep(seconds)
        after, paths_after = counts()
        writer.join()
        live = min(int(page.text_content("#live-epochs")) for page in opened)
    finally:
        for context in contexts:
            context.close()
    by_path = {}
    for path, (requests, statements) in paths_after.items():
        was = paths_before.get(path, (0, 0))
        name = path.replace(f"/{sweep}", "/{sweep}")
        done = ((requests - was[0]) / seconds, (statements - was[1]) / seconds)
        if any(done):
            by_path[name] = done
    return (after - before) / seconds, by_path, live


def read_counts(count_file: Path) -> tuple[int, dict]:
    """The statements ``counted_serve.py`` counted, and its requests and statements by path."""
    time.sleep(0.15)  # the files are written every 0.1 s
    return int(count_file.read_text()), json.loads(Path(f"{count_file}.paths").read_text())
