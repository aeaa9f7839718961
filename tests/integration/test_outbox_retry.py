"""`minsheng outbox retry`: an operator who fixed the mail server sends the waiting mail now.

Failed mail goes back in the queue, mail waiting on its backoff is brought forward, and each
mail id gets a line saying what was done; unknown, sent and in-flight mails are named as
errors (exit code 1), never a traceback, and are not touched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.test_outbox import (  # the fixtures and helpers of the outbox tests
    Clock,
    email_case,
    mail,
    mail_config,
    mail_events,
    queue_ack,
    queue_plain,
    run_cli,
    settings,
    smtp,
    smtp_port,
)
from triage.outbox import MailStatus, OutgoingMail

__all__ = ["mail_config", "settings", "smtp", "smtp_port"]  # fixtures used by name


def set_state(runtime: Any, mail_id: int, **values: Any) -> None:
    with runtime.sessions() as s:
        row = s.get(OutgoingMail, mail_id)
        for name, value in values.items():
            setattr(row, name, value)
        s.commit()


def test_retry_brings_waiting_mail_forward_and_requeues_failed_mail(
    runtime: Any, smtp: Any, mail_config: Path
) -> None:
    clock = Clock()
    case_id = email_case(runtime, clock)
    failed = queue_ack(runtime, clock, case_id)
    waiting, due = queue_plain(runtime, clock, 2)
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=40)
    set_state(runtime, failed, status=MailStatus.FAILED, attempts=3, last_error="451 try later")
    set_state(runtime, waiting, attempts=2, next_attempt_at=later, last_error="421 busy")

    out = run_cli(
        "outbox", "retry", str(waiting), str(failed), str(due), "--config", str(mail_config)
    )
    assert out.exit_code == 0, out.output
    assert out.output.splitlines() == [
        f"#{waiting}: was waiting until {later:%Y-%m-%d %H:%M:%S} UTC (2 tries so far); "
        "brought forward, sent on the next pass",
        f"#{failed}: failed, queued again with a fresh count of tries; sent on the next pass",
        f"#{due}: already queued and due (0 tries so far); sent on the next pass",
    ]
    brought = mail(runtime, waiting)
    assert brought.status == MailStatus.QUEUED and brought.attempts == 2
    assert brought.next_attempt_at <= datetime.now(UTC)
    requeued = mail(runtime, failed)
    assert (requeued.status, requeued.attempts, requeued.last_error) == (MailStatus.QUEUED, 0, "")
    # The case's timeline says its acknowledgment waits to be sent again.
    assert [a for a, _ in mail_events(runtime, case_id)] == ["mail_queued", "mail_queued"]

    server = smtp()
    sent = run_cli("outbox", "send", "--json", "--config", str(mail_config))
    assert json.loads(sent.stdout.strip().splitlines()[-1])["sent"] == 3
    assert len(server.received) == 3


def test_retry_names_unknown_sent_and_in_flight_mails_without_a_traceback(
    runtime: Any, mail_config: Path
) -> None:
    clock = Clock()
    sent, sending, waiting = queue_plain(runtime, clock, 3)
    sent_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    set_state(runtime, sent, status=MailStatus.SENT, sent_at=sent_at, attempts=1)
    lease = datetime.now(UTC) + timedelta(minutes=5)
    set_state(
        runtime, sending, status=MailStatus.SENDING, claimed_by="host-a:123", next_attempt_at=lease
    )
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    set_state(runtime, waiting, attempts=1, next_attempt_at=later)

    out = run_cli(
        "outbox", "retry", "999999", str(sent), str(sending), str(waiting),
        "--config", str(mail_config),
    )  # fmt: skip
    assert out.exit_code == 1
    assert "Traceback" not in out.output
    lines = out.output.splitlines()
    assert "#999999: no such mail in the outbox" in lines
    assert f"#{sent}: already sent at {sent_at:%Y-%m-%d %H:%M:%S} UTC; it is never sent twice" in (
        lines
    )
    assert f"#{sending}: being sent right now by host-a:123; left alone" in lines
    assert f"#{waiting}: was waiting until {later:%Y-%m-%d %H:%M:%S} UTC (1 try so far); " in (
        out.output
    )
    assert lines[-1] == "Error: 3 of 4 mails not retried"
    # The good one was still brought forward; the others are as they were.
    assert mail(runtime, waiting).next_attempt_at <= datetime.now(UTC)
    assert mail(runtime, sent).status == MailStatus.SENT
    assert mail(runtime, sending).status == MailStatus.SENDING
