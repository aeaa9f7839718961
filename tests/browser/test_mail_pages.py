"""The email-intake pages in a real browser, in Chinese: a supervisor finds the quarantine
list from the board, opens a message, corrects its text with the keyboard and makes a case
of it; the suspected-spam list releases a message into a case with a mouse click."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import DESKTOP, screenshot, sign_in
from tests.conftest import make_settings
from tests.integration.test_mail_pages import IMAP, MAILBOX, SPAM, mail, take_in
from triage.mail_intake import quarantine_raw

pytestmark = pytest.mark.browser


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        intake={"imap": IMAP},
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


def test_supervisor_makes_a_case_of_a_quarantined_mail_and_releases_a_spam(
    chromium: Any, live_server: str, runtime: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    raw = mail("莲花路3号门前的井盖丢了，晚上很危险。", subject="井盖丢失")
    with runtime.sessions() as s:
        q = quarantine_raw(s, raw, mailbox=MAILBOX, reason="ingest failed", now=datetime.now(UTC))
        s.commit()
    spam = take_in(
        runtime,
        mail(
            SPAM, subject="代开发票", sender="ad@spam.example.cn", message_id=f"<{uuid.uuid4()}@x>"
        ),
    )

    page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(page, "supervisor")
    page.goto("/board/queue")
    panel = page.locator("#intake-health")
    expect(panel).to_contain_text("邮件受理")
    expect(panel.locator("#intake-quarantined")).to_have_text("1")
    expect(panel.locator("#intake-spam")).to_have_text("1")
    screenshot(page, tmp_path / "queue-intake-health.png")

    page.get_by_role("link", name="待处理邮件").click()
    page.wait_for_url(re.compile(r"/board/mail/quarantine$"))
    row = page.locator(f"tr[data-mail='{q.mail_id}']")
    expect(row).to_contain_text("井盖丢失")
    expect(row).to_contain_text("ingest failed")
    screenshot(page, tmp_path / "quarantine-list.png")

    row.get_by_role("link", name="登记为工单").click()
    page.wait_for_url(re.compile(rf"/board/mail/quarantine/{q.mail_id}$"))
    body = page.locator("#body")
    expect(body).to_have_value("莲花路3号门前的井盖丢了，晚上很危险。")
    body.focus()
    page.keyboard.press("End")
    page.keyboard.type("（来信人未留电话）")
    screenshot(page, tmp_path / "make-case-form.png")
    page.locator("#make-case-form button[type=submit]").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/board/cases/MS-\d{4}-\d{6}$"))
    expect(page.locator(".flash.info")).to_contain_text("已将隔离邮件登记为工单")
    expect(page.locator(".body")).to_have_text(
        "莲花路3号门前的井盖丢了，晚上很危险。（来信人未留电话）"
    )
    expect(page.locator("#case-raw-mail a")).to_have_text(f"mail-{q.mail_id}.eml")
    screenshot(page, tmp_path / "case-from-quarantine.png")

    page.goto("/board/mail/spam")
    spam_row = page.locator(f"tr[data-mail='{spam.mail_id}']")
    expect(spam_row).to_contain_text("ad@spam.example.cn")
    screenshot(page, tmp_path / "spam-list.png")
    spam_row.get_by_role("button", name="放行并登记为工单").click()
    expect(page.locator(".flash.info")).to_contain_text("已放行，登记为工单")
    expect(page.locator("#spam-recent")).to_contain_text("已放行，工单")
    screenshot(page, tmp_path / "spam-released.png")
