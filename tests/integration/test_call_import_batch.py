"""The call import registers each batch's rows together (`triage.cases.register_rows`:
rows inserted without ORM objects, enrichment after the commit): the cases must be those
that registering one row at a time makes, and a call registered by another import
meanwhile must stay a duplicate."""

from __future__ import annotations

import dataclasses
import re
import shutil
from concurrent.futures import wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

import triage.cases
from intake.phone import ColumnMapping, parse_table, read_table
from tests.conftest import DB_KIND, make_settings
from tests.integration.test_call_import import phone_cases, write_csv
from triage.call_imports import import_batch
from triage.cases import check_query_code, register
from triage.models import Case, CaseEvent
from triage.sms import TextMessage, mobile_number
from web import call_import_run
from web.call_import_run import enrich_new_cases, run_import
from web.runtime import Runtime

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)

# Calls over several days: near-duplicates (similar-case suggestions), a gas leak (urgent),
# texts the keyword routing sends to a department and texts it leaves to the queue, kinds.
CALLS = [
    ("C1", "13800138000", "2026/11/20 9:05", "明德路小区物业不管电梯，电梯坏了三天没人修", "投诉"),
    ("C2", "010-87654321", "2026/11/21 14:30", "建议增加公交班次，早高峰等车太久", "建议"),
    ("C3", "139 0013 9000", "2026/11/22 8:00", "明德路小区电梯坏了三天，物业一直不修", "投诉"),
    ("C4", "+86 13700137000", "2026/11/23 22:15", "楼道里燃气泄漏，味道很大，请马上派人", "投诉"),
    ("C5", "13600136000", "2026/11/24 10:00", "咨询公积金提取需要哪些材料", "咨询"),
    ("C6", "13800138000", "2026/11/25 11:11", "明德路小区的电梯又坏了，物业还是不修", ""),
    ("C7", "13500135000", "2026/11/26 16:40", "感谢环卫工人把路扫得很干净", "表扬"),
    ("C8", "13400134000", "2026/11/27 7:05", "工地夜间施工噪音太大，影响休息", "投诉"),
]


def export(tmp_path: Path, calls: list[tuple[str, str, str, str, str]] = CALLS) -> bytes:
    rows = [
        [cid, phone, at, "60", text, "王芳", "", "明德路12号", kind]
        for cid, phone, at, text, kind in calls
    ]
    return write_csv(tmp_path / "calls.csv", rows).read_bytes()


def parsed(data: bytes) -> list[Any]:
    table = read_table(data, "calls.csv")
    return list(parse_table(table, ColumnMapping(), tz=ZoneInfo("Asia/Shanghai"), now=NOW))


def import_rows(rt: Runtime, data: bytes, *, one_by_one: bool) -> None:
    """The rows in batches of 3 (as the command does), each batch committed."""
    rows = parsed(data)
    policy = rt.intake_policy()
    seen: set[str] = set()
    for at in range(0, len(rows), 3):
        with rt.sessions() as session, session.begin():
            import_batch(
                session,
                rows[at : at + 3],
                policy,
                run_id=None,
                file_name="calls.csv",
                actor="tester",
                seen=seen,
                now=NOW,
                one_by_one=one_by_one,
            )
    if not one_by_one:
        enrich_new_cases(rt, policy)


def ties_apart(similar: list[list[Any]] | None) -> list[list[Any]]:
    """Suggestions by score, then number: cases of equal score come in either order."""
    return sorted(similar or [], key=lambda pair: (-pair[1], pair[0]))


def detail(event: CaseEvent) -> dict[str, Any]:
    found = dict(event.detail or {})
    if event.action == "similar_found":
        found["cases"] = ties_apart(found["cases"])
    return found


def snapshot(rt: Runtime) -> dict[str, Any]:
    """What a user sees of each phone case, by call id."""
    found: dict[str, Any] = {}
    with rt.sessions() as s:
        for case in s.scalars(select(Case).where(Case.channel == "phone").order_by(Case.id)):
            events = s.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
            ).all()
            found[case.external_id] = {
                "number": case.tracking_number,
                "status": str(case.status),
                "kind": case.kind,
                "received_at": case.received_at,
                "created_at": case.created_at,
                "triage_due_at": case.triage_due_at,
                "due_at": case.due_at,
                "assigned_at": case.assigned_at,
                "department": case.department.code if case.department else None,
                "suggested": case.suggested_department.code if case.suggested_department else None,
                "confidence": case.confidence,
                "urgent": case.urgent,
                "urgent_reasons": case.urgent_reasons,
                "similar": ties_apart(case.similar),
                "caller_key": case.caller_key,
                "place": case.place,
                "contact_phone": case.contact_phone,
                "contact_name": case.contact_name,
                "subject": case.subject,
                "body": case.body,
                "masked_text": case.masked_text,
                "caller_alt_key": case.caller_alt_key,
                "alternatives": case.alternatives,
                "model_version": case.model_version,
                "updated_at": case.updated_at,
                "version": case.version,
                # similar_found is dated by the enrichment at the case's creation (the import),
                # one at a time at the call: its time is compared apart.
                "events": sorted(
                    (
                        e.action,
                        e.actor_name,
                        e.actor_id,
                        # the enrichment finds similar cases after the case was queued or
                        # dispatched, one at a time before
                        None if e.action == "similar_found" else e.from_status,
                        None if e.action == "similar_found" else e.to_status,
                        e.public,
                        None if e.action == "similar_found" else e.at,
                        e.reason,
                        repr(sorted(detail(e).items())),
                    )
                    for e in events
                ),
                "similar_found_at": [e.at for e in events if e.action == "similar_found"],
            }
    return found


def test_batched_import_makes_the_cases_one_row_at_a_time_makes(
    tmp_path: Path, db_url: str
) -> None:
    """On SQLite two copies of the database side by side; on PostgreSQL (where the batch's
    rows go by COPY) one schema, emptied between the two imports as between tests."""
    data = export(tmp_path)
    batched = Runtime.build(make_settings(tmp_path, db_url))
    if DB_KIND == "sqlite":
        second = tmp_path / "one_by_one.db"
        shutil.copy(db_url.split("///", 1)[1], second)
        single = Runtime.build(make_settings(tmp_path, f"sqlite:///{second}"))
        import_rows(batched, data, one_by_one=False)
        got = snapshot(batched)
    else:
        from tests.conftest import _reset_by_delete

        import_rows(batched, data, one_by_one=False)
        got = snapshot(batched)
        batched.engine.dispose()
        _reset_by_delete(batched.engine)
        single = Runtime.build(make_settings(tmp_path, db_url))
        assert not phone_cases(single)
    import_rows(single, data, one_by_one=True)
    want = snapshot(single)
    assert list(got) == [c[0] for c in CALLS]
    for call_id in want:
        g, w = dict(got[call_id]), dict(want[call_id])
        assert len(g.pop("similar_found_at")) == len(w.pop("similar_found_at"))
        if g["similar"]:
            g["version"] -= 1  # the enrichment's update of the case, after the commit
        assert g == w, call_id
    # What the comparison rests on: deadlines from the call, a gas leak flagged, suggestions.
    c4 = got["C4"]
    assert c4["urgent"] and c4["received_at"] == datetime(2026, 11, 23, 14, 15, tzinfo=UTC)
    assert c4["triage_due_at"] < datetime(2026, 11, 24, tzinfo=UTC)
    assert all(c["created_at"] == NOW for c in got.values())
    assert [n for n, _ in got["C3"]["similar"]] == [got["C1"]["number"]]
    assert got["C6"]["similar"], "the third call about the lift names the first two"
    assert any(e[0] == "call_imported" for e in got["C1"]["events"])
    batched.engine.dispose()
    single.engine.dispose()


def test_the_command_path_leaves_no_case_waiting_for_enrichment(
    tmp_path: Path, db_url: str
) -> None:
    rt = Runtime.build(make_settings(tmp_path, db_url))
    report = run_import(rt, export(tmp_path), "calls.csv", actor="tester", clock=lambda: NOW)
    assert report.counts == {"rows": 8, "registered": 8, "duplicates": 0, "rejected": 0}
    from triage.enrichment import pending_count

    with rt.sessions() as s:
        assert pending_count(s) == 0
    cases = {c.external_id: c for c in phone_cases(rt)}
    assert cases["C3"].similar and cases["C3"].similar[0][0] == cases["C1"].tracking_number
    again = run_import(rt, export(tmp_path), "calls.csv", actor="tester", clock=lambda: NOW)
    assert again.counts == {"rows": 8, "registered": 0, "duplicates": 8, "rejected": 0}
    rt.engine.dispose()


@pytest.mark.skipif(
    DB_KIND != "postgresql",
    reason="SQLite has one writer: another import cannot commit between a batch's look-up "
    "and its insert there",
)
def test_a_call_another_import_registered_meanwhile_is_a_duplicate_not_an_error(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another import commits C3 after this batch looked which calls exist and before it
    inserts: the unique key refuses the batch, which is registered again row by row."""
    rt = Runtime.build(make_settings(tmp_path, db_url))
    rows = parsed(export(tmp_path))
    policy = rt.intake_policy()
    original = triage.cases._reserve_case_ids
    items = [r.submission for r in rows]

    def then_another_import(session: Any, n: int) -> Any:
        # The batch has looked which calls exist; it has not inserted yet.
        if not getattr(then_another_import, "done", False):
            then_another_import.done = True  # type: ignore[attr-defined]
            c3 = next(s for s in items if s.external_id == "C3")
            # Another year's counter: the batch holds this year's counter row until it
            # commits.
            earlier = dataclasses.replace(c3, received_at=datetime(2025, 6, 1, tzinfo=UTC))
            with rt.sessions() as other, other.begin():
                register(other, earlier, policy, earlier.received_at)
        return original(session, n)

    monkeypatch.setattr(triage.cases, "_reserve_case_ids", then_another_import)
    with rt.sessions() as session, session.begin():
        result = import_batch(
            session,
            rows,
            policy,
            run_id=None,
            file_name="calls.csv",
            actor="tester",
            seen=set(),
            now=NOW,
        )
    assert result.counts == {"rows": 8, "registered": 7, "duplicates": 1, "rejected": 0}
    cases = phone_cases(rt)
    assert sorted(c.external_id for c in cases) == sorted(c[0] for c in CALLS)
    with rt.sessions() as s:
        imported = s.scalars(select(CaseEvent.case_id).where(CaseEvent.action == "call_imported"))
        assert len(set(imported)) == 7
    rt.engine.dispose()


def test_each_imported_caller_is_texted_the_number_and_a_code_that_opens_the_case(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows are inserted without Case objects; the 'received' notice, which needs one,
    still goes to every new caller with the commit, as it does for a call logged alone."""
    monkeypatch.setenv("TEST_SMS_TOKEN", "t")
    sms = {"url": "http://127.0.0.1:9/send", "token_env": "TEST_SMS_TOKEN"}
    rt = Runtime.build(make_settings(tmp_path, db_url, sms=sms))
    import_rows(rt, export(tmp_path), one_by_one=False)
    key = rt.intake_policy().query_code_key
    with rt.sessions() as s:
        cases = {c.external_id: c for c in s.scalars(select(Case).where(Case.channel == "phone"))}
        texts = {t.case_id: t for t in s.scalars(select(TextMessage))}
        for call_id, case in cases.items():
            told = s.scalars(
                select(CaseEvent.action).where(
                    CaseEvent.case_id == case.id,
                    CaseEvent.action.in_(["sms_queued", "notice_not_sent"]),
                )
            ).all()
            if call_id == "C2":  # a landline: no text, and the timeline says so
                assert told == ["notice_not_sent"] and case.id not in texts
                continue
            assert told == ["sms_queued"], call_id
            text = texts[case.id]
            assert text.kind == "notice_received"
            assert text.phone == mobile_number(case.contact_phone)
            assert case.tracking_number in text.text
            code = re.search(r"查询码(\w{6})", text.text)
            assert code and check_query_code(case.query_code_hash, code[1], key), call_id
    # Imported again: no second text.
    import_rows(rt, export(tmp_path), one_by_one=False)
    with rt.sessions() as s:
        assert len(s.scalars(select(TextMessage)).all()) == len(CALLS) - 1
    rt.engine.dispose()


def _started_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file gets the helper process, and the import waits for its start (it would
    otherwise go on without it until then: these files are a few batches long)."""
    monkeypatch.setattr(call_import_run, "PIPELINE_MIN_BYTES", 0)
    ready = call_import_run._Helper.ready

    def waited(self: Any) -> Any:
        wait([self.started], timeout=120)
        return ready(self)

    monkeypatch.setattr(call_import_run._Helper, "ready", waited)


@pytest.mark.skipif(
    DB_KIND != "sqlite",
    reason="compares two databases side by side: SQLite files (the helper process computes; "
    "what is stored is stored by the same code on PostgreSQL)",
)
def test_a_large_file_imported_with_the_helper_process_makes_the_same_cases(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper process works out the suggestions, hazard flags and masked texts of a
    batch while the one before is inserted: the cases and events are those of an import
    without it, with a trained model and with the keyword routing."""
    from triage.routing import ModelStore, load_examples, train_model
    from web.demo import DEMO_TRAINING

    second = tmp_path / "alone.db"
    shutil.copy(db_url.split("///", 1)[1], second)
    calls = [(f"{c[0]}-{n}", *c[1:]) for n in range(3) for c in CALLS]
    data = export(tmp_path, calls)
    batches = {"calls": {"batch_size": 5}}
    alone = Runtime.build(make_settings(tmp_path, f"sqlite:///{second}", intake=batches))
    helped = Runtime.build(make_settings(tmp_path, db_url, intake=batches))
    # Both route with one trained model (the helper loads it from the model folder).
    model = train_model(load_examples(DEMO_TRAINING), folds=3)
    store = ModelStore(helped.settings.model_path)
    store.save(model)
    store.deploy(model.version)
    assert helped.intake_policy().router.version == alone.intake_policy().router.version
    report = run_import(alone, data, "calls.csv", actor="tester", clock=lambda: NOW)
    _started_at_once(monkeypatch)
    prepared: list[int] = []
    original = call_import_run._Helper.submit
    monkeypatch.setattr(
        call_import_run._Helper,
        "submit",
        lambda self, subs: prepared.append(len(subs)) or original(self, subs),
    )
    again = run_import(helped, data, "calls.csv", actor="tester", clock=lambda: NOW)
    assert (
        again.counts
        == report.counts
        == {"rows": 24, "registered": 24, "duplicates": 0, "rejected": 0}
    )
    # The first batch starts the helper (and is worked out here), the others go to it.
    assert prepared == [5, 5, 5, 4], "every later row was worked out by the helper"
    got, want = snapshot(helped), snapshot(alone)
    assert got == want
    assert any(c["urgent"] for c in got.values())
    assert {c["model_version"] for c in got.values()} == {model.version}
    # Imported again, every call a duplicate: no helper is started for nothing to do.
    started: list[Any] = []
    monkeypatch.setattr(call_import_run._Helper, "start", lambda *a: started.append(a))
    third = run_import(helped, data, "calls.csv", actor="tester", clock=lambda: NOW)
    assert third.counts["duplicates"] == 24 and started == []
    alone.engine.dispose()
    helped.engine.dispose()


def test_the_import_goes_on_when_its_helper_process_dies(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper is killed during the import: the rest is worked out in the importing
    process, and every call is registered once."""
    import os
    import signal

    rt = Runtime.build(make_settings(tmp_path, db_url, intake={"calls": {"batch_size": 3}}))
    _started_at_once(monkeypatch)
    original = call_import_run._Helper.submit

    def killed_after_the_first(self: Any, subs: Any) -> Any:
        future = original(self, subs)
        if not getattr(self, "killed", False):
            future.result()
            self.killed = True
            for pid in list(self.pool._processes):
                os.kill(pid, signal.SIGKILL)
        return future

    monkeypatch.setattr(call_import_run._Helper, "submit", killed_after_the_first)
    report = run_import(rt, export(tmp_path), "calls.csv", actor="tester", clock=lambda: NOW)
    assert report.counts == {"rows": 8, "registered": 8, "duplicates": 0, "rejected": 0}
    assert sorted(c.external_id for c in phone_cases(rt)) == sorted(c[0] for c in CALLS)
    with rt.sessions() as s:
        imported = s.scalars(select(CaseEvent.case_id).where(CaseEvent.action == "call_imported"))
        assert len(list(imported)) == 8
    rt.engine.dispose()
