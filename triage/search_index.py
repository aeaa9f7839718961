"""The search index: every character bigram and word trigram of a case's text, so that a
search reads the cases holding its terms instead of scanning (``ILIKE``) every case.

Why a posting table rather than FTS5 on SQLite and pg_trgm on PostgreSQL: Chinese queries are
mostly two characters (噪音, 物业, 停车), which a trigram index cannot serve, so a bigram side
table was needed on both databases anyway; with it, the same table and the same SQL serve
every query on both, and what each user may search (staff: personal data too; observers: the
masked text only) is one bit mask in the same rows instead of two engines kept in step.

``search_grams`` holds one row per (gram, case): ``gram`` is the gram itself packed into an
integer (no hash, so no collisions: a two-character query is answered exactly by its one
gram's rows), ``fields`` the bit set of the fields it occurs in (`NUMBER`, `SUBJECT`, ...),
``department_id`` the case's department (0: none yet), so that a department's search reads
its own postings only (see `SearchGram`).
Grams are, after NFKC and lower-casing:

- a CJK (or kana, hangul) bigram: ``ord(a) << 21 | ord(b)`` (below 2**42);
- a trigram of a Latin letter or digit run of three or more: ``1 << 62 | a << 14 | b << 7 | c``
  (ASCII only: the run pattern is ``[a-z0-9]``);
- six digits in a row (within such a run): ``1 << 61 | int(digits)`` (migration 0034). Why:
  every phone and tracking number holds digit trigrams, a thousand of them shared by all
  cases, so a phone number's rarest trigram had some 18,000 postings at 1,000,000 cases (a
  search of one read 63,000 buffers, growing with the office); a six-digit gram has a
  million values and a handful of postings, and a query with six digits in a row reads
  those. A number written with separators (138-0013-8000) also gives the six-digit grams of
  its digits read as one run (migration 0038), so that 13800138000 finds it.

Single CJK characters and Latin runs of one or two are not indexed: a query made only of
them is answered by a bounded scan (see `triage.search`).

A case has about one row per distinct gram of its text (some 250 for a typical complaint with
a reply). The primary key (gram, case_id) is the lookup order (SQLite: WITHOUT ROWID, so the
table is that index); an index on case_id serves the rewrite of one case's rows; the index
(gram, department_id, case_id, fields) a department's search.

The index is kept by the session itself, in the transaction that changes the text: after a
flush that adds a case, changes its subject, body, contact, tracking number or merge target,
or adds, edits, signs off or returns a reply, the case's rows are rewritten (`_keep_index`).
A case's department is copied into its rows by a trigger on `cases` (`create_triggers`),
whichever writer moves the case (the ORM, bulk updates, raw SQL). ``rebuild`` rewrites every
case's rows in batches (the ``minsheng search reindex`` command and migration 0008).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    bindparam,
    column,
    delete,
    event,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.orm import Mapped, Session, attributes, mapped_column
from sqlalchemy.orm.util import identity_key

from triage.case_people import LINK_ACTIONS, caller_names, groups, people_by_case
from triage.models import CALLER_NAME_ACTIONS, Base, Case, CaseEvent, CaseReply, ReplyState
from triage.privacy import People, masked_case_text

__all__ = [
    "BODY",
    "CONTACT",
    "MASKED_BODY",
    "MASKED_FIELDS",
    "MASKED_REPLY",
    "MASKED_SUBJECT",
    "NUMBER",
    "NUMBER_SEPARATORS",
    "REPLY",
    "STAFF_FIELDS",
    "SUBJECT",
    "CaseText",
    "SearchGram",
    "add_six_digit_grams",
    "add_spaced_numbers",
    "caller_names",
    "case_rows",
    "create_triggers",
    "drop_triggers",
    "mask_replies",
    "merge_rows",
    "rebuild",
    "reindex_cases",
    "remask_all",
    "remask_groups",
    "spaced_grams",
    "spaced_numbers",
    "sync_departments",
    "text_grams",
    "triggered",
]

NUMBER = 1
SUBJECT = 2
BODY = 4
REPLY = 8
CONTACT = 16
MASKED_SUBJECT = 32
MASKED_BODY = 64
MASKED_REPLY = 128
"""A reply that went out (not a draft waiting for sign-off or returned), masked as the case
page shows it to observers (migration 0037)."""

STAFF_FIELDS = NUMBER | SUBJECT | BODY | REPLY | CONTACT
"""What users who see personal data search (drafts of replies included: staff see them)."""
MASKED_FIELDS = NUMBER | MASKED_SUBJECT | MASKED_BODY | MASKED_REPLY
"""What users who see cases masked search: the text as they are shown it, nothing else."""

_HELD = (ReplyState.PENDING_SIGN_OFF.value, ReplyState.RETURNED.value)
"""Reply states that did not go out (as `Case.sent_replies`)."""

BATCH = 2000
"""Cases read and rewritten per statement by `rebuild`."""

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_RUNS = re.compile(rf"[{_CJK}]+|[a-z0-9]+")
_TRIGRAM = 1 << 62
_DIGITS6 = 1 << 61
_SIX_DIGITS = re.compile(r"\d{6,}")
_PENDING = "search_index.pending"

DEFERRED = "_enrichment_deferred"
"""Attribute set on a new case object whose index rows wait for enrichment: the flush
listeners of the search and duplicate indexes leave it out when they insert it (on the object,
not the session, so that a rolled-back batch leaves no mark on a later case that reuses an id)."""


def deferred(case: Case) -> bool:
    """Whether the new ``case`` waits for enrichment (`triage.enrichment.defer_enrichment`)."""
    return bool(getattr(case, DEFERRED, False))


class SearchGram(Base):
    """One gram of one case's text, with the fields it occurs in; see the module."""

    __tablename__ = "search_grams"
    # PostgreSQL: the fields in the primary key's index too (INCLUDE, migration 0023), so that
    # a gram's postings are read from the index alone: each row of the heap was on a page of
    # its own (17,700 pages read for the 17,800 cases holding 物业 at 100,000). SQLite's
    # WITHOUT ROWID table is its key's B-tree, fields included.
    __table_args__ = (
        PrimaryKeyConstraint("gram", "case_id", postgresql_include=["fields"]),
        {"sqlite_with_rowid": False},
    )

    gram: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    fields: Mapped[int] = mapped_column(SmallInteger)
    # The case's department, 0 for none (migration 0032). Why in the postings: a handler's
    # search of 噪音扰民 read every matching case of the office to keep its department's
    # (29,398 buffers at 1,000,000 cases, ten times those at 100,000); through
    # ix_search_grams_department it reads the department's postings only, newest first, and
    # stops at `SEARCH_CAP` matches. Not a foreign key: kept by a trigger (`create_triggers`),
    # and a department is never deleted while cases name it. 0 rather than NULL: COPY's fixed
    # binary rows (web/demo_volume.py) and an index with no NULLs.
    department_id: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# A department's postings of a gram, newest first, fields included (read from the index alone).
Index(
    "ix_search_grams_department",
    SearchGram.gram,
    SearchGram.department_id,
    SearchGram.case_id,
    SearchGram.fields,
)


# The case lists' order within a department (a handler's list: triage/case_list.py), declared
# here beside the search index's table: migration 0008 creates both.
Index("ix_cases_department_received", Case.department_id, Case.received_at, Case.id)
# A department's case ids in order (migration 0028): a handler's search merges them with a
# gram's postings (both read newest first) and stops at `SEARCH_CAP` matches, instead of
# hashing every posting of the gram and every case of the department (a two-character
# query: 177,000 postings and 113,000 cases at 1,000,000 cases; 42 buffers instead of 135
# at 100,000, the same at any size).
Index("ix_cases_department_ids", Case.department_id, Case.id)


def _normal(text: str) -> str:
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return text.lower()


def runs(text: str) -> list[str]:
    """The CJK runs and Latin letter-or-digit runs of ``text`` (NFKC, lower case)."""
    return _RUNS.findall(_normal(text))


def run_grams(run: str) -> list[int]:
    """The grams of one run as `runs` gives it (empty for one CJK character or a Latin run
    shorter than three)."""
    if run[0] >= "\u3040":
        return [a << 21 | b for a, b in itertools.pairwise(map(ord, run))]
    codes = [ord(c) for c in run]
    grams = [
        _TRIGRAM | a << 14 | b << 7 | c
        for a, b, c in zip(codes, codes[1:], codes[2:], strict=False)
    ]
    if len(run) >= 6:
        for digits in _SIX_DIGITS.findall(run):
            grams.extend(_DIGITS6 | int(digits[i : i + 6]) for i in range(len(digits) - 5))
    return grams


NUMBER_SEPARATORS = " \t\n\r.()\u2010\u2011\u2012\u2013\u2014\u2015\u2212-"
"""What people put between a number's digits (138 0013 8000, 138-0013-8000, (010)8765.4321):
spaces, dots, brackets, hyphens and dashes (after NFKC, which folds the full-width ones)."""
_SPACED_NUMBER = re.compile(r"\d+(?:[" + re.escape(NUMBER_SEPARATORS) + r"]{1,3}\d+)+")


def spaced_numbers(text: str) -> list[str]:
    """The digits of each number written with separators in ``text`` and six digits or more
    in all (``电话 138-0013-8000`` → ``["13800138000"]``): a number typed as one run of digits
    must find it. ``text`` as `runs` sees it (NFKC: ASCII digits)."""
    found = []
    for m in _SPACED_NUMBER.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if len(digits) >= 6:
            found.append(digits)
    return found


def text_grams(text: str) -> set[int]:
    """The distinct grams of ``text``, those of its numbers written with separators read as
    one run of digits too (`spaced_grams`)."""
    grams: set[int] = set()
    normal = _normal(text)
    for run in _RUNS.findall(normal):
        grams.update(run_grams(run))
    grams.update(spaced_grams(normal))
    return grams


def spaced_grams(normal: str) -> set[int]:
    """The six-digit grams of the numbers written with separators in ``normal`` (NFKC,
    lower case), read as one run of digits. Six-digit grams only: a query of six digits or
    more is checked on the text with the separators taken out (`triage.search`), a shorter
    one as typed, so no trigram may find what that check would turn away."""
    return {
        _DIGITS6 | int(digits[i : i + 6])
        for digits in spaced_numbers(normal)
        for i in range(len(digits) - 5)
    }


@dataclass(frozen=True)
class CaseText:
    """What of a case is searchable: its own text, its replies (drafts included: staff see
    them; ``sent_replies``: those that went out, which observers see masked) and the tracking
    numbers of the cases merged into it."""

    case_id: int
    tracking_number: str
    subject: str
    body: str
    contact_name: str
    contact_phone: str
    contact_email: str
    replies: Sequence[str] = ()
    merged_numbers: Sequence[str] = ()
    department_id: int = 0
    caller_names: Sequence[str] = ()
    """Names the caller gave on later calls (`Case.caller_names` but the contact's)."""
    sent_replies: Sequence[str] = ()
    """The replies that went out (`Case.sent_replies`): shown, masked, to observers."""
    people: People = field(default_factory=People)
    """The other citizens whose data its texts may carry (`triage.case_people`)."""

    @property
    def masked_people(self) -> People:
        """Whose data its masked fields mask, as the case page masks them: the caller with
        the names given on later calls, and the citizens of the cases merged with it or
        linked to it (else an observer would find the case by them)."""
        own = People.of(
            [self.contact_name, *self.caller_names], [self.contact_phone], [self.contact_email]
        )
        return own | self.people


def case_rows(case: CaseText) -> dict[int, int]:
    """gram → fields bit set, for one case."""
    found: dict[int, int] = {}
    seen: dict[str, set[int]] = {}

    def add(text: str, bit: int) -> None:
        grams = seen.get(text)
        if grams is None:
            grams = seen[text] = text_grams(text)
        for gram in grams:
            found[gram] = found.get(gram, 0) | bit

    for number in (case.tracking_number, *case.merged_numbers):
        add(number, NUMBER)
    add(case.subject, SUBJECT)
    add(case.body, BODY)
    for reply in case.replies:
        add(reply, REPLY)
    contact = (case.contact_name, *case.caller_names, case.contact_phone, case.contact_email)
    add("\n".join(contact), CONTACT)
    people = case.masked_people
    add(people.mask(case.subject), MASKED_SUBJECT)
    add(people.mask(case.body), MASKED_BODY)
    for reply in case.sent_replies:
        add(people.mask(reply), MASKED_REPLY)
    return found


# -- reading cases in bulk (Core only: also used by migration 0008) --------------------------

_cases = table(
    "cases",
    column("id", Integer),
    column("tracking_number"),
    column("subject"),
    column("body"),
    column("contact_name"),
    column("contact_phone"),
    column("contact_email"),
    column("merged_into_id", Integer),
    column("department_id", Integer),
)
_replies = table(
    "case_replies",
    column("case_id", Integer),
    column("body"),
    column("id", Integer),
    column("state"),
)
_case_masks = table(
    "cases",
    column("id", Integer),
    column("subject"),
    column("body"),
    column("contact_name"),
    column("contact_phone"),
    column("contact_email"),
    column("masked_text"),
)
_events = table(
    "case_events",
    column("case_id", Integer),
    column("action"),
    column("detail", JSON),
    column("id", Integer),
)
_grams = table(
    "search_grams",
    column("gram", BigInteger),
    column("case_id", Integer),
    column("fields", SmallInteger),
    column("department_id", Integer),
)


def _texts(conn: Connection | Session, ids: Sequence[int] | None, after: int = 0) -> list[CaseText]:
    """The searchable text of the cases ``ids`` (or of the next `BATCH` cases after id
    ``after``), in id order."""
    query = select(_cases).order_by(_cases.c.id)
    if ids is not None:
        query = query.where(_cases.c.id.in_(list(ids)))
    else:
        query = query.where(_cases.c.id > after).limit(BATCH)
    rows = conn.execute(query).all()
    if not rows:
        return []
    found = [r.id for r in rows]
    replies, sent = _reply_texts(conn, found)
    callers = caller_names(conn, found)
    people = people_by_case(conn, found)
    merged: dict[int, list[str]] = {}
    for target, number in conn.execute(
        select(_cases.c.merged_into_id, _cases.c.tracking_number).where(
            _cases.c.merged_into_id.in_(found)
        )
    ):
        merged.setdefault(target, []).append(number)
    return [
        CaseText(
            case_id=r.id,
            tracking_number=r.tracking_number or "",
            subject=r.subject or "",
            body=r.body or "",
            contact_name=r.contact_name or "",
            contact_phone=r.contact_phone or "",
            contact_email=r.contact_email or "",
            replies=replies.get(r.id, ()),
            sent_replies=sent.get(r.id, ()),
            merged_numbers=merged.get(r.id, ()),
            department_id=r.department_id or 0,
            caller_names=[n for n in callers.get(r.id, ()) if n != (r.contact_name or "")],
            people=people.get(r.id, People()),
        )
        for r in rows
    ]


def _reply_texts(
    conn: Connection | Session, case_ids: Sequence[int]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """({case id: its replies' bodies}, {case id: those of the replies that went out}),
    oldest first, for at most `BATCH` ``case_ids``."""
    replies: dict[int, list[str]] = {}
    sent: dict[int, list[str]] = {}
    for case_id, body, state in conn.execute(
        select(_replies.c.case_id, _replies.c.body, _replies.c.state)
        .where(_replies.c.case_id.in_(list(case_ids)))
        .order_by(_replies.c.id)
    ):
        replies.setdefault(case_id, []).append(body or "")
        if state not in _HELD:
            sent.setdefault(case_id, []).append(body or "")
    return replies, sent


def index_rows(texts: Iterable[CaseText]) -> Iterator[tuple[int, int, int, int]]:
    """(gram, case_id, fields, department_id) rows for ``texts``."""
    for case in texts:
        for gram, fields in case_rows(case).items():
            yield gram, case.case_id, fields, case.department_id


def write_rows(
    conn: Connection | Session,
    rows: Iterable[tuple[int, int, int, int]],
    *,
    departments: bool = True,
) -> int:
    """Inserts index rows (COPY on PostgreSQL); returns how many. ``departments=False``:
    into the table as migration 0008 made it (no department_id column; its rebuild)."""
    rows = sorted(rows)  # in key order: fewer pages of the B-tree touched per batch
    if not rows:
        return 0
    bind = conn.connection() if isinstance(conn, Session) else conn
    names = "gram, case_id, fields, department_id" if departments else "gram, case_id, fields"
    if not departments:
        rows = [r[:3] for r in rows]
    if bind.dialect.name == "postgresql":
        raw = bind.connection.driver_connection
        with (
            raw.cursor() as cur,
            cur.copy(f"COPY search_grams ({names}) FROM STDIN") as copy,  # type: ignore[union-attr]
        ):
            # COPY's text format made here in one string: write_row costs several
            # microseconds a row, and a batch of cases has a few hundred thousand.
            copy.write("".join("\t".join(map(str, r)) + "\n" for r in rows))
        return len(rows)
    # Plain tuples to the driver: a dict per row cost more than the insert itself.
    marks = ", ".join("?" * len(rows[0]))
    bind.exec_driver_sql(f"INSERT INTO search_grams ({names}) VALUES ({marks})", rows)
    return len(rows)


def merge_rows(conn: Connection | Session, rows: Iterable[tuple[int, int, int, int]]) -> int:
    """Adds index rows (gram, case_id, fields, department_id); where the (gram, case) is
    already there, its fields become the union of both. Returns how many rows were given.
    For a migration adding grams or field bits to cases already indexed: it touches those
    rows only, where `reindex_cases` deletes and writes all of a case's."""
    rows = sorted(rows)
    if not rows:
        return 0
    bind = conn.connection() if isinstance(conn, Session) else conn
    names = "gram, case_id, fields, department_id"
    merge = (
        "ON CONFLICT (gram, case_id) DO UPDATE SET fields = search_grams.fields | excluded.fields"
    )
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS search_grams_merged"
            " (gram bigint, case_id integer, fields smallint, department_id integer)"
            " ON COMMIT DROP"
        )
        raw = bind.connection.driver_connection
        with (
            raw.cursor() as cur,
            cur.copy(f"COPY search_grams_merged ({names}) FROM STDIN") as copy,  # type: ignore[union-attr]
        ):
            copy.write("".join("\t".join(map(str, r)) + "\n" for r in rows))
        # One row per key in one statement: ON CONFLICT may not touch a row twice.
        bind.exec_driver_sql(
            f"INSERT INTO search_grams ({names}) SELECT gram, case_id, bit_or(fields),"
            f" max(department_id) FROM search_grams_merged GROUP BY gram, case_id {merge}"
        )
        bind.exec_driver_sql("DELETE FROM search_grams_merged")
        return len(rows)
    bind.exec_driver_sql(f"INSERT INTO search_grams ({names}) VALUES (?, ?, ?, ?) {merge}", rows)
    return len(rows)


def add_spaced_numbers(conn: Connection | Session, progress: Any = None) -> tuple[int, int]:
    """Adds the grams of the numbers written with separators (`spaced_grams`) to every case
    whose text has one, its tracking number (MS-2026-000123) included (migration 0038: the
    index held none, so 13800138000 never found a body saying 138-0013-8000), in batches
    of `BATCH` cases; returns (cases with such a number, rows given). Safe to run again.
    ``progress(cases_read)`` after each batch."""
    found = rows = read = 0
    last = 0
    while True:
        texts = _texts(conn, None, after=last)
        if not texts:
            return found, rows
        batch: list[tuple[int, int, int, int]] = []
        for case in texts:
            added = _spaced_rows(case)
            if added:
                found += 1
                batch.extend(
                    (gram, case.case_id, bits, case.department_id) for gram, bits in added.items()
                )
        rows += merge_rows(conn, batch)
        read += len(texts)
        last = texts[-1].case_id
        if progress is not None:
            progress(read)


def _spaced_rows(case: CaseText) -> dict[int, int]:
    """gram → fields of ``case``'s `spaced_grams`, as `case_rows` would give them."""
    contact = (case.contact_name, *case.caller_names, case.contact_phone, case.contact_email)
    own = [
        *((n, NUMBER) for n in (case.tracking_number, *case.merged_numbers)),
        ("\n".join(contact), CONTACT),
    ]
    staff = [(case.subject, SUBJECT), (case.body, BODY), *((r, REPLY) for r in case.replies)]
    found: dict[int, int] = {}
    for text_, bit in own:
        for gram in spaced_grams(_normal(text_)):
            found[gram] = found.get(gram, 0) | bit
    if not any(_SPACED_NUMBER.search(_normal(t)) for t, _ in staff):
        return found  # masking only takes away: the masked texts have none either
    people = case.masked_people
    texts = [
        *staff,
        (people.mask(case.subject), MASKED_SUBJECT),
        (people.mask(case.body), MASKED_BODY),
        *((people.mask(r), MASKED_REPLY) for r in case.sent_replies),
    ]
    for text_, bit in texts:
        for gram in spaced_grams(_normal(text_)):
            found[gram] = found.get(gram, 0) | bit
    return found


def reindex_cases(conn: Connection | Session, case_ids: Iterable[int]) -> int:
    """Rewrites the index rows of ``case_ids`` from what the database holds now; returns the
    number of rows written."""
    ids = sorted(set(case_ids))
    written = 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        conn.execute(delete(_grams).where(_grams.c.case_id.in_(chunk)))
        written += write_rows(conn, index_rows(_texts(conn, chunk)))
    return written


def rebuild(
    conn: Connection | Session, progress: Any = None, *, departments: bool = True
) -> tuple[int, int]:
    """Rewrites the whole index in batches of `BATCH` cases; returns (cases, rows).

    Idempotent: run twice, the index is the same. ``progress(cases_done)`` is called after
    each batch if given. ``departments``: as `write_rows`.
    """
    conn.execute(delete(_grams))
    cases = rows = 0
    last = 0
    while True:
        texts = _texts(conn, None, after=last)
        if not texts:
            return cases, rows
        rows += write_rows(conn, index_rows(texts), departments=departments)
        cases += len(texts)
        last = texts[-1].case_id
        if progress is not None:
            progress(cases)


def add_six_digit_grams(conn: Connection | Session, progress: Any = None) -> tuple[int, int]:
    """Adds the six-digit grams of every case (migration 0034: the index held none before),
    in batches of `BATCH` cases; returns (cases, rows). ``progress(cases_done)`` after each
    batch if given."""
    cases = rows = 0
    last = 0
    while True:
        texts = _texts(conn, None, after=last)
        if not texts:
            return cases, rows
        rows += write_rows(
            conn,
            (
                (gram, case.case_id, fields, case.department_id)
                for case in texts
                for gram, fields in case_rows(case).items()
                if gram >> 61 == 1
            ),
        )
        cases += len(texts)
        last = texts[-1].case_id
        if progress is not None:
            progress(cases)


def remask_callers(conn: Connection | Session) -> int:
    """Re-masks and re-indexes the cases whose caller gave a name of their own on a later
    call (migration 0035: until then only the contact's name was masked in their masked
    text and postings); returns how many. Reads the repeat-call and reopen events, a small
    part of the log, then those cases in batches of `BATCH`."""
    with_names: set[int] = set()
    for case_id, detail in conn.execute(
        select(_events.c.case_id, _events.c.detail).where(
            _events.c.action.in_(sorted(CALLER_NAME_ACTIONS))
        )
    ):
        if isinstance(detail, dict) and detail.get("caller_name"):
            with_names.add(case_id)
    ids = sorted(with_names)
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        _remask_rows(conn, chunk)
        reindex_cases(conn, chunk)
    return len(ids)


def mask_replies(conn: Connection | Session, *, with_replies: bool = True) -> int:
    """Re-masks and re-indexes the cases with at least one reply that went out (migration
    0037: until then neither their masked text nor the masked fields of their postings held
    their replies, so an observer never found a case by the reply its page shows); returns
    how many. Their ids are read `BATCH` at a time, in order (at 1,000,000 cases most have a
    reply: no list of them all is held).

    ``with_replies=False`` (the downgrade): their masked text without the replies, and their
    postings left alone (the migration clears the `MASKED_REPLY` bit itself)."""
    done = last = 0
    sent = or_(_replies.c.state.is_(None), _replies.c.state.not_in(_HELD))
    while True:
        chunk = list(
            conn.scalars(
                select(_replies.c.case_id)
                .where(_replies.c.case_id > last, sent)
                .distinct()
                .order_by(_replies.c.case_id)
                .limit(BATCH)
            )
        )
        if not chunk:
            return done
        _remask_rows(conn, chunk, with_replies=with_replies)
        if with_replies:
            # The masked replies' grams only, merged into the postings there: their other
            # fields were right, and rewriting every posting of these cases (most cases of
            # an office) cost the upgrade some ten minutes at 100,000 cases on SQLite.
            merge_rows(conn, _masked_reply_rows(conn, chunk))
        done += len(chunk)
        last = chunk[-1]


def _masked_reply_rows(
    conn: Connection | Session, case_ids: Sequence[int]
) -> list[tuple[int, int, int, int]]:
    """(gram, case_id, `MASKED_REPLY`, department_id) of the sent replies of at most
    `BATCH` ``case_ids``, masked as `case_rows` masks them."""
    rows = []
    for case in _texts(conn, case_ids):
        people = case.masked_people
        for reply in case.sent_replies:
            rows.extend(
                (gram, case.case_id, MASKED_REPLY, case.department_id)
                for gram in text_grams(people.mask(reply))
            )
    return rows


def _remask_rows(
    conn: Connection | Session, case_ids: Sequence[int], *, with_replies: bool = True
) -> dict[int, str]:
    """Writes the masked text of at most `BATCH` cases from what the database holds now
    (`masked_case_text`: with the names given on later calls, the people of the cases
    merged with it or linked to it and, unless ``with_replies`` is false, the replies that
    went out); returns {case id: masked text} of those whose text changed."""
    names = caller_names(conn, case_ids)
    people = people_by_case(conn, case_ids)
    sent = _reply_texts(conn, case_ids)[1] if with_replies else {}
    changed = []
    for r in conn.execute(select(_case_masks).where(_case_masks.c.id.in_(list(case_ids)))):
        masked = masked_case_text(
            r.subject or "",
            r.body or "",
            r.contact_name or "",
            r.contact_phone or "",
            r.contact_email or "",
            names.get(r.id, ()),
            replies=sent.get(r.id, ()),
            people=people.get(r.id),
        )
        if masked != r.masked_text:
            changed.append({"case": r.id, "masked": masked})
    if changed:
        conn.execute(
            _case_masks.update()
            .where(_case_masks.c.id == bindparam("case"))
            .values(masked_text=bindparam("masked")),
            changed,
        )
    return {c["case"]: c["masked"] for c in changed}


def remask_groups(conn: Connection | Session, *, after: int = 0) -> int:
    """Re-masks and re-indexes every case merged with another or linked to one as a
    follow-up (the demo's bulk writer, which masks each case alone; migration 0039 masks
    every case, `remask_all`);
    returns how many. ``after``: only the groups of the cases with a greater id. Reads the
    merged cases and the link events, then those cases' groups in batches of `BATCH`."""
    found: set[int] = set()
    for cid, into in conn.execute(
        select(_cases.c.id, _cases.c.merged_into_id).where(
            _cases.c.merged_into_id.is_not(None), _cases.c.id > after
        )
    ):
        found.update((cid, into))
    found.update(
        conn.scalars(
            select(_events.c.case_id).where(
                _events.c.action.in_(sorted(LINK_ACTIONS)), _events.c.case_id > after
            )
        )
    )
    ids = sorted({m for group in groups(conn, found).values() for m in group})
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        _remask_rows(conn, chunk)
        reindex_cases(conn, chunk)
    return len(ids)


def remask_all(conn: Connection | Session, progress: Any = None) -> tuple[int, int]:
    """Masks every case's text again as the code masks it now and re-indexes those whose
    masked text changed (migration 0039: the citizens of the cases merged or linked with it,
    and a citizen's own number written without its area code, 8765 4321 for 010-8765 4321,
    stayed readable); returns (cases read, changed).
    Batches of `BATCH` cases in id order; ``progress(cases_read)`` after each if given."""
    read = changed = last = 0
    while True:
        chunk = list(
            conn.scalars(
                select(_cases.c.id).where(_cases.c.id > last).order_by(_cases.c.id).limit(BATCH)
            )
        )
        if not chunk:
            return read, changed
        remasked = _remask_rows(conn, chunk)
        if remasked:
            reindex_cases(conn, list(remasked))
        read += len(chunk)
        changed += len(remasked)
        last = chunk[-1]
        if progress is not None:
            progress(read)


# -- keeping it with every flush ---------------------------------------------------------------

_CASE_FIELDS = (
    "tracking_number",
    "subject",
    "body",
    "contact_name",
    "contact_phone",
    "contact_email",
    "merged_into_id",
    "merged_into",
)


def _changed(obj: Case) -> bool:
    return any(attributes.get_history(obj, name).added for name in _CASE_FIELDS)


@event.listens_for(Session, "after_flush")
def _keep_index(session: Session, flush_context: Any) -> None:
    """Rewrites the masked text (`Case.masked_text`: what observers search by scan, and what
    checks their search's candidates) and the rows of the cases whose searchable text this
    flush changed, from what the database holds now; a case the flush inserted gets its rows
    from the object itself (nothing to delete or read back).

    A change of whose data a case's texts may carry (a merge, a contact changed, a name given
    on a later call, a follow-up opened) changes the masking of every case of its group
    (`triage.case_people`): they are all rewritten."""
    session.info.pop(_REMASKED, None)  # left by a flush that failed after writing it
    ids: set[int] = set()
    spread: set[int] = set()
    inserted: dict[int, Case] = {}
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Case) and obj.id is not None:
            if obj in session.new and deferred(obj):
                continue  # written by triage.enrichment after the commit
            if obj in session.new and obj.merged_into_id is None:
                inserted[obj.id] = obj
            elif obj in session.new or _changed(obj):
                ids.add(obj.id)
                if obj.merged_into_id is not None:
                    ids.add(obj.merged_into_id)
                if obj not in session.new and _people_changed(obj):
                    spread.add(obj.id)
        elif _rewrites(session, obj):
            ids.add(obj.case_id)
            if isinstance(obj, CaseEvent):
                spread.add(obj.case_id)
    for obj in session.deleted:
        if isinstance(obj, CaseReply) and obj.case_id is not None:
            ids.add(obj.case_id)
    if spread:
        ids.update(m for group in groups(session, spread).values() for m in group)
    # A new case with a reply or a merged case in the same flush is read back as a whole.
    texts = [_text_of(case) for case_id, case in sorted(inserted.items()) if case_id not in ids]
    if texts:
        write_rows(session, index_rows(texts))
    if ids:
        remasked: dict[int, str] = {}
        for chunk in (sorted(ids)[i : i + BATCH] for i in range(0, len(ids), BATCH)):
            remasked.update(_remask_rows(session, chunk))
        reindex_cases(session, ids)
        session.info.setdefault(_REMASKED, {}).update(remasked)


_REMASKED = "search_index.remasked"
"""session.info key: {case id: masked text} written by `_keep_index`, for the objects."""


@event.listens_for(Session, "after_flush_postexec")
def _show_remasked(session: Session, flush_context: Any) -> None:
    """The masked text `_keep_index` wrote, on the loaded cases too (without a change for
    the next flush to write)."""
    remasked: dict[int, str] = session.info.pop(_REMASKED, {})
    for case_id, masked in remasked.items():
        case = session.identity_map.get(identity_key(Case, case_id))
        if case is not None:
            attributes.set_committed_value(case, "masked_text", masked)


_PEOPLE_FIELDS = ("contact_name", "contact_phone", "contact_email", "merged_into_id", "merged_into")


def _people_changed(obj: Case) -> bool:
    return any(attributes.get_history(obj, name).added for name in _PEOPLE_FIELDS)


def _rewrites(session: Session, obj: Any) -> bool:
    """Whether ``obj``, flushed, changes its case's searchable text: a reply written or
    edited, or a later call at which the caller gave a name of their own, or a follow-up
    linked at the desk (whose caller's data the masking learns)."""
    if isinstance(obj, CaseReply):
        return obj.case_id is not None and (obj in session.new or _reply_changed(obj))
    return isinstance(obj, CaseEvent) and obj in session.new and _names_caller(obj)


def _reply_changed(reply: CaseReply) -> bool:
    """Whether ``reply``'s text or state changed: a draft signed off goes out (observers
    now see it), one sent back is no longer shown."""
    return bool(
        attributes.get_history(reply, "body").added or attributes.get_history(reply, "state").added
    )


def _names_caller(event_: CaseEvent) -> bool:
    """Whether ``event_`` names another person for the case's masking: a later call at which
    the caller gave a name of their own, or a link to another case (a follow-up)."""
    if event_.action in LINK_ACTIONS:
        return True
    return event_.action in CALLER_NAME_ACTIONS and bool((event_.detail or {}).get("caller_name"))


def _text_of(case: Case) -> CaseText:
    """The searchable text of a case just inserted: no replies, no merged cases yet."""
    return CaseText(
        case_id=case.id,
        tracking_number=case.tracking_number or "",
        subject=case.subject or "",
        body=case.body or "",
        contact_name=case.contact_name or "",
        contact_phone=case.contact_phone or "",
        contact_email=case.contact_email or "",
        department_id=case.department_id or 0,
    )


# -- the department in the postings --------------------------------------------------------

_TRIGGER = "search_grams_department"


def create_triggers(conn: Connection) -> None:
    """The trigger that copies a case's new department into its postings (both databases;
    on PostgreSQL also its function). Run by migration 0032; again by ``web.db.upgrade``,
    followed by `sync_departments`, when a later migration dropped it (on SQLite a batch copy
    of `cases` drops its triggers)."""
    set_to = "COALESCE(NEW.department_id, 0)"
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"""
            CREATE OR REPLACE FUNCTION {_TRIGGER}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
              UPDATE search_grams SET department_id = {set_to} WHERE case_id = NEW.id;
              RETURN NULL;
            END $$
            """
        )
        # Per row, and only for a case whose department changed: a bulk dispatch of fifty
        # cases rewrites their postings; an edit of anything else costs nothing.
        conn.exec_driver_sql(
            f"CREATE TRIGGER {_TRIGGER} AFTER UPDATE OF department_id ON cases FOR EACH ROW"
            " WHEN (OLD.department_id IS DISTINCT FROM NEW.department_id)"
            f" EXECUTE FUNCTION {_TRIGGER}()"
        )
        return
    conn.exec_driver_sql(
        f"CREATE TRIGGER {_TRIGGER} AFTER UPDATE OF department_id ON cases"
        " WHEN OLD.department_id IS NOT NEW.department_id BEGIN"
        f" UPDATE search_grams SET department_id = {set_to} WHERE case_id = NEW.id; END"
    )


def drop_triggers(conn: Connection) -> None:
    """Removes what `create_triggers` made."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_TRIGGER} ON cases")
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {_TRIGGER}()")
    else:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_TRIGGER}")


def triggered(conn: Connection | Session) -> bool:
    """Whether the trigger of `create_triggers` is in place."""
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    if bind.dialect.name == "postgresql":
        found = conn.execute(
            text(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE c.relname = 'cases' AND c.relnamespace = current_schema()::regnamespace"
                " AND t.tgname = :name"
            ),
            {"name": _TRIGGER},
        ).scalar()
    else:
        found = conn.execute(
            text("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = :name"),
            {"name": _TRIGGER},
        ).scalar()
    return bool(found)


def sync_departments(conn: Connection | Session) -> int:
    """Sets every posting's department to its case's (after the trigger was missing, or a
    TRUNCATE-like bulk change); returns the number of postings changed."""
    result = conn.execute(
        text(
            "UPDATE search_grams SET department_id = COALESCE(cases.department_id, 0)"
            " FROM cases WHERE cases.id = search_grams.case_id"
            " AND search_grams.department_id <> COALESCE(cases.department_id, 0)"
        )
    )
    return int(result.rowcount or 0)
