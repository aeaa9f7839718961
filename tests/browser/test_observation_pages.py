"""An external supervisor's observation in a real browser: filed from the masked case page,
answered by a supervisor, and the answer read back by the observer, masked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.browser.test_walkthrough import DESKTOP, screenshot, sign_in
from triage.models import Case, Department, Status

pytestmark = pytest.mark.browser


def assigned_case(runtime: Any, number: str) -> None:
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        case = Case(
            tracking_number=number,
            query_code_hash="x",
            channel="web",
            external_id=number,
            status=Status.TRIAGE,
            subject="幸福路路灯不亮",
            body="幸福路路灯坏了一周，王小明多次反映无人处理。",
            received_at=now - timedelta(days=6),
            contact_name="王小明",
            contact_phone="13812345678",
        )
        s.add(case)
        case.assign(urban, "supervisor", now - timedelta(days=5), now + timedelta(days=1))


def test_observer_files_and_reads_the_answer(
    chromium: Any, live_server: str, runtime: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    number = "MS-2026-000888"
    assigned_case(runtime, number)

    observer = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(observer, "observer")
    observer.goto(f"/board/cases/{number}")
    expect(observer.locator(".case-side")).not_to_contain_text("13812345678")
    observer.fill("#obs-body", "路灯问题受理近一周仍未修复，请督促住建局。")
    observer.click("#observation-form button[type=submit]")
    expect(observer.locator("p.flash.info")).to_be_visible()
    expect(observer.locator("#case-observations")).to_contain_text("待答复")

    office = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(office, "supervisor")
    office.click("header nav a[href='/board/observations/']")
    expect(office.locator("#open-observations")).to_contain_text("1")
    item = office.locator("#observation-list article.observation-open")
    expect(item).to_contain_text("请督促住建局")
    item.locator("textarea").fill("已督办住建局，明日修复；已电话告知王小明（13812345678）。")
    item.locator("button[type=submit]").click()
    expect(office.locator("p.flash.info")).to_be_visible()
    expect(office.locator("#observation-list article.observation-answered")).to_have_count(1)

    observer.click("header nav a[href='/board/observations/']")
    answered = observer.locator("#observation-list article.observation-answered")
    expect(answered).to_contain_text("已督办住建局，明日修复")
    expect(answered).to_contain_text("138****5678")
    expect(answered).not_to_contain_text("13812345678")
    expect(answered).not_to_contain_text("王小明")
    shot = screenshot(observer, tmp_path / "observations-observer.png")
    observer.goto(f"/board/cases/{number}")
    expect(observer.locator("#case-observations .observation-answer")).to_contain_text("明日修复")
    expect(observer.locator("ol.timeline")).to_contain_text("监督意见已答复")
    print(f"\nscreenshot: {shot}")
