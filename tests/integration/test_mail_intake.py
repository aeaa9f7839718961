"""`minsheng intake mail` against a real IMAP server (dovecot on loopback), a real SMTP
server (aiosmtpd) and the real database: what becomes of each message, what the citizen
gets back, what the department sees, and that crashes and a second watcher lose nothing
and duplicate nothing."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, inspect, select

from intake.mailbox import Mailbox
from tests.conftest import SHARED_DATA, need
from tests.integration.helpers import table_as_of
from tests.mailserver import free_port
from triage import delivery_reasons
from triage.cases import check_query_code
from triage.export import case_record
from triage.mail_intake import (
    CaseMessage,
    IncomingMail,
    ListStatus,
    Outcome,
    case_messages_of,
    confirm_spam,
    ingest,
    intake_health,
    lease_holder,
    lease_name,
    make_case_of_quarantined,
    pending_mail,
    raw_of,
    record_fetch,
    release_spam,
    take_lease,
)
from triage.models import Case, CaseEvent
from triage.outbox import MailStatus, OutgoingMail
from web.cli import main
from web.cli_intake import mail_policy
from web.mail import OutboxSender
from web.runtime import Runtime
from web.settings import ImapSettings, load_settings

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

OFFICE = "xiaonengban@example.gov.cn"
CITIZEN = "wang.xiaoming@example.com"
MIME = SHARED_DATA / "mime"
COUNT_KEYS = [
    "seen",
    "registered",
    "threaded",
    "suspected_spam",
    "quarantined",
    "duplicates",
    "errors",
]


# -- fixtures -------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(bytes(envelope.original_content or envelope.content))
        return "250 OK"

    def messages(self) -> list[Any]:
        return [message_from_bytes(m) for m in self.received]


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[Any]:
    started: list[Any] = []

    def start() -> Recorder:
        recorder = Recorder()
        controller = aiosmtpd_controller.Controller(recorder, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        started.append(controller)
        return recorder

    yield start
    for controller in started:
        controller.stop()


def write_config(config_file: Path, mailserver: Any, smtp_port: int, **imap: Any) -> Path:
    text = config_file.read_text(encoding="utf-8").split("\n[intake.imap]\n")[0]
    text = text.replace("\nport = 25\n", f"\nport = {smtp_port}\n")
    text = text.replace('sender = "minsheng@example.gov.cn"', f'sender = "{OFFICE}"')
    text = text.replace('secret_key = ""', 'secret_key = "intake-test-key"', 1)
    text = text.replace("\ntimeout_seconds = 30 ", "\ntimeout_seconds = 5 ")
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": mailserver.port,
        "ssl": False,
        "username": mailserver.username,
        "password": mailserver.password,
        "connect_timeout": 5,
        "read_timeout": 20,
        "idle_timeout": 30,
        "poll_interval": 0.5,
        "batch_size": 50,
    }
    values.update(imap)
    lines = ["", "[intake.imap]"]
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value)}")
    config_file.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
    return config_file


@pytest.fixture
def intake_config(config_file: Path, mailserver: Any, smtp_port: int) -> Path:
    # Most tests send many mails from one citizen: the per-address limit is tested on its own.
    return write_config(
        config_file, mailserver, smtp_port, acknowledgments_per_address_per_day=1000
    )


@pytest.fixture
def rt(intake_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("MINSHENG_CONFIG", str(intake_config))
    runtime = Runtime.build(load_settings(intake_config))
    yield runtime
    runtime.engine.dispose()


def run_once(config: Path) -> dict[str, int]:
    result = CliRunner().invoke(
        main,
        ["intake", "mail", "--once", "--json", "--config", str(config)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output.strip().splitlines()[-1])
    assert list(counts) == COUNT_KEYS
    assert counts["seen"] == sum(counts[k] for k in COUNT_KEYS[1:])
    return counts


def minsheng(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("minsheng")), *args, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def folder_count(client: Any, folder: str) -> int:
    """Messages in `folder` now (0 when it does not exist), asked on an open connection: a
    new one per question (`mailserver.folder_uids`) costs dovecot some 17 ms of CPU, and the
    waits below ask ten or twenty times a second."""
    if not client.folder_exists(folder):
        return 0
    return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])


def mail(
    body: bytes | str,
    *,
    subject: str = "路灯不亮",
    sender: str = f"王小明 <{CITIZEN}>",
    charset: str | None = "utf-8",
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
    encoding: str = "8bit",
) -> bytes:
    """A hand-written message; a str body is encoded in `charset` (utf-8 when None)."""
    data = body if isinstance(body, bytes) else body.encode(charset or "utf-8")
    subject_header = (
        subject
        if subject.isascii()
        else "=?utf-8?b?" + base64.b64encode(subject.encode()).decode() + "?="
    )
    mid = message_id or f"<{uuid.uuid4().hex}@mail.example.com>"
    lines = [
        f"From: {sender_header(sender)}",
        f"To: {OFFICE}",
        f"Subject: {subject_header}",
        "Date: " + datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
        f"Message-ID: {mid}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain" + (f"; charset={charset}" if charset else ""),
        f"Content-Transfer-Encoding: {encoding}",
    ]
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + data + b"\r\n"


def sender_header(sender: str) -> str:
    if sender.isascii():
        return sender
    name, _, address = sender.partition(" <")
    return "=?utf-8?b?" + base64.b64encode(name.encode()).decode() + "?= <" + address


def cases(rt: Runtime) -> list[Case]:
    with rt.sessions() as s:
        return list(s.scalars(select(Case).order_by(Case.id)))


def rows(rt: Runtime) -> list[IncomingMail]:
    with rt.sessions() as s:
        return list(s.scalars(select(IncomingMail).order_by(IncomingMail.id)))


def outbox(rt: Runtime) -> list[OutgoingMail]:
    with rt.sessions() as s:
        return list(s.scalars(select(OutgoingMail).order_by(OutgoingMail.id)))


def send_outbox(rt: Runtime, now: datetime | None = None) -> Any:
    clock = (lambda: now) if now else (lambda: datetime.now(UTC))
    return OutboxSender(rt.settings, rt.sessions, clock=clock).send_due()


def subject_of(message: Any) -> str:
    return str(make_header(decode_header(message["Subject"])))


def text_of(message: Any) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")


# -- every message of a torture corpus ------------------------------------------------------


def corpus() -> list[Path]:
    need(MIME.is_dir(), f"{MIME} missing")
    manifest = (MIME / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [MIME / line.split("\t", 1)[0] for line in manifest if line.strip()]


@pytest.mark.slow
def test_every_message_of_the_mime_corpus_ends_in_exactly_one_place(
    rt: Runtime, mailserver: Any, intake_config: Path, smtp: Any
) -> None:
    appended: list[bytes] = []
    for path in corpus():
        raw = path.read_bytes()
        try:
            mailserver.append("INBOX", raw)
        except Exception as exc:  # a message the IMAP server itself refuses never arrives
            pytest.fail(f"dovecot refused {path.name}: {exc}")
        appended.append(raw)
    # What the server serves (it may have changed line ends on APPEND) is what intake reads.
    served = [raw for raw, _flags in mailserver.messages("INBOX").values()]
    assert len(served) == len(appended)

    counts = run_once(intake_config)

    assert counts["seen"] == len(appended)
    assert counts["errors"] == 0
    assert mailserver.folder_uids("INBOX") == []
    on_server = [
        raw
        for folder in ("Processed", "Quarantine", "Spam")
        for raw, _flags in mailserver.messages(folder).values()
    ]
    assert Counter(hashlib.sha256(r).digest() for r in on_server) == Counter(
        hashlib.sha256(r).digest() for r in served
    )
    kept = {m.raw_sha256 for m in rows(rt)}
    assert kept == {hashlib.sha256(r).hexdigest() for r in served}  # every one, raw kept
    with rt.sessions() as s:
        for m in s.scalars(select(IncomingMail)):
            assert hashlib.sha256(m.raw).hexdigest() == m.raw_sha256
    registered = cases(rt)
    assert counts["registered"] == len(registered)
    assert all(c.body.strip() for c in registered)
    again = run_once(intake_config)
    assert again["seen"] == 0


# -- Chinese mail as it arrives -------------------------------------------------------------

GBK_TEXT = "朱镕基路口的路灯坏了三个星期，晚上一片漆黑，老人孩子走路很危险，请尽快修理。"
BIG5_TEXT = "社區垃圾兩週沒有清運，臭氣熏天，請環保局派人處理。"
GB2312_SUBJECT = "反映莲花路路灯问题"


def gb2312_subject() -> str:
    return "=?gb2312?b?" + base64.b64encode(GB2312_SUBJECT.encode("gb2312")).decode() + "?="


GB18030_TEXT = "刘䶮反映：小区电梯三天两头坏，物业不管，老人上下楼非常困难。"  # 䶮: 4 bytes
SPLIT_SUBJECT = "电梯故障请尽快维修"


def split_words(text: str, charset: str, step: int) -> str:
    """RFC 2047 words cut every `step` bytes: in the middle of a character."""
    data = text.encode(charset)
    return " ".join(
        f"=?{charset}?B?{base64.b64encode(data[i : i + step]).decode()}?="
        for i in range(0, len(data), step)
    )


def with_header(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert old in raw
    return raw.replace(old, new, 1)


HTML = (
    "<html><body><p>路灯不亮</p><p>详见 <a href='http://example.com/photo'>照片</a></p>"
    "</body></html>"
)

# name: (raw message, the case text a person reads, the subject or None to skip)
CHINESE_MAILS: dict[str, tuple[bytes, str, str | None]] = {
    # charset=gb2312 over GBK bytes (镕 is not in GB2312), subject an RFC 2047 gb2312 word
    "gb2312_label_over_gbk": (
        with_header(
            mail(GBK_TEXT, charset="gbk", subject="x"), b"charset=gbk", b"charset=gb2312"
        ).replace(b"Subject: x\r\n", f"Subject: {gb2312_subject()}\r\n".encode()),
        GBK_TEXT,
        GB2312_SUBJECT,
    ),
    "gb2312_label_over_gb18030": (
        with_header(mail(GB18030_TEXT, charset="gb18030"), b"charset=gb18030", b"charset=gb2312"),
        GB18030_TEXT,
        None,
    ),
    "no_charset_gbk": (mail(GBK_TEXT.encode("gbk"), charset=None), GBK_TEXT, None),
    "x_gbk_label": (
        with_header(mail(GBK_TEXT, charset="gbk"), b"charset=gbk", b"charset=x-gbk"),
        GBK_TEXT,
        None,
    ),
    "GB2312_CHARSET_label": (
        with_header(mail(GBK_TEXT, charset="gbk"), b"charset=gbk", b"charset=GB2312_CHARSET"),
        GBK_TEXT,
        None,
    ),
    "nested_charset_label": (
        with_header(
            mail("楼道灯坏了一个月。", charset="gbk"),
            b"charset=gbk",
            b'charset="charset="GB2312""',
        ),
        "楼道灯坏了一个月。",
        None,
    ),
    "utf8_label_over_gb18030": (
        mail(GBK_TEXT.encode("gb18030"), charset="utf-8"),
        GBK_TEXT,
        None,
    ),
    "big5_label_over_gbk": (
        with_header(mail(GBK_TEXT, charset="gbk"), b"charset=gbk", b"charset=big5"),
        GBK_TEXT,
        None,
    ),
    "big5": (mail(BIG5_TEXT, charset="big5"), BIG5_TEXT, None),
    "base64_gbk": (
        mail(base64.encodebytes(GBK_TEXT.encode("gbk")), charset="gbk", encoding="base64"),
        GBK_TEXT,
        None,
    ),
    "split_rfc2047_subject": (
        mail("正文：电梯又停了。", subject="x").replace(
            b"Subject: x\r\n", f"Subject: {split_words(SPLIT_SUBJECT, 'gbk', 5)}\r\n".encode()
        ),
        "正文：电梯又停了。",
        SPLIT_SUBJECT,
    ),
    "raw_8bit_gbk_subject": (
        mail("正文内容：电梯又停了。", charset="gbk", subject="x").replace(
            b"Subject: x\r\n", b"Subject: " + SPLIT_SUBJECT.encode("gbk") + b"\r\n"
        ),
        "正文内容：电梯又停了。",
        SPLIT_SUBJECT,
    ),
    "html_only_gb2312": (
        with_header(mail(HTML.encode("gbk"), charset="gb2312"), b"text/plain", b"text/html"),
        "路灯不亮\n\n详见 照片 (http://example.com/photo)",
        None,
    ),
    "multipart_boundary_never_appears": (
        with_header(
            mail("没有分隔线的正文，楼下餐馆油烟扰民。", charset="gbk"),
            b"Content-Type: text/plain; charset=gbk",
            b'Content-Type: multipart/mixed; boundary="XYZ"',
        ),
        "没有分隔线的正文，楼下餐馆油烟扰民。",
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(CHINESE_MAILS))
def test_chinese_mail_becomes_a_case_with_the_text_a_person_reads(
    name: str, rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    raw, expected, subject = CHINESE_MAILS[name]
    mailserver.append("INBOX", raw)

    counts = run_once(intake_config)

    assert counts["registered"] == 1, counts
    (case,) = cases(rt)
    assert case.body == expected
    assert case.channel == "email" and case.contact_email == CITIZEN
    assert case.contact_name == "王小明"
    if subject is not None:
        assert case.subject == subject
    assert mailserver.folder_uids("Processed") == [1]


def test_a_photo_attached_to_a_mail_is_kept_with_its_case(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"
        b"\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01"
        b"\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    name = "=?gbk?b?" + base64.b64encode("现场照片.png".encode("gbk")).decode() + "?="
    body = (
        b"--B\r\nContent-Type: text/plain; charset=gbk\r\n\r\n"
        + "井盖丢了，见附件照片。".encode("gbk")
        + b"\r\n--B\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        + f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'.encode()
        + base64.encodebytes(png)
        + b"\r\n--B--\r\n"
    )
    raw = with_header(
        mail(body, charset=None),
        b"Content-Type: text/plain",
        b'Content-Type: multipart/mixed; boundary="B"',
    )
    mailserver.append("INBOX", raw)
    assert run_once(intake_config)["registered"] == 1
    with rt.sessions() as s:
        case = s.scalars(select(Case)).one()
        assert case.body == "井盖丢了，见附件照片。"
        (attachment,) = case.attachments
        assert attachment.filename == "现场照片.png" and attachment.size == len(png)
    assert rt.attachments.path(attachment.sha256).read_bytes() == png


# -- acknowledgment, threading --------------------------------------------------------------


def test_a_new_mail_is_acknowledged_in_chinese_with_number_code_and_link(
    rt: Runtime, mailserver: Any, intake_config: Path, smtp: Any
) -> None:
    server = smtp()
    mailserver.append(
        "INBOX", mail("莲花路路灯坏了，请修理。", message_id="<first@mail.example.com>")
    )
    assert run_once(intake_config)["registered"] == 1
    assert send_outbox(rt).sent == 1

    (case,) = cases(rt)
    (ack,) = server.messages()
    text = text_of(ack)
    assert case.tracking_number in subject_of(ack) and subject_of(ack).startswith("已受理")
    assert f"受理编号：{case.tracking_number}" in text
    code = text.split("查询码：", 1)[1].split()[0]
    # the code in the mail opens the case
    assert check_query_code(case.query_code_hash, code, rt.secret)
    assert f"http://127.0.0.1:5000/track?number={case.tracking_number}" in text
    assert ack["In-Reply-To"] == "<first@mail.example.com>"
    assert ack["To"].endswith(CITIZEN) or CITIZEN in ack["To"]
    assert ack["Auto-Submitted"] == "auto-replied"
    with rt.sessions() as s:
        actions = list(s.scalars(select(CaseEvent.action).where(CaseEvent.case_id == case.id)))
    assert "mail_queued" in actions and "mail_sent" in actions


def test_replies_to_the_acknowledgment_are_added_to_the_case_not_new_cases(
    rt: Runtime, mailserver: Any, intake_config: Path, smtp: Any
) -> None:
    server = smtp()
    mailserver.append("INBOX", mail("莲花路路灯坏了，请修理。"))
    run_once(intake_config)
    send_outbox(rt)
    (ack,) = server.messages()
    (case,) = cases(rt)

    by_subject = mail(
        "补充一下：坏的是第三根到第五根。\r\n\r\n> 原邮件内容",
        subject="回复：" + subject_of(ack),
    )
    by_header = mail(
        "今天晚上又黑了一整夜。",
        subject="还是没修",
        headers={"In-Reply-To": ack["Message-ID"]},
    )
    stranger = mail(
        "我也要反映一个问题，和上面的编号无关。",
        subject=f"关于 {case.tracking_number}",
        sender="陌生人 <stranger@example.net>",
    )
    for raw in (by_subject, by_header, stranger):
        mailserver.append("INBOX", raw)
    counts = run_once(intake_config)

    assert counts["threaded"] == 2 and counts["registered"] == 1
    assert len(cases(rt)) == 2  # only the stranger's mail opened a case
    with rt.sessions() as s:
        texts = [m.text for m in case_messages_of(s, case.id)]
        events = list(
            s.scalars(
                select(CaseEvent.action).where(
                    CaseEvent.case_id == case.id, CaseEvent.action == "message_added"
                )
            )
        )
    assert texts == ["补充一下：坏的是第三根到第五根。", "今天晚上又黑了一整夜。"]
    assert len(events) == 2
    assert len(outbox(rt)) == 2  # replies are not acknowledged again; the stranger is


LOOP_HEADERS = {
    "auto_submitted": ({"Auto-Submitted": "auto-replied"}, f"王小明 <{CITIZEN}>"),
    "precedence_bulk": ({"Precedence": "bulk"}, f"王小明 <{CITIZEN}>"),
    "precedence_list": ({"Precedence": "list"}, f"王小明 <{CITIZEN}>"),
    "x_loop": ({"X-Loop": OFFICE}, f"王小明 <{CITIZEN}>"),
    "postmaster": ({}, "postmaster@example.com"),
    "mailer_daemon": ({}, "MAILER-DAEMON@example.com"),
    "our_own_address": ({}, OFFICE),
}


def test_automatic_and_looping_mail_is_neither_registered_nor_acknowledged(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    for i, (_name, (headers, sender)) in enumerate(sorted(LOOP_HEADERS.items())):
        mailserver.append(
            "INBOX",
            mail(f"第{i}号：小区门口的下水道堵了，污水横流。", sender=sender, headers=headers),
        )
    mailserver.append("INBOX", mail("一封普通的来信：公交站牌被撞倒了。"))
    counts = run_once(intake_config)

    assert counts["seen"] == len(LOOP_HEADERS) + 1
    acks = outbox(rt)
    assert len(acks) == 1 and acks[0].recipients == [CITIZEN]
    acknowledged = {c.id: c.body for c in cases(rt)}[acks[0].case_id]
    assert "公交站牌" in acknowledged
    with rt.sessions() as s:
        outcomes = Counter(s.scalars(select(IncomingMail.outcome)))
    assert outcomes[Outcome.REGISTERED] == 1
    assert counts["suspected_spam"] == len(LOOP_HEADERS) and len(cases(rt)) == 1


def dsn(original_id: str, recipient: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.com\r\n"
        f"To: {OFFICE}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mx.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system. Your message could not be delivered.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {OFFICE}\r\nTo: {recipient}\r\nMessage-ID: {original_id}\r\n"
        "Subject: ack\r\n\r\n--B--\r\n"
    ).encode()


def test_a_bounce_of_the_acknowledgment_is_attached_to_its_case(
    rt: Runtime, mailserver: Any, intake_config: Path, smtp: Any
) -> None:
    mailserver.append("INBOX", mail("莲花路路灯坏了。"))
    run_once(intake_config)
    (ack,) = outbox(rt)
    (case,) = cases(rt)

    mailserver.append("INBOX", dsn(ack.message_id, CITIZEN))
    mailserver.append("INBOX", dsn("<not-ours@elsewhere.example>", "x@example.org"))
    counts = run_once(intake_config)

    assert counts["threaded"] == 1 and counts["quarantined"] == 1 and counts["registered"] == 0
    assert len(cases(rt)) == 1
    with rt.sessions() as s:
        (message,) = case_messages_of(s, case.id)
        unknown = pending_mail(s, "quarantine")
    assert message.kind == "bounce" and "5.1.1" in message.text and CITIZEN in message.text
    # Its facts as a code (triage/delivery_reasons.py), no sentence in one language.
    code, facts = delivery_reasons.parse(message.text)  # type: ignore[misc]
    assert code == delivery_reasons.BOUNCED
    assert (facts["recipient"], facts["status"]) == (CITIZEN, "5.1.1")
    assert len(unknown) == 1 and unknown[0].outcome == Outcome.BOUNCE
    assert len(outbox(rt)) == 1  # a bounce is never answered


SPAM = (
    "代开发票，各类发票代开，六合彩内部资料，兼职日结，裸聊 高仿名表，"
    "点击 http://spam.example.cn/a http://spam.example.cn/b http://spam.example.cn/c "
    "回复TD退订"
)


def test_spam_goes_to_the_list_and_the_spam_folder_and_a_supervisor_decides(
    rt: Runtime, mailserver: Any, intake_config: Path, smtp: Any
) -> None:
    mailserver.append("INBOX", mail(SPAM, subject="代开发票", sender="ad@spam.example.cn"))
    mailserver.append(
        "INBOX", mail(SPAM + " 另一封", subject="发票代开", sender="ad2@spam.example.cn")
    )
    counts = run_once(intake_config)

    assert counts["suspected_spam"] == 2
    assert cases(rt) == [] and outbox(rt) == []
    assert len(mailserver.folder_uids("Spam")) == 2
    now = datetime.now(UTC)
    with rt.sessions() as s:
        first, second = sorted(m.id for m in pending_mail(s, "spam"))
        confirm_spam(s, first, actor="supervisor", now=now)
        case = release_spam(s, second, actor="supervisor", now=now, policy=mail_policy(rt))
        s.commit()
        assert pending_mail(s, "spam") == []
        kept = s.get(IncomingMail, first)
        assert kept is not None and kept.status == ListStatus.CONFIRMED_SPAM
        assert raw_of(s, first) is not None  # never deleted
        assert s.get(IncomingMail, second).case_id == case.id  # type: ignore[union-attr]
    assert "另一封" in case.body
    assert [m.recipients for m in outbox(rt)] == [["ad2@spam.example.cn"]]


GARBLED = b"From: nobody@example.com\r\nTo: " + OFFICE.encode() + b"\r\n\r\n"
BINARY = b"\x89PNG\r\n\x1a\n" + bytes(range(1, 32)) * 30


@pytest.mark.parametrize("raw", [GARBLED, BINARY], ids=["no_text", "binary"])
def test_an_unparseable_mail_is_quarantined_with_its_raw_bytes(
    raw: bytes, rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    mailserver.append("INBOX", raw)
    ((served, _flags),) = mailserver.messages("INBOX").values()  # bare LFs made CRLF
    counts = run_once(intake_config)

    assert counts["quarantined"] == 1
    (stored,) = mailserver.messages("Quarantine").values()
    assert stored[0] == served
    with rt.sessions() as s:
        (row,) = pending_mail(s, "quarantine")
        assert raw_of(s, row.id) == served
        assert row.reason
        case = make_case_of_quarantined(
            s,
            row.id,
            actor="supervisor",
            now=datetime.now(UTC),
            policy=mail_policy(rt),
            subject="来信无法解析",
            body="来信人反映路灯问题（据原始邮件整理）。",
        )
        s.commit()
        assert pending_mail(s, "quarantine") == []
        assert s.get(IncomingMail, row.id).case_id == case.id  # type: ignore[union-attr]
        assert raw_of(s, row.id) == served  # the raw stays with the case
    assert case.body == "来信人反映路灯问题（据原始邮件整理）。"


# -- crashes --------------------------------------------------------------------------------


def test_a_run_that_died_after_its_commit_and_before_the_move_duplicates_nothing(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    for i in range(5):
        mailserver.append("INBOX", mail(f"第{i}封：路面塌陷，请处理。"))
    mailserver.append("INBOX", GARBLED)
    policy = mail_policy(rt)
    name = rt.settings.intake.imap.mailbox_name  # type: ignore[union-attr]
    with Mailbox(rt.settings.mailbox_config()) as mailbox, rt.sessions() as s:  # type: ignore[arg-type]
        for message in mailbox.fetch(mailbox.pending()):
            with s.begin_nested():
                ingest(s, message.raw, mailbox=name, policy=policy, now=datetime.now(UTC))
        s.commit()  # ... and the process dies here, before any MOVE
    assert len(cases(rt)) == 5

    counts = run_once(intake_config)

    assert counts == {**dict.fromkeys(COUNT_KEYS, 0), "seen": 6, "duplicates": 6}
    assert len(cases(rt)) == 5 and len(rows(rt)) == 6 and len(outbox(rt)) == 5
    assert len(mailserver.folder_uids("Processed")) == 5
    assert len(mailserver.folder_uids("Quarantine")) == 1
    assert mailserver.folder_uids("INBOX") == []


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [40, 160])
def test_a_run_killed_mid_batch_and_run_again_loses_and_duplicates_nothing(
    rt: Runtime, mailserver: Any, config_file: Path, smtp_port: int, batch_size: int
) -> None:
    # 160: a batch of several chunks registered together (web/cli_intake.INGEST_CHUNK), so
    # the kill lands inside a chunk's registration as often as between chunks. It comes once
    # 40 are moved, after the first batch's commit (or a slow batch's first part): the 80
    # mails after the first batch are the next one, of two chunks with 160.
    config = write_config(
        config_file,
        mailserver,
        smtp_port,
        batch_size=batch_size,
        acknowledgments_per_address_per_day=1000,
    )
    total = batch_size + 80
    with mailserver.client() as client:
        for i in range(total):
            client.append("INBOX", mail(f"第{i}封：小区噪音扰民，夜里施工到两点。编号{i}"))
        proc = minsheng(config, "intake", "mail", "--once", "--json")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if folder_count(client, "Processed") >= 40:
                break
            time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _out, err = proc.communicate(timeout=30)
    left = len(mailserver.folder_uids("INBOX"))
    assert 0 < left < total, f"the kill did not land mid-run: {err}"

    run_once(config)

    bodies = Counter(c.body for c in cases(rt))
    assert len(bodies) == total and set(bodies.values()) == {1}
    assert len(rows(rt)) == total
    # One acknowledgment per case, and tracking numbers without a repeat.
    assert Counter(m.case_id for m in outbox(rt)) == Counter(c.id for c in cases(rt))
    assert len({c.tracking_number for c in cases(rt)}) == total
    assert mailserver.folder_uids("INBOX") == []
    assert len(mailserver.folder_uids("Processed")) == total


def test_smtp_down_then_up_the_acknowledgment_waits_then_goes(
    rt: Runtime, mailserver: Any, intake_config: Path, smtp: Any
) -> None:
    mailserver.append("INBOX", mail("莲花路路灯坏了。"))
    run_once(intake_config)
    first = send_outbox(rt)  # nobody listens on the SMTP port
    assert first.sent == 0
    (ack,) = outbox(rt)
    assert ack.status == MailStatus.QUEUED and ack.attempts == 1

    server = smtp()
    later = datetime.now(UTC) + timedelta(hours=2)
    assert send_outbox(rt, later).sent == 1
    assert len(server.received) == 1
    (case,) = cases(rt)
    with rt.sessions() as s:
        actions = list(s.scalars(select(CaseEvent.action).where(CaseEvent.case_id == case.id)))
    assert (
        actions.index("mail_queued") < actions.index("mail_deferred") < actions.index("mail_sent")
    )


# -- two watchers ---------------------------------------------------------------------------


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_two_watchers_only_the_lease_holder_registers_and_the_other_takes_over(
    rt: Runtime, mailserver: Any, config_file: Path, smtp_port: int
) -> None:
    config = write_config(config_file, mailserver, smtp_port, lease_seconds=5)
    name = rt.settings.intake.imap.mailbox_name  # type: ignore[union-attr]

    def holder() -> str | None:
        with rt.sessions() as s:
            return lease_holder(s, lease_name(name), datetime.now(UTC))

    # Both start at once (each start takes seconds): the first is the one that takes the
    # lease (its holder is "host:pid:token"), the second waits beside it meanwhile.
    watchers = [minsheng(config, "intake", "mail", "--watch", "--json") for _ in range(2)]
    try:
        wait_for(lambda: holder() is not None, 30, "a watcher's lease")
        first_holder = holder()
        pid = int(str(first_holder).rsplit(":", 2)[1])
        first, second = sorted(watchers, key=lambda w: w.pid != pid)
        assert first.pid == pid
        with mailserver.client() as client:
            for i in range(10):
                client.append("INBOX", mail(f"第{i}封：公园路灯不亮。"))
            wait_for(lambda: folder_count(client, "Processed") == 10, 30, "the first ten")
            assert holder() == first_holder
            assert second.poll() is None  # waiting all along
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=10)
            for i in range(10, 15):
                client.append("INBOX", mail(f"第{i}封：公园路灯不亮。"))
            wait_for(lambda: folder_count(client, "Processed") == 15, 40, "the takeover")
        assert holder() not in (None, first_holder)
    finally:
        for watcher in watchers:
            if watcher.poll() is None:
                watcher.send_signal(signal.SIGTERM)
        try:
            outputs = [watcher.communicate(timeout=30) for watcher in watchers]
        finally:
            for watcher in watchers:
                if watcher.poll() is None:
                    watcher.kill()
    out, err = outputs[watchers.index(second)]
    assert second.returncode == 0, err
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts["registered"] == 5  # the second registered only after the takeover
    assert len(cases(rt)) == 15 and len(rows(rt)) == 15
    assert holder() is None  # given up on SIGTERM


# -- health, export, migration --------------------------------------------------------------


def test_the_health_shows_the_last_fetch_and_what_waits_on_the_lists(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    mailserver.append("INBOX", mail("路灯坏了。"))
    mailserver.append("INBOX", GARBLED)
    mailserver.append("INBOX", mail(SPAM, subject="代开发票", sender="ad@spam.example.cn"))
    before = datetime.now(UTC)
    run_once(intake_config)
    name = rt.settings.intake.imap.mailbox_name  # type: ignore[union-attr]
    with rt.sessions() as s:
        health = intake_health(s, name, datetime.now(UTC))
    assert health["last_success_at"] >= before.replace(microsecond=0)
    assert health["waiting"] == 0 and health["last_error"] == ""
    assert health["quarantined"] == 1 and health["suspected_spam"] == 1
    assert health["outbox_queued"] == 1 and health["outbox_failed"] == 0

    mailserver.stop()
    try:
        result = CliRunner().invoke(
            main, ["intake", "mail", "--once", "--config", str(intake_config)]
        )
    finally:
        mailserver.start()
    assert result.exit_code != 0 and "127.0.0.1" in result.output
    with rt.sessions() as s:
        health = intake_health(s, name, datetime.now(UTC))
    assert health["last_error"] and health["last_error_at"] >= health["last_success_at"]


def test_the_health_calls_stale_only_a_watcher_that_stopped_fetching(rt: Runtime) -> None:
    name = "stale@test"
    now = datetime.now(UTC)
    minute = timedelta(minutes=1)
    with rt.sessions() as s, s.begin():
        record_fetch(s, name, now=now - 30 * minute, waiting=0)
    with rt.sessions() as s:
        health = intake_health(s, name, now)  # no watcher: a --once run from cron, say
    assert health["minutes_since_success"] == 30 and not health["stale"]
    assert health["last_attempt_at"] == now - 30 * minute

    with rt.sessions() as s, s.begin():
        assert take_lease(s, lease_name(name), "w1", now=now, ttl=minute)
    with rt.sessions() as s:
        assert intake_health(s, name, now)["stale"]  # holds the lease, 30 minutes silent
        # A caller that knows the watcher's timing may say how long it may stay silent.
        assert not intake_health(s, name, now, stale_after=timedelta(hours=1))["stale"]
    with rt.sessions() as s, s.begin():
        record_fetch(s, name, now=now - 2 * minute, error="connection refused")
    with rt.sessions() as s:
        failing = intake_health(s, name, now)  # it tries, and fails: still no mail comes in
    assert failing["stale"] and failing["last_attempt_at"] == now - 2 * minute
    with rt.sessions() as s, s.begin():
        record_fetch(s, name, now=now - minute, waiting=0)
    with rt.sessions() as s:
        fresh = intake_health(s, name, now)
    assert not fresh["stale"] and fresh["minutes_since_success"] == 1

    with rt.sessions() as s, s.begin():
        assert take_lease(s, lease_name("new@test"), "w2", now=now, ttl=10 * minute)
    with rt.sessions() as s:  # a watcher that took the lease just now has not looked yet
        assert not intake_health(s, "new@test", now)["stale"]
        assert intake_health(s, "new@test", now + 3 * minute, stale_after=minute)["stale"]


def test_the_export_has_the_message_id_and_the_later_messages_masked(
    rt: Runtime, mailserver: Any, intake_config: Path, smtp: Any
) -> None:
    mid = "<wang.13812345678@mail.example.com>"  # ids often carry the sender's name or number
    mailserver.append("INBOX", mail("路灯坏了。", message_id=mid))
    run_once(intake_config)
    (ack,) = outbox(rt)
    mailserver.append(
        "INBOX",
        mail(
            "我是王小明，电话13812345678，路灯还是没修。",
            subject="补充",
            headers={"In-Reply-To": ack.message_id},
        ),
    )
    run_once(intake_config)
    from zoneinfo import ZoneInfo

    from triage.export import iter_records

    with rt.sessions() as s:
        (record,) = list(iter_records(s, ZoneInfo("Asia/Shanghai"), masked=False))
        (masked,) = list(iter_records(s, ZoneInfo("Asia/Shanghai"), masked=True))
    assert record["message_id"] == "wang.13812345678@mail.example.com"
    assert "13812345678" not in masked["message_id"] and "wang" not in masked["message_id"]
    assert record["messages"] == ["我是王小明，电话13812345678，路灯还是没修。"]
    assert "13812345678" not in masked["messages"][0] and "路灯还是没修" in masked["messages"][0]
    assert case_record is not None


def test_upgrading_a_database_with_email_cases_lets_replies_thread_to_them(
    empty_url: str, tmp_path: Path
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from tests.conftest import make_settings
    from triage.models import Base
    from web.db import make_engine, upgrade

    engine = make_engine(empty_url)
    upgrade(engine, "0004")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            table_as_of(conn, Case.__table__).insert(),
            [
                {
                    "tracking_number": "MS-2025-000001",
                    "query_code_hash": "x",
                    "channel": "email",
                    "external_id": "old-1@mail.example.com",
                    "kind": "complaint",
                    "status": "triage",
                    "subject": "旧案件",
                    "body": "升级之前登记的案件",
                    "contact_email": CITIZEN,
                    "received_at": now,
                    "created_at": now,
                    "version": 1,
                }
            ],
        )
    upgrade(engine)
    tables = ("incoming_mail", "case_messages", "leases", "intake_health")
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if any(t in repr(d) for t in tables)
        ]
        assert differences == []
        assert set(tables) <= set(inspect(conn).get_table_names())
    engine.dispose()

    runtime = Runtime.build(make_settings(tmp_path, empty_url))
    policy = mail_policy(runtime)
    reply = mail(
        "升级以后补充的情况。", subject="补充", headers={"In-Reply-To": "<old-1@mail.example.com>"}
    )
    with runtime.sessions() as s:
        result = ingest(s, reply, mailbox="test", policy=policy, now=datetime.now(UTC))
        s.commit()
        assert result.outcome == Outcome.THREADED
        assert s.scalar(select(func.count()).select_from(Case)) == 1
        assert [m.text for m in s.scalars(select(CaseMessage))] == ["升级以后补充的情况。"]
    runtime.engine.dispose()


# -- the lease and the settings -------------------------------------------------------------


def test_one_lease_holder_at_a_time_even_when_several_race_for_it(runtime: Any) -> None:
    import threading

    from triage.mail_intake import release_lease, take_lease

    name = lease_name("box")
    ttl = timedelta(seconds=60)
    start = datetime.now(UTC)

    def take(holder: str, now: datetime) -> bool:
        with runtime.sessions() as s, s.begin():
            return take_lease(s, name, holder, now=now, ttl=ttl)

    assert take("a", start)
    assert not take("b", start + timedelta(seconds=59))  # a's lease is live
    assert take("a", start + timedelta(seconds=59))  # a renews ...
    assert not take("b", start + timedelta(seconds=100))  # ... so b still waits
    assert take("b", start + timedelta(seconds=120))  # a died: b takes over
    assert not take("a", start + timedelta(seconds=121))  # a, back, cannot renew

    for round_ in range(5):
        now = start + timedelta(hours=round_ + 1)  # every lease before has run out
        barrier = threading.Barrier(4)
        won: list[str] = []

        def race(
            holder: str, now: datetime = now, barrier: Any = barrier, won: list[str] = won
        ) -> None:
            barrier.wait()
            if take(holder, now):
                won.append(holder)

        threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, won
        with runtime.sessions() as s:
            assert lease_holder(s, name, now) == won[0]

    with runtime.sessions() as s, s.begin():
        release_lease(s, name, won[0])
    with runtime.sessions() as s:
        assert lease_holder(s, name, now) is None  # given up: the next need not wait


def test_the_mailbox_settings_are_checked_when_read(tmp_path: Path) -> None:
    from tests.conftest import base_config
    from web.settings import ConfigError, settings_from_dict

    raw = base_config()
    assert settings_from_dict(raw).mailbox_config() is None  # no mailbox by default
    good = {"host": "imap.example.gov.cn", "username": "xfb", "password_env": "IMAP_PW"}
    raw["intake"] = {**raw["intake"], "imap": {**good, "starttls": True}}
    config = settings_from_dict(raw).mailbox_config()
    assert config is not None and config.effective_port == 143 and not config.implicit_tls
    for bad, words in (
        ({"hostname": "x"}, "unknown key"),
        ({"password": "p"}, "not both"),
        ({"ssl": True, "starttls": True}, "not both"),
        ({"batch_size": 0}, "batch_size"),
    ):
        raw["intake"]["imap"] = {**good, **bad}
        with pytest.raises(ConfigError, match=words):
            settings_from_dict(raw)
    raw["intake"]["imap"] = {"host": "h", "username": "u"}
    with pytest.raises(ConfigError, match="password"):
        settings_from_dict(raw)


@pytest.mark.slow
def test_watch_survives_the_server_going_away_and_shows_it_on_the_health(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    name = rt.settings.intake.imap.mailbox_name  # type: ignore[union-attr]
    proc = minsheng(intake_config, "intake", "mail", "--watch", "--json")
    try:
        mailserver.append("INBOX", mail("第一封：河道垃圾成堆。"))
        wait_for(lambda: len(mailserver.folder_uids("Processed")) == 1, 30, "the first mail")
        mailserver.stop()

        def error_shown() -> bool:
            with rt.sessions() as s:
                return bool(intake_health(s, name, datetime.now(UTC))["last_error"])

        wait_for(error_shown, 30, "the outage on the health panel")
        mailserver.start()
        mailserver.append("INBOX", mail("第二封：河道垃圾还在。"))
        wait_for(lambda: len(mailserver.folder_uids("Processed")) == 2, 60, "the second mail")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["registered"] == 2
    assert len(cases(rt)) == 2


# -- what a stranger, a spammer or a robot can do with the intake (issue #7 review) -----------


def take(rt: Runtime, raw: bytes, now: datetime | None = None, **policy: Any) -> Any:
    """One message through `ingest` as `intake mail` takes it, committed; ``policy``
    overrides fields of the configured `MailIntakePolicy`."""
    with rt.sessions() as s:
        settings = dataclasses.replace(mail_policy(rt), **policy)
        result = ingest(s, raw, mailbox="test", policy=settings, now=now or datetime.now(UTC))
        s.commit()
    return result


def events_of(rt: Runtime, case_id: int, action: str) -> list[CaseEvent]:
    with rt.sessions() as s:
        return list(
            s.scalars(
                select(CaseEvent)
                .where(CaseEvent.case_id == case_id, CaseEvent.action == action)
                .order_by(CaseEvent.id)
            )
        )


def test_a_guessed_acknowledgment_id_threads_nothing_into_a_case(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    first = take(rt, mail("莲花路路灯坏了，请修理。"))
    (case,) = cases(rt)
    (ack,) = outbox(rt)
    # unguessable: no tracking number in it, 24 hex digits keyed with the secret
    assert case.tracking_number not in ack.message_id
    tag = ack.message_id.split("ack.", 1)[1].split("@", 1)[0]
    assert len(tag) == 24 and int(tag, 16) >= 0

    guessed = f"<ack.{case.tracking_number}@example.gov.cn>"
    forged = mail(
        "我是当事人，撤回投诉，请直接办结",
        subject="撤回",
        sender="陌生人 <stranger@example.net>",
        headers={"In-Reply-To": guessed, "References": guessed},
    )
    result = take(rt, forged)
    assert result.outcome == Outcome.REGISTERED and result.case_id != first.case_id
    with rt.sessions() as s:
        assert case_messages_of(s, case.id) == []

    # whoever holds the real id (a leaked mail) is threaded, but the department is warned
    leaked = mail(
        "我是当事人，撤回投诉。",
        subject="撤回",
        sender="stranger@example.net",
        headers={"In-Reply-To": ack.message_id},
    )
    assert take(rt, leaked).outcome == Outcome.THREADED
    (added,) = events_of(rt, case.id, "message_added")
    # The warning is a fact of the event, said in the reader's language on the case page.
    assert added.detail["from_other_address"] is True and added.reason == "stranger@example.net"
    own = mail("补充：第三根灯杆也坏了。", headers={"In-Reply-To": ack.message_id})
    assert take(rt, own).outcome == Outcome.THREADED
    assert "another address" not in events_of(rt, case.id, "message_added")[1].reason

    # an acknowledgment queued before the upgrade has the old, guessable id: it threads nothing
    with rt.sessions() as s:
        old = s.get(OutgoingMail, ack.id)
        old.message_id = guessed  # type: ignore[union-attr]
        s.commit()
    again = mail("撤回投诉。", sender="stranger@example.net", headers={"In-Reply-To": guessed})
    assert take(rt, again).outcome == Outcome.REGISTERED
    with rt.sessions() as s:
        old = s.get(OutgoingMail, ack.id)
        old.message_id = ack.message_id  # type: ignore[union-attr]
        s.commit()

    # spam naming the real id goes to the suspected-spam list, not into the case
    spam = mail(SPAM, subject="代开发票", headers={"In-Reply-To": ack.message_id})
    assert take(rt, spam).outcome == Outcome.SUSPECTED_SPAM
    with rt.sessions() as s:
        assert len(case_messages_of(s, case.id)) == 2
        assert len(pending_mail(s, "spam")) == 1


def test_the_acknowledgment_echoes_nothing_and_one_address_gets_at_most_three_a_day(
    rt: Runtime, mailserver: Any, intake_config: Path, smtp: Any
) -> None:
    server = smtp()
    advert = "低价代开发票请加微信 fapiao888"
    raw = mail(
        "随便写点什么，莲花路路灯不亮。",
        subject=advert,
        sender=f"{advert} <attacker@example.net>",
        headers={"Reply-To": "victim@example.org"},
    )
    assert take(rt, raw).acknowledged
    assert send_outbox(rt).sent == 1
    (ack,) = server.messages()
    (case,) = cases(rt)
    assert subject_of(ack) == f"已受理（受理编号 {case.tracking_number}）"
    assert "fapiao888" not in text_of(ack) and "fapiao888" not in str(ack["To"])
    assert text_of(ack).startswith("您好：")
    assert ack["To"] == "victim@example.org"

    # a naive auto-responder answering each mail: cases, but no more acknowledgments
    # (3 a day is the default of [intake.imap] acknowledgments_per_address_per_day)
    assert ImapSettings.model_fields["acknowledgments_per_address_per_day"].default == 3
    for i in range(6):
        robot = mail(
            f"您的来信已收到，编号 A{i}", subject="您的来信已收到", sender="robot@naive.example"
        )
        take(rt, robot, ack_limit=3)
    robot_cases = [c for c in cases(rt) if c.contact_email == "robot@naive.example"]
    assert len(robot_cases) == 6
    assert sum(m.recipients == ["robot@naive.example"] for m in outbox(rt)) == 3
    refused = [e for c in robot_cases for e in events_of(rt, c.id, "not_acknowledged")]
    assert len(refused) == 3 and all("limit 3" in e.reason for e in refused)
    # a day later the address gets acknowledgments again
    later = datetime.now(UTC) + timedelta(hours=25)
    again = mail("又一封来信", sender="robot@naive.example")
    assert take(rt, again, now=later, ack_limit=3).acknowledged


def test_another_mail_under_a_known_message_id_is_its_own_case(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    original = mail("莲花路路灯坏了。", message_id="<same@mail.example.com>")
    other = mail("幸福小区垃圾没人清运。", message_id="<same@mail.example.com>")
    first, second = take(rt, original), take(rt, other)
    assert first.outcome == second.outcome == Outcome.REGISTERED
    assert take(rt, original).outcome == Outcome.DUPLICATE  # the same bytes again
    a, b = cases(rt)
    assert "路灯" in a.body and "垃圾" in b.body
    assert a.external_id == "same@mail.example.com"
    assert b.external_id == f"same@mail.example.com#{hashlib.sha256(other).hexdigest()[:16]}"


def dated(raw: bytes, when: datetime) -> bytes:
    head, rest = raw.split(b"\r\nDate: ", 1)
    _old_date, tail = rest.split(b"\r\n", 1)
    new = when.strftime("%a, %d %b %Y %H:%M:%S +0000").encode()
    return head + b"\r\nDate: " + new + b"\r\n" + tail


def test_a_backdated_mail_is_not_overdue_on_arrival(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    take(rt, dated(mail("84天前的来信：路灯坏了。"), now - timedelta(days=84)), now=now)
    take(rt, dated(mail("停机两天后读到的来信。"), now - timedelta(days=2)), now=now)
    backdated, after_outage = cases(rt)
    assert backdated.received_at == now
    assert after_outage.received_at == now - timedelta(days=2)
    assert not backdated.is_overdue(now)
    assert backdated.triage_due_at is not None and backdated.triage_due_at > now


AUTOMATIC = {
    "out_of_office": ({"Auto-Submitted": "auto-replied"}, f"王小明 <{CITIZEN}>"),
    "precedence_bulk": ({"Precedence": "bulk"}, "news@example.com"),
    "list_id": ({"List-Id": "<news.example.com>"}, "news@example.com"),
    "our_own_address": ({}, OFFICE),
}


def test_automatic_mail_goes_to_the_suspected_spam_list_and_can_be_released(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    for i, (headers, sender) in enumerate(AUTOMATIC.values()):
        mailserver.append("INBOX", mail(f"第{i}封：自动回复", sender=sender, headers=headers))
    counts = run_once(intake_config)
    assert counts["suspected_spam"] == len(AUTOMATIC) and counts["registered"] == 0
    assert cases(rt) == [] and outbox(rt) == []
    with rt.sessions() as s:
        listed = pending_mail(s, "spam")
        assert all(m.reason.startswith("automatic mail") for m in listed)
        case = release_spam(
            s, listed[0].id, actor="supervisor", now=datetime.now(UTC), policy=mail_policy(rt)
        )
        s.commit()
        assert case.id is not None
    assert outbox(rt) == []  # released, but still never acknowledged


def with_attachment(raw_body: str, name: str, content_type: str, data: bytes) -> bytes:
    boundary = "b0undary"
    head = mail("x").split(b"\r\nMIME-Version", 1)[0]
    parts = (
        f"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(raw_body.encode()).decode()
        + f"\r\n--{boundary}\r\nContent-Type: {content_type}; name={name}\r\n"
        f"Content-Disposition: attachment; filename={name}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(data).decode()
        + f"\r\n--{boundary}--\r\n"
    )
    return head + parts.encode()


def test_a_refused_attachment_is_named_on_the_case(
    rt: Runtime, mailserver: Any, intake_config: Path
) -> None:
    raw = with_attachment(
        "照片和程序都附上了。", "setup.exe", "application/x-msdownload", b"MZ" + bytes(500)
    )
    result = take(rt, raw)
    (event,) = events_of(rt, result.case_id, "attachments_refused")
    assert "setup.exe" in event.reason and "type not accepted" in event.reason


def test_a_failed_login_is_an_error_in_the_json_and_the_exit_code(
    config_file: Path, mailserver: Any, smtp_port: int
) -> None:
    config = write_config(config_file, mailserver, smtp_port, password="not-the-password")
    result = CliRunner().invoke(
        main, ["intake", "mail", "--once", "--json", "--config", str(config)]
    )
    assert result.exit_code != 0
    (line,) = [x for x in result.output.splitlines() if x.startswith("{")]
    report = json.loads(line)
    assert report["error"] and report["seen"] == 0


def test_the_case_page_names_refused_files_and_warns_of_another_sender(
    runtime: Any, login_as: Any
) -> None:
    raw = with_attachment(
        "照片和程序都附上了。", "setup.exe", "application/x-msdownload", b"MZ" + bytes(500)
    )
    first = take(runtime, raw)
    with runtime.sessions() as s:
        number = s.get(Case, first.case_id).tracking_number
        ack_id = s.scalar(
            select(OutgoingMail.message_id).where(OutgoingMail.case_id == first.case_id)
        )
    other = mail("我是当事人，撤回投诉。", sender="x@example.net", headers={"In-Reply-To": ack_id})
    assert take(runtime, other).outcome == Outcome.THREADED

    html = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    assert "setup.exe" in html and "type not accepted" in html
    assert "来自另一地址" in html and "撤回投诉" in html
    english = login_as("supervisor").get(f"/board/cases/{number}?lang=en").get_data(as_text=True)
    assert "From another address than the complainant" in english and "来自另一地址" not in english
