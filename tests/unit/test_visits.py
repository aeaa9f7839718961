"""Return visits' validity (有效回访), closing after failed attempts, the review of an unsatisfied
visit, and the spot check's reopening: the Case methods, with no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.models import (
    Case,
    Department,
    IllegalTransition,
    Satisfaction,
    SpotCheck,
    SpotCheckResult,
    Status,
    User,
)

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
URBAN = Department(id=1, code="urban", name="住建局")
HANDLER = User(id=5, username="urban", role="handler", department_id=1)
SUPERVISOR = User(id=2, username="supervisor", role="supervisor", display_name="李督查")


def replied() -> Case:
    case = Case(
        id=10,
        tracking_number="MS-2026-000010",
        status=Status.IN_PROGRESS,
        body="楼道堆放杂物",
        sent_back_count=0,
        rework_count=0,
    )
    case.department, case.department_id, case.assigned_at = URBAN, 1, NOW
    case.reply(HANDLER, NOW, "已清理")
    return case


def not_reached(case: Case, minutes: int = 10, channel: str = "phone") -> None:
    case.record_visit(
        SUPERVISOR,
        NOW + timedelta(minutes=minutes),
        reached=False,
        solved=None,
        satisfaction=None,
        channel=channel,
    )


def test_a_reached_visit_is_valid_and_moves_the_case_on() -> None:
    case = replied()
    visit = case.record_visit(
        SUPERVISOR,
        NOW,
        reached=True,
        solved=True,
        satisfaction=Satisfaction.BASIC,
        channel="sms",
    )
    assert visit.valid and visit.channel == "sms"
    assert case.status == Status.VISITED
    event = case.events[-1]
    assert (event.action, event.detail["valid"], event.detail["channel"]) == (
        "visited",
        True,
        "sms",
    )


def test_an_unreached_visit_is_an_attempt_and_the_case_stays_replied() -> None:
    case = replied()
    not_reached(case, channel="visit")
    assert case.status == Status.REPLIED
    assert case.latest_visit is not None and not case.latest_visit.valid
    event = case.events[-1]
    assert event.action == "visited" and event.detail["valid"] is False
    assert event.from_status == event.to_status == Status.REPLIED
    assert case.failed_visit_attempts == 1
    # Tried again, and this time reached.
    case.record_visit(
        SUPERVISOR, NOW + timedelta(hours=1), reached=True, solved=True, satisfaction="satisfied"
    )
    assert case.status == Status.VISITED
    case.close(SUPERVISOR, NOW + timedelta(hours=2))
    assert case.status == Status.CLOSED


def test_unknown_channel_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="calling back"):
        replied().record_visit(
            SUPERVISOR, NOW, reached=False, solved=None, satisfaction=None, channel="fax"
        )


def test_closing_without_a_valid_visit_needs_the_attempts_and_a_reason() -> None:
    case = replied()
    with pytest.raises(IllegalTransition, match="cannot be closed"):
        case.close(SUPERVISOR, NOW)
    not_reached(case, 1)
    not_reached(case, 2)
    with pytest.raises(IllegalTransition, match="3 failed attempts"):
        case.close_without_visit(SUPERVISOR, NOW, "电话停机", attempts_required=3)
    not_reached(case, 3)
    with pytest.raises(IllegalTransition, match="reason"):
        case.close_without_visit(SUPERVISOR, NOW, "  ", attempts_required=3)
    case.close_without_visit(SUPERVISOR, NOW + timedelta(hours=1), "三次电话未接通", 3)
    assert case.status == Status.CLOSED and case.closed_at == NOW + timedelta(hours=1)
    event = case.events[-1]
    assert event.action == "closed_without_visit" and event.detail["attempts"] == 3
    assert event.reason == "三次电话未接通"


def test_attempts_before_a_rework_do_not_count_after_it() -> None:
    case = replied()
    for minute in (1, 2, 3):
        not_reached(case, minute)
    case.record_visit(
        SUPERVISOR,
        NOW + timedelta(minutes=5),
        reached=True,
        solved=False,
        satisfaction=Satisfaction.UNSATISFIED,
    )
    case.rework(SUPERVISOR, NOW + timedelta(minutes=6), "未解决", NOW + timedelta(days=5))
    case.reply(HANDLER, NOW + timedelta(days=1), "已重新处理")
    assert case.failed_visit_attempts == 0
    with pytest.raises(IllegalTransition, match="0 recorded"):
        case.close_without_visit(SUPERVISOR, NOW + timedelta(days=1), "联系不上", 1)


def test_a_legacy_visited_case_with_an_unreached_visit_gets_its_valid_visit() -> None:
    case = replied()
    not_reached(case)
    # Recorded before visits had a validity: the case moved on anyway.
    case.status = Status.VISITED
    with pytest.raises(IllegalTransition, match="valid return visit"):
        case.close(SUPERVISOR, NOW)
    case.record_visit(
        SUPERVISOR, NOW + timedelta(hours=1), reached=True, solved=True, satisfaction="satisfied"
    )
    case.close(SUPERVISOR, NOW + timedelta(hours=2))
    assert case.status == Status.CLOSED


def test_an_unsatisfied_visit_goes_to_review_then_closes_with_a_reason() -> None:
    case = replied()
    case.record_visit(
        SUPERVISOR, NOW, reached=True, solved=True, satisfaction=Satisfaction.UNSATISFIED
    )
    case.request_review(SUPERVISOR, NOW, "诉求超出职责范围")
    assert case.review_pending and case.status == Status.VISITED
    assert case.events[-1].action == "review_requested"
    with pytest.raises(IllegalTransition, match="already waits"):
        case.request_review(SUPERVISOR, NOW, "再次")
    with pytest.raises(IllegalTransition, match="reason"):
        case.close(SUPERVISOR, NOW)
    case.close(SUPERVISOR, NOW, "复核：已按政策答复")
    assert case.status == Status.CLOSED and not case.review_pending


def test_review_or_rework_after_review() -> None:
    case = replied()
    case.record_visit(SUPERVISOR, NOW, reached=True, solved=False, satisfaction=Satisfaction.BASIC)
    case.request_review(SUPERVISOR, NOW, "需复核")
    case.rework(SUPERVISOR, NOW, "复核认为未解决", NOW + timedelta(days=5))
    assert case.status == Status.IN_PROGRESS and not case.review_pending


def test_a_satisfied_visit_needs_no_review() -> None:
    case = replied()
    case.record_visit(SUPERVISOR, NOW, reached=True, solved=True, satisfaction="satisfied")
    with pytest.raises(IllegalTransition, match="Only an unsatisfied"):
        case.request_review(SUPERVISOR, NOW, "x")


def closed_case() -> Case:
    case = replied()
    case.record_visit(SUPERVISOR, NOW, reached=True, solved=True, satisfaction="satisfied")
    case.close(SUPERVISOR, NOW)
    return case


def test_a_failed_spot_check_reopens_the_case_for_rework() -> None:
    case = closed_case()
    check = SpotCheck(id=7, draw_id=1, case_id=case.id, result=SpotCheckResult.PENDING)
    due = NOW + timedelta(days=7)
    with pytest.raises(IllegalTransition, match="reason"):
        case.fail_spot_check(check, SUPERVISOR, NOW, "phone", "", due)
    with pytest.raises(IllegalTransition, match="call or a visit"):
        case.fail_spot_check(check, SUPERVISOR, NOW, "fax", "x", due)
    case.fail_spot_check(check, SUPERVISOR, NOW, "phone", "群众称杂物仍未清理", due)
    assert case.status == Status.IN_PROGRESS and case.rework_count == 1
    assert case.due_at == due and case.closed_at is None
    assert check.result == SpotCheckResult.FAILED and check.checked_by_id == SUPERVISOR.id
    event = case.events[-1]
    assert event.action == "spot_check_failed"
    assert event.detail == {
        "check_id": 7,
        "method": "phone",
        "department": "urban",
        "due_at": due.isoformat(),
    }
    with pytest.raises(IllegalTransition, match="already recorded"):
        case.pass_spot_check(check, SUPERVISOR, NOW, "visit")


def test_a_passed_spot_check_leaves_the_case_closed() -> None:
    case = closed_case()
    check = SpotCheck(id=8, draw_id=1, case_id=case.id, result=SpotCheckResult.PENDING)
    case.pass_spot_check(check, SUPERVISOR, NOW, "visit", "实地查看已清理")
    assert case.status == Status.CLOSED and check.result == SpotCheckResult.PASSED
    assert case.events[-1].action == "spot_check_passed"
    assert case.events[-1].detail == {"check_id": 8, "method": "visit"}
    other = SpotCheck(id=9, draw_id=1, case_id=99, result=SpotCheckResult.PENDING)
    with pytest.raises(IllegalTransition, match="not of this case"):
        case.pass_spot_check(other, SUPERVISOR, NOW, "visit")
