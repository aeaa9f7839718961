"""The head's sign-off (自律) in a real browser: with reply_sign_off on, the handler's reply
waits; the citizen's tracking page shows no reply; the head finds it on the sign-off list and
signs it; then the citizen reads it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_case_path_pages import _submit, _track
from tests.browser.test_extension_pages import dispatch_to_urban
from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in
from tests.conftest import make_settings

pytestmark = pytest.mark.browser
REPLY = "已安排维修班组于本周五前疏通下水道，并清理积水。"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
        supervision={"reply_sign_off": True},
    )


def test_the_head_signs_the_reply_off(chromium: Any, live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    number, code = _submit(
        citizen,
        "下水道堵塞积水",
        "明德路8号门前下水道堵塞，雨后积水没过脚踝。",
        "孙八",
        "13500003333",
    )
    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    dispatch_to_urban(office, number)

    urban = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(urban, "urban")
    urban.goto(f"/board/cases/{number}")
    urban.fill("#reply-text", REPLY)
    submit = urban.locator("#reply-form button[type=submit]")
    expect(submit).to_have_text("提交负责人签发")
    submit.click()
    expect(urban.locator("p.flash.info")).to_contain_text("负责人签发")
    expect(urban.locator("h1 [class*=status-]")).to_have_class(re.compile("status-in_progress"))
    expect(urban.locator("#draft-reply")).to_contain_text("疏通下水道")
    expect(urban.locator("#reply-form")).to_have_count(0)
    expect(urban.locator("#sign-off-form")).to_have_count(0)

    _track(citizen, number, code)
    mine = citizen.locator("#your-case")
    expect(mine.locator(".badge")).to_have_class(re.compile("status-in_progress"))
    expect(mine.locator("blockquote.reply")).to_have_count(0)
    assert "疏通下水道" not in citizen.content()

    head = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(head, "urban-head")
    expect(head.locator("header .who")).to_contain_text("负责人")
    head.click("#nav-sign-off")
    row = head.locator(f"#drafts tr[data-case='{number}']")
    expect(row).to_contain_text("王经办")
    row.locator("a").click()
    expect(head.locator("#draft-reply")).to_contain_text("疏通下水道")
    head.click("#sign-off-form button[type=submit]")
    expect(head.locator("p.flash.info")).to_contain_text("签发")
    expect(head.locator("h1 [class*=status-]")).to_have_class(re.compile("status-replied"))
    expect(head.locator(".signed-off")).to_contain_text("刘局长")
    shot = screenshot(head, tmp_path / "signed-off-board.png")

    _track(citizen, number, code)
    expect(mine.locator(".badge")).to_have_class(re.compile("status-replied"))
    expect(mine.locator("blockquote.reply")).to_contain_text("疏通下水道")
    expect(mine.locator("ol.timeline")).to_contain_text("负责人签发")
    print(f"\nscreenshot: {shot}")
