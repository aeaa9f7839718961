"""Candidate duplicates found through an index, so that a new complaint costs the same with a
hundred open cases as with a million.

Each open case keeps a *signature*: at most ``SIGNATURE_SIZE`` hashed character bigrams (and
Latin words) of its text, the rarest among the open cases of the window when it was
registered, which find independent reports naming the same place or thing; and ``BANDS``
MinHash-LSH keys, which find rewordings of the same letter even when each of its words is
common. They are rows of ``duplicate_signatures`` (hash, received minute, case id), the
primary key being the lookup order. A new text looks up the hashes of its own grams (at most
``QUERY_GRAMS``) and its band keys, reading at most ``ROWS_PER_GRAM + 1`` rows per hash,
newest first: a hash with more rows than that is in too many open cases to tell them apart
(letter boilerplate, "小区", "业主") and is ignored. Cases are ranked by the hashes they share
with the new text, each weighted by its rarity (log((ROWS_PER_GRAM + 1) / rows)), and the
best ``CANDIDATES`` are handed to the similarity scoring. The same lookup gives the new
case's own signature: its grams with the fewest rows, and its bands.

So a lookup reads at most (QUERY_GRAMS + BANDS) x (ROWS_PER_GRAM + 1) index entries, whatever
the number of open cases, in one statement on either database.

The index is kept by the session itself, in the transaction that changes the case: a new
open case gets its rows when it is flushed (the signature that ``look_up`` chose, or one
chosen by hash alone when registration did no lookup), and a case that reaches a final status
(closed, merged, rejected) loses them, and its stored similarity profile
(`triage.similarity_store`). The reader still checks each candidate's status and
receipt time against the cases table, so rows left behind by a change made outside the ORM
cannot make a closed case a duplicate.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import re
import unicodedata
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, event, text
from sqlalchemy.orm import Session, attributes

from triage.models import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    Case,
    DuplicateSignature,
    SimilarityProfile,
)
from triage.search_index import deferred

__all__ = [
    "BANDS",
    "BAND_WIDTH",
    "CANDIDATES",
    "QUERY_GRAMS",
    "ROWS_PER_CASE",
    "ROWS_PER_GRAM",
    "SHINGLE",
    "SIGNATURE_SIZE",
    "Lookup",
    "SignatureBuilder",
    "band_keys",
    "gram_hashes",
    "look_up",
    "minute_of",
    "remember_signature",
]

SIGNATURE_SIZE = 22
"""Rarest grams stored per case."""

BANDS = 10
"""MinHash bands stored per case besides its rarest grams (so at most 32 rows a case)."""

BAND_WIDTH = 3
"""Min-hashes per band: two texts share a band with probability J**3, J being the Jaccard
similarity of their shingle sets."""

SHINGLE = 4
"""Characters per shingle of the bands: long enough that a shingle spanning two words (the
end of a place name, the start of an object) is specific to the pair."""

ROWS_PER_CASE = SIGNATURE_SIZE + BANDS
"""Index rows of one case at most."""

QUERY_GRAMS = 256
"""Distinct grams of a new text looked up at most (the ones with the smallest hashes)."""

ROWS_PER_GRAM = 64
"""Index rows read per gram; a gram in more open cases of the window is ignored."""

CANDIDATES = 50
"""Cases handed to the similarity scoring at most."""

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUNS = re.compile(rf"[{_CJK}]+|[a-z0-9]+")
# Function characters: a bigram with one of them says little about what the complaint is about.
_FUNCTION_CHARS = frozenset(
    "的了是我你他她它们在和与及就也都这那个么吗呢吧啊呀哦嗯之其而或被把让给向于以"
)
_ENGLISH_STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        "the and for with that this are was were have has had not you your they them their "
        "from our but all any can will would there here been being into about which when what "
        "who she his her its also very than then just",
    )
)
_PENDING = "duplicate_index.pending"


def _stem(word: str) -> str:
    """A crude English stem, enough for "locked" to meet "lock" and "exits" to meet "exit"."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@functools.lru_cache(maxsize=8)
def _runs(text: str) -> list[str]:
    """The CJK runs and Latin words or numbers of a text, after NFKC and lower-casing (kept
    for a few texts: a lookup takes both its grams and its shingles from them)."""
    return _RUNS.findall(unicodedata.normalize("NFKC", text).lower())


def _grams(text: str) -> set[str]:
    grams: set[str] = set()
    for run in _runs(text):
        if run[0] >= "\u3400":
            grams.update(
                a + b
                for a, b in itertools.pairwise(run)
                if a not in _FUNCTION_CHARS and b not in _FUNCTION_CHARS
            )
        elif len(run) >= 2 and run not in _ENGLISH_STOP_WORDS:
            grams.add(_stem(run))
    return grams


def gram_hashes(text: str, limit: int = QUERY_GRAMS) -> list[int]:
    """The text's distinct gram hashes (signed 32-bit), smallest first, at most ``limit``.

    Grams are CJK character bigrams without function characters, and Latin words and numbers
    of two characters or more (English ones crudely stemmed), after NFKC and lower-casing.
    Keeping the smallest hashes is a sample that two texts draw alike.
    """
    hashes = {(zlib.crc32(g.encode()) ^ _SIGN) - _SIGN for g in _grams(text)}  # _signed
    return sorted(hashes)[:limit]


# Fixed, so that every process and every release draws the same hash functions.
_SALTS = np.random.default_rng(20261130).integers(0, 2**63, BANDS * BAND_WIDTH, dtype=np.uint64)
_MULTIPLIERS = np.random.default_rng(6).integers(
    0, 2**63, BANDS * BAND_WIDTH, dtype=np.uint64
) | np.uint64(1)


def _shingles(text: str) -> set[str]:
    shingles: set[str] = set()
    words: list[str] = []
    for run in _runs(text):
        if run[0] >= "\u3400":
            shingles.update(run[i : i + SHINGLE] for i in range(max(1, len(run) - SHINGLE + 1)))
        else:
            words.append(run)
    shingles.update(" ".join(pair) for pair in itertools.pairwise(words))
    if len(words) == 1:
        shingles.add(words[0])
    return shingles


def band_keys(text: str) -> list[int]:
    """The text's ``BANDS`` MinHash-LSH keys, each the hash of ``BAND_WIDTH`` min-hashes of
    its shingles (``SHINGLE`` consecutive CJK characters, or two consecutive Latin words).

    Rewordings of the same letter share several, whatever words they are made of; unrelated
    texts rarely share one, and the ones letters of the same template share are in too many
    cases to count.
    """
    hashes = sorted({(zlib.crc32(s.encode()) ^ _SIGN) - _SIGN for s in _shingles(text)})
    hashes = hashes[:QUERY_GRAMS]
    if len(hashes) < BAND_WIDTH:
        return []
    values = np.array(hashes, dtype=np.int64).view(np.uint64)[:, None]
    with np.errstate(over="ignore"):
        mins = ((values ^ _SALTS) * _MULTIPLIERS).min(axis=0).reshape(BANDS, BAND_WIDTH)
    return [_signed(zlib.crc32(bytes([band]) + mins[band].tobytes())) for band in range(BANDS)]


_SIGN = 1 << 31


def _signed(value: int) -> int:
    """An unsigned 32-bit value as the signed one of the same bits (inlined in the loops as
    ``(value ^ _SIGN) - _SIGN``)."""
    return value - (1 << 32) if value >= 1 << 31 else value


def minute_of(moment: datetime) -> int:
    """Whole minutes since 1970-01-01 UTC; ``moment`` must be aware."""
    return int(moment.timestamp()) // 60


def choose_signature(hashes: Sequence[int], rows: dict[int, int]) -> list[int]:
    """The ``SIGNATURE_SIZE`` hashes with the fewest index rows (ties: smallest hash)."""
    cap, get = ROWS_PER_GRAM + 1, rows.get
    ranked = sorted(zip([min(get(h, 0), cap) for h in hashes], hashes, strict=True))
    return [h for _, h in ranked[:SIGNATURE_SIZE]]


@dataclass(frozen=True)
class Lookup:
    """What the index says about a new text.

    ``case_ids``: open cases of the window sharing its rarer grams, most alike first (at most
    ``CANDIDATES``; their status and time are to be checked against the cases table).
    ``signature``: the hashes to store for the new text. ``rows``: index entries read per
    hash looked up (absent: none; ``ROWS_PER_GRAM + 1``: the hash was ignored as too common).
    """

    case_ids: list[int]
    signature: list[int]
    rows: dict[int, int]

    @property
    def rows_read(self) -> int:
        return sum(self.rows.values())


def look_up(
    session: Session,
    text_: str,
    since: datetime,
    limit: int = CANDIDATES,
    *,
    extra: Mapping[int, Sequence[tuple[int, int]]] | None = None,
    below: int | None = None,
) -> Lookup:
    """Candidates for near-duplicates of ``text_`` among cases received at or after ``since``
    (aware), in one statement that reads a bounded number of index entries.

    ``extra``: index entries not written yet (hash → [(received minute, case id)], the cases
    of a registration batch), read as if they were rows of the table. ``below``: only cases
    with a smaller id are candidates (a case enriched after later ones were indexed,
    `triage.enrichment`)."""
    hashes = gram_hashes(text_)
    if not hashes:
        return Lookup([], [], {})
    bands = band_keys(text_)
    since_minute = minute_of(since)
    if extra and any(h in extra for h in itertools.chain(hashes, bands)):
        postings = _merged_postings(session, hashes + bands, since_minute, extra)
    else:
        postings = _postings(session, hashes + bands, since_minute)
    return _ranked(hashes, bands, postings, limit, below)


_RARITY = [0.0] + [math.log((ROWS_PER_GRAM + 1) / n) for n in range(1, ROWS_PER_GRAM + 1)]
"""The weight of a hash with n index rows, 1 <= n <= ROWS_PER_GRAM: log((ROWS_PER_GRAM + 1) / n)."""
_SCORE_THEN_ID = operator.itemgetter(1, 0)


def _ranked(
    hashes: list[int],
    bands: list[int],
    postings: Mapping[int, Sequence[int]],
    limit: int,
    below: int | None,
) -> Lookup:
    """`look_up`'s answer from the postings of its hashes (newest first, at most
    ``ROWS_PER_GRAM + 1`` a hash)."""
    rows = {h: len(ids) for h, ids in postings.items()}
    scores: dict[int, float] = {}
    get = scores.get
    for ids in postings.values():
        if len(ids) > ROWS_PER_GRAM:
            continue  # in too many cases to tell them apart: boilerplate
        weight = _RARITY[len(ids)]
        for case_id in ids if below is None else [i for i in ids if i < below]:
            scores[case_id] = get(case_id, 0) + weight
    # Highest score first, then the newest case (ids are unique: no two keys tie).
    best = sorted(scores.items(), key=_SCORE_THEN_ID, reverse=True)[:limit]
    return Lookup(
        case_ids=[case_id for case_id, _ in best],
        signature=choose_signature(hashes, rows) + bands,
        rows=rows,
    )


_SQLITE_POSTINGS = text(
    "SELECT q.value AS hash, ("
    " SELECT group_concat(case_id) FROM ("
    "  SELECT case_id FROM duplicate_signatures"
    "  WHERE hash = q.value AND received_minute >= :since"
    "  ORDER BY received_minute DESC LIMIT :rows)"
    ") AS case_ids FROM json_each(:hashes) AS q"
)
_POSTGRES_POSTINGS = text(
    "SELECT q.hash, p.case_id FROM unnest(CAST(:hashes AS integer[])) AS q(hash)"
    " CROSS JOIN LATERAL ("
    "  SELECT case_id FROM duplicate_signatures"
    "  WHERE hash = q.hash AND received_minute >= :since"
    "  ORDER BY received_minute DESC LIMIT :rows) AS p"
)


def _postings(session: Session, hashes: list[int], since_minute: int) -> dict[int, list[int]]:
    """For each hash, the newest ``ROWS_PER_GRAM + 1`` case ids at most (absent: none)."""
    params: dict[str, Any] = {"since": since_minute, "rows": ROWS_PER_GRAM + 1}
    found: dict[int, list[int]] = {}
    if session.get_bind().dialect.name == "postgresql":
        for h, case_id in session.execute(_POSTGRES_POSTINGS, {**params, "hashes": hashes}):
            found.setdefault(h, []).append(case_id)
        return found
    for h, ids in session.execute(_SQLITE_POSTINGS, {**params, "hashes": json.dumps(hashes)}):
        if ids:
            found[h] = [int(i) for i in ids.split(",")]
    return found


_SQLITE_POSTINGS_AT = text(
    "SELECT q.value AS hash, ("
    " SELECT group_concat(received_minute || ':' || case_id) FROM ("
    "  SELECT received_minute, case_id FROM duplicate_signatures"
    "  WHERE hash = q.value AND received_minute >= :since"
    "  ORDER BY received_minute DESC, case_id DESC LIMIT :rows)"
    ") AS entries FROM json_each(:hashes) AS q"
)
_POSTGRES_POSTINGS_AT = text(
    "SELECT q.hash, p.received_minute, p.case_id"
    " FROM unnest(CAST(:hashes AS integer[])) AS q(hash)"
    " CROSS JOIN LATERAL ("
    "  SELECT received_minute, case_id FROM duplicate_signatures"
    "  WHERE hash = q.hash AND received_minute >= :since"
    "  ORDER BY received_minute DESC, case_id DESC LIMIT :rows) AS p"
)


def _merged_postings(
    session: Session,
    hashes: list[int],
    since_minute: int,
    extra: Mapping[int, Sequence[tuple[int, int]]],
) -> dict[int, list[int]]:
    """`_postings` with ``extra`` entries among the rows: for each hash the newest
    ``ROWS_PER_GRAM + 1`` of both (newest minute first, then highest case id, the order of
    the table's key read backwards)."""
    params: dict[str, Any] = {"since": since_minute, "rows": ROWS_PER_GRAM + 1}
    entries: dict[int, list[tuple[int, int]]] = {}
    if session.get_bind().dialect.name == "postgresql":
        for h, minute, case_id in session.execute(
            _POSTGRES_POSTINGS_AT, {**params, "hashes": hashes}
        ):
            entries.setdefault(h, []).append((minute, case_id))
    else:
        for h, found in session.execute(
            _SQLITE_POSTINGS_AT, {**params, "hashes": json.dumps(hashes)}
        ):
            if found:
                pairs = (item.split(":") for item in found.split(","))
                entries[h] = [(int(m), int(c)) for m, c in pairs]
    out: dict[int, list[int]] = {}
    for h in hashes:
        rows = entries.get(h, [])
        more = [e for e in extra.get(h, ()) if e[0] >= since_minute]
        if more:
            rows = sorted([*rows, *more], reverse=True)[: ROWS_PER_GRAM + 1]
        if rows:
            out[h] = [case_id for _, case_id in rows]
    return out


class BatchLookup:
    """`look_up` for the texts of many cases, enriched in id order (`triage.enrichment`),
    with one statement for them all instead of one each.

    ``texts``: (case id, text, since) in the order they are looked up. The index entries of
    all their hashes are read at once (`prefetch`, newest first, from the earliest
    ``since``); `look_up` then answers one text from them as `look_up` with ``below`` would
    from the table, counting as rows the entries `add` gave for the texts looked up before
    it (their signatures, written by the caller after the batch). The entries of one hash
    received at or after a text's ``since`` are a prefix of those read from the earliest, so
    each text sees the same rows as its own statement would have read.
    """

    def __init__(self, session: Session, texts: Sequence[tuple[int, str, datetime]]) -> None:
        self.grams: dict[int, tuple[list[int], list[int]]] = {}
        wanted: set[int] = set()
        for case_id, text_, _ in texts:
            hashes = gram_hashes(text_)
            bands = band_keys(text_) if hashes else []
            self.grams[case_id] = (hashes, bands)
            wanted.update(hashes)
            wanted.update(bands)
        self.entries: dict[int, list[tuple[int, int]]] = {}
        self.extra: dict[int, list[tuple[int, int]]] = {}
        if wanted and texts:
            since = min(minute_of(since) for _, _, since in texts)
            self.entries = _entries(session, sorted(wanted), since)

    def look_up(
        self, case_id: int, since: datetime, limit: int = CANDIDATES, *, below: int | None = None
    ) -> Lookup:
        hashes, bands = self.grams[case_id]
        if not hashes:
            return Lookup([], [], {})
        since_minute = minute_of(since)
        postings: dict[int, list[int]] = {}
        for h in itertools.chain(hashes, bands):
            rows = self.entries.get(h, [])
            if rows and rows[-1][0] < since_minute:  # newest first: most often all are in
                rows = [e for e in rows if e[0] >= since_minute]
            more = self.extra.get(h)
            if more:
                more = [e for e in more if e[0] >= since_minute]
                rows = sorted([*rows, *more], reverse=True)[: ROWS_PER_GRAM + 1]
            if rows:
                postings[h] = [c for _, c in rows]
        return _ranked(hashes, bands, postings, limit, below)

    def add(self, case_id: int, minute: int, signature: Iterable[int]) -> None:
        """The index rows of a case looked up (its signature), for the texts after it."""
        for h in signature:
            self.extra.setdefault(h, []).append((minute, case_id))


def _entries(
    session: Session, hashes: list[int], since_minute: int
) -> dict[int, list[tuple[int, int]]]:
    """For each hash, its newest ``ROWS_PER_GRAM + 1`` entries (received minute, case id),
    newest first, in one statement."""
    params: dict[str, Any] = {"since": since_minute, "rows": ROWS_PER_GRAM + 1}
    entries: dict[int, list[tuple[int, int]]] = {}
    if session.get_bind().dialect.name == "postgresql":
        for h, minute, case_id in session.execute(
            _POSTGRES_POSTINGS_AT, {**params, "hashes": hashes}
        ):
            entries.setdefault(h, []).append((minute, case_id))
        for rows in entries.values():
            rows.sort(reverse=True)  # as read, most likely; SQL does not promise it
        return entries
    for h, found in session.execute(_SQLITE_POSTINGS_AT, {**params, "hashes": json.dumps(hashes)}):
        if found:
            pairs = (item.split(":") for item in found.split(","))
            entries[h] = sorted(((int(m), int(c)) for m, c in pairs), reverse=True)
    return entries


def hash_signature(text_: str) -> list[int]:
    """The signature chosen by hash alone (no lookup): its first grams and its bands."""
    return gram_hashes(text_)[:SIGNATURE_SIZE] + band_keys(text_)


def write_rows(session: Session, rows: list[tuple[int, int, int]]) -> None:
    """Inserts (hash, received minute, case id) rows now (see `_write`)."""
    if rows:
        _write(session, rows)


def remember_signature(session: Session, case: Case, signature: Sequence[int]) -> None:
    """Stores ``signature`` for the not yet flushed ``case``: its rows are written when it is."""
    session.info.setdefault(_PENDING, {})[case] = list(signature)


@event.listens_for(Session, "after_flush")
def _keep_index(session: Session, flush_context: Any) -> None:
    """New open cases get their rows, cases that reached a final status lose theirs."""
    pending: dict[Case, list[int]] = session.info.get(_PENDING, {})
    rows = []
    for obj in session.new:
        if (
            isinstance(obj, Case)
            and obj.status in OPEN_STATUSES
            and obj.id is not None
            and not deferred(obj)  # written by triage.enrichment after the commit
        ):
            signature = pending.pop(obj, None)
            if signature is None:
                case_text = _case_text(obj)
                signature = hash_signature(case_text)
            minute = minute_of(obj.received_at)
            rows += [(h, minute, obj.id) for h in set(signature)]
    if rows:
        _write(session, rows)
    ended = [
        obj.id
        for obj in session.dirty
        if isinstance(obj, Case)
        and obj.status in FINAL_STATUSES
        and attributes.get_history(obj, "status").added
    ]
    if ended:
        session.execute(
            delete(DuplicateSignature).where(DuplicateSignature.case_id.in_(ended)),
            execution_options={"synchronize_session": False},
        )
        # No one's candidate any more: its stored similarity profile goes too.
        session.execute(
            delete(SimilarityProfile).where(SimilarityProfile.case_id.in_(ended)),
            execution_options={"synchronize_session": False},
        )


def _write(session: Session, rows: list[tuple[int, int, int]]) -> None:
    """Inserts (hash, received minute, case id) rows in key order (fewer B-tree pages touched
    per batch), as plain tuples to the driver (COPY on PostgreSQL): the ORM's bulk insert
    of a dict a row cost more than the insert itself."""
    rows.sort()
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with (
            raw.cursor() as cur,  # type: ignore[union-attr]
            cur.copy(
                "COPY duplicate_signatures (hash, received_minute, case_id) FROM STDIN"
            ) as copy,
        ):
            # COPY's text format in one string (integers only): cheaper than write_row.
            copy.write("".join(f"{h}\t{m}\t{c}\n" for h, m, c in rows))
        return
    conn.exec_driver_sql(
        "INSERT INTO duplicate_signatures (hash, received_minute, case_id) VALUES (?, ?, ?)",
        rows,
    )


def _case_text(case: Case) -> str:
    return f"{case.subject or ''}\n{case.body or ''}"


class SignatureBuilder:
    """Chooses signatures as registrations would have, for many cases in order of receipt,
    counting index rows in memory: for filling the index of existing cases in bulk.

    ``add(minute, text)`` → the signature; rows older than ``window_days`` before ``minute``
    stop counting, as they would in the lookup.
    """

    def __init__(self, window_days: int = 30):
        self.window = window_days * 24 * 60
        self.rows: Counter[int] = Counter()
        self.recent: deque[tuple[int, list[int]]] = deque()

    def add(self, minute: int, text_: str) -> list[int]:
        while self.recent and self.recent[0][0] < minute - self.window:
            for h in self.recent.popleft()[1]:
                self.rows[h] -= 1
        signature = choose_signature(gram_hashes(text_), self.rows) + band_keys(text_)
        for h in signature:
            self.rows[h] += 1
        self.recent.append((minute, signature))
        return signature


def signature_rows(
    builder: SignatureBuilder, cases: Iterable[tuple[int, datetime, str]]
) -> list[dict[str, int]]:
    """Index rows for (case id, received at, text) triples, in the order given."""
    rows = []
    for case_id, received_at, text_ in cases:
        minute = minute_of(received_at)
        rows += [
            {"hash": h, "received_minute": minute, "case_id": case_id}
            for h in builder.add(minute, text_)
        ]
    return rows
