"""The rules engine with a fixed clock: one test per rule, the calendar cases (National Day
and its make-up working days; a year the calendar package does not know), and the policy's
overrides by kind, urgency and department."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from triage.calendar import WorkCalendar
from triage.deadlines import CommitmentOverride, Deadlines, TimeLimits
from triage.rules import (
    ActionKind,
    CaseSnapshot,
    ReplySnapshot,
    Risk,
    Rule,
    RulesPolicy,
    Severity,
    VisitSnapshot,
    evaluate,
)
from web.settings import ConfigError, settings_from_dict

BJ = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar.build("Asia/Shanghai")
DEADLINES = Deadlines(CAL, TimeLimits())
POLICY = RulesPolicy(DEADLINES)


def bj(*args: int) -> datetime:
    return datetime(*args, tzinfo=BJ)  # type: ignore[misc]


# Monday 23 Nov 2026, 10:00: dispatched; 5 working days → Monday 30 Nov, 23:59:59.
ASSIGNED_AT = bj(2026, 11, 23, 10)
DUE = DEADLINES.handling_due(ASSIGNED_AT, "urban", False)


def assigned(**changes: object) -> CaseSnapshot:
    base = CaseSnapshot(
        id=7,
        tracking_number="MS-2026-000007",
        status="assigned",
        department="urban",
        received_at=ASSIGNED_AT - timedelta(hours=2),
        triage_due_at=ASSIGNED_AT + timedelta(days=1),
        assigned_at=ASSIGNED_AT,
        due_at=DUE,
        events=(("assigned", ASSIGNED_AT, {"due_at": DUE.isoformat()}),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def rules_at(case: CaseSnapshot, now: datetime, policy: RulesPolicy = POLICY) -> dict[str, object]:
    return {str(f.rule): f for f in evaluate(case, now, policy).findings}


def test_due_date_counts_working_days() -> None:
    assert bj(2026, 11, 30, 23, 59, 59) == DUE


def test_nothing_is_found_early_on() -> None:
    result = evaluate(assigned(), bj(2026, 11, 24, 9), POLICY)
    assert result.findings == () and result.actions == ()
    assert result.risk == Risk.NONE


def test_not_acknowledged() -> None:
    at = bj(2026, 11, 23, 8)
    case = assigned(events=(("not_acknowledged", at, {}),))
    f = rules_at(case, bj(2026, 11, 24, 9))[Rule.NOT_ACKNOWLEDGED]
    assert f.severity == Severity.INFO and f.since == at and f.combination == 1
    failed = assigned(events=(("mail_failed", at, {"kind": "acknowledgment"}),))
    assert rules_at(failed, bj(2026, 11, 24, 9))[Rule.NOT_ACKNOWLEDGED].severity == "warning"
    other = assigned(events=(("mail_failed", at, {"kind": "reminder"}),))
    assert Rule.NOT_ACKNOWLEDGED not in rules_at(other, bj(2026, 11, 24, 9))


def test_triage_overdue() -> None:
    received = bj(2026, 11, 27, 16)  # Friday: 1 working day → Monday 30 Nov
    due = DEADLINES.triage_due(received, False)
    case = CaseSnapshot(1, "MS-2026-000001", "triage", received_at=received, triage_due_at=due)
    assert due == bj(2026, 11, 30, 23, 59, 59)
    assert Rule.TRIAGE_OVERDUE not in rules_at(case, bj(2026, 11, 30, 20))
    f = rules_at(case, bj(2026, 12, 1, 0, 30))[Rule.TRIAGE_OVERDUE]
    assert f.severity == Severity.WARNING and f.since == due
    urgent = replace(case, urgent=True, triage_due_at=received + timedelta(hours=1))
    found = evaluate(urgent, received + timedelta(hours=2), POLICY)
    assert found.findings[0].severity == Severity.CRITICAL
    assert found.risk == Risk.OVERDUE


def test_deadline_near_from_the_morning_of_the_last_day_with_one_reminder() -> None:
    case = assigned()
    assert Rule.DEADLINE_NEAR not in rules_at(case, bj(2026, 11, 29, 23, 59))
    result = evaluate(case, bj(2026, 11, 30, 9), POLICY)
    (f,) = result.findings
    assert f.rule == Rule.DEADLINE_NEAR and f.since == bj(2026, 11, 30, 0, 0)
    assert result.risk == Risk.AT_RISK
    (action,) = result.actions
    assert action.kind == ActionKind.REMINDER and action.due == DUE and action.case_id == 7
    reminded = assigned(events=(("reminded", bj(2026, 11, 30, 0, 5), {"due_at": DUE.isoformat()}),))
    again = evaluate(reminded, bj(2026, 11, 30, 9), POLICY)
    assert again.actions == () and again.findings[0].detail["reminded_at"]
    # A new deadline (an extension) is reminded again.
    later = DUE + timedelta(days=3)
    moved = replace(reminded, due_at=later)
    assert [a.due for a in evaluate(moved, bj(2026, 12, 3, 9), POLICY).actions] == [later]


def test_reminder_two_working_days_before_skips_the_weekend() -> None:
    policy = RulesPolicy(Deadlines(CAL, TimeLimits(reminder_before_working_days=2)))
    # Due Monday 30 Nov: the second working day back is Friday 27 Nov.
    assert Rule.DEADLINE_NEAR in rules_at(assigned(), bj(2026, 11, 27, 8), policy)
    assert Rule.DEADLINE_NEAR not in rules_at(assigned(), bj(2026, 11, 26, 23), policy)


def test_overdue_and_delay_unreported() -> None:
    now = bj(2026, 12, 1, 9)
    result = evaluate(assigned(), now, POLICY)
    found = {str(f.rule): f for f in result.findings}
    assert found[Rule.OVERDUE].severity == Severity.CRITICAL
    assert found[Rule.OVERDUE].since == DUE
    assert found[Rule.DELAY_UNREPORTED].combination == 2
    assert Rule.ESCALATED not in found  # the grace period runs until Tuesday's end
    assert result.actions == ()
    assert result.risk == Risk.OVERDUE


def test_a_reported_delay_is_shown_on_the_overdue_finding() -> None:
    at = bj(2026, 12, 1, 8)
    case = assigned(events=(("delay_reported", at, {"reason": "等待施工队"}),))
    found = rules_at(case, bj(2026, 12, 1, 9))
    assert Rule.DELAY_UNREPORTED not in found
    assert found[Rule.OVERDUE].detail["delay_reason"] == "等待施工队"


def test_escalated_after_the_grace_period_once_per_deadline() -> None:
    now = bj(2026, 12, 2, 0, 1)
    result = evaluate(assigned(), now, POLICY)
    f = {str(x.rule): x for x in result.findings}[Rule.ESCALATED]
    assert f.since == bj(2026, 12, 1, 23, 59, 59) and f.detail["escalated_at"] is None
    (action,) = result.actions
    assert action.kind == ActionKind.ESCALATION and action.due == DUE
    sent = assigned(events=(("escalated", bj(2026, 12, 2, 0, 1), {"due_at": DUE.isoformat()}),))
    again = evaluate(sent, bj(2026, 12, 2, 9), POLICY)
    assert again.actions == ()
    assert {str(x.rule): x for x in again.findings}[Rule.ESCALATED].detail["escalated_at"]


def test_extension_pending_until_decided() -> None:
    asked = ("extension_requested", bj(2026, 11, 25, 9), {"request_id": 3})
    found = rules_at(assigned(events=(asked,)), bj(2026, 11, 25, 10))
    assert found[Rule.EXTENSION_PENDING].since == bj(2026, 11, 25, 9)
    granted = ("extension_granted", bj(2026, 11, 25, 11), {"request_id": 3})
    assert Rule.EXTENSION_PENDING not in rules_at(
        assigned(events=(asked, granted)), bj(2026, 11, 25, 12)
    )


def test_reply_unsigned() -> None:
    draft = ReplySnapshot(bj(2026, 11, 25, 9), "pending_sign_off")
    found = rules_at(assigned(status="in_progress", replies=(draft,)), bj(2026, 11, 25, 10))
    assert found[Rule.REPLY_UNSIGNED].combination == 2
    sent = ReplySnapshot(bj(2026, 11, 25, 9), "sent")
    assert Rule.REPLY_UNSIGNED not in rules_at(assigned(replies=(sent,)), bj(2026, 11, 25, 10))


def replied(**changes: object) -> CaseSnapshot:
    at = bj(2026, 11, 25, 15)  # Wednesday: visit due within 3 working days → Monday 30 Nov
    return assigned(
        **{"status": "replied", "replied_at": at, "replies": (ReplySnapshot(at),), **changes}
    )


def test_visit_overdue_counts_failed_attempts() -> None:
    assert Rule.VISIT_OVERDUE not in rules_at(replied(), bj(2026, 11, 30, 22))
    failed = tuple(
        VisitSnapshot(bj(2026, 11, 26 + i, 10), reached=False, valid=False) for i in range(3)
    )
    f = rules_at(replied(visits=failed), bj(2026, 12, 1, 9))[Rule.VISIT_OVERDUE]
    assert f.detail["failed_attempts"] == 3 and f.detail["may_close"] is True
    assert f.since == bj(2026, 11, 30, 23, 59, 59)


def test_rework_pending_after_an_unsatisfied_visit_then_while_reworked() -> None:
    visit = VisitSnapshot(bj(2026, 11, 26, 10), True, False, "unsatisfied")
    found = rules_at(replied(status="visited", visits=(visit,)), bj(2026, 11, 26, 11))
    assert found[Rule.REWORK_PENDING].severity == Severity.WARNING
    asked = ("review_requested", bj(2026, 11, 26, 12), {})
    found = rules_at(
        replied(status="visited", visits=(visit,), events=(asked,)), bj(2026, 11, 26, 13)
    )
    assert Rule.REVIEW_PENDING in found and Rule.REWORK_PENDING not in found
    reworked = assigned(
        status="in_progress",
        rework_count=1,
        events=(("reworked", bj(2026, 11, 26, 12), {}),),
    )
    assert rules_at(reworked, bj(2026, 11, 26, 13))[Rule.REWORK_PENDING].severity == "info"


def test_spot_check_pending_and_failed() -> None:
    closed = CaseSnapshot(9, "MS-2026-000009", "closed", open_spot_checks=(bj(2026, 11, 20, 8),))
    f = rules_at(closed, bj(2026, 11, 25, 9))[Rule.SPOT_CHECK_PENDING]
    assert f.combination == 3 and f.severity == Severity.INFO
    reopened = assigned(
        status="in_progress",
        events=(("spot_check_failed", bj(2026, 11, 24, 9), {"check_id": 4, "method": "phone"}),),
    )
    f = rules_at(reopened, bj(2026, 11, 25, 9))[Rule.SPOT_CHECK_FAILED]
    assert f.detail["check_id"] == 4
    assert evaluate(reopened, bj(2026, 11, 25, 9), POLICY).risk == Risk.AT_RISK


def test_observation_open() -> None:
    case = assigned(open_observations=(bj(2026, 11, 24, 9), bj(2026, 11, 23, 9)))
    f = rules_at(case, bj(2026, 11, 24, 10))[Rule.OBSERVATION_OPEN]
    assert f.combination == 4 and f.since == bj(2026, 11, 23, 9) and f.detail["count"] == 2


def test_a_closed_case_has_no_clock_findings() -> None:
    closed = assigned(status="closed", closed_at=bj(2026, 11, 26, 9))
    assert evaluate(closed, bj(2027, 1, 5), POLICY).findings == ()


def test_deadline_across_national_day_with_make_up_days() -> None:
    # Tuesday 30 Sep 2025: 1-8 Oct are off, Saturday 11 Oct is a make-up working day.
    due = DEADLINES.handling_due(bj(2025, 9, 30, 10), "urban", False)
    assert due == bj(2025, 10, 14, 23, 59, 59)  # 9, 10, 11 (Sat), 13, 14
    # Friday 26 Sep 2025: Sunday 28 Sep is a make-up working day.
    assert DEADLINES.handling_due(bj(2025, 9, 26, 10), "urban", False) == bj(
        2025, 10, 10, 23, 59, 59
    )
    case = assigned(assigned_at=bj(2025, 9, 30, 10), due_at=due, events=())
    # The reminder falls on the last day, not during the holiday.
    assert Rule.DEADLINE_NEAR not in rules_at(case, bj(2025, 10, 13, 23))
    assert Rule.DEADLINE_NEAR in rules_at(case, bj(2025, 10, 14, 8))
    # Escalation one working day later: Wednesday 15 Oct's end.
    esc = rules_at(case, bj(2025, 10, 16, 0, 1))[Rule.ESCALATED]
    assert esc.since == bj(2025, 10, 15, 23, 59, 59)
    assert Rule.CALENDAR_UNKNOWN not in rules_at(case, bj(2025, 10, 1))


def test_deadline_in_an_unknown_year_counts_weekdays_and_is_flagged() -> None:
    assert not CAL.knows_year(2030)
    start = bj(2029, 12, 28, 10)  # Friday
    due = DEADLINES.handling_due(start, "urban", False)
    # Monday to Friday: 31 Dec, then 1-4 Jan 2030 (New Year's Day counted as working).
    assert due == bj(2030, 1, 4, 23, 59, 59)
    case = assigned(assigned_at=start, due_at=due, events=())
    f = rules_at(case, bj(2029, 12, 31, 9))[Rule.CALENDAR_UNKNOWN]
    assert f.detail["years"] == [2030] and f.severity == Severity.INFO
    known = WorkCalendar.build("Asia/Shanghai", holidays=[datetime(2030, 1, 1).date()])
    policy = RulesPolicy(Deadlines(known, TimeLimits()))
    assert Rule.CALENDAR_UNKNOWN not in rules_at(case, bj(2029, 12, 31, 9), policy)


def test_urgent_clocks_run_in_hours() -> None:
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # Friday 17:00 in Beijing
    due = DEADLINES.handling_due(start, "safety", True)
    case = assigned(urgent=True, assigned_at=start, due_at=due, department="safety")
    near = evaluate(case, due - timedelta(minutes=30), POLICY)
    assert [a.kind for a in near.actions] == [ActionKind.REMINDER]
    late = evaluate(case, due + timedelta(hours=1, minutes=1), POLICY)
    assert [a.kind for a in late.actions] == [ActionKind.ESCALATION]


def test_overrides_by_kind_urgency_and_department() -> None:
    limits = TimeLimits(
        handling_by_department={"urban": 7},
        overrides=(
            CommitmentOverride(kind="suggestion", limits=(("handling_working_days", 10),)),
            CommitmentOverride(
                kind="suggestion", department="urban", limits=(("handling_working_days", 15),)
            ),
            CommitmentOverride(urgent=True, limits=(("urgent_handling_hours", 4),)),
        ),
    )
    d = Deadlines(CAL, limits)
    assert d.commitment("complaint", False, "urban").handling == 7
    assert d.commitment("complaint", False, "transport").handling == 5
    assert d.commitment("suggestion", False, "transport").handling == 10
    assert d.commitment("suggestion", False, "urban").handling == 15
    assert d.commitment("complaint", True, "urban").handling == 4
    assert d.handling_due(ASSIGNED_AT, "urban", False, kind="suggestion") == bj(
        2026, 12, 14, 23, 59, 59
    )


def test_config_overrides_and_old_configs() -> None:
    old = settings_from_dict({"time_limits": {"handling_working_days": 4}})
    assert old.deadlines().commitment("complaint").handling == 4
    assert old.deadlines().commitment("complaint").reminder_before == 1
    new = settings_from_dict(
        {
            "departments": [{"code": "urban", "name": "城管局"}],
            "time_limits": {
                "overrides": [
                    {"kind": "inquiry", "handling_working_days": 2},
                    {"department": "urban", "urgent": True, "urgent_handling_hours": 6},
                ]
            },
        }
    )
    d = new.deadlines()
    assert d.commitment("inquiry", False, "urban").handling == 2
    assert d.commitment("complaint", True, "urban").handling == 6
    assert d.commitment("complaint", True, None).handling == 2


def test_config_errors_name_the_key() -> None:
    unknown = r"time_limits\.overrides\.0: unknown department 'nowhere'"
    with pytest.raises(ConfigError, match=unknown):
        settings_from_dict({"time_limits": {"overrides": [{"department": "nowhere"}]}})
    with pytest.raises(ConfigError, match=r"time_limits\.overrides\.0\.handling_days: unknown key"):
        settings_from_dict({"time_limits": {"overrides": [{"handling_days": 3}]}})
    with pytest.raises(ConfigError, match="supervisors_email"):
        settings_from_dict({"supervision": {"supervisors_email": ["效能办"]}})


def test_working_day_mail_waits_for_the_send_hour_and_urgent_mail_does_not() -> None:
    policy = replace(POLICY, send_hour=8)
    case = assigned()
    at_midnight = evaluate(case, bj(2026, 11, 30, 0, 5), policy)
    # The deadline is near from 00:00, but nobody is mailed before 08:00.
    assert [f.rule for f in at_midnight.findings] == [Rule.DEADLINE_NEAR]
    assert at_midnight.actions == ()
    assert [a.kind for a in evaluate(case, bj(2026, 11, 30, 8), policy).actions] == [
        ActionKind.REMINDER
    ]
    night = DEADLINES.escalation_at(DUE, DEADLINES.commitment("complaint", False, "urban"))
    late = evaluate(case, night + timedelta(minutes=30), policy)
    assert Rule.ESCALATED in [f.rule for f in late.findings] and late.actions == ()
    # Urgent (hour-based) clocks mail at once, at any hour.
    start = bj(2026, 11, 29, 23, 0)
    due = DEADLINES.handling_due(start, "safety", True)
    urgent = assigned(urgent=True, assigned_at=start, due_at=due, department="safety")
    near = evaluate(urgent, due - timedelta(minutes=30), policy)
    assert DEADLINES.calendar.local(due - timedelta(minutes=30)).hour < 8
    assert [a.kind for a in near.actions] == [ActionKind.REMINDER]
