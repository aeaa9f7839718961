"""The dashboard in Chromium: choosing an earlier month in the picker shows that month's
figures (the monthly report's), the current month is marked as partial ("so far, to <date>")
in Chinese and English, and the panels sit in two columns on a 1280 px desktop and in one
on a 360 px phone, no wider than the screen."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import screenshot, sign_in
from triage.report.figures import ReportPolicy, month_of, monthly_figures, shift_month
from web import dashboard
from web.dashboard import rate_text
from web.demo_volume import add_volume

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True}
PANELS = """() => [...document.querySelectorAll('#dashboard-grid > .panel')].map(e => {
  const r = e.getBoundingClientRect();
  return {id: e.id, left: Math.round(r.left), right: Math.round(r.right),
          top: Math.round(r.top), bottom: Math.round(r.bottom)};
})"""


@pytest.fixture
def months(app: Any) -> Iterator[tuple[str, str]]:
    """Cases over the last three months: (this month, the month before)."""
    dashboard.clear_cache()
    now = datetime.now(UTC)
    with app.extensions["minsheng"].engine.begin() as conn:
        add_volume(conn, 150, months=3, now=now, seed=31)
    current = month_of(now, ReportPolicy.from_settings(app.extensions["minsheng"].settings))
    yield current, shift_month(current, -1)
    dashboard.clear_cache()


def test_the_month_picker_changes_the_figures(
    chromium: Any, live_server: str, app: Any, months: tuple[str, str], tmp_path: Path
) -> None:
    current, last = months
    runtime = app.extensions["minsheng"]
    policy = ReportPolicy.from_settings(runtime.settings)
    with runtime.sessions() as s:
        report = monthly_figures(s, last, policy)
    errors: list[str] = []
    page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, "supervisor")
    page.goto("/board/dashboard")
    # This month: marked as not over, up to a date.
    partial = page.locator("#month-partial")
    assert partial.is_visible()
    assert re.search(
        r"本月未结束\s*截至 \d{4}年\d{1,2}月\d{1,2}日（本月第 \d+ 天", partial.inner_text()
    )
    assert current in page.locator("#month-heading").inner_text()
    now_received = int(page.locator("#month-received").inner_text())

    page.select_option("#month-choice", last)
    page.click("#month-picker button[type=submit]")
    page.wait_for_url(re.compile(rf"/board/dashboard\?month={last}$"))
    assert last in page.locator("#month-heading").inner_text()
    assert page.locator("#month-partial").count() == 0
    assert page.locator("#month-whole").inner_text().startswith("整月：")
    received = int(page.locator("#month-received").inner_text())
    assert received == report["received"] != now_received
    assert page.locator("#month-resolution").inner_text() == rate_text(report["resolution_rate"])
    assert page.locator("#month-satisfaction").inner_text() == rate_text(
        report["satisfaction_rate"]
    )
    best = report["departments"][0]
    row = page.locator(f"tr[data-department='{best['code']}']")
    assert row.locator("td.composite").inner_text() == f"{best['composite'] * 100:.1f}"
    assert page.locator("#month-choice").input_value() == last
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert f"month={last}" in (page.locator("#chart-rates").get_attribute("src") or "")
    screenshot(page, tmp_path / "dashboard-last-month.png")

    # In English, back to this month through the picker.
    page.goto(f"/board/dashboard?month={last}&lang=en")
    page.select_option("#month-choice", current)
    page.click("#month-picker button[type=submit]")
    page.wait_for_url(re.compile(rf"month={current}$"))
    text = page.locator("#month-partial").inner_text()
    assert re.search(r"Partial month\s+so far, to [A-Z][a-z]+ \d{1,2}, \d{4} \(day \d+ of", text)
    assert page.locator("#month-choice option").first.inner_text() == f"{current} (so far)"
    page.context.close()
    assert errors == [], errors  # no CSP violation, no failed image


def test_two_columns_on_a_desktop_one_on_a_phone(
    chromium: Any, live_server: str, months: tuple[str, str], tmp_path: Path
) -> None:
    for options, lang in ((DESKTOP, "zh"), (PHONE, "en")):
        width = options["viewport"]["width"]
        page = chromium.new_context(**options, base_url=live_server).new_page()
        sign_in(page, "supervisor")
        page.goto(f"/board/dashboard?lang={lang}")
        page.wait_for_function("[...document.images].every(i => i.complete)")
        panels = {p["id"]: p for p in page.evaluate(PANELS)}
        assert {"panel-today", "panel-month", "panel-departments"} <= set(panels), panels
        lefts = {p["left"] for p in panels.values()}
        today, month = panels["panel-today"], panels["panel-month"]
        if width >= 1280:
            # Side by side: today's tiles and the month's; the wide table across both.
            assert today["top"] == month["top"] and month["left"] > today["right"], panels
            assert len(lefts) == 2, panels
            table = panels["panel-departments"]
            assert table["left"] == today["left"] and table["right"] == month["right"], panels
            charts = [p for k, p in panels.items() if k.startswith("panel-chart-")]
            assert len({c["left"] for c in charts}) == 2, charts
        else:
            # One above the other, each the width of the screen.
            assert len(lefts) == 1, panels
            ordered = sorted(panels.values(), key=lambda p: p["top"])
            assert all(a["bottom"] <= b["top"] for a, b in itertools.pairwise(ordered)), panels
            assert all(p["right"] <= width for p in panels.values()), panels
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, tmp_path / f"dashboard-{width}.png")
        page.context.close()
