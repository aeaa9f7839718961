"""The case list's "at risk" filter, on both databases: it selects exactly the open cases the
supervision tick found at risk, the dashboard's "At risk" tile counts the same cases (for the
office and for a handler's department) and links to it, and the list reads the partial index
of the cases with a risk, not every case."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event, insert, select, text

from tests.conftest import analyze
from triage.case_list import ListFilters
from triage.models import Case, Department, Status
from web import dashboard
from web.dashboard import today_counts

FILLER = 3000  # closed cases with no risk: the office's history


def _fill(runtime: Any) -> dict[str, set[int]]:
    """Open and closed cases of two departments, with and without a risk; returns the ids
    of the open at-risk cases, office-wide and of the urban department."""
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        other = s.scalar(select(Department.id).where(Department.code != "urban"))
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    expected: dict[str, set[int]] = {"office": set(), "urban": set()}

    def add(status: str, risk: str, department: int | None) -> None:
        i = len(rows) + 1
        rows.append(
            {
                "id": i,
                "tracking_number": f"R-{i:06d}",
                "query_code_hash": "x",
                "channel": "web",
                "external_id": f"r-{i}",
                "kind": "complaint",
                "status": status,
                "subject": f"第{i}件",
                "body": "井盖缺失" * 30,
                "received_at": start + timedelta(hours=2 * i),
                "created_at": start,
                "department_id": department,
                "risk": risk,
            }
        )
        if status not in (Status.CLOSED, Status.MERGED) and risk == "at_risk":
            expected["office"].add(i)
            if department == urban:
                expected["urban"].add(i)

    for _ in range(FILLER):
        add(Status.CLOSED, "", other)
    for department in (urban, other):
        for status in (Status.ASSIGNED, Status.IN_PROGRESS, Status.REPLIED):
            for risk in ("at_risk", "at_risk", "overdue", ""):
                add(status, risk, department)
        # Closed with the last tick's mark still on: not at risk any more.
        add(Status.CLOSED, "at_risk", department)
        add(Status.MERGED, "at_risk", department)
    add(Status.TRIAGE, "at_risk", None)  # waiting for dispatch, at risk
    with runtime.sessions() as s, s.begin():
        s.execute(insert(Case.__table__), rows)
        if s.get_bind().dialect.name == "postgresql":
            s.execute(
                text("SELECT setval(pg_get_serial_sequence('cases', 'id'), max(id)) FROM cases")
            )
        analyze(s)
    return expected


def test_the_at_risk_filter_is_the_tiles_cases(runtime: Any, login_as: Any) -> None:
    expected = _fill(runtime)
    assert len(expected["office"]) == 13 and len(expected["urban"]) == 6
    now = datetime.now(UTC)
    tz = ZoneInfo(runtime.settings.app.timezone)
    filters, bad = ListFilters.parse({"at_risk": "1"})
    assert filters.at_risk and not bad and filters.query_args() == {"at_risk": "1"}
    with runtime.sessions() as s:
        clauses = filters.clauses(now, tz)
        assert set(s.scalars(select(Case.id).where(*clauses))) == expected["office"]
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        in_urban = [*clauses, Case.department_id == urban]
        assert set(s.scalars(select(Case.id).where(*in_urban))) == expected["urban"]
        # The tile: the same number, office-wide and for the department.
        assert today_counts(s, tz, now)["at_risk"] == len(expected["office"])
        assert today_counts(s, tz, now, urban)["at_risk"] == len(expected["urban"])

    dashboard.clear_cache()
    for username, scope in (("supervisor", "office"), ("urban", "urban")):
        user = login_as(username)
        page = user.get("/board/dashboard").get_data(as_text=True)
        tile = re.search(r'id="tile-link-at-risk" href="([^"]+)".*?id="tile-at-risk">(\d+)<', page)
        assert tile, page[:3000]
        assert int(tile.group(2)) == len(expected[scope])
        listed = user.get(tile.group(1).replace("&amp;", "&")).get_data(as_text=True)
        heading = re.search(r"<h1>.*?<small>\((\d+)\)</small></h1>", listed)
        assert heading and int(heading.group(1)) == len(expected[scope])
        # The list's rows (a handler's page lists its "needs attention" cases above them).
        rows = re.sub(r'<section class="attention".*?</section>', "", listed, flags=re.S)
        shown = set(re.findall(r'data-case="R-(\d+)"', rows))
        assert {int(n) for n in shown} == expected[scope]
        assert 'name="at_risk" value="1" checked' in listed

    # The list's statements read the partial index of the cases with a risk, not the cases.
    engine = runtime.engine
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if re.search(r"\bFROM cases\b", statement):
            statements.append((statement, params))

    supervisor = login_as("supervisor")
    event.listen(engine, "before_cursor_execute", record)
    try:
        for url in ("/board/cases?at_risk=1", "/board/cases?at_risk=1&sort=deadline"):
            assert supervisor.get(url).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    listing = [(q, p) for q, p in statements if "'at_risk'" in q or "risk =" in q]
    # Per page: its count and its rows.
    assert len(listing) >= 4, [q for q, _ in statements]
    with engine.connect() as conn:
        for statement, params in listing:
            if engine.dialect.name == "sqlite":
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                details = [str(r[-1]) for r in plan]
                scans = [d for d in details if d.startswith("SCAN cases")]
                assert all("ix_cases_attention" in d for d in scans), details
                assert any("ix_cases_attention" in d for d in details), details
            else:
                raw = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params
                ).scalar()
                tree = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
                # No scan of the cases (of a few empty rows of attachments or findings,
                # joined to the counted cases, the planner may choose one).
                text_plan = json.dumps(tree)
                assert "cases" not in _seq_scanned(tree), text_plan
                assert "ix_cases_attention" in text_plan, text_plan


def _seq_scanned(plan: dict[str, Any]) -> list[str]:
    """The tables a PostgreSQL plan (EXPLAIN's JSON) reads by sequential scan."""
    found = [plan["Relation Name"]] if plan.get("Node Type") == "Seq Scan" else []
    for child in plan.get("Plans", ()):
        found += _seq_scanned(child)
    return found
