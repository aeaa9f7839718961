"""`Case.merge_into` carries an urgent case's urgency to its target (`triage.urgency.escalate`):
reasons, deadlines no later than the merged case's own, an event that says so; with no
database and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.calendar import WorkCalendar
from triage.deadlines import Deadlines, TimeLimits
from triage.models import Case, Department, Status, User
from triage.urgency import escalate

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # a Thursday, 17:00 in Beijing
DEADLINES = Deadlines(WorkCalendar.build("Asia/Shanghai"), TimeLimits())
URBAN = Department(id=1, code="urban", name="住建局", active=True)
SUPERVISOR = User(id=2, username="supervisor", role="supervisor", display_name="李督查")


def make_case(
    case_id: int, status: Status, received: datetime, urgent: bool = False, **extra: object
) -> Case:
    case = Case(
        id=case_id,
        tracking_number=f"MS-2026-{case_id:06d}",
        status=status,
        kind="complaint",
        body="明德路12号3单元楼道",
        received_at=received,
        urgent=urgent,
        urgent_reasons=["燃气泄漏"] if urgent else [],
        triage_due_at=DEADLINES.triage_due(received, urgent, kind="complaint"),
        sent_back_count=0,
        rework_count=0,
        **extra,
    )
    if status in (Status.ASSIGNED, Status.IN_PROGRESS):
        case.department, case.department_id, case.assigned_at = URBAN, 1, received
        case.due_at = DEADLINES.handling_due(received, "urban", urgent, kind="complaint")
    return case


def test_an_urgent_target_takes_the_earlier_deadline_of_the_urgent_case_merged_in() -> None:
    """Both urgent: the earlier report's hour runs; the target gains the reasons it lacks."""
    source = make_case(11, Status.TRIAGE, NOW - timedelta(minutes=40), urgent=True)
    target = make_case(10, Status.TRIAGE, NOW - timedelta(minutes=10), urgent=True)
    target.urgent_reasons = ["电线裸露"]
    source.merge_into(target, SUPERVISOR, NOW, "同一楼道", deadlines=DEADLINES)
    assert target.urgent and target.urgent_reasons == ["电线裸露", "燃气泄漏"]
    assert target.triage_due_at == source.triage_due_at == NOW + timedelta(minutes=20)
    event = target.events[-1]
    assert event.action == "flagged_urgent"
    assert event.detail["source"] == source.tracking_number
    assert event.detail["triage_due_at"] == target.triage_due_at.isoformat()


def test_an_urgent_target_with_the_earlier_deadline_is_left_as_it_is() -> None:
    source = make_case(11, Status.TRIAGE, NOW - timedelta(minutes=10), urgent=True)
    target = make_case(10, Status.TRIAGE, NOW - timedelta(minutes=40), urgent=True)
    due = target.triage_due_at
    source.merge_into(target, SUPERVISOR, NOW, deadlines=DEADLINES)
    assert target.triage_due_at == due
    assert [e.action for e in target.events] == ["merged_in"]


def test_a_dispatched_urgent_case_merged_into_a_queued_one() -> None:
    """The merged case's dispatch deadline has passed with its dispatch: the target, still
    to be dispatched, gets the urgent hour from the merge."""
    source = make_case(11, Status.ASSIGNED, NOW - timedelta(hours=3), urgent=True)
    target = make_case(10, Status.TRIAGE, NOW - timedelta(hours=5))
    source.merge_into(target, SUPERVISOR, NOW, deadlines=DEADLINES)
    assert target.urgent and target.triage_due_at == NOW + timedelta(hours=1)


def test_a_handling_deadline_is_no_later_than_the_merged_cases() -> None:
    source = make_case(11, Status.IN_PROGRESS, NOW - timedelta(hours=1), urgent=True)
    target = make_case(10, Status.ASSIGNED, NOW - timedelta(days=1))
    assert target.due_at > NOW + timedelta(days=3)
    source.merge_into(target, SUPERVISOR, NOW, deadlines=DEADLINES)
    assert target.urgent and target.due_at == source.due_at == NOW + timedelta(hours=1)
    assert target.events[-1].detail["due_at"] == target.due_at.isoformat()


def test_an_urgent_case_is_not_merged_without_the_deadlines() -> None:
    source = make_case(11, Status.TRIAGE, NOW, urgent=True)
    target = make_case(10, Status.TRIAGE, NOW)
    with pytest.raises(ValueError, match="urgent"):
        source.merge_into(target, SUPERVISOR, NOW)
    assert source.status == Status.TRIAGE and source.merged_into is None
    assert not target.urgent and not target.events


def test_a_repeat_call_on_an_urgent_case_changes_nothing() -> None:
    """`escalate` without a merged case: an urgent case's deadlines are the urgent ones."""
    case = make_case(10, Status.TRIAGE, NOW - timedelta(minutes=30), urgent=True)
    due = case.triage_due_at
    assert not escalate(case, SUPERVISOR, NOW, ["燃气泄漏"], DEADLINES)
    assert case.triage_due_at == due and not case.events
