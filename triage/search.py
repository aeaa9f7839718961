"""Finding cases by what a user types in the search box, limited to what that user sees.

Users who see personal data search subject, body, replies, tracking number and the
complainant's name (and those the caller gave on later calls), phone and email (a phone in
any spacing or width: ``138 0013 8000`` finds ``13800138000``). Users who see cases masked
(external supervisors, observers) search only the masked subject, body and sent replies they
are shown (not drafts waiting for sign-off) and the tracking number, so no query can tell
them a digit or a name they cannot see. A case is also found by the full number of a case
merged into it. Words separated by spaces must all occur (a phone typed with spaces is one
word). ``%`` and ``_`` are literal characters, never wildcards.

`search_cases` answers through the index of `triage.search_index`: it reads the postings of
the query's rarest gram (newest cases first, at most `SEARCH_CAP` matches), checks the next
rarest (at most `JOINED_GRAMS` in all) by primary-key lookups, and checks the text itself
(`case_search`) unless the query is exactly one gram (two CJK characters, or three letters or
digits), which the index answers exactly; a query repeating one gram (哈哈哈, 8888) is
checked. Results are ranked by the field matched (tracking number, contact, subject, body,
replies), then newest first. A whole tracking number is looked up by the unique index on
numbers first. A query with no indexed gram (one Chinese character, two letters) is answered
by a scan that stops at `SEARCH_CAP` matches.

A search limited to one department (a handler's, or a list filtered by department) reads that
department's postings only (each posting carries its case's department): it costs what the
department holds, not what the office does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from intake.normalise import clean_line
from triage.models import CALLER_NAME_ACTIONS, Case, CaseEvent, CaseReply
from triage.privacy import phone_digits
from triage.search_index import (
    BODY,
    CONTACT,
    MASKED_BODY,
    MASKED_FIELDS,
    MASKED_REPLY,
    MASKED_SUBJECT,
    NUMBER,
    NUMBER_SEPARATORS,
    REPLY,
    STAFF_FIELDS,
    SUBJECT,
    SearchGram,
    run_grams,
    runs,
)
from triage.tracking_numbers import tracking_number_parts

__all__ = [
    "SEARCH_CAP",
    "SearchResult",
    "case_search",
    "excerpt",
    "highlight",
    "like_pattern",
    "search_cases",
    "search_terms",
]

SEARCH_CAP = 2000
"""Matches read per search at most (the newest): beyond, the user is asked to narrow it."""

MAX_TERMS = 8
MAX_GRAMS = 12
"""Grams of a long query checked through the index (the text check covers the rest)."""

JOINED_GRAMS = 3
"""Grams whose postings are joined per search at most: the rarest. The others are left to the
text check on the few candidate rows: an eleven-digit phone has nine trigrams, and planning a
join of nine aliases cost PostgreSQL some 140 ms for a 7 ms execution."""

_RARITY_PROBE = 1000
_ESCAPE = "\\"
_GRAMS = SearchGram.__table__
_PHONE_LIKE = re.compile(r"[\d\s+\-().]+")
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"))
"""Hyphens, en and em dashes and the minus sign, as people type them between a phone's
digits (NFKC leaves them be)."""


def query_phone(term: str) -> str:
    """A phone typed in a query → its digits as contacts' phones are stored: a mobile
    without +86, 0086 or 86 (`phone_digits`); a Chinese landline typed +86 10 … with its
    leading 0 back (01087654321); another country's number typed 00852 … as +852 … is
    stored, without the 00. Else the digits."""
    normal = unicodedata.normalize("NFKC", term).strip()
    digits = re.sub(r"\D", "", normal)
    mobile = phone_digits(term)
    if mobile != digits:
        return mobile
    # 00 dials abroad before a whole number (a country code and at least seven digits);
    # fewer digits are digits (000, 0088).
    abroad = digits.startswith("00") and len(digits) >= 10
    international = normal.startswith("+") or abroad
    rest = digits[2:] if abroad else digits
    if international and rest.startswith("86") and len(rest) >= 11:
        return "0" + rest[2:]
    return rest if international else digits


def phone_like(term: str) -> bool:
    """Whether ``term`` is written as a phone number: digits with spaces, dashes of any
    kind, dots, brackets or a plus (full-width ones too)."""
    return bool(_PHONE_LIKE.fullmatch(unicodedata.normalize("NFKC", term).translate(_DASHES)))


_TRACKING_NUMBER = re.compile(r"[A-Za-z]{1,6}-\d{4}-\d{4,9}")


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern that matches it anywhere, with no wildcards of its own."""
    escaped = text.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%")
    return "%" + escaped.replace("_", _ESCAPE + "_") + "%"


_QUOTES = str.maketrans(dict.fromkeys('"“”「」『』＂«»', " "))
_SINGLE_QUOTES = "'‘’＇"
"""Quotation marks people put round a phrase as a search engine taught them: the words
inside are looked for (all of them, as always), not the marks."""


def search_terms(query: str) -> list[str]:
    """The words of a query, all of which must occur: split at spaces, except a phone
    number typed with spaces, which is one word; quotation marks are dropped. At most
    `MAX_TERMS`."""
    q = clean_line(clean_line(query).translate(_QUOTES))
    if not q:
        return []
    if phone_like(q) and len(phone_digits(q)) >= 4:
        return [q]
    # A single quote is a quotation mark at a word's ends, an apostrophe inside it (it's).
    words = [w.strip(_SINGLE_QUOTES) for w in q.split()]
    return list(dict.fromkeys(w for w in words if w))[:MAX_TERMS]


def _term_clause(term: str, *, masked: bool) -> ColumnElement[bool]:
    pattern = like_pattern(term)
    number = Case.tracking_number.ilike(pattern, escape=_ESCAPE)
    if _TRACKING_NUMBER.fullmatch(term):
        # A case is also found by the full number of a case merged into it (by the unique
        # index on numbers: never a scan).
        merged = aliased(Case)
        number = or_(
            number,
            Case.id.in_(
                select(merged.merged_into_id).where(merged.tracking_number == term.upper())
            ),
        )
    digits = query_phone(term) if phone_like(term) else ""
    # A number is found in the text however it was spaced there (138-0013-8000 by
    # 13800138000 and the other way round), from six digits, as the index finds it.
    spaced = like_pattern(digits) if len(digits) >= 6 else None
    if masked:
        clauses = [number, Case.masked_text.ilike(pattern, escape=_ESCAPE)]
        if spaced:
            clauses.append(_unspaced(Case.masked_text).like(spaced, escape=_ESCAPE))
        return or_(*clauses)
    clauses = [
        number,
        Case.subject.ilike(pattern, escape=_ESCAPE),
        Case.body.ilike(pattern, escape=_ESCAPE),
        Case.contact_name.ilike(pattern, escape=_ESCAPE),
        Case.contact_email.ilike(pattern, escape=_ESCAPE),
        Case.replies.any(CaseReply.body.ilike(pattern, escape=_ESCAPE)),
        # The names the caller gave on later calls, which the index holds as the contact's
        # (`Case.caller_names`).
        Case.events.any(
            and_(
                CaseEvent.action.in_(sorted(CALLER_NAME_ACTIONS)),
                CaseEvent.detail["caller_name"].as_string().ilike(pattern, escape=_ESCAPE),
            )
        ),
    ]
    if spaced:
        clauses += [
            _unspaced(Case.subject).like(spaced, escape=_ESCAPE),
            _unspaced(Case.body).like(spaced, escape=_ESCAPE),
            Case.replies.any(_unspaced(CaseReply.body).like(spaced, escape=_ESCAPE)),
        ]
    # From three digits, as the index finds them (a trigram of the contact's phone): a
    # query of three digits answered by the index and "0-18" scanned agree.
    if len(digits) >= 3:
        clauses.append(Case.contact_phone.like(like_pattern(digits), escape=_ESCAPE))
    return or_(*clauses)


def _unspaced(text_: ColumnElement[str]) -> ColumnElement[str]:
    """``text_`` without what people put between a number's digits (`spaced_numbers`'
    separators), in SQL both databases know: only the index's candidates are checked so."""
    for ch in NUMBER_SEPARATORS:
        text_ = func.replace(text_, ch, "")
    return text_


def case_search(query: str, *, masked: bool) -> ColumnElement[bool]:
    """A WHERE clause for cases matching ``query`` (as typed; cleaned here), by scanning.

    ``masked``: the user sees personal data masked, and may search only the masked text.
    An empty query matches nothing. `search_cases` uses it to check the index's candidates.
    """
    terms = search_terms(query)
    if not terms:
        return false()
    return and_(*[_term_clause(t, masked=masked) for t in terms])


@dataclass(frozen=True)
class SearchResult:
    """Matching case ids, best first, and their number (``capped``: there are more than
    `SEARCH_CAP`, and only the newest `SEARCH_CAP` were ranked)."""

    case_ids: list[int]
    capped: bool

    @property
    def total(self) -> int:
        return len(self.case_ids)


def _rank(fields: int) -> int:
    for rank, bits in (
        (5, NUMBER),
        (4, CONTACT),
        (3, SUBJECT | MASKED_SUBJECT),
        (2, BODY | MASKED_BODY),
        (1, REPLY | MASKED_REPLY),
    ):
        if fields & bits:
            return rank
    return 0


_RANKS = [_rank(f) for f in range((STAFF_FIELDS | MASKED_FIELDS) + 1)]
"""`_rank` of every bit set of fields: ranking 2,000 matches is a list lookup per row."""


def _query_grams(terms: Sequence[str]) -> tuple[list[int], bool]:
    """The grams to look up, and whether they alone answer the query exactly (one gram that
    is the whole query: one term that is one run of exactly one gram, two CJK characters or
    three letters or digits).

    Exactness is decided on the query's own grams, before duplicates are dropped: 哈哈哈,
    8888 or 00000000 repeat one gram, and a case holding only 哈哈 or 888 has that gram too,
    so such a query must still be checked on the text."""
    grams: list[int] = []
    exact = len(terms) == 1
    for term in terms:
        if phone_like(term) and (_prefixed(term) or len(query_phone(term)) >= 6):
            # The index holds a contact's phone without the country code typed here (the
            # prefix's grams would be in none of its postings), and a number in the text as
            # one run of digits however it was spaced there (`spaced_numbers`).
            term = query_phone(term)
            exact = False
        term_runs = runs(term)
        if len(term_runs) != 1 or len(term_runs[0]) != len(term.strip()):
            exact = False
        for run in term_runs:
            run_gram_list = run_grams(run)
            if len(run_gram_list) != 1:
                exact = False
            grams.extend(run_gram_list)
    grams = list(dict.fromkeys(grams))
    if any(g >> 61 == 1 for g in grams):
        # Six digits in a row: their grams are the digits' postings worth reading; digit
        # trigrams are shared by every phone and tracking number (even probing their rarity
        # read a thousand postings each). The text check covers what is dropped.
        grams = [g for g in grams if not _digit_trigram(g)]
    if len(grams) > MAX_GRAMS:
        step = (len(grams) - 1) / (MAX_GRAMS - 1)
        grams = [grams[round(i * step)] for i in range(MAX_GRAMS)]
    return grams, exact


def _prefixed(term: str) -> bool:
    """Whether ``term`` is a number typed with a country code the stored phones lack."""
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", term))
    return query_phone(term) != digits


def _digit_trigram(gram: int) -> bool:
    if gram >> 62 != 1:
        return False
    return all(48 <= (gram >> shift) & 127 <= 57 for shift in (14, 7, 0))


def _rarity(session: Session, grams: list[int], department_id: int | None) -> list[int]:
    """Rows of each gram (of the department's cases only, when given), counted up to
    `_RARITY_PROBE`, in one statement."""
    probes = [
        select(func.count())
        .select_from(
            select(literal(1))
            .where(
                _GRAMS.c.gram == g,
                *([] if department_id is None else [_GRAMS.c.department_id == department_id]),
            )
            .limit(_RARITY_PROBE)
            .subquery()
        )
        .scalar_subquery()
        for g in grams
    ]
    return list(session.execute(select(*probes)).one())


def _whole_number(query: str) -> str | None:
    """The tracking number ``query`` spells whole, as a citizen reads or types it
    (MS2026000038, ms 2026 38, MS-2026-38: `normalise_tracking_number`), or None. A serial
    with a leading zero and fewer than six digits (MS-2026-0003) is the start of a padded
    one, searched as text: the numbers that begin so."""
    parts = tracking_number_parts(query)
    if parts is None:
        return None
    prefix, year, serial = parts
    if len(serial) < 6 and serial.startswith("0"):
        return None
    return f"{prefix}-{year}-{int(serial):06d}"


def search_cases(
    session: Session,
    query: str,
    *,
    masked: bool,
    where: Sequence[ColumnElement[bool]] = (),
    department_id: int | None = None,
    cap: int = SEARCH_CAP,
) -> SearchResult:
    """The cases matching ``query`` among those satisfying ``where`` (clauses on `Case`),
    ranked. Reads at most ``cap`` matches; an empty query matches nothing.

    ``department_id``: ``where`` keeps only that department's cases (a handler's scope, a
    list filtered by department); the postings are then read through the department's own
    (ix_search_grams_department), so the search costs what the department holds, not the
    office. ``where`` is still applied to every case found: a posting's department only
    chooses what is read."""
    terms = search_terms(query)
    if not terms:
        return SearchResult([], False)
    number = _whole_number(query)
    if number is not None:
        # A whole tracking number names its case (and the case it was merged into): read
        # through the unique index on numbers, not the grams its digits share with every case.
        merged = aliased(Case)
        named = [
            i
            for i in session.scalars(
                select(Case.id)
                .where(Case.tracking_number == number)
                .union_all(select(merged.merged_into_id).where(merged.tracking_number == number))
            )
            if i is not None
        ]
        found = (
            session.execute(
                select(Case.id, Case.tracking_number).where(Case.id.in_(named), *where)
            ).all()
            if named
            else []
        )
        if found:
            # The case of that number first, then the one it went into.
            return SearchResult([r.id for r in sorted(found, key=lambda r: r[1] != number)], False)
    grams, exact = _query_grams(terms)
    scope = MASKED_FIELDS if masked else STAFF_FIELDS
    if not grams:
        ids = session.scalars(
            select(Case.id)
            .where(case_search(query, masked=masked), *where)
            .order_by(Case.id.desc())
            .limit(cap + 1)
        ).all()
        return SearchResult(list(ids[:cap]), len(ids) > cap)
    counts = _rarity(session, grams, department_id)
    if min(counts) == 0:
        return SearchResult([], False)
    grams = [g for _, g in sorted(zip(counts, grams, strict=True))][:JOINED_GRAMS]
    # Core aliases of the table: ORM aliases cost milliseconds each to build and adapt.
    first, *others = [_GRAMS.alias(f"g{i}") for i in range(len(grams))]
    fields = first.c.fields.op("&")(scope)
    for other in others:
        fields = fields.op("&")(other.c.fields)
    stmt = select(first.c.case_id, fields).where(
        first.c.gram == grams[0],
        first.c.fields.op("&")(scope) != 0,
        *([] if department_id is None else [first.c.department_id == department_id]),
    )
    for gram, other in zip(grams[1:], others, strict=True):
        stmt = stmt.join(
            other,
            and_(
                other.c.gram == gram,
                other.c.case_id == first.c.case_id,
                other.c.fields.op("&")(scope) != 0,
            ),
        )
    # The fields joined are those of the rarest grams only: a query of more grams is always
    # checked on its text (not exact), so a gram left out cannot let a case through; its
    # rank may count a field where only some of the grams occur (a superset of bits).
    checks = list(where) if exact else [*where, case_search(query, masked=masked)]
    if checks:
        stmt = stmt.join(Case, Case.id == first.c.case_id).where(*checks)
    rows = session.execute(stmt.order_by(first.c.case_id.desc()).limit(cap + 1)).all()
    capped = len(rows) > cap
    ranked = sorted(rows[:cap], key=lambda r: (-_RANKS[r[1]], -r[0]))
    return SearchResult([r[0] for r in ranked], capped)


# -- showing where it matched ------------------------------------------------------------------


def _pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    parts = []
    for term in terms:
        if phone_like(term) and len(phone_digits(term)) >= 4:
            # A phone matches however it is spaced in the text.
            parts.append(_SPACING.join(re.escape(d) for d in phone_digits(term)))
        else:
            parts.append(re.escape(term))
    if not parts:
        return None
    return re.compile("|".join(sorted(parts, key=len, reverse=True)), re.IGNORECASE)


_SPACING = "[" + re.escape(NUMBER_SEPARATORS) + "]{0,3}"


def highlight(text: str, terms: Sequence[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, matched) pairs: the pieces that are a search term (any case)
    are marked. Plain text: whoever shows it escapes it."""
    pattern = _pattern(terms)
    if pattern is None or not text:
        return [(text, False)] if text else []
    pieces: list[tuple[str, bool]] = []
    at = 0
    for m in pattern.finditer(text):
        if m.start() == m.end():
            continue
        if m.start() > at:
            pieces.append((text[at : m.start()], False))
        pieces.append((m.group(), True))
        at = m.end()
    if at < len(text):
        pieces.append((text[at:], False))
    return pieces


def excerpt(
    texts: Sequence[str], terms: Sequence[str], width: int = 36
) -> list[tuple[str, bool]] | None:
    """The first of ``texts`` that holds a term, cut to about ``width`` characters on either
    side of the first match and highlighted; None when none holds one."""
    pattern = _pattern(terms)
    if pattern is None:
        return None
    for text in texts:
        flat = " ".join(text.split())
        m = pattern.search(flat)
        if m is None:
            continue
        start, end = max(0, m.start() - width), min(len(flat), m.end() + width)
        pieces = highlight(flat[start:end], terms)
        if start > 0:
            pieces.insert(0, ("…", False))
        if end < len(flat):
            pieces.append(("…", False))
        return pieces
    return None
