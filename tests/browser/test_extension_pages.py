"""The extension (延期) in a real browser: the department asks with the date picker, a
supervisor finds the request on the extensions list and grants it; the handler sees the new
deadline, and so does the citizen on the tracking page, without the internal reasons."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.browser.test_case_path_pages import _submit, _track
from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in
from triage.models import Case

pytestmark = pytest.mark.browser


def dispatch_to_urban(office: Any, number: str) -> None:
    office.goto("/board/queue")
    row = office.locator(f"tr[data-case='{number}']")
    row.locator("select").select_option("urban")
    row.locator("button[type=submit]").click()


def working_days_after(runtime: Any, number: str, n: int) -> date:
    """The `n`-th working day after the case's current deadline, on the official calendar."""
    calendar = runtime.settings.deadlines().calendar
    with runtime.sessions() as s:
        due = s.scalar(select(Case.due_at).where(Case.tracking_number == number))
    day = due.astimezone(calendar.timezone).date()
    while n:
        day += timedelta(days=1)
        n -= calendar.is_workday(day)
    return day


def test_extension_asked_granted_and_shown(
    chromium: Any, live_server: str, app: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    runtime = app.extensions["minsheng"]
    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    number, code = _submit(
        citizen,
        "路灯电缆被挖断",
        "明德路北段路灯电缆施工时被挖断，整条街晚上没有路灯。",
        "钱七",
        "13600002222",
    )
    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    dispatch_to_urban(office, number)

    urban = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(urban, "urban")
    urban.goto(f"/board/cases/{number}")
    picker = urban.locator("#extension-due_date")
    expect(picker).to_have_attribute("type", "date")
    proposed = working_days_after(runtime, number, 5)
    assert picker.get_attribute("min") <= proposed.isoformat() <= picker.get_attribute("max")
    picker.fill(proposed.isoformat())
    urban.fill("#extension-reason", "需供电公司停电配合更换地下电缆（内部说明）")
    urban.click("#extension-form button[type=submit]")
    expect(urban.locator("p.flash.info")).to_contain_text("延期")
    expect(urban.locator("#extension-pending")).to_contain_text(proposed.isoformat())

    office.goto("/board/extensions")
    row = office.locator(f"#pending-extensions tr[data-case='{number}']")
    expect(row).to_contain_text("需供电公司停电配合")
    row.locator("a").click()
    granted = working_days_after(runtime, number, 4)
    office.fill("#decision-due_date", granted.isoformat())
    office.fill("#decision-reason", "同意，缩短一天（内部）")
    office.click("#extension-grant")
    expect(office.locator("p.flash.info")).to_contain_text("批准")
    expect(office.locator(".case-side")).to_contain_text(f"{granted.isoformat()} 23:59")
    office.goto("/board/extensions")
    expect(office.locator(f"#pending-extensions tr[data-case='{number}']")).to_have_count(0)

    urban.goto(f"/board/cases/{number}")
    expect(urban.locator("#extended-to")).to_contain_text(granted.isoformat())
    expect(urban.locator(".case-side dl")).to_contain_text(f"{granted.isoformat()} 23:59")
    expect(urban.locator("#extension-form")).to_have_count(0)  # once, as configured
    board_shot = screenshot(urban, tmp_path / "extension-granted-board.png")

    _track(citizen, number, code)
    case = citizen.locator("#your-case")
    expect(case).to_contain_text(granted.isoformat())
    expect(case.locator("ol.timeline")).to_contain_text("办理时限已延期")
    text = citizen.content()
    assert "内部" not in text and "供电公司" not in text
    assert not re.search(proposed.isoformat(), text) or proposed == granted
    track_shot = screenshot(citizen, tmp_path / "extension-track-phone.png")
    print(f"\nscreenshots: {board_shot} {track_shot}")
