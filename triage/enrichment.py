"""Enrichment: what a new case gets right after its registration is committed rather than
inside it, so that the mail intake's transaction holds only fetch, parse, classify, commit
and move (issue 7's >= 200 messages a second).

A case registered with ``defer_enrichment`` (`triage.cases.register_batch`, used by the mail
intake) has an `EnrichmentPending` row instead of:

- its similar-case suggestions (``cases.similar`` and the ``similar_found`` event, dated at
  the registration as before), from the same duplicate-index lookup and the same scoring;
- its duplicate-index signature (the rows the next cases' lookups read);
- its similarity profile (`triage.similarity_store`: what scoring it as a later case's
  candidate reads instead of analysing its text again);
- its search-index rows (until then a search does not find it).

`enrich_pending` adds them in case-id order (so each case's lookup sees the earlier cases'
signatures, as one registration after another would), then deletes the pending row, all in
the caller's transaction: a crash before the commit leaves the rows pending and the next run
does the work again; after it, nothing is left to do. Two enrichers never take the same
case: the claim is a DELETE … RETURNING of the pending rows, with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL (a second enricher takes other rows, or none), and on SQLite the delete makes
the transaction the database's one writer until it commits.

Run by the mail intake after each round (and before ``--once`` exits), by ``minsheng
supervise tick`` and by ``minsheng search reindex``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import delete, event, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from triage.models import (
    OPEN_STATUSES,
    Case,
    DuplicateSignature,
    EnrichmentPending,
    SimilarityProfile,
)
from triage.search_index import DEFERRED, deferred

if TYPE_CHECKING:
    from triage.cases import IntakePolicy
    from triage.similarity import Profile

__all__ = ["DEFERRED", "defer_enrichment", "deferred", "enrich_pending", "pending_count"]

BATCH = 200
"""Cases claimed per statement by `enrich_pending`."""


def defer_enrichment(session: Session, case: Case) -> None:
    """Marks the new ``case`` (its id set, not flushed yet) for enrichment after the commit."""
    setattr(case, DEFERRED, True)
    session.add(EnrichmentPending(case_id=case.id, case=case))


_SQLITE_CLAIM = text(
    "DELETE FROM enrichment_pending WHERE case_id IN ("
    " SELECT case_id FROM enrichment_pending ORDER BY case_id LIMIT :n)"
    " RETURNING case_id"
)
_POSTGRES_CLAIM = text(
    "DELETE FROM enrichment_pending WHERE case_id IN ("
    " SELECT case_id FROM enrichment_pending ORDER BY case_id LIMIT :n"
    " FOR UPDATE SKIP LOCKED) RETURNING case_id"
)


def pending_count(session: Session) -> int:
    """How many cases wait for enrichment."""
    return int(session.scalar(select(text("count(*)")).select_from(EnrichmentPending)) or 0)


def _claim(session: Session, n: int) -> list[int]:
    claim = _POSTGRES_CLAIM if session.get_bind().dialect.name == "postgresql" else _SQLITE_CLAIM
    return sorted(int(i) for i in session.execute(claim, {"n": n}).scalars())


def enrich_pending(session: Session, policy: IntakePolicy, limit: int | None = None) -> int:
    """Enriches up to ``limit`` pending cases (all when None), oldest id first; returns how
    many. Flushes, never commits: the caller commits (the claim holds until then).

    Each case gets what `triage.cases.register` gives it synchronously: its suggestions
    (``policy.find_similar`` over the duplicate index's candidates among the open cases of
    ``policy.duplicate_window_days`` before its receipt, with ids below its own), its
    ``similar_found`` event at its ``created_at``, its duplicate signature (if still open)
    and its search rows (from what the database holds now, replies and merges included).

    `BATCH` cases at a time, in a fixed number of statements whatever their number: the
    claim, the cases, one DELETE of their old signatures, one read of the index entries of
    all their grams (`duplicate_index.BatchLookup`: each case's lookup also counts the
    signatures of the cases before it, as if written), one read of their candidates with
    their stored similarity profiles, one upsert of the profiles computed (their own, and
    those of candidates that had none: `triage.similarity_store`), one insert of their
    signatures, the flush of their suggestions, and their search rows
    (`search_index.reindex_cases`). Each case's own profile is its one jieba analysis for
    the scoring: its candidates' profiles are read, so the work per case does not grow
    with the number of open cases.
    """
    from triage import search_index

    done = 0
    while limit is None or done < limit:
        n = BATCH if limit is None else min(BATCH, limit - done)
        ids = _claim(session, n)
        if not ids:
            break
        with session.no_autoflush:
            cases = session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.id)).all()
            _suggest_batch(session, cases, policy)
        session.flush()
        search_index.reindex_cases(session, [c.id for c in cases])
        done += len(ids)
    return done


def _suggest_batch(session: Session, cases: Sequence[Case], policy: IntakePolicy) -> None:
    """The similar-case suggestions and duplicate signatures of pending ``cases`` (id order).

    The same as one case after the other, each seeing the signatures of the earlier ones: a
    case's old signature rows (a case enriched again) are deleted before any lookup of the
    batch rather than just before its own."""
    from triage import duplicate_index, similarity, similarity_store
    from triage.cases import case_text
    from triage.similarity import ProfiledText

    if not cases:
        return
    session.execute(
        delete(DuplicateSignature).where(DuplicateSignature.case_id.in_([c.id for c in cases])),
        execution_options={"synchronize_session": False},
    )
    # Closed or merged before its enrichment: not a candidate, nothing to suggest.
    live = [c for c in cases if c.status in OPEN_STATUSES]
    texts = {c.id: case_text(c.subject, c.body) for c in live}
    rows: list[tuple[int, int, int]] = []
    if policy.find_similar is None or policy.duplicate_window_days <= 0:
        for case in live:
            minute = duplicate_index.minute_of(case.received_at)
            rows += [
                (h, minute, case.id) for h in set(duplicate_index.hash_signature(texts[case.id]))
            ]
        duplicate_index.write_rows(session, rows)
        return
    # Each case's own profile (jieba: the one computation a case costs), stored below: as a
    # candidate of later cases it is read, not computed again.
    own = {c.id: similarity.profile(texts[c.id]) for c in live}
    window = timedelta(days=policy.duplicate_window_days)
    since = {c.id: c.received_at - window for c in live}
    lookup = duplicate_index.BatchLookup(session, [(c.id, texts[c.id], since[c.id]) for c in live])
    found = {}
    for case in live:
        found[case.id] = lookup.look_up(case.id, since[case.id], below=case.id)
        minute = duplicate_index.minute_of(case.received_at)
        lookup.add(case.id, minute, set(found[case.id].signature))
        rows += [(h, minute, case.id) for h in set(found[case.id].signature)]
    candidates = open_candidates(
        session, {i for f in found.values() for i in f.case_ids}, min(since.values(), default=None)
    )
    profiled: dict[int, ProfiledText] = {}
    computed: dict[int, Profile] = {}

    def candidate_text(row: CandidateRow) -> ProfiledText:
        """The candidate's text with its profile: this batch's, stored, or computed now (a
        case enriched before profiles were stored; stored below)."""
        text_ = profiled.get(row.id)
        if text_ is None:
            value = case_text(row.subject, row.body)
            profile = own.get(row.id)
            if profile is None:
                profile, new = similarity_store.profile_of(value, row.version, row.data)
                if new:
                    computed[row.id] = profile
            text_ = profiled[row.id] = ProfiledText(value, profile)
        return text_

    hits: list[tuple[Case, list[list[object]]]] = []
    for case in live:
        rows_ = [
            candidates[i]
            for i in found[case.id].case_ids
            if i in candidates and candidates[i].received_at >= since[case.id]
        ]
        if not rows_:
            continue
        numbers = {r.id: r.tracking_number for r in rows_}
        scored = policy.find_similar(
            ProfiledText(texts[case.id], own[case.id]), [(r.id, candidate_text(r)) for r in rows_]
        )
        similar: list[list[object]] = [
            [numbers[i], round(float(score), 3)] for i, score in scored if i in numbers
        ]
        if similar:
            hits.append((case, similar))
    similarity_store.save(session, {**computed, **own})
    for case, similar in hits:
        case.similar = similar
        if "events" not in sa_inspect(case).dict:
            # Appending to an unloaded collection would read every event of the case first:
            # the event is added to an empty one, and the collection read again when next
            # used (expired once the batch is flushed, see `_forget_events`).
            set_committed_value(case, "events", [])
            session.info.setdefault(_UNLOADED_EVENTS, set()).add(case)
        case.record("similar_found", "system", case.created_at, cases=similar)
    duplicate_index.write_rows(session, rows)


_UNLOADED_EVENTS = "enrichment.unloaded_events"


@event.listens_for(Session, "after_flush_postexec")
def _forget_events(session: Session, flush_context: object) -> None:
    """Cases whose events the batch appended to without reading them read them again."""
    for case in session.info.pop(_UNLOADED_EVENTS, ()):
        if case in session:
            session.expire(case, ["events"])


class CandidateRow(NamedTuple):
    id: int
    tracking_number: str
    subject: str
    body: str
    received_at: datetime
    version: int | None  # of its stored similarity profile, if any
    data: bytes | None


def open_candidates(
    session: Session, ids: set[int], since: datetime | None
) -> dict[int, CandidateRow]:
    """The open cases among ``ids`` received at or after ``since``, by id, with their
    stored similarity profiles (one statement)."""
    from triage.similarity_store import PROFILE_COLUMNS

    if not ids or since is None:
        return {}
    return {
        r.id: CandidateRow(*r)
        for r in session.execute(
            select(
                Case.id,
                Case.tracking_number,
                Case.subject,
                Case.body,
                Case.received_at,
                *PROFILE_COLUMNS,
            )
            .outerjoin(SimilarityProfile, SimilarityProfile.case_id == Case.id)
            .where(
                Case.id.in_(sorted(ids)),
                Case.status.in_(OPEN_STATUSES),
                Case.received_at >= since,
            )
        )
    }
