"""A frequent caller's history stays bounded, on both databases: with hundreds of cases under
one caller key, the case page's panel reads each key's newest cases from its index (no scan
of `cases` on SQLite, no sequential scan and at most a window of rows on PostgreSQL), shows
the counts capped ("100+", "第101+次"), and a handler still sees their department's newest
cases of the caller while the rest are counted as not listed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, select, update

from tests.conftest import analyze
from tests.integration.helpers import submit_complaint
from triage.callers import WINDOW, caller_history
from triage.models import Case, Role, Status, User

PHONE = "13912345678"
FREQUENT = 300  # the caller's earlier cases
OTHERS = 5000  # other callers' cases among them, so the planner has a table to choose in


def _fill(runtime: Any, key: str, own_department: int, other_department: int | None) -> None:
    """The caller's 300 earlier cases (the handler's department has the 2 oldest only) and
    5,000 other callers' cases over the same months, inserted in bulk."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [
        {
            "tracking_number": f"FREQ-{i:05d}",
            "query_code_hash": "x",
            "channel": "phone",
            "external_id": f"freq-{i}",
            "kind": "complaint",
            "status": Status.CLOSED if i % 3 else Status.IN_PROGRESS,
            "subject": f"第{i}次反映噪音",
            "body": "噪音扰民",
            "received_at": start + timedelta(hours=i * 17 if i < FREQUENT else i - FREQUENT),
            "created_at": start,
            "caller_key": key if i < FREQUENT else f"{i:032x}",
            "department_id": own_department if i < 2 else other_department,
        }
        for i in range(FREQUENT + OTHERS)
    ]
    with runtime.sessions() as s, s.begin():
        s.execute(insert(Case.__table__), rows)
        analyze(s)


def _statements(runtime: Any, run: Any) -> list[tuple[str, Any]]:
    """The SQL statements `run()` sends, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any
    ) -> None:
        seen.append((statement, params))

    engine = runtime.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan's scans of `cases` read (returned and filtered out, every loop)."""
    own = 0
    if plan.get("Relation Name") == "cases":
        own = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * plan.get(
            "Actual Loops", 1
        )
    return own + sum(_rows_read(p) for p in plan.get("Plans", []))


def _scans(plan: dict[str, Any]) -> list[str]:
    found = [f"{plan['Node Type']} on {plan.get('Relation Name', '')}"]
    return found + [n for p in plan.get("Plans", []) for n in _scans(p)]


def test_a_frequent_callers_history_is_read_in_bounded_steps(
    client: Any, login_as: Any, runtime: Any
) -> None:
    latest, _ = submit_complaint(client, "小区夜间施工噪音又来了。", phone=PHONE)
    with runtime.sessions() as s, s.begin():
        case = s.scalars(select(Case).where(Case.tracking_number == latest)).one()
        handler = s.scalars(select(User).where(User.username == "urban")).one()
        assert handler.role == Role.HANDLER and handler.department_id is not None
        own = handler.department_id
        other = s.scalars(
            select(User.department_id).where(
                User.department_id.is_not(None), User.department_id != own
            )
        ).first()
        s.execute(update(Case).where(Case.id == case.id).values(department_id=own))
        key = case.caller_key
    assert key
    _fill(runtime, key, own, other)

    # The page as users see it: the count capped, and which contact this is.
    page = login_as("supervisor").get(f"/board/cases/{latest}").get_data(as_text=True)
    assert f"同一电话或邮箱的其他工单共 {WINDOW}+ 件" in page
    assert f"第{WINDOW + 1}+次来电/投诉" in page
    assert "FREQ-00299" in page and "FREQ-00290" not in page  # the newest 5
    # A handler: their department has only the caller's two oldest cases, beyond the newest
    # hundred; none is listed, the others are counted.
    page = login_as("urban").get(f"/board/cases/{latest}").get_data(as_text=True)
    assert "FREQ-00000" not in page and "FREQ-00299" not in page
    assert f"另有 {WINDOW}+ 件未列出" in page

    # The operator's desk: the count capped, the open cases first (every third is open).
    found = login_as("operator").get(f"/board/calls/history?phone={PHONE}").get_json()
    assert found["total"] == WINDOW and found["more"] is True
    assert found["cases"][0]["number"] == latest and all(c["open"] for c in found["cases"][:5])

    # Every statement of the panel reads from the caller-key indexes, a window at a time.
    dialect = runtime.engine.dialect.name
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.tracking_number == latest)).one()
        history: list[Any] = []
        statements = _statements(
            runtime,
            lambda: history.append(
                caller_history(s, [key], exclude=case, department_id=own, limit=5)
            ),
        )
        assert history[0].total == WINDOW and history[0].total_capped
        assert 1 <= len(statements) <= 4
        for statement, params in statements:
            conn = s.connection()
            if dialect == "sqlite":
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                details = [row[-1] for row in plan]
                assert not [d for d in details if d.startswith("SCAN cases")], details
            else:
                raw = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params
                ).scalar()
                tree = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
                assert not [n for n in _scans(tree) if n.startswith("Seq Scan")], _scans(tree)
                # Two keys' windows at most (caller_key and caller_alt_key sides).
                assert _rows_read(tree) <= 2 * WINDOW + 10, json.dumps(tree)[:3000]


def test_a_caller_with_many_linked_addresses_is_followed_a_few_keys_deep(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """Twelve cases each giving the caller's phone and another email: the first eight keys
    (the phone's, and the newest emails) are followed, and the panel says so."""
    latest, _ = submit_complaint(client, "路灯又坏了。", phone=PHONE)
    with runtime.sessions() as s, s.begin():
        key = s.scalars(select(Case.caller_key).where(Case.tracking_number == latest)).one()
        start = datetime(2025, 1, 1, tzinfo=UTC)
        rows = [
            {
                "tracking_number": f"LINK-{i:05d}",
                "query_code_hash": "x",
                "channel": "email",
                "external_id": f"link-{i}",
                "kind": "complaint",
                "status": Status.CLOSED,
                "subject": f"第{i}封信",
                "body": "路灯",
                "received_at": start + timedelta(days=i),
                "created_at": start,
                "caller_key": key,
                "caller_alt_key": f"{i:032x}",
            }
            for i in range(12)
        ]
        # And an email-only case under the newest address: found through the link.
        rows.append(
            {
                **rows[-1],
                "tracking_number": "LINK-MAIL",
                "external_id": "link-mail",
                "caller_key": f"{11:032x}",
                "caller_alt_key": None,
            }
        )
        s.execute(insert(Case.__table__), rows)
    page = login_as("supervisor").get(f"/board/cases/{latest}").get_data(as_text=True)
    assert "同一电话或邮箱的其他工单共 13 件" in page
    assert "仅追溯最近的 8 个" in page
    assert "LINK-MAIL" in page and "LINK-00011" in page
