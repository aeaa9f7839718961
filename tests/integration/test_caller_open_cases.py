"""A frequent caller's old open case is found at once, on both databases: with 150 closed
cases of the caller newer than it, the operator's desk still lists it first and a repeat
call urges it (催办), and the read of the caller's open cases goes through the partial
indexes holding only open cases (migration 0033), not through the closed ones."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, insert, inspect, select, update

from tests.conftest import analyze, csrf_from
from tests.integration.helpers import submit_complaint
from triage.callers import WINDOW, caller_history
from triage.models import Base, Case, Status
from web.db import alembic_config, make_engine, upgrade

PHONE = "13812345678"
CLOSED = 150  # the caller's closed cases, all newer than the open one
OTHERS = 3000  # other callers' cases, so that the planner has a table to choose in


def _desk(operator: Any, data: dict[str, Any]) -> Any:
    """Posts the desk's form as a browser would: with the token of the page it was shown on."""
    page = operator.get("/board/calls/new").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page)
    form = {
        "csrf_token": csrf_from(page),
        "token": token.group(1) if token else "",
        "kind": "complaint",
        "subject": "催办路灯",
        "body": "第二次来电，路灯还是不亮",
        **data,
    }
    return operator.post("/board/calls/new", data=form)


def _fill(runtime: Any, key: str) -> None:
    """The caller's 150 closed cases since the open one, and other callers' cases (a tenth
    of them open) over the same months, in bulk."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [
        {
            "tracking_number": f"OLD-{i:05d}",
            "query_code_hash": "x",
            "channel": "phone",
            "external_id": f"old-{i}",
            "kind": "complaint",
            "status": Status.CLOSED if i < CLOSED or i % 10 else Status.IN_PROGRESS,
            "subject": f"第{i}次反映路灯",
            "body": "路灯不亮" * 20,
            "received_at": start + timedelta(hours=5 * i),
            "created_at": start,
            "caller_key": key if i < CLOSED else f"{i:032x}",
            "caller_alt_key": None,
        }
        for i in range(CLOSED + OTHERS)
    ]
    with runtime.sessions() as s, s.begin():
        s.execute(insert(Case.__table__), rows)
        analyze(s)


def _statements(runtime: Any, run: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        seen.append((statement, params))

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)
    return seen


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for p in plan.get("Plans", []) for n in _nodes(p))]


def test_an_old_open_case_behind_150_closed_ones_is_urged_from_the_desk(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _code = submit_complaint(client, "明德路路灯不亮已经一周", phone=PHONE)
    with runtime.sessions() as s, s.begin():
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        assert case.status in (Status.RECEIVED, Status.TRIAGE)
        key = case.caller_key
        s.execute(
            update(Case)
            .where(Case.id == case.id)
            .values(received_at=datetime(2024, 6, 1, tzinfo=UTC))
        )
    assert key
    _fill(runtime, key)

    # The desk, as the number is typed: the open case first, offered for 催办, though the
    # caller's newest hundred cases are all closed.
    operator = login_as("operator")
    found = operator.get(f"/board/calls/history?phone={PHONE}").get_json()
    assert found["total"] == WINDOW and found["more"] is True
    first = found["cases"][0]
    assert first["number"] == number and first["open"] is True
    assert [c["value"] for c in first["choices"]] == [f"urge:{number}"]
    assert [c for c in found["cases"] if c["open"]] == [first]

    # The repeat call urges it: no new case.
    r = _desk(operator, {"phone": PHONE, "about": f"urge:{number}"})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/board/cases/{number}")
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        assert case.urge_count == 1

    # The open cases are read from the partial indexes of open cases, a few rows.
    dialect = runtime.engine.dialect.name
    with runtime.sessions() as s:
        history: list[Any] = []
        statements = _statements(
            runtime, lambda: history.append(caller_history(s, [key], limit=5, open_first=True))
        )
        assert history[0].cases[0].tracking_number == number
        opened = [(q, p) for q, p in statements if "cases.status IN" in q]
        assert len(opened) == 1, [q for q, _ in statements]
        statement, params = opened[0]
        conn = s.connection()
        if dialect == "sqlite":
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            details = " | ".join(str(row[-1]) for row in plan)
            assert "ix_cases_caller_key_open" in details, details
            assert "ix_cases_caller_alt_key_open" in details, details
            assert "ix_cases_caller_key_received" not in details, details
            assert "SCAN cases" not in details, details
        else:
            raw = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params
            ).scalar()
            tree = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
            on_cases = [n for n in _nodes(tree) if n.get("Relation Name") == "cases"]
            assert {n.get("Index Name") for n in on_cases} == {
                "ix_cases_caller_key_open",
                "ix_cases_caller_alt_key_open",
            }, json.dumps(tree)[:3000]
            read = sum(
                (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0))
                * n.get("Actual Loops", 1)
                for n in on_cases
            )
            # The one open case, not the 150 closed ones walked to reach it.
            assert read <= 2, json.dumps(tree)[:3000]


def test_migration_0033_matches_the_models_and_goes_back(empty_url: str) -> None:
    engine = make_engine(empty_url)
    names = {"ix_cases_caller_key_open", "ix_cases_caller_alt_key_open"}

    def indexes() -> set[str]:
        return {i["name"] for i in inspect(engine).get_indexes("cases")} & names

    upgrade(engine)
    assert indexes() == names
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if any(name in repr(d) for name in names)
        ]
        assert differences == []
    command.downgrade(alembic_config(engine), "0032")
    assert indexes() == set()
    upgrade(engine)
    assert indexes() == names
    engine.dispose()
