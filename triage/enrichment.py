"""Enrichment: what a new case gets right after its registration is committed rather than
inside it, so that the mail intake's transaction holds only fetch, parse, classify, commit
and move (issue 7's >= 200 messages a second).

A case registered with ``defer_enrichment`` (`triage.cases.register_batch`, used by the mail
intake) has an `EnrichmentPending` row instead of:

- its similar-case suggestions (``cases.similar`` and the ``similar_found`` event, dated at
  the registration as before), from the same duplicate-index lookup and the same scoring;
- its duplicate-index signature (the rows the next cases' lookups read);
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

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from triage.models import OPEN_STATUSES, Case, DuplicateSignature, EnrichmentPending
from triage.search_index import DEFERRED, deferred

if TYPE_CHECKING:
    from triage.cases import IntakePolicy

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
    """
    from triage import search_index

    done = 0
    while limit is None or done < limit:
        n = BATCH if limit is None else min(BATCH, limit - done)
        ids = _claim(session, n)
        if not ids:
            break
        cases = session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.id)).all()
        for case in cases:
            _suggest(session, case, policy)
        session.flush()
        search_index.reindex_cases(session, [c.id for c in cases])
        done += len(ids)
    return done


def _suggest(session: Session, case: Case, policy: IntakePolicy) -> None:
    """The similar-case suggestions and duplicate signature of one pending case."""
    from triage import duplicate_index
    from triage.cases import CANDIDATES_QUERY, case_text

    session.execute(
        delete(DuplicateSignature).where(DuplicateSignature.case_id == case.id),
        execution_options={"synchronize_session": False},
    )
    if case.status not in OPEN_STATUSES:
        return  # closed or merged before its enrichment: not a candidate, nothing to suggest
    text_ = case_text(case.subject, case.body)
    if policy.find_similar is None or policy.duplicate_window_days <= 0:
        signature = duplicate_index.hash_signature(text_)
    else:
        since = case.received_at - timedelta(days=policy.duplicate_window_days)
        found = duplicate_index.look_up(session, text_, since, below=case.id)
        signature = found.signature
        rows = (
            session.execute(CANDIDATES_QUERY, {"ids": found.case_ids, "since": since}).all()
            if found.case_ids
            else []
        )
        if rows:
            numbers = {r.id: r.tracking_number for r in rows}
            scored = policy.find_similar(
                text_, [(r.id, case_text(r.subject, r.body)) for r in rows]
            )
            similar: list[list[object]] = [
                [numbers[i], round(float(score), 3)] for i, score in scored if i in numbers
            ]
            if similar:
                case.similar = similar
                case.record("similar_found", "system", case.created_at, cases=similar)
    if signature:
        minute = duplicate_index.minute_of(case.received_at)
        duplicate_index.write_rows(session, [(h, minute, case.id) for h in set(signature)])
