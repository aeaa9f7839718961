"""The satisfaction link that comes with a reply notice: a single-use signed token, no login.

A token names a case, one of its replies and an expiry, signed with the application's
secret (HMAC-SHA256)::

    <case id>-<reply id>-<expiry, minutes since the epoch, base 36>.<22 characters of MAC>

about 35 characters, short enough for an SMS. Nothing in it is secret (ids and a time);
what a forger lacks is the MAC. `read_token` tells a good token from an expired one (the MAC
holds, the time has passed: the page shows the hotline) and from a tampered one (None).

`answer` records the citizen's answer once per (case, reply): the unique constraint on
`satisfaction_responses` makes a second answer fail even from another process at the same
moment. A good answer is a valid return visit (有效回访) on the web channel; unsatisfied or
unsolved sends the case to a supervisor's review or to rework, as `[satisfaction]
unsatisfied` says. Functions flush, never commit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from triage import system_reasons
from triage.deadlines import Deadlines
from triage.models import (
    N_,
    Base,
    Case,
    CaseReply,
    IllegalTransition,
    ReplyState,
    Satisfaction,
    Status,
    UTCDateTime,
    VisitChannel,
)

ACTOR = f"citizen ({VisitChannel.WEB})"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_COMMENT = 2000


class SatisfactionResponse(Base):
    """A citizen's answer through a satisfaction link: one per (case, reply)."""

    __tablename__ = "satisfaction_responses"
    __table_args__ = (
        UniqueConstraint("case_id", "reply_id", name="uq_satisfaction_responses_case_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    reply_id: Mapped[int] = mapped_column(ForeignKey("case_replies.id"))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    solved: Mapped[bool] = mapped_column(Boolean)
    satisfaction: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str] = mapped_column(Text, default="")
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("return_visits.id"))
    # Outcome values: what the answer did to the case.
    outcome: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Outcome(StrEnum):
    VISITED = "visited"  # a valid return visit; the case waits to be closed
    REVIEW = "review"  # unsatisfied or unsolved: a supervisor reviews it
    REWORK = "rework"  # unsatisfied or unsolved: back to the department


@dataclass(frozen=True)
class Token:
    case_id: int
    reply_id: int
    expires_at: datetime
    text: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def _mac(secret: bytes, payload: str) -> str:
    raw = hmac.new(secret, f"satisfaction|{payload}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw).decode()[:22]


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def make_token(secret: bytes, case_id: int, reply_id: int, expires_at: datetime) -> str:
    """The link token for `reply_id` of `case_id`, good until `expires_at` (to the minute,
    rounded up)."""
    minutes = -(-int((expires_at - _EPOCH).total_seconds()) // 60)
    payload = f"{case_id}-{reply_id}-{_b36(minutes)}"
    return f"{payload}.{_mac(secret, payload)}"


def issue_token(secret: bytes, case: Case, reply: CaseReply, now: datetime, days: int) -> str:
    """The token a reply notice carries, good for `days` days from `now`."""
    return make_token(secret, case.id, reply.id, now + timedelta(days=days))


def read_token(secret: bytes, text: str) -> Token | None:
    """The token's case, reply and expiry if its MAC holds (expired or not); None for
    anything else: a wrong MAC, a malformed or overlong string."""
    if not text or len(text) > 100 or not text.isascii():
        return None
    payload, dot, mac = text.partition(".")
    if not dot or not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        return None
    parts = payload.split("-")
    if len(parts) != 3:
        return None
    try:
        case_id, reply_id, minutes = int(parts[0]), int(parts[1]), int(parts[2], 36)
        expires = _EPOCH + timedelta(minutes=minutes)
    except (ValueError, OverflowError):
        return None
    if not (0 < case_id < 2**31 and 0 < reply_id < 2**31):
        return None
    return Token(case_id, reply_id, expires, text)


class LinkState(StrEnum):
    OPEN = "open"  # the citizen may answer
    ANSWERED = "answered"  # answered already through this link
    SUPERSEDED = "superseded"  # a later reply, or a visit already done: nothing to ask
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # the case or the reply is gone or does not match


@dataclass(frozen=True)
class Link:
    state: LinkState
    case: Case | None = None
    reply: CaseReply | None = None
    response: SatisfactionResponse | None = None


def look_up(session: Session, token: Token | None, now: datetime) -> Link:
    """What the page shows for `token` (None: tampered). Reads the case, its reply and an
    earlier answer by primary or unique key: the same cost for any number of cases."""
    if token is None:
        return Link(LinkState.UNKNOWN)
    case = session.get(Case, token.case_id)
    reply = session.get(CaseReply, token.reply_id)
    if case is None or reply is None or reply.case_id != case.id:
        return Link(LinkState.UNKNOWN)
    if reply.state != ReplyState.SENT:
        return Link(LinkState.UNKNOWN)
    response = session.scalar(
        select(SatisfactionResponse).where(
            SatisfactionResponse.case_id == case.id,
            SatisfactionResponse.reply_id == reply.id,
        )
    )
    if response is not None:
        return Link(LinkState.ANSWERED, case, reply, response)
    if token.expired(now):
        return Link(LinkState.EXPIRED, case, reply)
    latest = case.latest_reply
    if latest is None or latest.id != reply.id or case.status != Status.REPLIED:
        return Link(LinkState.SUPERSEDED, case, reply)
    return Link(LinkState.OPEN, case, reply)


class AlreadyAnswered(Exception):
    """The link was used meanwhile (this or another process)."""


def answer(
    session: Session,
    link: Link,
    token: Token,
    *,
    solved: bool,
    satisfaction: Satisfaction,
    comment: str,
    unsatisfied: str,
    deadlines: Deadlines,
    now: datetime,
    contacted: bool | None = None,
) -> SatisfactionResponse:
    """Records the citizen's answer to an OPEN link: a valid return visit on the web channel
    (event "visited"; `contacted`: whether the department contacted them in time, None when
    not answered), then, when unsatisfied or unsolved, a supervisor's review
    ("review_requested") or rework ("reworked") by `unsatisfied` ("review" / "rework").

    Raises AlreadyAnswered when another answer won the unique constraint (the caller's
    transaction must then be rolled back), IllegalTransition when the case moved on."""
    if link.state != LinkState.OPEN or link.case is None or link.reply is None:
        raise IllegalTransition(N_("This link cannot be answered now."))
    case, reply = link.case, link.reply
    comment = (comment or "").strip()[:MAX_COMMENT]
    response = SatisfactionResponse(
        case_id=case.id,
        reply_id=reply.id,
        token_digest=token.digest,
        solved=solved,
        satisfaction=str(satisfaction),
        comment=comment,
        outcome=Outcome.VISITED,
        created_at=now,
    )
    # The unique row first: of two answers at once, the loser stops here, before it touches
    # the case. No savepoint: the caller rolls the whole transaction back anyway, and on
    # SQLite (pysqlite opens no transaction before a SAVEPOINT) releasing one commits.
    session.add(response)
    try:
        session.flush()
    except IntegrityError as e:
        raise AlreadyAnswered from e
    # The note is the citizen's own words alone: that the visit came through the link is
    # a fact of the visit (web channel, no staff member), said in the reader's language.
    visit = case.record_visit(
        ACTOR,
        now,
        reached=True,
        solved=solved,
        satisfaction=satisfaction,
        note=comment,
        channel=VisitChannel.WEB,
        contacted=contacted,
    )
    session.flush()
    response.visit_id = visit.id
    if satisfaction == Satisfaction.UNSATISFIED or not solved:
        why = _why(unsatisfied=satisfaction == Satisfaction.UNSATISFIED, unsolved=not solved)
        if unsatisfied == Outcome.REWORK:
            from triage.cases import rework_case  # triage.cases imports this module

            # A department deactivated since the reply: the case goes to its successor.
            rework_case(case, "system", deadlines, now, why)
            response.outcome = Outcome.REWORK
        else:
            case.request_review("system", now, why)
            response.outcome = Outcome.REVIEW
    session.flush()
    return response


def _why(*, unsatisfied: bool, unsolved: bool) -> str:
    """The review's or rework's reason: a neutral code (triage/system_reasons.py)."""
    if unsatisfied and unsolved:
        return system_reasons.WEB_VISIT_UNSATISFIED_UNSOLVED
    return (
        system_reasons.WEB_VISIT_UNSATISFIED if unsatisfied else system_reasons.WEB_VISIT_UNSOLVED
    )
