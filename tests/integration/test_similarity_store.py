"""Stored similarity profiles (triage/similarity_store.py, migration 0022), on the real
database: enrichment stores each case's profile and scores candidates by their stored ones,
with the same suggestions as profiles computed from the texts; cases without one (enriched
before the migration, or with a profile of another version) still work and get theirs; a
case's enrichment analyses its own text only, however many candidates it has."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text, update

from tests.conftest import make_settings
from tests.integration.helpers import table_as_of
from tests.integration.test_duplicate_index import (
    GARBAGE,
    NOW,
    STREET_LIGHT,
    STREET_LIGHT_AGAIN,
    add_open_cases,
    filler_text,
    submission,
)
from triage import enrichment, similarity, similarity_store
from triage.cases import case_text, register
from triage.models import Case, Department, EnrichmentPending, SimilarityProfile, Status


def _register_pending(runtime: Any, items: list[tuple[str, tuple[str, str]]]) -> list[int]:
    """Cases registered with their enrichment left pending, as the call import leaves it."""
    ids = []
    with runtime.sessions() as s, s.begin():
        for external_id, (subject, body) in items:
            case = register(
                s, submission(external_id, subject, body), runtime.intake_policy(), NOW
            ).case
            s.add(EnrichmentPending(case_id=case.id))
            ids.append(case.id)
    return ids


def _enrich(runtime: Any) -> int:
    with runtime.sessions() as s, s.begin():
        return enrichment.enrich_pending(s, runtime.intake_policy())


def _stored(runtime: Any) -> dict[int, tuple[int, bytes]]:
    with runtime.sessions() as s:
        return {
            r.case_id: (r.version, bytes(r.data))
            for r in s.execute(
                select(SimilarityProfile.case_id, SimilarityProfile.version, SimilarityProfile.data)
            )
        }


def _suggestions(runtime: Any, ids: list[int]) -> dict[int, list[list[object]]]:
    with runtime.sessions() as s:
        return {c.id: c.similar for c in s.scalars(select(Case).where(Case.id.in_(ids)))}


def _fillers(start: int, count: int) -> list[tuple[str, tuple[str, str]]]:
    return [(f"f{i}", filler_text(i)) for i in range(start, start + count)]


def test_enrichment_stores_each_case_profile_and_it_scores_as_the_computed_one(
    runtime: Any,
) -> None:
    ids = _register_pending(
        runtime, [("a", STREET_LIGHT), ("b", GARBAGE), *_fillers(0, 30), ("c", STREET_LIGHT_AGAIN)]
    )
    assert _enrich(runtime) == len(ids)
    stored = _stored(runtime)
    assert set(stored) == set(ids)
    assert {version for version, _ in stored.values()} == {similarity.PROFILE_VERSION}
    with runtime.sessions() as s:
        texts = {
            c.id: case_text(c.subject, c.body)
            for c in s.scalars(select(Case).where(Case.id.in_(ids)))
        }
    for case_id, (_, data) in stored.items():
        assert data == similarity.profile(texts[case_id]).data
    # Every case against every other: the stored profiles give the computed ones' scores.
    for case_id in ids:
        others = [i for i in ids if i != case_id]
        computed = similarity.similar_cases(
            texts[case_id], [(i, texts[i]) for i in others], min_score=0.0, limit=len(ids)
        )
        from_store = similarity.similar_cases(
            similarity.ProfiledText(texts[case_id], similarity.stored_profile(stored[case_id][1])),
            [
                (i, similarity.ProfiledText(texts[i], similarity.stored_profile(stored[i][1])))
                for i in others
            ],
            min_score=0.0,
            limit=len(ids),
        )
        assert from_store == computed
        assert len(computed) == len(others)
    suggested = _suggestions(runtime, ids)
    assert listed_numbers_of(suggested[ids[-1]]) == [_number(runtime, ids[0])]


def listed_numbers_of(similar: list[list[object]]) -> list[object]:
    return [number for number, _ in similar]


def _number(runtime: Any, case_id: int) -> str:
    with runtime.sessions() as s:
        return s.scalar(select(Case.tracking_number).where(Case.id == case_id))


def test_cases_without_a_stored_profile_get_the_same_suggestions_and_then_one(
    runtime: Any,
) -> None:
    """Cases enriched before the migration have no profile, some have one of an older
    version: enrichment computes theirs from their texts, suggests what it suggests with
    stored ones, and stores them."""
    first = _register_pending(runtime, [("a", STREET_LIGHT), ("b", GARBAGE), *_fillers(0, 20)])
    _enrich(runtime)
    # Two new cases, enriched once with every candidate's profile stored ...
    probes = [("p1", STREET_LIGHT_AGAIN), ("p2", filler_text(7))]
    with runtime.sessions() as s, s.begin():
        savepoint = s.begin_nested()
        news = []
        for external_id, (subject, body) in probes:
            case = register(
                s, submission(external_id, subject, body), runtime.intake_policy(), NOW
            ).case
            s.add(EnrichmentPending(case_id=case.id))
            news.append(case)
        s.flush()
        enrichment.enrich_pending(s, runtime.intake_policy())
        with_stored = [c.similar for c in news]
        savepoint.rollback()
    assert listed_numbers_of(with_stored[0]) == [_number(runtime, first[0])]
    assert with_stored[1]
    # ... and once after the profiles are gone (before 0022) or stale (another version).
    with runtime.sessions() as s, s.begin():
        s.execute(delete(SimilarityProfile).where(SimilarityProfile.case_id.in_(first[::2])))
        s.execute(
            update(SimilarityProfile)
            .where(SimilarityProfile.case_id.in_(first[1::2]))
            .values(version=similarity.PROFILE_VERSION ^ 1, data=b"old")
        )
    ids = _register_pending(runtime, probes)
    _enrich(runtime)
    suggested = _suggestions(runtime, ids)
    assert [suggested[i] for i in ids] == with_stored
    stored = _stored(runtime)
    assert {version for version, _ in stored.values()} == {similarity.PROFILE_VERSION}
    # The candidates scored got theirs back (not necessarily every old case: only those met).
    assert first[0] in stored and len(stored) > len(ids) + 2


def test_unreadable_stored_profile_is_computed_again() -> None:
    profile = similarity.profile("\n".join(STREET_LIGHT))
    assert similarity_store.stored(similarity.PROFILE_VERSION, profile.data) is not None
    assert similarity_store.stored(similarity.PROFILE_VERSION, profile.data[:-2]) is None
    assert similarity_store.stored(similarity.PROFILE_VERSION, b"") is None
    assert similarity_store.stored(similarity.PROFILE_VERSION ^ 1, profile.data) is None
    assert similarity_store.stored(None, None) is None
    again, computed = similarity_store.profile_of("\n".join(STREET_LIGHT), None, None)
    assert computed and again.data == profile.data


def test_enriching_a_case_analyses_its_own_text_only(
    runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its candidates' profiles stored, a case's enrichment runs the text analysis (jieba)
    once, for itself, however many candidates it is compared with."""
    with runtime.engine.begin() as conn:
        add_open_cases(conn, 400)
    with runtime.sessions() as s, s.begin():
        assert similarity_store.backfill(s) == 400
        assert similarity_store.backfill(s) == 0  # done once
    analysed: list[str] = []
    raw = similarity._raw_profile

    def counted(text_: str) -> Any:
        analysed.append(text_)
        return raw(text_)

    monkeypatch.setattr(similarity, "_raw_profile", counted)
    similarity._profile.cache_clear()
    scored: list[int] = []
    real = runtime.intake_policy().find_similar

    def find_similar(query: str, candidates: Any) -> Any:
        scored.append(len(candidates))
        return real(query, candidates)

    from dataclasses import replace

    policy = replace(runtime.intake_policy(), find_similar=find_similar)
    subject, body = filler_text(17)
    with runtime.sessions() as s, s.begin():
        case = register(s, submission("new", subject, body), policy, NOW).case
        s.add(EnrichmentPending(case_id=case.id))
    analysed.clear()  # registration scored it synchronously (from the texts): not counted
    similarity._profile.cache_clear()
    with runtime.sessions() as s, s.begin():
        assert enrichment.enrich_pending(s, policy) == 1
        similar = s.get(Case, case.id).similar
    assert scored and scored[-1] >= 20  # many candidates ...
    assert analysed == [f"{subject}\n{body}"]  # ... one analysis
    assert "FILL-0000017" in listed_numbers_of(similar)


def test_registering_one_case_analyses_its_own_text_only(
    runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case registered on its own (web form, operator's desk, API) is scored against its
    candidates' stored profiles: one text analysis, however many candidates; a candidate
    without a stored profile gets one then."""
    with runtime.engine.begin() as conn:
        add_open_cases(conn, 400)
    with runtime.sessions() as s, s.begin():
        assert similarity_store.backfill(s) == 400
        twin = s.scalar(select(Case.id).where(Case.tracking_number == "FILL-0000017"))
        s.execute(delete(SimilarityProfile).where(SimilarityProfile.case_id == twin))
    analysed: list[str] = []
    raw = similarity._raw_profile

    def counted(text_: str) -> Any:
        analysed.append(text_)
        return raw(text_)

    monkeypatch.setattr(similarity, "_raw_profile", counted)
    similarity._profile.cache_clear()
    subject, body = filler_text(17)
    with runtime.sessions() as s, s.begin():
        case = register(s, submission("one", subject, body), runtime.intake_policy(), NOW).case
        similar = case.similar
    assert "FILL-0000017" in listed_numbers_of(similar)
    own = f"{subject}\n{body}"
    assert analysed.count(own) == 1
    others = [t for t in analysed if t != own]
    assert len(others) <= 1  # at most the one candidate whose profile was removed
    with runtime.sessions() as s:
        assert len(s.scalars(select(SimilarityProfile.case_id)).all()) == 400


def test_a_case_that_ends_loses_its_profile(runtime: Any) -> None:
    ids = _register_pending(runtime, [("a", STREET_LIGHT), ("b", GARBAGE)])
    _enrich(runtime)
    with runtime.sessions() as s, s.begin():
        case = s.get(Case, ids[0])
        case.status = Status.CLOSED
    assert set(_stored(runtime)) == {ids[1]}


def test_the_migration_adds_the_table_and_old_cases_work(empty_url: str, tmp_path: Any) -> None:
    from alembic import command

    from web.db import alembic_config, make_engine, upgrade
    from web.runtime import Runtime

    engine = make_engine(empty_url)
    upgrade(engine, "0021")
    with engine.begin() as conn:
        conn.execute(
            table_as_of(conn, Case.__table__).insert(),
            [
                {
                    "tracking_number": "OLD-0",
                    "query_code_hash": "x",
                    "channel": "phone",
                    "external_id": "old-0",
                    "kind": "complaint",
                    "status": Status.IN_PROGRESS,
                    "subject": STREET_LIGHT[0],
                    "body": STREET_LIGHT[1],
                    "received_at": NOW - timedelta(days=2),
                    "created_at": NOW,
                }
            ],
        )
        old_id = conn.scalar(text("SELECT id FROM cases"))
        conn.execute(insert(table_as_of(conn, EnrichmentPending.__table__)), [{"case_id": old_id}])
    upgrade(engine)
    with engine.connect() as conn:
        assert "similarity_profiles" in conn.dialect.get_table_names(conn)
        assert conn.scalar(text("SELECT count(*) FROM similarity_profiles")) == 0
    engine.dispose()

    rt = Runtime.build(make_settings(tmp_path, empty_url))
    with rt.sessions() as s, s.begin():
        s.add(Department(code="urban", name="城管", name_en="Urban", email="u@example.org"))
    with rt.sessions() as s, s.begin():
        assert enrichment.enrich_pending(s, rt.intake_policy()) == 1  # the old pending case
    new = _register_pending(rt, [("new", STREET_LIGHT_AGAIN)])
    _enrich(rt)
    assert listed_numbers_of(_suggestions(rt, new)[new[0]]) == ["OLD-0"]
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(SimilarityProfile)) == 2
    rt.engine.dispose()

    engine = make_engine(empty_url)
    command.downgrade(alembic_config(engine), "0021")
    with engine.connect() as conn:
        assert "similarity_profiles" not in conn.dialect.get_table_names(conn)
    upgrade(engine)  # and up again
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM similarity_profiles")) == 0
    engine.dispose()
