"""Telling the citizen (triage/notifications.py, triage/sms.py), on both databases, with the
mail caught by a real SMTP server (aiosmtpd) and the texts by a stand-in HTTP gateway.

A citizen who gave an address gets 'received' (tracking number, query code, the /track
link), 'replied' (the reply as it went out, signed off where the config asks it, with the
satisfaction link) and 'closed', each once however often the sender runs; an email case's
receipt is the mail intake's acknowledgment, never a second mail. A citizen who gave only a
mobile number gets the same by SMS; a gateway that is down and then up delivers each text
once.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from intake.submission import Channel, Contact, Submission
from tests.conftest import make_settings
from tests.integration.helpers import post_form, submit_complaint
from tests.integration.test_outbox import Clock, Recorder
from tests.mailserver import free_port
from triage.cases import check_query_code, register
from triage.models import Case, CaseEvent
from triage.outbox import OutgoingMail
from triage.sms import SmsStatus, TextMessage, mobile_number
from web.mail import OutboxSender

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

CITIZEN = "wang.xiaoming@example.com"
REPLY = "已安排维修班组于本周五前更换莲花路路灯灯具，并检查线路。"


class Gateway:
    """A stand-in SMS gateway: records each request; answers 200, or 503 while `down`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.down = False
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if gateway.down:
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"busy")
                    return
                gateway.requests.append(
                    {"body": body, "auth": self.headers.get("Authorization", "")}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def sms_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, smtp_port: int, sms_port: int, monkeypatch: Any) -> Any:
    monkeypatch.setenv("TEST_SMS_TOKEN", "s3cret-token")
    return make_settings(
        tmp_path,
        db_url,
        mail={
            "sender": "xiaonengban@example.gov.cn",
            "port": smtp_port,
            "max_attempts": 3,
            "timeout_seconds": 5,
        },
        sms={
            "url": f"http://127.0.0.1:{sms_port}/send",
            "token_env": "TEST_SMS_TOKEN",
            "timeout_seconds": 3,
        },
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[Recorder]:
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield recorder
    controller.stop()


@pytest.fixture
def gateway(sms_port: int) -> Iterator[Gateway]:
    g = Gateway(sms_port)
    yield g
    g.stop()


def send(runtime: Any, clock: Any = None) -> Any:
    kwargs = {"clock": clock} if clock is not None else {}
    return OutboxSender(runtime.settings, runtime.sessions, worker="test", **kwargs).send_due()


def text_of(message: Message) -> str:
    part = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    return str(part.get_content())


def html_of(message: Message) -> str:
    part = message.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    return str(part.get_content())


def case_of(runtime: Any, number: str) -> Case:
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        _ = case.events, case.visits, case.replies
        return case


def actions(runtime: Any, number: str) -> list[str]:
    return [e.action for e in case_of(runtime, number).events]


def dispatch(login_as: Any, runtime: Any, number: str) -> None:
    case = case_of(runtime, number)
    r = post_form(
        login_as("supervisor"),
        "/board/queue",
        f"/board/cases/{number}/assign",
        {f"c{case.id}-department": "urban"},
    )
    assert r.status_code == 302


def reply(client: Any, number: str, text: str = REPLY) -> None:
    r = post_form(
        client, f"/board/cases/{number}", f"/board/cases/{number}/reply", {"reply-text": text}
    )
    assert r.status_code == 302


def visit_and_close(login_as: Any, number: str) -> None:
    supervisor = login_as("supervisor")
    r = post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/visit",
        {
            "visit-channel": "phone",
            "visit-reached": "yes",
            "visit-solved": "yes",
            "visit-satisfaction": "satisfied",
        },
    )
    assert r.status_code == 302
    r = post_form(supervisor, f"/board/cases/{number}", f"/board/cases/{number}/close", {})
    assert r.status_code == 302
    assert case_of(get_runtime(supervisor), number).status == "closed"


def get_runtime(client: Any) -> Any:
    return client.application.extensions["minsheng"]


def mails_to(smtp: Recorder, address: str) -> list[Message]:
    return [m for m in smtp.messages() if address in str(m["To"])]


# -- mail ----------------------------------------------------------------------------------


def test_a_web_form_citizen_is_told_received_replied_and_closed_once_each(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder
) -> None:
    number, code = submit_complaint(client, "莲花路路灯坏了两个星期，晚上很黑。", email=CITIZEN)
    assert send(runtime).sent == 1
    (received,) = mails_to(smtp, CITIZEN)
    assert str(received["Subject"]) == f"已受理（受理编号 {number}）"
    body = text_of(received)
    assert number in body and f"查询码：{code}" in body
    assert f"http://127.0.0.1:5000/track?number={number}" in body
    assert "王小明" not in body  # nothing the form's filler typed is echoed
    assert str(received["Auto-Submitted"]) == "auto-generated"
    assert f'href="http://127.0.0.1:5000/track?number={number}"' in html_of(received)

    dispatch(login_as, runtime, number)
    reply(login_as("urban"), number)
    assert send(runtime).sent == 1
    replied = mails_to(smtp, CITIZEN)[-1]
    assert str(replied["Subject"]) == f"已答复（受理编号 {number}）"
    body = text_of(replied)
    assert REPLY in body and "区住房和城乡建设局" in body
    assert re.search(r"http://127\.0\.0\.1:5000/satisfaction/\S+", body)

    visit_and_close(login_as, number)
    result = send(runtime)
    assert result.sent == 1
    closed = mails_to(smtp, CITIZEN)[-1]
    assert str(closed["Subject"]) == f"已办结（受理编号 {number}）"
    assert "已办结" in text_of(closed)

    # Sending again sends nothing; three distinct Message-IDs, one per notice.
    assert send(runtime).sent == 0
    assert len(smtp.received) == 3
    assert len(set(smtp.message_ids())) == 3
    # The timeline shows each mail queued and sent.
    events = actions(runtime, number)
    assert events.count("mail_queued") == 3 and events.count("mail_sent") == 3
    page = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    assert page.count(CITIZEN) >= 3


def test_a_phone_case_gets_its_query_code_by_mail_and_a_re_import_sends_nothing_new(
    runtime: Any, smtp: Recorder
) -> None:
    submission = Submission(
        channel=Channel.PHONE,
        external_id=f"call-{uuid.uuid4().hex[:8]}",
        received_at=datetime.now(UTC),
        subject="噪音扰民",
        body="来电反映：工地夜间施工噪音大，影响休息。",
        contact=Contact("李四", "13900001111", "li.si@example.com"),
    )
    with runtime.sessions() as s, s.begin():
        reg = register(s, submission, runtime.intake_policy(), datetime.now(UTC))
        number, code = reg.case.tracking_number, reg.query_code
    # The same call imported again: the same case, no second mail.
    with runtime.sessions() as s, s.begin():
        again = register(s, submission, runtime.intake_policy(), datetime.now(UTC))
        assert not again.created
    assert send(runtime).sent == 1
    (mail,) = mails_to(smtp, "li.si@example.com")
    body = text_of(mail)
    assert number in body and f"查询码：{code}" in body
    with runtime.sessions() as s:
        stored = s.scalar(select(Case).where(Case.tracking_number == number))
        assert check_query_code(stored.query_code_hash, code, runtime.secret)
    # An address was given: no text message as well.
    with runtime.sessions() as s:
        assert s.scalar(select(TextMessage.id)) is None


def test_an_email_case_is_acknowledged_by_the_intake_only_then_told_of_the_reply(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder
) -> None:
    submission = Submission(
        channel=Channel.EMAIL,
        external_id=f"<c-{uuid.uuid4().hex[:8]}@mail.example.com>",
        received_at=datetime.now(UTC),
        subject="路灯不亮",
        body="莲花路与金桥街交叉口的路灯坏了两个星期。",
        contact=Contact("", "", CITIZEN),
    )
    with runtime.sessions() as s, s.begin():
        number = register(s, submission, runtime.intake_policy(), datetime.now(UTC)).case
        number = number.tracking_number
    with runtime.sessions() as s:
        assert s.scalar(select(OutgoingMail.id)) is None  # the intake's acknowledgment says it
    dispatch(login_as, runtime, number)
    reply(login_as("urban"), number)
    assert send(runtime).sent == 1
    (mail,) = smtp.messages()
    assert str(mail["Subject"]) == f"已答复（受理编号 {number}）" and REPLY in text_of(mail)


def test_a_looping_address_and_the_offices_own_address_get_nothing(
    client: Any, runtime: Any
) -> None:
    submit_complaint(client, "小区门口垃圾堆积。", email="xiaonengban@example.gov.cn")
    # Other channels pass what the caller said: a malformed address gets nothing either.
    submission = Submission(
        channel=Channel.PHONE,
        external_id=f"call-{uuid.uuid4().hex[:8]}",
        received_at=datetime.now(UTC),
        subject="垃圾堆积",
        body="小区门口垃圾堆积，无人清运。",
        contact=Contact("", "", "not an address"),
    )
    with runtime.sessions() as s, s.begin():
        assert register(s, submission, runtime.intake_policy(), datetime.now(UTC)).created
    with runtime.sessions() as s:
        assert s.scalar(select(OutgoingMail.id)) is None


def test_an_address_in_chinese_registers_the_case_and_is_told_as_it_can_be(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder
) -> None:
    # A Chinese domain is written in punycode, which every server takes.
    number, code = submit_complaint(client, "路灯不亮。", email="li@例子.中国", phone="")
    # A Chinese local part needs SMTPUTF8, which this server offers (aiosmtpd's Controller
    # does by default): it gets its mail (it was a 500 and the complaint lost, then a text
    # message instead). tests/integration/test_notice_gaps.py: a server without SMTPUTF8.
    other, _ = submit_complaint(client, "路灯不亮。", email="张三@example.com", phone="13900004444")
    assert send(runtime).sent == 2
    mail = next(m for m in smtp.messages() if "xn--" in str(m["To"]))
    assert "li@xn--fsqu00a.xn--fiqs8s" in str(mail["To"])
    assert number in text_of(mail) and f"查询码：{code}" in text_of(mail)
    assert ["张三@example.com"] in [rcpt for _, rcpt, _ in smtp.received]
    with runtime.sessions() as s:
        assert s.scalar(select(TextMessage.id)) is None
    # The department's reply to it goes through too (it was a 500 at every reply).
    dispatch(login_as, runtime, other)
    reply(login_as("urban"), other)
    assert "replied" in actions(runtime, other)


@pytest.mark.parametrize("sign_off", [True])
def test_a_drafted_reply_is_told_only_when_the_head_signs_it_off(
    tmp_path: Path, db_url: str, smtp_port: int, sms_port: int, sign_off: bool, smtp: Recorder
) -> None:
    from tests.conftest import login
    from web import create_app

    app = create_app(
        make_settings(
            tmp_path,
            db_url,
            mail={"sender": "xiaonengban@example.gov.cn", "port": smtp_port},
            supervision={"reply_sign_off": sign_off},
            classifier={"auto_route": False, "model_dir": str(tmp_path / "m")},
        ),
        TESTING=True,
    )
    rt = app.extensions["minsheng"]
    try:
        number, _code = submit_complaint(app.test_client(), "路灯不亮一个月。", email=CITIZEN)
        supervisor = login(app.test_client(), "supervisor")
        case = case_of(rt, number)
        post_form(
            supervisor,
            "/board/queue",
            f"/board/cases/{number}/assign",
            {f"c{case.id}-department": "urban"},
        )
        reply(login(app.test_client(), "urban"), number)
        send(rt)
        assert [str(m["Subject"]) for m in smtp.messages()] == [f"已受理（受理编号 {number}）"]
        draft = case_of(rt, number).pending_draft
        head = login(app.test_client(), "urban-head")
        r = post_form(
            head,
            f"/board/cases/{number}",
            f"/board/cases/{number}/replies/{draft.id}/sign-off",
            {},
        )
        assert r.status_code == 302
        send(rt)
        subjects = [str(m["Subject"]) for m in smtp.messages()]
        assert subjects == [f"已受理（受理编号 {number}）", f"已答复（受理编号 {number}）"]
        assert REPLY in text_of(smtp.messages()[-1])
    finally:
        rt.engine.dispose()


def test_notices_can_be_switched_off_one_by_one(tmp_path: Path, db_url: str) -> None:
    from web import create_app

    app = create_app(
        make_settings(tmp_path, db_url, notifications={"received": False}), TESTING=True
    )
    try:
        submit_complaint(app.test_client(), "路灯不亮。", email=CITIZEN)
        with app.extensions["minsheng"].sessions() as s:
            assert s.scalar(select(OutgoingMail.id)) is None
    finally:
        app.extensions["minsheng"].engine.dispose()


# -- SMS -----------------------------------------------------------------------------------


def test_a_phone_only_citizen_gets_a_text_the_gateway_down_then_up_delivers_it_once(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder, gateway: Gateway
) -> None:
    number, code = submit_complaint(client, "明德路12号路灯坏了一个月。", phone="138 0013 8000")
    clock = Clock()
    clock.advance(1)  # the clock starts on the second; the text was queued within it
    # The gateway is not even listening: the text waits.
    first = send(runtime, clock)
    assert first.sms == {"sent": 0, "retried": 1, "failed": 0}
    with runtime.sessions() as s:
        (sms,) = s.scalars(select(TextMessage)).all()
        assert sms.status == SmsStatus.QUEUED and sms.attempts == 1
        assert "Connection refused" in sms.last_error or "URLError" in sms.last_error
    # Listening but answering 503: still waiting.
    gateway.start()
    gateway.down = True
    clock.advance(120)
    assert send(runtime, clock).sms == {"sent": 0, "retried": 1, "failed": 0}
    # Up: delivered once, and never again.
    gateway.down = False
    clock.advance(600)
    assert send(runtime, clock).sms == {"sent": 1, "retried": 0, "failed": 0}
    clock.advance(3600)
    assert send(runtime, clock).sms == {"sent": 0, "retried": 0, "failed": 0}
    (request,) = gateway.requests
    assert request["auth"] == "Bearer s3cret-token"
    assert request["body"]["phone"] == "13800138000"
    text = request["body"]["text"]
    assert number in text and code in text and "/track?number=" in text
    assert text.startswith("【民声区机关效能建设办公室】") and len(text) <= 300
    assert request["body"]["id"].startswith("received.")
    events = actions(runtime, number)
    assert events.count("sms_queued") == 1
    assert events.count("sms_deferred") == 2 and events.count("sms_sent") == 1
    assert smtp.received == []  # no address given: no mail
    # The case's timeline says so; an external supervisor does not see the number.
    staff = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    assert "短信已发送" in staff and "短信暂未发出，将重试" in staff and "13800138000" in staff
    observer = login_as("observer").get(f"/board/cases/{number}").get_data(as_text=True)
    assert "短信已发送" in observer and "13800138000" not in observer


def test_a_landline_gets_no_text_and_a_long_reply_is_shortened_to_fit(
    client: Any, login_as: Any, runtime: Any, gateway: Gateway
) -> None:
    submit_complaint(client, "路面塌陷。", phone="0519-88001234")
    with runtime.sessions() as s:
        assert s.scalar(select(TextMessage.id)) is None
    number, _ = submit_complaint(client, "路灯不亮。", phone="+86 139 0000 2222")
    dispatch(login_as, runtime, number)
    long_reply = "经现场核实，" + "已协调供电公司与路灯所联合检修线路并更换灯具，" * 20
    reply(login_as("urban"), number, long_reply)
    gateway.start()
    result = send(runtime)
    assert result.sms["sent"] == 2
    texts = [r["body"]["text"] for r in gateway.requests]
    assert len(texts[1]) <= 300 and "…" in texts[1] and "/satisfaction/" in texts[1]


def test_mobile_numbers_in_any_format() -> None:
    assert mobile_number("138 0013 8000") == "13800138000"
    assert mobile_number("+86 13800138000") == "13800138000"
    assert mobile_number("１３８００１３８０００") == "13800138000"
    assert mobile_number("0086-138-0013-8000") == "13800138000"
    assert mobile_number("0519-88001234") is None
    assert mobile_number("") is None


def test_events_carry_no_query_code(client: Any, runtime: Any, smtp: Recorder) -> None:
    number, code = submit_complaint(client, "路灯不亮。", email=CITIZEN)
    with runtime.sessions() as s:
        events = s.scalars(select(CaseEvent).join(Case).where(Case.tracking_number == number))
        assert all(code not in json.dumps(e.detail) + e.reason for e in events)


def test_an_open311_request_is_told_once_even_when_the_client_retries(
    client: Any, runtime: Any, smtp: Recorder
) -> None:
    from tests.integration.test_open311 import CONTACT, new_key, post

    key = new_key(runtime)
    first = post(client, key, device_id="phone-1", **CONTACT)
    assert first.status_code == 201, first.get_data(as_text=True)
    (answer,) = first.get_json()
    retried = post(client, key, device_id="phone-1", **CONTACT)
    assert retried.get_json()[0]["service_request_id"] == answer["service_request_id"]
    assert send(runtime).sent == 1
    (mail,) = smtp.messages()
    body = text_of(mail)
    assert answer["service_request_id"] in body and f"查询码：{answer['query_code']}" in body
    assert str(mail["To"]) == CONTACT["email"]


def test_the_command_sends_the_texts_and_names_a_missing_token(
    client: Any, runtime: Any, config_file: Path, sms_port: int, gateway: Gateway, monkeypatch: Any
) -> None:
    """`minsheng outbox send --json` sends the texts too; a gateway token that the config
    names but the environment lacks stops it with the variable's name, not a traceback."""
    from click.testing import CliRunner

    from web.cli import main

    submit_complaint(client, "路灯不亮。", phone="13800138000")
    text = config_file.read_text(encoding="utf-8")
    empty = 'url = ""                           # e.g. "https://sms.example.gov.cn/api/send"'
    assert empty in text
    text = text.replace(empty, f'url = "http://127.0.0.1:{sms_port}/send"')
    text = text.replace('# token_env = "MINSHENG_SMS_TOKEN"', 'token_env = "TEST_SMS_TOKEN"')
    config_file.write_text(text, encoding="utf-8")
    gateway.start()
    monkeypatch.delenv("TEST_SMS_TOKEN")
    out = CliRunner().invoke(main, ["outbox", "send", "--json", "--config", str(config_file)])
    assert out.exit_code == 1 and "TEST_SMS_TOKEN" in out.output and "Traceback" not in out.output
    monkeypatch.setenv("TEST_SMS_TOKEN", "abc")
    out = CliRunner().invoke(main, ["outbox", "send", "--json", "--config", str(config_file)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.strip().splitlines()[-1])["sms"] == {
        "sent": 1,
        "retried": 0,
        "failed": 0,
    }
    assert len(gateway.requests) == 1 and gateway.requests[0]["auth"] == "Bearer abc"


def test_the_citizen_of_a_merged_case_is_told_of_the_reply_and_the_close_too(
    client: Any, login_as: Any, runtime: Any, smtp: Recorder
) -> None:
    target, _ = submit_complaint(client, "莲花路路灯坏了两个星期。", email=CITIZEN)
    other, _ = submit_complaint(
        client.application.test_client(), "莲花路的路灯一直不亮。", email="li.si@example.com"
    )
    r = post_form(
        login_as("supervisor"),
        f"/board/cases/{other}",
        f"/board/cases/{other}/merge",
        {"merge-target": target, "merge-reason": "同一问题"},
    )
    assert r.status_code == 302 and case_of(runtime, other).status == "merged"
    dispatch(login_as, runtime, target)
    reply(login_as("urban"), target)
    send(runtime)
    (to_other,) = [m for m in mails_to(smtp, "li.si@example.com") if "已答复" in str(m["Subject"])]
    assert str(to_other["Subject"]) == f"已答复（受理编号 {other}）"
    body = text_of(to_other)
    assert REPLY in body and "合并办理" in body and "/satisfaction/" not in body
    (to_own,) = [m for m in mails_to(smtp, CITIZEN) if "已答复" in str(m["Subject"])]
    assert "/satisfaction/" in text_of(to_own)
    visit_and_close(login_as, target)
    send(runtime)
    assert [str(m["Subject"]) for m in mails_to(smtp, "li.si@example.com")][-1] == (
        f"已办结（受理编号 {other}）"
    )
    # Each on the citizen's own case.
    assert actions(runtime, other).count("mail_sent") == 3
