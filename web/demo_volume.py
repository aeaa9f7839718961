"""Synthetic cases in bulk, for benchmarks and for trying the board at a district's scale:
``minsheng demo --volume N [--months M]``.

N cases spread over the last M months, each at a stage that fits its age (most older cases
closed, recent ones anywhere from the triage queue to the return visit), with the events,
replies and return visits that stage implies (about seven events a case), their tracking
numbers taken from the year's counter, and their rows in the duplicate index (open cases) and
the search index. Texts, departments and replies come from the demo's own messages
(web/demo/*.jsonl), names and phone numbers are made up.

Written with bulk inserts of plain rows in batches of `BATCH` cases, not through the ORM
case by case: 100,000 cases take a few minutes, most of it computing the index rows.
"""

from __future__ import annotations

import io
import json
import random
import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select, text, update
from sqlalchemy.schema import AddConstraint, CreateIndex, DropConstraint, DropIndex

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
from triage.search_index import (
    BODY,
    CONTACT,
    MASKED_BODY,
    MASKED_SUBJECT,
    NUMBER,
    REPLY,
    SUBJECT,
    CaseText,
    SearchGram,
    case_rows,
    text_grams,
)
from web.demo import DEMO_CASES, DEMO_TRAINING

__all__ = ["BATCH", "add_volume"]

BATCH = 2000
"""Cases written per batch."""
_BULK = 20_000
"""Cases from which PostgreSQL's search index is rebuilt rather than inserted into."""
_SQLITE_CACHE_KIB = 1_500_000
"""SQLite page cache while writing (KiB): the search index of 100,000 cases fits."""

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


def _pick(rng: random.Random, weighted: Sequence[tuple[str, int]]) -> str:
    return rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]


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
    progress: Callable[[int], None] | None = None,
) -> int:
    """Adds ``count`` synthetic cases received over the last ``months`` months; returns
    how many. Runs in the caller's transaction (``conn``); departments and staff must
    exist (``minsheng init``)."""
    now = now or datetime.now(UTC)
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
    first_id = (conn.scalar(select(func.max(Case.id))) or 0) + 1
    code_hash = hash_query_code(secrets.token_hex(8))
    builder = SignatureBuilder()
    grams = _GramRows()
    written = 0
    cache = None
    if conn.dialect.name == "sqlite":
        # The search index's B-tree takes a row per gram at random places: with SQLite's
        # default 2 MB page cache, past some 20,000 cases nearly every insert read a page from
        # disk (72 cases/s at 100,000); kept in memory for this connection, it stays fast.
        cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
        conn.exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
    index = _IndexWriter(conn, bulk=count >= _BULK)
    for start in range(0, count, BATCH):
        batch = _Batch(rng, now, templates, replies, departments, supervisor, handlers)
        for offset, at in enumerate(received[start : start + BATCH]):
            year = (at + timedelta(hours=8)).year
            number = f"{prefix}-{year}-{next_number[year]:06d}"
            next_number[year] += 1
            batch.add(first_id + start + offset, number, at, code_hash)
        batch.write(conn, builder, grams, index)
        written += len(batch.cases)
        if progress is not None:
            progress(written)
    index.finish()
    if cache is not None:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(cache)}")
    if conn.dialect.name == "postgresql":
        for table in ("cases", "case_events", "case_replies", "return_visits"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))"
                )
            )
    return written


class _Batch:
    """The rows of a batch of synthetic cases, written together."""

    def __init__(
        self,
        rng: random.Random,
        now: datetime,
        templates: list[_Template],
        replies: list[str],
        departments: dict[str, int],
        supervisor: Any,
        handlers: dict[int, Any],
    ) -> None:
        self.rng, self.now = rng, now
        self.templates, self.replies = templates, replies
        self.departments, self.supervisor, self.handlers = departments, supervisor, handlers
        self.cases: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.case_replies: list[dict[str, Any]] = []
        self.visits: list[dict[str, Any]] = []
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
            {
                "case_id": case_id,
                "at": at,
                "action": action,
                "actor_id": actor.id if named else None,
                "actor_name": label,
                "from_status": from_status,
                "to_status": to_status,
                "reason": "",
                "detail": detail,
                "public": public,
            }
        )

    def add(self, case_id: int, number: str, received: datetime, code_hash: str) -> None:
        rng, now = self.rng, self.now
        t = rng.choice(self.templates)
        age = (now - received).days
        stage = _pick(rng, _OLD_STAGES if age > _OLD else _RECENT_STAGES)
        if (now - received) < timedelta(hours=6):
            stage = rng.choice(("triage", "assigned"))
        if stage == "merged" and not self.cases:
            stage = "closed"
        code = t.department if t.department in self.departments else None
        code = code or rng.choice(sorted(self.departments))
        dept_id = self.departments[code]
        channel = _pick(rng, _CHANNELS)
        name = rng.choice(_SURNAMES) + rng.choice(("先生", "女士"))
        phone = _phone(rng)
        email = f"resident{case_id}@example.com" if channel == "email" else ""
        confidence = round(rng.uniform(0.3, 0.99), 4)
        auto = confidence >= 0.8
        row: dict[str, Any] = {
            "id": case_id,
            "tracking_number": number,
            "query_code_hash": code_hash,
            "channel": channel,
            "external_id": f"volume:{case_id}:{secrets.token_hex(4)}",
            "kind": t.kind,
            "status": Status.RECEIVED,
            "subject": t.subject,
            "body": t.body,
            "contact_name": name,
            "contact_phone": phone,
            "contact_email": email,
            "received_at": received,
            "created_at": min(received + timedelta(minutes=1), now),
            "suggested_department_id": dept_id,
            "confidence": confidence,
            "alternatives": [[code, confidence]],
            "model_version": "volume",
            "triage_due_at": received + timedelta(days=1),
            "masked_text": masked_case_text(t.subject, t.body, name, phone, email),
            # Every row has every key: one executemany statement for the batch.
            "department_id": None,
            "assigned_at": None,
            "due_at": None,
            "replied_at": None,
            "closed_at": None,
            "merged_into_id": None,
            "rejection_reason": "",
            "risk": "",
        }
        status = Status.RECEIVED
        self._event(
            case_id, "received", received, f"citizen ({channel})", None, status, True,
            channel=channel, attachments=0,
        )  # fmt: skip
        at = min(received + timedelta(minutes=1), now)
        self._event(
            case_id, "suggested", at, "model volume", status, status,
            department=code, confidence=confidence,
        )  # fmt: skip
        reply_text = ""
        if stage in ("rejected", "merged") or not auto or stage == "triage":
            self._event(case_id, "queued", at, "system", status, Status.TRIAGE)
            status = Status.TRIAGE
        handler = self.handlers.get(dept_id) or f"{code} handler"
        step = timedelta(hours=rng.uniform(2, 30))
        if stage in ("rejected", "merged") and at + step > now:
            row["status"] = status  # decided only after "now": still in the queue
        elif stage == "rejected":
            at += step
            self._event(case_id, "rejected", at, self.supervisor, status, Status.REJECTED, True)
            row.update(status=Status.REJECTED, rejection_reason="invalid", closed_at=at)
        elif stage == "merged":
            target = self.rng.choice(self.cases)
            at += step
            self._event(
                case_id, "merged", at, self.supervisor, status, Status.MERGED, True,
                into=target["tracking_number"],
            )  # fmt: skip
            row.update(status=Status.MERGED, merged_into_id=target["id"], closed_at=at)
        elif stage != "triage" and at + step > now:
            # Dispatched only after "now": still waiting in the queue.
            if status == Status.RECEIVED:
                self._event(case_id, "queued", at, "system", status, Status.TRIAGE)
                status = Status.TRIAGE
            row["status"] = status
        elif stage != "triage":
            at += step
            due = at + timedelta(days=7)
            self._event(
                case_id, "auto_assigned" if status == Status.RECEIVED else "assigned", at,
                "model volume" if status == Status.RECEIVED else self.supervisor,
                status, Status.ASSIGNED, True, department=code, due_at=due.isoformat(),
            )  # fmt: skip
            status = Status.ASSIGNED
            row.update(department_id=dept_id, assigned_at=at, due_at=due)
            for next_stage, action, to in (
                ("in_progress", "started", Status.IN_PROGRESS),
                ("replied", "replied", Status.REPLIED),
                ("visited", "visited", Status.VISITED),
                ("closed", "closed", Status.CLOSED),
            ):
                if _STAGE_ORDER[stage] < _STAGE_ORDER[next_stage]:
                    break
                later = at + timedelta(hours=rng.uniform(2, 60))
                if later > now:
                    break  # a step not taken yet: the case stays where it is
                at = later
                actor = handler if to in (Status.IN_PROGRESS, Status.REPLIED) else self.supervisor
                extra: dict[str, Any] = {}
                if to == Status.VISITED:
                    extra = {"reached": True, "solved": True, "satisfaction": "satisfied"}
                self._event(case_id, action, at, actor, status, to, True, **extra)
                status = to
                if to == Status.REPLIED:
                    reply_text = rng.choice(self.replies) if t.reply == "" else t.reply
                    row["replied_at"] = at
                    self.case_replies.append(
                        {
                            "case_id": case_id,
                            "at": at,
                            "body": reply_text,
                            "department_id": dept_id,
                            "author_id": None if isinstance(actor, str) else actor.id,
                            "state": "sent",
                        }
                    )
                elif to == Status.VISITED:
                    self.visits.append(
                        {
                            "case_id": case_id,
                            "at": at,
                            "reached": True,
                            "solved": rng.random() < 0.85,
                            "satisfaction": rng.choice(("satisfied", "satisfied", "basic")),
                            "note": "",
                            "channel": "phone",
                            "valid": True,
                            # Contacted in time when replied by the deadline (no extra draw:
                            # the generated data stay as they were).
                            "contacted": row["replied_at"] <= row["due_at"],
                        }
                    )
                elif to == Status.CLOSED:
                    row["closed_at"] = at
            row["status"] = status
            if status in (Status.ASSIGNED, Status.IN_PROGRESS) and row["due_at"] < now:
                row["risk"] = "overdue"
            elif status in (Status.ASSIGNED, Status.IN_PROGRESS) and row["due_at"] < now + (
                timedelta(days=1)
            ):
                row["risk"] = "at_risk"
        else:
            row["status"] = status
        row["updated_at"] = self.events[-1]["at"]
        self.cases.append(row)
        self.texts[case_id] = CaseText(
            case_id, number, t.subject, t.body, name, phone, email,
            replies=[reply_text] if reply_text else [],
        )  # fmt: skip
        if row["merged_into_id"] is not None:
            # The case merged into finds it by its number too (as `triage.search_index` has it).
            into = self.texts[row["merged_into_id"]]
            self.texts[into.case_id] = replace(into, merged_numbers=(*into.merged_numbers, number))
        if row["status"] in OPEN_STATUSES:
            self.open_cases.append((case_id, received, f"{t.subject}\n{t.body}"))

    def write(
        self, conn: Connection, builder: SignatureBuilder, grams: _GramRows, index: _IndexWriter
    ) -> None:
        conn.execute(insert(Case.__table__), self.cases)
        for table, rows in (
            (CaseEvent.__table__, self.events),
            (CaseReply.__table__, self.case_replies),
            (ReturnVisit.__table__, self.visits),
        ):
            if rows:
                conn.execute(insert(table), rows)
        signatures = signature_rows(builder, self.open_cases)
        if signatures:
            conn.execute(insert(DuplicateSignature.__table__), signatures)
        index.write([(c.case_id, grams.rows(c)) for c in self.texts.values()])


_STAGE_ORDER = {
    "triage": 0,
    "assigned": 1,
    "in_progress": 2,
    "replied": 3,
    "visited": 4,
    "closed": 5,
}


# -- the search index's rows, computed and written in bulk -------------------------------------

_DIGITS = re.compile(r"\D+")


class _GramRows:
    """The search index's rows of synthetic cases, the same as `case_rows` gives, worked out
    once per template text and name instead of once per case: the cases share a few hundred
    texts and some seventy names, and their grams took most of the generator's time.

    A case's masked subject and body depend on its own phone and email only where they occur
    in the text (a number ending in the phone, an ``@``): such a case is computed in full."""

    def __init__(self) -> None:
        self._texts: dict[tuple[str, str, str], dict[int, int]] = {}
        self._grams: dict[str, set[int]] = {}
        self._digits: dict[str, str] = {}

    def _of(self, text_: str) -> set[int]:
        grams = self._grams.get(text_)
        if grams is None:
            grams = self._grams[text_] = text_grams(text_)
        return grams

    def _shared(self, subject: str, body: str, name: str) -> dict[int, int]:
        key = (subject, body, name)
        found = self._texts.get(key)
        if found is None:
            found = {}
            for text_, bit in (
                (subject, SUBJECT),
                (body, BODY),
                (mask_text(subject, names=[name]), MASKED_SUBJECT),
                (mask_text(body, names=[name]), MASKED_BODY),
            ):
                for gram in self._of(text_):
                    found[gram] = found.get(gram, 0) | bit
            self._texts[key] = found
        return found

    def _exact(self, case: CaseText) -> bool:
        """Whether the texts' masking could depend on the case's own phone or email."""
        text_ = f"{case.subject}\n{case.body}"
        digits = self._digits.get(text_)
        if digits is None:
            digits = self._digits[text_] = _DIGITS.sub("", unicodedata.normalize("NFKC", text_))
        own = _DIGITS.sub("", case.contact_phone)
        return "@" in text_ or "\uff20" in text_ or (len(own) >= 5 and own[-5:] in digits)

    def rows(self, case: CaseText) -> dict[int, int]:
        """gram → fields, as `case_rows(case)`."""
        if self._exact(case):
            return case_rows(case)
        found = dict(self._shared(case.subject, case.body, case.contact_name))
        extra = [(n, NUMBER) for n in (case.tracking_number, *case.merged_numbers)]
        extra += [(r, REPLY) for r in case.replies]
        contact = f"{case.contact_name}\n{case.contact_phone}\n{case.contact_email}"
        extra.append((contact, CONTACT))
        for text_, bit in extra:
            for gram in self._of(text_) if bit == REPLY else text_grams(text_):
                found[gram] = found.get(gram, 0) | bit
        return found


class _IndexWriter:
    """Writes the search index's rows of a whole run as fast as each database takes them.

    PostgreSQL: with COPY, in text; for a large run (`_BULK` cases or more) the table's primary
    key, index and foreign key are dropped first and made again at the end (one sorted build
    instead of a B-tree insert and a foreign-key trigger per row: as a restore does it), all in
    the caller's transaction. SQLite: into a temporary table, moved into ``search_grams`` at the
    end in key order (each page of its B-tree written once instead of a random insert per row),
    its index on case_id made again after.
    """

    def __init__(self, conn: Connection, bulk: bool) -> None:
        self.conn, self.pg = conn, conn.dialect.name == "postgresql"
        self.table: Table = SearchGram.__table__  # type: ignore[assignment]
        self.dropped = False
        if self.pg and bulk:
            self._drop()
        elif not self.pg:
            conn.exec_driver_sql(
                "CREATE TEMP TABLE volume_grams (gram INTEGER, case_id INTEGER, fields INTEGER)"
            )

    def _drop(self) -> None:
        table = self.table
        for fk in table.foreign_key_constraints:
            self.conn.execute(DropConstraint(fk))
        self.conn.execute(DropConstraint(table.primary_key))
        for index in table.indexes:
            self.conn.execute(DropIndex(index))
        self.dropped = True

    def write(self, rows: list[tuple[int, dict[int, int]]]) -> None:
        """Writes (case id, {gram: fields}) rows."""
        if self.pg:
            out = io.StringIO()
            for case_id, grams in rows:
                tail = f"\t{case_id}\t"
                out.write("".join(f"{g}{tail}{f}\n" for g, f in grams.items()))
            raw = self.conn.connection.driver_connection
            with (
                raw.cursor() as cur,  # type: ignore[union-attr]
                cur.copy("COPY search_grams (gram, case_id, fields) FROM STDIN") as copy,
            ):
                copy.write(out.getvalue())
            return
        self.conn.exec_driver_sql(
            "INSERT INTO volume_grams VALUES (?, ?, ?)",
            [(g, case_id, f) for case_id, grams in rows for g, f in grams.items()],
        )

    def finish(self) -> None:
        """Moves the rows in place (SQLite) or makes the keys again (PostgreSQL)."""
        if not self.pg:
            # The index on case_id too is made once at the end, not entered row by row in
            # an order of grams (from 22 to 10 s of CPU for 10,000 cases).
            for index in self.table.indexes:
                self.conn.execute(DropIndex(index))
            self.conn.exec_driver_sql(
                "INSERT INTO search_grams (gram, case_id, fields)"
                " SELECT gram, case_id, fields FROM volume_grams ORDER BY gram, case_id"
            )
            self.conn.exec_driver_sql("DROP TABLE temp.volume_grams")
            for index in self.table.indexes:
                self.conn.execute(CreateIndex(index))
            return
        if not self.dropped:
            return
        table = self.table
        self.conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        self.conn.execute(AddConstraint(table.primary_key))
        for index in table.indexes:
            self.conn.execute(CreateIndex(index))
        for fk in table.foreign_key_constraints:
            self.conn.execute(AddConstraint(fk))
