# ruff: noqa: F811 - the fixtures of test_notifications, imported by name
"""What the office sees of the notices to citizens, on both databases, with a real SMTP
server (aiosmtpd, with and without SMTPUTF8) and a stand-in SMS gateway: the timeline names
the notice (received, replied, closed) and its channel (mail, SMS) in Chinese and English;
the outbox page lists text messages beside mail, each with its retry, and the admin's
health counts include them; a citizen who gave only a landline is shown as one to call back,
on the case and in the return-visit list; an address in Chinese (张三@example.cn) is sent to
a server that offers SMTPUTF8 and otherwise fails on the case with the reason."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.integration.helpers import post_form, submit_complaint
from tests.integration.test_notifications import (  # noqa: F401 - fixtures
    Gateway,
    actions,
    case_of,
    dispatch,
    gateway,
    reply,
    send,
    settings,
    sms_port,
    smtp,
    smtp_port,
    text_of,
)
from tests.integration.test_outbox import Recorder
from triage.models import AdminEvent
from triage.outbox import MailStatus, OutgoingMail
from triage.sms import SmsStatus, TextMessage

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")


@pytest.fixture
def smtp_ascii(smtp_port: int) -> Iterator[Recorder]:
    """The SMTP server without SMTPUTF8 (aiosmtpd's Controller offers it unless told not)."""
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(
        recorder, hostname="127.0.0.1", port=smtp_port, enable_SMTPUTF8=False
    )
    controller.start()
    yield recorder
    controller.stop()


@pytest.fixture
def smtp_utf8(smtp_port: int) -> Iterator[Recorder]:
    """The SMTP server, offering SMTPUTF8 (RFC 6531)."""
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(
        recorder, hostname="127.0.0.1", port=smtp_port, enable_SMTPUTF8=True
    )
    controller.start()
    yield recorder
    controller.stop()


def _timeline(client: Any, number: str, lang: str = "") -> list[str]:
    html = client.get(f"/board/cases/{number}{'?lang=' + lang if lang else ''}").get_data(
        as_text=True
    )
    timeline = html.split('class="timeline full"')[1].split("</ol>")[0]
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", li)).strip()
        for li in re.findall(r"<li[^>]*>(.*?)</li>", timeline, re.S)
    ]


def test_the_timeline_names_each_notice_and_its_channel(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder, gateway: Gateway
) -> None:
    gateway.start()
    by_mail, _ = submit_complaint(client, "莲花路路灯不亮。", email="li@example.com", phone="")
    by_sms, _ = submit_complaint(client, "莲花路路灯不亮。", email="", phone="13900004444")
    dispatch(login_as, runtime, by_mail)
    reply(login_as("urban"), by_mail)
    result = send(runtime)
    assert result.sent == 2 and result.sms == {"sent": 1, "retried": 0, "failed": 0}
    supervisor = login_as("supervisor")
    mail_lines = _timeline(supervisor, by_mail)
    assert any("邮件已发送" in line and "“已受理”通知 · 邮件" in line for line in mail_lines)
    assert any("邮件已发送" in line and "“已答复”通知 · 邮件" in line for line in mail_lines)
    sms_lines = _timeline(supervisor, by_sms)
    assert any("短信已发送" in line and "“已受理”通知 · 短信" in line for line in sms_lines)
    english = _timeline(supervisor, by_sms, "en")
    assert any(
        "Text message sent" in line and "notice “received” · by text message" in line
        for line in english
    )
    english = _timeline(supervisor, by_mail, "en")
    assert any("notice “replied” · by email" in line for line in english)


def test_a_citizen_with_only_a_landline_is_one_to_call_back(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder, gateway: Gateway
) -> None:
    gateway.start()
    landline, _ = submit_complaint(client, "和平路井盖破损。", email="", phone="010-6234 5678")
    mobile, _ = submit_complaint(client, "和平路井盖破损。", email="", phone="13900004444")
    assert "notice_not_sent" in actions(runtime, landline)
    assert "notice_not_sent" not in actions(runtime, mobile)
    supervisor = login_as("supervisor")
    page = supervisor.get(f"/board/cases/{landline}").get_data(as_text=True)
    banner = re.search(r'id="citizen-unreachable"[^>]*>(.*?)</p>', page, re.S)
    assert banner and "回电" in banner.group(1)
    assert any(
        "无法告知市民" in line and "“已受理”通知" in line
        for line in _timeline(supervisor, landline)
    )
    assert 'id="citizen-unreachable"' not in supervisor.get(f"/board/cases/{mobile}").get_data(
        as_text=True
    )
    # Replied: the return-visit list marks the one to call.
    for number in (landline, mobile):
        dispatch(login_as, runtime, number)
        reply(login_as("urban"), number)
    assert actions(runtime, landline).count("notice_not_sent") == 2
    listing = supervisor.get("/board/cases?status=replied").get_data(as_text=True)
    rows = {
        n: row
        for n, row in re.findall(r'<tr [^>]*data-case="([^"]+)"[^>]*>(.*?)</tr>', listing, re.S)
    }
    assert 'class="badge call-back"' in rows[landline]
    assert 'class="badge call-back"' not in rows[mobile]


def test_an_address_in_chinese_goes_to_a_server_with_smtputf8(
    client: Any, login_as: Any, runtime: Any, smtp_utf8: Recorder
) -> None:
    number, code = submit_complaint(client, "路灯不亮。", email="张三@例子.中国", phone="")
    other, _ = submit_complaint(client, "路灯不亮。", email="张三@example.cn", phone="")
    assert send(runtime).sent == 2
    envelopes = sorted(rcpt[0] for _, rcpt, _ in smtp_utf8.received)
    assert envelopes == ["张三@example.cn", "张三@xn--fsqu00a.xn--fiqs8s"]
    message = next(m for m in smtp_utf8.messages() if "example.cn" in str(m["To"]))
    assert str(message["To"]) == "张三@example.cn"
    assert other in text_of(message)
    first = next(m for m in smtp_utf8.messages() if "xn--" in str(m["To"]))
    assert f"查询码：{code}" in text_of(first)
    assert "mail_sent" in actions(runtime, number)


def test_an_address_in_chinese_fails_clearly_without_smtputf8(
    client: Any, login_as: Any, runtime: Any, smtp_ascii: Recorder
) -> None:
    number, _ = submit_complaint(client, "路灯不亮。", email="张三@example.cn", phone="")
    result = send(runtime)
    assert result.sent == 0 and result.failed == 1  # no retry can help
    assert smtp_ascii.received == []
    case = case_of(runtime, number)
    failed = next(e for e in case.events if e.action == "mail_failed")
    # A code with its facts (triage/delivery_reasons.py), read in the reader's language.
    assert (
        failed.reason.startswith("delivery:needs_smtputf8") and "张三@example.cn" in failed.reason
    )
    page = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="citizen-unreachable"' in page
    assert any(
        "邮件发送失败" in line and "SMTPUTF8" in line and "“已受理”通知 · 邮件" in line
        for line in _timeline(login_as("supervisor"), number)
    )


def test_the_outbox_page_shows_text_messages_and_retries_them(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder, gateway: Gateway
) -> None:
    number, _ = submit_complaint(client, "路灯不亮。", email="", phone="13900004444")
    by_mail, _ = submit_complaint(client, "路灯不亮。", email="li@example.com", phone="")
    with runtime.sessions() as s, s.begin():  # both gave up after their tries
        s.execute(
            update(TextMessage).values(status=SmsStatus.FAILED, attempts=10, last_error="HTTP 503")
        )
        s.execute(
            update(OutgoingMail).values(
                status=MailStatus.FAILED, attempts=3, last_error="421 try later"
            )
        )
    admin = login_as("admin")
    index = admin.get("/admin/").get_data(as_text=True)
    assert re.search(r'id="outbox-sms-failed">1<', index)
    assert re.search(r'id="outbox-mail-failed">1<', index)
    page = admin.get("/admin/outbox?status=failed").get_data(as_text=True)
    row = re.search(r'<tr data-sms="(\d+)".*?</tr>', page, re.S)
    assert row and "13900004444" in row.group(0) and number in row.group(0)
    assert "HTTP 503" in row.group(0) and "“已受理”通知" in row.group(0)
    sms_id = row.group(1)
    mail_row = re.search(r'<tr data-mail="(\d+)".*?</tr>', page, re.S)
    assert mail_row and by_mail in mail_row.group(0)
    r = post_form(admin, "/admin/outbox?status=failed", f"/admin/outbox/sms/{sms_id}/retry", {})
    assert r.status_code == 302
    with runtime.sessions() as s:
        text = s.get(TextMessage, int(sms_id))
        assert text.status == SmsStatus.QUEUED and text.attempts == 0
        logged = s.scalars(select(AdminEvent).where(AdminEvent.action == "outbox_retried")).all()
        assert [(e.target, e.details["outcome"]) for e in logged] == [
            (f"sms #{sms_id}", "requeued")
        ]
    r = post_form(admin, "/admin/outbox", f"/admin/outbox/mail/{mail_row.group(1)}/retry", {})
    assert r.status_code == 302
    gateway.start()
    result = send(runtime)
    assert result.sent == 1 and result.sms == {"sent": 1, "retried": 0, "failed": 0}
    assert len(gateway.requests) == 1 and len(smtp.received) == 1
    assert actions(runtime, number).count("sms_queued") == 2  # queued, then requeued
    # Retrying what was sent sends nothing twice; the page says so.
    r = post_form(admin, "/admin/outbox", f"/admin/outbox/sms/{sms_id}/retry", {})
    assert r.status_code == 302
    send(runtime)
    assert len(gateway.requests) == 1
    # Only the admin; a junk channel is a 404, never a 500.
    assert login_as("supervisor").get("/admin/outbox").status_code == 403
    assert post_form(admin, "/admin/outbox", "/admin/outbox/fax/1/retry", {}).status_code == 404
    assert (
        post_form(admin, "/admin/outbox", "/admin/outbox/sms/999999/retry", {}).status_code == 404
    )


def test_the_outbox_page_names_a_waiting_mail_as_waiting_to_be_sent(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """A mail or text waiting in the outbox was labelled 转入待分派 (the case's "queued for
    dispatch"), sharing the msgid "queued" with the case life cycle: an admin read that the
    message had been put in the triage queue."""
    submit_complaint(client, "路灯不亮。", email="", phone="13900004444")
    submit_complaint(client, "路灯不亮。", email="li@example.com", phone="")
    admin = login_as("admin")
    page = admin.get("/admin/outbox").get_data(as_text=True)
    rows = re.findall(r"<tr data-(?:mail|sms)=\"\d+\".*?</tr>", page, re.S)
    assert len(rows) == 2, page[-3000:]
    for row in rows:
        state = re.search(r'data-label="状态">([^<]*)<', row).group(1)
        assert state == "排队待发", row
    assert "转入待分派" not in page
    page = admin.get("/admin/outbox?lang=en").get_data(as_text=True)
    assert re.search(r'data-label="State">in the queue<', page)


def test_a_notice_delivered_after_its_retry_no_longer_asks_to_call_back(
    client: Any, login_as: Any, runtime: Any, smtp_port: int
) -> None:
    """The mail server was down until the notice failed for good: the case page asks to
    call the citizen back. The admin sends it again from the outbox once the server is
    back, and it is delivered: the page must stop asking (it kept saying "could not be
    delivered: call them back" for ever, from the old mail_failed event)."""
    number, _ = submit_complaint(client, "路灯不亮。", email="li@example.com", phone="")
    start = datetime.now(UTC)
    for hours in (2, 4, 6):  # no server listening: each try fails, the third for good
        send(runtime, clock=lambda hours=hours: start + timedelta(hours=hours))
    assert "mail_failed" in actions(runtime, number)
    supervisor = login_as("supervisor")
    page = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="citizen-unreachable"' in page
    admin = login_as("admin")
    with runtime.sessions() as s:
        mail_id = s.scalar(select(OutgoingMail.id).where(OutgoingMail.status == MailStatus.FAILED))
    r = post_form(admin, "/admin/outbox", f"/admin/outbox/mail/{mail_id}/retry", {})
    assert r.status_code == 302
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        assert send(runtime).sent == 1
    finally:
        controller.stop()
    assert len(recorder.received) == 1
    assert actions(runtime, number)[-1] == "mail_sent"
    page = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="citizen-unreachable"' not in page


def test_the_admin_log_says_what_a_retry_did_in_the_users_language(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The outbox's retries are in the admin log with their outcome; the log showed the
    code ("requeued", "already_due") to a Chinese-reading admin."""
    submit_complaint(client, "路灯不亮。", email="li@example.com", phone="")
    with runtime.sessions() as s, s.begin():
        s.execute(update(OutgoingMail).values(status=MailStatus.FAILED, last_error="421"))
        mail_id = s.scalar(select(OutgoingMail.id))
    admin = login_as("admin")
    for _ in range(2):  # queued again, then due already
        r = post_form(admin, "/admin/outbox", f"/admin/outbox/mail/{mail_id}/retry", {})
        assert r.status_code == 302
    log = admin.get("/admin/log").get_data(as_text=True)
    rows = re.findall(r'<tr data-action="outbox_retried">(.*?)</tr>', log, re.S)
    assert len(rows) == 2
    assert "已重新排队" in rows[1] and "已到发送时间" in rows[0], rows
    assert "requeued" not in log and "already_due" not in log
    log = admin.get("/admin/log?lang=en").get_data(as_text=True)
    assert "queued again" in log and "due already" in log


def test_a_mail_refused_for_want_of_smtputf8_falls_back_to_sms(
    client: Any, login_as: Any, runtime: Any, smtp_ascii: Recorder, gateway: Gateway
) -> None:
    """张三@example.cn and a mobile number, a server without SMTPUTF8, a gateway: the mail
    fails for good and the same notice goes by text message instead, on the timeline and
    the outbox page; no "call them back" banner. A mail that went drops its stand-in; with
    an ASCII address nothing is held at all."""
    gateway.start()
    number, code = submit_complaint(
        client, "路灯不亮。", email="张三@example.cn", phone="13900005555"
    )
    ascii_number, _ = submit_complaint(
        client, "路灯不亮。", email="li@example.com", phone="13900006666"
    )
    with runtime.sessions() as s:
        held = list(s.scalars(select(TextMessage).where(TextMessage.status == "held")))
        assert [t.phone for t in held] == ["13900005555"]  # not the ASCII address's
    result = send(runtime)
    assert result.failed == 1 and result.sms["sent"] == 1
    (sent,) = gateway.requests
    assert code in str(sent["body"]) and number in str(sent["body"])
    seen = actions(runtime, number)
    assert seen.index("mail_failed") < seen.index("sms_queued") < seen.index("sms_sent")
    supervisor = login_as("supervisor")
    lines = _timeline(supervisor, number)
    assert any("短信" in line and "“已受理”通知" in line and "代替" in line for line in lines), (
        lines
    )
    page = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="citizen-unreachable"' not in page  # the notice reached them after all
    admin = login_as("admin")
    outbox = admin.get("/admin/outbox").get_data(as_text=True)
    with runtime.sessions() as s:
        mail = s.scalar(select(OutgoingMail).where(OutgoingMail.status == MailStatus.FAILED))
        text = s.scalar(select(TextMessage).where(TextMessage.phone == "13900005555"))
        assert text.status == SmsStatus.SENT
    row = re.search(rf'<tr data-mail="{mail.id}".*?</tr>', outbox, re.S).group(0)
    assert 'class="sms-instead"' in row
    assert f'data-sms="{text.id}"' in outbox
    lines = _timeline(supervisor, number, "en")
    assert any("instead of the mail" in line for line in lines), lines
    # The ASCII address's mail went: nothing held, nothing sent by SMS for it.
    assert "sms_queued" not in actions(runtime, ascii_number)
    with runtime.sessions() as s:
        assert s.scalar(select(TextMessage).where(TextMessage.status == "held")) is None
