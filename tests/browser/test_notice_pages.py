"""What the office sees of its notices to citizens, in Chromium, with a stand-in SMS gateway:
the timeline names each notice and its channel (zh and en); a citizen who gave only a
landline is marked on the case as one to call back; a text message that failed is on the
admin's outbox page, and its button sends it again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_case_path_pages import _submit
from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in
from tests.conftest import make_settings
from tests.integration.test_notifications import Gateway
from tests.mailserver import free_port
from web.mail import OutboxSender

pytestmark = pytest.mark.browser


@pytest.fixture
def sms_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, sms_port: int) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        mail={"sender": "xiaonengban@example.gov.cn", "port": free_port(), "timeout_seconds": 2},
        sms={"url": f"http://127.0.0.1:{sms_port}/send", "max_attempts": 1, "timeout_seconds": 3},
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


@pytest.fixture
def gateway(sms_port: int) -> Iterator[Gateway]:
    g = Gateway(sms_port)
    g.start()
    yield g
    g.stop()


def _send(app: Any) -> Any:
    runtime = app.extensions["minsheng"]
    return OutboxSender(runtime.settings, runtime.sessions, worker="browser-test").send_due()


def test_notices_on_the_timeline_a_landline_to_call_and_a_text_sent_again(
    chromium: Any, live_server: str, app: Any, gateway: Gateway, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    landline, _ = _submit(
        citizen, "井盖破损", "和平路井盖破损，夜间有人跌倒。", "赵六", "010-62345678"
    )
    mobile, _ = _submit(citizen, "路灯不亮", "明德路路灯不亮已经一周。", "钱七", "13500001111")
    gateway.down = True
    assert _send(app).sms == {"sent": 0, "retried": 0, "failed": 1}

    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    office.goto(f"/board/cases/{landline}")
    expect(office.locator("#citizen-unreachable")).to_contain_text("回电")
    expect(office.locator(".timeline li.event-notice_not_sent")).to_contain_text("“已受理”通知")
    screenshot(office, tmp_path / "case-landline.png")
    office.goto(f"/board/cases/{mobile}")
    expect(office.locator(".timeline li.event-sms_failed")).to_contain_text("“已受理”通知 · 短信")
    expect(office.locator("#citizen-unreachable")).to_contain_text("未能送达")

    admin = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(admin, "admin")
    admin.goto("/admin/")
    expect(admin.locator("#outbox-sms-failed")).to_have_text("1")
    admin.click("#admin-outbox h2 a")
    row = admin.locator("#outbox-texts tr[data-sms]")
    expect(row).to_contain_text(mobile)
    expect(row).to_contain_text("HTTP 503")
    row.locator("button").click()
    expect(admin.locator("p.flash.info")).to_contain_text("已重新排队")
    gateway.down = False
    assert _send(app).sms == {"sent": 1, "retried": 0, "failed": 0}
    admin.reload()
    expect(admin.locator("#outbox-texts tr[data-sms]")).to_contain_text("已发送")
    expect(admin.locator("#outbox-texts tr[data-sms] button")).to_have_count(0)

    office.goto(f"/board/cases/{mobile}?lang=en")
    expect(office.locator(".timeline li.event-sms_sent")).to_contain_text(
        "notice “received” · by text message"
    )
