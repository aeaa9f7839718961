"""Near-duplicates found through the duplicate index, on the real database: what a supervisor
sees listed as a possible duplicate, and what a submission costs as open cases pile up."""

from __future__ import annotations

import runpy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, insert, select, text

from intake.submission import Channel, Contact, Submission
from tests.conftest import ROOT, make_settings
from tests.integration.helpers import table_as_of
from triage import duplicate_index
from triage.cases import register
from triage.duplicate_index import (
    BANDS,
    CANDIDATES,
    ROWS_PER_CASE,
    ROWS_PER_GRAM,
    SignatureBuilder,
    gram_hashes,
    signature_rows,
)
from triage.models import Case, Department, DuplicateSignature, Satisfaction, Status

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)

STREET_LIGHT = (
    "莲花路路灯不亮",
    "莲花路与金桥街交叉口的路灯已经坏了两个星期，晚上一片漆黑，行人过马路很危险，请尽快维修。",
)
STREET_LIGHT_AGAIN = (
    "莲花路路灯不亮",
    "莲花路与金桥街交叉口的路灯坏了两个星期了，晚上一片漆黑，行人过马路很危险，请尽快来修。",
)
GARBAGE = (
    "垃圾桶满了没人清理",
    "翠竹苑小区三号楼下的垃圾桶已经满了三天，臭气熏天，物业一直不管。",
)
PLACES = ["翠竹苑", "金桥", "望江", "梧桐", "青石", "柳岸", "云杉", "松涛", "桂花", "枫林"]
THINGS = ["电梯", "水管", "围墙", "井盖", "花坛", "车棚", "消防栓", "健身器材", "排水沟", "门禁"]
FAULTS = ["坏了", "漏水", "松动", "缺失", "生锈", "堵塞", "倾斜", "失灵", "破损", "脱落"]


def submission(
    external_id: str, subject: str, body: str, received_at: datetime = NOW
) -> Submission:
    return Submission(
        channel=Channel.PHONE,
        external_id=external_id,
        received_at=received_at,
        subject=subject,
        body=body,
        contact=Contact("李女士", "13900001111", ""),
    )


def register_text(
    runtime: Any, external_id: str, words: tuple[str, str], received_at: datetime = NOW
) -> Case:
    with runtime.sessions() as s, s.begin():
        return register(
            s, submission(external_id, *words, received_at), runtime.intake_policy(), NOW
        ).case


def listed_numbers(case: Case) -> list[str]:
    return [number for number, _score in case.similar]


def index_rows(runtime: Any, case_id: int) -> int:
    with runtime.sessions() as s:
        return s.scalar(
            select(func.count())
            .select_from(DuplicateSignature)
            .where(DuplicateSignature.case_id == case_id)
        )


def filler_text(i: int) -> tuple[str, str]:
    """Open complaints about other things in other places, in the same letter style."""
    place = PLACES[i % len(PLACES)]
    thing = THINGS[(i // 10) % len(THINGS)]
    fault = FAULTS[(i // 100) % len(FAULTS)]
    return (
        f"{place}{thing}{fault}",
        f"尊敬的领导您好！我是{place}小区{i % 37 + 1}栋的业主，{thing}{fault}已经{i % 9 + 2}天，"
        f"编号{i:05d}，多次找物业没有结果，请帮忙处理。此致敬礼",
    )


def add_open_cases(
    conn: Connection, count: int, start: int = 0, extra_hash: int | None = None
) -> list[int]:
    """Bulk-inserts ``count`` open cases with their index rows, as migration 0003 fills them;
    ``extra_hash`` is added to every case's rows (a gram that all of them share)."""
    texts = [filler_text(start + i) for i in range(count)]
    conn.execute(
        insert(Case.__table__),
        [
            {
                "tracking_number": f"FILL-{start + i:07d}",
                "query_code_hash": "x",
                "channel": "phone",
                "external_id": f"fill-{start + i}",
                "kind": "complaint",
                "status": Status.TRIAGE,
                "subject": subject,
                "body": body,
                "received_at": NOW - timedelta(minutes=count - i),
                "created_at": NOW,
            }
            for i, (subject, body) in enumerate(texts)
        ],
    )
    ids = list(
        conn.scalars(
            select(Case.id)
            .where(
                Case.tracking_number.like("FILL-%"),
                Case.external_id.in_([f"fill-{start + i}" for i in range(count)]),
            )
            .order_by(Case.id)
        )
    )
    rows = signature_rows(
        SignatureBuilder(),
        (
            (case_id, NOW - timedelta(minutes=count - i), f"{subject}\n{body}")
            for i, (case_id, (subject, body)) in enumerate(zip(ids, texts, strict=True))
        ),
    )
    if extra_hash is not None:
        rows = [r for r in rows if r["hash"] != extra_hash]
        minutes = {r["case_id"]: r["received_minute"] for r in rows}
        rows += [
            {"hash": extra_hash, "received_minute": minutes[case_id], "case_id": case_id}
            for case_id in ids
        ]
    conn.execute(insert(DuplicateSignature), rows)
    return ids


# -- what a supervisor sees ------------------------------------------------------------------


def test_a_new_complaint_lists_the_earlier_open_one_about_the_same_thing(runtime: Any) -> None:
    first = register_text(runtime, "c1", STREET_LIGHT, NOW - timedelta(days=3))
    other = register_text(runtime, "c2", GARBAGE, NOW - timedelta(days=2))
    again = register_text(runtime, "c3", STREET_LIGHT_AGAIN)

    assert listed_numbers(again) == [first.tracking_number]
    assert other.tracking_number not in listed_numbers(again)
    with runtime.sessions() as s:
        shown = s.get(Case, again.id)
        found = [e for e in shown.events if e.action == "similar_found"]
        assert found and found[0].detail["cases"][0][0] == first.tracking_number
    # Each case is indexed by a bounded number of rows.
    assert 0 < index_rows(runtime, first.id) <= ROWS_PER_CASE


def test_the_duplicate_is_found_through_the_index_not_a_scan(runtime: Any) -> None:
    first = register_text(runtime, "c1", STREET_LIGHT, NOW - timedelta(days=1))
    with runtime.sessions() as s, s.begin():
        s.execute(text("DELETE FROM duplicate_signatures WHERE case_id = :id"), {"id": first.id})
    again = register_text(runtime, "c2", STREET_LIGHT_AGAIN)
    assert listed_numbers(again) == []


def _reject(case: Case, _dept: Department) -> None:
    case.reject("supervisor", NOW, "骚扰信息")


def _merge(case: Case, dept: Department, *, into: Case) -> None:
    case.merge_into(into, "supervisor", NOW, "同一问题")


def _close(case: Case, dept: Department) -> None:
    case.assign(dept, "supervisor", NOW, NOW + timedelta(days=5))
    case.reply("handler", NOW, "路灯已修复。")
    case.record_visit(
        "supervisor", NOW, reached=True, solved=True, satisfaction=Satisfaction.SATISFIED
    )
    case.close("supervisor", NOW)


@pytest.mark.parametrize("ending", ["rejected", "merged", "closed"])
def test_cases_that_ended_are_not_listed(runtime: Any, ending: str) -> None:
    ended = register_text(runtime, "c1", STREET_LIGHT, NOW - timedelta(days=2))
    target = register_text(runtime, "c2", GARBAGE, NOW - timedelta(days=2))
    with runtime.sessions() as s, s.begin():
        case = s.get(Case, ended.id)
        dept = s.scalars(select(Department)).first()
        if ending == "rejected":
            _reject(case, dept)
        elif ending == "merged":
            _merge(case, dept, into=s.get(Case, target.id))
        else:
            _close(case, dept)
    assert index_rows(runtime, ended.id) == 0  # its rows went in the same transaction

    again = register_text(runtime, "c3", STREET_LIGHT_AGAIN)
    assert ended.tracking_number not in listed_numbers(again)
    assert listed_numbers(again) == []


def test_a_case_closed_behind_the_orms_back_is_still_not_listed(runtime: Any) -> None:
    first = register_text(runtime, "c1", STREET_LIGHT, NOW - timedelta(days=2))
    with runtime.sessions() as s, s.begin():
        s.execute(text("UPDATE cases SET status = 'closed' WHERE id = :id"), {"id": first.id})
    assert index_rows(runtime, first.id) > 0
    again = register_text(runtime, "c2", STREET_LIGHT_AGAIN)
    assert listed_numbers(again) == []


def test_only_cases_within_the_window_are_listed(runtime: Any) -> None:
    window = runtime.intake_policy().duplicate_window_days
    old = register_text(runtime, "c1", STREET_LIGHT, NOW - timedelta(days=window, minutes=5))
    recent = register_text(runtime, "c2", STREET_LIGHT, NOW - timedelta(days=window - 1))
    again = register_text(runtime, "c3", STREET_LIGHT_AGAIN)
    assert recent.tracking_number in listed_numbers(again)
    assert old.tracking_number not in listed_numbers(again)


def test_registration_without_duplicate_search_still_indexes_the_case(runtime: Any) -> None:
    from dataclasses import replace

    policy = replace(runtime.intake_policy(), find_similar=None)
    with runtime.sessions() as s, s.begin():
        first = register(s, submission("c1", *STREET_LIGHT, NOW - timedelta(days=1)), policy, NOW)
    assert 0 < index_rows(runtime, first.case.id) <= ROWS_PER_CASE
    again = register_text(runtime, "c2", STREET_LIGHT_AGAIN)
    assert listed_numbers(again) == [first.case.tracking_number]


# -- what a submission costs ------------------------------------------------------------------


class Spy:
    """Counts the SQL statements an engine runs, and the candidates handed to scoring."""

    def __init__(self, runtime: Any):
        self.runtime = runtime
        self.statements: list[str] = []
        self.candidates: list[int] = []

    def __enter__(self) -> Spy:
        event.listen(self.runtime.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.runtime.engine, "before_cursor_execute", self._count)

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def policy(self) -> Any:
        from dataclasses import replace

        policy = self.runtime.intake_policy()
        real = policy.find_similar

        def find_similar(text_: str, candidates: Sequence[tuple[int, str]]) -> Any:
            self.candidates.append(len(candidates))
            return real(text_, candidates)

        return replace(policy, find_similar=find_similar)


def _register_counted(runtime: Any, external_id: str, words: tuple[str, str]) -> Spy:
    spy = Spy(runtime)
    policy = spy.policy()
    with spy, runtime.sessions() as s, s.begin():
        case = register(s, submission(external_id, *words), policy, NOW).case
        spy.similar = listed_numbers(case)  # type: ignore[attr-defined]
        spy.case_id = case.id  # type: ignore[attr-defined]
    return spy


def test_a_submission_issues_the_same_statements_with_100_or_2000_open_cases(
    runtime: Any,
) -> None:
    first = register_text(runtime, "dup", STREET_LIGHT, NOW - timedelta(days=1))
    with runtime.engine.begin() as conn:
        add_open_cases(conn, 100)
    few = _register_counted(runtime, "n1", STREET_LIGHT_AGAIN)
    with runtime.engine.begin() as conn:
        add_open_cases(conn, 1900, start=100)
    many = _register_counted(runtime, "n2", STREET_LIGHT_AGAIN)

    assert len(few.statements) == len(many.statements), (few.statements, many.statements)
    assert first.tracking_number in few.similar and first.tracking_number in many.similar
    # The texts loaded for scoring are a short list, not the open cases.
    assert max(many.candidates) <= CANDIDATES


def test_a_gram_shared_by_very_many_cases_does_not_load_them_all(runtime: Any) -> None:
    subject, body = filler_text(17)
    text_ = f"{subject}\n{body}"
    shared = gram_hashes("业主")[0]
    assert shared in gram_hashes(text_)
    with runtime.engine.begin() as conn:
        ids = add_open_cases(conn, 1500, extra_hash=shared)
    with runtime.sessions() as s:
        count = s.scalar(
            select(func.count())
            .select_from(DuplicateSignature)
            .where(DuplicateSignature.hash == shared)
        )
        assert count == 1500
        found = duplicate_index.look_up(s, text_, NOW - timedelta(days=30))
    assert found.rows_read <= (len(gram_hashes(text_)) + BANDS) * (ROWS_PER_GRAM + 1)
    assert found.rows[shared] == ROWS_PER_GRAM + 1  # read up to the cap, then ignored
    assert len(found.case_ids) <= CANDIDATES
    assert ids[17] in found.case_ids  # the case it repeats is still among the candidates

    spy = _register_counted(runtime, "n1", (subject, body))
    assert spy.candidates and max(spy.candidates) <= CANDIDATES
    assert "FILL-0000017" in spy.similar  # type: ignore[attr-defined]
    # The new case is indexed by the rarest of its grams (and its MinHash bands).
    with runtime.sessions() as s:
        stored = set(
            s.scalars(
                select(DuplicateSignature.hash).where(
                    DuplicateSignature.case_id == spy.case_id  # type: ignore[attr-defined]
                )
            )
        )
    assert stored == set(found.signature)
    grams = set(gram_hashes(text_))
    chosen, left = stored & grams, grams - stored
    assert max(found.rows.get(h, 0) for h in chosen) <= min(found.rows.get(h, 0) for h in left)


# -- the migration ------------------------------------------------------------------------------


def _signatures_per_case(engine: Any) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT c.tracking_number, count(d.case_id) FROM cases c"
                    " LEFT JOIN duplicate_signatures d ON d.case_id = c.id"
                    " GROUP BY c.tracking_number"
                )
            ).all()
        )


def test_upgrading_a_database_with_cases_indexes_the_open_ones(
    empty_url: str, tmp_path: Any
) -> None:
    from alembic import command

    from web.db import alembic_config, make_engine, upgrade
    from web.runtime import Runtime

    # One more open case than the migration fills in one batch: the second batch is tried.
    migration = ROOT / "migrations" / "versions" / "0003_duplicate_index.py"
    fillers = runpy.run_path(str(migration))["BATCH"] - 1
    engine = make_engine(empty_url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            table_as_of(conn, Case.__table__).insert(),
            [
                {
                    "tracking_number": f"OLD-{i}",
                    "query_code_hash": "x",
                    "channel": "phone",
                    "external_id": f"old-{i}",
                    "kind": "complaint",
                    "status": status,
                    "subject": words[0],
                    "body": words[1],
                    "received_at": NOW - timedelta(days=2),
                    "created_at": NOW,
                }
                for i, (status, words) in enumerate(
                    [
                        (Status.IN_PROGRESS, STREET_LIGHT),
                        (Status.CLOSED, STREET_LIGHT),
                        (Status.TRIAGE, GARBAGE),
                        *[(Status.ASSIGNED, filler_text(i)) for i in range(fillers)],
                    ]
                )
            ],
        )
    upgrade(engine, "0003")
    per_case = _signatures_per_case(engine)
    assert len(per_case) == fillers + 3
    assert per_case["OLD-1"] == 0  # closed: not indexed
    assert all(0 < n <= ROWS_PER_CASE for number, n in per_case.items() if number != "OLD-1")
    # Only 0003 writes the index: the later migrations (some of which work through every
    # case, seconds of CPU for these thousands) run on the three cases of the story.
    with engine.begin() as conn:
        old = "SELECT id FROM cases WHERE tracking_number NOT IN ('OLD-0', 'OLD-1', 'OLD-2')"
        conn.execute(text(f"DELETE FROM duplicate_signatures WHERE case_id IN ({old})"))
        conn.execute(text(f"DELETE FROM cases WHERE id IN ({old})"))
    upgrade(engine)
    assert _signatures_per_case(engine) == {n: per_case[n] for n in ("OLD-0", "OLD-1", "OLD-2")}
    engine.dispose()

    rt = Runtime.build(make_settings(tmp_path, empty_url))
    with rt.sessions() as s, s.begin():
        s.add(Department(code="urban", name="城管", name_en="Urban", email="u@example.org"))
    again = register_text(rt, "new", STREET_LIGHT_AGAIN)
    assert listed_numbers(again) == ["OLD-0"]
    rt.engine.dispose()

    engine = make_engine(empty_url)
    command.downgrade(alembic_config(engine), "0002")
    with engine.connect() as conn:
        names = conn.dialect.get_table_names(conn)
    assert "duplicate_signatures" not in names
    engine.dispose()


# -- enrichment after the commit ---------------------------------------------------------------


def _enrich_counted(runtime: Any, monkeypatch: pytest.MonkeyPatch, external_id: str) -> Spy:
    """Registers a filler-like complaint left to the enrichment (as the call import and the
    mail intake leave theirs), enriches it, and counts the index entries and candidate rows
    that its enrichment read and the candidates it scored."""
    from triage import enrichment
    from triage.models import EnrichmentPending

    subject, body = filler_text(17)
    with runtime.sessions() as s, s.begin():
        case = register(
            s, submission(external_id, subject, body), runtime.intake_policy(), NOW
        ).case
        s.add(EnrichmentPending(case_id=case.id))
    spy = Spy(runtime)
    read: dict[str, int] = {"entries": 0, "candidates": 0}
    entries, candidates = duplicate_index._entries, enrichment.open_candidates

    def counted_entries(*args: Any) -> Any:
        found = entries(*args)
        read["entries"] += sum(len(rows) for rows in found.values())
        return found

    def counted_candidates(*args: Any) -> Any:
        found = candidates(*args)
        read["candidates"] += len(found)
        return found

    monkeypatch.setattr(duplicate_index, "_entries", counted_entries)
    monkeypatch.setattr(enrichment, "open_candidates", counted_candidates)
    with runtime.sessions() as s, s.begin():
        assert enrichment.enrich_pending(s, spy.policy()) == 1
        spy.similar = listed_numbers(s.get(Case, case.id))  # type: ignore[attr-defined]
    monkeypatch.undo()
    spy.read = read  # type: ignore[attr-defined]
    return spy


def test_enriching_a_case_reads_as_much_with_200_or_2000_alike_open_cases(
    runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enrichment of one new case (its suggestions) reads a bounded number of index
    entries and scores a bounded number of candidates however many open cases are written
    in the same letter style (the call import's thousands of cases received at once).

    Without the cap on each gram's entries, 200 cases are read past the bound already (3,139
    entries) and 2,000 ten times as many as 200 (31,078): the sizes need be no larger."""
    with runtime.engine.begin() as conn:
        add_open_cases(conn, 200)
    few = _enrich_counted(runtime, monkeypatch, "e1")
    with runtime.engine.begin() as conn:
        add_open_cases(conn, 1800, start=200)
    many = _enrich_counted(runtime, monkeypatch, "e2")

    bound = (len(gram_hashes("\n".join(filler_text(17)))) + BANDS) * (ROWS_PER_GRAM + 1)
    for spy in (few, many):
        assert 0 < spy.read["entries"] <= bound  # type: ignore[attr-defined]
        assert spy.read["candidates"] <= CANDIDATES  # type: ignore[attr-defined]
        assert spy.candidates and max(spy.candidates) <= CANDIDATES
        assert "FILL-0000017" in spy.similar  # type: ignore[attr-defined]
    # Ten times the cases, not ten times the reading: the common grams' lists stop at the cap.
    assert many.read["entries"] <= 2 * few.read["entries"]  # type: ignore[attr-defined]
    assert max(many.candidates) <= max(few.candidates) + CANDIDATES // 2
