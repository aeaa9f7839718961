"""The clocks of a case with fixed times: an urgent hazard's windows run in hours, and no
send-back window outlasts the handling deadline it belongs to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import base_config
from triage.calendar import WorkCalendar
from triage.cases import rework_case, send_back_case, send_back_deadline
from triage.deadlines import Deadlines, TimeLimits
from triage.models import Case, Department, IllegalTransition, Satisfaction, Status, User
from web.settings import ConfigError, settings_from_dict

CAL = WorkCalendar.build("Asia/Shanghai")
DEADLINES = Deadlines(CAL, TimeLimits())
# Thursday 26 Nov 2026, 10:00 in Beijing.
THURSDAY = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
# Friday 27 Nov 2026, 17:00 in Beijing: the weekend follows.
FRIDAY_EVENING = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
SAFETY = Department(id=8, code="safety", name="应急局", active=True)
HANDLER = User(id=9, username="safety", role="handler", department_id=8, display_name="冯经办")
SUPERVISOR = User(id=2, username="supervisor", role="supervisor", display_name="李督查")


def dispatched(urgent: bool, at: datetime, deadlines: Deadlines = DEADLINES) -> Case:
    case = Case(
        id=1,
        tracking_number="MS-2026-000001",
        status=Status.TRIAGE,
        body="化工厂仓库危险品泄漏",
        urgent=urgent,
        sent_back_count=0,
        rework_count=0,
    )
    case.assign(SAFETY, SUPERVISOR, at, deadlines.handling_due(at, "safety", urgent))
    return case


def test_urgent_send_back_window_is_hours_and_ends_before_the_deadline() -> None:
    case = dispatched(urgent=True, at=FRIDAY_EVENING)
    assert case.due_at == FRIDAY_EVENING + timedelta(hours=2)
    until = send_back_deadline(case, DEADLINES)
    assert until == FRIDAY_EVENING + timedelta(hours=1)
    assert until <= case.due_at


def test_urgent_case_cannot_be_sent_back_days_later() -> None:
    # The example of the issue: Friday's urgent case, sent back on Monday, was accepted.
    case = dispatched(urgent=True, at=FRIDAY_EVENING)
    monday = FRIDAY_EVENING + timedelta(days=3)
    with pytest.raises(IllegalTransition, match="send-back window closed"):
        send_back_case(case, HANDLER, DEADLINES, monday, "不归我局")
    after_deadline = case.due_at + timedelta(minutes=1)
    with pytest.raises(IllegalTransition, match="send-back window closed"):
        send_back_case(case, HANDLER, DEADLINES, after_deadline, "不归我局")
    assert case.status == Status.ASSIGNED and case.department is SAFETY
    send_back_case(case, HANDLER, DEADLINES, FRIDAY_EVENING + timedelta(minutes=50), "不归我局")
    assert case.status == Status.TRIAGE


def test_long_urgent_send_back_setting_is_cut_at_the_deadline() -> None:
    deadlines = Deadlines(CAL, TimeLimits(urgent_send_back_hours=6, urgent_handling_hours=2))
    case = dispatched(urgent=True, at=THURSDAY, deadlines=deadlines)
    assert send_back_deadline(case, deadlines) == THURSDAY + timedelta(hours=2)


def test_ordinary_send_back_window_is_working_days_and_capped_by_a_short_commitment() -> None:
    # Two working days from Friday: Tuesday 1 Dec, end of day in Beijing.
    case = dispatched(urgent=False, at=FRIDAY_EVENING)
    until = send_back_deadline(case, DEADLINES)
    assert CAL.local(until).date().isoformat() == "2026-12-01"
    assert until < case.due_at
    # A department that promises a reply within one working day owes it before the window
    # would end: the window ends with the commitment.
    quick = Deadlines(CAL, TimeLimits(handling_by_department={"safety": 1}))
    case = dispatched(urgent=False, at=FRIDAY_EVENING, deadlines=quick)
    assert send_back_deadline(case, quick) == case.due_at
    assert CAL.local(case.due_at).date().isoformat() == "2026-11-30"


def test_return_visit_and_rework_of_an_urgent_case_are_in_hours() -> None:
    assert DEADLINES.return_visit_due(FRIDAY_EVENING, urgent=True) == FRIDAY_EVENING + timedelta(
        hours=24
    )
    assert DEADLINES.rework_due(FRIDAY_EVENING, urgent=True) == FRIDAY_EVENING + timedelta(hours=2)
    # Not urgent: working days, over the weekend.
    visit = DEADLINES.return_visit_due(FRIDAY_EVENING)
    assert CAL.local(visit).date().isoformat() == "2026-12-02"
    case = dispatched(urgent=True, at=FRIDAY_EVENING)
    case.reply(HANDLER, FRIDAY_EVENING + timedelta(hours=1), "已封堵泄漏点并疏散人员。")
    case.record_visit(
        SUPERVISOR,
        FRIDAY_EVENING + timedelta(hours=3),
        reached=True,
        solved=False,
        satisfaction=Satisfaction.UNSATISFIED,
    )
    later = FRIDAY_EVENING + timedelta(hours=4)
    rework_case(case, SUPERVISOR, DEADLINES, later, "仍有异味")
    assert case.due_at == later + timedelta(hours=2)


def test_urgent_windows_are_configuration() -> None:
    raw = base_config()
    raw["time_limits"] = {
        **raw["time_limits"],
        "urgent_send_back_hours": 3,
        "urgent_return_visit_hours": 12,
        "urgent_rework_hours": 4,
    }
    limits = settings_from_dict(raw).deadlines().limits
    assert (
        limits.urgent_send_back_hours,
        limits.urgent_return_visit_hours,
        limits.urgent_rework_hours,
    ) == (3, 12, 4)
    raw["time_limits"]["urgent_rework_hours"] = 0
    with pytest.raises(ConfigError, match=r"time_limits\.urgent_rework_hours"):
        settings_from_dict(raw, source="my.toml")
