"""Sending the monthly report through the outbox, once a month from the supervision tick or
by hand, and recording each send (``report_sends``: one row per month).

- ``send_report(session, month, settings, *, sender, recipients, now, by="manual",
  report=None) -> SentReport``: builds the report (triage/report/email.build_report, unless
  given), queues it in the outbox (kind ``report``; sent by ``minsheng outbox send`` or the
  tick's own send) and records the send; a month sent before is sent again and its row
  updated (a send by hand is always deliberate). Raises triage.outbox.OutboxError for a bad
  address, ValueError for a bad month.
- ``due_month(now, schedule) -> str | None``: the month whose report the tick sends at
  ``now``: the previous month, from ``schedule.send_day`` (local date) at
  ``schedule.send_hour`` on, and on later days of the same statistical month (a send day
  without any tick is caught up); None otherwise (and always with ``send_day`` 0).
- ``send_due_report(session, now, schedule) -> str | None``: what the tick calls: sends the
  due month's report unless ``report_sends`` has it (from an earlier tick on this or another
  machine); returns the month sent. The row is inserted first, in a savepoint, so a second
  tick racing this one hits the unique month and sends nothing; the outbox's Message-ID
  (``report.<month>@<sender's domain>``) refuses a duplicate too. A report that fails to
  build is logged and skipped, leaving the rest of the tick (reminders, digests) intact.

Functions flush and never commit: the caller (tick, CLI) owns the transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.models import ReportSend
from triage.outbox import MailKind, OutgoingMail, enqueue
from triage.report.figures import ReportPolicy, month_of, shift_month

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportSchedule:
    """When and to whom the tick sends the report. ``settings``: what build_report takes
    (web Settings); ``send_day``: local day of the month (0: the tick never sends);
    ``send_hour``: local hour from which it sends (the digest hour)."""

    settings: Any
    sender: str
    recipients: tuple[str, ...]
    send_day: int
    send_hour: int
    tz: ZoneInfo

    @property
    def domain(self) -> str:
        return self.sender.rsplit("@", 1)[-1]


@dataclass(frozen=True)
class SentReport:
    month: str
    mail: OutgoingMail
    record: ReportSend
    report: Any  # triage.report.email.MonthlyReport


def tick_message_id(month: str, domain: str) -> str:
    return f"<report.{month}@{domain}>"


def send_report(
    session: Session,
    month: str,
    settings: Any,
    *,
    sender: str,
    recipients: list[str] | tuple[str, ...],
    now: datetime,
    by: str = "manual",
    report: Any = None,
    message_id: str | None = None,
) -> SentReport:
    """Queues the month's report to ``recipients`` and records it (see the module's note)."""
    from triage.report.email import build_report, report_message

    report = report or build_report(session, month, settings, now=now)
    message = report_message(report, sender=sender, to=list(recipients))
    if message_id:
        message["Message-ID"] = message_id
    mail = enqueue(session, message, kind=MailKind.REPORT, now=now)
    record = session.scalar(select(ReportSend).where(ReportSend.month == month))
    if record is None:
        record = ReportSend(month=month)
        session.add(record)
    record.sent_at = now
    record.recipients = list(mail.recipients)
    record.message_id = mail.message_id
    record.sent_by = by
    session.flush()
    return SentReport(month=month, mail=mail, record=record, report=report)


def due_month(now: datetime, schedule: ReportSchedule) -> str | None:
    if schedule.send_day <= 0:
        return None
    local = now.astimezone(schedule.tz)
    send_at = local.replace(
        day=schedule.send_day, hour=schedule.send_hour, minute=0, second=0, microsecond=0
    )
    policy = ReportPolicy.from_settings(schedule.settings)
    # Later ticks catch up a send day on which no tick ran (the server was down), as long as
    # the statistical month is still the send day's.
    if local < send_at or month_of(now, policy) != month_of(send_at, policy):
        return None
    return shift_month(month_of(now, policy), -1)


def send_due_report(session: Session, now: datetime, schedule: ReportSchedule) -> str | None:
    month = due_month(now, schedule)
    if month is None:
        return None
    if not schedule.recipients:
        log.warning("the %s report is due but [report] recipients is empty: not sent", month)
        return None
    if session.scalar(select(ReportSend.id).where(ReportSend.month == month)) is not None:
        return None
    mid = tick_message_id(month, schedule.domain)
    try:
        with session.begin_nested():
            record = ReportSend(
                month=month,
                sent_at=now,
                recipients=list(schedule.recipients),
                message_id=mid,
                sent_by="tick",
            )
            session.add(record)
            session.flush()
    except IntegrityError:
        return None  # another tick recorded it first
    try:
        with session.begin_nested():
            send_report(
                session,
                month,
                schedule.settings,
                sender=schedule.sender,
                recipients=schedule.recipients,
                now=now,
                by="tick",
                message_id=mid,
            )
    except Exception:
        log.exception("the %s report could not be built or queued; send it by hand", month)
        session.delete(record)
        session.flush()
        return None
    return month


def report_schedule(settings: Any) -> ReportSchedule | None:
    """The tick's schedule from the web Settings: ``[report] send_day`` and ``recipients``,
    sent from ``[supervision] digest_hour`` local time by ``[mail] sender``; None when the
    config has no ``[report]`` section or ``send_day`` is 0."""
    report = getattr(settings, "report", None)
    day = int(getattr(report, "send_day", 0) or 0)
    if report is None or day <= 0:
        return None
    return ReportSchedule(
        settings=settings,
        sender=settings.mail.sender,
        recipients=tuple(getattr(report, "recipients", ()) or ()),
        send_day=day,
        send_hour=int(settings.supervision.digest_hour),
        tz=ZoneInfo(settings.app.timezone),
    )
