"""Email intake: one fetched message → one row in `incoming_mail` and exactly one outcome.

`ingest` is what `minsheng intake mail` (web/cli_intake.py) calls for every message it
fetches; the list actions (`release_spam`, `confirm_spam`, `make_case_of_quarantined`) and
the readers (`pending_mail`, `raw_of`, `case_messages_of`, `intake_health`) are what the web
pages call. Everything here flushes and never commits: the caller owns the transaction, and
commits before it moves the message on the IMAP server (see intake/mailbox.py's contract).

Outcomes (`IncomingMail.outcome`) and where the message goes on the server:

============== ============================================== ============ ===============
outcome        what happened                                  folder       --json count
============== ============================================== ============ ===============
registered     a new case; acknowledged through the outbox    processed    registered
auto_reply     a new case, but no acknowledgment (loop guard) processed    registered
threaded       a reply added to its case (`case_messages`)    processed    threaded
bounce         a delivery report attached to the case whose   processed    threaded
               mail bounced (`case_messages`, kind bounce)
bounce         ... whose case cannot be found: status pending quarantine   quarantined
suspected_spam on the suspected-spam list, status pending     spam         suspected_spam
quarantined    cannot be parsed, status pending; raw kept     quarantine   quarantined
duplicate      seen before (same Message-ID, another copy)    processed    duplicates
============== ============================================== ============ ===============

A message already in `incoming_mail` (same Message-ID and SHA-256 of the raw bytes: a run
that committed and died before the move) makes no new row: `ingest` returns outcome
``duplicate`` with the folder of the first time, so the re-run only moves it.

The raw message is kept, zlib-compressed, in every row (the audit trail, the quarantine's
download, the source a released spam is registered from).

Threading: a reply is recognised by In-Reply-To/References naming our acknowledgment (any
mail of the outbox with a case) or the case's own Message-ID, or by a tracking number
(``MS-2026-000123``) in the subject when the sender is the case's contact address (a
tracking number is not secret; a Message-ID is unguessable).

Leases (`take_lease`): one `--watch` per mailbox across machines. Health (`record_fetch`,
`intake_health`): what the board shows.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from intake.email import AttachmentLimits
from triage.cases import IntakePolicy
from triage.models import Actor, Base, Case, UTCDateTime, _actor_fields

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
    """

    intake: IntakePolicy
    sender: str
    query_secret: str
    track_url: str
    office_name: str = "机关效能建设办公室"
    own_addresses: frozenset[str] = frozenset()
    limits: AttachmentLimits = field(default_factory=AttachmentLimits)
    acknowledge: bool = True


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
    raise NotImplementedError


def quarantine_raw(
    session: Session, raw: bytes, *, mailbox: str, reason: str, now: datetime
) -> Ingested:
    """Keeps a message that `ingest` failed on (a bug, not the mail) on the quarantine list,
    raw bytes intact; a second call with the same bytes returns the first row."""
    raise NotImplementedError


# -- the supervisors' lists (web pages) -----------------------------------------------------


def pending_mail(
    session: Session, which: str, *, limit: int = 50, before_id: int | None = None
) -> list[IncomingMail]:
    """The ``which`` list ("quarantine" or "spam"): pending rows, newest first, ``limit`` at a
    time; ``before_id`` pages on (ids below it). Quarantine holds outcome quarantined and
    bounces whose case is unknown; spam holds suspected_spam. Raises ValueError for another
    ``which``."""
    raise NotImplementedError


def pending_counts(session: Session) -> dict[str, int]:
    """{"quarantine": n, "spam": n}: pending rows on each list."""
    raise NotImplementedError


def raw_of(session: Session, mail_id: int) -> bytes | None:
    """The raw message of an `incoming_mail` row byte for byte (for download), or None."""
    raise NotImplementedError


class ListActionError(ValueError):
    """A list action that does not apply (unknown row, not pending, wrong list, empty text);
    ``template``/``params`` as `IllegalTransition` for the web layer to translate."""

    def __init__(self, template: str, **params: object) -> None:
        self.template = template
        self.params = params
        super().__init__(template % params if params else template)


def confirm_spam(session: Session, mail_id: int, *, actor: Actor, now: datetime) -> IncomingMail:
    """A supervisor confirms a suspected spam: status confirmed_spam, handled_by/at set. The row
    and its raw bytes stay (never deleted). Raises ListActionError unless it is a pending
    suspected spam."""
    raise NotImplementedError


def release_spam(
    session: Session, mail_id: int, *, actor: Actor, now: datetime, policy: MailIntakePolicy
) -> Case:
    """A supervisor releases a suspected spam: it is registered as a case as if it had not
    looked like spam (acknowledged unless a loop guard says no), status released. Returns the
    case (an existing one when its Message-ID was registered meanwhile). Raises
    ListActionError unless it is a pending suspected spam."""
    raise NotImplementedError


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
    raise NotImplementedError


def case_messages_of(session: Session, case_id: int) -> list[CaseMessage]:
    """The later messages on a case, oldest first (for the case page and the export)."""
    raise NotImplementedError


def mail_of_case(session: Session, case_id: int) -> list[IncomingMail]:
    """The incoming mails attached to a case (its first mail, replies, bounces), oldest first:
    the raw messages of its audit trail."""
    raise NotImplementedError


# -- leader lease and health ---------------------------------------------------------------


def take_lease(session: Session, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Takes or renews the lease ``name`` for ``holder`` until ``now + ttl``; True when
    ``holder`` has it. It is taken when nobody holds it, when its holder's lease expired,
    or when ``holder`` already holds it; one UPDATE … RETURNING decides, so two processes
    never both get it. Commit right after (the lease counts from the commit)."""
    raise NotImplementedError


def release_lease(session: Session, name: str, holder: str) -> None:
    """Gives the lease up at once if ``holder`` holds it (a clean stop), so another watcher
    need not wait for it to expire."""
    raise NotImplementedError


def lease_holder(session: Session, name: str, now: datetime) -> str | None:
    """Who holds the lease now, or None when nobody's lease is live."""
    raise NotImplementedError


def record_fetch(
    session: Session, mailbox: str, *, now: datetime, waiting: int | None = None, error: str = ""
) -> None:
    """Records a look at ``mailbox``: without ``error`` a successful fetch (last_success_at =
    now, waiting = messages left); with it the error (last_error, last_error_at)."""
    raise NotImplementedError


def intake_health(session: Session, mailbox: str | None, now: datetime) -> dict[str, Any]:
    """What the board's intake panel shows, one dict:

    - ``mailbox``: the name (None when no mailbox is configured);
    - ``last_success_at`` / ``last_error_at`` (aware UTC or None), ``last_error`` (str);
    - ``waiting``: messages left in the folder at the last look (None: never looked);
    - ``watcher``: the holder of the watch lease, or None; ``watcher_until``;
    - ``quarantined`` / ``suspected_spam``: pending rows on each list;
    - ``outbox_queued`` / ``outbox_failed``: from `triage.outbox.outbox_counts`.
    """
    raise NotImplementedError


def lease_name(mailbox: str) -> str:
    """The lease of the `--watch` of one mailbox."""
    return f"intake.mail:{mailbox}"


_UNUSED = (func, select, update, pg_insert, sqlite_insert, re, _actor_fields)
