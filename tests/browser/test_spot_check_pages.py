"""A spot check in a real browser: a supervisor draws a sample of closed cases, records a failed
verification visit, and the case is back with its department with a new deadline."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.browser.test_walkthrough import DESKTOP, screenshot, sign_in
from triage.models import Case, Department, Status

pytestmark = pytest.mark.browser


def closed_case(runtime: Any, number: str, closed_at: datetime) -> None:
    with runtime.sessions() as s, s.begin():
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        case = Case(
            tracking_number=number,
            query_code_hash="x",
            channel="web",
            external_id=number,
            status=Status.TRIAGE,
            subject="幸福路楼道堆放杂物",
            body="幸福路12号楼道堆放杂物，堵塞消防通道。",
            received_at=closed_at - timedelta(days=3),
            contact_name="王小明",
            contact_phone="13812345678",
        )
        s.add(case)
        t = closed_at - timedelta(days=2)
        case.assign(urban, "supervisor", t, t + timedelta(days=5))
        case.reply("urban", t + timedelta(hours=2), "已清理完毕。")
        case.record_visit(
            "supervisor", closed_at, reached=True, solved=True, satisfaction="satisfied"
        )
        case.close("supervisor", closed_at)


def test_a_failed_spot_check_reopens_the_case(
    chromium: Any, live_server: str, runtime: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    number = "MS-2026-000777"
    closed_case(runtime, number, datetime.now(UTC) - timedelta(days=3))

    office = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(office, "supervisor")
    office.click("header nav a[href='/board/spot-checks']")
    office.fill("#draw-seed", "browser-seed")
    office.click("#draw-form button[type=submit]")
    expect(office.locator("p.flash.info")).to_contain_text("browser-seed")
    expect(office.locator("#draws tbody tr").first).to_contain_text(number)
    row = office.locator(f"#pending-checks tr[data-case='{number}']")
    expect(row).to_contain_text("13812345678")  # the supervisor calls the citizen
    row.locator("input[value='visit']").check()
    row.locator("input[value='failed']").check()
    row.locator("textarea").fill("实地查看：楼道杂物仍未清理。")
    row.locator("button[type=submit]").click()
    expect(office.locator("p.flash.info")).to_contain_text(number)
    expect(office.locator(f"#pending-checks tr[data-case='{number}']")).to_have_count(0)
    shot = screenshot(office, tmp_path / "spot-checks.png")

    office.goto(f"/board/cases/{number}")
    expect(office.locator("h1 [class*=status-]")).to_have_class(re.compile("status-in_progress"))
    expect(office.locator("#spot-checks")).to_contain_text("楼道杂物仍未清理")
    expect(office.locator("ol.timeline")).to_contain_text("抽查")

    urban = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(urban, "urban")
    urban.goto(f"/board/cases/{number}")
    expect(urban.locator("#reply-form")).to_be_visible()
    due = urban.locator("aside dl time").nth(1).inner_text()
    assert re.match(r"\d{4}-\d\d-\d\d", due), due
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        assert case.status == Status.IN_PROGRESS and case.rework_count == 1
        assert case.due_at is not None and case.due_at > datetime.now(UTC)
    print(f"\nscreenshot: {shot}")
