"""Text messages to citizens who gave only a phone: queued with the change that caused them,
then sent through the configured HTTP gateway (`[sms]`), retried with the mail outbox's
backoff, on any number of machines.

The life of one message is the outbox's (triage/outbox.py)::

    queue_sms ──► queued ──claim──► sending ──mark_sent──► sent
                    ▲                  │
                    └──mark_failed─────┤ (a retryable failure, tries left: queued, later)
                                       └──mark_failed──► failed (tries used up, or the
                                                         gateway refused it for good)

Each message has a deterministic `sms_id` (a keyed hash of what it announces), unique in the
table: queueing the same notice again is a no-op, and the gateway is given the id so that it
can drop a repeat after an at-least-once retry (a sender that died after the gateway took the
message and before `mark_sent` was committed). Claims lock rows with FOR UPDATE SKIP LOCKED
on PostgreSQL and take SQLite's single write lock in one UPDATE, so two senders never send
the same message at once.

Every step is on the message's case as an event (`sms_queued`, `sms_sent`, `sms_deferred`,
`sms_failed`) whose reason is the number, masked like any free text for those who may not see
it. Functions here flush and never commit; `SmsGateway` does the HTTP and nothing else.
"""

from __future__ import annotations

import json
import re
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from triage import delivery_reasons
from triage.models import Base, Case, UTCDateTime, utcnow
from triage.outbox import Retry, RetryPolicy, claim_rows, failure_reason, status_counts

ACTOR = "system"


class SmsStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    # A notice's stand-in for a mail that may not go (see `release_held`): never sent as it
    # is, not listed, not counted.
    HELD = "held"


class TextMessage(Base):
    """One SMS in the queue: the number, the finished text and its sending state."""

    __tablename__ = "sms_outbox"
    __table_args__ = (Index("ix_sms_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    case: Mapped[Case | None] = relationship(Case)
    kind: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    sms_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(10), default=SmsStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<TextMessage {self.id} {self.kind} {self.status} attempts={self.attempts}>"


_MOBILE = re.compile(r"1[3-9]\d{9}")


def mobile_number(phone: str) -> str | None:
    """The 11-digit mainland mobile number in `phone` ("138 0013 8000", "+86-138…",
    full-width digits), or None for a landline, an extension or anything else: only a
    mobile can receive a text."""
    digits = "".join(c for c in unicodedata.normalize("NFKC", phone) if c.isdigit())
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    elif len(digits) == 15 and digits.startswith("0086"):
        digits = digits[4:]
    return digits if _MOBILE.fullmatch(digits) else None


# The parts of a text shortened with "…" when it is over `max_length`, in this order. The
# others ({link}, {query_code}, {tracking_number}) are never cut: a cut link is a dead link
# (a satisfaction token cut short reads as tampered with), a cut code finds nothing.
SHORTENED = ("reply", "office")


def fit(template: str, max_length: int, **fields: str) -> str:
    """`template` filled with `fields`, at most `max_length` characters where it can be: a
    long {reply} is shortened with "…" first, then {office}; the link, the query code and
    the tracking number are kept whole. A text still too long then is returned whole (a
    gateway sends it as several segments): the settings refuse a `max_length` the templates
    cannot fit (`shortest`)."""
    values = dict(fields)
    text = template.format(**values)
    for name in SHORTENED:
        over = len(text) - max_length
        if over <= 0:
            break
        value = values.get(name, "")
        if len(value) <= 1 or "{" + name + "}" not in template:
            continue
        shown = template.count("{" + name + "}")
        room = len(value) - -(-over // shown) - 1  # (one "…" added)
        values[name] = (value[:room] if room > 0 else "") + "…"
        text = template.format(**values)
    return text


def shortest(template: str, **fields: str) -> int:
    """The length of the shortest text `fit` makes of `template` with `fields` (each
    shortened part down to "…"), in characters: the least `max_length` that keeps the
    link, the query code and the tracking number whole."""
    return len(fit(template, 0, **fields))


def queue_sms(
    session: Session,
    *,
    case: Case | None,
    phone: str,
    text: str,
    kind: str,
    sms_id: str,
    now: datetime,
    held: bool = False,
) -> TextMessage | None:
    """Queues `text` for `phone` unless a message with `sms_id` is queued already (then
    None: a re-run). Records `sms_queued` on `case`. Flushes, never commits.

    `held`: kept, not sent, as the stand-in of the notice's mail, which may fail for want
    of SMTPUTF8 (`release_held` sends it then, `drop_held` forgets it when the mail went);
    no event until then."""
    if session.scalar(select(TextMessage.id).where(TextMessage.sms_id == sms_id)) is not None:
        return None
    message = TextMessage(
        case=case,
        kind=kind,
        phone=phone,
        text=text,
        sms_id=sms_id,
        status=SmsStatus.HELD if held else SmsStatus.QUEUED,
        attempts=0,
        next_attempt_at=now,
        last_error="",
        created_at=now,
    )
    session.add(message)
    session.flush()
    if case is not None and not held:
        case.record("sms_queued", ACTOR, now, reason=phone, sms_id=message.id, kind=kind)
        session.flush()
    return message


_NOTICE_MESSAGE_ID = re.compile(r"<notice\.([a-z]+)\.([0-9a-f]{8,64})@")


def notice_sms_id(message_id: str) -> str | None:
    """The `sms_id` the SMS of the same notice has (triage/notifications.py keys both by the
    same hash) for a notice mail's Message-ID ``<notice.<kind>.<hash>@…>``; None for any
    other mail."""
    m = _NOTICE_MESSAGE_ID.match(message_id or "")
    return f"{m.group(1)}.{m.group(2)}" if m else None


def release_held(
    session: Session, sms_id: str, *, mail_id: int, now: datetime
) -> TextMessage | None:
    """The notice's mail `mail_id` failed for good: its held stand-in (if any) is queued to
    be sent now, with `sms_queued` {instead_of_mail: mail_id} on the case. Returns the
    message, or None when there was none held. Flushes, never commits."""
    done = session.execute(
        update(TextMessage)
        .where(TextMessage.sms_id == sms_id, TextMessage.status == SmsStatus.HELD)
        .values(status=SmsStatus.QUEUED, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        return None
    message = session.scalars(select(TextMessage).where(TextMessage.sms_id == sms_id)).one()
    session.refresh(message)
    _record_queued(session, message, now, instead_of_mail=mail_id)
    return message


def drop_held(session: Session, sms_id: str) -> None:
    """The notice's mail went: its held stand-in is not needed. Flushes, never commits."""
    session.execute(
        delete(TextMessage).where(
            TextMessage.sms_id == sms_id, TextMessage.status == SmsStatus.HELD
        )
    )


def _due(now: datetime) -> Any:
    return TextMessage.status.in_([SmsStatus.QUEUED, SmsStatus.SENDING]) & (
        TextMessage.next_attempt_at <= now
    )


def claim(
    session: Session, now: datetime, *, worker: str, limit: int, lease: timedelta
) -> list[TextMessage]:
    """Takes up to `limit` due messages for `worker` (see triage.outbox.claim: the same
    locking, lease and attempt counting); commit before sending."""
    return claim_rows(
        session,
        TextMessage,
        _due(now),
        SmsStatus.SENDING,
        now,
        worker=worker,
        limit=limit,
        lease=lease,
    )


def _case(session: Session, message: TextMessage) -> Case | None:
    return session.get(Case, message.case_id) if message.case_id is not None else None


def _record_queued(session: Session, message: TextMessage, now: datetime, **detail: Any) -> None:
    """The ``sms_queued`` event on the message's case, if it has one, with ``detail``."""
    case = _case(session, message)
    if case is not None:
        case.record(
            "sms_queued",
            ACTOR,
            now,
            reason=message.phone,
            sms_id=message.id,
            kind=message.kind,
            **detail,
        )
        session.flush()


def mark_sent(session: Session, message: TextMessage, *, now: datetime) -> bool:
    """The gateway took `message`; False (nothing changed) if it was marked sent already."""
    done = session.execute(
        update(TextMessage)
        .where(TextMessage.id == message.id, TextMessage.status != SmsStatus.SENT)
        .values(status=SmsStatus.SENT, sent_at=now, claimed_by=None, claim_expires_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(message)
    if not done:
        return False
    case = _case(session, message)
    if case is not None:
        case.record(
            "sms_sent",
            ACTOR,
            now,
            reason=message.phone,
            sms_id=message.id,
            kind=message.kind,
            attempts=message.attempts,
        )
        session.flush()
    return True


def mark_failed(
    session: Session,
    message: TextMessage,
    error: str,
    *,
    worker: str,
    now: datetime,
    policy: RetryPolicy,
    permanent: bool = False,
) -> SmsStatus | None:
    """A failed try by `worker`: queued again after the backoff, or failed for good
    (`permanent`, or tries used up). None if `worker` lost its claim meanwhile. Records
    `sms_deferred` or `sms_failed` on the case with the error."""
    error = " ".join(error.split())[:2000] or delivery_reasons.coded(delivery_reasons.UNKNOWN)
    final = permanent or message.attempts >= policy.max_attempts
    status = SmsStatus.FAILED if final else SmsStatus.QUEUED
    next_at = now if final else now + policy.delay(message.attempts)
    done = session.execute(
        update(TextMessage)
        .where(
            TextMessage.id == message.id,
            TextMessage.status == SmsStatus.SENDING,
            TextMessage.claimed_by == worker,
        )
        .values(
            status=status,
            next_attempt_at=next_at,
            claimed_by=None,
            claim_expires_at=None,
            last_error=error,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(message)
    if not done:
        return None
    case = _case(session, message)
    if case is not None:
        detail: dict[str, Any] = {
            "sms_id": message.id,
            "kind": message.kind,
            "attempts": message.attempts,
        }
        if not final:
            detail["next_attempt_at"] = next_at.isoformat()
        case.record(
            "sms_failed" if final else "sms_deferred",
            ACTOR,
            now,
            reason=failure_reason(message.phone, error),
            **detail,
        )
        session.flush()
    return status


# -- the gateway ---------------------------------------------------------------------------


class GatewayError(Exception):
    """The gateway did not take the message; `permanent` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class SmsGateway:
    """An HTTP SMS gateway: one request per message (see `[sms]` in web/settings.py).

    `send` raises GatewayError: permanent for a 4xx answer other than 408/429, retryable for
    those, 5xx, timeouts and refused connections.
    """

    url: str
    method: str = "POST"
    body: str = "json"
    headers: Mapping[str, str] = field(default_factory=dict)
    phone_field: str = "phone"
    text_field: str = "text"
    id_field: str = "id"
    timeout_seconds: float = 10.0

    def send(self, phone: str, text: str, sms_id: str) -> None:
        fields = {self.phone_field: phone, self.text_field: text}
        if self.id_field:
            fields[self.id_field] = sms_id
        headers = {"User-Agent": "minsheng-sms", **self.headers}
        url, data = self.url, None
        if self.method == "GET":
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(fields)
        elif self.body == "form":
            data = urllib.parse.urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        else:
            data = json.dumps(fields, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        request = urllib.request.Request(url, data=data, headers=headers, method=self.method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as answer:
                answer.read(4096)
        except urllib.error.HTTPError as e:
            text_of = e.read(300).decode("utf-8", "replace") if e.fp else ""
            retry = e.code in (408, 429) or e.code >= 500
            raise GatewayError(f"HTTP {e.code} {text_of}".strip(), permanent=not retry) from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            # Not reached: our words (a code, read in the reader's language), the error's
            # own as a fact. An answer (HTTP 503 …) above is the gateway's, kept as it is.
            raise GatewayError(
                delivery_reasons.coded(
                    delivery_reasons.GATEWAY_UNAVAILABLE,
                    gateway=_host_of(self.url),
                    error=f"{type(e).__name__}: {reason}",
                )
            ) from e


def _host_of(url: str) -> str:
    """The gateway's host[:port], never its path or query (which may carry a key)."""
    return urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1]


@dataclass
class SmsResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    ids: list[int] = field(default_factory=list)


def send_due(
    sessions: Any,
    gateway: SmsGateway,
    *,
    worker: str,
    now: Any,
    policy: RetryPolicy,
    limit: int | None = None,
) -> SmsResult:
    """Sends the due messages one at a time, each claimed and its outcome committed in a
    session of its own from `sessions` (a sessionmaker); `now()` gives the aware UTC time.
    A gateway that cannot be reached stops the run (the message it was for is retried)."""
    result = SmsResult()
    lease = timedelta(seconds=gateway.timeout_seconds * 10)
    while limit is None or len(result.ids) < limit:
        with sessions() as session:
            claimed = claim(session, now(), worker=worker, limit=1, lease=lease)
            session.commit()
        if not claimed:
            break
        message = claimed[0]
        result.ids.append(message.id)
        try:
            gateway.send(message.phone, message.text, message.sms_id)
        except GatewayError as e:
            with sessions() as session:
                row = session.get(TextMessage, message.id)
                status = mark_failed(
                    session,
                    row,  # type: ignore[arg-type]
                    str(e),
                    worker=worker,
                    now=now(),
                    policy=policy,
                    permanent=e.permanent,
                )
                session.commit()
            if status == SmsStatus.FAILED:
                result.failed += 1
            else:
                result.retried += 1
            if not e.permanent:
                break  # the gateway is down: the others keep their place
            continue
        with sessions() as session:
            row = session.get(TextMessage, message.id)
            mark_sent(session, row, now=now())  # type: ignore[arg-type]
            session.commit()
        result.sent += 1
    return result


# -- an operator's retry and the lists -----------------------------------------------------


def requeue(session: Session, message: TextMessage, *, now: datetime) -> Retry:
    """An operator's retry (they fixed the gateway or its account), as the mail outbox's
    `requeue`: a failed message is queued again with a fresh count of tries, due at `now`
    (`sms_queued` on its case, `requeued`); one waiting on its backoff becomes due now;
    others are left as they are. Conditional updates, so a sender holding the message is
    never overridden. Returns what was done."""
    done = session.execute(
        update(TextMessage)
        .where(TextMessage.id == message.id, TextMessage.status == SmsStatus.FAILED)
        .values(status=SmsStatus.QUEUED, attempts=0, next_attempt_at=now, last_error="")
        .execution_options(synchronize_session=False)
    ).rowcount
    if done:
        session.refresh(message)
        _record_queued(session, message, now, requeued=True)
        return Retry.REQUEUED
    done = session.execute(
        update(TextMessage)
        .where(
            TextMessage.id == message.id,
            TextMessage.status == SmsStatus.QUEUED,
            TextMessage.next_attempt_at > now,
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(message)
    if done:
        return Retry.BROUGHT_FORWARD
    if message.status == SmsStatus.SENT:
        return Retry.SENT
    if message.status == SmsStatus.SENDING and message.next_attempt_at > now:
        return Retry.SENDING
    return Retry.ALREADY_DUE


def sms_counts(session: Session, now: datetime | None = None) -> dict[str, int]:
    """The text messages' health, as `triage.outbox.outbox_counts` gives the mail's:
    {"queued", "retrying", "due", "sending", "failed"} (sent ones are not counted). Served
    by the (status, next_attempt_at) index."""
    return status_counts(session, TextMessage, now)


def list_messages(
    session: Session, *, status: str | None = None, limit: int = 50
) -> list[TextMessage]:
    """The newest text messages, or the newest of one status, for an operator."""
    query = select(TextMessage).order_by(TextMessage.id.desc()).limit(limit)
    # Without a status, all but the held stand-ins of notice mails (never sent as they are).
    query = query.where(
        TextMessage.status == status if status else TextMessage.status != SmsStatus.HELD
    )
    return list(session.scalars(query))
