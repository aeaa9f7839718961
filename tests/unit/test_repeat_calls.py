"""Repeat calls on a case, without a database: 催办 only on an open case, counted; a closed
case reopened for rework only with a reason, back with its department."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.models import Case, Department, IllegalTransition, Status

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _case(status: Status) -> Case:
    dept = Department(id=1, code="urban", name="城管")
    case = Case(tracking_number="MS-2026-000001", status=status, urge_count=0, rework_count=0)
    case.department, case.department_id, case.closed_at = dept, 1, NOW - timedelta(days=1)
    return case


def test_urging_counts_on_an_open_case_and_is_refused_on_a_closed_one() -> None:
    case = _case(Status.IN_PROGRESS)
    case.urge("operator", NOW, " 路灯还是不亮 ", call_id="C-1")
    case.urge("operator", NOW, "第三次来电")
    assert case.urge_count == 2 and case.status == Status.IN_PROGRESS
    first, second = case.events
    assert (first.action, first.reason, first.detail) == (
        "urged",
        "路灯还是不亮",
        {"count": 1, "call_id": "C-1"},
    )
    assert second.detail["count"] == 2
    with pytest.raises(IllegalTransition):
        _case(Status.CLOSED).urge("operator", NOW, "x")


def test_reopening_needs_a_closed_case_and_a_reason() -> None:
    due = NOW + timedelta(days=5)
    with pytest.raises(IllegalTransition):
        _case(Status.CLOSED).reopen("operator", NOW, "  ", due)
    with pytest.raises(IllegalTransition):
        _case(Status.REPLIED).reopen("operator", NOW, "没解决", due)
    case = _case(Status.CLOSED)
    case.reopen("operator", NOW, "井盖还是松的", due, call_id="C-2")
    assert case.status == Status.IN_PROGRESS and case.rework_count == 1
    assert case.due_at == due and case.closed_at is None
    (event,) = case.events
    assert (event.action, event.from_status, event.public) == ("reopened", "closed", True)
    assert event.detail["department"] == "urban" and event.detail["call_id"] == "C-2"
