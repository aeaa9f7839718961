"""The report's pages in Chromium: the public performance page and the board's dashboard
render in Chinese with their chart images loaded, within the content-security policy, and
on a 375 px phone neither is wider than the screen."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import screenshot, sign_in
from web import dashboard
from web.demo_volume import add_volume

pytestmark = pytest.mark.browser

SMALL_PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
WIDTH = "document.documentElement.scrollWidth"
LOADED = (
    "Array.from(document.querySelectorAll('img.chart'))"
    ".map(i => [i.id, i.complete && i.naturalWidth])"
)


@pytest.fixture
def months_of_cases(app: Any) -> None:
    dashboard.clear_cache()
    with app.extensions["minsheng"].engine.begin() as conn:
        add_volume(conn, 400, months=13, now=datetime.now(UTC), seed=5)
    yield
    dashboard.clear_cache()


def _charts_loaded(page: Any, names: tuple[str, ...]) -> None:
    page.wait_for_function(
        "Array.from(document.querySelectorAll('img.chart')).every(i => i.complete)"
    )
    loaded = dict(page.evaluate(LOADED))
    assert sorted(loaded) == sorted(f"chart-{n}" for n in names), loaded
    assert all(w and w > 0 for w in loaded.values()), loaded


def test_public_performance_page_with_charts_on_a_phone(
    chromium: Any, live_server: str, months_of_cases: None, tmp_path: Path
) -> None:
    errors: list[str] = []
    for options in (DESKTOP, SMALL_PHONE):
        page = chromium.new_context(**options, base_url=live_server).new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto("/")
        page.click("#link-performance")
        page.wait_for_url("**/performance")
        assert page.locator("h1").inner_text() == "部门办理绩效"
        assert page.locator("section.department").count() >= 5
        assert page.locator("section.department").first.locator("tr[data-month]").count() == 12
        # A department's 12 months fit on one screen (they scroll sideways on a phone): as
        # cards they took some 4,000 px each, the page 55 phone screens.
        table = page.locator("section.department").first.locator("table").bounding_box()
        assert table and table["height"] < options["viewport"]["height"], table
        _charts_loaded(page, ("volume", "rates"))
        assert page.evaluate(WIDTH) <= options["viewport"]["width"], page.evaluate(WIDTH)
        screenshot(page, tmp_path / f"performance-{options['viewport']['width']}.png")
        page.context.close()
    assert errors == [], errors  # no CSP violation, no failed image


def test_dashboard_with_charts_for_a_supervisor_and_a_handler(
    chromium: Any, live_server: str, months_of_cases: None, tmp_path: Path
) -> None:
    errors: list[str] = []
    for username, names in (
        ("supervisor", ("volume", "rates", "categories")),
        ("urban", ("volume", "rates")),
    ):
        for options in (DESKTOP, SMALL_PHONE):
            page = chromium.new_context(**options, base_url=live_server).new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            sign_in(page, username)
            if options is SMALL_PHONE:
                page.click("#menu-toggle")  # a phone folds the staff menu (static/menu.js)
            page.click("#nav-dashboard")
            page.wait_for_url("**/board/dashboard")
            assert page.locator("h1").inner_text().startswith("数据看板")
            assert page.locator("#tile-open").is_visible()
            _charts_loaded(page, names)
            width = options["viewport"]["width"]
            assert page.evaluate(WIDTH) <= width, (username, width, page.evaluate(WIDTH))
            screenshot(page, tmp_path / f"dashboard-{username}-{width}.png")
            page.context.close()
    assert errors == [], errors
