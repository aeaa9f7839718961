"""The outbox against a real SMTP server (aiosmtpd, in-process) and the real database: what
reaches the server, what waits when it is down, what the case page shows, and that several
senders at once deliver each mail exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, inspect, select

from intake.submission import Channel, Contact, Submission
from tests.conftest import make_settings, need
from tests.integration.helpers import table_as_of
from tests.mailserver import free_port
from triage.cases import register
from triage.models import Case, CaseEvent
from triage.outbox import (
    FileAttachment,
    InlineImage,
    MailStatus,
    OutgoingMail,
    build_message,
    case_of_reply,
    claim,
    enqueue,
    outbox_counts,
)
from web.cli import main
from web.mail import OutboxSender

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

SENDER = "效能办 <xiaonengban@example.gov.cn>"
CITIZEN = "wang.xiaoming@example.com"
BODY = (
    "王小明您好：\n\n您反映的“莲花路路灯不亮”已受理，受理编号 {number}。\n"
    "请凭受理编号和查询码在网站查询办理进度。\n\n机关效能建设办公室"
)


class Recorder:
    """An aiosmtpd handler that keeps what it was given; can refuse, slow down or hang."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: set[str] = set()
        self.delay = 0.0
        self.hang_once = False
        self.hanging = threading.Event()
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hang_once:
            self.hang_once = False
            self.hanging.set()
            await asyncio.sleep(3600)  # a server that took the data and never answers
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.arrived:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float) -> bool:
        """Waits until `count` mails have arrived, at most `timeout` seconds; whether they
        have."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.received) >= count, timeout)

    def messages(self) -> list[Any]:
        return [message_from_bytes(raw, policy=policy.default) for _, _, raw in self.received]

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.messages()]


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, smtp_port: int) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        mail={
            "sender": "xiaonengban@example.gov.cn",
            "port": smtp_port,
            "max_attempts": 3,
            "retry_base_seconds": 60,
            "retry_max_seconds": 600,
            "timeout_seconds": 5,
        },
    )


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[Any]:
    """Starts the SMTP server on the settings' port when called; stops it at the end."""
    started: list[Any] = []

    def start(recorder: Recorder | None = None) -> Recorder:
        recorder = recorder or Recorder()
        controller = aiosmtpd_controller.Controller(recorder, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        started.append(controller)
        return recorder

    yield start
    for controller in started:
        controller.stop()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def email_case(runtime: Any, clock: Clock, n: int = 1) -> int:
    submission = Submission(
        channel=Channel.EMAIL,
        external_id=f"<complaint-{n}-{uuid.uuid4().hex[:8]}@mail.example.com>",
        received_at=clock(),
        subject="莲花路路灯不亮",
        body="莲花路与金桥街交叉口的路灯坏了两个星期，晚上一片漆黑，请尽快维修。",
        contact=Contact("王小明", "", CITIZEN),
    )
    with runtime.sessions() as s, s.begin():
        return register(s, submission, runtime.intake_policy(), clock()).case.id


def queue_ack(runtime: Any, clock: Clock, case_id: int, **extra: Any) -> int:
    with runtime.sessions() as s, s.begin():
        case = s.get(Case, case_id)
        message = build_message(
            sender=SENDER,
            to=[f"王小明 <{CITIZEN}>"],
            subject=f"已受理：莲花路路灯不亮（{case.tracking_number}）",
            text=BODY.format(number=case.tracking_number),
            in_reply_to=case.external_id,
            auto_submitted="auto-replied",
            **extra,
        )
        return enqueue(s, message, case=case, kind="acknowledgment", now=clock()).id


def queue_plain(runtime: Any, clock: Clock, count: int) -> list[int]:
    """`count` notifications with no case, each to its own address."""
    with runtime.sessions() as s, s.begin():
        return [
            enqueue(
                s,
                build_message(
                    sender=SENDER,
                    to=[f"dept{i}@example.gov.cn"],
                    subject=f"待办提醒 {i}",
                    text=f"第 {i} 件：请及时处理。",
                ),
                kind="notification",
                now=clock(),
            ).id
            for i in range(count)
        ]


def mail(runtime: Any, mail_id: int) -> OutgoingMail:
    with runtime.sessions() as s:
        return s.get(OutgoingMail, mail_id)


def mail_events(runtime: Any, case_id: int) -> list[tuple[str, str]]:
    with runtime.sessions() as s:
        return [
            (e.action, e.reason)
            for e in s.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
            )
            if e.action.startswith("mail_")
        ]


def timeline(client: Any, runtime: Any, case_id: int) -> str:
    with runtime.sessions() as s:
        number = s.get(Case, case_id).tracking_number
    page = client.get(f"/board/cases/{number}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    return html[html.index('class="timeline') :]


def sender(runtime: Any, clock: Clock, worker: str = "test-sender") -> OutboxSender:
    return OutboxSender(runtime.settings, runtime.sessions, worker=worker, clock=clock)


# -- delivery ---------------------------------------------------------------------------------


def test_a_queued_mail_reaches_the_server_with_its_headers_and_chinese_text(
    runtime: Any, smtp: Any, login_as: Any
) -> None:
    server = smtp()
    clock = Clock()
    case_id = email_case(runtime, clock)
    mail_id = queue_ack(runtime, clock, case_id, bcc=["archive@example.gov.cn"])
    assert server.received == []  # queued, not sent: nothing goes out inside the transaction

    result = sender(runtime, clock).send_due()

    assert (result.sent, result.retried, result.failed) == (1, 0, 0)
    [(mail_from, rcpt_tos, raw)] = server.received
    assert mail_from == "xiaonengban@example.gov.cn"
    assert sorted(rcpt_tos) == ["archive@example.gov.cn", CITIZEN]
    msg = message_from_bytes(raw, policy=policy.default)
    with runtime.sessions() as s:
        case = s.get(Case, case_id)
        number, external_id = case.tracking_number, case.external_id
    assert msg["Subject"] == f"已受理：莲花路路灯不亮（{number}）"
    assert msg["From"].addresses[0].display_name == "效能办"
    assert msg["To"].addresses[0].display_name == "王小明"
    assert msg["To"].addresses[0].addr_spec == CITIZEN
    assert "Bcc" not in msg  # the archive copy is not shown to the citizen
    assert msg["Message-ID"] == mail(runtime, mail_id).message_id
    assert msg["Message-ID"].endswith("@example.gov.cn>")
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == external_id
    assert msg["References"] == external_id
    assert msg.get_content() == BODY.format(number=number)
    assert raw.isascii()  # 7-bit clean: no server needs 8BITMIME for it

    sent = mail(runtime, mail_id)
    assert sent.status == MailStatus.SENT and sent.attempts == 1 and sent.sent_at is not None
    assert [a for a, _ in mail_events(runtime, case_id)] == ["mail_queued", "mail_sent"]
    supervisor_view = timeline(login_as("supervisor"), runtime, case_id)
    assert "邮件待发送" in supervisor_view and "邮件已发送" in supervisor_view
    assert CITIZEN in supervisor_view
    observer_view = timeline(login_as("observer"), runtime, case_id)
    assert "邮件已发送" in observer_view
    assert CITIZEN not in observer_view and "w***@example.com" in observer_view

    again = sender(runtime, clock).send_due()
    assert again.sent == 0 and len(server.received) == 1  # a sent mail is never sent again


def test_a_reply_to_an_acknowledgment_finds_its_case(runtime: Any) -> None:
    clock = Clock()
    case_id = email_case(runtime, clock)
    other = email_case(runtime, clock, 2)
    mail_id = queue_ack(runtime, clock, case_id)
    queue_ack(runtime, clock, other)
    ours = mail(runtime, mail_id).message_id
    with runtime.sessions() as s:
        # As a mail client writes them: the thread's earlier ids, then ours, maybe bare.
        assert case_of_reply(s, ["<elsewhere@example.com>", ours.strip("<>")]) == case_id
        assert case_of_reply(s, ["<elsewhere@example.com>"]) is None
        assert case_of_reply(s, []) is None


def test_the_monthly_report_shape_html_with_inline_charts_and_a_spreadsheet(
    runtime: Any, smtp: Any
) -> None:
    server = smtp()
    clock = Clock()
    chart = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    sheet = b"PK\x03\x04" + os.urandom(3000)
    with runtime.sessions() as s, s.begin():
        enqueue(
            s,
            build_message(
                sender=SENDER,
                to=["领导 <leader@example.gov.cn>"],
                subject="2026年11月 民声月报",
                text="本月受理 120 件，满意率 93%。",
                html='<p>本月受理 <b>120</b> 件</p><img src="cid:chart1@minsheng">',
                inline_images=[InlineImage("chart1@minsheng", chart)],
                attachments=[
                    FileAttachment(
                        "2026年11月统计.xlsx",
                        sheet,
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    )
                ],
            ),
            kind="report",
            now=clock(),
        )
    assert sender(runtime, clock).send_due().sent == 1
    [msg] = server.messages()
    assert msg.get_content_type() == "multipart/mixed"
    assert msg["Auto-Submitted"] == "auto-generated"
    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    html, image = related.get_payload()
    assert "本月受理 <b>120</b> 件" in html.get_content()
    assert image["Content-ID"] == "<chart1@minsheng>" and image.get_content() == chart
    [xlsx] = list(msg.iter_attachments())
    assert xlsx.get_filename() == "2026年11月统计.xlsx" and xlsx.get_content() == sheet
    assert msg.get_body(("plain",)).get_content().strip() == "本月受理 120 件，满意率 93%。"


# -- the server down, retries, failure ----------------------------------------------------------


def test_while_the_server_is_down_the_mail_waits_and_goes_once_it_is_back(
    runtime: Any, smtp: Any, login_as: Any
) -> None:
    clock = Clock()
    case_id = email_case(runtime, clock)
    mail_id = queue_ack(runtime, clock, case_id)

    down = sender(runtime, clock).send_due()  # nothing listens on the port

    assert (down.sent, down.retried, down.failed) == (0, 1, 0)
    assert "refused" in down.server_error.lower()
    waiting = mail(runtime, mail_id)
    assert waiting.status == MailStatus.QUEUED and waiting.attempts == 1
    assert waiting.next_attempt_at == clock() + timedelta(seconds=60)
    assert "refused" in waiting.last_error.lower()
    with runtime.sessions() as s:
        assert outbox_counts(s, clock()) == {
            "queued": 1,
            "retrying": 1,
            "due": 0,
            "sending": 0,
            "failed": 0,
        }
    page = timeline(login_as("supervisor"), runtime, case_id)
    assert "邮件暂未发出，将重试" in page and "refused" in page.lower()

    server = smtp()
    assert sender(runtime, clock).send_due().sent == 0  # not due yet: backoff
    assert server.received == []
    clock.advance(61)
    back = sender(runtime, clock).send_due()
    assert (back.sent, back.retried, back.failed) == (1, 0, 0)
    assert len(server.received) == 1
    assert sender(runtime, clock).send_due().sent == 0
    assert mail(runtime, mail_id).attempts == 2
    assert [a for a, _ in mail_events(runtime, case_id)] == [
        "mail_queued",
        "mail_deferred",
        "mail_sent",
    ]


def test_a_mail_that_keeps_failing_ends_failed_and_shows_so_on_its_case(
    runtime: Any, login_as: Any
) -> None:
    clock = Clock()
    case_id = email_case(runtime, clock)
    mail_id = queue_ack(runtime, clock, case_id)
    waits = []
    for _ in range(3):  # max_attempts = 3; nothing listens
        before = clock()
        sender(runtime, clock).send_due()
        row = mail(runtime, mail_id)
        waits.append((row.next_attempt_at - before).total_seconds())
        clock.advance(3600)
    assert waits[:2] == [60, 120]  # exponential backoff from retry_base_seconds
    failed = mail(runtime, mail_id)
    assert failed.status == MailStatus.FAILED and failed.attempts == 3
    assert sender(runtime, clock).send_due().mail_ids == []  # no fourth try
    with runtime.sessions() as s:
        counts = outbox_counts(s, clock())
    assert counts["failed"] == 1 and counts["queued"] == 0
    assert [a for a, _ in mail_events(runtime, case_id)] == [
        "mail_queued",
        "mail_deferred",
        "mail_deferred",
        "mail_failed",
    ]
    page = timeline(login_as("supervisor"), runtime, case_id)
    assert "邮件发送失败" in page


def test_a_server_that_closes_the_connection_after_two_mails_gets_them_all(
    runtime: Any, smtp_port: int
) -> None:
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(
        recorder, hostname="127.0.0.1", port=smtp_port, command_call_limit={"MAIL": 2, "*": 50}
    )
    controller.start()
    try:
        clock = Clock()
        queue_plain(runtime, clock, 5)
        result = sender(runtime, clock).send_due()
    finally:
        controller.stop()
    assert (result.sent, result.retried, result.failed) == (5, 0, 0)
    assert len(set(recorder.message_ids())) == 5


def test_a_recipient_the_server_refuses_for_good_fails_at_once(runtime: Any, smtp: Any) -> None:
    recorder = Recorder()
    recorder.refuse.add(CITIZEN)
    smtp(recorder)
    clock = Clock()
    case_id = email_case(runtime, clock)
    mail_id = queue_ack(runtime, clock, case_id)
    result = sender(runtime, clock).send_due()
    assert (result.sent, result.retried, result.failed) == (0, 0, 1)
    failed = mail(runtime, mail_id)
    assert failed.status == MailStatus.FAILED and failed.attempts == 1
    assert "550" in failed.last_error and "no such user" in failed.last_error
    assert mail_events(runtime, case_id)[-1][0] == "mail_failed"


# -- TLS, login, settings ---------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate, key)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    need(shutil.which("openssl"), "openssl is not installed")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def tls_server(smtp_port: int, certificate: tuple[Path, Path], logins: list[Any]) -> Any:
    """STARTTLS required, then AUTH with xiaonengban / s3cret-pw; returns its Recorder."""
    import ssl

    from aiosmtpd.smtp import AuthResult

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        logins.append((data.login, data.password))
        return AuthResult(success=(data.login, data.password) == (b"xiaonengban", b"s3cret-pw"))

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(
        recorder,
        hostname="127.0.0.1",
        port=smtp_port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    recorder.controller = controller  # type: ignore[attr-defined]
    return recorder


def tls_sender(runtime: Any, tmp_path: Path, clock: Clock, **mail: Any) -> OutboxSender:
    settings = make_settings(
        tmp_path,
        runtime.settings.database.url,
        mail={**runtime.settings.mail.model_dump(), "use_tls": True, "timeout_seconds": 2, **mail},
    )
    return OutboxSender(settings, runtime.sessions, clock=clock)


def test_starttls_and_login_with_the_password_from_the_environment(
    runtime: Any, smtp_port: int, certificate: tuple[Path, Path], tmp_path: Path, monkeypatch: Any
) -> None:
    logins: list[Any] = []
    server = tls_server(smtp_port, certificate, logins)
    try:
        clock = Clock()
        [mail_id] = queue_plain(runtime, clock, 1)
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust the test's own CA
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-pw")
        sent = tls_sender(
            runtime,
            tmp_path,
            clock,
            username="xiaonengban",
            password="",
            password_env="TEST_SMTP_PASSWORD",
        ).send_due()
        assert sent.sent == 1, sent
        assert logins == [(b"xiaonengban", b"s3cret-pw")]
        assert len(server.received) == 1

        # A wrong password or an untrusted certificate is not the mail's fault: it waits.
        clock.advance(1)
        [second] = queue_plain(runtime, clock, 1)
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
        refused = tls_sender(
            runtime, tmp_path, clock, username="xiaonengban", password_env="TEST_SMTP_PASSWORD"
        ).send_due()
        assert (refused.sent, refused.retried, refused.failed) == (0, 1, 0)
        assert refused.server_error.startswith(f"SMTP server 127.0.0.1:{smtp_port}")
        assert logins[1] == (b"xiaonengban", b"wrong")
        monkeypatch.delenv("SSL_CERT_FILE")
        clock.advance(3600)
        untrusted = tls_sender(
            runtime, tmp_path, clock, username="xiaonengban", password="s3cret-pw"
        ).send_due()
        assert untrusted.retried == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.server_error
        waiting = mail(runtime, second)
        assert waiting.status == MailStatus.QUEUED and waiting.attempts == 2
        assert mail(runtime, mail_id).status == MailStatus.SENT
        assert len(server.received) == 1
    finally:
        server.controller.stop()


def test_mail_settings_are_checked_when_read(tmp_path: Path, monkeypatch: Any) -> None:
    from web.settings import ConfigError

    url = f"sqlite:///{tmp_path}/x.db"
    with pytest.raises(ConfigError, match=r"mail\.retries: unknown key"):
        make_settings(tmp_path, url, mail={"retries": 3})
    with pytest.raises(ConfigError, match="choose one"):
        make_settings(tmp_path, url, mail={"use_tls": True, "use_ssl": True})
    with pytest.raises(ConfigError, match="max_attempts"):
        make_settings(tmp_path, url, mail={"max_attempts": 0})
    monkeypatch.delenv("NO_SUCH_SMTP_PASSWORD", raising=False)
    settings = make_settings(tmp_path, url, mail={"password_env": "NO_SUCH_SMTP_PASSWORD"})
    with pytest.raises(ConfigError, match="NO_SUCH_SMTP_PASSWORD is not set"):
        OutboxSender(settings, None)  # type: ignore[arg-type]


# -- several senders ----------------------------------------------------------------------------


def test_two_senders_at_once_deliver_each_of_50_mails_exactly_once(runtime: Any, smtp: Any) -> None:
    recorder = Recorder()
    recorder.delay = 0.01
    smtp(recorder)
    clock = Clock()
    ids = queue_plain(runtime, clock, 50)
    gate = threading.Barrier(2)
    results: dict[str, Any] = {}

    def run(name: str) -> None:
        gate.wait()
        results[name] = sender(runtime, clock, worker=name).send_due()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert results["one"].sent + results["two"].sent == 50
    assert results["one"].sent > 0 and results["two"].sent > 0  # both really sent
    delivered = Counter(recorder.message_ids())
    assert len(delivered) == 50 and set(delivered.values()) == {1}
    with runtime.sessions() as s:
        statuses = Counter(s.scalars(select(OutgoingMail.status).where(OutgoingMail.id.in_(ids))))
    assert statuses == {MailStatus.SENT: 50}


@pytest.fixture
def mail_config(config_file: Path, smtp_port: int) -> Path:
    text = config_file.read_text(encoding="utf-8")
    assert "\nport = 25\n" in text
    text = text.replace("\nport = 25\n", f"\nport = {smtp_port}\n")
    assert "\ntimeout_seconds = 30 " in text
    text = text.replace("\ntimeout_seconds = 30 ", "\ntimeout_seconds = 5 ")
    config_file.write_text(text, encoding="utf-8")
    return config_file


def minsheng(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("minsheng")), *args, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.slow
def test_two_sender_processes_deliver_each_mail_exactly_once(
    runtime: Any, smtp: Any, mail_config: Path
) -> None:
    """`minsheng outbox send` and a sender in another process, this test's own (a second
    command would cost its interpreter's start, seconds of CPU, and prove nothing more)."""
    recorder = Recorder()
    recorder.delay = 0.05
    smtp(recorder)
    total = 30
    queue_plain(runtime, Clock(), total)
    proc = minsheng(mail_config, "outbox", "send", "--json")
    try:
        # The command has started sending: from here on both claim, one mail at a time.
        assert recorder.wait_for(1, 60), "the command sent nothing"
        ours = OutboxSender(runtime.settings, runtime.sessions, worker="test-process").send_due()
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    theirs = json.loads(out.strip().splitlines()[-1])
    assert theirs["sent"] + ours.sent == total
    assert theirs["sent"] > 0 and ours.sent > 0  # both really sent
    delivered = Counter(recorder.message_ids())
    assert len(delivered) == total and set(delivered.values()) == {1}


@pytest.mark.slow
def test_a_sender_killed_mid_send_leaves_the_mail_to_another_after_its_lease(
    runtime: Any, smtp: Any, mail_config: Path
) -> None:
    recorder = Recorder()
    recorder.hang_once = True
    smtp(recorder)
    clock = Clock()
    case_id = email_case(runtime, clock)
    mail_id = queue_ack(runtime, clock, case_id)
    proc = minsheng(mail_config, "outbox", "send")
    try:
        assert recorder.hanging.wait(30), "the sender never reached the server"
        held = mail(runtime, mail_id)
        assert held.status == MailStatus.SENDING and held.claimed_by
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    assert sender(runtime, clock).send_due().mail_ids == []  # the dead sender's lease holds
    # The lease is ten SMTP timeouts (5 s here) from the claim.
    assert held.claim_expires_at - datetime.now(UTC) < timedelta(seconds=51)
    clock.now = held.claim_expires_at + timedelta(seconds=1)
    taken = sender(runtime, clock, worker="survivor").send_due()
    assert taken.sent == 1
    assert len(recorder.received) == 1  # the first copy never got its "250"
    after = mail(runtime, mail_id)
    assert after.status == MailStatus.SENT and after.attempts == 2


def test_a_claim_takes_no_more_than_its_limit(runtime: Any) -> None:
    clock = Clock()
    queue_plain(runtime, clock, 5)
    with runtime.sessions() as s:
        first = claim(s, clock(), worker="a", limit=2, lease=timedelta(minutes=5))
        s.commit()
        second = claim(s, clock(), worker="b", limit=10, lease=timedelta(minutes=5))
        s.commit()
    assert len(first) == 2 and len(second) == 3
    assert not {m.id for m in first} & {m.id for m in second}
    assert {m.claimed_by for m in first} == {"a"} and {m.claimed_by for m in second} == {"b"}


def test_claims_of_a_dead_sender_are_taken_over_only_after_the_lease(
    runtime: Any, smtp: Any
) -> None:
    server = smtp()
    clock = Clock()
    [mail_id] = queue_plain(runtime, clock, 1)
    with runtime.sessions() as s:
        [claimed] = claim(s, clock(), worker="dead", limit=5, lease=timedelta(minutes=5))
        s.commit()
    assert claimed.id == mail_id
    clock.advance(299)
    assert sender(runtime, clock).send_due().mail_ids == []
    clock.advance(2)
    assert sender(runtime, clock).send_due().sent == 1
    assert len(server.received) == 1


# -- the command ------------------------------------------------------------------------------


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_command_sends_lists_and_requeues(runtime: Any, smtp: Any, mail_config: Path) -> None:
    clock = Clock()
    case_id = email_case(runtime, clock)
    mail_id = queue_ack(runtime, clock, case_id)
    with runtime.sessions() as s:  # as if it had failed for good already
        row = s.get(OutgoingMail, mail_id)
        row.status, row.attempts, row.last_error = MailStatus.FAILED, 3, "451 try later"
        s.commit()
    listed = run_cli("outbox", "list", "--status", "failed", "--config", str(mail_config))
    assert listed.exit_code == 0, listed.output
    assert "1 failed" in listed.output and "451 try later" in listed.output
    assert CITIZEN in listed.output

    again = run_cli("outbox", "retry", str(mail_id), "--config", str(mail_config))
    assert again.exit_code == 0, again.output
    server = smtp()
    out = run_cli("outbox", "send", "--json", "--config", str(mail_config))
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "sent": 1,
        "retried": 0,
        "failed": 0,
        "server_error": None,
    }
    assert len(server.received) == 1
    assert run_cli("outbox", "retry", str(mail_id), "--config", str(mail_config)).exit_code != 0


@pytest.mark.slow
def test_watch_sends_as_mail_arrives_and_stops_cleanly_on_sigterm(
    runtime: Any, smtp: Any, mail_config: Path
) -> None:
    server = smtp()
    queue_plain(runtime, Clock(), 1)
    proc = minsheng(mail_config, "outbox", "send", "--watch", "--interval", "0.2", "--json")
    try:
        # The mail queued before it started has gone: it is watching. Two more arrive now.
        assert server.wait_for(1, 60), "the watcher sent nothing"
        queue_plain(runtime, Clock(), 2)
        assert server.wait_for(3, 30), f"{len(server.received)} of 3 mails sent"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["sent"] == 3
    assert len(server.received) == 3


# -- the migration ----------------------------------------------------------------------------


def test_upgrading_a_database_with_cases_adds_an_outbox_they_can_send_through(
    empty_url: str, tmp_path: Path, smtp: Any, smtp_port: int
) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from triage.models import Base
    from web.db import alembic_config, make_engine, upgrade
    from web.runtime import Runtime

    engine = make_engine(empty_url)
    upgrade(engine, "0003")
    clock = Clock()
    with engine.begin() as conn:
        conn.execute(
            table_as_of(conn, Case.__table__).insert(),
            [
                {
                    "tracking_number": "OLD-1",
                    "query_code_hash": "x",
                    "channel": "email",
                    "external_id": "<old-1@mail.example.com>",
                    "kind": "complaint",
                    "status": "triage",
                    "subject": "旧案件",
                    "body": "升级之前登记的案件",
                    "contact_email": CITIZEN,
                    "received_at": clock(),
                    "created_at": clock(),
                    "version": 1,
                }
            ],
        )
    upgrade(engine)
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if "outbox" in repr(d)
        ]
        assert differences == []  # the migrated table is the model's
        assert "outbox" in inspect(conn).get_table_names()
    engine.dispose()

    server = smtp()
    rt = Runtime.build(make_settings(tmp_path, empty_url, mail={"port": smtp_port}))
    with rt.sessions() as s:
        case_id = s.scalar(select(Case.id).where(Case.tracking_number == "OLD-1"))
    queue_ack(rt, clock, case_id)
    assert OutboxSender(rt.settings, rt.sessions, clock=clock).send_due().sent == 1
    assert len(server.received) == 1
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutgoingMail)) == 1
    rt.engine.dispose()

    engine = make_engine(empty_url)
    command.downgrade(alembic_config(engine), "0003")
    with engine.connect() as conn:
        assert "outbox" not in inspect(conn).get_table_names()
    engine.dispose()
