"""Enrichment after the commit (triage/enrichment.py): the mail intake's batches leave the new
cases' similar-case suggestions and index rows to `enrich_pending`, which gives them exactly
what registration used to give them; a crash before it is made up by the next run; two
enrichers never do a case twice."""

# ruff: noqa: F811  (the fixtures of test_mail_intake, taken as arguments)
from __future__ import annotations

import importlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from tests.integration.test_mail_intake import (  # noqa: F401  (fixtures)
    intake_config,
    mail,
    rt,
    smtp_port,
)
from tests.integration.test_mail_intake_batch import MAILBOX, TEXTS, _open, _picture, _raw
from triage.enrichment import enrich_pending, pending_count
from triage.mail_intake import ingest_batch
from triage.models import Case, CaseEvent
from triage.search import search_cases
from web.cli_intake import enrich_all, mail_policy
from web.runtime import Runtime

DB_MODULE = importlib.import_module("web.db")  # `web.db` itself is the request's session


def _unordered_events(picture: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    # similar_found now comes after the routing event of the same moment (it is added later)
    return [(*row[:5], sorted(row[5]), *row[6:]) for row in picture]  # type: ignore[call-overload]


def _ids_with(session: Session, word: str) -> list[int]:
    return sorted(session.scalars(select(Case.id).where(Case.body.contains(word))))


def test_enrichment_after_a_batch_gives_the_suggestions_and_search_hits_of_registration(
    rt: Runtime,
) -> None:
    policy = mail_policy(rt)
    now = datetime.now(UTC)
    raws = _raw(TEXTS, "enrich")
    with rt.sessions() as s:
        _open(s, now)
        ingest_batch(s, raws, mailbox=MAILBOX, policy=policy, now=now)
        s.flush()
        synchronous = _picture(s)
        s.rollback()
    with rt.sessions() as s:
        _open(s, now)
        ingest_batch(s, raws, mailbox=MAILBOX, policy=policy, now=now, defer_enrichment=True)
        s.commit()
        # Committed and moved: the cases are there, their suggestions and search rows not yet.
        assert pending_count(s) == len(TEXTS)
        assert all(c.similar == [] for c in s.scalars(select(Case)))
        assert search_cases(s, "下水道", masked=False).case_ids == []
    assert enrich_all(rt, policy.intake) == len(TEXTS)
    with rt.sessions() as s:
        deferred = _picture(s)
        assert pending_count(s) == 0
        found = search_cases(s, "下水道", masked=False).case_ids
        assert sorted(found) == _ids_with(s, "下水道")
        assert len(found) == 3
    assert _unordered_events(deferred) == _unordered_events(synchronous)
    # The third report of the drain names the first two, as registration did.
    assert {n for n, _ in deferred[3][3]} == {deferred[0][0], deferred[1][0]}
    assert deferred[3][3] == synchronous[3][3]


def test_a_crash_before_enrichment_is_completed_by_the_next_run(rt: Runtime) -> None:
    policy = mail_policy(rt)
    now = datetime.now(UTC)
    with rt.sessions() as s:
        _open(s, now)
        ingest_batch(
            s, _raw(TEXTS, "crash"), mailbox=MAILBOX, policy=policy, now=now, defer_enrichment=True
        )
        s.commit()
    # An enricher that dies before its commit: nothing of its work stays, the marks do.
    with rt.sessions() as s:
        assert enrich_pending(s, policy.intake) == len(TEXTS)
        s.rollback()
    with rt.sessions() as s:
        assert pending_count(s) == len(TEXTS)
        assert search_cases(s, "红绿灯", masked=False).case_ids == []
    assert enrich_all(rt, policy.intake) == len(TEXTS)
    assert enrich_all(rt, policy.intake) == 0  # nothing left: a re-run does nothing
    with rt.sessions() as s:
        found = search_cases(s, "红绿灯", masked=False).case_ids
        assert sorted(found) == _ids_with(s, "红绿灯")
        assert len(found) == 2
        found = s.scalar(
            select(func.count()).select_from(CaseEvent).where(CaseEvent.action == "similar_found")
        )
        assert found == sum(1 for c in s.scalars(select(Case)) if c.similar)
        assert found >= 2


def test_two_enrichers_never_do_a_case_twice(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = mail_policy(rt)
    now = datetime.now(UTC)
    with rt.sessions() as s:
        _open(s, now)
        ingest_batch(
            s, _raw(TEXTS, "two"), mailbox=MAILBOX, policy=policy, now=now, defer_enrichment=True
        )
        s.commit()
    first = rt.sessions()
    second = rt.sessions()
    try:
        assert enrich_pending(first, policy.intake) == len(TEXTS)
        if rt.engine.dialect.name == "postgresql":
            # The first has claimed every case: the second skips them instead of waiting.
            assert enrich_pending(second, policy.intake) == 0
            second.commit()
        else:
            # SQLite: the first is the one writer until it commits; the second waits, then
            # gives up with "database is locked" and does nothing. It waits 0.2 s here, not
            # the 20 s a writer waits for the lock in production (web.db.begin_immediate).
            monkeypatch.setattr(DB_MODULE, "BUSY_TIMEOUT_SECONDS", 0.2)
            try:
                enrich_pending(second, policy.intake)
                raise AssertionError("the second enricher wrote beside the first")
            except OperationalError:
                second.rollback()
        first.commit()
        assert enrich_pending(second, policy.intake) == 0
        second.commit()
    finally:
        first.close()
        second.close()
    with rt.sessions() as s:
        events = s.execute(
            select(CaseEvent.case_id, func.count())
            .where(CaseEvent.action == "similar_found")
            .group_by(CaseEvent.case_id)
        ).all()
        assert events and all(n == 1 for _, n in events)
        assert pending_count(s) == 0


def test_a_case_enriched_in_a_session_shows_its_whole_timeline_in_it(rt: Runtime) -> None:
    """The caller of `enrich_pending` (the call import goes on in the same session) reads a
    case's timeline whole: the suggestion added to its earlier events, none lost."""
    policy = mail_policy(rt)
    now = datetime.now(UTC)
    with rt.sessions() as s:
        _open(s, now)
        ingest_batch(
            s, _raw(TEXTS, "same"), mailbox=MAILBOX, policy=policy, now=now, defer_enrichment=True
        )
        s.commit()
    with rt.sessions() as s:
        assert enrich_pending(s, policy.intake) == len(TEXTS)
        suggested = [c for c in s.scalars(select(Case).order_by(Case.id)) if c.similar]
        assert suggested
        for case in suggested:
            actions = [e.action for e in case.events]
            assert actions[0] == "received"
            assert actions.count("similar_found") == 1
            stored = s.scalars(
                select(CaseEvent.action).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
            ).all()
            assert actions == list(stored)
        s.commit()
