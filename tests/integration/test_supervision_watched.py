"""The supervision tick reads only the cases it watches, on both databases: open cases, and
closed ones still carrying a risk, a finding, a pending spot check or an open observation.
Closed cases piling up cost it nothing: no scan of `cases` on SQLite but of the partial index
holding the cases with a risk, no sequential scan and a bounded number of rows read on
PostgreSQL; and the set of cases is the one the tick always looked at."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, or_, select, text

from tests.conftest import analyze
from triage.models import (
    OPEN_STATUSES,
    Case,
    CaseFinding,
    Observation,
    SpotCheck,
    SpotCheckDraw,
    Status,
)
from triage.supervision import evaluate_case, load_snapshots
from web.cli_supervise import supervision_policy

CLOSED = 4000  # closed cases with nothing left, the bulk of an office's history
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _case(i: int, status: str, **extra: Any) -> dict[str, Any]:
    received = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=3 * i)
    return {
        "id": i,
        "tracking_number": f"W-{i:06d}",
        "query_code_hash": "x",
        "channel": "web",
        "external_id": f"w-{i}",
        "kind": "complaint",
        "status": status,
        "subject": f"第{i}件",
        "body": "路灯不亮" * 50,
        "received_at": received,
        "created_at": received,
        "closed_at": received + timedelta(days=3) if status == Status.CLOSED else None,
        # Every row with the same keys: an executemany takes its columns from the first.
        "risk": "",
        **extra,
    }


def _fill(runtime: Any) -> dict[str, set[int]]:
    """Thousands of closed cases with nothing left, and a few of each kind the tick watches
    (or, beside them, that it no longer watches: a spot check passed, an observation
    answered). Returns the ids by kind."""
    kinds: dict[str, list[int]] = {
        "closed": list(range(1, CLOSED + 1)),
        "open": [],
        "closed_risk": [],
        "closed_finding": [],
        "closed_pending_check": [],
        "closed_passed_check": [],
        "closed_open_observation": [],
        "closed_answered_observation": [],
        "merged_risk_overdue": [],
    }
    rows = [_case(i, Status.CLOSED) for i in kinds["closed"]]
    n = CLOSED
    for status in sorted(OPEN_STATUSES):
        for _ in range(2):
            n += 1
            kinds["open"].append(n)
            rows.append(_case(n, status))
    for kind in list(kinds)[2:]:
        for _ in range(3):
            n += 1
            kinds[kind].append(n)
            if kind == "closed_risk":
                rows.append(_case(n, Status.CLOSED, risk="at_risk"))
            elif kind == "merged_risk_overdue":
                rows.append(_case(n, Status.MERGED, risk="overdue"))
            else:
                rows.append(_case(n, Status.CLOSED))
    with runtime.sessions() as s, s.begin():
        for i in range(0, len(rows), 1000):
            s.execute(insert(Case.__table__), rows[i : i + 1000])
        s.execute(
            insert(CaseFinding.__table__),
            [
                {
                    "case_id": cid,
                    "rule": "visit_missing",
                    "combination": 1,
                    "severity": "warn",
                    "since": NOW,
                    "detail": {},
                    "evaluated_at": NOW,
                }
                for cid in kinds["closed_finding"]
            ],
        )
        draw = SpotCheckDraw(
            drawn_at=NOW,
            seed="s",
            window_start=NOW - timedelta(days=30),
            window_end=NOW,
            population=CLOSED,
            sample_size=6,
            sample=[],
        )
        s.add(draw)
        s.flush()
        s.execute(
            insert(SpotCheck.__table__),
            [
                {"draw_id": draw.id, "case_id": c, "result": "pending"}
                for c in kinds["closed_pending_check"]
            ]
            + [
                {"draw_id": draw.id, "case_id": c, "result": "passed"}
                for c in kinds["closed_passed_check"]
            ],
        )
        s.execute(
            insert(Observation.__table__),
            [
                {"case_id": c, "at": NOW, "body": "为何结案", "state": "open"}
                for c in kinds["closed_open_observation"]
            ]
            + [
                {"case_id": c, "at": NOW, "body": "已答复", "state": "answered"}
                for c in kinds["closed_answered_observation"]
            ]
            # An open observation on a department, on no case.
            + [{"case_id": None, "at": NOW, "body": "部门作风", "state": "open"}],
        )
        if s.get_bind().dialect.name == "postgresql":
            s.execute(
                text("SELECT setval(pg_get_serial_sequence('cases', 'id'), max(id)) FROM cases")
            )
        analyze(s)
    return {k: set(v) for k, v in kinds.items()}


def _as_the_tick_asked(session: Any) -> set[int]:
    """The watched cases by the one OR over `cases` the tick used before (the reference)."""
    where = or_(
        Case.status.in_([str(s) for s in OPEN_STATUSES]),
        Case.risk != "",
        Case.id.in_(select(CaseFinding.case_id)),
        Case.id.in_(select(SpotCheck.case_id).where(SpotCheck.result == "pending")),
        Case.id.in_(
            select(Observation.case_id).where(
                Observation.state == "open", Observation.case_id.is_not(None)
            )
        ),
    )
    return set(session.scalars(select(Case.id).where(where)))


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


def test_the_tick_reads_the_watched_cases_and_not_the_closed_ones(runtime: Any) -> None:
    kinds = _fill(runtime)
    watched = set().union(
        *(
            kinds[k]
            for k in (
                "open",
                "closed_risk",
                "closed_finding",
                "closed_pending_check",
                "closed_open_observation",
                "merged_risk_overdue",
            )
        )
    )
    with runtime.sessions() as s:
        # The same cases as the tick's OR over every case found.
        assert _as_the_tick_asked(s) == watched
        snapshots, rows = load_snapshots(s)
        assert {snap.id for snap in snapshots} == watched == set(rows)
        assert [snap.id for snap in snapshots] == sorted(watched)
        # One case at a time (the board, after an action): a watched one is evaluated, a closed
        # one with nothing left is not.
        for kind in ("closed_pending_check", "closed_open_observation", "closed_risk", "open"):
            one = min(kinds[kind])
            assert [snap.id for snap in load_snapshots(s, only=one)[0]] == [one]
        for kind in ("closed", "closed_passed_check", "closed_answered_observation"):
            assert load_snapshots(s, only=min(kinds[kind]))[0] == []

    dialect = runtime.engine.dialect.name
    with runtime.sessions() as s:
        statements = _statements(runtime, lambda: load_snapshots(s))
        assert len(statements) == 6
        conn = s.connection()
        for statement, params in statements:
            if dialect == "sqlite":
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                details = [row[-1] for row in plan]
                # Of `cases`, only the partial index of the cases with a risk is read whole.
                scans = [
                    d
                    for d in details
                    if d.startswith("SCAN cases") and "INDEX ix_cases_attention" not in d
                ]
                assert not scans, details
            else:
                raw = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params
                ).scalar()
                tree = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
                nodes = _nodes(tree)
                on_cases = [n for n in nodes if n.get("Relation Name") == "cases"]
                assert not [n for n in on_cases if n["Node Type"] == "Seq Scan"], json.dumps(tree)
                read = sum(
                    (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0))
                    * n.get("Actual Loops", 1)
                    for n in on_cases
                )
                # Each watched case read about twice (its id, then its row): not the 4,000
                # closed ones.
                assert read <= 3 * len(watched), (read, json.dumps(tree)[:3000])


def test_a_case_closed_with_nothing_left_loses_its_risk(runtime: Any) -> None:
    """What a supervisor sees on the board: a case closed with a stale risk of the last tick
    is evaluated once more, and then carries none and is no longer read."""
    kinds = _fill(runtime)
    one = min(kinds["closed_risk"])
    rules = supervision_policy(runtime.settings).rules
    with runtime.sessions() as s, s.begin():
        evaluate_case(s, one, NOW, rules)
    with runtime.sessions() as s:
        assert s.scalar(select(Case.risk).where(Case.id == one)) == ""
        assert load_snapshots(s, only=one)[0] == []
        assert one not in {snap.id for snap in load_snapshots(s)[0]}
