"""Extensions (延期) without a database: the dates a handler may pick, one request at a time,
the configured number granted, a shorter grant, a refusal only with a reason."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from triage.calendar import WorkCalendar
from triage.deadlines import CommitmentOverride, Deadlines, TimeLimits
from triage.extensions import (
    end_of_working_day,
    grant_extension,
    latest_extension_due,
    request_extension,
)
from triage.models import (
    Case,
    Department,
    IllegalTransition,
    RequestState,
    Status,
    User,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # Thursday, 10:00 in Shanghai
DUE = datetime(2026, 12, 3, 23, 59, 59, tzinfo=SHANGHAI)  # Thursday
DEADLINES = Deadlines(WorkCalendar(), TimeLimits(extension_max_working_days=10))
URBAN = Department(id=1, code="urban", name="住建局")
HANDLER = User(id=5, username="urban", role="handler", department_id=1)
SUPERVISOR = User(id=2, username="supervisor", role="supervisor")


def handled_case(status: Status = Status.IN_PROGRESS, due: datetime = DUE) -> Case:
    return Case(
        id=10,
        tracking_number="MS-2026-000010",
        status=status,
        body="路灯不亮",
        department=URBAN,
        department_id=1,
        due_at=due,
        extension_count=0,
    )


def ask(case: Case, day: date, reason: str = "需协调供电公司更换电缆") -> object:
    return request_extension(case, HANDLER, DEADLINES, 1, NOW, reason, day)


def test_the_latest_date_counts_working_days_across_national_day() -> None:
    # Due on 30 September; 1-7 October are holidays and Saturday 10 October a make-up day.
    due = datetime(2026, 9, 30, 23, 59, 59, tzinfo=SHANGHAI)
    three = Deadlines(WorkCalendar(), TimeLimits(extension_max_working_days=3))
    assert latest_extension_due(three, handled_case(due=due)).date() == date(2026, 10, 10)


def test_a_picked_day_is_the_end_of_that_working_day_and_a_holiday_is_refused() -> None:
    assert end_of_working_day(DEADLINES, date(2026, 12, 10)) == datetime(
        2026, 12, 10, 23, 59, 59, tzinfo=SHANGHAI
    )
    with pytest.raises(IllegalTransition, match="not a working day"):
        end_of_working_day(DEADLINES, date(2026, 10, 2))
    with pytest.raises(IllegalTransition, match="not a working day"):
        end_of_working_day(DEADLINES, date(2026, 12, 5))  # a Saturday


def test_a_request_is_logged_and_leaves_the_deadline_until_granted() -> None:
    case = handled_case()
    request = ask(case, date(2026, 12, 10))
    assert case.pending_extension is request
    assert case.due_at == DUE
    event = case.events[-1]
    assert event.action == "extension_requested"
    assert event.reason == "需协调供电公司更换电缆"
    assert event.detail["proposed_due_at"].startswith("2026-12-10T23:59:59")
    assert not event.public


@pytest.mark.parametrize(
    ("day", "says"),
    [
        (date(2026, 12, 3), "after the current one"),  # the current deadline's own day
        (date(2026, 12, 1), "after the current one"),
        (date(2026, 12, 18), "at the latest"),  # 11 working days after 3 December
    ],
)
def test_a_date_not_after_the_deadline_or_beyond_the_maximum_is_refused(
    day: date, says: str
) -> None:
    case = handled_case()
    with pytest.raises(IllegalTransition, match=says):
        ask(case, day)
    assert case.extension_requests == [] and case.events == []


def test_the_maximum_day_itself_is_allowed() -> None:
    assert latest_extension_due(DEADLINES, handled_case()).date() == date(2026, 12, 17)
    ask(handled_case(), date(2026, 12, 17))


def test_one_request_at_a_time_and_a_reason_is_needed() -> None:
    case = handled_case()
    with pytest.raises(IllegalTransition, match="reason"):
        ask(case, date(2026, 12, 10), reason="  ")
    ask(case, date(2026, 12, 10))
    with pytest.raises(IllegalTransition, match="already waits"):
        ask(case, date(2026, 12, 9))


@pytest.mark.parametrize("status", [Status.TRIAGE, Status.REPLIED, Status.CLOSED])
def test_only_while_the_department_handles_the_case(status: Status) -> None:
    with pytest.raises(IllegalTransition):
        ask(handled_case(status), date(2026, 12, 10))


def test_granting_moves_the_deadline_publicly_and_counts() -> None:
    case = handled_case()
    request = ask(case, date(2026, 12, 10))
    grant_extension(case, request, SUPERVISOR, DEADLINES, 1, NOW, reason="情况属实")
    new_due = datetime(2026, 12, 10, 23, 59, 59, tzinfo=SHANGHAI)
    assert (case.due_at, case.extended_to, case.extension_count) == (new_due, new_due, 1)
    assert request.state == RequestState.GRANTED and request.granted_due_at == new_due
    assert case.pending_extension is None
    event = case.events[-1]
    assert (event.action, event.public) == ("extension_granted", True)
    assert event.detail["due_at"] == new_due.isoformat()
    assert event.detail["previous"] == DUE.isoformat()
    # Once granted, the configured one extension is used up.
    with pytest.raises(IllegalTransition, match="extension"):
        ask(case, date(2026, 12, 14))


def test_a_supervisor_may_grant_a_shorter_date_but_not_a_longer_one() -> None:
    case = handled_case()
    request = ask(case, date(2026, 12, 10))
    with pytest.raises(IllegalTransition, match="shorten"):
        grant_extension(case, request, SUPERVISOR, DEADLINES, 1, NOW, day=date(2026, 12, 11))
    grant_extension(case, request, SUPERVISOR, DEADLINES, 1, NOW, day=date(2026, 12, 7))
    assert case.due_at is not None and case.due_at.date() == date(2026, 12, 7)


def test_a_departments_own_extension_maximum_applies() -> None:
    five_for_urban = CommitmentOverride(
        department="urban", limits=(("extension_max_working_days", 5),)
    )
    deadlines = Deadlines(
        WorkCalendar(),
        TimeLimits(extension_max_working_days=10, overrides=(five_for_urban,)),
    )
    case = handled_case()
    assert latest_extension_due(deadlines, case).date() == date(2026, 12, 10)
    with pytest.raises(IllegalTransition, match="at the latest"):
        request_extension(case, HANDLER, deadlines, 1, NOW, "等待材料", date(2026, 12, 11))


def test_two_extensions_when_the_config_allows_them() -> None:
    case = handled_case()
    first = request_extension(case, HANDLER, DEADLINES, 2, NOW, "等待材料", date(2026, 12, 10))
    grant_extension(case, first, SUPERVISOR, DEADLINES, 2, NOW)
    second = request_extension(case, HANDLER, DEADLINES, 2, NOW, "仍在施工", date(2026, 12, 24))
    grant_extension(case, second, SUPERVISOR, DEADLINES, 2, NOW)
    assert case.extension_count == 2
    assert case.due_at is not None and case.due_at.date() == date(2026, 12, 24)


def test_refusing_needs_a_reason_and_keeps_the_deadline() -> None:
    case = handled_case()
    request = ask(case, date(2026, 12, 10))
    with pytest.raises(IllegalTransition, match="reason"):
        case.refuse_extension(SUPERVISOR, NOW, request, "")
    case.refuse_extension(SUPERVISOR, NOW, request, "理由不充分")
    assert request.state == RequestState.REFUSED and case.due_at == DUE
    assert case.events[-1].action == "extension_refused" and not case.events[-1].public
    with pytest.raises(IllegalTransition, match="already decided"):
        grant_extension(case, request, SUPERVISOR, DEADLINES, 1, NOW)
    # A refused request is no longer pending: the department may ask again.
    ask(case, date(2026, 12, 9))


def test_a_reply_withdraws_the_waiting_request() -> None:
    case = handled_case()
    request = ask(case, date(2026, 12, 10))
    case.reply(HANDLER, NOW, "已更换电缆，路灯恢复。")
    assert case.status == Status.REPLIED and case.pending_extension is None
    assert request.state == RequestState.REFUSED
    withdrawn = [e for e in case.events if e.action == "extension_refused"]
    assert [e.detail.get("withdrawn") for e in withdrawn] == [True]


def test_a_signed_off_draft_withdraws_the_waiting_request() -> None:
    head = User(id=6, username="urban-head", role="handler", department_id=1, head=True)
    case = handled_case()
    draft = case.reply(HANDLER, NOW, "已更换电缆，路灯恢复。", sign_off=True)
    request = ask(case, date(2026, 12, 10))
    case.sign_off_reply(head, NOW, draft)
    assert case.status == Status.REPLIED and request.state == RequestState.REFUSED


def test_rework_and_a_failed_spot_check_leave_no_stale_extended_deadline() -> None:
    from datetime import timedelta

    from triage.models import SpotCheck, SpotCheckResult

    case = handled_case()
    case.rework_count = 0
    grant_extension(case, ask(case, date(2026, 12, 10)), SUPERVISOR, DEADLINES, 1, NOW)
    assert case.extended_to is not None
    case.reply(HANDLER, NOW, "已处理。")
    case.record_visit(SUPERVISOR, NOW, reached=True, solved=False, satisfaction="unsatisfied")
    rework_due = NOW + timedelta(days=7)
    case.rework(SUPERVISOR, NOW, "群众不满意", rework_due)
    assert (case.due_at, case.extended_to) == (rework_due, None)

    case.extended_to = case.due_at  # as if extended again, then closed
    case.reply(HANDLER, NOW, "已再次处理。")
    case.record_visit(SUPERVISOR, NOW, reached=True, solved=True, satisfaction="satisfied")
    case.close(SUPERVISOR, NOW)
    check = SpotCheck(id=1, case_id=case.id, result=SpotCheckResult.PENDING)
    case.fail_spot_check(check, SUPERVISOR, NOW, "phone", "仍未修好", rework_due)
    assert (case.status, case.extended_to) == (Status.IN_PROGRESS, None)
