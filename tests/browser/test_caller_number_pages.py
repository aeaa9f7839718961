"""A caller's main number at the operators' desk, in Chromium, with ``[app] area_code`` =
010: the caller of 010-87654321 calls again and gives the number as 8765 4321 转 123; their
earlier case appears as the number is typed, the new case keeps the extension for the call
back, and its page lists the earlier case in the caller's history."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import DESKTOP, screenshot, sign_in
from tests.conftest import make_settings
from tests.integration.helpers import submit_complaint

pytestmark = pytest.mark.browser


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        app={"area_code": "010"},
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


def test_a_local_number_with_an_extension_finds_the_callers_cases(
    chromium: Any, live_server: str, app: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    first, _ = submit_complaint(app.test_client(), "明德路路灯不亮。", phone="010-87654321")
    page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(page, "operator")
    expect(page.locator("input[name=phone]")).to_be_focused()
    page.keyboard.type("8765 4321 转 123")
    earlier = page.locator(f"#history-cases .earlier-case[data-number='{first}']")
    expect(earlier).to_be_visible()
    expect(page.locator("#history-count")).to_contain_text("1")
    screenshot(page, tmp_path / "desk-extension.png")
    page.keyboard.press("Enter")  # to the answers: none chosen, as the caller has an open case
    expect(page.locator("input[name=about]:checked")).to_have_count(0)
    new_matter = page.locator("input[name=about][value=new]")
    new_matter.focus()
    page.keyboard.press("Space")  # the operator says: a new matter
    expect(new_matter).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.locator("input[name=name]")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.type("井盖缺失")
    page.keyboard.press("Tab")
    page.keyboard.type("幸福路口的井盖丢了")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(re.compile(r"/board/cases/MS-\d{4}-\d{6}$"))
    assert page.url.rsplit("/", 1)[-1] != first
    expect(page.locator("#case-contact")).to_contain_text("87654321-123")
    expect(page.locator("#caller-history")).to_contain_text(first)
    expect(page.locator("#repeat-caller")).to_contain_text("2")
