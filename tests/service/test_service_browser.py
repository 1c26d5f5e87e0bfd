"""The report route in a real browser: headless Chromium through a real server renders the
page under the response's own policy, with no error, no violation, and a hostile sweep name
shown as the text it is."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from browser import assert_clean, chromium, watched_page  # noqa: F401 (fixtures)
from conftest import fill
from served import HOSTILE_NAMES, add_sweep, running

from nnlab.service.app import create_app


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    url = fill(f"sqlite:///{tmp_path_factory.mktemp('browser') / 'nnlab.db'}")
    add_sweep(url, HOSTILE_NAMES[0], epochs=4)
    with running(create_app(url)) as base:
        yield base


def test_the_report_renders_with_its_figures_and_no_trouble(page, base):
    page.goto(f"{base}/sweeps/acts/report")
    assert page.title() == "nnlab report: acts"
    assert page.locator("h1").inner_text() == "Convergence report: acts"
    figures = page.locator("figure img")
    assert figures.count() >= 3
    for index in range(figures.count()):
        figure = figures.nth(index)
        figure.scroll_into_view_if_needed()
        assert figure.is_visible()
        assert figure.evaluate("image => image.complete && image.naturalWidth > 100")
    assert_clean(page)


def test_a_hostile_name_is_text_in_the_browser(page, base):
    name = HOSTILE_NAMES[0]
    page.goto(f"{base}/sweeps/{quote(name, safe='')}/report")
    assert page.locator("h1").inner_text() == f"Convergence report: {name}"
    assert page.locator('img[src="x"]').count() == 0  # no element was injected
    assert_clean(page)  # and so no alert() dialog


def test_the_watch_sees_a_violation(page, base):
    """The page's policy (default-src 'none') blocks this image from the network, and the
    watch, though no script of the page could run, notes it."""
    page.goto(f"{base}/sweeps/acts/report")
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', '<img src=\"http://127.0.0.1:9/x.png\">')"
    )
    with pytest.raises(AssertionError, match=re.escape("img-src blocked http://127.0.0.1:9/x.png")):
        assert_clean(page)
