"""The outbox on a phone (Chromium): the admin pages through failed mails with the state
filter kept, by thumb-sized links, without the page growing wider than the screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.test_walkthrough import PHONE, screenshot, sign_in
from tests.integration.test_admin_pages_gaps import _fill_outbox


def test_page_through_failed_mail_on_a_phone(
    chromium: Any, live_server: str, app: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    _fill_outbox(app.extensions["minsheng"], 160)  # 54 failed of each
    admin = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    sign_in(admin, "admin")
    admin.goto("/admin/outbox")
    admin.select_option("#outbox-filters select[name=status]", "failed")
    admin.click("#outbox-filters button[type=submit]")
    expect(admin.locator("#outbox-mails tbody tr")).to_have_count(50)
    first = admin.locator("#outbox-mails tbody tr").first.get_attribute("data-mail")
    older = admin.locator("#mail-older")
    box = older.bounding_box()
    assert box is not None and box["height"] >= 40  # a thumb's target
    older.click()
    expect(admin.locator("#outbox-mails tbody tr")).to_have_count(4)
    assert "status=failed" in admin.url
    expect(admin.locator("#outbox-mails tbody tr.failed")).to_have_count(4)
    assert admin.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(admin, tmp_path / "admin-outbox-page-2.png")
    admin.click("#mail-newer")
    expect(admin.locator("#outbox-mails tbody tr").first).to_have_attribute("data-mail", first)
