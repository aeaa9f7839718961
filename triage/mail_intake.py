"""Email intake: one fetched message → one row in `incoming_mail` and exactly one outcome.

`ingest_batch` is what `minsheng intake mail` (web/cli_intake.py) calls for the messages it
fetches: `ingest` for each, except that the messages that open a new case are registered
together (`triage.cases.register_batch`, one flush), with the same results. The list
actions (`release_spam`, `confirm_spam`, `make_case_of_quarantined`) and the readers
(`pending_mail`, `raw_of`, `case_messages_of`, `intake_health`) are what the web pages call.
Everything here flushes and never commits: the caller owns the transaction, and commits
before it moves the message on the IMAP server (see intake/mailbox.py's contract).

Outcomes (`IncomingMail.outcome`) and where the message goes on the server:

============== ============================================== ============ ===============
outcome        what happened                                  folder       --json count
============== ============================================== ============ ===============
registered     a new case; acknowledged through the outbox    processed    registered
auto_reply     a new case, but no acknowledgment (a released  processed    registered
               automatic mail, or the per-address limit)
threaded       a reply added to its case (`case_messages`)    processed    threaded
bounce         a delivery report attached to the case whose   processed    threaded
               mail bounced (`case_messages`, kind bounce)
bounce         ... whose case cannot be found: status pending quarantine   quarantined
suspected_spam on the suspected-spam list, status pending:    spam         suspected_spam
               likely spam (threaded or not), or automatic
               mail (auto-reply, list, bulk, our own address)
               that threads to no case
quarantined    cannot be parsed, status pending; raw kept     quarantine   quarantined
duplicate      seen before (same Message-ID and same bytes)   processed    duplicates
============== ============================================== ============ ===============

A message already in `incoming_mail` (same Message-ID and SHA-256 of the raw bytes: a run
that committed and died before the move) makes no new row: `ingest` returns outcome
``duplicate`` with the folder of the first time, so the re-run only moves it. Another mail
under a Message-ID already seen is its own case, external id ``<id>#<16 hex of its hash>``.

The raw message is kept, zlib-compressed, in every row (the audit trail, the quarantine's
download, the source a released spam is registered from).

Threading: a reply is recognised by In-Reply-To/References naming our acknowledgment (any
mail of the outbox with a case; the acknowledgment's id is keyed with the secret, see
`acknowledgment_message_id`) or the case's own Message-ID, or by a tracking number
(``MS-2026-000123``) in the subject when the sender is the case's contact address (a
tracking number is not secret). A threaded message from another address than the case's is
marked so in its ``message_added`` event (``from_other_address``, said on the case page in
the reader's language).

Acknowledgments echo nothing the sender wrote and go to one address at most
``ack_limit`` times per ``ack_window``; files the parser refused are named in an
``attachments_refused`` event on the case.

Leases (`take_lease`): one `--watch` per mailbox across machines. Health (`record_fetch`,
`intake_health`): what the board shows.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
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
    UniqueConstraint,
    bindparam,
    exists,
    func,
    inspect,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from intake.email import AttachmentLimits, Bounce, ParsedMail, UnparseableMail, parse_message
from intake.mail.headers import decode_header
from intake.normalise import clean_line, clean_text
from intake.submission import Channel, Contact, Submission
from triage import delivery_reasons
from triage.cases import IntakePolicy, derived_query_code, register, register_batch
from triage.models import N_, Actor, Base, Case, UTCDateTime, _actor_fields
from triage.outbox import (
    MailKind,
    OutboxError,
    OutgoingMail,
    _angle,
    build_message,
    case_of_reply,
    enqueue,
    outbox_counts,
    record_queued,
)
from triage.sms import sms_counts

# -- tables ----------------------------------------------------------------------------------


class Outcome(StrEnum):
    """What became of one incoming message (`IncomingMail.outcome`)."""

    REGISTERED = "registered"
    AUTO_REPLY = "auto_reply"
    THREADED = "threaded"
    BOUNCE = "bounce"
    SUSPECTED_SPAM = "suspected_spam"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


class ListStatus(StrEnum):
    """Where a message stands on the supervisors' lists (`IncomingMail.status`).

    ``pending``: on the quarantine or suspected-spam list, waiting for a supervisor;
    ``confirmed_spam`` / ``released`` (registered as a case) / ``made_case`` (a case made of
    a quarantined mail): a supervisor decided; ``done``: never on a list.
    """

    PENDING = "pending"
    CONFIRMED_SPAM = "confirmed_spam"
    RELEASED = "released"
    MADE_CASE = "made_case"
    DONE = "done"


class Folder(StrEnum):
    """Which configured folder a message goes to after the commit."""

    PROCESSED = "processed"
    QUARANTINE = "quarantine"
    SPAM = "spam"


class IncomingMail(Base):
    """One message seen in a mailbox, once: its raw bytes, what became of it, and its case."""

    __tablename__ = "incoming_mail"
    __table_args__ = (
        # The duplicate key: a re-run after a crash finds the row and only moves the message.
        UniqueConstraint("message_id", "raw_sha256", name="uq_incoming_mail_message_id"),
        # The lists: pending rows of one outcome, newest first.
        Index("ix_incoming_mail_status_outcome", "status", "outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    # Without angle brackets; "" when the mail has none (the hash alone identifies it).
    message_id: Mapped[str] = mapped_column(String(255), default="")
    raw_sha256: Mapped[str] = mapped_column(String(64))
    # When it was fetched (UTC); `sent_at` is its Date header when sane.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sender: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=ListStatus.DONE)
    # Why this outcome, in English for the audit trail: the parser's reason for a quarantine,
    # the spam signals, the loop guard, the bounce's status.
    reason: Mapped[str] = mapped_column(Text, default="")
    # What the parser repaired, one English line each.
    defects: Mapped[list[str]] = mapped_column(JSON, default=list)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    # Set by `ingest` for a case registered with it, whose id comes with the same flush.
    case: Mapped[Case | None] = relationship(Case)
    size: Mapped[int] = mapped_column(Integer, default=0)
    # zlib-compressed raw message, byte for byte as fetched; `raw` gives it back.
    raw_message: Mapped[bytes] = mapped_column(LargeBinary)
    handled_by: Mapped[str | None] = mapped_column(String(200))
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def raw(self) -> bytes:
        return zlib.decompress(self.raw_message)

    @property
    def folder(self) -> Folder:
        """The folder this outcome belongs in (see the module's table)."""
        if self.outcome == Outcome.SUSPECTED_SPAM:
            return Folder.SPAM
        if self.outcome == Outcome.QUARANTINED or (
            self.outcome == Outcome.BOUNCE and self.case_id is None
        ):
            return Folder.QUARANTINE
        return Folder.PROCESSED

    def __repr__(self) -> str:
        return f"<IncomingMail {self.id} {self.outcome} {self.status} {self.message_id!r}>"


class CaseMessage(Base):
    """A later message on a case: a citizen's threaded reply, or a bounce of our mail.

    ``direction`` is "in" (all of them, for now); ``kind`` is "reply" or "bounce"; ``text``
    the cleaned new text (quotes and signature trimmed; the raw stays in `incoming_mail`).
    """

    __tablename__ = "case_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    incoming_mail_id: Mapped[int | None] = mapped_column(ForeignKey("incoming_mail.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    direction: Mapped[str] = mapped_column(String(10), default="in")
    kind: Mapped[str] = mapped_column(String(20), default="reply")
    sender: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")


class Lease(Base):
    """A named lease held by one process until `expires_at` (one IMAP watcher per mailbox)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IntakeHealth(Base):
    """The last look at one mailbox: when a fetch last worked, the last error, what waits."""

    __tablename__ = "intake_health"

    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Messages left in the watched folder after the last round (0 when it emptied it).
    waiting: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


# -- policy and results ----------------------------------------------------------------------


@dataclass(frozen=True)
class MailIntakePolicy:
    """What `ingest` needs besides the message.

    - ``intake``: the registration policy (router, deadlines, attachment store ...).
    - ``sender``: the From of acknowledgments (``[mail] sender``).
    - ``own_addresses``: the mailbox's own addresses (mail from them is a loop), lower case.
    - ``query_secret``: the key query codes are derived with (`derived_query_code`), so that
      the code in a stored acknowledgment can be rebuilt.
    - ``track_url``: the public lookup page (``[app] base_url`` + ``/track``).
    - ``office_name``: who signs the acknowledgment.
    - ``limits``: attachment limits (mapped from ``[attachments]``).
    - ``acknowledge``: False sends no acknowledgments at all.
    - ``ack_limit``/``ack_window``: at most this many acknowledgments to one address within
      the window (``[intake.imap] acknowledgments_per_address_per_day``); beyond it the case
      is registered without one, and its timeline says why (a forged Reply-To cannot make
      us mail a third party over and over, a naive auto-responder cannot loop).
    """

    intake: IntakePolicy
    sender: str
    query_secret: str
    track_url: str
    office_name: str = "机关效能建设办公室"
    own_addresses: frozenset[str] = frozenset()
    limits: AttachmentLimits = field(default_factory=AttachmentLimits)
    acknowledge: bool = True
    ack_limit: int = 3
    ack_window: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Ingested:
    """What `ingest` did with one message.

    ``outcome``: an `Outcome`; ``folder``: where to move it after the commit; ``count``: the
    `--json` counter it belongs to (registered, threaded, suspected_spam, quarantined,
    duplicates); ``mail_id``/``case_id``: the rows (None when there is none);
    ``acknowledged``: an acknowledgment was queued.
    """

    outcome: Outcome
    folder: Folder
    count: str
    mail_id: int | None = None
    case_id: int | None = None
    acknowledged: bool = False


COUNTS = ("seen", "registered", "threaded", "suspected_spam", "quarantined", "duplicates", "errors")
"""The keys of `minsheng intake mail --json`, in order; every seen message is in one other."""


# -- ingesting -------------------------------------------------------------------------------

_COUNT_OF = {
    Outcome.REGISTERED: "registered",
    Outcome.AUTO_REPLY: "registered",
    Outcome.THREADED: "threaded",
    Outcome.SUSPECTED_SPAM: "suspected_spam",
    Outcome.QUARANTINED: "quarantined",
    Outcome.DUPLICATE: "duplicates",
}
ACTOR = "system"


def _count(mail: IncomingMail) -> str:
    if mail.outcome == Outcome.BOUNCE:
        return "threaded" if mail.case_id is not None else "quarantined"
    return _COUNT_OF[Outcome(mail.outcome)]


def _result(mail: IncomingMail, *, outcome: Outcome | None = None, ack: bool = False) -> Ingested:
    return Ingested(
        outcome=outcome or Outcome(mail.outcome),
        folder=mail.folder,
        count="duplicates" if outcome == Outcome.DUPLICATE else _count(mail),
        mail_id=mail.id,
        case_id=mail.case_id,
        acknowledged=ack,
    )


_SEEN = select(
    select(IncomingMail.id)
    .where(
        IncomingMail.message_id == bindparam("mid"),
        IncomingMail.raw_sha256 == bindparam("digest"),
    )
    .limit(1)
    .scalar_subquery(),
    exists().where(IncomingMail.message_id == bindparam("mid")),
    exists().where(
        Case.channel == literal_column(f"'{Channel.EMAIL.value}'"),
        Case.external_id == bindparam("mid"),
    ),
)


def _seen(session: Session, message_id: str, digest: str) -> tuple[IncomingMail | None, bool]:
    """(the row of this very message, or None; whether a mail or an email case already has
    its Message-ID) in one statement, served by the unique indexes on (message_id,
    raw_sha256) and (channel, external_id). ``message_id`` "" is never taken."""
    mid = message_id[:255]
    same, in_mail, in_cases = session.execute(_SEEN, {"mid": mid, "digest": digest}).one()
    mail = session.get(IncomingMail, same) if same is not None else None
    return mail, bool(mid) and bool(in_mail or in_cases)


def _new_row(
    session: Session,
    raw: bytes,
    *,
    mailbox: str,
    now: datetime,
    digest: str,
    outcome: Outcome,
    parsed: ParsedMail | None = None,
    reason: str = "",
    status: ListStatus = ListStatus.DONE,
    case_id: int | None = None,
    case: Case | None = None,
    flush: bool = True,
) -> IncomingMail:
    mail = IncomingMail(
        mailbox=mailbox[:200],
        message_id=(parsed.message_id if parsed else "")[:255],
        raw_sha256=digest,
        received_at=now,
        sent_at=parsed.date_header if parsed else None,
        sender=(parsed.sender if parsed else _rough_sender(raw))[:200],
        subject=parsed.submission.subject if parsed else _rough_subject(raw),
        outcome=outcome,
        status=status,
        reason=reason,
        defects=list(parsed.defects) if parsed else [],
        case_id=case_id,
        size=len(raw),
        raw_message=zlib.compress(raw, 6),
    )
    if case is not None:
        mail.case = case
    session.add(mail)
    if flush:
        session.flush()
    return mail


_HEADER_LINE = re.compile(rb"^(from|subject):[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)


def _rough_header(raw: bytes, name: bytes) -> str:
    """A header of a message the parser gave up on, for the list: best effort, never raises."""
    for match in _HEADER_LINE.finditer(raw[:16384]):
        if match.group(1).lower() == name:
            try:
                value, _ = decode_header(match.group(2).decode("latin-1"), context="list")
            except Exception:  # a list label only: the raw bytes are what is kept
                value = match.group(2).decode("utf-8", "replace")
            return clean_line(value)
    return ""


def _rough_sender(raw: bytes) -> str:
    return _rough_header(raw, b"from")


def _rough_subject(raw: bytes) -> str:
    return _rough_header(raw, b"subject")[:500]


def ingest(
    session: Session,
    raw: bytes,
    *,
    mailbox: str,
    policy: MailIntakePolicy,
    now: datetime,
) -> Ingested:
    """Takes one fetched message (raw bytes as `Mailbox.fetch` gives them) to its outcome.

    ``mailbox`` names the mailbox (its config's ``username@host``) for the rows and health;
    ``now`` is the fetch time (timezone-aware). Flushes, never commits; call it inside a
    savepoint (``session.begin_nested()``) so that one message that fails leaves the batch
    intact. Raises only on a database or programming error: every message, readable or not,
    gets an outcome.
    """
    raw = bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        parsed = parse_message(
            raw, received_at=now, limits=policy.limits, own_addresses=policy.own_addresses
        )
    except UnparseableMail as exc:
        return quarantine_raw(session, raw, mailbox=mailbox, reason=exc.reason, now=now)

    seen, taken = _seen(session, parsed.message_id, digest)
    if seen is not None:
        return _result(seen, outcome=Outcome.DUPLICATE)
    if taken:
        # Another mail under a Message-ID we have seen (a sender's bug, or someone reusing
        # it to have a complaint dropped): its own case, the hash telling the two apart.
        external_id = f"{parsed.message_id[:180]}#{digest[:16]}"
        parsed = replace(parsed, submission=replace(parsed.submission, external_id=external_id))

    def row(outcome: Outcome, **kw: Any) -> IncomingMail:
        return _new_row(
            session,
            raw,
            mailbox=mailbox,
            now=now,
            digest=digest,
            outcome=outcome,
            parsed=parsed,
            **kw,
        )

    if parsed.bounce is not None:
        bounce = parsed.bounce
        ids = [i for i in (bounce.original_message_id, *parsed.thread_ids) if i]
        case = _case_by_ids(session, ids)
        reason = " ".join(
            x for x in (bounce.action, bounce.status, bounce.recipient, bounce.diagnostic) if x
        )
        if case is None:
            mail = row(Outcome.BOUNCE, reason=reason or "bounce", status=ListStatus.PENDING)
            return _result(mail)
        mail = row(Outcome.BOUNCE, reason=reason or "bounce", case_id=case.id)
        text = _bounce_text(bounce, parsed)
        _add_message(session, case, mail, parsed, kind="bounce", text=text, now=now)
        return _result(mail)

    case = _thread_target(session, parsed, policy)
    if case is not None and parsed.likely_spam:
        mail = row(
            Outcome.SUSPECTED_SPAM,
            reason=f"score {parsed.spam_score:g}: "
            + "; ".join(parsed.spam_reasons)
            + f" (would thread to {case.tracking_number})",
            status=ListStatus.PENDING,
        )
        return _result(mail)
    if case is not None:
        mail = row(Outcome.THREADED, reason="; ".join(parsed.loop_reasons), case_id=case.id)
        kind = "auto_reply" if parsed.auto_reply else "reply"
        _add_message(session, case, mail, parsed, kind=kind, text=parsed.submission.body, now=now)
        return _result(mail)

    if parsed.likely_spam:
        mail = row(
            Outcome.SUSPECTED_SPAM,
            reason=f"score {parsed.spam_score:g}: " + "; ".join(parsed.spam_reasons),
            status=ListStatus.PENDING,
        )
        return _result(mail)

    automatic = list(parsed.loop_reasons)
    if not automatic and (parsed.reply_to or parsed.sender).lower() in policy.own_addresses:
        automatic.append("Reply-To is our own address")
    if automatic:
        # Auto-replies, lists and our own mail are not complaints; a supervisor may release.
        mail = row(
            Outcome.SUSPECTED_SPAM,
            reason="automatic mail: " + "; ".join(automatic),
            status=ListStatus.PENDING,
        )
        return _result(mail)

    return _register(session, parsed, policy, now, row)


log = logging.getLogger(__name__)


SQLITE_CACHE_KIB = 65536
"""SQLite page cache of a connection that ingests mail, KiB."""


@dataclass(frozen=True)
class BatchResult:
    """What `ingest_batch` did with one message: ``result`` as `ingest` gives it, and
    ``error`` (empty unless ingesting it failed, a bug: it was then kept raw on the
    quarantine list, its reason saying so)."""

    result: Ingested
    error: str = ""


@dataclass
class _Fresh:
    """A parsed message that opens a case: registered with the others of its group."""

    index: int
    raw: bytes
    digest: str
    parsed: ParsedMail


def ingest_one(
    session: Session, raw: bytes, *, mailbox: str, policy: MailIntakePolicy, now: datetime
) -> BatchResult:
    """`ingest` in a savepoint; when it fails for another reason than the database being
    gone (`OperationalError`, raised), the message is kept raw on the quarantine list with
    the error as its reason (`quarantine_raw`) and the error returned."""
    try:
        with session.begin_nested():
            return BatchResult(ingest(session, raw, mailbox=mailbox, policy=policy, now=now))
    except OperationalError:
        raise
    except Exception as exc:
        log.exception("intake of a message failed; quarantined")
        reason = f"intake failed: {type(exc).__name__}: {exc}"
        with session.begin_nested():
            result = quarantine_raw(session, raw, mailbox=mailbox, reason=reason, now=now)
        return BatchResult(result, error=reason)


def ingest_batch(
    session: Session,
    raws: Sequence[bytes],
    *,
    mailbox: str,
    policy: MailIntakePolicy,
    now: datetime,
    defer_enrichment: bool = False,
) -> list[BatchResult]:
    """`ingest_one` for each of ``raws`` (fetched at ``now``), in order, with the same rows,
    cases, events and outcomes, but the messages that open a case registered together: one
    `register_batch` and one flush per run of them (a message of another outcome, or one
    that might depend on a case of the run, ends the run and is ingested alone after it).

    A run is written in a savepoint: when anything in it fails (a bug, a constraint), the
    savepoint is rolled back and its messages are ingested one by one (`ingest_one`), so one
    bad message is quarantined and never keeps the others out. Flushes, never commits.
    Raises OperationalError when the database is gone.

    With ``defer_enrichment`` the new cases' similar-case suggestions and index rows are left
    to `triage.enrichment.enrich_pending`, which the caller runs after the commit (see
    `register_batch`).
    """
    if session.get_bind().dialect.name == "sqlite":
        # The index rows of a batch land all over the search and duplicate indexes; with
        # SQLite's default 2 MiB page cache their pages were spilled and read again many
        # times a transaction. The intake's connections keep a larger one (memory taken only
        # as pages are read).
        session.connection().exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    out: list[BatchResult | None] = [None] * len(raws)
    run: list[_Fresh] = []
    # Message-IDs, hashes and external ids of the run: a message naming one waits for it.
    mids: set[str] = set()
    digests: set[str] = set()
    external: set[str] = set()

    def end_run() -> None:
        if run:
            for index, result in _register_run(
                session, run, mailbox, policy, now, defer_enrichment
            ):
                out[index] = result
            run.clear()
            mids.clear()
            digests.clear()
            external.clear()

    raws = [bytes(raw) for raw in raws]
    parsed = [_parse(raw, policy, now) for raw in raws]
    known = _Known.of(session, raws, parsed)
    for index, raw in enumerate(raws):
        fresh = _fresh(
            session, index, raw, policy, now, mids, digests, external, parsed[index], known
        )
        if fresh is None:
            end_run()
            out[index] = ingest_one(session, raw, mailbox=mailbox, policy=policy, now=now)
            continue
        run.append(fresh)
        mids.add(fresh.parsed.message_id[:255])
        digests.add(fresh.digest)
        external.add(fresh.parsed.submission.external_id[:255])
    end_run()
    return [r for r in out if r is not None]


def _parse(raw: bytes, policy: MailIntakePolicy, now: datetime) -> ParsedMail | None:
    """The parsed message, or None when it cannot be parsed (`ingest_one` meets it again and
    says what it was)."""
    try:
        return parse_message(
            raw, received_at=now, limits=policy.limits, own_addresses=policy.own_addresses
        )
    except Exception:
        return None


class _Known:
    """What the database knew, before a chunk was ingested, of the Message-IDs, hashes and
    thread ids of the chunk's messages: read in three statements for the chunk instead of
    two or three a message (`_seen`, `_thread_target`).

    A message naming something an earlier message of the same chunk also names (its
    Message-ID, its hash, a thread id) may depend on what that one became: it is answered
    by the per-message statements instead (``stale``).
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], int] = {}  # (message_id, sha256) -> incoming_mail.id
        self.mail_ids: set[str] = set()  # Message-IDs in incoming_mail
        self.email_cases: dict[str, int] = {}  # external id of an email case -> case id
        self.replied: dict[str, int] = {}  # Message-ID of our mail (<...>) -> case id
        self.names: dict[str, int] = {}  # what each message names -> first index naming it

    @classmethod
    def of(cls, session: Session, raws: Sequence[bytes], parsed: Sequence[ParsedMail | None]):
        """The answers for the parsed messages of a chunk (``raws``, ``parsed`` by index)."""
        known = cls()
        mids: set[str] = set()
        bare: set[str] = set()  # hashes of messages without a Message-ID
        threads: set[str] = set()
        for index, (raw, mail) in enumerate(zip(raws, parsed, strict=True)):
            if mail is None:
                continue
            mid = mail.message_id[:255]
            digest = hashlib.sha256(raw).hexdigest()
            (mids.add(mid) if mid else bare.add(digest))
            ids = [i for i in mail.thread_ids if i and not _GUESSABLE_ACK.match(i)]
            threads.update(ids)
            for name in {f"m:{mid}" if mid else "", f"h:{digest}", *(f"m:{i[:255]}" for i in ids)}:
                if name:
                    known.names.setdefault(name, index)
        with session.no_autoflush:
            if mids or bare:
                condition = IncomingMail.message_id.in_(sorted(mids))
                if bare:
                    condition = condition | (
                        (IncomingMail.message_id == "") & IncomingMail.raw_sha256.in_(sorted(bare))
                    )
                for id_, mid, digest in session.execute(
                    select(IncomingMail.id, IncomingMail.message_id, IncomingMail.raw_sha256).where(
                        condition
                    )
                ):
                    known.rows.setdefault((mid, digest), id_)
                    if mid:
                        known.mail_ids.add(mid)
            external = sorted(mids | {i[:255] for i in threads})
            if external:
                known.email_cases = dict(
                    session.execute(
                        select(Case.external_id, Case.id).where(
                            Case.channel == Channel.EMAIL, Case.external_id.in_(external)
                        )
                    ).all()
                )
            if threads:
                known.replied = {
                    m: int(c)
                    for m, c in session.execute(
                        select(OutgoingMail.message_id, OutgoingMail.case_id).where(
                            OutgoingMail.message_id.in_(sorted({_angle(i) for i in threads})),
                            OutgoingMail.case_id.is_not(None),
                        )
                    )
                }
        return known

    def stale(self, index: int, raw_digest: str, parsed: ParsedMail) -> bool:
        """Whether message ``index`` names something an earlier message of the chunk names."""
        mid = parsed.message_id[:255]
        names = [f"h:{raw_digest}", *(f"m:{i[:255]}" for i in parsed.thread_ids if i)]
        if mid:
            names.append(f"m:{mid}")
        return any(self.names.get(name, index) < index for name in names)

    def seen(self, message_id: str, digest: str) -> tuple[bool, bool]:
        """`_seen`'s answer: (this very message has a row, its Message-ID is taken)."""
        mid = message_id[:255]
        same = (mid, digest) in self.rows
        return same, bool(mid) and (mid in self.mail_ids or mid in self.email_cases)

    def threads(self, parsed: ParsedMail) -> bool:
        """Whether a thread id of the message names a case (`_thread_target` without the
        tracking number in the subject, which `_fresh` leaves to `ingest_one`)."""
        ids = [i for i in parsed.thread_ids if i and not _GUESSABLE_ACK.match(i)]
        return any(_angle(i) in self.replied or i[:255] in self.email_cases for i in ids)


def _fresh(
    session: Session,
    index: int,
    raw: bytes,
    policy: MailIntakePolicy,
    now: datetime,
    mids: set[str],
    digests: set[str],
    external: set[str],
    parsed: ParsedMail | None = None,
    known: _Known | None = None,
) -> _Fresh | None:
    """The message as a `_Fresh` when `ingest` would register it as a new case and nothing
    in it may depend on the run before it; else None (it is ingested alone). Reads only:
    nothing when ``known`` answers for it. ``parsed``: the message parsed already (None: it
    could not be, or parse it here when ``known`` is None too)."""
    if parsed is None and known is None:
        parsed = _parse(raw, policy, now)
    if parsed is None:
        return None
    digest = hashlib.sha256(raw).hexdigest()
    mid = parsed.message_id[:255]
    if digest in digests or (mid and mid in mids) or parsed.bounce is not None:
        return None
    if any(i[:255] in external for i in parsed.thread_ids):
        return None  # a reply to a case of the run: threaded once the run is written
    if tracking_pattern(policy.intake.tracking_prefix).search(parsed.submission.subject.upper()):
        return None  # it may name a number the run is about to take
    if known is not None and not known.stale(index, digest, parsed):
        try:
            return _classify_known(index, raw, digest, parsed, policy, known)
        except Exception:  # `ingest_one` meets it again and says what it was
            return None
    try:
        if session.get_bind().dialect.name != "postgresql":
            return _classify(session, index, raw, digest, parsed, policy)
        # On PostgreSQL a statement that fails aborts the transaction: in a savepoint, the
        # message's failure stays its own (`ingest_one` meets it again and quarantines it).
        with session.begin_nested():
            return _classify(session, index, raw, digest, parsed, policy)
    except OperationalError:
        raise
    except Exception:
        return None


def _classify(
    session: Session,
    index: int,
    raw: bytes,
    digest: str,
    parsed: ParsedMail,
    policy: MailIntakePolicy,
) -> _Fresh | None:
    with session.no_autoflush:
        seen, taken = _seen(session, parsed.message_id, digest)
        if seen is not None:
            return None
        if taken:
            external_id = f"{parsed.message_id[:180]}#{digest[:16]}"
            parsed = replace(parsed, submission=replace(parsed.submission, external_id=external_id))
        if parsed.likely_spam or parsed.loop_reasons:
            return None
        if (parsed.reply_to or parsed.sender).lower() in policy.own_addresses:
            return None
        if _thread_target(session, parsed, policy) is not None:
            return None
    return _Fresh(index, raw, digest, parsed)


def _classify_known(
    index: int,
    raw: bytes,
    digest: str,
    parsed: ParsedMail,
    policy: MailIntakePolicy,
    known: _Known,
) -> _Fresh | None:
    """`_classify` answered from the chunk's `_Known` (no statement)."""
    seen, taken = known.seen(parsed.message_id, digest)
    if seen:
        return None
    if taken:
        external_id = f"{parsed.message_id[:180]}#{digest[:16]}"
        parsed = replace(parsed, submission=replace(parsed.submission, external_id=external_id))
    if parsed.likely_spam or parsed.loop_reasons:
        return None
    if (parsed.reply_to or parsed.sender).lower() in policy.own_addresses:
        return None
    if known.threads(parsed):
        # Threaded (or to be looked at closer): `ingest_one` finds the case itself.
        return None
    return _Fresh(index, raw, digest, parsed)


def _register_run(
    session: Session,
    run: Sequence[_Fresh],
    mailbox: str,
    policy: MailIntakePolicy,
    now: datetime,
    defer_enrichment: bool = False,
) -> list[tuple[int, BatchResult]]:
    """Registers a run of `_Fresh` messages as `_register` would one by one, in one
    savepoint and two flushes; on failure, one by one (`ingest_one`)."""
    try:
        with session.begin_nested():
            return [
                (f.index, BatchResult(r))
                for f, r in _register_all(session, run, mailbox, policy, now, defer_enrichment)
            ]
    except OperationalError:
        raise
    except Exception:
        log.exception("registering %d messages together failed; one by one now", len(run))
    return [
        (f.index, ingest_one(session, f.raw, mailbox=mailbox, policy=policy, now=now)) for f in run
    ]


def _register_all(
    session: Session,
    run: Sequence[_Fresh],
    mailbox: str,
    policy: MailIntakePolicy,
    now: datetime,
    defer_enrichment: bool = False,
) -> list[tuple[_Fresh, Ingested]]:
    codes = [derived_query_code(policy.query_secret, f.parsed.submission.external_id) for f in run]
    registrations = register_batch(
        session,
        [(f.parsed.submission, code) for f, code in zip(run, codes, strict=True)],
        policy.intake,
        now,
        defer_enrichment=defer_enrichment,
    )
    made: list[tuple[_Fresh, IncomingMail, bool]] = []
    queued: list[tuple[Case, OutgoingMail]] = []
    # The per-address limit: what the outbox holds (one statement for the run), plus what
    # this run queues.
    acks = (
        acknowledgments_to_many(
            session,
            [f.parsed.reply_to or f.parsed.sender for f in run],
            now - policy.ack_window,
        )
        if policy.acknowledge
        else {}
    )
    given: dict[str, int] = {}
    with session.no_autoflush:
        for fresh, registration, code in zip(run, registrations, codes, strict=True):
            parsed, case = fresh.parsed, registration.case
            row = functools.partial(
                _new_row,
                session,
                fresh.raw,
                mailbox=mailbox,
                now=now,
                digest=fresh.digest,
                parsed=parsed,
                flush=False,
            )
            if not registration.created:
                reason = f"Message-ID already registered as {case.tracking_number}"
                made.append(
                    (fresh, row(outcome=Outcome.DUPLICATE, reason=reason, case=case), False)
                )
                continue
            record_refused(case, parsed, now)
            recipient = parsed.reply_to or parsed.sender
            loops = _loops(session, policy, recipient, now, acks)
            mail = row(
                outcome=Outcome.AUTO_REPLY if loops else Outcome.REGISTERED,
                reason="; ".join(loops),
                case=case,
            )
            ack = None
            if not loops and policy.acknowledge and recipient and "@" in recipient:
                ack = acknowledge(
                    session, case, parsed, policy, code, now, check=False, flush=False
                )
                if ack is not None:
                    queued.append((case, ack))
                    acks[recipient.lower()] = acks.get(recipient.lower(), 0) + 1
            elif loops:
                case.record("not_acknowledged", ACTOR, now, reason="; ".join(loops))
            made.append((fresh, mail, ack is not None))
        _take_ids(session, given)
        if all(ack.id is not None for _, ack in queued):
            # The acknowledgments have their ids already (PostgreSQL): their events go with
            # the same flush.
            for case, ack in queued:
                record_queued(session, case, ack, now)
            queued = []
            _take_ids(session, given)
    session.flush()
    if queued:
        for case, ack in queued:
            record_queued(session, case, ack, now)
        session.flush()
    return [
        (
            f,
            _result(m, outcome=Outcome.DUPLICATE)
            if m.outcome == Outcome.DUPLICATE
            else _result(m, ack=a),
        )
        for f, m, a in made
    ]


_NUMBERED = ("case_events", "incoming_mail", "outbox", "attachments")
"""Tables whose new rows of a batch get their ids before the flush on PostgreSQL."""


def _take_ids(session: Session, given: dict[str, int]) -> None:
    """Gives the new rows of the session in `_NUMBERED` tables their ids, in one statement,
    in the order they were added (as the flush would): on PostgreSQL from their sequences;
    on SQLite the ones after each table's largest, which stay ours because the transaction
    has written already (`register_batch` took its numbers) and SQLite has one writer.

    Without them the flush asks for each table's ids back: on PostgreSQL with INSERT …
    RETURNING of many rows in one statement ("insertmanyvalues"), which psycopg parses, tens
    of kilobytes of placeholders, in Python (about a tenth of the intake's CPU); on SQLite
    one INSERT a row. With them the rows of a table go as one executemany (pipelined on
    PostgreSQL). ``given``: the largest id given per table by the earlier calls before the
    same flush (updated), which SQLite's largest does not show yet."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    by_table: dict[str, list[Any]] = {}
    for obj in session.new:
        table = getattr(type(obj), "__tablename__", None)
        if table in _NUMBERED and getattr(obj, "id", 0) is None:
            by_table.setdefault(table, []).append(obj)
    if not by_table:
        return
    tables = sorted(by_table)
    ids: dict[int, list[int]] = {}
    if postgresql:
        query = " UNION ALL ".join(
            f"SELECT {k} AS k, nextval(pg_get_serial_sequence('{table}', 'id')) AS id"
            f" FROM generate_series(1, :n{k})"
            for k, table in enumerate(tables)
        )
        params = {f"n{k}": len(by_table[table]) for k, table in enumerate(tables)}
        for k, id_ in session.execute(text(query), params):
            ids.setdefault(k, []).append(int(id_))
    else:
        query = "SELECT " + ", ".join(f"(SELECT coalesce(max(id), 0) FROM {t})" for t in tables)
        tops = session.execute(text(query)).one()
        for k, table in enumerate(tables):
            top = max(int(tops[k]), given.get(table, 0))
            given[table] = top + len(by_table[table])
            ids[k] = list(range(top + 1, top + 1 + len(by_table[table])))
    for k, table in enumerate(tables):
        objs = sorted(by_table[table], key=lambda o: inspect(o).insert_order)
        for obj, id_ in zip(objs, sorted(ids[k]), strict=True):
            obj.id = id_


def _loops(
    session: Session,
    policy: MailIntakePolicy,
    recipient: str,
    now: datetime,
    earlier: dict[str, int],
) -> list[str]:
    """Why a new case gets no acknowledgment (`_register`'s guards); ``earlier``: the
    acknowledgments per address (lower case) within the window, stored and queued by this
    run."""
    loops: list[str] = []
    if recipient.lower() in policy.own_addresses:
        loops.append("Reply-To is our own address")
    if not loops and len(recipient) > MAX_ADDRESS:
        loops.append(f"address longer than {MAX_ADDRESS} characters")
    if not loops and recipient and policy.acknowledge:
        sent = earlier.get(recipient.lower(), 0)
        if sent >= policy.ack_limit:
            loops.append(
                f"{sent} acknowledgments to {recipient} within {policy.ack_window} "
                f"(limit {policy.ack_limit})"
            )
    return loops


MAX_REFUSED_LISTED = 50


def record_refused(case: Case, parsed: ParsedMail, now: datetime) -> None:
    """An ``attachments_refused`` event on ``case`` naming each file the parser did not keep
    and why (reason: one ``name: why`` per line, at most `MAX_REFUSED_LISTED`, then a count),
    so the handler knows something came that they cannot see. Nothing when none was refused."""
    skipped = parsed.skipped_attachments
    if not skipped:
        return
    lines = [f"{a.filename or '（无文件名）'}: {a.reason}" for a in skipped[:MAX_REFUSED_LISTED]]
    if len(skipped) > MAX_REFUSED_LISTED:
        lines.append(f"…… {len(skipped) - MAX_REFUSED_LISTED} more")
    case.record(
        "attachments_refused",
        ACTOR,
        now,
        reason=f"{len(skipped)} attachment(s) refused:\n" + "\n".join(lines),
        count=len(skipped),
    )


def _register(
    session: Session,
    parsed: ParsedMail,
    policy: MailIntakePolicy,
    now: datetime,
    row: Any,
    *,
    released_from: IncomingMail | None = None,
) -> Ingested:
    submission = parsed.submission
    code = derived_query_code(policy.query_secret, submission.external_id)
    # A new case is flushed with its incoming row and its acknowledgment (one flush, not
    # two); a released spam's caller needs the case's id at once.
    registration = register(
        session, submission, policy.intake, now, query_code=code, flush=released_from is not None
    )
    case = registration.case
    if not registration.created:
        if released_from is not None:
            released_from.case_id = case.id
            return _result(released_from)
        mail = row(
            Outcome.DUPLICATE,
            reason=f"Message-ID already registered as {case.tracking_number}",
            case_id=case.id,
        )
        return _result(mail, outcome=Outcome.DUPLICATE)
    record_refused(case, parsed, now)
    loops = list(parsed.loop_reasons)
    recipient = parsed.reply_to or parsed.sender
    if not loops and recipient.lower() in policy.own_addresses:
        loops.append("Reply-To is our own address")
    if not loops and len(recipient) > MAX_ADDRESS:
        loops.append(f"address longer than {MAX_ADDRESS} characters")
    if not loops and recipient and policy.acknowledge:
        with session.no_autoflush:  # counts outbox rows: the new case need not be written
            sent = acknowledgments_to(session, recipient, now - policy.ack_window)
        if sent >= policy.ack_limit:
            loops.append(
                f"{sent} acknowledgments to {recipient} within {policy.ack_window} "
                f"(limit {policy.ack_limit})"
            )
    outcome = Outcome.AUTO_REPLY if loops else Outcome.REGISTERED
    if released_from is not None:
        mail = released_from
        mail.case_id = case.id
    else:
        # Flushed with the case and the acknowledgment, or below.
        mail = row(outcome, reason="; ".join(loops), case=case, flush=False)
    ack = False
    if not loops and policy.acknowledge and recipient and "@" in recipient:
        # A case made just now has no acknowledgment yet: no need to look for one.
        ack = acknowledge(session, case, parsed, policy, code, now, check=False) is not None
    elif loops:
        case.record("not_acknowledged", ACTOR, now, reason="; ".join(loops))
    if mail.id is None:
        session.flush()
    return _result(mail, ack=ack)


MAX_ADDRESS = 254
"""Longest address acknowledged (RFC 5321's path limit); a longer one is not a real mailbox,
and keeps the index of `acknowledgments_to` small."""

_ACKNOWLEDGMENTS_TO = (
    select(func.count())
    .select_from(OutgoingMail)
    .where(
        # A literal, not a parameter: the partial index ix_outbox_ack_recipient (WHERE kind =
        # 'acknowledgment') serves only a query whose kind the planner can see.
        OutgoingMail.kind == literal_column(f"'{MailKind.ACKNOWLEDGMENT.value}'"),
        func.lower(OutgoingMail.to_display) == bindparam("address"),
        OutgoingMail.created_at >= bindparam("since", type_=UTCDateTime()),
    )
)


def acknowledgments_to(session: Session, address: str, since: datetime) -> int:
    """How many acknowledgments were queued to ``address`` (bare, any case) since ``since``.

    Served by the index on (lower(to_display), created_at) of acknowledgment rows."""
    found = session.execute(_ACKNOWLEDGMENTS_TO, {"address": address.lower(), "since": since})
    return int(found.scalar() or 0)


_ACKNOWLEDGMENTS_TO_MANY = (
    select(func.lower(OutgoingMail.to_display), func.count())
    .where(
        OutgoingMail.kind == literal_column(f"'{MailKind.ACKNOWLEDGMENT.value}'"),
        func.lower(OutgoingMail.to_display).in_(bindparam("addresses", expanding=True)),
        OutgoingMail.created_at >= bindparam("since", type_=UTCDateTime()),
    )
    .group_by(func.lower(OutgoingMail.to_display))
)


def acknowledgments_to_many(
    session: Session, addresses: Sequence[str], since: datetime
) -> dict[str, int]:
    """`acknowledgments_to` for many addresses in one statement: {lower-case address: n},
    absent when none."""
    wanted = sorted({a.lower() for a in addresses if a and len(a) <= MAX_ADDRESS})
    if not wanted:
        return {}
    with session.no_autoflush:
        found = session.execute(_ACKNOWLEDGMENTS_TO_MANY, {"addresses": wanted, "since": since})
        return {address: int(n) for address, n in found}


def _bounce_text(bounce: Bounce, parsed: ParsedMail) -> str:
    """The bounce's case message: its facts as a coded reason (triage/delivery_reasons.py),
    put into the reader's language on the case page, not a sentence in one language."""
    return delivery_reasons.coded(
        delivery_reasons.BOUNCED,
        recipient=bounce.recipient or "",
        status=bounce.status or "",
        diagnostic=(bounce.diagnostic or "")[:1000],
    )


def _case_by_ids(session: Session, ids: Sequence[str]) -> Case | None:
    """The case one of these Message-IDs belongs to: a mail of ours (the outbox), or the
    case's own first mail; the newest id first."""
    ids = [i for i in ids if i]
    if not ids:
        return None
    case_id = case_of_reply(session, list(reversed(ids)))
    if case_id is not None:
        return session.get(Case, case_id)
    found = dict(
        session.execute(
            select(Case.external_id, Case.id).where(
                Case.channel == Channel.EMAIL, Case.external_id.in_([i[:255] for i in ids])
            )
        ).all()
    )
    for i in ids:
        if i[:255] in found:
            return session.get(Case, found[i[:255]])
    return None


@functools.lru_cache(maxsize=8)
def tracking_pattern(prefix: str) -> re.Pattern[str]:
    """A tracking number (``MS-2026-000123``) of this prefix anywhere in a subject."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(prefix)}-(\d{{4}})-(\d{{6}})(?!\d)")


_GUESSABLE_ACK = re.compile(r"^ack\.[A-Za-z0-9]+-\d{4}-\d{6}@", re.IGNORECASE)


def _thread_target(session: Session, parsed: ParsedMail, policy: MailIntakePolicy) -> Case | None:
    # Acknowledgments queued before their ids were keyed carry the tracking number: a stranger
    # can guess those, so they thread nothing (a citizen's reply then opens a case).
    ids = [i for i in parsed.thread_ids if not _GUESSABLE_ACK.match(i)]
    case = _case_by_ids(session, ids)
    if case is not None and case.external_id != parsed.submission.external_id:
        return case
    prefix = policy.intake.tracking_prefix
    match = tracking_pattern(prefix).search(parsed.submission.subject.upper())
    if match and parsed.sender:
        case = session.scalar(select(Case).where(Case.tracking_number == match.group(0)))
        # A tracking number is not secret: only its citizen's address threads by it.
        if case is not None and case.contact_email.lower() == parsed.sender.lower():
            return case
    return None


def _add_message(
    session: Session,
    case: Case,
    mail: IncomingMail,
    parsed: ParsedMail,
    *,
    kind: str,
    text: str,
    now: datetime,
) -> CaseMessage:
    message = CaseMessage(
        case_id=case.id,
        incoming_mail_id=mail.id,
        at=parsed.submission.received_at,
        direction="in",
        kind=kind,
        sender=parsed.sender[:200],
        subject=parsed.submission.subject,
        text=text,
    )
    session.add(message)
    session.flush()
    contact = case.contact_email.lower()
    other = kind != "bounce" and bool(contact) and parsed.sender.lower() != contact
    # Whoever knows a thread id can write to the case: the department is warned by the
    # event's `from_other_address`, said in the reader's language on the case page.
    reason = parsed.sender
    case.record(
        "message_added",
        f"citizen ({Channel.EMAIL})" if kind != "bounce" else ACTOR,
        now,
        reason=reason,
        kind=kind,
        message_id=parsed.message_id,
        case_message_id=message.id,
        from_other_address=other,
    )
    if kind != "bounce":
        record_refused(case, parsed, now)
    session.flush()
    return message


def acknowledgment_message_id(case: Case, sender: str, secret: str) -> str:
    """The Message-ID of a case's acknowledgment, ``<ack.{24 hex}@{sender's domain}>``: one
    per case, so queueing it is idempotent, and keyed with the application's ``secret`` (HMAC-
    SHA256 of the tracking number) because a reply naming it is threaded into the case: a
    tracking number is sequential, so an id made of it would let anyone write to any case."""
    domain = sender.rsplit("@", 1)[-1].strip(" >") or "localhost"
    tag = hmac.new(
        secret.encode(), f"ack:{case.tracking_number}".encode(), hashlib.sha256
    ).hexdigest()[:24]
    return f"<ack.{tag}@{domain}>"


def acknowledgment_text(
    case: Case, policy: MailIntakePolicy, query_code: str, subject: str
) -> tuple[str, str]:
    """(subject, text) of the Chinese acknowledgment of an email case.

    Nothing the sender wrote is echoed (no display name, no subject; ``subject`` is ignored):
    the acknowledgment goes to whatever Reply-To the mail names, so an echo would let anyone
    have the office mail their text to a third party."""
    del subject
    calendar = policy.intake.deadlines.calendar
    when = calendar.local(case.received_at).strftime("%Y年%m月%d日 %H:%M")
    link = f"{policy.track_url}?number={case.tracking_number}"
    text = (
        "您好：\n\n"
        f"您于{when}发来的邮件已收到并受理。\n\n"
        f"受理编号：{case.tracking_number}\n"
        f"查询码：{query_code}\n\n"
        f"请凭受理编号和查询码查询办理进度：\n{link}\n\n"
        "如需补充情况，请直接回复本邮件，并保留邮件主题中的受理编号。\n"
        "本邮件由系统自动发送。\n\n"
        f"{policy.office_name}\n"
    )
    return f"已受理（受理编号 {case.tracking_number}）", text


def acknowledge(
    session: Session,
    case: Case,
    parsed: ParsedMail,
    policy: MailIntakePolicy,
    query_code: str,
    now: datetime,
    *,
    check: bool = True,
    flush: bool = True,
) -> OutgoingMail | None:
    """Queues the acknowledgment of an email case (once: None when it is queued already or
    the recipient's address is unusable). ``check=False`` skips looking for an earlier one
    (for a case created in this transaction); ``flush=False``: see `enqueue` (the caller
    flushes, then calls `record_queued`)."""
    message_id = acknowledgment_message_id(case, policy.sender, policy.query_secret)
    if check and session.scalar(
        select(OutgoingMail.id).where(OutgoingMail.message_id == message_id)
    ):
        return None
    recipient = parsed.reply_to or parsed.sender
    title, text = acknowledgment_text(case, policy, query_code, parsed.submission.subject)
    try:
        msg = build_message(
            sender=policy.sender,
            to=[recipient],
            subject=title,
            text=text,
            in_reply_to=parsed.message_id or None,
            references=parsed.references[-5:],
            auto_submitted="auto-replied",
        )
    except OutboxError:
        return None
    msg["Message-ID"] = message_id
    return enqueue(session, msg, case=case, kind=MailKind.ACKNOWLEDGMENT, now=now, flush=flush)


def quarantine_raw(
    session: Session, raw: bytes, *, mailbox: str, reason: str, now: datetime
) -> Ingested:
    """Keeps a message that `ingest` failed on (a bug, not the mail) on the quarantine list,
    raw bytes intact; a second call with the same bytes returns the first row."""
    raw = bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    seen = session.scalar(select(IncomingMail).where(IncomingMail.raw_sha256 == digest).limit(1))
    if seen is not None:
        return _result(seen, outcome=Outcome.DUPLICATE)
    mail = _new_row(
        session,
        raw,
        mailbox=mailbox,
        now=now,
        digest=digest,
        outcome=Outcome.QUARANTINED,
        reason=reason[:2000],
        status=ListStatus.PENDING,
    )
    return _result(mail)


# -- the supervisors' lists (web pages) -----------------------------------------------------

_QUARANTINE_OUTCOMES = (Outcome.QUARANTINED, Outcome.BOUNCE)


def _list_filter(which: str) -> Any:
    if which == "quarantine":
        return (IncomingMail.outcome.in_(_QUARANTINE_OUTCOMES)) & IncomingMail.case_id.is_(None)
    if which == "spam":
        return IncomingMail.outcome == Outcome.SUSPECTED_SPAM
    raise ValueError(f"no list {which!r}: quarantine or spam")


def pending_mail(
    session: Session, which: str, *, limit: int = 50, before_id: int | None = None
) -> list[IncomingMail]:
    """The ``which`` list ("quarantine" or "spam"): pending rows, newest first, ``limit`` at a
    time; ``before_id`` pages on (ids below it). Quarantine holds outcome quarantined and
    bounces whose case is unknown; spam holds suspected_spam. Raises ValueError for another
    ``which``."""
    query = (
        select(IncomingMail)
        .where(IncomingMail.status == ListStatus.PENDING, _list_filter(which))
        .order_by(IncomingMail.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(IncomingMail.id < before_id)
    return list(session.scalars(query))


def pending_counts(session: Session) -> dict[str, int]:
    """{"quarantine": n, "spam": n}: pending rows on each list."""
    counts = {}
    for which in ("quarantine", "spam"):
        counts[which] = int(
            session.scalar(
                select(func.count())
                .select_from(IncomingMail)
                .where(IncomingMail.status == ListStatus.PENDING, _list_filter(which))
            )
            or 0
        )
    return counts


def raw_of(session: Session, mail_id: int) -> bytes | None:
    """The raw message of an `incoming_mail` row byte for byte (for download), or None."""
    data = session.scalar(select(IncomingMail.raw_message).where(IncomingMail.id == mail_id))
    return zlib.decompress(data) if data is not None else None


class ListActionError(ValueError):
    """A list action that does not apply (unknown row, not pending, wrong list, empty text);
    ``template``/``params`` as `IllegalTransition` for the web layer to translate."""

    def __init__(self, template: str, **params: object) -> None:
        self.template = template
        self.params = params
        super().__init__(template % params if params else template)


def _pending(session: Session, mail_id: int, which: str) -> IncomingMail:
    mail = session.get(IncomingMail, mail_id, with_for_update=True)
    if mail is None:
        raise ListActionError(N_("No message %(id)s."), id=mail_id)
    in_list = session.scalar(
        select(func.count())
        .select_from(IncomingMail)
        .where(IncomingMail.id == mail_id, _list_filter(which))
    )
    if not in_list or mail.status != ListStatus.PENDING:
        raise ListActionError(N_("Message %(id)s is not waiting on this list."), id=mail_id)
    return mail


def _handled(mail: IncomingMail, status: ListStatus, actor: Actor, now: datetime) -> None:
    mail.status = status
    mail.handled_by = _actor_fields(actor)[1][:200]
    mail.handled_at = now


def confirm_spam(session: Session, mail_id: int, *, actor: Actor, now: datetime) -> IncomingMail:
    """A supervisor confirms a suspected spam: status confirmed_spam, handled_by/at set. The row
    and its raw bytes stay (never deleted). Raises ListActionError unless it is a pending
    suspected spam."""
    mail = _pending(session, mail_id, "spam")
    _handled(mail, ListStatus.CONFIRMED_SPAM, actor, now)
    session.flush()
    return mail


def release_spam(
    session: Session, mail_id: int, *, actor: Actor, now: datetime, policy: MailIntakePolicy
) -> Case:
    """A supervisor releases a suspected spam: it is registered as a case as if it had not
    looked like spam (acknowledged unless a loop guard says no), status released. Returns the
    case (an existing one when its Message-ID was registered meanwhile). Raises
    ListActionError unless it is a pending suspected spam."""
    mail = _pending(session, mail_id, "spam")
    parsed = parse_message(
        mail.raw,
        received_at=mail.received_at,
        limits=policy.limits,
        own_addresses=policy.own_addresses,
    )
    result = _register(session, parsed, policy, now, None, released_from=mail)
    _handled(mail, ListStatus.RELEASED, actor, now)
    case = session.get(Case, result.case_id)
    assert case is not None
    case.record("released_from_spam", actor, now, incoming_mail_id=mail.id)
    session.flush()
    return case


def make_case_of_quarantined(
    session: Session,
    mail_id: int,
    *,
    actor: Actor,
    now: datetime,
    policy: MailIntakePolicy,
    subject: str,
    body: str,
    contact_name: str = "",
    contact_email: str = "",
) -> Case:
    """A supervisor makes a case of a quarantined mail with the text they read out of it
    (``subject``/``body``, cleaned; the body must not be empty). The case is email channel,
    external id ``incoming:<sha256>``, received at the fetch time; the row gets status
    made_case and the case id, so the raw message stays attached to the case. No
    acknowledgment is sent. Raises ListActionError unless it is pending on the quarantine
    list, or when the body is empty."""
    mail = _pending(session, mail_id, "quarantine")
    if not clean_text(body).strip():
        raise ListActionError(N_("Give the text of the complaint."))
    submission = Submission(
        channel=Channel.EMAIL,
        external_id=f"incoming:{mail.raw_sha256}",
        received_at=mail.received_at,
        body=body,
        subject=subject,
        contact=Contact(name=contact_name, email=contact_email),
    )
    code = derived_query_code(policy.query_secret, submission.external_id)
    case = register(session, submission, policy.intake, now, query_code=code).case
    mail.case_id = case.id
    _handled(mail, ListStatus.MADE_CASE, actor, now)
    case.record("made_from_quarantine", actor, now, incoming_mail_id=mail.id)
    session.flush()
    return case


def case_messages_of(session: Session, case_id: int) -> list[CaseMessage]:
    """The later messages on a case, oldest first (for the case page and the export)."""
    return list(
        session.scalars(
            select(CaseMessage)
            .where(CaseMessage.case_id == case_id)
            .order_by(CaseMessage.at, CaseMessage.id)
        )
    )


def messages_by_case(session: Session, case_ids: Sequence[int]) -> dict[int, list[CaseMessage]]:
    """`case_messages_of` for many cases in one query (the export)."""
    out: dict[int, list[CaseMessage]] = {}
    if not case_ids:
        return out
    for message in session.scalars(
        select(CaseMessage)
        .where(CaseMessage.case_id.in_(list(case_ids)))
        .order_by(CaseMessage.case_id, CaseMessage.at, CaseMessage.id)
    ):
        out.setdefault(message.case_id, []).append(message)
    return out


def mail_of_case(session: Session, case_id: int) -> list[IncomingMail]:
    """The incoming mails attached to a case (its first mail, replies, bounces), oldest first:
    the raw messages of its audit trail."""
    return list(
        session.scalars(
            select(IncomingMail).where(IncomingMail.case_id == case_id).order_by(IncomingMail.id)
        )
    )


# -- leader lease and health ---------------------------------------------------------------


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def take_lease(session: Session, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Takes or renews the lease ``name`` for ``holder`` until ``now + ttl``; True when
    ``holder`` has it. It is taken when nobody holds it, when its holder's lease expired,
    or when ``holder`` already holds it; one UPDATE … RETURNING decides, so two processes
    never both get it. Commit right after (the lease counts from the commit)."""
    expires = now + ttl
    session.execute(
        _insert(session)(Lease)
        .values(name=name, holder=holder, expires_at=now, acquired_at=now)
        .on_conflict_do_nothing()
    )
    got = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.expires_at <= now) | (Lease.holder == holder))
        .values(
            holder=holder,
            expires_at=expires,
            acquired_at=case_when_acquired(holder, now),
        )
        .returning(Lease.holder)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return got == holder


def case_when_acquired(holder: str, now: datetime) -> Any:
    """acquired_at stays while the same holder renews; a new holder starts it afresh."""
    from sqlalchemy import case as sql_case

    return sql_case((Lease.holder == holder, Lease.acquired_at), else_=now)


def release_lease(session: Session, name: str, holder: str) -> None:
    """Gives the lease up at once if ``holder`` holds it (a clean stop), so another watcher
    need not wait for it to expire."""
    session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
        .execution_options(synchronize_session=False)
    )


def lease_holder(session: Session, name: str, now: datetime) -> str | None:
    """Who holds the lease now, or None when nobody's lease is live."""
    return session.scalar(select(Lease.holder).where(Lease.name == name, Lease.expires_at > now))


def record_fetch(
    session: Session, mailbox: str, *, now: datetime, waiting: int | None = None, error: str = ""
) -> None:
    """Records a look at ``mailbox``: without ``error`` a successful fetch (last_success_at =
    now, waiting = messages left); with it the error (last_error, last_error_at)."""
    session.execute(
        _insert(session)(IntakeHealth)
        .values(mailbox=mailbox, last_error="", waiting=0, updated_at=now)
        .on_conflict_do_nothing()
    )
    values: dict[str, Any] = {"updated_at": now}
    if error:
        values.update(last_error=error[:2000], last_error_at=now)
    else:
        values.update(last_success_at=now)
        if waiting is not None:
            values["waiting"] = waiting
    session.execute(
        update(IntakeHealth)
        .where(IntakeHealth.mailbox == mailbox)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


STALE_MINIMUM = timedelta(minutes=2)
"""A watcher is never called stale sooner than this after its last look."""


def _stale_after(lease: Lease, now: datetime) -> timedelta:
    """How long a live watcher may go without looking at its mailbox: twice what its lease
    has left (its keeper renews the lease every third of its length, so that is between 4/3
    and 2 lease lengths, and a working watcher looks at least once a third of one: see
    web/cli_intake.py), and at least `STALE_MINIMUM`."""
    return max(STALE_MINIMUM, 2 * (lease.expires_at - now))


def intake_health(
    session: Session, mailbox: str | None, now: datetime, *, stale_after: timedelta | None = None
) -> dict[str, Any]:
    """What the board's intake panel shows, one dict:

    - ``mailbox``: the name (None when no mailbox is configured);
    - ``last_success_at`` / ``last_error_at`` (aware UTC or None), ``last_error`` (str);
    - ``last_attempt_at``: the last look at the mailbox, whether it worked or not (the
      watcher records one at least every third of its lease; None: never looked);
    - ``minutes_since_success``: whole minutes since ``last_success_at`` (None: never);
    - ``stale``: a watcher holds the lease, so the mailbox should be looked at, but has not
      fetched successfully for longer than ``stale_after`` (by default derived from the
      lease, see `_stale_after`): it is stuck or keeps failing, and mail is not coming in;
    - ``waiting``: messages left in the folder at the last look (None: never looked);
    - ``watcher``: the holder of the watch lease, or None; ``watcher_until``;
    - ``quarantined`` / ``suspected_spam``: pending rows on each list;
    - ``outbox_queued`` / ``outbox_failed``: from `triage.outbox.outbox_counts`;
      ``sms_queued`` / ``sms_failed``: the text messages', `triage.sms.sms_counts`.
    """
    health = session.get(IntakeHealth, mailbox) if mailbox else None
    lease = session.get(Lease, lease_name(mailbox)) if mailbox else None
    live = lease is not None and lease.expires_at > now
    lists = pending_counts(session)
    outbox = outbox_counts(session, now)
    sms = sms_counts(session)
    success = health.last_success_at if health else None
    since = now - success if success is not None else None
    stale = False
    if live and lease is not None:
        limit = stale_after if stale_after is not None else _stale_after(lease, now)
        # A watcher that took the lease just now has not had the time to look yet.
        stale = (since if since is not None else now - lease.acquired_at) > limit
    return {
        "mailbox": mailbox,
        "last_success_at": success,
        "last_error": health.last_error if health else "",
        "last_error_at": health.last_error_at if health else None,
        "last_attempt_at": health.updated_at if health else None,
        "minutes_since_success": (
            max(0, int(since.total_seconds() // 60)) if since is not None else None
        ),
        "stale": stale,
        "waiting": health.waiting if health and health.last_success_at else None,
        "watcher": lease.holder if live and lease else None,
        "watcher_until": lease.expires_at if live and lease else None,
        "quarantined": lists["quarantine"],
        "suspected_spam": lists["spam"],
        "outbox_queued": outbox["queued"],
        "outbox_failed": outbox["failed"],
        "sms_queued": sms["queued"],
        "sms_failed": sms["failed"],
    }


def lease_name(mailbox: str) -> str:
    """The lease of the `--watch` of one mailbox."""
    return f"intake.mail:{mailbox}"
