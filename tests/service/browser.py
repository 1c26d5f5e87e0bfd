"""A real browser for the service tests: Debian's headless Chromium driven by Playwright, and
pages that note everything that went wrong on them.

    from browser import assert_clean, chromium, watched_page  # noqa: F401 (fixtures)

    def test_it(page, base):
        page.goto(f"{base}/sweeps/acts/report")
        assert_clean(page)

The Chromium is the system's (``.ci/run`` installs Debian's), never one Playwright downloads.
Locally, without it (or without playwright), the tests skip; under CI (``CI`` set) that is an
error instead, as for the report tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

# Installed before any page script runs, through the DevTools protocol, so a page's own policy
# (script-src 'self', or none at all) does not stop it: it reports every violation of the
# policy to the test.
WATCH_POLICY = """
window.__nnlabWatching = true;
document.addEventListener("securitypolicyviolation", (event) => {
    window.__nnlabViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/run installs Debian's chromium and the test extra")
    pytest.skip(f"{reason} here")


def chromium_path() -> str:
    """Debian's Chromium; skips (or, under CI, fails) the test without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        _unavailable("chromium not found")
    return found


@contextmanager
def launched() -> Iterator:
    """A headless Chromium (a Playwright ``Browser``), closed after the block."""
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        _unavailable("playwright not installed")
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Trouble:
    """What went wrong on a page: console errors, uncaught exceptions, policy violations and
    dialogs (``alert`` from injected markup, say)."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.console, self.errors, self.violations, self.dialogs))


@contextmanager
def watched(browser) -> Iterator:
    """A fresh page in its own context (no cookies shared between tests) whose troubles are
    noted in ``page.trouble``; every dialog is noted and dismissed."""
    context = browser.new_context()
    try:
        page = context.new_page()
        trouble = page.trouble = Trouble()
        page.on(
            "console",
            lambda message: (
                trouble.console.append(message.text) if message.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exception: trouble.errors.append(str(exception)))
        page.on("dialog", lambda dialog: (trouble.dialogs.append(dialog.message), dialog.dismiss()))
        page.expose_function("__nnlabViolation", lambda text: trouble.violations.append(text))
        page.add_init_script(WATCH_POLICY)
        yield page
    finally:
        context.close()


def assert_clean(page) -> None:
    """Nothing went wrong on ``page``, and its watcher was there to see it."""
    page.wait_for_load_state("load")
    assert page.evaluate("window.__nnlabWatching === true"), "the policy watcher did not run"
    page.evaluate("new Promise((done) => setTimeout(done, 50))")  # events already queued arrive
    assert not page.trouble, page.trouble


@pytest.fixture(scope="module", name="browser")
def chromium():
    """``browser``: one Chromium for a test module."""
    with launched() as chromium:
        yield chromium


@pytest.fixture(name="page")
def watched_page(browser):
    """``page``: a fresh watched page of the module's Chromium."""
    with watched(browser) as page:
        yield page
