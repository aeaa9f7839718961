# ruff: noqa: F811 - the fixtures of test_notifications and test_notice_gaps, imported by name
"""What the office reads of a notice that did not go, and what the citizen is told, on both
databases, with a real SMTP server (aiosmtpd) and a stand-in SMS gateway:

- a failure the system itself explains (the server lacks SMTPUTF8, the server cannot be
  reached, the sender died on its last try) is stored as a code with its facts and read in
  the reader's language (Chinese by default, English), on the outbox page, on the case's
  timeline and on the command line;
- a notice mail whose text message went in its place is not offered for a retry, and a
  retry asked for anyway is refused with a clear message (the citizen would be told twice);
- `minsheng demo` with a gateway and a mail server configured tells the demo's made-up
  citizens nothing; a real new case afterwards is told as usual;
- the satisfaction link's return visit keeps the citizen's own words as its note and says
  that it came through the link, and why it went to review, in the reader's language.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select, update

from tests.integration.helpers import post_form, submit_complaint
from tests.integration.test_notice_gaps import _timeline, smtp_ascii  # noqa: F401
from tests.integration.test_notifications import (  # noqa: F401 - fixtures
    Gateway,
    case_of,
    gateway,
    send,
    settings,
    sms_port,
    smtp,
    smtp_port,
)
from tests.integration.test_outbox import Recorder
from tests.integration.test_satisfaction import answer_link, link_in_mail
from triage import delivery_reasons, system_reasons
from triage.models import AdminEvent, Case, CaseEvent, Status
from triage.outbox import MailStatus, OutgoingMail
from triage.sms import TextMessage
from web.cli import main


def _config(tmp_path: Path, db_url: str, smtp_port: int, sms_port: int | None = None) -> Path:
    """config.toml with the test's database, mail server port and (optionally) gateway."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "config.toml").read_text(encoding="utf-8")
    text = text.replace('url = "sqlite:///instance/minsheng.db"', f'url = "{db_url}"')
    text = text.replace('instance_dir = "instance"', f'instance_dir = "{tmp_path / "inst"}"')
    assert "\nport = 25\n" in text
    text = text.replace("\nport = 25\n", f"\nport = {smtp_port}\n")
    if sms_port is not None:
        assert '\nurl = ""  ' in text
        text = text.replace('\nurl = ""  ', f'\nurl = "http://127.0.0.1:{sms_port}/send"  ', 1)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _mail_row(outbox_page: str, mail_id: int) -> str:
    found = re.search(rf'<tr data-mail="{mail_id}".*?</tr>', outbox_page, re.S)
    assert found, outbox_page[:2000]
    return re.sub(r"\s+", " ", found.group(0))


def test_a_missing_smtputf8_is_stored_as_a_code_and_read_in_each_language(
    client: Any,
    login_as: Any,
    runtime: Any,
    smtp_ascii: Recorder,
    tmp_path: Path,
    db_url: str,
    smtp_port: int,
) -> None:
    number, _ = submit_complaint(client, "路灯不亮。", email="张三@example.cn", phone="")
    assert send(runtime).failed == 1
    with runtime.sessions() as s:
        mail = s.scalar(select(OutgoingMail))
        event = s.scalar(select(CaseEvent).where(CaseEvent.action == "mail_failed"))
        # Stored: the code and its facts, no sentence in any language.
        code, facts = delivery_reasons.parse(mail.last_error)  # type: ignore[misc]
        assert code == delivery_reasons.NEEDS_SMTPUTF8
        assert facts["addresses"] == "张三@example.cn"
        assert facts["server"] == f"127.0.0.1:{smtp_port}"
        assert "does not offer" not in mail.last_error and "告知" not in mail.last_error
        assert delivery_reasons.parse(event.reason)[1]["to"] == "张三@example.cn"  # type: ignore[index]

    admin = login_as("admin")
    zh = _mail_row(admin.get("/admin/outbox").get_data(as_text=True), mail.id)
    assert "不支持 SMTPUTF8" in zh and "张三@example.cn" in zh and "须以其他方式告知市民" in zh
    assert "delivery:" not in zh and "does not offer" not in zh
    en = _mail_row(admin.get("/admin/outbox?lang=en").get_data(as_text=True), mail.id)
    assert "does not offer SMTPUTF8" in en and "张三@example.cn" in en
    assert "须以其他方式" not in en

    supervisor = login_as("supervisor")
    failed = [line for line in _timeline(supervisor, number, "zh") if "邮件发送失败" in line]
    assert failed and "张三@example.cn: 邮件服务器" in failed[0] and "不支持 SMTPUTF8" in failed[0]
    failed = [line for line in _timeline(supervisor, number, "en") if "could not be sent" in line]
    assert failed and "does not offer SMTPUTF8" in failed[0] and "delivery:" not in failed[0]

    # The command line, for an operator in a terminal: English.
    listed = CliRunner().invoke(
        main,
        ["outbox", "list", "--config", str(_config(tmp_path, db_url, smtp_port))],
        catch_exceptions=False,
    )
    assert listed.exit_code == 0, listed.output
    assert "does not offer SMTPUTF8, which the address 张三@example.cn needs" in listed.output


def test_an_unreachable_server_and_a_dead_sender_are_read_in_each_language(
    client: Any, login_as: Any, runtime: Any, smtp_port: int
) -> None:
    """No server listening: the mail waits with the reason; a mail whose sender died on its
    last allowed try fails with that reason (both written by the system, not a server)."""
    waiting, _ = submit_complaint(client, "路灯不亮。", email="li@example.com", phone="")
    result = send(runtime)
    assert result.retried == 1 and "refused" in result.server_error.lower()
    with runtime.sessions() as s:
        mail = s.scalar(select(OutgoingMail))
        code, facts = delivery_reasons.parse(mail.last_error)  # type: ignore[misc]
        assert code == delivery_reasons.SERVER_UNAVAILABLE
        assert "refused" in facts["error"].lower()
        # As if its sender had died during its last try, and the lease had run out.
        s.execute(
            update(OutgoingMail).values(
                status=MailStatus.SENDING,
                attempts=runtime.settings.mail.max_attempts + 1,
                next_attempt_at=datetime.now(UTC) - timedelta(minutes=1),
            )
        )
        s.commit()
    assert send(runtime).failed == 1
    with runtime.sessions() as s:
        assert s.scalar(select(OutgoingMail.last_error)) == delivery_reasons.SENDER_STOPPED
    admin = login_as("admin")
    zh = _mail_row(admin.get("/admin/outbox").get_data(as_text=True), mail.id)
    assert "发送程序在最后一次尝试中停止" in zh and "delivery:" not in zh
    en = _mail_row(admin.get("/admin/outbox?lang=en").get_data(as_text=True), mail.id)
    assert "The sender stopped during the last try" in en
    lines = _timeline(login_as("supervisor"), waiting, "zh")
    assert any("无法连接邮件服务器 127.0.0.1" in line for line in lines), lines
    lines = _timeline(login_as("supervisor"), waiting, "en")
    assert any("Mail server 127.0.0.1" in line and "not reachable" in line for line in lines)


def test_a_notice_told_by_sms_instead_is_not_offered_or_sent_again(
    client: Any,
    login_as: Any,
    runtime: Any,
    smtp_ascii: Recorder,
    gateway: Gateway,
    tmp_path: Path,
    db_url: str,
    smtp_port: int,
    sms_port: int,
) -> None:
    gateway.start()
    number, _ = submit_complaint(client, "路灯不亮。", email="张三@example.cn", phone="13900005555")
    result = send(runtime)
    assert result.failed == 1 and result.sms["sent"] == 1
    with runtime.sessions() as s:
        mail_id = s.scalar(select(OutgoingMail.id).where(OutgoingMail.status == "failed"))
    admin = login_as("admin")
    row = _mail_row(admin.get("/admin/outbox").get_data(as_text=True), mail_id)
    assert f'id="retry-mail-{mail_id}"' not in row  # no button that would tell them twice
    assert "已改发短信告知：不再重发" in row
    en = _mail_row(admin.get("/admin/outbox?lang=en").get_data(as_text=True), mail_id)
    assert "Told by text message: not sent again" in en

    # Asked for anyway (a stale page, a crafted form): refused, and said why.
    r = post_form(admin, "/admin/outbox?lang=zh", f"/admin/outbox/mail/{mail_id}/retry", {})
    assert r.status_code == 302
    page = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert f"#{mail_id} 不再重发：已改发短信告知市民" in page
    with runtime.sessions() as s:
        assert s.get(OutgoingMail, mail_id).status == MailStatus.FAILED  # type: ignore[union-attr]
        logged = s.scalar(select(AdminEvent).where(AdminEvent.action == "outbox_retried"))
        assert logged is not None and logged.details["outcome"] == "sent_instead"
    log = admin.get("/admin/log").get_data(as_text=True)
    assert "已改发短信告知：不再重发" in log
    # The command line refuses it too, with its reason and exit code 1.
    config = _config(tmp_path, db_url, smtp_port, sms_port)
    out = CliRunner().invoke(
        main, ["outbox", "retry", str(mail_id), "--config", str(config)], catch_exceptions=False
    )
    assert out.exit_code == 1
    assert "told by text message instead" in out.output and "told twice" in out.output
    # Nothing more goes: one text message, no mail.
    again = send(runtime)
    assert again.sent == 0 and again.failed == 0 and len(gateway.requests) == 1
    assert smtp_ascii.received == []
    assert case_of(runtime, number).status != Status.CLOSED


def test_the_demo_tells_its_made_up_citizens_nothing(
    tmp_path: Path, db_url: str, smtp_port: int, sms_port: int, runtime: Any, client: Any
) -> None:
    config = _config(tmp_path, db_url, smtp_port, sms_port)
    out = CliRunner().invoke(main, ["demo", "--no-model", "--config", str(config)])
    assert out.exit_code == 0, out.output
    with runtime.sessions() as s:
        demo = s.scalar(select(func.count()).select_from(Case))
        phones = s.scalar(select(func.count()).select_from(Case).where(Case.contact_phone != ""))
        assert demo and phones  # the demo's citizens have numbers: they could have been told
        assert s.scalar(select(func.count()).select_from(TextMessage)) == 0
        assert s.scalar(select(func.count()).select_from(OutgoingMail)) == 0
        assert "sms_queued" not in set(s.scalars(select(CaseEvent.action)))
    # A real new case afterwards is told, as usual (received, by SMS: no address).
    number, _ = submit_complaint(client, "和平路井盖破损。", email="", phone="13900007777")
    with runtime.sessions() as s:
        texts = list(s.scalars(select(TextMessage)))
        assert [t.phone for t in texts] == ["13900007777"] and number in texts[0].text


def test_the_satisfaction_visit_keeps_the_citizens_words_and_reads_in_each_language(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder
) -> None:
    number, _ = submit_complaint(client, "明德路12号路灯坏了一个月。", email="zhao@example.com")
    case = case_of(runtime, number)
    r = post_form(
        login_as("supervisor"),
        "/board/queue",
        f"/board/cases/{number}/assign",
        {f"c{case.id}-department": "urban"},
    )
    assert r.status_code == 302
    r = post_form(
        login_as("urban"),
        f"/board/cases/{number}",
        f"/board/cases/{number}/reply",
        {"reply-text": "已安排维修。"},
    )
    assert r.status_code == 302
    path = link_in_mail(runtime, number)
    r = answer_link(
        client.application.test_client(),
        path,
        solved="no",
        satisfaction="unsatisfied",
        comment="灯还是不亮",
    )
    assert r.status_code == 200
    case = case_of(runtime, number)
    (visit,) = case.visits
    assert visit.note == "灯还是不亮"  # the citizen's words, nothing written around them
    review = next(e for e in case.events if e.action == "review_requested")
    assert review.reason == system_reasons.WEB_VISIT_UNSATISFIED_UNSOLVED

    supervisor = login_as("supervisor")
    zh = supervisor.get(f"/board/cases/{number}?lang=zh").get_data(as_text=True)
    line = re.sub(r"\s+", " ", re.search(r'<p class="visit">(.*?)</p>', zh, re.S).group(1))  # type: ignore[union-attr]
    assert "经满意度评价链接回复" in line and "灯还是不亮" in line
    assert any(
        "网上回访（满意度评价链接）：市民不满意，问题未解决。" in x
        for x in _timeline(supervisor, number, "zh")
    )
    en = supervisor.get(f"/board/cases/{number}?lang=en").get_data(as_text=True)
    line = re.sub(r"\s+", " ", re.search(r'<p class="visit">(.*?)</p>', en, re.S).group(1))  # type: ignore[union-attr]
    assert "answered through the satisfaction link" in line and "网上回访" not in line
    lines = _timeline(supervisor, number, "en")
    assert any("the citizen is not satisfied and the problem is not solved" in x for x in lines)
    assert not any("网上回访" in x for x in lines)


def test_a_bounce_of_a_notice_reads_in_each_language_on_the_case_page(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """A bounce of our mail is kept on its case as its facts (recipient, DSN status, the
    remote server's words: triage/mail_intake._bounce_text), written out in the reader's
    language; the server's diagnostic as it came."""
    from intake.email import Bounce
    from triage.mail_intake import CaseMessage, _bounce_text

    number, _ = submit_complaint(client, "路灯不亮。", email="li@example.com", phone="")
    bounce = Bounce(
        original_message_id="x@example.gov.cn",
        recipient="li@example.com",
        status="5.1.1",
        diagnostic="smtp; 550 5.1.1 user unknown",
    )
    with runtime.sessions() as s, s.begin():
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        text = _bounce_text(bounce, None)  # type: ignore[arg-type]
        s.add(
            CaseMessage(
                case_id=case.id,  # type: ignore[union-attr]
                at=datetime.now(UTC),
                kind="bounce",
                sender="MAILER-DAEMON@example.com",
                text=text,
            )
        )
    assert "未能送达" not in text and "not delivered" not in text
    supervisor = login_as("supervisor")
    for lang, said in (("zh", "发往 li@example.com 的邮件未能送达"), ("en", "was not delivered")):
        page = supervisor.get(f"/board/cases/{number}?lang={lang}").get_data(as_text=True)
        quoted = re.search(
            r'id="case-messages".*?<blockquote class="reply">(.*?)</blockquote>', page, re.S
        )
        assert quoted, page[:500]
        shown = quoted.group(1)
        assert said in shown and "5.1.1" in shown and "550 5.1.1 user unknown" in shown
        assert "delivery:" not in shown


def test_an_sms_gateway_out_of_reach_reads_in_each_language(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder, sms_port: int
) -> None:
    """The gateway not listening: the text waits with the reason, our words as a code (the
    network's own error a fact of it); a gateway's answer (HTTP 503) stays as it came."""
    number, _ = submit_complaint(client, "明德路路灯不亮。", email="", phone="138 0013 8000")
    assert send(runtime).sms == {"sent": 0, "retried": 1, "failed": 0}
    with runtime.sessions() as s:
        sms = s.scalar(select(TextMessage))
        code, facts = delivery_reasons.parse(sms.last_error)  # type: ignore[misc, union-attr]
    assert code == delivery_reasons.GATEWAY_UNAVAILABLE
    assert facts["gateway"] == f"127.0.0.1:{sms_port}" and "refused" in facts["error"].lower()
    admin = login_as("admin")
    page = admin.get("/admin/outbox").get_data(as_text=True)
    row = re.search(rf'<tr data-sms="{sms.id}".*?</tr>', page, re.S).group(0)  # type: ignore[union-attr]
    assert f"无法连接短信网关 127.0.0.1:{sms_port}" in row and "delivery:" not in row
    page = admin.get("/admin/outbox?lang=en").get_data(as_text=True)
    row = re.search(rf'<tr data-sms="{sms.id}".*?</tr>', page, re.S).group(0)  # type: ignore[union-attr]
    assert f"SMS gateway 127.0.0.1:{sms_port} not reachable" in row
    lines = _timeline(login_as("supervisor"), number, "en")
    assert any("SMS gateway" in line and "not reachable" in line for line in lines), lines
