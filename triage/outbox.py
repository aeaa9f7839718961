"""The outbox: mail to send, queued in the transaction of the change that caused it, then
claimed, sent and retried by `minsheng outbox send` (web/mail.py) on any number of machines.

The life of one mail::

    enqueue ──► queued ──claim──► sending ──mark_sent──► sent
                  ▲                  │
                  └──mark_failed─────┤ (attempts < max_attempts: back to queued, later)
                                     └──mark_failed──► failed (after max_attempts, or a
                                                       permanent refusal such as 550)

What is stored is the complete RFC 5322 message, built once at enqueue time (`build_message`
makes one: text, HTML, inline CID images as multipart/related, attachments), compressed with
zlib. A retry sends exactly the bytes of the first try, with the same Message-ID, so a mail
client that got both copies shows one. The envelope recipients (To, Cc and Bcc) are kept in
their own column; the Bcc header itself is removed before the message is stored.

Several senders at once, on several machines, never send a mail twice: `claim` moves due
rows to `sending` atomically (PostgreSQL: the rows are locked with `FOR UPDATE SKIP LOCKED`,
so two senders skip each other's rows instead of waiting, then updated in the same
transaction; SQLite: one UPDATE, which takes the single write lock before it reads), and the
claim is committed before the mail is sent. A claim is a lease: a sender that dies mid-send
holds the mail until `claim_expires_at`, after which `claim` hands it to another sender.

The one window left is at-least-once, not exactly-once: a sender that dies (or loses the
database) after the SMTP server accepted the message and before `mark_sent` is committed
leaves the mail in `sending`; when the lease expires another sender sends it again, with the
same Message-ID. No protocol can close that window between two systems that do not share a
transaction; it is kept small by committing `mark_sent` right after the server's "250" and
doing nothing else in between.

Every step is recorded on the mail's case, when it has one, as an event (`mail_queued`,
`mail_sent`, `mail_deferred` for a failed try that will be retried, `mail_failed`) whose
reason names the recipients; the case's status never changes. Functions here flush and never
commit: the caller owns the transaction.

Example (the acknowledgment of an email case)::

    msg = build_message(
        sender=settings.mail.sender, to=[case.contact_email],
        subject=f"已受理：{case.tracking_number}", text=body,
        in_reply_to=submission.external_id, auto_submitted="auto-replied",
    )
    enqueue(session, msg, case=case, kind="acknowledgment", now=now)
    # ... committed with the case; `minsheng outbox send` delivers it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.charset import BASE64, Charset
from email.encoders import encode_base64
from email.header import Header, decode_header, make_header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, getaddresses, make_msgid, parseaddr
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from triage import delivery_reasons
from triage.models import Base, Case, UTCDateTime, utcnow

ACTOR = "system"


class MailStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class MailKind(StrEnum):
    """What a mail is for; a free string in the table, these are the ones the project sends."""

    ACKNOWLEDGMENT = "acknowledgment"
    NOTIFICATION = "notification"
    REMINDER = "reminder"
    DIGEST = "digest"
    REPORT = "report"


class OutboxError(ValueError):
    """A message that cannot be queued (no sender, no recipient); the message says why."""


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed mail again, and when to give up.

    The n-th failed try (n ≥ 1) waits `min(max_seconds, base_seconds · 2^(n-1))` seconds;
    the `max_attempts`-th failed try marks the mail failed.
    """

    max_attempts: int = 10
    base_seconds: float = 60.0
    max_seconds: float = 3600.0

    def delay(self, attempts: int) -> timedelta:
        exponent = max(0, attempts - 1)
        # Capped before the power: a large exponent would overflow a float.
        seconds = self.max_seconds if exponent >= 62 else self.base_seconds * 2**exponent
        return timedelta(seconds=min(self.max_seconds, seconds))


class OutgoingMail(Base):
    """One mail in the outbox: the finished message, its envelope, and its sending state."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The sender's query: due rows of the two live statuses, oldest first. Sent rows pile
        # up under another status prefix and are never read by it.
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        # The per-address acknowledgment limit (triage/mail_intake.acknowledgments_to).
        Index(
            "ix_outbox_ack_recipient",
            text("lower(to_display)"),
            "created_at",
            postgresql_where=text("kind = 'acknowledgment'"),
            sqlite_where=text("kind = 'acknowledgment'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    # Set by `enqueue`: a case not flushed yet gets its id in the flush that writes the mail.
    case: Mapped[Case | None] = relationship(Case)
    kind: Mapped[str] = mapped_column(String(40))
    # Envelope: everyone the server is asked to deliver to (To, Cc and Bcc), bare addresses.
    recipients: Mapped[list[str]] = mapped_column(JSON)
    # The To header's addresses, for the timeline and lists (Bcc is never shown).
    to_display: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    # zlib-compressed RFC 5322 bytes; `raw` gives them back.
    message: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default=MailStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Queued: when it may be tried (again). Sending: equal to claim_expires_at, so that one
    # condition ("due") finds both new work and claims left by a dead sender.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def raw(self) -> bytes:
        """The message exactly as it goes to the SMTP server."""
        return zlib.decompress(self.message)

    def __repr__(self) -> str:
        return f"<OutgoingMail {self.id} {self.kind} {self.status} attempts={self.attempts}>"


# -- building and queueing -----------------------------------------------------------------


@dataclass(frozen=True)
class InlineImage:
    """An image the HTML shows as `<img src="cid:{cid}">` (the cid without angle brackets)."""

    cid: str
    data: bytes
    subtype: str = "png"


@dataclass(frozen=True)
class FileAttachment:
    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


def _text_part(text: str, subtype: str) -> MIMEText:
    # ASCII stays 7-bit; anything else is UTF-8 in base64, 7-bit clean (no 8BITMIME needed)
    # at a third more bytes, where quoted-printable would triple Chinese.
    if text.isascii():
        part = MIMEText(text, subtype, "us-ascii")
    else:
        # An explicit Charset: the registry's entry for utf-8 is global state that libraries
        # change (Flask-Mail makes it 8bit on import).
        utf8 = Charset("utf-8")
        utf8.body_encoding = BASE64
        part = MIMEText(text, subtype, utf8)
    del part["MIME-Version"]
    return part


def _encoded(value: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8")


def _address_list(addresses: Sequence[str]) -> str:
    """ "王小明 <wang@example.com>, b@example.com" with names encoded as headers need."""
    parsed = getaddresses(list(addresses))
    bad = [addr or name for name, addr in parsed if "@" not in addr]
    if bad or not parsed:
        raise OutboxError(f"not a mail address: {', '.join(bad) or '(none)'}")
    return ", ".join(_one_address(name, addr) for name, addr in parsed)


def _one_address(name: str, addr: str) -> str:
    """One address of a header. An internationalised one (张三@example.cn, RFC 6531) cannot
    be an RFC 2047 word (`formataddr` refuses it): it is written in UTF-8 as it is (RFC 6532),
    its bytes kept in the str as surrogates so that the compat32 generator writes them
    unencoded; such a mail goes only to a server that offers SMTPUTF8 (web/mail.py)."""
    if addr.isascii():
        return formataddr((name, addr), "utf-8")
    text = f"{Header(name, 'utf-8').encode()} <{addr}>" if name else addr
    return text.encode("utf-8").decode("ascii", "surrogateescape")


def _header_values(message: Message, *names: str) -> list[str]:
    """The values of the headers `names`, with an internationalised address as text (read
    raw: parsed, compat32 turns its bytes into replacement characters)."""
    wanted = {n.lower() for n in names}
    return [_unescaped(str(v)) for k, v in message.raw_items() if k.lower() in wanted]


def _unescaped(value: str) -> str:
    """A header value as text: the UTF-8 bytes `_one_address` kept as surrogates decoded."""
    try:
        return value.encode("ascii", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return value


def _filename_params(filename: str) -> Any:
    return filename if filename.isascii() else ("utf-8", "", filename)


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    inline_images: Sequence[InlineImage] = (),
    attachments: Sequence[FileAttachment] = (),
    auto_submitted: str = "auto-generated",
) -> Message:
    """A finished message for `enqueue`: text, optionally HTML with inline images, files.

    Structure: text/plain alone; or multipart/alternative (text, HTML); inline images make
    the HTML part multipart/related (what mail clients need to show `cid:` images in place);
    attachments wrap it all in multipart/mixed. Addresses may carry display names
    ("王小明 <wang@example.com>"); Chinese subjects and names are RFC 2047 words, Chinese file
    names RFC 2231 parameters. `in_reply_to` / `references` are Message-IDs with or without
    angle brackets (the acknowledgment of an email passes the citizen's). `auto_submitted`
    is "auto-generated" for machine mail and "auto-replied" for an automatic answer to a
    mail (RFC 3834), so that the other side's auto-responders do not answer; "" leaves it
    out. Message-ID and Date are added by `enqueue`. Raises OutboxError for an address
    without "@" or inline images without HTML.

    Built with the standard library's compat32 classes, not `EmailMessage`: those parse
    every header as it is set and cost several milliseconds a mail, and an acknowledgment
    is built inside the transaction that registers each incoming email.
    """
    if inline_images and html is None:
        raise OutboxError("inline images need an HTML body that shows them")
    body: Message = _text_part(text, "plain")
    if html is not None:
        html_part: Message = _text_part(html, "html")
        if inline_images:
            related = MIMEMultipart("related")
            related.attach(html_part)
            for image in inline_images:
                img = MIMEImage(image.data, image.subtype)
                img["Content-ID"] = _angle(image.cid)
                img.add_header("Content-Disposition", "inline")
                related.attach(img)
            html_part = related
        alternative = MIMEMultipart("alternative")
        alternative.attach(body)
        alternative.attach(html_part)
        body = alternative
    if attachments:
        mixed = MIMEMultipart("mixed")
        mixed.attach(body)
        for f in attachments:
            maintype, _, subtype = f.content_type.partition("/")
            part = MIMEBase(maintype or "application", subtype or "octet-stream")
            part.set_payload(f.data)
            encode_base64(part)
            part.set_param("name", _filename_params(f.filename))
            part.add_header(
                "Content-Disposition", "attachment", filename=_filename_params(f.filename)
            )
            mixed.attach(part)
        body = mixed
    for part in body.walk():
        if part is not body:
            del part["MIME-Version"]
    if "MIME-Version" not in body:
        body["MIME-Version"] = "1.0"
    body["From"] = _address_list([sender])
    body["To"] = _address_list(to)
    if cc:
        body["Cc"] = _address_list(cc)
    if bcc:
        body["Bcc"] = _address_list(bcc)
    if reply_to:
        body["Reply-To"] = _address_list([reply_to])
    body["Subject"] = _encoded(subject)
    if in_reply_to:
        body["In-Reply-To"] = _angle(in_reply_to)
    refs = [_angle(r) for r in references if r]
    if in_reply_to and _angle(in_reply_to) not in refs:
        refs.append(_angle(in_reply_to))
    if refs:
        body["References"] = " ".join(refs)
    if auto_submitted:
        body["Auto-Submitted"] = auto_submitted
    return body


def _angle(message_id: str) -> str:
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def _bare(addresses: Iterable[str]) -> list[str]:
    return [addr for _, addr in getaddresses(list(addresses)) if addr]


def enqueue(
    session: Session,
    message: Message,
    *,
    case: Case | None = None,
    kind: str,
    now: datetime,
    flush: bool = True,
) -> OutgoingMail:
    """Queues `message` to be sent as soon as a sender runs; returns the flushed row.

    With ``flush`` False the row is only added to the session, and the caller, once it has
    flushed it (with others: the mail intake's batch), records its event: `record_queued`.

    The message must have a From and at least one recipient (To, Cc or Bcc). Added when
    missing: Message-ID (in the sender's domain; kept by every retry), Date (`now`) and
    Auto-Submitted: auto-generated. The Bcc header is removed (its addresses stay in the
    envelope). `message` is a `build_message` result or any `email.message.Message` (an
    `EmailMessage` too). With `case`, a `mail_queued` event is recorded on it. Flushes, never
    commits:
    the mail is sent only if the caller's transaction commits, so a change that is rolled
    back sends nothing. Raises OutboxError for a message without sender or recipient.

    Message-IDs are unique in the outbox: a caller that sets its own (say one derived from
    the case, for an acknowledgment) gets an IntegrityError at the flush if it queues the
    same mail twice, which makes queueing idempotent across a re-run.
    """
    _, sender = parseaddr(str(message.get("From", "")))
    if not sender or "@" not in sender:
        raise OutboxError("the message has no From address")
    recipients = _bare(_header_values(message, "To", "Cc", "Bcc"))
    if not recipients:
        raise OutboxError("the message has no recipient")
    del message["Bcc"]
    if "Message-ID" not in message:
        message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[1])
    if "Date" not in message:
        message["Date"] = format_datetime(now)
    if "Auto-Submitted" not in message:
        message["Auto-Submitted"] = "auto-generated"
    # CRLF as SMTP has it: smtplib sends bytes as they are, and a server reads an LF-only
    # message as one line far over its limit.
    raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    to_display = ", ".join(_bare(_header_values(message, "To")))
    mail = OutgoingMail(
        case=case,
        kind=kind,
        recipients=list(dict.fromkeys(r.lower() for r in recipients)),
        to_display=to_display,
        subject=str(make_header(decode_header(message.get("Subject", "")))),
        message_id=str(message["Message-ID"]).strip(),
        message=zlib.compress(raw, 6),
        size=len(raw),
        status=MailStatus.QUEUED,
        attempts=0,
        next_attempt_at=now,
        last_error="",
        created_at=now,
    )
    session.add(mail)
    if not flush:
        return mail
    session.flush()
    if case is not None:
        # Its event is written by the caller's next flush (the mail intake queues one a mail).
        _record_queued(session, case, mail, now, flush=False)
    return mail


def record_queued(session: Session, case: Case, mail: OutgoingMail, now: datetime) -> None:
    """The `mail_queued` event of a mail queued with ``enqueue(..., flush=False)`` on its
    case, once the mail has its id; written by the next flush."""
    _record_queued(session, case, mail, now, flush=False)


def _record_queued(
    session: Session,
    case: Case,
    mail: OutgoingMail,
    now: datetime,
    *,
    flush: bool = True,
    **detail: Any,
) -> None:
    """The case's timeline says the mail waits to be sent (`mail_queued`); flushed unless
    ``flush`` is False."""
    case.record(
        "mail_queued",
        ACTOR,
        now,
        reason=_who(mail),
        mail_id=mail.id,
        kind=mail.kind,
        message_id=mail.message_id,
        **detail,
    )
    if flush:
        session.flush()


def _who(mail: OutgoingMail) -> str:
    """The recipients as the timeline shows them: the To header's, else the envelope's."""
    return mail.to_display or ", ".join(mail.recipients)


# -- sending state -------------------------------------------------------------------------


def _due(now: datetime) -> Any:
    return OutgoingMail.status.in_([MailStatus.QUEUED, MailStatus.SENDING]) & (
        OutgoingMail.next_attempt_at <= now
    )


def claim(
    session: Session, now: datetime, *, worker: str, limit: int, lease: timedelta
) -> list[OutgoingMail]:
    """Takes up to `limit` due mails for `worker`, oldest due first; commit before sending.

    Due: queued with `next_attempt_at <= now`, or sending under a lease that expired (its
    sender died). Each claimed mail becomes `sending`, owned by `worker` until `now + lease`,
    and its `attempts` grows by one now, so that a mail whose sending kills the sender still
    ends as failed after max_attempts. Two senders never claim the same row: PostgreSQL
    locks the picked rows with FOR UPDATE SKIP LOCKED (another sender skips them, instead of
    waiting) and then updates them; SQLite does it in one UPDATE, which takes its single
    write lock before it reads. The lease must outlast one send.
    """
    return claim_rows(
        session,
        OutgoingMail,
        _due(now),
        MailStatus.SENDING,
        now,
        worker=worker,
        limit=limit,
        lease=lease,
    )


def claim_rows(
    session: Session,
    model: Any,
    due: Any,
    sending: str,
    now: datetime,
    *,
    worker: str,
    limit: int,
    lease: timedelta,
) -> list[Any]:
    """`claim` for any outbox table (`model`: this one, or triage.sms's text messages) with
    the columns id, status, claimed_by, claim_expires_at, next_attempt_at and attempts; `due`
    is its where-clause of due rows, `sending` its status while claimed. Rows by id."""
    expires = now + lease
    picked = select(model.id).where(due).order_by(model.next_attempt_at, model.id).limit(limit)
    if session.get_bind().dialect.name == "sqlite":
        # One statement: SQLite takes its write lock before the subquery reads, so no other
        # sender can claim the same rows between reading and writing.
        target: Any = model.id.in_(picked)
    else:
        # Locked first, in a statement of its own: PostgreSQL may run a LIMIT subquery inside
        # an UPDATE more than once (a rescan returns further rows), claiming more than
        # `limit`. The locks last until the caller commits.
        locked = list(session.scalars(picked.with_for_update(skip_locked=True)))
        if not locked:
            return []
        target = model.id.in_(locked)
    ids = list(
        session.scalars(
            update(model)
            .where(target, due)
            .values(
                status=sending,
                claimed_by=worker,
                claim_expires_at=expires,
                next_attempt_at=expires,
                attempts=model.attempts + 1,
            )
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
    )
    if not ids:
        return []
    rows = session.scalars(
        select(model)
        .where(model.id.in_(ids))
        .order_by(model.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


def _case(session: Session, mail: OutgoingMail) -> Case | None:
    return session.get(Case, mail.case_id) if mail.case_id is not None else None


def mark_sent(
    session: Session,
    mail: OutgoingMail,
    *,
    now: datetime,
    refused: dict[str, str] | None = None,
) -> bool:
    """Records that the SMTP server accepted `mail`; commit at once (see the module's note).

    Idempotent: returns False, changing nothing, if the mail is already sent (a second sender
    that took over an expired lease got there first). Otherwise the mail is sent whoever held
    the claim, since it is out of our hands now. `refused`: recipients the server refused
    while accepting the others (address → the server's answer), noted on the case event.
    """
    done = session.execute(
        update(OutgoingMail)
        .where(OutgoingMail.id == mail.id, OutgoingMail.status != MailStatus.SENT)
        .values(
            status=MailStatus.SENT,
            sent_at=now,
            claimed_by=None,
            claim_expires_at=None,
            last_error="; ".join(f"{a}: {e}" for a, e in (refused or {}).items()),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(mail)
    if not done:
        return False
    case = _case(session, mail)
    if case is not None:
        extra = {"refused": refused} if refused else {}
        case.record(
            "mail_sent",
            ACTOR,
            now,
            reason=_who(mail),
            mail_id=mail.id,
            kind=mail.kind,
            attempts=mail.attempts,
            **extra,
        )
        session.flush()
    if mail.kind == MailKind.NOTIFICATION:
        _held_sms(session, mail, sent=True, now=now)
    return True


def _held_sms(session: Session, mail: OutgoingMail, *, sent: bool, now: datetime) -> None:
    """A citizen's notice mail went (`sent`) or failed for good: its text message held as a
    stand-in (triage/notifications.py, for an address the server may refuse for want of
    SMTPUTF8) is dropped, or sent instead (`sms_queued` {instead_of_mail} on the case)."""
    from triage import sms  # triage.sms imports this module

    sms_id = sms.notice_sms_id(mail.message_id)
    if sms_id is None:
        return
    if sent:
        sms.drop_held(session, sms_id)
    else:
        sms.release_held(session, sms_id, mail_id=mail.id, now=now)


def mark_failed(
    session: Session,
    mail: OutgoingMail,
    error: str,
    *,
    worker: str,
    now: datetime,
    policy: RetryPolicy,
    permanent: bool = False,
) -> MailStatus | None:
    """Records a failed try by `worker`: queued again after the backoff, or failed for good.

    Failed for good when `permanent` (the server refused the message or every recipient
    with a 5xx answer) or when this was try number `policy.max_attempts` or later. Returns
    the new status, or None if `worker` no longer holds the claim (its lease expired and
    another sender took the mail over: that sender decides). Records `mail_deferred` or
    `mail_failed` on the case, with the error as the reason.
    """
    error = " ".join(error.split())[:2000] or delivery_reasons.coded(delivery_reasons.UNKNOWN)
    final = permanent or mail.attempts >= policy.max_attempts
    status = MailStatus.FAILED if final else MailStatus.QUEUED
    next_at = now if final else now + policy.delay(mail.attempts)
    done = session.execute(
        update(OutgoingMail)
        .where(
            OutgoingMail.id == mail.id,
            OutgoingMail.status == MailStatus.SENDING,
            OutgoingMail.claimed_by == worker,
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
    session.refresh(mail)
    if not done:
        return None
    case = _case(session, mail)
    if case is not None:
        detail: dict[str, Any] = {"mail_id": mail.id, "kind": mail.kind, "attempts": mail.attempts}
        if not final:
            detail["next_attempt_at"] = next_at.isoformat()
        case.record(
            "mail_failed" if final else "mail_deferred",
            ACTOR,
            now,
            reason=failure_reason(_who(mail), error),
            **detail,
        )
        session.flush()
    if final and mail.kind == MailKind.NOTIFICATION:
        _held_sms(session, mail, sent=False, now=now)
    return status


def failure_reason(who: str, error: str) -> str:
    """A failed try's reason on the case: ``who: the error``, a coded error
    (triage/delivery_reasons.py) with `who` among its facts, to be put in the reader's words."""
    if delivery_reasons.parse(error) is not None:
        return delivery_reasons.with_facts(error, to=who)
    return f"{who}: {error}"


def renew(
    session: Session, mail: OutgoingMail, *, worker: str, now: datetime, lease: timedelta
) -> bool:
    """Extends `worker`'s claim on `mail` to `now + lease`; False if the claim was lost."""
    expires = now + lease
    done = session.execute(
        update(OutgoingMail)
        .where(
            OutgoingMail.id == mail.id,
            OutgoingMail.status == MailStatus.SENDING,
            OutgoingMail.claimed_by == worker,
        )
        .values(claim_expires_at=expires, next_attempt_at=expires)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(mail)
    return bool(done)


class Retry(StrEnum):
    """What `requeue` did with a mail an operator asked to retry."""

    REQUEUED = "requeued"  # it had failed: queued again with a fresh count of tries
    BROUGHT_FORWARD = "brought_forward"  # it waited on its backoff: now due
    ALREADY_DUE = "already_due"  # queued and due: the next pass sends it
    SENDING = "sending"  # a sender holds it right now: left alone
    SENT = "sent"  # sent already: never sent twice
    # A notice that failed for good and whose text message went in its place: the citizen
    # was told, and a retry would tell them twice.
    SENT_INSTEAD = "sent_instead"


def requeue(session: Session, mail: OutgoingMail, *, now: datetime) -> Retry:
    """An operator's retry (they fixed what made mail fail): a failed mail goes back in the
    queue with a fresh count of tries, due at ``now`` (recorded on its case as `mail_queued`);
    a queued mail waiting on its backoff becomes due at ``now``, keeping its tries; others
    are left as they are. Conditional updates, so a sender claiming or sending the mail
    meanwhile is never overridden. Returns what was done, from the state it found.

    A failed notice whose text message was sent instead (triage/sms.release_held) is left
    failed: SENT_INSTEAD."""
    if mail.status == MailStatus.FAILED and told_by_sms(session, mail):
        return Retry.SENT_INSTEAD
    done = session.execute(
        update(OutgoingMail)
        .where(OutgoingMail.id == mail.id, OutgoingMail.status == MailStatus.FAILED)
        .values(status=MailStatus.QUEUED, attempts=0, next_attempt_at=now, last_error="")
        .execution_options(synchronize_session=False)
    ).rowcount
    if done:
        session.refresh(mail)
        case = _case(session, mail)
        if case is not None:
            _record_queued(session, case, mail, now, requeued=True)
        return Retry.REQUEUED
    done = session.execute(
        update(OutgoingMail)
        .where(
            OutgoingMail.id == mail.id,
            OutgoingMail.status == MailStatus.QUEUED,
            OutgoingMail.next_attempt_at > now,
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(mail)
    if done:
        return Retry.BROUGHT_FORWARD
    if mail.status == MailStatus.SENT:
        return Retry.SENT
    if mail.status == MailStatus.SENDING and mail.next_attempt_at > now:
        return Retry.SENDING  # claimed, its lease running
    return Retry.ALREADY_DUE


def told_by_sms(session: Session, mail: OutgoingMail) -> bool:
    """Whether the text message held as `mail`'s stand-in was released in its place (queued,
    sent or failed: no longer held), so the citizen was, or is being, told by SMS."""
    from triage import sms  # triage.sms imports this module

    sms_id = sms.notice_sms_id(mail.message_id)
    if sms_id is None:
        return False
    found = session.scalar(
        select(sms.TextMessage.id).where(
            sms.TextMessage.sms_id == sms_id, sms.TextMessage.status != sms.SmsStatus.HELD
        )
    )
    return found is not None


# -- reading -------------------------------------------------------------------------------


def outbox_counts(session: Session, now: datetime | None = None) -> dict[str, int]:
    """What supervisors watch: {"queued", "retrying", "due", "sending", "failed"}.

    `retrying` and `due` are parts of `queued`: mails that failed at least once, and mails
    whose time has come (with `now`; else 0). Sent mails are not counted: they pile up
    forever and say nothing about the outbox's health.
    """
    return status_counts(session, OutgoingMail, now)


def status_counts(session: Session, model: Any, now: datetime | None = None) -> dict[str, int]:
    """`outbox_counts` for any outbox table (`model`: this one, or triage.sms's text
    messages) with the columns status ("queued", "sending", "failed", "sent"), attempts and
    next_attempt_at: at most three queries, served by the (status, next_attempt_at) index."""
    counts = dict.fromkeys(("queued", "retrying", "due", "sending", "failed"), 0)
    for status, n in session.execute(
        select(model.status, func.count())
        .where(model.status.in_(("queued", "sending", "failed")))
        .group_by(model.status)
    ):
        counts[str(status)] = int(n)
    if counts["queued"]:
        queued = model.status == "queued"
        counts["retrying"] = int(
            session.scalar(
                select(func.count()).select_from(model).where(queued, model.attempts > 0)
            )
            or 0
        )
        if now is not None:
            counts["due"] = int(
                session.scalar(
                    select(func.count())
                    .select_from(model)
                    .where(queued, model.next_attempt_at <= now)
                )
                or 0
            )
    return counts


def case_of_reply(session: Session, message_ids: Iterable[str]) -> int | None:
    """The case whose mail a reply answers: `message_ids` are the reply's In-Reply-To and
    References (with or without angle brackets, newest last); the id of the case of the
    newest one that is ours, or None. Served by the unique index on Message-ID."""
    wanted = [_angle(m) for m in message_ids if m and m.strip()]
    if not wanted:
        return None
    found = dict(
        session.execute(
            select(OutgoingMail.message_id, OutgoingMail.case_id).where(
                OutgoingMail.message_id.in_(wanted), OutgoingMail.case_id.is_not(None)
            )
        ).all()
    )
    for message_id in reversed(wanted):
        if message_id in found:
            return int(found[message_id])
    return None


def list_mails(
    session: Session, *, status: str | None = None, limit: int = 50
) -> list[OutgoingMail]:
    """The newest mails, or the newest of one status, for an operator."""
    query = select(OutgoingMail).order_by(OutgoingMail.id.desc()).limit(limit)
    if status:
        query = query.where(OutgoingMail.status == status)
    return list(session.scalars(query))
