"""The persistent domain: departments, users, cases and their append-only event log.

Every change of a case is one method on `Case`. The method checks that the change is legal in
the case's current status (raising `IllegalTransition` otherwise), changes the case and
appends a `CaseEvent` saying who did what, when and why. Events are never updated or deleted:
the ORM refuses it, and database triggers (see the migrations) refuse it too.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
)
from sqlalchemy.orm.attributes import flag_modified

from intake.submission import Kind
from triage.rejection import RejectionReason

if TYPE_CHECKING:
    from triage.deadlines import Deadlines

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC on every database, hands out aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_session_token() -> str:
    return secrets.token_hex(16)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    OPERATOR = "operator"
    HANDLER = "handler"
    OBSERVER = "observer"


class Status(StrEnum):
    """The case life cycle of DOMAIN.md."""

    RECEIVED = "received"
    TRIAGE = "triage"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    REPLIED = "replied"
    VISITED = "visited"
    CLOSED = "closed"
    MERGED = "merged"
    REJECTED = "rejected"


OPEN_STATUSES = frozenset(
    {Status.RECEIVED, Status.TRIAGE, Status.ASSIGNED, Status.IN_PROGRESS, Status.REPLIED}
    | {Status.VISITED}
)
FINAL_STATUSES = frozenset({Status.CLOSED, Status.MERGED, Status.REJECTED})
# The events whose ``caller_name`` is a name the caller gave on a later call (the desk).
CALLER_NAME_ACTIONS = frozenset({"urged", "reopened"})


class Satisfaction(StrEnum):
    SATISFIED = "satisfied"
    BASIC = "basic"
    UNSATISFIED = "unsatisfied"


class VisitChannel(StrEnum):
    """How a return visit asked the citizen."""

    PHONE = "phone"
    SMS = "sms"
    WEB = "web"
    VISIT = "visit"


class ReplyState(StrEnum):
    """A reply waits for the head's sign-off, went out, or was returned by the head."""

    PENDING_SIGN_OFF = "pending_sign_off"
    SENT = "sent"
    RETURNED = "returned"


class RequestState(StrEnum):
    """An extension request's decision."""

    PENDING = "pending"
    GRANTED = "granted"
    REFUSED = "refused"


class SpotCheckResult(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


class ObservationState(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"


def N_(message: str) -> str:
    """Marks a message for translation; the web layer translates it when it shows it."""
    return message


class IllegalTransition(ValueError):
    """A change that the case's status or the rules do not allow; the message says why.

    Keeps the untranslated template and its parameters so that the web layer can show the
    message in the user's language; `str()` gives the English text.
    """

    def __init__(self, template: str, **params: object) -> None:
        self.template = template
        self.params = params
        super().__init__(template % params if params else template)


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Added or changed by an administrator in the browser: `minsheng init` leaves it alone.
    admin_managed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The department that took this one's work over when it was deactivated
    # (triage/staff.hand_over): a case reworked here later goes there (triage/cases.rework_case).
    successor_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))

    def __repr__(self) -> str:
        return f"<Department {self.code}>"


class User(Base):
    """A staff member. Duck-types the Flask-Login user protocol so the web layer can use it."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    password_hash: Mapped[str] = mapped_column(String(300), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Part of every session and "stay signed in" cookie; a new one signs out every device
    # (on sign-out and on a password change).
    session_token: Mapped[str] = mapped_column(String(64), default=new_session_token)
    # The department's head (负责人): signs replies off where the config asks it, receives
    # escalations and the department's digest.
    head: Mapped[bool] = mapped_column(Boolean, default=False)
    # Where the supervision tick writes to this person: a head gets the department's
    # reminders, escalations and digest, a supervisor the office's ("" for none).
    email: Mapped[str] = mapped_column(String(200), default="")
    # Changed by an administrator in the browser: `minsheng init` no longer resets it to the
    # config's [[users]] entry.
    admin_managed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The password was set or generated by an administrator (who has seen it): the user
    # chooses their own before anything else at the next sign-in (migration 0036).
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)

    department: Mapped[Department | None] = relationship()

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """What the session and the "stay signed in" cookie carry: "<id>:<session token>",
        so that renewing the token revokes every cookie issued before."""
        return f"{self.id}:{self.session_token}"

    @property
    def label(self) -> str:
        return self.display_name or self.username

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role}>"


class Counter(Base):
    """Named sequences, such as the tracking numbers of one year."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class CaseEvent(Base):
    """One line of the audit log: who did what to which case, when, and why."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(200), default="")
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    public: Mapped[bool] = mapped_column(Boolean, default=False)

    actor: Mapped[User | None] = relationship()


class Attachment(Base):
    """Metadata of a stored file; the bytes live on disk under their SHA-256."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaseReply(Base):
    """A department's written reply to the citizen."""

    __tablename__ = "case_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    body: Mapped[str] = mapped_column(Text)
    # Self-check (自律): where the config asks it, a reply waits for the department head's
    # sign-off before it goes out. ReplyState values.
    state: Mapped[str] = mapped_column(String(20), default="sent")
    signed_off_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    signed_off_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sign_off_note: Mapped[str] = mapped_column(Text, default="")

    author: Mapped[User | None] = relationship(foreign_keys=[author_id])
    signed_off_by: Mapped[User | None] = relationship(foreign_keys=[signed_off_by_id])
    department: Mapped[Department | None] = relationship()


class ReturnVisit(Base):
    """The call back to the complainant after the reply (回访)."""

    __tablename__ = "return_visits"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    visitor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    reached: Mapped[bool] = mapped_column(Boolean)
    solved: Mapped[bool | None] = mapped_column(Boolean)
    satisfaction: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    # Set when the citizen called back is the complainant of a case merged into this one.
    citizen_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    # How the citizen was asked (VisitChannel values) and whether the visit counts (有效回访):
    # one that did not reach the citizen does not.
    channel: Mapped[str] = mapped_column(String(10), default="phone")
    valid: Mapped[bool] = mapped_column(Boolean, default=False)
    # The citizen's answer to "did the department contact you in time?" (响应率); NULL for a
    # visit that did not reach them or was recorded before the question was asked.
    contacted: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # ix_return_visits_at (migration 0017): the month's visits are read by `at`.
    __table_args__ = (Index("ix_return_visits_at", "at"),)

    visitor: Mapped[User | None] = relationship()


class ExtensionRequest(Base):
    """A department's request to move its handling deadline (延期申请), and the decision."""

    __tablename__ = "extension_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    # The deadline the department proposes, and the one it had when it asked.
    proposed_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    previous_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(10), default=RequestState.PENDING)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    granted_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])


class CaseFinding(Base):
    """A finding of the last supervision tick on an open case (see triage/rules): which rule,
    which of the four combinations (1-4, DOMAIN.md), how severe, and since when it holds.
    Replaced at every tick; the history is in the case's events and the outbox."""

    __tablename__ = "case_findings"
    __table_args__ = (UniqueConstraint("case_id", "rule", name="uq_case_findings_case_rule"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    rule: Mapped[str] = mapped_column(String(40), index=True)
    combination: Mapped[int] = mapped_column(Integer)
    severity: Mapped[str] = mapped_column(String(10))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SpotCheckDraw(Base):
    """One random draw of recently closed cases for unannounced checks (不定期抽查): the seed,
    the window and the population it drew from, so that the draw can be re-done."""

    __tablename__ = "spot_check_draws"

    id: Mapped[int] = mapped_column(primary_key=True)
    drawn_at: Mapped[datetime] = mapped_column(UTCDateTime)
    drawn_by: Mapped[str] = mapped_column(String(200), default="system")
    seed: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    population: Mapped[int] = mapped_column(Integer)
    sample_size: Mapped[int] = mapped_column(Integer)
    # Tracking numbers of the sample, in draw order.
    sample: Mapped[list[str]] = mapped_column(JSON, default=list)

    checks: Mapped[list[SpotCheck]] = relationship(order_by="SpotCheck.id")


class SpotCheck(Base):
    """The verification of one drawn case: a call or a visit, passed or failed."""

    __tablename__ = "spot_checks"
    __table_args__ = (UniqueConstraint("draw_id", "case_id", name="uq_spot_checks_draw_case"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("spot_check_draws.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    result: Mapped[str] = mapped_column(String(10), default=SpotCheckResult.PENDING, index=True)
    method: Mapped[str] = mapped_column(String(10), default="")
    checked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")

    draw: Mapped[SpotCheckDraw] = relationship(back_populates="checks")
    case: Mapped[Case] = relationship()
    checked_by: Mapped[User | None] = relationship()


class Observation(Base):
    """An external supervisor's observation (效能监督员) on a case or on a department, and the
    supervisors' answer; an unanswered one is a finding."""

    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(primary_key=True)
    observer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), default=ObservationState.OPEN, index=True)
    answer: Mapped[str] = mapped_column(Text, default="")
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    observer: Mapped[User | None] = relationship(foreign_keys=[observer_id])
    answered_by: Mapped[User | None] = relationship(foreign_keys=[answered_by_id])
    case: Mapped[Case | None] = relationship()
    department: Mapped[Department | None] = relationship()


class ThrottleMark(Base):
    """A failed attempt (login, tracking lookup) by a client, for slowing down guessing."""

    __tablename__ = "throttle_marks"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ReportSend(Base):
    """One month's report sent (queued in the outbox): the supervision tick sends a month
    once (unique month, so a re-run or a second machine's tick never sends it again); a
    send by hand (`minsheng report monthly --send`) updates the row."""

    __tablename__ = "report_sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7), unique=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    message_id: Mapped[str] = mapped_column(String(255), default="")
    # "tick" or "manual": who sent it last.
    sent_by: Mapped[str] = mapped_column(String(20), default="tick")


Actor = User | str | None


def _actor_fields(actor: Actor) -> tuple[int | None, str]:
    if isinstance(actor, User):
        return actor.id, actor.label
    return None, actor or "system"


# Events that only log mail in and out of a case (the outbox, the mail intake): they change
# no decision, and a sender or intake must not fail because a supervisor acted meanwhile.
UNVERSIONED_ACTIONS = frozenset(
    {
        "mail_queued",
        "mail_sent",
        "mail_deferred",
        "mail_failed",
        "message_added",
        "attachments_refused",
    }
)


class Case(Base):
    """One complaint, suggestion, inquiry or praise, from receipt to close (工单)."""

    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_cases_channel_external"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tracking_number: Mapped[str] = mapped_column(String(30), unique=True)
    query_code_hash: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(255))
    # The API key (triage/api_keys.py) of an outside system that filed it through Open311.
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    kind: Mapped[str] = mapped_column(String(20), default=Kind.COMPLAINT)
    status: Mapped[str] = mapped_column(String(20), default=Status.RECEIVED)
    subject: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text)
    contact_name: Mapped[str] = mapped_column(String(100), default="")
    contact_phone: Mapped[str] = mapped_column(String(40), default="")
    contact_email: Mapped[str] = mapped_column(String(200), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    suggested_department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    confidence: Mapped[float | None] = mapped_column(Float)
    alternatives: Mapped[list[Any]] = mapped_column(JSON, default=list)
    model_version: Mapped[str] = mapped_column(String(60), default="")
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    urgent_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Open cases that looked like the same issue at registration: [[tracking number, score]].
    similar: Mapped[list[Any]] = mapped_column(JSON, default=list)

    triage_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Indexed: the search index reads "cases merged into these" at every registration.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    rejection_reason: Mapped[str] = mapped_column(Text, default="")
    # The public side of a rejection: a code from the configured list, the text the citizen
    # reads, and the outside body the complaint belongs to (不属于受理范围 / 转外单位).
    rejection_code: Mapped[str] = mapped_column(String(40), default="")
    public_reason: Mapped[str] = mapped_column(Text, default="")
    referred_to: Mapped[str] = mapped_column(String(200), default="")
    # Subject and body as masked views show them: what observers may search.
    masked_text: Mapped[str] = mapped_column(Text, default="")
    sent_back_count: Mapped[int] = mapped_column(Integer, default=0)
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    # The handling deadline a granted extension (延期) moved `due_at` to, and how many were
    # granted.
    extended_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_count: Mapped[int] = mapped_column(Integer, default=0)
    # The worst finding of the last supervision tick, for lists: "" / "at_risk" / "overdue".
    risk: Mapped[str] = mapped_column(String(10), default="")
    # When the last event was recorded (`record`): the case lists' "recently updated" order.
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The caller's pseudonymous key (triage/callers.py): the phone's, else the email's; ""
    # for an anonymous case, None until computed for a case from before migration 0010. The
    # email's key too when the case has both. Indexed with received_at (triage/callers.py).
    caller_key: Mapped[str | None] = mapped_column(String(32))
    caller_alt_key: Mapped[str | None] = mapped_column(String(32))
    # Where it happened: a place or an address as the citizen or the operator gave it.
    place: Mapped[str] = mapped_column(String(200), default="")
    # Repeat calls about the open case (催办): events "urged".
    urge_count: Mapped[int] = mapped_column(Integer, default=0)

    department: Mapped[Department | None] = relationship(foreign_keys=[department_id])
    suggested_department: Mapped[Department | None] = relationship(
        foreign_keys=[suggested_department_id]
    )
    merged_into: Mapped[Case | None] = relationship(remote_side=[id])
    events: Mapped[list[CaseEvent]] = relationship(order_by=CaseEvent.id)
    attachments: Mapped[list[Attachment]] = relationship(order_by=Attachment.id)
    replies: Mapped[list[CaseReply]] = relationship(order_by=CaseReply.id)
    visits: Mapped[list[ReturnVisit]] = relationship(
        order_by=ReturnVisit.id, foreign_keys=[ReturnVisit.case_id]
    )
    extension_requests: Mapped[list[ExtensionRequest]] = relationship(
        order_by="ExtensionRequest.id"
    )
    findings: Mapped[list[CaseFinding]] = relationship(order_by="CaseFinding.id")

    # Two supervisors acting on the same case at once: the second write fails instead of
    # silently undoing the first.
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012

    def __repr__(self) -> str:
        return f"<Case {self.tracking_number} {self.status}>"

    # -- reading -------------------------------------------------------------------------

    @property
    def latest_reply(self) -> CaseReply | None:
        """The latest reply that went out to the citizen (not a draft or a returned one)."""
        sent = self.sent_replies
        return sent[-1] if sent else None

    @property
    def caller_names(self) -> list[str]:
        """Every name the caller gave: the case's contact name and those given on a repeat
        call or a reopen (their events' ``caller_name``), for masking free text (reads the
        events)."""
        names = [self.contact_name] if self.contact_name else []
        for e in self.events:
            if e.action in CALLER_NAME_ACTIONS and (name := (e.detail or {}).get("caller_name")):
                names.append(str(name))
        return list(dict.fromkeys(names))

    @property
    def own_visits(self) -> list[ReturnVisit]:
        """Return visits to this case's own complainant (not to merged cases' citizens)."""
        return [v for v in self.visits if v.citizen_case_id is None]

    @property
    def latest_visit(self) -> ReturnVisit | None:
        own = self.own_visits
        return own[-1] if own else None

    def visits_of(self, citizen_case: Case) -> list[ReturnVisit]:
        """Return visits to the complainant of `citizen_case`, a case merged into this one."""
        return [v for v in self.visits if v.citizen_case_id == citizen_case.id]

    @property
    def merge_target(self) -> Case | None:
        """The open case that carries this one on: the end of the chain of merges, or None.

        X merged into Y, Y later merged into Z: X's target is Z.
        """
        target, seen = self.merged_into, {id(self)}
        while target is not None and target.merged_into is not None and id(target) not in seen:
            seen.add(id(target))
            target = target.merged_into
        return target

    @property
    def send_backs(self) -> list[CaseEvent]:
        """The departments' send-back events (退回), oldest first: who returned it and why."""
        return [e for e in self.events if e.action == "sent_back"]

    @property
    def returned_by(self) -> frozenset[str]:
        """Codes of the departments that have sent this case back."""
        return frozenset(
            str(e.detail.get("department")) for e in self.send_backs if e.detail.get("department")
        )

    def is_overdue(self, now: datetime) -> bool:
        if self.status in (Status.RECEIVED, Status.TRIAGE):
            return self.triage_due_at is not None and now > self.triage_due_at
        if self.status in (Status.ASSIGNED, Status.IN_PROGRESS):
            return self.due_at is not None and now > self.due_at
        return False

    # -- changing ------------------------------------------------------------------------

    def _require(self, action: str, allowed: set[Status] | frozenset[Status]) -> None:
        """`action` is a past participle ("dispatched"): the web layer translates it."""
        if self.status not in allowed:
            raise IllegalTransition(
                N_("Case %(number)s cannot be %(action)s: it is %(status)s."),
                number=self.tracking_number,
                action=action,
                status=self.status,
            )

    @staticmethod
    def _require_reason(reason: str) -> str:
        reason = (reason or "").strip()
        if not reason:
            raise IllegalTransition(N_("Please give a reason."))
        return reason

    def record(
        self,
        action: str,
        actor: Actor,
        at: datetime,
        *,
        to_status: Status | None = None,
        reason: str = "",
        public: bool = False,
        **detail: Any,
    ) -> CaseEvent:
        """Append an event, moving the case to `to_status` if given.

        Every event except the mail bookkeeping of `UNVERSIONED_ACTIONS` also marks the
        case's row changed, so that its flush checks and bumps `version`: of two decisions
        taken at once on the same case (a head signing a draft off while returning it, two
        extension requests), the second fails with StaleDataError even when it only adds a
        child row, instead of both being stored.
        """
        actor_id, actor_name = _actor_fields(actor)
        from_status = self.status
        if action not in UNVERSIONED_ACTIONS and sa_inspect(self).persistent:
            # A new case is inserted anyway; a loaded one has `status` in its dict.
            flag_modified(self, "status")
        if to_status is not None:
            self.status = to_status
        if action not in UNVERSIONED_ACTIONS:
            self.updated_at = at
        ev = CaseEvent(
            at=at,
            action=action,
            actor_id=actor_id,
            actor_name=actor_name,
            from_status=from_status,
            to_status=self.status,
            reason=reason,
            detail=detail,
            public=public,
        )
        self.events.append(ev)
        return ev

    def queue(self, at: datetime, **detail: Any) -> None:
        """Put a received case in the supervisors' triage queue; `detail` says why."""
        self._require("queued", {Status.RECEIVED})
        self.record("queued", "system", at, to_status=Status.TRIAGE, **detail)

    def assign(
        self,
        department: Department,
        actor: Actor,
        at: datetime,
        due_at: datetime,
        *,
        reason: str = "",
        auto: bool = False,
        confidence: float | None = None,
        corrected_from: str | None = None,
    ) -> None:
        """Dispatch (派单) the case to a department with its handling deadline.

        `corrected_from` names the suggested department a supervisor overrode: a label for
        the next retraining.
        """
        self._require("dispatched", {Status.RECEIVED, Status.TRIAGE})
        self.department = department
        self.department_id = department.id
        self.assigned_at = at
        self.due_at = due_at
        self.record(
            "auto_assigned" if auto else "assigned",
            actor,
            at,
            to_status=Status.ASSIGNED,
            reason=reason,
            public=True,
            department=department.code,
            due_at=due_at.isoformat(),
            **({"confidence": round(confidence, 4)} if confidence is not None else {}),
            **({"corrected_from": corrected_from} if corrected_from else {}),
        )

    def transfer(
        self, department: Department, actor: Actor, at: datetime, due_at: datetime, reason: str
    ) -> None:
        """A supervisor moves an assigned case to another department (转办)."""
        self._require("transferred", {Status.ASSIGNED, Status.IN_PROGRESS})
        reason = self._require_reason(reason)
        if department.id == self.department_id:
            raise IllegalTransition(N_("The case is already with that department."))
        previous = self.department.code if self.department else None
        self._withdraw_department_requests(actor, at, N_("The case was transferred."))
        self.department = department
        self.department_id = department.id
        self.assigned_at = at
        self.due_at = due_at
        self.record(
            "transferred",
            actor,
            at,
            to_status=Status.ASSIGNED,
            reason=reason,
            public=True,
            department=department.code,
            previous=previous,
            due_at=due_at.isoformat(),
        )

    def start(self, actor: Actor, at: datetime) -> None:
        """The department takes the case up (办理中)."""
        self._require("started", {Status.ASSIGNED})
        self.record("started", actor, at, to_status=Status.IN_PROGRESS, public=True)

    def reply(self, actor: Actor, at: datetime, text: str, *, sign_off: bool = False) -> CaseReply:
        """The department's written reply to the citizen (答复).

        With `sign_off` (the config's self-check, 自律) a reply by anyone but the head of the
        case's department is only a draft waiting for the head (`sign_off_reply`); the head's
        own reply goes out at once, signed by the head.
        """
        self._require("replied", {Status.ASSIGNED, Status.IN_PROGRESS})
        text = (text or "").strip()
        if not text:
            raise IllegalTransition(N_("A reply needs a text."))
        if self.pending_draft is not None:
            raise IllegalTransition(N_("A reply already waits for the head's sign-off."))
        reply = CaseReply(
            at=at,
            body=text,
            author_id=actor.id if isinstance(actor, User) else None,
            department_id=self.department_id,
            state=ReplyState.SENT,
            sign_off_note="",
        )
        if sign_off and not self.is_head_of_department(actor):
            reply.state = ReplyState.PENDING_SIGN_OFF
            self.replies.append(reply)
            self._flush_for_id()
            self.record("reply_drafted", actor, at, to_status=Status.IN_PROGRESS, reply_id=reply.id)
            return reply
        if sign_off:
            reply.signed_off_by_id, reply.signed_off_at = actor.id, at  # type: ignore[union-attr]
        self.replies.append(reply)
        self._withdraw_department_requests(actor, at, N_("The case was replied."))
        self.replied_at = at
        self.record("replied", actor, at, to_status=Status.REPLIED, public=True)
        return reply

    def send_back(self, actor: Actor, at: datetime, reason: str, deadline: datetime) -> None:
        """The department returns a misrouted case to triage (退回), within the window."""
        self._require("sent back", {Status.ASSIGNED, Status.IN_PROGRESS})
        reason = self._require_reason(reason)
        if at > deadline:
            raise IllegalTransition(
                N_(
                    "The send-back window closed at %(deadline)s; "
                    "ask a supervisor to transfer the case instead."
                ),
                deadline=deadline,
            )
        previous = self.department.code if self.department else None
        self._withdraw_department_requests(actor, at, N_("The case was sent back."))
        self.department = None
        self.department_id = None
        self.due_at = None
        self.assigned_at = None
        self.sent_back_count += 1
        self.record(
            "sent_back", actor, at, to_status=Status.TRIAGE, reason=reason, department=previous
        )

    def requeue(self, actor: Actor, at: datetime, reason: str) -> None:
        """Put a case back in handling whose department is gone (inactive, no department took
        its work over) into the supervisors' triage queue (待分派) to be dispatched again.
        Event "requeued" {department}: unlike a send-back it counts against no department."""
        self._require("requeued", {Status.ASSIGNED, Status.IN_PROGRESS})
        previous = self.department.code if self.department else None
        self._withdraw_department_requests(actor, at, N_("The case was sent back."))
        self.department = None
        self.department_id = None
        self.due_at = None
        self.assigned_at = None
        self.record(
            "requeued", actor, at, to_status=Status.TRIAGE, reason=reason, department=previous
        )

    def record_visit(
        self,
        actor: Actor,
        at: datetime,
        *,
        reached: bool,
        solved: bool | None,
        satisfaction: Satisfaction | None,
        note: str = "",
        channel: VisitChannel | str = VisitChannel.PHONE,
        contacted: bool | None = None,
    ) -> ReturnVisit:
        """The return visit (回访) to this case's complainant by `channel`: reached or not,
        solved or not, how satisfied, and whether the department contacted the citizen in
        time (`contacted`, None when not asked or not answered; the response rate's source).

        A visit that reached the citizen is valid (有效回访) and moves the case to VISITED. One
        that did not is logged as a failed attempt (event "visited" with valid=false) and the
        case stays REPLIED, so that the visit can be tried again; after enough failed
        attempts a supervisor may close it with a reason (`close_without_visit`).
        """
        self._require("visited", self._visitable_statuses())
        visit = self._new_visit(actor, at, reached, solved, satisfaction, note, channel)
        visit.contacted = contacted if reached else None
        self.visits.append(visit)
        self.record(
            "visited",
            actor,
            at,
            to_status=Status.VISITED if visit.valid else None,
            reason=visit.note,
            reached=reached,
            solved=visit.solved,
            satisfaction=visit.satisfaction,
            channel=visit.channel,
            valid=visit.valid,
            contacted=visit.contacted,
        )
        return visit

    def record_citizen_visit(
        self,
        citizen_case: Case,
        actor: Actor,
        at: datetime,
        *,
        reached: bool,
        solved: bool | None,
        satisfaction: Satisfaction | None,
        note: str = "",
        channel: VisitChannel | str = VisitChannel.PHONE,
        contacted: bool | None = None,
    ) -> ReturnVisit:
        """The return visit to the complainant of `citizen_case`, a case merged into this one.

        Allowed once this case is replied (REPLIED or VISITED); its status does not change.
        The visit is logged on both cases: here with the note, on the merged case publicly
        and without the note, so that its citizen sees on the tracking page that they were
        called back.
        """
        self._require("visited", {Status.REPLIED, Status.VISITED})
        if citizen_case.status != Status.MERGED or citizen_case.merge_target is not self:
            raise IllegalTransition(
                N_("Case %(source)s is not merged into %(number)s."),
                source=citizen_case.tracking_number,
                number=self.tracking_number,
            )
        visit = self._new_visit(actor, at, reached, solved, satisfaction, note, channel)
        visit.citizen_case_id = citizen_case.id
        visit.contacted = contacted if reached else None
        self.visits.append(visit)
        outcome = {
            "reached": reached,
            "solved": visit.solved,
            "satisfaction": visit.satisfaction,
            "channel": visit.channel,
            "valid": visit.valid,
            "contacted": visit.contacted,
        }
        self.record(
            "citizen_visited",
            actor,
            at,
            reason=visit.note,
            citizen_case=citizen_case.tracking_number,
            **outcome,
        )
        citizen_case.record("visited", actor, at, public=True, on=self.tracking_number, **outcome)
        return visit

    @staticmethod
    def _new_visit(
        actor: Actor,
        at: datetime,
        reached: bool,
        solved: bool | None,
        satisfaction: Satisfaction | None,
        note: str,
        channel: VisitChannel | str = VisitChannel.PHONE,
    ) -> ReturnVisit:
        if channel not in set(VisitChannel):
            raise IllegalTransition(
                N_("Unknown way of calling back: %(channel)s."), channel=channel
            )
        if reached and (solved is None or satisfaction is None):
            raise IllegalTransition(
                N_("When the citizen was reached, say whether it is solved and how satisfied.")
            )
        if not reached:
            solved, satisfaction = None, None
        return ReturnVisit(
            at=at,
            reached=reached,
            solved=solved,
            satisfaction=str(satisfaction) if satisfaction else None,
            note=(note or "").strip(),
            visitor_id=actor.id if isinstance(actor, User) else None,
            channel=str(channel),
            # Only a visit that reached the citizen counts (有效回访).
            valid=bool(reached),
        )

    def rework(self, actor: Actor, at: datetime, reason: str, due_at: datetime) -> None:
        """Send the case back to its department after an unsatisfying visit (重办)."""
        self._require("reworked", {Status.VISITED})
        reason = self._require_reason(reason)
        self.rework_count += 1
        self.due_at = due_at
        # The extended deadline was the old one's: the rework deadline replaces it.
        self.extended_to = None
        self.record(
            "reworked",
            actor,
            at,
            to_status=Status.IN_PROGRESS,
            reason=reason,
            public=True,
            due_at=due_at.isoformat(),
        )

    def close(self, actor: Actor, at: datetime, reason: str = "") -> None:
        """Sign the case off (办结): only after a reply and a return visit."""
        self._require("closed", {Status.VISITED})
        visit = self.latest_visit
        if not self.replies or visit is None:
            raise IllegalTransition(N_("A case closes only after a reply and a return visit."))
        if not visit.valid:
            raise IllegalTransition(
                N_("A case closes only after a valid return visit: one that reached the citizen.")
            )
        if visit.satisfaction == Satisfaction.UNSATISFIED or visit.solved is False:
            reason = self._require_reason(reason)
        self.closed_at = at
        self.record("closed", actor, at, to_status=Status.CLOSED, reason=reason, public=True)

    def reject(
        self,
        actor: Actor,
        at: datetime,
        reason: str,
        *,
        outcome: RejectionReason | None = None,
        public_reason: str = "",
        referred_to: str = "",
    ) -> None:
        """Do not accept the case (未予受理 / 无效): spam, a duplicate, not ours to handle …

        `reason` is internal (the supervisors' record); `outcome` is the public reason from
        the configured list, `public_reason` an optional explanation for the citizen, and
        `referred_to` the outside body the citizen should turn to, required when the
        outcome says so.
        """
        self._require("rejected", {Status.RECEIVED, Status.TRIAGE})
        if any(e.action == "merged_in" for e in self.events):
            # Their citizens follow this case: rejecting it would cut them off again.
            raise IllegalTransition(
                N_(
                    "Other cases were merged into %(number)s and their citizens wait for its "
                    "answer: it cannot be rejected."
                ),
                number=self.tracking_number,
            )
        reason = self._require_reason(reason)
        referred_to = " ".join((referred_to or "").split())
        if outcome is not None and outcome.refer and not referred_to:
            raise IllegalTransition(N_("Name the body the citizen should turn to."))
        self.rejection_reason = reason
        self.rejection_code = outcome.code if outcome is not None else ""
        self.public_reason = (public_reason or "").strip()
        self.referred_to = referred_to if outcome is not None and outcome.refer else ""
        self.closed_at = at
        self.record(
            "rejected",
            actor,
            at,
            to_status=Status.REJECTED,
            reason=reason,
            public=True,
            **({"code": self.rejection_code} if self.rejection_code else {}),
            **({"referred_to": self.referred_to} if self.referred_to else {}),
        )

    def merge_into(
        self,
        target: Case,
        actor: Actor,
        at: datetime,
        reason: str = "",
        *,
        deadlines: Deadlines | None = None,
    ) -> None:
        """Fold this case into another about the same issue (合并).

        An urgent case carries its urgency to ``target``, as a repeat call reporting the
        hazard does (`triage.urgency.escalate`): urgent, with this case's reasons added and
        its deadlines no later than this case's own (event "flagged_urgent" with ``source``).
        ``deadlines`` (the office's commitments) count the urgent ones; ValueError when an
        urgent case is merged without them, before anything changes."""
        self._require(
            "merged",
            {Status.RECEIVED, Status.TRIAGE, Status.ASSIGNED, Status.IN_PROGRESS},
        )
        if self.urgent and deadlines is None:
            raise ValueError("merging an urgent case needs the deadlines to carry its urgency")
        if target is self or target.id == self.id:
            raise IllegalTransition(N_("A case cannot be merged into itself."))
        if target.status in FINAL_STATUSES:
            raise IllegalTransition(
                N_("Cannot merge into %(number)s: it is %(status)s."),
                number=target.tracking_number,
                status=target.status,
            )
        waiting = self.status in (Status.RECEIVED, Status.TRIAGE)
        self.merged_into = target
        self.closed_at = at
        self.record(
            "merged",
            actor,
            at,
            to_status=Status.MERGED,
            reason=reason,
            public=True,
            into=target.tracking_number,
        )
        target.record(
            "merged_in", actor, at, reason=reason, source=self.tracking_number, public=False
        )
        if self.urgent and deadlines is not None:
            # Imported here: triage.urgency imports this module.
            from triage.urgency import escalate

            escalate(
                target,
                actor,
                at,
                self.urgent_reasons,
                deadlines,
                source=self.tracking_number,
                triage_due_by=self.triage_due_at if waiting else None,
                due_by=None if waiting else self.due_at,
            )

    # -- extensions, self-check and delay reports (延期, 自律) -------------------------------

    # The statuses in which the department handles the case and its deadline runs.
    HANDLING = frozenset({Status.ASSIGNED, Status.IN_PROGRESS})

    @property
    def sent_replies(self) -> list[CaseReply]:
        """Replies that went out to the citizen, oldest first."""
        held = (ReplyState.PENDING_SIGN_OFF, ReplyState.RETURNED)
        return [r for r in self.replies if r.state not in held]

    @property
    def pending_draft(self) -> CaseReply | None:
        """The reply of the case's department waiting for its head's sign-off, if any (at
        most one). A draft left by a department the case was transferred away from waits for
        nobody: it neither blocks the new department's reply nor can be signed."""
        return next(
            (
                r
                for r in self.replies
                if r.state == ReplyState.PENDING_SIGN_OFF and r.department_id == self.department_id
            ),
            None,
        )

    @property
    def returned_drafts(self) -> list[CaseReply]:
        """Drafts the head sent back, with the head's note, oldest first."""
        return [r for r in self.replies if r.state == ReplyState.RETURNED]

    @property
    def pending_extension(self) -> ExtensionRequest | None:
        """The extension request waiting for a supervisor's decision, if any (at most one)."""
        return next((r for r in self.extension_requests if r.state == RequestState.PENDING), None)

    @property
    def delay_reports(self) -> list[CaseEvent]:
        """The department's own reports of its delay (reason = why), oldest first."""
        return [e for e in self.events if e.action == "delay_reported"]

    def is_head_of_department(self, actor: Actor) -> bool:
        """Is `actor` the head (负责人) of the department that handles this case?"""
        return (
            isinstance(actor, User)
            and actor.head
            and actor.role == Role.HANDLER
            and actor.department_id is not None
            and actor.department_id == self.department_id
        )

    def _flush_for_id(self) -> None:
        """Events name the reply or request they are about by id: flush to get it (a case
        outside a session, as in the unit tests, records None)."""
        from sqlalchemy.orm import object_session

        session = object_session(self)
        if session is not None:
            session.flush()

    def request_extension(
        self,
        actor: Actor,
        at: datetime,
        reason: str,
        proposed_due_at: datetime,
        *,
        latest_due_at: datetime,
        allowed: int,
    ) -> ExtensionRequest:
        """The department asks to move its handling deadline (延期申请) to `proposed_due_at`.

        `latest_due_at` is the furthest the policy allows (the current deadline plus
        `extension_max_working_days`), `allowed` how many extensions a case may be granted.
        Refused (IllegalTransition) outside handling, without a reason, while another request
        waits, once `allowed` are granted, or for a date not after the current deadline or
        beyond `latest_due_at`.
        """
        self._require("extended", self.HANDLING)
        reason = self._require_reason(reason)
        self._check_extension(proposed_due_at, latest_due_at, allowed)
        if self.pending_extension is not None:
            raise IllegalTransition(
                N_("An extension request already waits for a supervisor's decision.")
            )
        request = ExtensionRequest(
            requested_by_id=actor.id if isinstance(actor, User) else None,
            requested_at=at,
            reason=reason,
            proposed_due_at=proposed_due_at,
            previous_due_at=self.due_at,
            state=RequestState.PENDING,
            decision_reason="",
        )
        self.extension_requests.append(request)
        self._flush_for_id()
        self.record(
            "extension_requested",
            actor,
            at,
            reason=reason,
            request_id=request.id,
            proposed_due_at=proposed_due_at.isoformat(),
        )
        return request

    def _check_extension(self, due_at: datetime, latest_due_at: datetime, allowed: int) -> None:
        if (self.extension_count or 0) >= allowed:
            raise IllegalTransition(
                N_("This case has had the %(allowed)s extension(s) it may have."),
                allowed=allowed,
            )
        if self.due_at is None or due_at <= self.due_at:
            raise IllegalTransition(
                N_("The new deadline must be after the current one (%(due)s)."),
                due=self.due_at,
            )
        if due_at > latest_due_at:
            raise IllegalTransition(
                N_("The new deadline may be %(latest)s at the latest."), latest=latest_due_at
            )

    def _decidable(self, request: ExtensionRequest) -> None:
        if request not in self.extension_requests:
            raise IllegalTransition(N_("That extension request is not about this case."))
        if request.state != RequestState.PENDING:
            raise IllegalTransition(N_("That extension request was already decided."))

    def grant_extension(
        self,
        actor: Actor,
        at: datetime,
        request: ExtensionRequest,
        *,
        latest_due_at: datetime,
        allowed: int,
        due_at: datetime | None = None,
        reason: str = "",
    ) -> None:
        """A supervisor grants the request: the handling deadline moves to `due_at` (the
        proposed date if None; it may be earlier than proposed, never later). Public, so
        that the citizen sees the new deadline; the reasons stay internal."""
        self._require("extended", self.HANDLING)
        self._decidable(request)
        new_due = due_at if due_at is not None else request.proposed_due_at
        if new_due > request.proposed_due_at:
            raise IllegalTransition(
                N_("A supervisor may shorten the proposed date, not extend it.")
            )
        self._check_extension(new_due, latest_due_at, allowed)
        previous = self.due_at
        assert previous is not None  # _check_extension refuses a case without a deadline
        request.state = RequestState.GRANTED
        request.decided_by_id = actor.id if isinstance(actor, User) else None
        request.decided_at = at
        request.decision_reason = (reason or "").strip()
        request.granted_due_at = new_due
        self.due_at = new_due
        self.extended_to = new_due
        self.extension_count = (self.extension_count or 0) + 1
        self.record(
            "extension_granted",
            actor,
            at,
            reason=request.decision_reason,
            public=True,
            request_id=request.id,
            due_at=new_due.isoformat(),
            previous=previous.isoformat(),
        )

    def refuse_extension(
        self, actor: Actor, at: datetime, request: ExtensionRequest, reason: str
    ) -> None:
        """A supervisor refuses the request, with a reason; the deadline stays."""
        self._decidable(request)
        reason = self._require_reason(reason)
        request.state = RequestState.REFUSED
        request.decided_by_id = actor.id if isinstance(actor, User) else None
        request.decided_at = at
        request.decision_reason = reason
        self.record("extension_refused", actor, at, reason=reason, request_id=request.id)

    def _draft_for_head(self, actor: Actor, reply: CaseReply) -> None:
        self._require("signed off", self.HANDLING)
        if reply is not self.pending_draft:
            raise IllegalTransition(N_("That reply does not wait for a sign-off."))
        if not self.is_head_of_department(actor):
            raise IllegalTransition(
                N_("Only the head of the case's department signs its replies off.")
            )

    def sign_off_reply(self, actor: Actor, at: datetime, reply: CaseReply) -> None:
        """The department head signs a draft off (自律): it goes out to the citizen now and
        the case is replied."""
        self._draft_for_head(actor, reply)
        reply.state = ReplyState.SENT
        reply.signed_off_by_id = actor.id  # type: ignore[union-attr]
        reply.signed_off_at = at
        # The draft is sent: what is left to withdraw is a waiting extension request.
        self._withdraw_department_requests(actor, at, N_("The case was replied."))
        self.replied_at = at
        self.record(
            "reply_signed_off", actor, at, to_status=Status.REPLIED, public=True, reply_id=reply.id
        )

    def return_reply(self, actor: Actor, at: datetime, reply: CaseReply, note: str) -> None:
        """The department head sends a draft back to be rewritten, with a note why."""
        self._draft_for_head(actor, reply)
        note = self._require_reason(note)
        reply.state = ReplyState.RETURNED
        reply.sign_off_note = note
        self.record("reply_returned", actor, at, reason=note, reply_id=reply.id)

    def _withdraw_department_requests(self, actor: Actor, at: datetime, why: str) -> None:
        """The case leaves its department (transfer, send-back) or is replied: the
        department's draft waiting for its head and its extension request waiting for a
        supervisor concern a deadline and a reply it no longer owes, so both end here, logged
        with `why`."""
        draft = self.pending_draft
        if draft is not None:
            draft.state = ReplyState.RETURNED
            draft.sign_off_note = why
            self.record("reply_returned", actor, at, reason=why, reply_id=draft.id, withdrawn=True)
        request = self.pending_extension
        if request is not None:
            request.state = RequestState.REFUSED
            request.decided_by_id = actor.id if isinstance(actor, User) else None
            request.decided_at = at
            request.decision_reason = why
            self.record(
                "extension_refused", actor, at, reason=why, request_id=request.id, withdrawn=True
            )

    def report_delay(self, actor: Actor, at: datetime, reason: str) -> CaseEvent:
        """An overdue department reports its delay and why (自律); the report and the
        supervision findings show the reason. Only while the case is overdue."""
        self._require("reported late", self.HANDLING)
        reason = self._require_reason(reason)
        if not self.is_overdue(at):
            raise IllegalTransition(N_("The case is not overdue: there is no delay to report."))
        return self.record("delay_reported", actor, at, reason=reason)

    # -- return visits' validity, spot checks and observations (回访, 抽查, 社会监督) -----------

    def _visitable_statuses(self) -> set[Status]:
        """REPLIED; also VISITED when its latest visit is not valid (recorded before visits
        had a validity), so that such a case can still get its valid visit."""
        latest = self.latest_visit
        if self.status == Status.VISITED and latest is not None and not latest.valid:
            return {Status.REPLIED, Status.VISITED}
        return {Status.REPLIED}

    @property
    def failed_visit_attempts(self) -> int:
        """Return visits since the latest reply that did not reach the citizen (own visits
        only): what `close_without_visit` counts."""
        since = self.replied_at
        return sum(
            1
            for v in self.own_visits
            if not v.valid and (since is None or v.at is None or v.at >= since)
        )

    @property
    def review_pending(self) -> bool:
        """An unsatisfied visit was sent to a supervisor's review, not decided yet."""
        if self.status != Status.VISITED:
            return False
        for e in reversed(self.events):
            if e.action == "review_requested":
                return True
            if e.action in ("visited", "reworked", "closed"):
                return False
        return False

    def close_without_visit(
        self, actor: Actor, at: datetime, reason: str, attempts_required: int
    ) -> None:
        """A supervisor closes a replied case whose citizen could not be reached (办结, 无法
        回访) after `attempts_required` failed return visits ([supervision]
        visit_attempts_before_close), with a recorded reason. Event "closed_without_visit"."""
        self._require("closed", self._visitable_statuses())
        reason = self._require_reason(reason)
        attempts = self.failed_visit_attempts
        if attempts < attempts_required:
            raise IllegalTransition(
                N_(
                    "Closing without a valid return visit needs %(required)s failed attempts "
                    "to reach the citizen; %(attempts)s recorded."
                ),
                required=attempts_required,
                attempts=attempts,
            )
        self.closed_at = at
        self.record(
            "closed_without_visit",
            actor,
            at,
            to_status=Status.CLOSED,
            reason=reason,
            public=True,
            attempts=attempts,
        )

    def request_review(self, actor: Actor, at: datetime, reason: str) -> None:
        """Send an unsatisfied (or unsolved) visit to a supervisor's review instead of rework:
        the reviewer then closes the case with a reason or sends it for rework."""
        self._require("reviewed", {Status.VISITED})
        visit = self.latest_visit
        if visit is None or not (
            visit.satisfaction == Satisfaction.UNSATISFIED or visit.solved is False
        ):
            raise IllegalTransition(
                N_("Only an unsatisfied or unsolved return visit goes to a supervisor's review.")
            )
        if self.review_pending:
            raise IllegalTransition(N_("This case already waits for a supervisor's review."))
        reason = self._require_reason(reason)
        self.record("review_requested", actor, at, reason=reason)

    def mark_drawn(self, draw: SpotCheckDraw, actor: Actor, at: datetime) -> None:
        """This closed case was drawn for an unannounced check (抽查). Event
        "spot_check_drawn" {draw_id}."""
        self.record("spot_check_drawn", actor, at, draw_id=draw.id)

    def _check_pending(self, check: SpotCheck, method: str) -> None:
        if check.case_id != self.id:
            raise IllegalTransition(N_("That check is not of this case."))
        if check.result != SpotCheckResult.PENDING:
            raise IllegalTransition(N_("This check was already recorded."))
        if self.status != Status.CLOSED:
            # Reopened since the draw (by another check's failure or otherwise): a result now
            # would contradict the case's state; the check that reopened it stands.
            raise IllegalTransition(
                N_("The case was reopened since it was drawn: this check no longer applies.")
            )
        if method not in (VisitChannel.PHONE, VisitChannel.VISIT):
            raise IllegalTransition(N_("A check is a call or a visit."))

    def pass_spot_check(
        self, check: SpotCheck, actor: Actor, at: datetime, method: str, note: str = ""
    ) -> None:
        """The verification call or visit confirmed the case was handled. Event
        "spot_check_passed" {check_id, method}."""
        self._check_pending(check, method)
        check.result = SpotCheckResult.PASSED
        check.method, check.checked_at = method, at
        check.checked_by_id = actor.id if isinstance(actor, User) else None
        check.note = (note or "").strip()
        self.record(
            "spot_check_passed", actor, at, reason=check.note, check_id=check.id, method=method
        )

    def fail_spot_check(
        self,
        check: SpotCheck,
        actor: Actor,
        at: datetime,
        method: str,
        note: str,
        due_at: datetime,
    ) -> None:
        """The verification found the case not handled: it is reopened for rework (重办) with
        the new deadline `due_at`, and counts against its department. Event
        "spot_check_failed" {check_id, method, department}."""
        self._check_pending(check, method)
        self._require("reopened", {Status.CLOSED})
        note = self._require_reason(note)
        check.result = SpotCheckResult.FAILED
        check.method, check.checked_at, check.note = method, at, note
        check.checked_by_id = actor.id if isinstance(actor, User) else None
        self.rework_count += 1
        self.due_at = due_at
        self.extended_to = None
        self.closed_at = None
        self.record(
            "spot_check_failed",
            actor,
            at,
            to_status=Status.IN_PROGRESS,
            reason=note,
            public=True,
            check_id=check.id,
            method=method,
            department=self.department.code if self.department else None,
            due_at=due_at.isoformat(),
        )

    def urge(self, actor: Actor, at: datetime, note: str, **detail: Any) -> CaseEvent:
        """The citizen called again about this open case (催办): counted in `urge_count` and
        logged as event "urged" (the note as its reason; `detail` e.g. the call's id), seen
        by the department on the case's timeline."""
        self._require("urged", OPEN_STATUSES)
        self.urge_count += 1
        return self.record(
            "urged", actor, at, reason=(note or "").strip(), count=self.urge_count, **detail
        )

    def reopen(
        self, actor: Actor, at: datetime, reason: str, due_at: datetime, **detail: Any
    ) -> CaseEvent:
        """The citizen called: the closed case is not solved after all. It goes back to its
        department for rework (重办) with the new deadline `due_at`; a reason is required.
        Event "reopened" {department, due_at, **detail (e.g. the call's id)}."""
        self._require("reopened", {Status.CLOSED})
        reason = self._require_reason(reason)
        if self.department_id is None:
            raise IllegalTransition(N_("The case has no department to reopen it with."))
        self.rework_count += 1
        self.due_at = due_at
        self.extended_to = None
        self.closed_at = None
        return self.record(
            "reopened",
            actor,
            at,
            to_status=Status.IN_PROGRESS,
            reason=reason,
            public=True,
            department=self.department.code if self.department else None,
            due_at=due_at.isoformat(),
            **detail,
        )

    def note_observation(self, observation: Observation, at: datetime) -> None:
        """An external supervisor filed an observation on this case. Event
        "observation_filed" {observation_id}."""
        observer = observation.observer
        self.record(
            "observation_filed",
            observer if observer is not None else "observer",
            at,
            observation_id=observation.id,
        )

    def answer_observation(self, observation: Observation, actor: Actor, at: datetime) -> None:
        """A supervisor answered an observation on this case (triage/observations.py fills
        the answer in). Event "observation_answered" {observation_id}; the answer is the
        event's reason."""
        if observation.case_id != self.id or observation.state != ObservationState.ANSWERED:
            raise IllegalTransition(N_("That observation is not answered on this case."))
        self.record(
            "observation_answered",
            actor,
            at,
            reason=observation.answer,
            observation_id=observation.id,
        )


@event.listens_for(Session, "before_flush")
def _events_are_append_only(session: Session, flush_context: Any, instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, CaseEvent) and (obj in session.deleted or session.is_modified(obj)):
            raise IllegalTransition(N_("The audit log is append-only: events cannot change."))


class SavedView(Base):
    """A case list a user saved by name (its query string), or, with no user, a role's
    default list (migration 0014; triage/case_list.py reads them)."""

    __tablename__ = "saved_views"
    __table_args__ = (
        UniqueConstraint("user_id", "role", "name", name="uq_saved_views_owner"),
        # A role's shared views (user_id NULL), which the constraint above lets through: NULLs
        # are distinct in it (migration 0031). `save_view` upserts against one or the other.
        Index(
            "uq_saved_views_shared",
            "role",
            "name",
            unique=True,
            sqlite_where=text("user_id IS NULL"),
            postgresql_where=text("user_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # For a role's shared default (user_id NULL): the role it is for; "" for a user's own.
    role: Mapped[str] = mapped_column(String(20), default="")
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[str] = mapped_column(String(2000))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EnrichmentPending(Base):
    """A case registered without its similar-case suggestions and search rows, which
    `triage.enrichment.enrich_pending` adds after the commit (then deletes this row)."""

    __tablename__ = "enrichment_pending"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # Only so that a flush inserts the case first; never loaded.
    case: Mapped[Case] = relationship(lazy="raise", passive_deletes=True)


class CallKey(Base):
    """A call's idempotency key (the phone system's call id, or ``call:<number>@<time>``)
    that is not a case's own ``external_id``: the call id of a repeat call (催办) or a reopen
    logged at the desk, kept on its event. The call import and the desk look keys up here as
    well as in `Case.external_id`, so a call the system has seen is never a new case
    (`triage.call_keys`)."""

    __tablename__ = "call_keys"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("case_events.id", ondelete="CASCADE"))
    # Only so that a flush inserts the case and the event first; never loaded.
    case: Mapped[Case] = relationship(lazy="raise", passive_deletes=True)
    event: Mapped[CaseEvent | None] = relationship(lazy="raise", passive_deletes=True)


class AppMark(Base):
    """A fact about how stored data was made that the application must check at start, by
    name: ``caller_keys_area_code`` (the ``[app] area_code`` the cases' caller keys were
    computed with; `triage.call_keys.rekey_for_area_code`)."""

    __tablename__ = "app_marks"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), default="")


class DuplicateSignature(Base):
    """One of the few hashed grams an open case is found by as a possible duplicate; kept and
    read by `triage.duplicate_index`. The primary key is the lookup order: a hash, then the
    newest cases first."""

    __tablename__ = "duplicate_signatures"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012

    hash: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # Minutes since 1970 UTC: a small integer keeps the index small on SQLite too.
    received_minute: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class SimilarityProfile(Base):
    """A case's similarity profile (`triage.similarity.Profile.data`, about 1 KiB), stored
    when the case is enriched so that scoring it as another case's candidate reads it instead
    of computing it again (`triage.similarity_store`). ``version``: the
    `triage.similarity.PROFILE_VERSION` it was computed with; one of another version is
    computed again when next needed."""

    __tablename__ = "similarity_profiles"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    version: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class AdminEvent(Base):
    """One line of the administrators' own audit log (triage/admin_log.py): who changed which
    account, department or API key, when, and what (never a password or a key)."""

    __tablename__ = "admin_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(200), default="")
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# The kanban's closed column: the latest closed cases, office-wide or of one department,
# read through an index instead of sorting every closed case (migration 0013).
Index("ix_cases_status_closed_at", Case.status, Case.closed_at)
Index("ix_cases_department_id_status_closed_at", Case.department_id, Case.status, Case.closed_at)
# The month's overdue cases are those whose deadline fell in the month (migration 0017).
Index("ix_cases_due_at", Case.due_at)


class FigureSnapshot(Base):
    """A month's figures as computed at `computed_at` (triage/report/snapshots.py), so that
    the dashboard and the public page read one row instead of aggregating the month.

    `scope` names what was computed ("dashboard": all figures; "public": without details);
    `lease_until` is set while one process computes a missing snapshot, so that others wait
    for it instead of computing it too."""

    __tablename__ = "figure_snapshots"
    __table_args__ = (UniqueConstraint("scope", "month", name="uq_figure_snapshots_scope_month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(20))
    month: Mapped[str] = mapped_column(String(7))
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Whether the month's window had ended (its cut-off passed) when computed: then final.
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    figures: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # What the figures depend on besides the data (weights, cut-off, calendar): a snapshot
    # computed under another config is computed again.
    policy_key: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


# `Case.api_key_id` refers to the api_keys table: it must be known wherever cases are used.
from triage import api_keys as _api_keys  # noqa: E402, F401

# The case lists' order and filter indexes (migration 0014), declared beside their orders.
from triage import case_list as _case_list  # noqa: E402, F401

# The search index's table, and the flush hook that keeps it, wherever cases change.
from triage import search_index as _search_index  # noqa: E402, F401

# The month figures' snapshots marked for recomputing when a case of a closed month is
# registered late: the flush hook, wherever cases change.
from triage.report import snapshots as _snapshots  # noqa: E402, F401
