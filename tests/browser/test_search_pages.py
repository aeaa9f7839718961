"""Search in Chinese in a real browser: typed in the case list's search box, two characters
find their case with the match highlighted; an observer finds nothing by the caller's phone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import DESKTOP, screenshot, sign_in
from triage.models import Case, Status

pytestmark = pytest.mark.browser


def _cases(runtime: Any) -> None:
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        for n, (subject, body) in enumerate(
            (
                ("幸福路停车难", "小区物业把消防通道划成停车位收费，王小明多次反映。"),
                ("饭店噪音", "楼下饭店深夜<b>噪音</b>扰民。"),
            ),
            start=1,
        ):
            s.add(
                Case(
                    tracking_number=f"MS-2026-00070{n}",
                    query_code_hash="x",
                    channel="web",
                    external_id=f"search-{n}",
                    status=Status.TRIAGE,
                    subject=subject,
                    body=body,
                    received_at=now - timedelta(hours=n),
                    contact_name="王小明",
                    contact_phone=f"1381234567{n}",
                )
            )


def test_search_in_chinese_highlights_and_masks(
    chromium: Any, live_server: str, runtime: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    _cases(runtime)
    office = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(office, "supervisor")
    office.goto("/board/cases")
    office.fill("input[name=q]", "物业")
    office.press("input[name=q]", "Enter")
    rows = office.locator("table.cases tbody tr[data-case]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-case", "MS-2026-000701")
    expect(rows.first.locator("mark")).to_have_text(["物业"])
    shot = screenshot(office, tmp_path / "search.png")

    office.fill("input[name=q]", "噪音")
    office.press("input[name=q]", "Enter")
    expect(rows).to_have_count(1)
    # The body's markup is text, never HTML: its <b> is shown, the match marked.
    expect(rows.first.locator("td.match b")).to_have_count(0)
    expect(rows.first.locator("mark").first).to_have_text("噪音")

    office.fill("input[name=q]", "13812345671")
    office.press("input[name=q]", "Enter")
    expect(rows).to_have_count(1)

    observer = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(observer, "observer")
    observer.goto("/board/cases?q=13812345671")
    expect(observer.locator("table.cases tbody tr[data-case]")).to_have_count(0)
    observer.goto("/board/cases?q=王小明")
    expect(observer.locator("table.cases tbody tr[data-case]")).to_have_count(0)
    observer.goto("/board/cases?q=停车")
    expect(observer.locator("table.cases tbody tr[data-case]")).to_have_count(1)
    print(f"\nscreenshot: {shot}")
