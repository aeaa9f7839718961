"""Synthetic cases in bulk, for benchmarks and for trying the board at a district's scale:
``minsheng demo --volume N [--months M]``.

N cases spread over the last M months, each at a stage that fits its age (most older cases
closed, recent ones anywhere from the triage queue to the return visit), with the events,
replies and return visits that stage implies (about seven events a case), their tracking
numbers taken from the year's counter, their caller keys (with the application's secret),
the urgent flag of their text, and their rows in the duplicate index (open cases) and the
search index. Texts, departments and replies come from the demo's own messages
(web/demo/*.jsonl), names and phone numbers are made up.

Written as plain rows, not through the ORM or SQLAlchemy's parameter handling: PostgreSQL
takes them by COPY (text format made here), SQLite by ``executemany`` of tuples. A large
run (`_BULK` cases or more, and at least as many as the database holds) drops the written
tables' secondary indexes and foreign keys first and makes them again at the end, as a
restore does (one sorted build instead of a B-tree insert, and on PostgreSQL a foreign-key
trigger, per row). The search index's rows are worked out once per template text
(`_GramRows`); on SQLite they are gathered per gram and written in key order at the end.
On PostgreSQL the written tables are analysed at the end (the planner's statistics).

Measured on the shared 2-core machine (load 8-14, so wall times are mostly waiting): 100,000
cases on PostgreSQL took 68 s of this process's CPU (737 s wall; the old generator 831 s wall
under a lighter load); 20,000 on SQLite 32 s of CPU, about a third of it SQLite writing the
search index's 4.4 million rows (and checking their foreign key).
"""

from __future__ import annotations

import io
import itertools
import json
import random
import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Column, Connection, Table, func, insert, select, text, update

from triage import tallies
from triage.callers import alt_key, caller_key
from triage.cases import hash_query_code
from triage.duplicate_index import SignatureBuilder, signature_rows
from triage.models import (
    OPEN_STATUSES,
    Case,
    CaseEvent,
    CaseReply,
    Counter,
    Department,
    DuplicateSignature,
    ReturnVisit,
    Role,
    Status,
    User,
)
from triage.privacy import mask_text, masked_case_text
from triage.report import snapshots
from triage.search_index import (
    BODY,
    CONTACT,
    MASKED_BODY,
    MASKED_REPLY,
    MASKED_SUBJECT,
    NUMBER,
    REPLY,
    SUBJECT,
    CaseText,
    SearchGram,
    case_rows,
    remask_groups,
    text_grams,
)
from triage.urgency import detect_hazard
from web.demo import DEMO_CASES, DEMO_TRAINING

__all__ = ["BATCH", "add_volume"]

BATCH = 2000
"""Cases written per batch."""
_BULK = 20_000
"""Cases from which the written tables' secondary keys are dropped and made again."""
_SQLITE_CACHE_KIB = 1_500_000
"""SQLite page cache while writing (KiB)."""
_SQLITE_GRAMS = 50_000
"""Cases whose search index rows SQLite's writer holds in memory (some 11 million rows,
about 150 MB as arrays, 250 MB while sorting) before writing them in key order."""
_SQLITE_SLICE = 500_000
"""Search index rows handed to SQLite per ``executemany``."""

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
_CHANNELS = (("web", 40), ("phone", 35), ("email", 15), ("call_log", 7), ("letter", 3))
_REPLY = "您反映的问题已收悉，我单位已安排专人现场核查并督促整改，后续将持续跟踪。"
_OLD = 30
"""Days after which a case is most likely closed."""
# Stage weights for cases younger and older than _OLD days.
_RECENT_STAGES = (
    ("triage", 12),
    ("assigned", 18),
    ("in_progress", 22),
    ("replied", 14),
    ("visited", 6),
    ("closed", 20),
    ("rejected", 5),
    ("merged", 3),
)
_OLD_STAGES = (
    ("in_progress", 2),
    ("replied", 2),
    ("visited", 3),
    ("closed", 83),
    ("rejected", 6),
    ("merged", 4),
)

_EPOCH = datetime(1970, 1, 1)
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class _Template:
    subject: str
    body: str
    kind: str
    department: str | None
    reply: str


def _templates(label_map: dict[str, str]) -> tuple[list[_Template], list[str]]:
    """Texts of the demo's own messages, and the demo's replies."""
    templates, replies = [], []
    with DEMO_CASES.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                templates.append(
                    _Template(d["subject"], d["body"], d["kind"], d["department"], d["reply"])
                )
                if d["reply"]:
                    replies.append(d["reply"])
    with DEMO_TRAINING.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                templates.append(
                    _Template(d["subject"], d["body"], "complaint", label_map.get(d["label"]), "")
                )
    return templates, replies or [_REPLY]


class _Weighted:
    """``rng.choices(keys, weights)[0]`` with the cumulative weights summed once (the same
    draws as `random.Random.choices` with ``weights``)."""

    def __init__(self, weighted: Sequence[tuple[str, int]]) -> None:
        self.keys = [k for k, _ in weighted]
        self.cum = list(itertools.accumulate(w for _, w in weighted))

    def __call__(self, rng: random.Random) -> str:
        return rng.choices(self.keys, cum_weights=self.cum)[0]


_PICK_CHANNEL = _Weighted(_CHANNELS)
_PICK_RECENT = _Weighted(_RECENT_STAGES)
_PICK_OLD = _Weighted(_OLD_STAGES)


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"


def _reserve_numbers(conn: Connection, year: int, count: int) -> int:
    """Takes ``count`` tracking numbers of ``year`` from its counter; returns the first."""
    name = f"tracking-{year}"
    value = conn.scalar(select(Counter.value).where(Counter.name == name))
    if value is None:
        conn.execute(insert(Counter).values(name=name, value=0))
        value = 0
    conn.execute(update(Counter).where(Counter.name == name).values(value=Counter.value + count))
    return int(value) + 1


def add_volume(
    conn: Connection,
    count: int,
    *,
    months: int = 12,
    now: datetime | None = None,
    prefix: str = "MS",
    label_map: dict[str, str] | None = None,
    seed: int | None = None,
    secret: bytes | str | None = None,
    progress: Callable[[int], None] | None = None,
    model_version: str = "",
) -> int:
    """Adds ``count`` synthetic cases received over the last ``months`` months; returns
    how many. Runs in the caller's transaction (``conn``); departments and staff must
    exist (``minsheng init``). ``secret``: the application's secret, for the caller keys
    (`triage.callers`); without it they are left to ``minsheng init``'s backfill.
    ``model_version``: the deployed routing model's version, which the cases' suggestions
    and automatic dispatches name as registration does; "" (no model) names none and has
    the system make them.

    Raises ValueError when there is no department."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)  # naive UTC inside
    rng = random.Random(seed)
    templates, replies = _templates(label_map or {})
    departments = {d.code: d.id for d in conn.execute(select(Department.code, Department.id)).all()}
    if not departments:
        raise ValueError("no departments: run `minsheng init` first")
    users = conn.execute(select(User.id, User.username, User.role, User.department_id)).all()
    supervisor = next((u for u in users if u.role == Role.SUPERVISOR), None)
    handlers = {u.department_id: u for u in users if u.role == Role.HANDLER}
    span = timedelta(days=30 * months)
    received = sorted(now - span * rng.random() for _ in range(count))
    # Tracking numbers in order of receipt, from each (China-time) year's counter.
    by_year: dict[int, int] = {}
    for at in received:
        year = (at + timedelta(hours=8)).year
        by_year[year] = by_year.get(year, 0) + 1
    next_number = {y: _reserve_numbers(conn, y, n) for y, n in sorted(by_year.items())}
    have = conn.scalar(select(func.count()).select_from(Case)) or 0
    first_id = (conn.scalar(select(func.max(Case.id))) or 0) + 1
    code_hash = hash_query_code(secrets.token_hex(8))
    builder = SignatureBuilder()
    grams = _GramRows()
    shared = _Shared(templates, replies, departments, supervisor, handlers, secret, model_version)
    keys = _Keys(conn) if count >= max(_BULK, have) else None
    writer: _Writer = _PgWriter(conn) if conn.dialect.name == "postgresql" else _SqliteWriter(conn)
    written = 0
    for start in range(0, count, BATCH):
        batch = _Batch(rng, now, shared)
        for offset, at in enumerate(received[start : start + BATCH]):
            year = (at + timedelta(hours=8)).year
            number = f"{prefix}-{year}-{next_number[year]:06d}"
            next_number[year] += 1
            batch.add(first_id + start + offset, number, at, code_hash)
        batch.write(writer, builder, grams)
        written += len(batch.cases)
        if progress is not None:
            progress(written)
    writer.finish()
    # Cases of closed months: their stored figures are computed again.
    snapshots.mark_late(conn, received)
    # The tallies' triggers (migration 0025) counted the rows as they went in: on SQLite one
    # ledger row per case, folded here into one per combination.
    tallies.compact(conn)
    if keys is not None:
        keys.restore()
    # The texts of merged cases mask the citizens of their whole group (triage.case_people),
    # which the per-template rows above do not know: those groups' rows made again.
    remask_groups(conn, after=first_id - 1)
    if conn.dialect.name == "postgresql":
        for table in ("cases", "case_events", "case_replies", "return_visits"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))"
                )
            )
    _analyse(conn)
    return written


_WRITTEN = (
    Case.__table__,
    CaseEvent.__table__,
    CaseReply.__table__,
    ReturnVisit.__table__,
    DuplicateSignature.__table__,
    SearchGram.__table__,
)


def _analyse(conn: Connection) -> None:
    """PostgreSQL's statistics of the written tables, in the caller's transaction.

    Not SQLite's: it keeps none until ANALYZE runs, and nothing in the app runs it, so the
    board's queries are chosen without them; measured at 20,000 cases (CPU per page, counts
    per filter value uncached), statistics (``analysis_limit`` 1000) saved 5-30% on most
    pages but made the open cases by deadline 60% dearer (their counts by kind walked the
    whole kind index instead of the covering ix_cases_facets). A benchmark database should
    be planned as the office's is."""
    if conn.dialect.name == "postgresql":
        names = ", ".join(t.name for t in _WRITTEN)  # type: ignore[attr-defined]
        conn.exec_driver_sql(f"ANALYZE {names}")


class _Shared:
    """What every batch of a run reads: texts, departments, staff, and per-text caches."""

    def __init__(
        self,
        templates: list[_Template],
        replies: list[str],
        departments: dict[str, int],
        supervisor: Any,
        handlers: dict[int, Any],
        secret: bytes | str | None,
        model_version: str = "",
    ) -> None:
        self.templates, self.replies = templates, replies
        self.departments, self.supervisor, self.handlers = departments, supervisor, handlers
        self.codes = sorted(departments)
        self.secret = secret
        self.model_version = model_version
        self.hazards: dict[tuple[str, str], list[str]] = {}
        self.masked: dict[tuple[str, str, str, str], str] = {}
        self.names = [s + t for s in _SURNAMES for t in ("先生", "女士")]

    def hazard(self, t: _Template) -> list[str]:
        """The urgent reasons of a template's text (`triage.urgency.detect_hazard`)."""
        key = (t.subject, t.body)
        found = self.hazards.get(key)
        if found is None:
            found = self.hazards[key] = list(detect_hazard(t.subject, t.body).reasons)
        return found

    def masked_text(self, t: _Template, name: str, phone: str, email: str, reply: str) -> str:
        """`masked_case_text` (with the case's reply, if any: every generated one is sent),
        computed once per text, reply and name unless the texts could hold the case's own
        phone or email (`_GramRows._exact`'s test)."""
        replies = [reply] if reply else []
        if _own_contact_in(f"{t.subject}\n{t.body}\n{reply}", phone):
            return masked_case_text(t.subject, t.body, name, phone, email, replies=replies)
        key = (t.subject, t.body, name, reply)
        found = self.masked.get(key)
        if found is None:
            found = self.masked[key] = masked_case_text(
                t.subject, t.body, name, "", "", replies=replies
            )
        return found


class _Batch:
    """The rows of a batch of synthetic cases, written together: tuples in the column order
    of `_CASE_COLUMNS`, `_EVENT_COLUMNS`, ... (naive UTC datetimes)."""

    def __init__(self, rng: random.Random, now: datetime, shared: _Shared) -> None:
        self.rng, self.now, self.shared = rng, now, shared
        self.cases: list[tuple[Any, ...]] = []
        self.numbers: list[tuple[int, str]] = []
        self.events: list[tuple[Any, ...]] = []
        self.case_replies: list[tuple[Any, ...]] = []
        self.visits: list[tuple[Any, ...]] = []
        self.texts: dict[int, CaseText] = {}
        self.open_cases: list[tuple[int, datetime, str]] = []

    def _event(
        self,
        case_id: int,
        action: str,
        at: datetime,
        actor: Any,
        from_status: str | None,
        to_status: str,
        public: bool = False,
        **detail: Any,
    ) -> None:
        named = actor is not None and not isinstance(actor, str)
        label = actor.username if named else (actor or "")
        self.events.append(
            (
                case_id,
                at,
                action,
                actor.id if named else None,
                label,
                from_status,
                to_status,
                detail,
                public,
            )
        )

    def add(self, case_id: int, number: str, received: datetime, code_hash: str) -> None:
        rng, now, shared = self.rng, self.now, self.shared
        t = rng.choice(shared.templates)
        age = (now - received).days
        stage = (_PICK_OLD if age > _OLD else _PICK_RECENT)(rng)
        if (now - received) < timedelta(hours=6):
            stage = rng.choice(("triage", "assigned"))
        if stage == "merged" and not self.cases:
            stage = "closed"
        code = t.department if t.department in shared.departments else None
        code = code or rng.choice(shared.codes)
        dept_id = shared.departments[code]
        channel = _PICK_CHANNEL(rng)
        name = rng.choice(_SURNAMES) + rng.choice(("先生", "女士"))
        phone = _phone(rng)
        email = f"resident{case_id}@example.com" if channel == "email" else ""
        confidence = round(rng.uniform(0.3, 0.99), 4)
        auto = confidence >= 0.8
        reasons = shared.hazard(t)
        key = alt = None
        if shared.secret is not None:
            key = caller_key(phone, email, shared.secret) or ""
            alt = alt_key(phone, email, shared.secret)
        status = Status.RECEIVED
        department_id = assigned_at = due_at = replied_at = closed_at = merged_into = None
        rejection_reason = risk = ""
        self._event(
            case_id, "received", received, f"citizen ({channel})", status, status, True,
            channel=channel, attachments=0,
        )  # fmt: skip
        at = min(received + _MINUTE, now)
        created = at
        model = f"model {shared.model_version}" if shared.model_version else "system"
        self._event(
            case_id, "suggested", at, model, status, status,
            department=code, confidence=confidence,
        )  # fmt: skip
        if reasons:
            self._event(case_id, "flagged_urgent", at, "system", status, status, reasons=reasons)
        reply_text = ""
        if stage in ("rejected", "merged") or not auto or stage == "triage":
            self._event(case_id, "queued", at, "system", status, Status.TRIAGE)
            status = Status.TRIAGE
        handler = shared.handlers.get(dept_id) or f"{code} handler"
        step = timedelta(hours=rng.uniform(2, 30))
        if stage in ("rejected", "merged") and at + step > now:
            pass  # decided only after "now": still in the queue
        elif stage == "rejected":
            at += step
            self._event(case_id, "rejected", at, shared.supervisor, status, Status.REJECTED, True)
            status, rejection_reason, closed_at = Status.REJECTED, "invalid", at
        elif stage == "merged":
            target_id, target_number = self.rng.choice(self.numbers)
            at += step
            self._event(
                case_id, "merged", at, shared.supervisor, status, Status.MERGED, True,
                into=target_number,
            )  # fmt: skip
            status, merged_into, closed_at = Status.MERGED, target_id, at
        elif stage != "triage" and at + step > now:
            # Dispatched only after "now": still waiting in the queue.
            if status == Status.RECEIVED:
                self._event(case_id, "queued", at, "system", status, Status.TRIAGE)
                status = Status.TRIAGE
        elif stage != "triage":
            at += step
            due = at + timedelta(days=7)
            self._event(
                case_id, "auto_assigned" if status == Status.RECEIVED else "assigned", at,
                model if status == Status.RECEIVED else shared.supervisor,
                status, Status.ASSIGNED, True, department=code, due_at=f"{due.isoformat()}+00:00",
            )  # fmt: skip
            status = Status.ASSIGNED
            department_id, assigned_at, due_at = dept_id, at, due
            for next_stage, action, to in _STEPS:
                if _STAGE_ORDER[stage] < _STAGE_ORDER[next_stage]:
                    break
                later = at + timedelta(hours=rng.uniform(2, 60))
                if later > now:
                    break  # a step not taken yet: the case stays where it is
                at = later
                actor = handler if to in (Status.IN_PROGRESS, Status.REPLIED) else shared.supervisor
                extra: dict[str, Any] = {}
                if to == Status.VISITED:
                    extra = {"reached": True, "solved": True, "satisfaction": "satisfied"}
                self._event(case_id, action, at, actor, status, to, True, **extra)
                status = to
                if to == Status.REPLIED:
                    reply_text = rng.choice(shared.replies) if t.reply == "" else t.reply
                    replied_at = at
                    author = None if isinstance(actor, str) else actor.id
                    self.case_replies.append((case_id, author, dept_id, at, reply_text, "sent"))
                elif to == Status.VISITED:
                    self.visits.append(
                        (
                            case_id,
                            at,
                            True,
                            rng.random() < 0.85,
                            rng.choice(("satisfied", "satisfied", "basic")),
                            "phone",
                            True,
                            # Contacted in time when replied by the deadline (no extra draw:
                            # the generated data stay as they were).
                            replied_at <= due,  # type: ignore[operator]
                        )
                    )
                elif to == Status.CLOSED:
                    closed_at = at
            if status in (Status.ASSIGNED, Status.IN_PROGRESS) and due < now:
                risk = "overdue"
            elif status in (Status.ASSIGNED, Status.IN_PROGRESS) and due < now + timedelta(days=1):
                risk = "at_risk"
        self.cases.append(
            (
                case_id,
                number,
                code_hash,
                channel,
                f"volume:{case_id}:{secrets.token_hex(4)}",
                t.kind,
                status,
                t.subject,
                t.body,
                name,
                phone,
                email,
                received,
                created,
                department_id,
                dept_id,
                confidence,
                [[code, confidence]],
                shared.model_version,
                bool(reasons),
                reasons,
                received + timedelta(days=1),
                due_at,
                assigned_at,
                replied_at,
                closed_at,
                merged_into,
                rejection_reason,
                shared.masked_text(t, name, phone, email, reply_text),
                risk,
                self.events[-1][1],
                key,
                alt,
            )
        )
        self.numbers.append((case_id, number))
        self.texts[case_id] = CaseText(
            case_id, number, t.subject, t.body, name, phone, email,
            replies=[reply_text] if reply_text else [], department_id=department_id or 0,
            sent_replies=[reply_text] if reply_text else [],
        )  # fmt: skip
        if merged_into is not None:
            # The case merged into finds it by its number too (as `triage.search_index` has it).
            into = self.texts[merged_into]
            self.texts[merged_into] = replace(into, merged_numbers=(*into.merged_numbers, number))
        if status in OPEN_STATUSES:
            self.open_cases.append(
                (case_id, received.replace(tzinfo=UTC), f"{t.subject}\n{t.body}")
            )

    def write(self, writer: _Writer, builder: SignatureBuilder, grams: _GramRows) -> None:
        writer.rows(_CASES, self.cases)
        writer.rows(_EVENTS, self.events)
        writer.rows(_REPLIES, self.case_replies)
        writer.rows(_VISITS, self.visits)
        signatures = signature_rows(builder, self.open_cases)
        writer.rows(
            _SIGNATURES, [(r["hash"], r["received_minute"], r["case_id"]) for r in signatures]
        )
        texts = self.texts.values()
        writer.grams(_Grams.of([grams.rows(c) for c in texts], [c.department_id for c in texts]))


_STEPS = (
    ("in_progress", "started", Status.IN_PROGRESS),
    ("replied", "replied", Status.REPLIED),
    ("visited", "visited", Status.VISITED),
    ("closed", "closed", Status.CLOSED),
)
_STAGE_ORDER = {
    "triage": 0,
    "assigned": 1,
    "in_progress": 2,
    "replied": 3,
    "visited": 4,
    "closed": 5,
}


# -- the rows as each database takes them -------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """A table's columns as the generator gives them (the tuples' order), and the values of
    its other columns: their scalar or callable defaults (None where there is none), the
    same for every row. A column with a server default only is left to the database."""

    table: Table
    given: tuple[str, ...]

    def constant(self) -> list[tuple[Column[Any], Any]]:
        """(column, value) of the columns not given."""
        out = []
        for column in self.table.columns:
            if column.name in self.given or (column.name == "id" and column.primary_key):
                continue
            default = column.default
            if default is None:
                if column.server_default is not None:
                    continue
                value = None
            elif default.is_scalar:  # type: ignore[attr-defined]
                value = default.arg  # type: ignore[attr-defined]
            elif default.is_callable:  # type: ignore[attr-defined]
                value = default.arg(None)  # type: ignore[attr-defined]
            else:
                continue  # a SQL expression: the database's
            out.append((column, value))
        return out

    def columns(self) -> list[Column[Any]]:
        """The given columns, then the constant ones."""
        named = [self.table.c[name] for name in self.given]
        return named + [c for c, _ in self.constant()]


_CASES = _Rows(
    Case.__table__,  # type: ignore[arg-type]
    (
        "id", "tracking_number", "query_code_hash", "channel", "external_id", "kind", "status",
        "subject", "body", "contact_name", "contact_phone", "contact_email", "received_at",
        "created_at", "department_id", "suggested_department_id", "confidence", "alternatives",
        "model_version", "urgent", "urgent_reasons", "triage_due_at", "due_at", "assigned_at",
        "replied_at", "closed_at", "merged_into_id", "rejection_reason", "masked_text", "risk",
        "updated_at", "caller_key", "caller_alt_key",
    ),
)  # fmt: skip
_EVENTS = _Rows(
    CaseEvent.__table__,  # type: ignore[arg-type]
    ("case_id", "at", "action", "actor_id", "actor_name", "from_status", "to_status", "detail",
     "public"),
)  # fmt: skip
_REPLIES = _Rows(
    CaseReply.__table__,  # type: ignore[arg-type]
    ("case_id", "author_id", "department_id", "at", "body", "state"),
)
_VISITS = _Rows(
    ReturnVisit.__table__,  # type: ignore[arg-type]
    ("case_id", "at", "reached", "solved", "satisfaction", "channel", "valid", "contacted"),
)
_SIGNATURES = _Rows(
    DuplicateSignature.__table__,  # type: ignore[arg-type]
    ("hash", "received_minute", "case_id"),
)


def _kind(column: Column[Any]) -> str:
    """How a column's values are written: "json", "datetime", "bool" or "plain"."""
    name = type(column.type).__name__
    if name == "JSON":
        return "json"
    if name == "UTCDateTime" or "DateTime" in name or name == "DATETIME":
        return "datetime"
    if name in ("Boolean", "BOOLEAN"):
        return "bool"
    return "plain"


class _Writer:
    """Takes a run's rows table by table, and the search index's rows."""

    def rows(self, spec: _Rows, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def grams(self, rows: _Grams) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Writes what is held back."""


_COPY_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One value in COPY's text format (naive datetimes, JSON already dumped as str)."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPE)
    if isinstance(value, datetime):
        return value.isoformat(" ", "microseconds")
    if isinstance(value, (list, dict)):
        return json.dumps(value).translate(_COPY_ESCAPE)
    return str(value)


class _PgWriter(_Writer):
    """COPY in text format, made here: psycopg's per-row adaptation cost more than the rows."""

    def __init__(self, conn: Connection) -> None:
        self.raw = conn.connection.driver_connection
        self.quote = conn.dialect.identifier_preparer.quote  # "similar" is a keyword
        self.specs: dict[str, tuple[str, str]] = {}

    def _spec(self, spec: _Rows) -> tuple[str, str]:
        found = self.specs.get(spec.table.name)
        if found is None:
            names = ", ".join(self.quote(c.name) for c in spec.columns())
            tail = "".join("\t" + _copy_text(v) for _, v in spec.constant())
            found = self.specs[spec.table.name] = (
                f"COPY {spec.table.name} ({names}) FROM STDIN",
                tail + "\n",
            )
        return found

    def _copy(self, sql: str, data: str) -> None:
        with self.raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
            copy.write(data)

    def rows(self, spec: _Rows, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        sql, tail = self._spec(spec)
        kinds = [_kind(c) for c in spec.columns()[: len(spec.given)]]
        fmt: list[Callable[[Any], str]] = [
            (lambda v: v.translate(_COPY_ESCAPE) if isinstance(v, str) else _copy_text(v))
            if k == "plain"
            else _copy_text
            for k in kinds
        ]
        out = io.StringIO()
        for row in rows:
            out.write("\t".join([f(v) for f, v in zip(fmt, row, strict=True)]))
            out.write(tail)
        self._copy(sql, out.getvalue())

    def grams(self, rows: _Grams) -> None:
        data = np.empty(len(rows.grams), _PG_GRAM)
        data["n"], data["gram_size"], data["case_size"], data["fields_size"] = 4, 8, 4, 2
        data["department_size"] = 4
        data["gram"], data["case_id"], data["fields"] = rows.grams, rows.case_ids, rows.fields
        data["department_id"] = rows.departments
        self._copy(
            "COPY search_grams (gram, case_id, fields, department_id) FROM STDIN (FORMAT BINARY)",
            _PG_BINARY_HEADER + data.tobytes() + _PG_BINARY_TRAILER,
        )


# COPY's binary format for (bigint, integer, smallint, integer) rows: per row the number of fields,
# then each field's length and value, big-endian.
_PG_GRAM = np.dtype(
    [
        ("n", ">i2"),
        ("gram_size", ">i4"),
        ("gram", ">i8"),
        ("case_size", ">i4"),
        ("case_id", ">i4"),
        ("fields_size", ">i4"),
        ("fields", ">i2"),
        ("department_size", ">i4"),
        ("department_id", ">i4"),
    ]
)
_PG_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_PG_BINARY_TRAILER = b"\xff\xff"


def _sqlite_value(kind: str) -> Callable[[Any], Any] | None:
    if kind == "json":
        return lambda v: None if v is None else json.dumps(v)
    if kind == "datetime":
        # SQLAlchemy's SQLite DATETIME format: always six digits of microseconds.
        return lambda v: None if v is None else v.isoformat(" ", "microseconds")
    return None  # booleans and the rest as sqlite3 takes them


class _SqliteWriter(_Writer):
    """``executemany`` of plain tuples; the search index's rows gathered per gram (the
    cases come in id order, so each gram's case ids are sorted) and written in the key
    order of its WITHOUT ROWID table every `_SQLITE_GRAMS` cases: each page of its B-tree
    written once instead of a random insert per row."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.quote = conn.dialect.identifier_preparer.quote
        self.cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
        # The index's B-tree takes its rows all over its pages: kept in memory while writing.
        conn.exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
        self.specs: dict[str, tuple[str, tuple[Any, ...], list[tuple[int, Any]]]] = {}
        self.held: list[_Grams] = []
        self.cases = 0

    def rows(self, spec: _Rows, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        found = self.specs.get(spec.table.name)
        if found is None:
            columns = spec.columns()
            marks = ", ".join("?" for _ in columns)
            names = ", ".join(self.quote(c.name) for c in columns)
            sql = f"INSERT INTO {spec.table.name} ({names}) VALUES ({marks})"
            constant = tuple(
                (_sqlite_value(_kind(c)) or (lambda v: v))(v) for c, v in spec.constant()
            )
            convert = [
                (i, f)
                for i, c in enumerate(columns[: len(spec.given)])
                if (f := _sqlite_value(_kind(c))) is not None
            ]
            found = self.specs[spec.table.name] = (sql, constant, convert)
        sql, constant, convert = found
        out = []
        for row in rows:
            values = list(row)
            for i, f in convert:
                values[i] = f(values[i])
            out.append((*values, *constant))
        self.conn.exec_driver_sql(sql, out)

    def grams(self, rows: _Grams) -> None:
        self.held.append(rows)
        self.cases += rows.cases
        if self.cases >= _SQLITE_GRAMS:
            self._flush()

    def _flush(self) -> None:
        held, self.held, self.cases = self.held, [], 0
        if not held:
            return
        grams = np.concatenate([r.grams for r in held])
        # Stable: the case ids, in order as they came, stay in order within a gram.
        order = np.argsort(grams, kind="stable")
        grams = grams[order]
        case_ids = np.concatenate([r.case_ids for r in held])[order]
        fields = np.concatenate([r.fields for r in held])[order]
        departments = np.concatenate([r.departments for r in held])[order]
        del held, order
        # The driver's own cursor: it takes an iterator of tuples made a slice at a time;
        # the transaction began with the batches' first rows.
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            for at in range(0, len(grams), _SQLITE_SLICE):
                part = slice(at, at + _SQLITE_SLICE)
                cursor.executemany(
                    "INSERT INTO search_grams (gram, case_id, fields, department_id)"
                    " VALUES (?, ?, ?, ?)",
                    zip(
                        grams[part].tolist(),
                        case_ids[part].tolist(),
                        fields[part].tolist(),
                        departments[part].tolist(),
                        strict=True,
                    ),
                )
        finally:
            cursor.close()

    def finish(self) -> None:
        self._flush()
        self.conn.exec_driver_sql(f"PRAGMA cache_size={int(self.cache)}")


class _Keys:
    """The written tables' secondary indexes and foreign keys (and the search index's
    primary key), dropped now and made again by `restore` with the definitions the
    database gave (so whatever the migrations made comes back as it was), all in the
    caller's transaction. The other primary keys stay: ids come in order, and the foreign
    keys' checks need the referenced ones."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.indexes: list[str] = []
        self.constraints: list[tuple[str, str, str]] = []
        for table in _WRITTEN:
            name = table.name  # type: ignore[attr-defined]
            if self.pg:
                self._drop_pg(name)
            else:
                for index, sql in conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master"
                    " WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                    (name,),
                ).all():
                    self.indexes.append(sql)
                    conn.exec_driver_sql(f'DROP INDEX "{index}"')

    def _drop_pg(self, table: str) -> None:
        conn = self.conn
        owned = conn.exec_driver_sql(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %(t)s::regclass ORDER BY contype",
            {"t": table},
        ).all()
        for name, kind, definition in owned:
            if kind == "f" or (kind == "p" and table == "search_grams"):
                self.constraints.append((table, name, definition))
                conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        backing = {name for name, _, _ in owned}
        for index, definition in conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = %(t)s",
            {"t": table},
        ).all():
            if index not in backing:
                self.indexes.append(definition)
                conn.exec_driver_sql(f'DROP INDEX "{index}"')

    def restore(self) -> None:
        if self.pg:
            self.conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
            # Primary keys before indexes, foreign keys last (they need the keys they name).
            for table, name, definition in self.constraints:
                if definition.startswith("PRIMARY KEY"):
                    self.conn.exec_driver_sql(
                        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
                    )
        for sql in self.indexes:
            self.conn.exec_driver_sql(sql)
        for table, name, definition in self.constraints:
            if not definition.startswith("PRIMARY KEY"):
                self.conn.exec_driver_sql(
                    f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
                )


# -- the search index's rows, computed in bulk ---------------------------------------------------

_DIGITS = re.compile(r"\D+")


def _own_contact_in(text_: str, phone: str, digits: str | None = None) -> bool:
    """Whether masking ``text_`` could depend on the case's own phone or email: an ``@``,
    or the phone's last five digits among the text's digits."""
    if digits is None:
        digits = _DIGITS.sub("", unicodedata.normalize("NFKC", text_))
    own = _DIGITS.sub("", phone)
    return "@" in text_ or "\uff20" in text_ or (len(own) >= 5 and own[-5:] in digits)


class _Grams:
    """A batch's search index rows as arrays: ``grams`` (int64), ``fields`` (int16),
    ``case_ids`` and ``departments`` (int32, 0 for none)."""

    def __init__(
        self,
        grams: np.ndarray,
        fields: np.ndarray,
        case_ids: np.ndarray,
        departments: np.ndarray,
        cases: int,
    ) -> None:
        self.grams, self.fields, self.case_ids = grams, fields, case_ids
        self.departments, self.cases = departments, cases

    @classmethod
    def of(
        cls, cases: Sequence[tuple[int, np.ndarray, np.ndarray]], departments: Sequence[int]
    ) -> _Grams:
        """The rows of (case id, grams, fields) triples and each case's department, in that
        order."""
        if not cases:
            empty = np.zeros(0, np.int64)
            none = empty.astype(np.int32)
            return cls(empty, empty.astype(np.int16), none, none, 0)
        ids = np.fromiter((c for c, _, _ in cases), np.int32, len(cases))
        depts = np.fromiter(departments, np.int32, len(cases))
        lengths = np.fromiter((len(g) for _, g, _ in cases), np.int64, len(cases))
        return cls(
            np.concatenate([g for _, g, _ in cases]),
            np.concatenate([f for _, _, f in cases]),
            np.repeat(ids, lengths),
            np.repeat(depts, lengths),
            len(cases),
        )


class _Combo:
    """The rows a template text and a name give every case that has them."""

    def __init__(self, rows: dict[int, int]) -> None:
        self.grams = np.fromiter(rows.keys(), np.int64, len(rows))
        self.fields = np.fromiter(rows.values(), np.int16, len(rows))
        self.at = {g: i for i, g in enumerate(rows)}


class _GramRows:
    """The search index's rows of synthetic cases, the same as `case_rows` gives, worked out
    once per template text and name instead of once per case: the cases share a few hundred
    texts and some seventy names, and their grams took most of the generator's time. A case
    adds its own (tracking number, contact, reply) to its text's: some sixty grams, not 220.

    A case's masked subject and body depend on its own phone and email only where they occur
    in the text (a number ending in the phone, an ``@``): such a case is computed in full."""

    def __init__(self) -> None:
        self._texts: dict[tuple[str, str, str], _Combo] = {}
        self._grams: dict[str, set[int]] = {}
        self._masked: dict[tuple[str, str], set[int]] = {}
        self._digits: dict[str, str] = {}

    def _of(self, text_: str) -> set[int]:
        grams = self._grams.get(text_)
        if grams is None:
            grams = self._grams[text_] = text_grams(text_)
        return grams

    def _shared(self, subject: str, body: str, name: str) -> _Combo:
        key = (subject, body, name)
        found = self._texts.get(key)
        if found is None:
            rows: dict[int, int] = {}
            for text_, bit in (
                (subject, SUBJECT),
                (body, BODY),
                (mask_text(subject, names=[name]), MASKED_SUBJECT),
                (mask_text(body, names=[name]), MASKED_BODY),
            ):
                for gram in self._of(text_):
                    rows[gram] = rows.get(gram, 0) | bit
            found = self._texts[key] = _Combo(rows)
        return found

    def _masked_reply(self, reply: str, name: str) -> set[int]:
        key = (reply, name)
        grams = self._masked.get(key)
        if grams is None:
            grams = self._masked[key] = text_grams(mask_text(reply, names=[name]))
        return grams

    def _exact(self, case: CaseText) -> bool:
        """Whether the texts' masking could depend on the case's own phone or email."""
        text_ = "\n".join([case.subject, case.body, *case.sent_replies])
        digits = self._digits.get(text_)
        if digits is None:
            digits = self._digits[text_] = _DIGITS.sub("", unicodedata.normalize("NFKC", text_))
        return _own_contact_in(text_, case.contact_phone, digits)

    def rows(self, case: CaseText) -> tuple[int, np.ndarray, np.ndarray]:
        """(case id, grams, fields): the rows of `case_rows(case)`."""
        if self._exact(case):
            rows = case_rows(case)
            return (
                case.case_id,
                np.fromiter(rows.keys(), np.int64, len(rows)),
                np.fromiter(rows.values(), np.int16, len(rows)),
            )
        combo = self._shared(case.subject, case.body, case.contact_name)
        own: dict[int, int] = {}
        for number in (case.tracking_number, *case.merged_numbers):
            for gram in text_grams(number):
                own[gram] = own.get(gram, 0) | NUMBER
        for reply in case.replies:
            for gram in self._of(reply):
                own[gram] = own.get(gram, 0) | REPLY
        for reply in case.sent_replies:
            for gram in self._masked_reply(reply, case.contact_name):
                own[gram] = own.get(gram, 0) | MASKED_REPLY
        contact = f"{case.contact_name}\n{case.contact_phone}\n{case.contact_email}"
        for gram in text_grams(contact):
            own[gram] = own.get(gram, 0) | CONTACT
        fields = combo.fields
        added: list[int] = []
        bits: list[int] = []
        for gram, bit in own.items():
            at = combo.at.get(gram)
            if at is None:
                added.append(gram)
                bits.append(bit)
            else:
                if fields is combo.fields:
                    fields = fields.copy()
                fields[at] |= bit
        if not added:
            return case.case_id, combo.grams, fields
        return (
            case.case_id,
            np.concatenate([combo.grams, np.array(added, np.int64)]),
            np.concatenate([fields, np.array(bits, np.int16)]),
        )
