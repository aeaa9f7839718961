"""A notice told by text message in place of its mail, as the admin sees it in Chromium (the
citizen's address in Chinese typed into the public form, which takes it): the mail's reason
(the server lacks SMTPUTF8 for 张三@example.cn) in Chinese, then in English after the
language switch; no button to send the mail again (the citizen was told), and the note that
says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in
from tests.conftest import make_settings
from tests.integration.test_notifications import Gateway
from tests.integration.test_outbox import Recorder
from tests.mailserver import free_port
from web.mail import OutboxSender

pytestmark = pytest.mark.browser

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def sms_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, smtp_port: int, sms_port: int) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        mail={"sender": "xiaonengban@example.gov.cn", "port": smtp_port, "timeout_seconds": 5},
        sms={"url": f"http://127.0.0.1:{sms_port}/send", "timeout_seconds": 3},
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


@pytest.fixture
def smtp_ascii(smtp_port: int) -> Iterator[Recorder]:
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(
        recorder, hostname="127.0.0.1", port=smtp_port, enable_SMTPUTF8=False
    )
    controller.start()
    yield recorder
    controller.stop()


@pytest.fixture
def gateway(sms_port: int) -> Iterator[Gateway]:
    g = Gateway(sms_port)
    g.start()
    yield g
    g.stop()


def test_a_mail_told_by_sms_instead_reads_in_each_language_and_is_not_sent_again(
    chromium: Any,
    live_server: str,
    app: Any,
    smtp_ascii: Recorder,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    citizen.goto("/complain")
    citizen.fill("#subject", "路灯不亮")
    citizen.fill("#body", "明德路路灯不亮已经一周。")
    citizen.fill("#name", "张三")
    citizen.fill("#phone", "13500002222")
    citizen.fill("#email", "张三@example.cn")
    # The form takes it as typed (a type=email field would be refused by the browser: its
    # check wants ASCII before the @).
    citizen.click("main form button[type=submit]")
    citizen.wait_for_url("**/receipt/**")
    runtime = app.extensions["minsheng"]
    result = OutboxSender(runtime.settings, runtime.sessions, worker="browser").send_due()
    assert result.failed == 1 and result.sms == {"sent": 1, "retried": 0, "failed": 0}

    admin = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(admin, "admin")
    admin.goto("/admin/outbox")
    row = admin.locator("#outbox-mails tr[data-mail]")
    expect(row).to_contain_text("邮件服务器")
    expect(row).to_contain_text("不支持 SMTPUTF8")
    expect(row).to_contain_text("张三@example.cn")
    expect(row.locator(".told-by-sms")).to_have_text("已改发短信告知：不再重发")
    expect(row.locator("button")).to_have_count(0)
    expect(row).not_to_contain_text("delivery:")
    screenshot(admin, tmp_path / "outbox-sms-instead.png")

    admin.click("header a[href^='/lang/en']")
    row = admin.locator("#outbox-mails tr[data-mail]")
    expect(row).to_contain_text("does not offer SMTPUTF8")
    expect(row.locator(".told-by-sms")).to_have_text("Told by text message: not sent again")
    expect(row.locator("button")).to_have_count(0)
    assert len(gateway.requests) == 1 and smtp_ascii.received == []
