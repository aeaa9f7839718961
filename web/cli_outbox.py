"""`minsheng outbox …`: send the mail waiting in the outbox, and look at it.

`send` may run on several machines at once (cron, a `--watch` service per machine, later the
supervision tick): each mail is claimed by one sender only. Its `--json` output is kept
stable for other tools: {"sent", "retried", "failed", "server_error"}.
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import datetime
from typing import Any

import click
from sqlalchemy import select

from triage import delivery_reasons
from triage.models import Case, utcnow
from triage.outbox import MailStatus, OutgoingMail, Retry, list_mails, outbox_counts, requeue
from web.cli_common import config_option, settings, transaction
from web.mail import OutboxSender, SendResult
from web.runtime import Runtime
from web.settings import ConfigError


@click.group()
def outbox() -> None:
    """Outgoing mail: send what is due, list, retry failed or waiting mail."""


def _sender(rt: Runtime) -> OutboxSender:
    try:
        return OutboxSender(rt.settings, rt.sessions)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


def _summary(result: SendResult) -> str:
    return f"sent {result.sent}, retried {result.retried}, failed {result.failed}"


@outbox.command("send")
@config_option
@click.option("--once", "mode", flag_value="once", default=True, help="One pass (default).")
@click.option("--watch", "mode", flag_value="watch", help="Keep sending until SIGTERM or Ctrl-C.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many mails per pass (default: all that are due).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between passes with --watch.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def send(mode: str, limit: int | None, interval: float, as_json: bool) -> None:
    """Send the mail that is due; a mail that fails waits and is tried again later."""
    rt = Runtime.build(settings())
    sender = _sender(rt)
    if mode == "once":
        result = sender.send_due(limit)
        _report(result, as_json)
        return

    stopping = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    total = SendResult()
    try:
        if not as_json:
            click.echo(f"sending the outbox as {sender.worker}; stop with Ctrl-C or SIGTERM")
        while not stopping.is_set():
            result = sender.send_due(limit, stop=stopping.is_set)
            total.add(result)
            if not as_json and (result.mail_ids or result.server_error):
                click.echo(f"{utcnow():%Y-%m-%d %H:%M:%S} {_summary(result)}")
                if result.server_error:
                    click.echo(f"  {result.server_error}", err=True)
            if limit is None or len(result.mail_ids) < limit or result.server_error:
                stopping.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _report(total, as_json)


def _report(result: SendResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    click.echo(_summary(result))
    if result.server_error:
        click.echo(f"mail waits for the server: {result.server_error}", err=True)


@outbox.command("list")
@config_option
@click.option(
    "--status",
    type=click.Choice([s.value for s in MailStatus]),
    default=None,
    help="Only mails of this status.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(status: str | None, limit: int, as_json: bool) -> None:
    """The newest mails with their status, tries and last error."""
    rt = Runtime.build(settings())
    with transaction(rt) as session:
        counts = outbox_counts(session, utcnow())
        mails = list_mails(session, status=status, limit=limit)
        numbers = _tracking_numbers(session, mails)
        rows = [_row(m, numbers) for m in mails]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    click.echo(
        "outbox: {queued} queued ({due} due, {retrying} retrying), {sending} sending, "
        "{failed} failed".format(**counts)
    )
    for r in rows:
        when = r["sent_at"] or r["next_attempt_at"]
        click.echo(
            f"#{r['id']:<6} {r['status']:<8} tries {r['attempts']:<3} {r['kind']:<15} "
            f"{r['case'] or '-':<15} {when[:19].replace('T', ' ')} UTC  {r['to']}  {r['subject']}"
        )
        if r["last_error"]:
            click.echo(f"        {delivery_reasons.english(r['last_error'])}")


def _tracking_numbers(session: Any, mails: list[OutgoingMail]) -> dict[int, str]:
    ids = {m.case_id for m in mails if m.case_id is not None}
    if not ids:
        return {}
    return dict(
        session.execute(select(Case.id, Case.tracking_number).where(Case.id.in_(ids))).all()
    )


def _row(mail: OutgoingMail, numbers: dict[int, str]) -> dict[str, Any]:
    return {
        "id": mail.id,
        "status": mail.status,
        "attempts": mail.attempts,
        "kind": mail.kind,
        "case": numbers.get(mail.case_id) if mail.case_id is not None else None,
        "to": mail.to_display or ", ".join(mail.recipients),
        "subject": mail.subject,
        "message_id": mail.message_id,
        "next_attempt_at": mail.next_attempt_at.isoformat(),
        "sent_at": mail.sent_at.isoformat() if mail.sent_at else None,
        "claimed_by": mail.claimed_by,
        "last_error": mail.last_error,
    }


@outbox.command("retry")
@config_option
@click.argument("mail_ids", nargs=-1, type=int, required=True)
def retry(mail_ids: tuple[int, ...]) -> None:
    """Send these mails now: failed ones go back in the queue with a fresh count of tries,
    ones waiting to be tried again are brought forward. One line per mail says what was done;
    mails that do not exist, were sent or are being sent are named and the exit code is 1."""
    rt = Runtime.build(settings())
    now = utcnow()
    refused = 0
    with transaction(rt) as session:
        for mail_id in dict.fromkeys(mail_ids):
            mail = session.get(OutgoingMail, mail_id)
            if mail is None:
                click.echo(f"#{mail_id}: no such mail in the outbox", err=True)
                refused += 1
                continue
            waited_until = mail.next_attempt_at
            outcome = requeue(session, mail, now=now)
            line, ok = _retry_line(mail, outcome, waited_until)
            click.echo(f"#{mail_id}: {line}", err=not ok)
            refused += not ok
    if refused:
        raise click.ClickException(f"{refused} of {len(set(mail_ids))} mails not retried")


def _retry_line(mail: OutgoingMail, outcome: Retry, waited_until: datetime) -> tuple[str, bool]:
    """What `retry` did with one mail, as the operator reads it, and whether that was a retry."""
    tries = f"{mail.attempts} {'try' if mail.attempts == 1 else 'tries'} so far"
    if outcome == Retry.REQUEUED:
        return "failed, queued again with a fresh count of tries; sent on the next pass", True
    if outcome == Retry.BROUGHT_FORWARD:
        return (
            f"was waiting until {waited_until:%Y-%m-%d %H:%M:%S} UTC ({tries}); "
            "brought forward, sent on the next pass",
            True,
        )
    if outcome == Retry.ALREADY_DUE:
        return f"already queued and due ({tries}); sent on the next pass", True
    if outcome == Retry.SENDING:
        return f"being sent right now by {mail.claimed_by or 'another sender'}; left alone", False
    if outcome == Retry.SENT_INSTEAD:
        return (
            "failed, and the citizen was told by text message instead; "
            "not sent again (they would be told twice)",
            False,
        )
    sent = f" at {mail.sent_at:%Y-%m-%d %H:%M:%S} UTC" if mail.sent_at else ""
    return f"already sent{sent}; it is never sent twice", False
