"""The IMAP mailbox against a real dovecot on loopback (tests/mailserver.py)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from intake.mailbox import (
    Mailbox,
    MailboxConfig,
    MailboxConfigError,
    MailboxConnectError,
    MailboxDisconnected,
    MailboxLoginError,
    watch,
)
from tests.conftest import need
from tests.mailserver import MailServer, free_port, need_dovecot


def gbk_message(number: int, subject: str, body: str, charset: str = "gbk") -> bytes:
    """A message as old Chinese clients send it: raw 8-bit GBK in the headers and the body."""
    return (
        f"From: 张三 <zhangsan{number}@example.cn>\r\n"
        f"To: xiaoneng@example.gov.cn\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <m{number}@example.cn>\r\n"
        f"Date: Mon, 30 Nov 2026 10:0{number}:00 +0800\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: text/plain; charset="{charset}"\r\n'
        f"Content-Transfer-Encoding: 8bit\r\n"
        f"\r\n"
        f"{body}\r\n"
    ).encode("gbk")


MESSAGES = [
    gbk_message(1, "反映道路积水问题", "武进区湖塘镇人民路雨后积水严重，请尽快处理。"),
    gbk_message(2, "投诉办事窗口态度", "安监局窗口工作人员推诿，办理许可证跑了三趟。", "gb2312"),
    gbk_message(3, "建议增设路灯", "夜间小区门口一片漆黑，建议增设路灯。镕"),  # 镕: GBK, not GB2312
]


def wait_until(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_gbk_mail_comes_back_byte_for_byte_and_stays_unread(mailserver: MailServer) -> None:
    uids = [mailserver.append("INBOX", raw) for raw in MESSAGES]

    with Mailbox(mailserver.config()) as mailbox:
        assert mailbox.pending() == uids
        assert mailbox.uidvalidity
        fetched = list(mailbox.fetch(mailbox.pending()))

    assert [m.uid for m in fetched] == uids
    assert [m.raw for m in fetched] == MESSAGES
    assert "镕".encode("gbk") in fetched[2].raw
    assert [m.size for m in fetched] == [len(raw) for raw in MESSAGES]
    assert all(m.internal_date is not None and m.internal_date.tzinfo for m in fetched)
    # A person opening the mailbox still sees them as unread.
    for raw, flags in mailserver.messages("INBOX").values():
        assert b"\\Seen" not in flags
        assert raw in MESSAGES


def test_pending_gives_the_oldest_first_in_batches(mailserver: MailServer) -> None:
    uids = [mailserver.append("INBOX", gbk_message(n, "批量", f"第{n}封")) for n in range(5)]
    with Mailbox(mailserver.config(batch_size=2)) as mailbox:
        assert mailbox.pending() == uids[:2]
        mailbox.move(uids[:2], "Processed")
        assert mailbox.pending() == uids[2:4]
        assert mailbox.pending(limit=10) == uids[2:]


def test_a_crash_before_moving_loses_nothing(mailserver: MailServer) -> None:
    uid = mailserver.append("INBOX", MESSAGES[0])
    with Mailbox(mailserver.config()) as mailbox:
        assert [m.uid for m in mailbox.fetch(mailbox.pending())] == [uid]
        # ... and the process dies here, before registering and moving.
    with Mailbox(mailserver.config()) as mailbox:
        again = list(mailbox.fetch(mailbox.pending()))
    assert [(m.uid, m.raw) for m in again] == [(uid, MESSAGES[0])]
    assert b"\\Seen" not in again[0].flags


def test_moving_creates_the_folder_and_empties_the_inbox(mailserver: MailServer) -> None:
    uids = [mailserver.append("INBOX", raw) for raw in MESSAGES]
    config = mailserver.config(processed_folder="Minsheng/Processed")
    with Mailbox(config) as mailbox:
        for message in mailbox.fetch(mailbox.pending()):
            mailbox.move(message.uid, config.processed_folder)
        assert mailbox.pending() == []
        mailbox.flag(mailbox.pending(), "\\Flagged")  # nothing to flag: no error

    assert mailserver.folder_uids("INBOX") == []
    moved = mailserver.messages("Minsheng.Processed")
    assert sorted(raw for raw, _flags in moved.values()) == sorted(MESSAGES)
    assert len(uids) == len(moved)


def test_quarantine_and_spam_folders_are_created_once(mailserver: MailServer) -> None:
    config = mailserver.config(
        processed_folder="Processed", quarantine_folder="Minsheng/隔离", spam_folder="Spam"
    )
    with Mailbox(config) as mailbox:
        assert mailbox.separator == "."
        created = mailbox.ensure_folders()
        assert mailbox.ensure_folders() == []
    assert created == ["Processed", "Minsheng", "Minsheng.隔离", "Spam"]
    assert {"Processed", "Minsheng.隔离", "Spam"} <= set(mailserver.folders())

    uid = mailserver.append("INBOX", MESSAGES[1])
    with Mailbox(config) as mailbox:
        mailbox.flag(uid, "\\Flagged")
        mailbox.move(uid, config.quarantine_folder)
    [(raw, flags)] = mailserver.messages("Minsheng.隔离").values()
    assert raw == MESSAGES[1]
    assert b"\\Flagged" in flags
    assert b"\\Seen" not in flags


def test_wrong_port_or_password_says_what_went_wrong(mailserver: MailServer) -> None:
    port = free_port()
    with pytest.raises(MailboxConnectError, match=rf"127\.0\.0\.1:{port}.*refused"):
        Mailbox(mailserver.config(port=port)).connect()

    with pytest.raises(MailboxLoginError) as caught:
        Mailbox(mailserver.config(password="wrong")).connect()
    message = str(caught.value)
    assert f"127.0.0.1:{mailserver.port}" in message
    assert "test@example.com" in message
    assert "Authentication failed" in message

    with pytest.raises(MailboxConnectError, match="NoSuchFolder"):
        Mailbox(mailserver.config(folder="NoSuchFolder")).connect()


def test_password_from_the_environment(
    mailserver: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = mailserver.config(password=None, password_env="MINSHENG_TEST_IMAP_PASSWORD")
    monkeypatch.delenv("MINSHENG_TEST_IMAP_PASSWORD", raising=False)
    with pytest.raises(MailboxConfigError, match="MINSHENG_TEST_IMAP_PASSWORD"):
        Mailbox(config).connect()
    monkeypatch.setenv("MINSHENG_TEST_IMAP_PASSWORD", mailserver.password)
    with Mailbox(config) as mailbox:
        assert mailbox.pending() == []


def test_idle_wakes_up_when_mail_arrives(mailserver: MailServer) -> None:
    with Mailbox(mailserver.config()) as mailbox:
        assert mailbox.has_idle
        started = time.monotonic()
        assert mailbox.idle_wait(0.3) is False
        assert 0.25 < time.monotonic() - started < 2

        timer = threading.Timer(0.3, mailserver.append, ("INBOX", MESSAGES[0]))
        timer.start()
        started = time.monotonic()
        assert mailbox.idle_wait(10) is True
        took = time.monotonic() - started
        timer.join()
        assert took < 1.5, took
        assert len(mailbox.pending()) == 1

        # Mail that came while the caller was busy is noticed without waiting.
        mailserver.append("INBOX", MESSAGES[1])
        started = time.monotonic()
        assert mailbox.idle_wait(10) is True
        assert time.monotonic() - started < 0.5
        mailbox.pending()
        assert mailbox.idle_wait(0.1) is False  # the connection is still usable after IDLE

        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        assert mailbox.idle_wait(10, stop) is False
        assert time.monotonic() - started < 1.5


class Recorder:
    """A watch handler that registers nothing but moves what it sees, as the real one will."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[bytes] = []

    def __call__(self, mailbox: Mailbox) -> None:
        self.calls += 1
        for message in mailbox.fetch(mailbox.pending()):
            self.seen.append(message.raw)
            mailbox.move(message.uid, mailbox.config.processed_folder)


def test_watch_survives_the_server_going_away(mailserver: MailServer) -> None:
    mailserver.append("INBOX", MESSAGES[0])
    handler = Recorder()
    ticks: list[float] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            watch(
                mailserver.config(idle_timeout=5),
                handler,
                stop_event=stop,
                backoff=(0.1, 0.3),
                on_tick=lambda _m: ticks.append(time.monotonic()),
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: handler.seen == MESSAGES[:1]), errors
        mailserver.append("INBOX", MESSAGES[1])
        assert wait_until(lambda: handler.seen == MESSAGES[:2], 3), errors
        calls_before = handler.calls

        mailserver.stop()
        time.sleep(0.5)  # watch retries against a closed port meanwhile
        mailserver.start()
        mailserver.append("INBOX", MESSAGES[2])
        assert wait_until(lambda: handler.seen == MESSAGES, 10), (errors, mailserver.log())
        assert handler.calls > calls_before
        # The handler has the message before the watcher moves it out of the inbox.
        assert wait_until(lambda: mailserver.folder_uids("INBOX") == [], 5), mailserver.folder_uids(
            "INBOX"
        )
        assert len(mailserver.folder_uids("Processed")) == 3
    finally:
        stopped_at = time.monotonic()
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 2
    assert errors == []
    assert ticks


def test_watch_starts_afresh_when_the_server_refuses_a_command(mailserver: MailServer) -> None:
    mailserver.append("INBOX", MESSAGES[0])
    stop = threading.Event()
    moved = Recorder()
    calls = 0

    def handler(mailbox: Mailbox) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the server says NO to the first move: a name it cannot create
            mailbox.move(mailbox.pending(), "bad\x00name")
        moved(mailbox)
        stop.set()

    watch(mailserver.config(), handler, stop_event=stop, backoff=(0.1,))
    assert calls == 2
    assert moved.seen == MESSAGES[:1]
    assert mailserver.folder_uids("Processed") != []


def test_watch_gives_up_at_once_on_a_wrong_password(mailserver: MailServer) -> None:
    stop = threading.Event()
    with pytest.raises(MailboxLoginError):
        watch(mailserver.config(password="wrong"), Recorder(), stop_event=stop, backoff=(0.1,))


def test_a_dropped_connection_is_reported_as_such(mailserver: MailServer) -> None:
    mailbox = Mailbox(mailserver.config())
    mailbox.connect()
    try:
        threading.Timer(0.3, mailserver.stop).start()
        started = time.monotonic()
        with pytest.raises(MailboxDisconnected, match=r"127\.0\.0\.1"):
            mailbox.idle_wait(10)  # in IDLE when the server goes
        assert time.monotonic() - started < 3
        with pytest.raises(MailboxDisconnected):
            mailbox.pending()
    finally:
        mailbox.close()
        mailserver.start()
    with Mailbox(mailserver.config()) as mailbox:  # and back
        assert mailbox.pending() == []


# -- TLS --------------------------------------------------------------------------------------


def test_tls_and_starttls_with_a_trusted_certificate(mailserver: MailServer) -> None:
    need(mailserver.tls, "openssl is not installed (dovecot-core brings it)")
    mailserver.append("INBOX", MESSAGES[0])
    implicit = mailserver.config(port=mailserver.ssl_port, ssl=True)
    with Mailbox(implicit, ssl_context=mailserver.ssl_context()) as mailbox:
        assert [m.raw for m in mailbox.fetch(mailbox.pending())] == MESSAGES[:1]
        threading.Timer(0.3, mailserver.append, ("INBOX", MESSAGES[1])).start()
        assert mailbox.idle_wait(10) is True

    upgraded = mailserver.config(starttls=True, ca_file=str(mailserver.root / "cert.pem"))
    with Mailbox(upgraded) as mailbox:
        assert len(mailbox.pending()) == 2
        assert mailbox.client.socket().version() is not None  # the socket speaks TLS now

    # The system's trust store does not know the self-signed certificate.
    with pytest.raises(MailboxConnectError, match=rf":{mailserver.ssl_port}.*(?i:certificate)"):
        Mailbox(implicit).connect()
    with pytest.raises(MailboxConnectError, match=r"STARTTLS.*(?i:certificate)"):
        Mailbox(mailserver.config(starttls=True)).connect()


# -- a server without IDLE and MOVE -----------------------------------------------------------


@pytest.fixture(scope="module")
def plain_server() -> Iterator[MailServer]:
    """Dovecot announcing only IMAP4rev1 and UIDPLUS, as a minimal server would."""
    need_dovecot()
    root = Path(tempfile.mkdtemp(prefix="minsheng-dovecot-"))
    server = MailServer(root, tls=False, extra="imap_capability = IMAP4rev1 UIDPLUS")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_without_idle_and_move_it_polls_and_copies(plain_server: MailServer) -> None:
    plain_server.reset()
    first = plain_server.append("INBOX", MESSAGES[0])
    kept = plain_server.append("INBOX", MESSAGES[1])
    with Mailbox(plain_server.config(poll_interval=0.2)) as mailbox:
        assert not mailbox.has_idle
        assert "MOVE" not in mailbox.capabilities
        assert mailbox.pending() == [first, kept]
        mailbox.move(first, "Processed")
        assert mailbox.pending() == [kept]

        threading.Timer(0.3, plain_server.append, ("INBOX", MESSAGES[2])).start()
        started = time.monotonic()
        assert mailbox.idle_wait(10) is True
        assert time.monotonic() - started < 1.5

    assert plain_server.folder_uids("INBOX") == [kept, kept + 1]
    [(raw, flags)] = plain_server.messages("Processed").values()
    assert raw == MESSAGES[0]
    assert b"\\Deleted" not in flags


def test_ports_and_tls_follow_the_usual_defaults() -> None:
    assert MailboxConfig(host="imap.example.cn", username="u").where == "u@imap.example.cn:993"
    starttls = MailboxConfig(host="imap.example.cn", username="u", starttls=True)
    assert (starttls.implicit_tls, starttls.effective_port) == (False, 143)
    with pytest.raises(MailboxConfigError, match="ssl and starttls"):
        MailboxConfig(host="imap.example.cn", username="u", ssl=True, starttls=True)
