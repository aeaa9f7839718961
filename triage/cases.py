"""Use cases on cases: register a submission, dispatch, send back, rework.

They take an open SQLAlchemy session and flush, never commit: the request or the CLI command
that called them owns the transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import operator
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Table, TypeDecorator, bindparam, event, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, object_session
from sqlalchemy.sql import sqltypes

from intake.submission import Submission
from triage import (
    call_keys,
    duplicate_index,
    notifications,
    similarity,
    similarity_store,
    system_reasons,
)
from triage.attachments import AttachmentStore
from triage.callers import PLACE_MAX, stamp_caller
from triage.callers import stamp as stamp_caller_keys
from triage.deadlines import Deadlines
from triage.enrichment import CandidateRow, defer_enrichment, open_candidates
from triage.models import (
    N_,
    OPEN_STATUSES,
    UNVERSIONED_ACTIONS,
    Actor,
    Attachment,
    Case,
    CaseEvent,
    Counter,
    Department,
    EnrichmentPending,
    IllegalTransition,
    Status,
    User,
)
from triage.privacy import masked_case_text
from triage.report import snapshots
from triage.staff import lock_departments, successor_of

QUERY_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read out on the phone
QUERY_CODE_LENGTH = 6


class SuggestionLike(Protocol):
    label: str
    confidence: float
    alternatives: Sequence[tuple[str, float]]
    model_version: str


class Router(Protocol):
    """Anything that suggests a department code for a complaint: a model or keyword rules."""

    version: str
    threshold: float

    def suggest(self, subject: str, body: str) -> SuggestionLike: ...


class HazardLike(Protocol):
    urgent: bool
    reasons: Sequence[str]


FindSimilar = Callable[[str, Sequence[tuple[int, str]]], list[tuple[int, float]]]


@dataclass(frozen=True)
class IntakePolicy:
    """What registration needs to know besides the submission itself."""

    deadlines: Deadlines
    router: Router
    detect_hazard: Callable[[str, str], HazardLike]
    attachments: AttachmentStore
    tracking_prefix: str = "MS"
    auto_route: bool = True
    # None: use the threshold the model chose for the target precision.
    auto_route_threshold: float | None = None
    find_similar: FindSimilar | None = None
    duplicate_window_days: int = 30
    # The application's secret: query codes are stored as keyed hashes (see hash_query_code).
    query_code_key: bytes | None = None
    # The office's telephone area code ("010"): a local number without it is the same
    # caller as with it (triage/callers.caller_number).
    area_code: str = ""

    @property
    def threshold(self) -> float:
        if self.auto_route_threshold is not None:
            return self.auto_route_threshold
        return self.router.threshold


@dataclass(frozen=True)
class Registration:
    case: Case
    created: bool
    # Shown once on the receipt; only its hash is stored.
    query_code: str | None = None


_INCREMENT = (
    update(Counter)
    .where(Counter.name == bindparam("counter_name"))
    .values(value=Counter.value + bindparam("step"))
    .returning(Counter.value)
    .execution_options(synchronize_session=False)
)


def next_counter(session: Session, name: str, step: int = 1) -> int:
    """Atomically adds ``step`` (≥ 1) to the named counter and returns the new value, so the
    caller owns the ``step`` values up to it; the row lock serialises concurrent callers until
    the transaction ends.

    One UPDATE … RETURNING when the row exists (every call but a year's first); else the row
    is made (INSERT … ON CONFLICT DO NOTHING: a concurrent first caller may make it too) and
    the UPDATE repeated."""
    params = {"counter_name": name, "step": step}
    value = session.execute(_INCREMENT, params).scalar_one_or_none()
    if value is not None:
        return int(value)
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(Counter).values(name=name, value=0).on_conflict_do_nothing())
    return int(session.execute(_INCREMENT, params).scalar_one())


def new_tracking_number(session: Session, prefix: str, year: int) -> str:
    return f"{prefix}-{year}-{next_counter(session, f'tracking-{year}'):06d}"


_QUERY_CODES = len(QUERY_CODE_ALPHABET) ** QUERY_CODE_LENGTH


def new_query_code() -> str:
    """QUERY_CODE_LENGTH characters of QUERY_CODE_ALPHABET, each uniform and independent:
    the base-31 digits of one uniform number below 31^6 (one draw from the system's random
    source instead of six: 2.6 instead of 8.3 us, a share of each registration's)."""
    number = secrets.randbelow(_QUERY_CODES)
    base = len(QUERY_CODE_ALPHABET)
    chars = []
    for _ in range(QUERY_CODE_LENGTH):
        number, digit = divmod(number, base)
        chars.append(QUERY_CODE_ALPHABET[digit])
    return "".join(chars)


def hash_query_code(code: str, salt: bytes | None = None, key: bytes | None = None) -> str:
    """What is stored of a query code: ``hmac$salt$digest`` keyed with the application's
    secret when ``key`` is given, else ``scrypt$salt$digest``.

    The keyed hash costs microseconds where scrypt costs about 10 ms, which decides how many
    mails a second the intake registers; a copy of the database alone is as useless to a
    guesser with it as with scrypt, and whoever also has the secret can derive web and mail
    codes anyway (`derived_query_code`).
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    normal = normalise_query_code(code).encode()
    if key is not None:
        digest = hmac.new(key, salt + normal, hashlib.sha256).hexdigest()
        return f"hmac${salt.hex()}${digest}"
    digest = hashlib.scrypt(normal, salt=salt, n=2**12, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def normalise_query_code(code: str) -> str:
    """The code as stored: NFKC (full-width letters and digits), upper-case, and only its
    letters and digits, so `ZGU8-TP`, `zgu8 tp` and `ＺＧＵ８ＴＰ` are all `ZGU8TP`."""
    return "".join(c for c in unicodedata.normalize("NFKC", code).upper() if c.isalnum())


def check_query_code(stored: str, code: str, key: bytes | None = None) -> bool:
    """Whether ``code`` is the one whose hash is ``stored`` (either scheme of
    `hash_query_code`; a keyed one needs the same ``key``)."""
    try:
        scheme, salt, digest = stored.split("$")
        salt_bytes = bytes.fromhex(salt)
    except ValueError:
        return False
    if scheme == "scrypt":
        candidate = hash_query_code(code, salt_bytes).split("$")[2]
    elif scheme == "hmac" and key is not None:
        candidate = hash_query_code(code, salt_bytes, key).split("$")[2]
    else:
        return False
    return hmac.compare_digest(candidate, digest)


_BY_EXTERNAL_ID = select(Case).where(
    Case.channel == bindparam("channel"), Case.external_id == bindparam("external_id")
)  # built once: registration runs it for every submission


def find_by_external_id(session: Session, channel: str, external_id: str) -> Case | None:
    """The case the call or message `external_id` of `channel` is part of: the case it
    opened, or the case a repeat call or reopen with that call id was logged on
    (`triage.call_keys`); None when the system has not seen it."""
    found = session.scalar(_BY_EXTERNAL_ID, {"channel": str(channel), "external_id": external_id})
    if found is None and str(channel) == "phone":
        found = call_keys.case_of(session, channel, external_id)
    return found


def derived_query_code(secret: str, external_id: str) -> str:
    """A query code that the same form always gets: a double-clicked submit, answered twice,
    shows the same code on both receipts. Unguessable without the secret."""
    digest = hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).digest()
    return "".join(QUERY_CODE_ALPHABET[b % len(QUERY_CODE_ALPHABET)] for b in digest)[
        :QUERY_CODE_LENGTH
    ]


_DEPARTMENTS = "cases.departments"


def _departments(session: Session) -> dict[str, Department]:
    """The departments by code, read once per transaction (the mail intake registers hundreds
    of cases in one; each registration read them all again)."""
    transaction = session.get_transaction()
    cached = session.info.get(_DEPARTMENTS)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cast("dict[str, Department]", cached[1])
    departments = {d.code: d for d in session.scalars(select(Department)).all()}
    session.info[_DEPARTMENTS] = (transaction, departments)
    return departments


@event.listens_for(Session, "after_flush")
def _forget_departments(session: Session, flush_context: object) -> None:
    """A department added or deleted in the transaction is read again."""
    if _DEPARTMENTS in session.info and any(
        isinstance(obj, Department) for obj in itertools.chain(session.new, session.deleted)
    ):
        del session.info[_DEPARTMENTS]


def register(
    session: Session,
    submission: Submission,
    policy: IntakePolicy,
    now: datetime,
    query_code: str | None = None,
    *,
    flush: bool = True,
) -> Registration:
    """Turns a submission into a case, once: the same (channel, external id) again is a no-op.

    The query code is random unless given (see `derived_query_code`). The new case is
    flushed (it has its id) unless ``flush`` is False: then it is only added to the session,
    for a caller that flushes it together with the rows it makes next.
    """
    existing = find_by_external_id(session, submission.channel, submission.external_id)
    if existing is not None:
        return Registration(existing, created=False)
    code = query_code or new_query_code()
    case = _new_case(session, submission, policy, now, code, None)
    # The counter row stays locked until the transaction commits, so the number is taken
    # last: concurrent submissions wait for each other only as long as necessary.
    year = policy.deadlines.calendar.local(submission.received_at).year
    case.tracking_number = new_tracking_number(session, policy.tracking_prefix, year)
    session.add(case)
    if flush:
        session.flush()
    notifications.note_registered(session, case, code, now)
    return Registration(case, created=True, query_code=code)


class _Batch:
    """The cases of one `register_batch` call that are not flushed yet, as the duplicate
    lookup of the next ones must see them: their index postings and candidate texts."""

    def __init__(self) -> None:
        self.postings: dict[int, list[tuple[int, int]]] = {}
        self.texts: dict[int, tuple[str, str, str, datetime]] = {}
        self.stored: dict[int, _Candidate] = {}

    def stored_texts(self, session: Session, ids: list[int], since: datetime) -> list[Any]:
        """`_CANDIDATES` for stored cases ``ids``, their texts read once a batch."""
        live = list(session.scalars(_OPEN_SINCE, {"ids": ids, "since": since}))
        missing = [i for i in live if i not in self.stored]
        if missing:
            for row in session.execute(_TEXTS, {"ids": missing}):
                self.stored[row.id] = _Candidate(*row)
        return [self.stored[i] for i in live if i in self.stored]

    def add(self, case: Case, signature: Sequence[int]) -> None:
        minute = duplicate_index.minute_of(case.received_at)
        for h in signature:
            self.postings.setdefault(h, []).append((minute, case.id))
        self.texts[case.id] = (case.tracking_number, case.subject, case.body, case.received_at)


def _reserve_case_ids(session: Session, n: int) -> list[int]:
    """``n`` ids for new cases, given to nobody else: from the sequence on PostgreSQL; on
    SQLite the ones after the largest, which stay ours because the caller's transaction has
    already written (SQLite has one writer, until the commit)."""
    if n <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return list(session.execute(_PG_CASE_IDS, {"n": n}).scalars())
    top = int(session.execute(_SQLITE_TOP_CASE_ID).scalar() or 0)
    return list(range(top + 1, top + n + 1))


_PG_CASE_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, :n)"
)
_SQLITE_TOP_CASE_ID = text("SELECT coalesce(max(id), 0) FROM cases")


def register_batch(
    session: Session,
    items: Sequence[tuple[Submission, str | None]],
    policy: IntakePolicy,
    now: datetime,
    *,
    defer_enrichment: bool = False,
    at_receipt: bool = False,
) -> list[Registration]:
    """`register` for many submissions (submission, query code or None) at once, in order,
    with the same cases, events, numbers and suggestions as one call each would make (the
    duplicate lookup of each sees the ones before it), but nothing flushed: the caller
    flushes them all together (one INSERT per table and batch instead of one per row).

    A submission whose (channel, external id) is already a case, or earlier in ``items``,
    gives that case with ``created`` False. Ids and tracking numbers are taken for the whole
    batch at once (tracking numbers: one UPDATE of the year's counter; the row stays locked
    until the commit, as with `register`). Must run inside a transaction that has written
    already (SQLite: see `_reserve_case_ids`). Raises what `register` raises; the session
    then holds a partial batch: roll back to a savepoint taken before.

    With ``defer_enrichment`` the new cases get neither their similar-case suggestions nor
    their search and duplicate-index rows here: each gets an `EnrichmentPending` row instead,
    and `triage.enrichment.enrich_pending`, run after the commit, adds them as this call
    would have.

    With ``at_receipt`` each case is registered at its submission's ``received_at`` instead
    of ``now`` (its events, deadlines and notice dated from it), as
    ``register(session, submission, policy, submission.received_at)`` would: the call
    import's rows, whose deadlines count from the call.
    """
    with session.no_autoflush:
        by_channel: dict[str, list[str]] = {}
        for submission, _ in items:
            by_channel.setdefault(str(submission.channel), []).append(submission.external_id)
        known: dict[tuple[str, str], Case] = {}
        for channel, external_ids in by_channel.items():
            for case in session.scalars(
                select(Case).where(Case.channel == channel, Case.external_id.in_(external_ids))
            ):
                known[(channel, case.external_id)] = case
            seen = call_keys.known(session, channel, external_ids)
            if seen:
                by_id = {i: session.get(Case, i) for i, _n in seen.values()}
                for key, (case_id, _n) in seen.items():
                    known.setdefault((channel, key), cast("Case", by_id[case_id]))
        fresh: list[int] = []
        keys: set[tuple[str, str]] = set()
        calendar = policy.deadlines.calendar
        years: dict[int, int] = {}
        for i, (submission, _) in enumerate(items):
            key = (str(submission.channel), submission.external_id)
            if key in known or key in keys:
                continue
            keys.add(key)
            fresh.append(i)
            year = calendar.local(submission.received_at).year
            years[year] = years.get(year, 0) + 1
        # Numbers first: that write also makes the transaction SQLite's writer.
        serials: dict[int, itertools.count[int]] = {}
        for year, n in sorted(years.items()):
            last = next_counter(session, f"tracking-{year}", n)
            serials[year] = itertools.count(last - n + 1)
        ids = iter(_reserve_case_ids(session, len(fresh)))
        # One matrix product for the batch's routing suggestions: a trained model costs about
        # 1.2 ms a complaint one at a time, a fraction of that for a batch (the same numbers:
        # each row's features and scores do not depend on the others).
        suggested: dict[int, SuggestionLike] = {}
        suggest_many = getattr(policy.router, "suggest_many", None)
        if suggest_many is not None and fresh:
            pairs = [(items[i][0].subject, items[i][0].body) for i in fresh]
            suggested = dict(zip(fresh, suggest_many(pairs), strict=True))
        batch = _Batch()
        made: dict[tuple[str, str], Case] = {}
        out: list[Registration] = []
        wanted = set(fresh)
        for i, (submission, query_code) in enumerate(items):
            key = (str(submission.channel), submission.external_id)
            if i not in wanted:
                out.append(Registration(known.get(key) or made[key], created=False))
                continue
            code = query_code or new_query_code()
            year = calendar.local(submission.received_at).year
            when = submission.received_at if at_receipt else now
            case = _new_case(
                session,
                submission,
                policy,
                when,
                code,
                batch,
                case_id=next(ids),
                tracking_number=f"{policy.tracking_prefix}-{year}-{next(serials[year]):06d}",
                defer=defer_enrichment,
                suggestion=suggested.get(i),
            )
            session.add(case)
            made[key] = case
            # The notice is queued now, whatever time the case is received at.
            notifications.note_registered(session, case, code, now)
            out.append(Registration(case, created=True, query_code=code))
    return out


class LaterEvent(NamedTuple):
    """An event a caller of `register_rows` adds to a new case after its registration's
    own (the call import's ``call_imported``): as `Case.record` would write it."""

    action: str
    actor: Actor
    at: datetime
    reason: str = ""
    public: bool = False
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class RowRegistration:
    """A case `register_rows` made (``created``) or found: its id and tracking number."""

    case_id: int
    tracking_number: str
    created: bool
    query_code: str | None = None


class _Contact:
    """What `triage.callers.stamp` reads and writes of a case, for a row not yet a Case."""

    __slots__ = ("caller_alt_key", "caller_key", "contact_email", "contact_phone")

    def __init__(self, phone: str, email: str) -> None:
        self.contact_phone = phone
        self.contact_email = email
        self.caller_key: str | None = None
        self.caller_alt_key: str | None = None


_CASE_KEYS = select(Case.id, Case.tracking_number, Case.channel, Case.external_id)


class RowPrep(NamedTuple):
    """What `register_rows` works out from a submission alone, with no database: its routing
    suggestion, its hazard flag and its masked text (`prepare_rows`); given the deadlines and
    the application's secret, also its query code with the code's stored hash, its caller
    keys, its triage deadline and the handling deadline (datetime and ISO text) should it be
    assigned at its receipt to the suggested department. Worked out ahead, in another
    process (the call import's), they are the same values; a field left None is worked out
    by `register_rows`."""

    suggestion: SuggestionLike
    hazard: HazardLike
    masked_text: str
    # (code, hash_query_code(code, key)): a new query code, used when the item has none.
    query_code: tuple[str, str] | None = None
    # (caller_key, caller_alt_key) as `triage.callers.stamp` sets them.
    caller_keys: tuple[str | None, str | None] | None = None
    triage_due: datetime | None = None
    # handling_due(received_at, suggestion.label, urgent, kind) and its isoformat().
    handling_due: tuple[datetime, str] | None = None


# What `prepare_rows` reads of a submission, as plain values that another process unpickles
# quickly (a Submission took 10 µs): subject, body, contact name, phone and email (as
# given), kind, received_at.
PrepInput = tuple[str, str, str, str, str, str, datetime]
# A `RowPrep` as plain values (`plain_prep`): suggestion label, confidence, alternatives and
# model version, hazard flag and reasons, then RowPrep's other fields in order.
PlainPrep = tuple[Any, ...]


def prep_input(submission: Submission) -> PrepInput:
    """The values of `submission` that `prepare_inputs` reads."""
    contact = submission.contact
    return (
        submission.subject,
        submission.body,
        contact.name,
        contact.phone,
        contact.email,
        str(submission.kind),
        submission.received_at,
    )


class _Suggestion(NamedTuple):
    """A suggestion read back from `plain_prep` (a `SuggestionLike`)."""

    label: str
    confidence: float
    alternatives: Sequence[tuple[str, float]]
    model_version: str


class _Hazard(NamedTuple):
    """A hazard flag read back from `plain_prep` (a `HazardLike`)."""

    urgent: bool
    reasons: Sequence[str]


def plain_prep(prep: RowPrep) -> PlainPrep:
    """`prep` as plain values, to send to another process (`from_plain_prep`)."""
    suggestion, hazard = prep.suggestion, prep.hazard
    return (
        suggestion.label,
        suggestion.confidence,
        suggestion.alternatives,
        suggestion.model_version,
        hazard.urgent,
        hazard.reasons,
        *prep[2:],
    )


def from_plain_prep(plain: PlainPrep) -> RowPrep:
    """The `RowPrep` of `plain_prep`'s values: the same fields (its suggestion and hazard
    flag as named tuples of the same attributes)."""
    return RowPrep(_Suggestion(*plain[:4]), _Hazard(*plain[4:6]), *plain[6:])


def prepare_rows(
    submissions: Sequence[Submission],
    router: Router,
    detect_hazard: Callable[[str, str], HazardLike],
    deadlines: Deadlines | None = None,
    query_code_key: bytes | None = None,
    area_code: str = "",
) -> list[RowPrep]:
    """`RowPrep` of each submission, in order (`prepare_inputs` of their `prep_input`)."""
    inputs = [prep_input(s) for s in submissions]
    return prepare_inputs(inputs, router, detect_hazard, deadlines, query_code_key, area_code)


def prepare_inputs(
    inputs: Sequence[PrepInput],
    router: Router,
    detect_hazard: Callable[[str, str], HazardLike],
    deadlines: Deadlines | None = None,
    query_code_key: bytes | None = None,
    area_code: str = "",
) -> list[RowPrep]:
    """`RowPrep` of each submission's `prep_input`, in order: the suggestions of a router
    with ``suggest_many`` in one call (one matrix product for all), else one at a time.
    With `deadlines`, the deadlines too; with `query_code_key`, a query code and its hash
    and the caller keys (`RowPrep`; with the office's `area_code`)."""
    pairs = [(i[0], i[1]) for i in inputs]
    suggest_many = getattr(router, "suggest_many", None)
    if suggest_many is not None:
        suggestions = list(suggest_many(pairs)) if pairs else []
    else:
        suggestions = [router.suggest(subject, body) for subject, body in pairs]
    out = []
    for values, suggestion in zip(inputs, suggestions, strict=True):
        subject, body, name, phone, email, kind, received_at = values
        hazard = detect_hazard(subject, body)
        phone, email = phone.strip()[:40], email.strip()[:200]
        code = caller = triage_due = handling_due = None
        if query_code_key:
            new_code = new_query_code()
            code = (new_code, hash_query_code(new_code, key=query_code_key))
            contact = _Contact(phone, email)
            stamp_caller_keys(contact, query_code_key, area_code)  # type: ignore[arg-type]
            caller = (contact.caller_key, contact.caller_alt_key)
        if deadlines is not None:
            urgent = bool(hazard.urgent)
            triage_due = deadlines.triage_due(received_at, urgent, kind=kind)
            if suggestion.label:
                due = deadlines.handling_due(received_at, suggestion.label, urgent, kind=kind)
                handling_due = (due, due.isoformat())
        # The case's masked text, of its fields as stored (`_case_row`).
        masked = masked_case_text(
            subject.strip()[:300], body.strip(), name.strip()[:100], phone, email
        )
        out.append(RowPrep(suggestion, hazard, masked, code, caller, triage_due, handling_due))
    return out


def register_rows(
    session: Session,
    items: Sequence[tuple[Submission, str | None]],
    policy: IntakePolicy,
    now: datetime,
    *,
    later: Sequence[Sequence[LaterEvent]] | None = None,
    prepared: Sequence[RowPrep | None] | None = None,
) -> list[RowRegistration]:
    """`register_batch(..., defer_enrichment=True, at_receipt=True)` written as plain rows:
    one INSERT … executemany per table (cases, case_events, enrichment_pending, attachments;
    on PostgreSQL one COPY each)
    instead of Case and CaseEvent objects flushed by the ORM, for imports of many rows (the
    call import: the ORM's objects and flush were some 85 % of a row's CPU).

    The rows are those the ORM path writes for the same items: the same columns (version 1,
    caller keys, place, masked text, deadlines from each submission's ``received_at``,
    ``updated_at`` the last versioned event's time), the same events in the same order
    (received, suggested, flagged_urgent, auto_assigned or queued), then ``later[i]`` for
    the i-th item's new case, and an `EnrichmentPending` row each (similar cases, search and
    duplicate-index rows come after the commit from `triage.enrichment.enrich_pending`).
    ``created_at`` is ``now``. When the session notifies citizens, the new cases are read
    back (one SELECT) for their 'received' notices, which go out with the commit as
    `register`'s do.

    ``prepared[i]``, when given and not None, is the i-th item's `RowPrep` worked out ahead
    (`prepare_rows`, e.g. in another process while the previous batch was inserted); the
    others are worked out here, the suggestions in one call for all.

    A submission whose (channel, external id) is a case already, or earlier in ``items``,
    gives that case with ``created`` False. Must run inside a transaction that has written
    already (see `_reserve_case_ids`); raises IntegrityError on a unique key taken by a
    concurrent transaction (roll back to a savepoint taken before).
    """
    by_channel: dict[str, list[str]] = {}
    for submission, _ in items:
        by_channel.setdefault(str(submission.channel), []).append(submission.external_id)
    known: dict[tuple[str, str], tuple[int, str]] = {}
    for channel, external_ids in by_channel.items():
        for row in session.execute(
            _CASE_KEYS.where(Case.channel == channel, Case.external_id.in_(external_ids))
        ):
            known[(row.channel, row.external_id)] = (row.id, row.tracking_number)
        # The call ids of repeat calls and reopens logged at the desk (kept on their events).
        for key, found in call_keys.known(session, channel, external_ids).items():
            known.setdefault((channel, key), found)
    calendar = policy.deadlines.calendar
    fresh: list[int] = []
    keys: set[tuple[str, str]] = set()
    years: dict[int, int] = {}
    local_years: list[int] = []
    for i, (submission, _) in enumerate(items):
        year = calendar.local(submission.received_at).year
        local_years.append(year)
        key = (str(submission.channel), submission.external_id)
        if key in known or key in keys:
            continue
        keys.add(key)
        fresh.append(i)
        years[year] = years.get(year, 0) + 1
    serials: dict[int, itertools.count[int]] = {}
    for year, n in sorted(years.items()):
        last = next_counter(session, f"tracking-{year}", n)
        serials[year] = itertools.count(last - n + 1)
    ids = iter(_reserve_case_ids(session, len(fresh)))
    preps: dict[int, RowPrep] = {}
    if prepared is not None:
        preps = {i: p for i in fresh if (p := prepared[i]) is not None}
    missing = [i for i in fresh if i not in preps]
    if missing:
        made_here = prepare_rows(
            [items[i][0] for i in missing],
            policy.router,
            policy.detect_hazard,
            policy.deadlines,
            policy.query_code_key,
            policy.area_code,
        )
        preps.update(zip(missing, made_here, strict=True))
    departments = _departments(session)
    threshold = policy.threshold
    cases: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []
    out: list[RowRegistration] = []
    made: dict[tuple[str, str], tuple[int, str]] = {}
    wanted = set(fresh)
    for i, (submission, query_code) in enumerate(items):
        channel = str(submission.channel)
        key = (channel, submission.external_id)
        if i not in wanted:
            case_id, number = known.get(key) or made[key]
            out.append(RowRegistration(case_id, number, created=False))
            continue
        prep = preps[i]
        code_hash = None
        if query_code:
            code = query_code
        elif prep.query_code is not None:
            code, code_hash = prep.query_code
        else:
            code = new_query_code()
        case_id = next(ids)
        number = f"{policy.tracking_prefix}-{local_years[i]}-{next(serials[local_years[i]]):06d}"
        when = submission.received_at
        case, case_events = _case_row(
            submission, policy, when, code, prep, departments, threshold, code_hash
        )
        case.update(id=case_id, tracking_number=number, created_at=now)
        for ev in itertools.chain(case_events, _later_rows(later[i] if later else (), case)):
            ev["case_id"] = case_id
            events.append(ev)
        for item in submission.attachments:
            policy.attachments.put(item.sha256, item.data)
            attachments.append(
                {
                    "case_id": case_id,
                    "sha256": item.sha256,
                    "filename": item.filename[:255],
                    "content_type": item.content_type[:100],
                    "size": item.size,
                    "created_at": when,
                }
            )
        cases.append(case)
        made[key] = (case_id, number)
        out.append(RowRegistration(case_id, number, created=True, query_code=code))
    if cases:
        times: dict[tuple[Any, Any], Any] = {}
        _insert_rows(session, Case.__table__, cases, times)
        # A call log of a closed month: its stored figures are computed again.
        snapshots.mark_late(session, [c["received_at"] for c in cases])
        _insert_rows(session, CaseEvent.__table__, events, times)
        if attachments:
            _insert_rows(session, Attachment.__table__, attachments, times)
        pending = [{"case_id": c["id"]} for c in cases]
        _insert_rows(session, EnrichmentPending.__table__, pending, times)
        _note_received(session, out, cases, now)
    return out


def _insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    memo: dict[tuple[Any, Any], Any] | None = None,
) -> None:
    """``session.execute(insert(table), rows)`` with its per-row work done here: the rows
    (all with the keys of the first; the columns' scalar defaults are added to them) are
    converted by the columns' own bind processors (the values SQLAlchemy sends) and given
    to the driver's executemany in one call (on PostgreSQL through psycopg, its COPY:
    `_copy_statement`). SQLAlchemy's generic path (a parameter dict built and walked per
    row) was a fifth of a call import's CPU. A datetime is converted
    once per `memo` (one per batch: a case's times and its events' are mostly its call's
    and the import's), whatever column or table holds it."""
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    keys = list(rows[0])
    compiled = insert(table).compile(dialect=dialect, column_keys=keys, for_executemany=True)
    defaults: dict[str, Any] = {}
    for column in compiled.insert_prefetch:
        default = column.default
        if default is None or not getattr(default, "is_scalar", False):
            session.execute(insert(table), list(rows))  # a default to call per row
            return
        defaults[column.key] = default.arg  # type: ignore[attr-defined]
    names = list(compiled.positiontup or []) if compiled.positional else [*keys, *defaults]
    if sorted(names) != sorted([*keys, *defaults]) or compiled.returning:
        session.execute(insert(table), list(rows))  # a statement this does not know
        return
    memo = {} if memo is None else memo
    converters = [
        (i, _converter(table.c[name].type, dialect, memo)) for i, name in enumerate(names)
    ]
    converters = [(i, f) for i, f in converters if f is not None]
    values = operator.itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    copy = _copy_statement(conn, table, names)
    positional = compiled.positional or copy is not None
    params: list[Any] = []
    for row in rows:
        full = values({**row, **defaults} if defaults else row)
        if converters:
            full = list(full)
            for i, f in converters:
                full[i] = f(full[i])
        params.append(tuple(full) if positional else dict(zip(names, full, strict=True)))
    if copy is not None:
        _copy_rows(conn, copy, params)
    else:
        conn.exec_driver_sql(compiled.string, params)


def _copy_statement(conn: Any, table: Table, names: Sequence[str]) -> str | None:
    """``COPY table (columns) FROM STDIN`` on PostgreSQL through psycopg, else None.

    The rows of an executemany were each a statement of their own on the server (pipelined,
    prepared, but each executed apart, and `cases`'s statement trigger, which counts the
    tallies, ran once a row); a COPY is one statement of all of them."""
    dialect = conn.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        return None
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(table.c[name].name) for name in names)
    return f"COPY {dialect.identifier_preparer.format_table(table)} ({columns}) FROM STDIN"


def _copy_rows(conn: Any, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`rows` (values as the columns' bind processors made them) sent by psycopg's COPY on
    the connection's transaction. A database error is raised as SQLAlchemy raises the
    driver's (a unique key taken: IntegrityError, which `triage.call_imports` handles)."""
    dbapi = conn.dialect.dbapi
    try:
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=conn.dialect) from exc


def _converter(
    column_type: Any, dialect: Any, memo: dict[tuple[Any, Any], Any]
) -> Callable[[Any], Any] | None:
    """A column type's bind processing of one value (None too: JSON makes it ``null``), None
    if it has none; a datetime's memoised in `memo`."""
    impl = column_type.dialect_impl(dialect)
    processor = impl.bind_processor(dialect)
    if processor is None:
        return None
    if (
        _json_text is not None
        and isinstance(impl, sqltypes.JSON)
        and type(impl).bind_processor is sqltypes.JSON.bind_processor
        and dialect._json_serializer is None
        and not impl.none_as_null
        and impl._str_impl.bind_processor(dialect) is None
    ):
        # SQLite's JSON: json.dumps of the value (None too: "null"), which SQLAlchemy's
        # processor calls through three Python layers, seven times a call imported.
        return _json_text
    # A TypeDecorator (UTCDateTime) says python_type object: its impl's is the one.
    base = column_type.impl_instance if isinstance(column_type, TypeDecorator) else column_type
    try:
        memoise = base.python_type is datetime
    except NotImplementedError:
        memoise = False
    if not memoise:
        return cast(Callable[[Any], Any], processor)
    kind = repr(column_type)  # e.g. "UTCDateTime()": the same type converts the same way

    def converted(v: Any) -> Any:
        # Equal datetimes are the same instant: with the same offset, the same fields too.
        key = (kind, v, v.utcoffset()) if v is not None else (kind, v, None)
        found = memo.get(key, _MISSING)
        if found is _MISSING:
            found = memo[key] = processor(v)
        return found

    return converted


_MISSING = object()

# json.dumps(value) with its default settings, without its Python layers (dumps, encode,
# iterencode, a new C encoder each call): the same C encoder, made once. Circular values
# are not checked (a case's JSON values are plain lists and dicts).
_JSON_C_ENCODER = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None,
        json.JSONEncoder().default,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        True,
    )
    if getattr(json.encoder, "c_make_encoder", None) is not None
    else None
)


def _json_dumps(value: Any) -> str:
    """``json.dumps(value)``, the same text (`_JSON_C_ENCODER`)."""
    return "".join(_JSON_C_ENCODER(value, 0))  # type: ignore[misc]


_json_text: Callable[[Any], str] | None = _json_dumps if _JSON_C_ENCODER is not None else None


def _case_row(
    submission: Submission,
    policy: IntakePolicy,
    when: datetime,
    code: str,
    prep: RowPrep,
    departments: dict[str, Department],
    threshold: float,
    code_hash: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``cases`` row (without id, number, created_at) and the ``case_events`` rows
    (without case_id) that `_new_case` makes of a submission registered at ``when`` (its
    ``received_at``), with its suggestion, hazard flag and masked text from ``prep``, and
    its caller keys and deadlines from ``prep`` where it has them; `code_hash`, when given,
    is ``hash_query_code(code, key=policy.query_code_key)``."""
    suggestion, hazard = prep.suggestion, prep.hazard
    suggested = departments.get(suggestion.label)
    kind = str(submission.kind)
    channel = str(submission.channel)
    urgent = bool(hazard.urgent)
    subject = submission.subject.strip()[:300]
    body = submission.body.strip()
    name = submission.contact.name.strip()[:100]
    phone = submission.contact.phone.strip()[:40]
    email = submission.contact.email.strip()[:200]
    alternatives = [
        [label, round(float(p), 4)] for label, p in suggestion.alternatives if label in departments
    ]
    caller_key = caller_alt_key = None
    if policy.query_code_key:
        if prep.caller_keys is not None:
            caller_key, caller_alt_key = prep.caller_keys
        else:
            contact = _Contact(phone, email)
            stamp_caller_keys(contact, policy.query_code_key, policy.area_code)  # type: ignore[arg-type]
            caller_key, caller_alt_key = contact.caller_key, contact.caller_alt_key
    confidence = round(float(suggestion.confidence), 4)
    model = f"model {suggestion.model_version}"
    events = [
        _event_row(
            "received",
            f"citizen ({submission.channel})",
            submission.received_at,
            Status.RECEIVED,
            Status.RECEIVED,
            public=True,
            detail={"channel": channel, "attachments": len(submission.attachments)},
        ),
        _event_row(
            "suggested",
            model,
            when,
            Status.RECEIVED,
            Status.RECEIVED,
            detail={
                "department": suggested.code if suggested else None,
                "confidence": confidence,
                "alternatives": alternatives,
            },
        ),
    ]
    if urgent:
        events.append(
            _event_row(
                "flagged_urgent",
                "system",
                when,
                Status.RECEIVED,
                Status.RECEIVED,
                detail={"reasons": list(hazard.reasons)},
            )
        )
    department_id = assigned_at = due_at = None
    confident = suggested is not None and suggestion.confidence >= threshold
    if policy.auto_route and confident and suggested is not None and suggested.active:
        status = Status.ASSIGNED
        department_id, assigned_at = suggested.id, when
        if prep.handling_due is not None:
            due_at, due_text = prep.handling_due
        else:
            due_at = policy.deadlines.handling_due(when, suggested.code, urgent, kind=kind)
            due_text = due_at.isoformat()
        events.append(
            _event_row(
                "auto_assigned",
                model,
                when,
                Status.RECEIVED,
                status,
                public=True,
                detail={
                    "department": suggested.code,
                    "due_at": due_text,
                    "confidence": round(float(suggestion.confidence), 4),
                },
            )
        )
    else:
        if suggested is None:
            why = "no_suggestion"
        elif not policy.auto_route:
            why = "auto_route_off"
        else:
            why = "below_threshold"
        status = Status.TRIAGE
        events.append(
            _event_row(
                "queued",
                "system",
                when,
                Status.RECEIVED,
                status,
                detail={"why": why, "confidence": confidence, "threshold": round(threshold, 4)},
            )
        )
    case = {
        "query_code_hash": code_hash or hash_query_code(code, key=policy.query_code_key),
        "channel": channel,
        "external_id": submission.external_id,
        "kind": kind,
        "status": str(status),
        "subject": subject,
        "body": body,
        "contact_name": name,
        "contact_phone": phone,
        "contact_email": email,
        "received_at": submission.received_at,
        "department_id": department_id,
        "suggested_department_id": suggested.id if suggested else None,
        "confidence": float(suggestion.confidence) if suggested else None,
        "alternatives": alternatives,
        "model_version": suggestion.model_version,
        "urgent": urgent,
        "urgent_reasons": list(hazard.reasons),
        "similar": [],
        "triage_due_at": (
            prep.triage_due
            if prep.triage_due is not None
            else policy.deadlines.triage_due(submission.received_at, urgent, kind=kind)
        ),
        "due_at": due_at,
        "assigned_at": assigned_at,
        "masked_text": prep.masked_text,
        "updated_at": when,
        "version": 1,
        "caller_key": caller_key,
        "caller_alt_key": caller_alt_key,
        "place": (submission.place or "").strip()[:PLACE_MAX],
    }
    return case, events


def _event_row(
    action: str,
    actor: Actor,
    at: datetime,
    from_status: str,
    to_status: str,
    *,
    reason: str = "",
    public: bool = False,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``case_events`` row as `Case.record` writes it (without case_id)."""
    if isinstance(actor, User):
        actor_id, actor_name = actor.id, actor.label
    else:
        actor_id, actor_name = None, actor or "system"
    return {
        "at": at,
        "action": action,
        "actor_id": actor_id,
        "actor_name": actor_name,
        "from_status": str(from_status),
        "to_status": str(to_status),
        "reason": reason,
        "detail": detail or {},
        "public": public,
    }


def _later_rows(later: Sequence[LaterEvent], case: dict[str, Any]) -> list[dict[str, Any]]:
    """`LaterEvent`s as rows; a versioned one moves the case's ``updated_at`` as `record`."""
    rows = []
    for ev in later:
        rows.append(
            _event_row(
                ev.action,
                ev.actor,
                ev.at,
                case["status"],
                case["status"],
                reason=ev.reason,
                public=ev.public,
                detail=ev.detail,
            )
        )
        if ev.action not in UNVERSIONED_ACTIONS:
            case["updated_at"] = ev.at
    return rows


def _note_received(
    session: Session,
    out: Sequence[RowRegistration],
    cases: Sequence[dict[str, Any]],
    now: datetime,
) -> None:
    """The new cases' 'received' notices, when the session notifies citizens: the cases
    read back once (the notices need them), noted as `register` notes its case. Queued
    `now` (the audit log's time of the notice, not the call's)."""
    notifier = session.info.get(notifications.INFO_KEY)
    if notifier is None or not notifier.received:
        return
    # Without an SMS gateway only a case with an email address is told: the others are not
    # read back for nothing.
    ids = [c["id"] for c in cases if notifier.sms is not None or c["contact_email"]]
    if not ids:
        return
    loaded = {
        c.id: c for c in session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.id))
    }
    for reg in out:
        if reg.created and reg.query_code is not None and reg.case_id in loaded:
            notifications.note_registered(session, loaded[reg.case_id], reg.query_code, now)


def _new_case(
    session: Session,
    submission: Submission,
    policy: IntakePolicy,
    now: datetime,
    code: str,
    batch: _Batch | None,
    *,
    case_id: int | None = None,
    tracking_number: str = "",
    defer: bool = False,
    suggestion: SuggestionLike | None = None,
) -> Case:
    """The case of a new submission with its events, suggestions and attachments, not yet
    added to the session (`register`, `register_batch`)."""
    hazard = policy.detect_hazard(submission.subject, submission.body)
    if suggestion is None:
        suggestion = policy.router.suggest(submission.subject, submission.body)
    departments = _departments(session)
    suggested = departments.get(suggestion.label)

    case = Case(
        tracking_number=tracking_number,
        query_code_hash=hash_query_code(code, key=policy.query_code_key),
        channel=str(submission.channel),
        external_id=submission.external_id,
        kind=str(submission.kind),
        status=Status.RECEIVED,
        subject=submission.subject.strip()[:300],
        body=submission.body.strip(),
        contact_name=submission.contact.name.strip()[:100],
        contact_phone=submission.contact.phone.strip()[:40],
        contact_email=submission.contact.email.strip()[:200],
        received_at=submission.received_at,
        created_at=now,
        suggested_department=suggested,
        confidence=float(suggestion.confidence) if suggested else None,
        alternatives=[
            [label, round(float(p), 4)]
            for label, p in suggestion.alternatives
            if label in departments
        ],
        model_version=suggestion.model_version,
        urgent=bool(hazard.urgent),
        urgent_reasons=list(hazard.reasons),
        triage_due_at=policy.deadlines.triage_due(
            submission.received_at, hazard.urgent, kind=str(submission.kind)
        ),
    )
    if case_id is not None:
        case.id = case_id
    case.masked_text = masked_case_text(
        case.subject, case.body, case.contact_name, case.contact_phone, case.contact_email
    )
    stamp_caller(case, submission.place, policy.query_code_key, policy.area_code)
    if defer and case_id is not None:
        case.similar = []
        defer_enrichment(session, case)
    else:
        case.similar = similar_open_cases(session, case, policy, batch)
    for item in submission.attachments:
        policy.attachments.put(item.sha256, item.data)
        case.attachments.append(
            Attachment(
                sha256=item.sha256,
                filename=item.filename[:255],
                content_type=item.content_type[:100],
                size=item.size,
                created_at=now,
            )
        )
    case.record(
        "received",
        f"citizen ({submission.channel})",
        submission.received_at,
        public=True,
        channel=str(submission.channel),
        attachments=len(submission.attachments),
    )
    case.record(
        "suggested",
        f"model {suggestion.model_version}",
        now,
        department=suggested.code if suggested else None,
        confidence=round(float(suggestion.confidence), 4),
        alternatives=case.alternatives,
    )
    if hazard.urgent:
        case.record("flagged_urgent", "system", now, reasons=list(hazard.reasons))
    if case.similar:
        case.record("similar_found", "system", now, cases=case.similar)

    confident = suggested is not None and suggestion.confidence >= policy.threshold
    if policy.auto_route and confident and suggested is not None and suggested.active:
        case.assign(
            suggested,
            f"model {suggestion.model_version}",
            now,
            policy.deadlines.handling_due(now, suggested.code, case.urgent, kind=case.kind),
            auto=True,
            confidence=float(suggestion.confidence),
        )
    else:
        if suggested is None:
            why = "no_suggestion"
        elif not policy.auto_route:
            why = "auto_route_off"
        else:
            why = "below_threshold"
        case.queue(
            now,
            why=why,
            confidence=round(float(suggestion.confidence), 4),
            threshold=round(policy.threshold, 4),
        )
    return case


def case_text(subject: str, body: str) -> str:
    return f"{subject}\n{body}" if subject else body


class _Candidate(NamedTuple):
    id: int
    tracking_number: str
    subject: str
    body: str


_CANDIDATES = select(Case.id, Case.tracking_number, Case.subject, Case.body).where(
    Case.id.in_(bindparam("ids", expanding=True)),
    Case.status.in_(OPEN_STATUSES),
    Case.received_at >= bindparam("since"),
)


_OPEN_SINCE = select(Case.id).where(
    Case.id.in_(bindparam("ids", expanding=True)),
    Case.status.in_(OPEN_STATUSES),
    Case.received_at >= bindparam("since"),
)
_TEXTS = select(Case.id, Case.tracking_number, Case.subject, Case.body).where(
    Case.id.in_(bindparam("ids", expanding=True))
)


CANDIDATES_QUERY = _CANDIDATES
"""Open, recent cases among ``ids``: (id, tracking_number, subject, body) (`triage.enrichment`)."""


def similar_open_cases(
    session: Session, case: Case, policy: IntakePolicy, batch: _Batch | None = None
) -> list[list[object]]:
    """Open cases of the last N days that look like the same issue: [[number, score], …].

    The duplicate index names a short list of candidates (a bounded read, however many cases
    are open); only their texts are loaded and scored. The lookup also chooses the new
    case's own index rows, written when the case is flushed.
    """
    if policy.find_similar is None or policy.duplicate_window_days <= 0:
        return []
    since = case.received_at - timedelta(days=policy.duplicate_window_days)
    extra = batch.postings if batch is not None else None
    found = duplicate_index.look_up(session, case_text(case.subject, case.body), since, extra=extra)
    duplicate_index.remember_signature(session, case, found.signature)
    if batch is not None:
        batch.add(case, found.signature)
    if not found.case_ids:
        return []
    pending = batch.texts if batch is not None else {}
    stored = [i for i in found.case_ids if i not in pending]
    rows: list[Any] = []
    if stored and batch is not None:
        # Which candidates are still open and recent is asked every time; their texts, which
        # the next cases of the batch mostly share, are read once a batch.
        rows = batch.stored_texts(session, stored, since)
    elif stored:
        # One case at a time (web form, desk, API): the candidates' stored similarity profiles
        # come with their texts, so a case costs its own analysis, not theirs.
        rows = list(open_candidates(session, set(stored), since).values())
    # The batch's own cases are newer than any stored one (open, ids above theirs).
    rows += [
        _Candidate(i, *pending[i][:3])
        for i in sorted(i for i in found.case_ids if i in pending and i != case.id)
        if pending[i][3] >= since
    ]
    if not rows:
        return []
    numbers = {r.id: r.tracking_number for r in rows}
    computed: dict[int, similarity.Profile] = {}

    def candidate(row: Any) -> str:
        text_ = case_text(row.subject, row.body)
        if not isinstance(row, CandidateRow):
            return text_
        profile, new = similarity_store.profile_of(text_, row.version, row.data)
        if new:
            computed[row.id] = profile
        return similarity.ProfiledText(text_, profile)

    found = policy.find_similar(
        case_text(case.subject, case.body), [(r.id, candidate(r)) for r in rows]
    )
    similarity_store.save(session, computed)
    return [[numbers[i], round(float(score), 3)] for i, score in found if i in numbers]


def assign_case(
    case: Case,
    department: Department,
    actor: Actor,
    deadlines: Deadlines,
    now: datetime,
    reason: str = "",
) -> None:
    """A supervisor dispatches a queued case, or transfers an assigned one.

    A department that sent the case back gets it again only with a reason: otherwise the
    case would bounce between the queue and the department that already said it is not its.
    """
    session = object_session(case)
    if session is not None:
        # Read again under a lock: an administrator deactivating the department at this
        # moment (triage/staff.hand_over) would otherwise be missed, and the case land in a
        # department no handler sees any more.
        lock_departments(session, department, share=True)
    if not department.active:
        raise IllegalTransition(N_("Department %(code)s is inactive."), code=department.code)
    due = deadlines.handling_due(now, department.code, case.urgent, kind=case.kind)
    if case.status in (Status.ASSIGNED, Status.IN_PROGRESS):
        case.transfer(department, actor, now, due, reason)
        return
    if department.code in case.returned_by and not (reason or "").strip():
        raise IllegalTransition(
            N_("%(department)s sent this case back; give a reason to dispatch it there again."),
            department=department.name,
        )
    corrected = (
        case.suggested_department is not None and department.id != case.suggested_department_id
    )
    case.assign(
        department,
        actor,
        now,
        due,
        reason=reason,
        corrected_from=case.suggested_department.code if corrected else None,
    )


def citizens_to_call(session: Session, case: Case) -> list[Case]:
    """The cases merged into `case`, directly or through another merged case, oldest first:
    their complainants are called back with `case`'s return visit."""
    found: list[Case] = []
    frontier = [case.id]
    seen = {case.id}
    while frontier:
        merged = session.scalars(
            select(Case).where(Case.merged_into_id.in_(frontier)).order_by(Case.id)
        ).all()
        frontier = [c.id for c in merged if c.id not in seen]
        seen.update(frontier)
        found.extend(c for c in merged if c.id in frontier)
    return sorted(found, key=lambda c: c.id)


def send_back_deadline(case: Case, deadlines: Deadlines) -> datetime | None:
    """Until when the department may send the case back; None if it is not dispatched.

    In hours for an urgent case, and never after the case's handling deadline.
    """
    if case.assigned_at is None:
        return None
    return deadlines.send_back_deadline(
        case.assigned_at,
        case.urgent,
        case.due_at,
        kind=case.kind,
        department=case.department.code if case.department else None,
    )


def send_back_case(
    case: Case, actor: Actor, deadlines: Deadlines, now: datetime, reason: str
) -> None:
    deadline = send_back_deadline(case, deadlines)
    if deadline is None:
        raise IllegalTransition(N_("The case is not assigned to a department."))
    case.send_back(actor, now, reason, deadline)


def rework_case(case: Case, actor: Actor, deadlines: Deadlines, now: datetime, reason: str) -> None:
    """Sends a visited case back for rework (重办) with its rework deadline; a case whose
    department was deactivated since goes on to the department that took its work over
    (`follow_inactive_department`)."""
    department = case.department.code if case.department else None
    due = deadlines.rework_due(now, case.urgent, kind=case.kind, department=department)
    case.rework(actor, now, reason, due)
    follow_inactive_department(case, actor, now)


def follow_inactive_department(case: Case, actor: Actor, now: datetime) -> None:
    """A case just put back in handling (rework) in a department deactivated since would be
    in a department no handler sees, on no board: it is transferred (转办, an event on its
    timeline, deadline kept) to the active department that took the work over
    (triage/staff.successor_of, following the chain), or, with none, put in the
    supervisors' triage queue (event "requeued") to be dispatched again. Nothing happens
    when the department is active."""
    dept = case.department
    if dept is None or case.status not in (Status.ASSIGNED, Status.IN_PROGRESS):
        return
    session = object_session(case)
    if session is not None:
        lock_departments(session, dept, share=True)
    if dept.active:
        return
    successor = successor_of(session, dept) if session is not None else None
    if successor is not None and successor.id != dept.id:
        # Neutral codes, shown in the reader's language (triage/system_reasons.py).
        reason = system_reasons.REWORK_TO_SUCCESSOR
        case.transfer(successor, actor, now, case.due_at or now, reason)
    else:
        case.requeue(actor, now, system_reasons.REWORK_REQUEUED)
