"""The dashboard's "At risk" tile in Chromium: clicking it opens the case list under its "at
risk" filter (checked, labelled 临期风险 / At risk), whose count is the tile's number, for a
supervisor (the office) and a handler (their department)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from tests.browser.test_walkthrough import screenshot, sign_in
from tests.conftest import analyze
from triage.models import Case, Department, Status
from web import dashboard

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 900}}


@pytest.fixture
def cases_at_risk(app: Any) -> dict[str, int]:
    """Open cases of two departments with and without a risk, closed ones still marked at
    risk, and a closed history; returns the number of open at-risk cases by scope."""
    runtime = app.extensions["minsheng"]
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        other = s.scalar(select(Department.id).where(Department.code != "urban"))
    start = datetime.now(UTC) - timedelta(days=60)
    rows: list[dict[str, Any]] = []
    for i, (status, risk, department) in enumerate(
        [(Status.CLOSED, "", other)] * 300
        + [(Status.IN_PROGRESS, "at_risk", urban)] * 4
        + [(Status.ASSIGNED, "at_risk", other)] * 7
        + [(Status.IN_PROGRESS, "overdue", urban)] * 3
        + [(Status.REPLIED, "", urban)] * 5
        + [(Status.CLOSED, "at_risk", urban)] * 2
    ):
        rows.append(
            {
                "tracking_number": f"R-{i:06d}",
                "query_code_hash": "x",
                "channel": "web",
                "external_id": f"r-{i}",
                "kind": "complaint",
                "status": status,
                "subject": f"第{i}件 井盖缺失",
                "body": "井盖缺失，夜里有人摔倒。",
                "received_at": start + timedelta(hours=3 * i),
                "created_at": start,
                "department_id": department,
                "risk": risk,
            }
        )
    with runtime.sessions() as s, s.begin():
        s.execute(insert(Case.__table__), rows)
        analyze(s)
    dashboard.clear_cache()
    yield {"supervisor": 11, "urban": 4}
    dashboard.clear_cache()


def test_the_at_risk_tile_opens_the_list_of_its_cases(
    chromium: Any, live_server: str, cases_at_risk: dict[str, int], tmp_path: Path
) -> None:
    errors: list[str] = []
    for username, expected in cases_at_risk.items():
        page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        sign_in(page, username)
        page.goto("/board/dashboard")
        tile = int(page.locator("#tile-at-risk").inner_text())
        assert tile == expected, (username, tile)
        page.click("#tile-link-at-risk")
        page.wait_for_url(re.compile(r"/board/cases\?at_risk=1$"))
        heading = page.locator("h1 small").inner_text()
        assert heading == f"({tile})", (username, heading)
        assert page.locator("table.cases tr[data-case]:not(#attention tr)").count() == tile
        box = page.locator('input[name="at_risk"]')
        assert box.is_checked()
        label = page.locator("label.check", has=box)
        # Its count beside it is the tile's number too.
        assert label.inner_text().strip() == f"临期风险 ({tile})"
        screenshot(page, tmp_path / f"at-risk-{username}.png")
        # In English the filter says so too, and unchecking it lists more than the tile.
        page.goto("/board/cases?at_risk=1&lang=en")
        assert page.locator("label.check", has=box).inner_text().strip() == f"At risk ({tile})"
        box.uncheck()
        page.locator("form.filters button[type=submit]").click()
        page.wait_for_url(re.compile(r"/board/cases\?"))
        assert "at_risk" not in page.url
        more = int(page.locator("h1 small").inner_text().strip("()+"))
        assert more > tile, (username, more)
        page.context.close()
    assert errors == [], errors
