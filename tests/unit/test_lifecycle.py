"""The case life cycle: every action from every status, legal ones change the case and log
an event, illegal ones raise a clear error and change nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from triage.calendar import WorkCalendar
from triage.cases import assign_case
from triage.deadlines import Deadlines, TimeLimits
from triage.models import Case, Department, IllegalTransition, Satisfaction, Status, User
from triage.rejection import RejectionReason

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
URBAN = Department(id=1, code="urban", name="住建局")
TRANSPORT = Department(id=2, code="transport", name="交通局")
HANDLER = User(id=5, username="urban", role="handler", department_id=1, display_name="王经办")
SUPERVISOR = User(id=2, username="supervisor", role="supervisor", display_name="李督查")


def make_case(status: Status, **extra: object) -> Case:
    case = Case(
        id=10,
        tracking_number="MS-2026-000010",
        status=status,
        body="楼道堆放杂物",
        sent_back_count=0,
        rework_count=0,
        **extra,
    )
    if status in (Status.ASSIGNED, Status.IN_PROGRESS, Status.REPLIED, Status.VISITED):
        case.department, case.department_id, case.assigned_at = URBAN, 1, NOW
    return case


def _with_reply_and_visit(case: Case, satisfaction: Satisfaction = Satisfaction.SATISFIED) -> Case:
    status = case.status
    case.status = Status.IN_PROGRESS
    case.reply(HANDLER, NOW, "已处理完毕")
    if status == Status.VISITED:
        case.record_visit(
            SUPERVISOR, NOW, reached=True, solved=True, satisfaction=satisfaction, note=""
        )
    case.events.clear()
    return case


def prepared(status: Status) -> Case:
    case = make_case(status)
    if status in (Status.REPLIED, Status.VISITED):
        _with_reply_and_visit(case)
    return case


ACTIONS: dict[str, tuple[set[Status], Callable[[Case], object], Status]] = {
    "queue": ({Status.RECEIVED}, lambda c: c.queue(NOW), Status.TRIAGE),
    "assign": (
        {Status.RECEIVED, Status.TRIAGE},
        lambda c: c.assign(URBAN, SUPERVISOR, NOW, NOW + timedelta(days=5)),
        Status.ASSIGNED,
    ),
    "transfer": (
        {Status.ASSIGNED, Status.IN_PROGRESS},
        lambda c: c.transfer(TRANSPORT, SUPERVISOR, NOW, NOW + timedelta(days=5), "交通问题"),
        Status.ASSIGNED,
    ),
    "start": ({Status.ASSIGNED}, lambda c: c.start(HANDLER, NOW), Status.IN_PROGRESS),
    "reply": (
        {Status.ASSIGNED, Status.IN_PROGRESS},
        lambda c: c.reply(HANDLER, NOW, "已清理"),
        Status.REPLIED,
    ),
    "send_back": (
        {Status.ASSIGNED, Status.IN_PROGRESS},
        lambda c: c.send_back(HANDLER, NOW, "不属于本部门", NOW + timedelta(days=2)),
        Status.TRIAGE,
    ),
    "visit": (
        {Status.REPLIED},
        lambda c: c.record_visit(
            SUPERVISOR, NOW, reached=True, solved=True, satisfaction=Satisfaction.BASIC
        ),
        Status.VISITED,
    ),
    "rework": (
        {Status.VISITED},
        lambda c: c.rework(SUPERVISOR, NOW, "群众不满意", NOW + timedelta(days=5)),
        Status.IN_PROGRESS,
    ),
    "close": ({Status.VISITED}, lambda c: c.close(SUPERVISOR, NOW), Status.CLOSED),
    "reject": (
        {Status.RECEIVED, Status.TRIAGE},
        lambda c: c.reject(SUPERVISOR, NOW, "广告"),
        Status.REJECTED,
    ),
    "merge": (
        {Status.RECEIVED, Status.TRIAGE, Status.ASSIGNED, Status.IN_PROGRESS},
        lambda c: c.merge_into(
            Case(id=99, tracking_number="MS-2026-000099", status=Status.ASSIGNED, body="x"),
            SUPERVISOR,
            NOW,
            "同一问题",
        ),
        Status.MERGED,
    ),
}

CASES = [(name, status) for name in ACTIONS for status in Status]


@pytest.mark.parametrize(("action", "status"), CASES, ids=[f"{a}-from-{s}" for a, s in CASES])
def test_every_action_from_every_status(action: str, status: Status) -> None:
    allowed, do, target = ACTIONS[action]
    case = prepared(status)
    events_before = len(case.events)
    if status in allowed:
        do(case)
        assert case.status == target
        assert len(case.events) > events_before
        ev = case.events[events_before]
        assert (ev.from_status, ev.to_status) == (status, target)
        assert ev.actor_name and ev.at == NOW
    else:
        with pytest.raises(IllegalTransition, match="cannot be") as err:
            do(case)
        assert case.tracking_number in str(err.value)
        assert case.status == status
        assert len(case.events) == events_before


@pytest.mark.parametrize(
    ("status", "change", "says"),
    [
        (Status.TRIAGE, lambda c: c.reject(SUPERVISOR, NOW, "  "), "reason"),
        (Status.IN_PROGRESS, lambda c: c.send_back(HANDLER, NOW, "", NOW), "reason"),
        (Status.IN_PROGRESS, lambda c: c.transfer(TRANSPORT, SUPERVISOR, NOW, NOW, ""), "reason"),
        (Status.IN_PROGRESS, lambda c: c.reply(HANDLER, NOW, "   "), "text"),
    ],
    ids=["reject", "send_back", "transfer", "empty-reply"],
)
def test_changes_that_need_a_reason_refuse_without_one(
    status: Status, change: Callable[[Case], None], says: str
) -> None:
    case = make_case(status)
    with pytest.raises(IllegalTransition, match=says):
        change(case)
    assert case.status == status and not case.events


def test_send_back_refused_after_the_window() -> None:
    case = make_case(Status.ASSIGNED)
    with pytest.raises(IllegalTransition, match="send-back window closed"):
        case.send_back(HANDLER, NOW, "不归我们管", NOW - timedelta(minutes=1))
    assert case.department is URBAN


def test_send_back_clears_the_department_and_counts() -> None:
    case = make_case(Status.IN_PROGRESS)
    case.send_back(HANDLER, NOW, "应由交通局处理", NOW + timedelta(days=2))
    assert case.department is None and case.due_at is None
    assert case.sent_back_count == 1
    assert case.events[-1].reason == "应由交通局处理"
    assert case.events[-1].detail["department"] == "urban"


def test_closing_an_unsatisfied_case_needs_a_reason() -> None:
    case = _with_reply_and_visit(make_case(Status.VISITED), Satisfaction.UNSATISFIED)
    with pytest.raises(IllegalTransition, match="reason"):
        case.close(SUPERVISOR, NOW)
    case.close(SUPERVISOR, NOW, "复核：诉求不合理，已解释")
    assert case.status == Status.CLOSED and case.closed_at == NOW


def test_rework_after_unsatisfied_visit_returns_to_the_department() -> None:
    case = _with_reply_and_visit(make_case(Status.VISITED), Satisfaction.UNSATISFIED)
    case.rework(SUPERVISOR, NOW, "问题未解决", NOW + timedelta(days=7))
    assert case.status == Status.IN_PROGRESS and case.rework_count == 1
    assert case.department is URBAN
    case.reply(HANDLER, NOW, "已重新处理")
    assert len(case.replies) == 2


def test_reached_visit_needs_solved_and_satisfaction() -> None:
    case = _with_reply_and_visit(make_case(Status.REPLIED))
    with pytest.raises(IllegalTransition, match="how satisfied"):
        case.record_visit(SUPERVISOR, NOW, reached=True, solved=None, satisfaction=None)
    visit = case.record_visit(SUPERVISOR, NOW, reached=False, solved=True, satisfaction=None)
    assert visit.solved is None and visit.satisfaction is None


def test_merge_refuses_itself_and_closed_targets() -> None:
    case = make_case(Status.TRIAGE)
    with pytest.raises(IllegalTransition, match="itself"):
        case.merge_into(case, SUPERVISOR, NOW)
    closed = Case(id=3, tracking_number="MS-2026-000003", status=Status.CLOSED, body="x")
    with pytest.raises(IllegalTransition, match="closed"):
        case.merge_into(closed, SUPERVISOR, NOW)


def test_merge_logs_on_both_cases() -> None:
    target = Case(id=3, tracking_number="MS-2026-000003", status=Status.ASSIGNED, body="x")
    case = make_case(Status.TRIAGE)
    case.merge_into(target, SUPERVISOR, NOW, "同一处噪音")
    assert case.merged_into is target
    assert target.events[-1].action == "merged_in"
    assert target.events[-1].detail["source"] == case.tracking_number


def test_public_events_are_the_ones_a_citizen_may_see() -> None:
    case = make_case(Status.TRIAGE)
    case.assign(URBAN, SUPERVISOR, NOW, NOW + timedelta(days=5))
    case.send_back(HANDLER, NOW, "内部原因：人手不足", NOW + timedelta(days=2))
    public = [e.action for e in case.events if e.public]
    assert public == ["assigned"]


# -- public rejection reasons ------------------------------------------------------------

SPAM = RejectionReason("spam", "广告或恶意信息", "Advertising or abuse")
NOT_OURS = RejectionReason("not_ours", "不属于本办受理范围", "Not ours to handle", refer=True)


def test_rejection_keeps_the_internal_reason_apart_from_the_public_one() -> None:
    case = make_case(Status.TRIAGE)
    case.reject(SUPERVISOR, NOW, "同一号码第五次发广告", outcome=SPAM, public_reason=" 商业广告 ")
    assert (case.rejection_code, case.public_reason, case.referred_to) == ("spam", "商业广告", "")
    assert case.rejection_reason == "同一号码第五次发广告"
    assert case.events[-1].public and case.events[-1].detail == {"code": "spam"}


def test_not_ours_needs_the_outside_body() -> None:
    case = make_case(Status.TRIAGE)
    with pytest.raises(IllegalTransition, match="turn to"):
        case.reject(SUPERVISOR, NOW, "供电不归政府", outcome=NOT_OURS, referred_to="   ")
    assert case.status == Status.TRIAGE and not case.events
    case.reject(SUPERVISOR, NOW, "供电不归政府", outcome=NOT_OURS, referred_to=" 国网  供电公司 ")
    assert case.referred_to == "国网 供电公司"
    assert case.events[-1].detail["referred_to"] == "国网 供电公司"


def test_an_outside_body_is_kept_only_for_a_referral() -> None:
    case = make_case(Status.TRIAGE)
    case.reject(SUPERVISOR, NOW, "广告", outcome=SPAM, referred_to="某公司")
    assert case.referred_to == ""


# -- merged cases' citizens --------------------------------------------------------------


def merged_pair(target_status: Status = Status.REPLIED) -> tuple[Case, Case]:
    """(target Y, source X): X merged into Y while Y was assigned, Y then at target_status."""
    y = prepared(target_status)
    x = Case(id=11, tracking_number="MS-2026-000011", status=Status.TRIAGE, body="楼道杂物")
    status = y.status
    y.status = Status.ASSIGNED
    x.merge_into(y, SUPERVISOR, NOW, "同一问题")
    y.status = status
    return y, x


def test_merged_citizen_visit_is_logged_on_both_without_moving_either() -> None:
    y, x = merged_pair()
    visit = y.record_citizen_visit(
        x,
        SUPERVISOR,
        NOW,
        reached=True,
        solved=True,
        satisfaction=Satisfaction.BASIC,
        note="李女士基本满意，电话13900001111",
    )
    assert visit.citizen_case_id == x.id and visit in y.visits
    assert y.status == Status.REPLIED and x.status == Status.MERGED
    assert y.latest_visit is None and y.own_visits == [] and y.visits_of(x) == [visit]
    assert y.events[-1].action == "citizen_visited" and not y.events[-1].public
    assert y.events[-1].detail["citizen_case"] == x.tracking_number
    seen_by_x = x.events[-1]
    assert (seen_by_x.action, seen_by_x.public, seen_by_x.reason) == ("visited", True, "")
    assert "13900001111" not in str(seen_by_x.detail)


def test_merged_citizen_visit_allowed_when_replied_or_visited_only() -> None:
    for status in (Status.REPLIED, Status.VISITED):
        y, x = merged_pair(status)
        y.record_citizen_visit(x, SUPERVISOR, NOW, reached=False, solved=None, satisfaction=None)
        assert y.status == status
    for status in (Status.ASSIGNED, Status.IN_PROGRESS, Status.CLOSED):
        y, x = merged_pair(status)
        with pytest.raises(IllegalTransition, match="cannot be"):
            y.record_citizen_visit(
                x, SUPERVISOR, NOW, reached=False, solved=None, satisfaction=None
            )


def test_only_a_case_merged_here_gets_its_citizen_visited() -> None:
    y, _ = merged_pair()
    other = Case(id=12, tracking_number="MS-2026-000012", status=Status.TRIAGE, body="路灯")
    with pytest.raises(IllegalTransition, match="not merged into"):
        y.record_citizen_visit(
            other, SUPERVISOR, NOW, reached=False, solved=None, satisfaction=None
        )
    assert y.visits == []


def test_closing_needs_the_own_complainants_visit() -> None:
    y, x = merged_pair()
    y.record_citizen_visit(
        x, SUPERVISOR, NOW, reached=True, solved=True, satisfaction=Satisfaction.SATISFIED
    )
    y.status = Status.VISITED  # as if forced: the merged citizen's visit is not Y's own
    with pytest.raises(IllegalTransition, match="return visit"):
        y.close(SUPERVISOR, NOW)


def test_merge_target_follows_the_chain() -> None:
    y, x = merged_pair(Status.ASSIGNED)
    z = Case(id=13, tracking_number="MS-2026-000013", status=Status.ASSIGNED, body="同一问题")
    y.merge_into(z, SUPERVISOR, NOW)
    assert x.merge_target is z and y.merge_target is z and z.merge_target is None


# -- re-dispatch after a send-back -------------------------------------------------------


def test_redispatch_to_the_returning_department_needs_a_reason() -> None:
    deadlines = Deadlines(WorkCalendar.build("Asia/Shanghai"), TimeLimits())
    URBAN.active = TRANSPORT.active = True
    case = make_case(Status.TRIAGE)
    assign_case(case, URBAN, SUPERVISOR, deadlines, NOW)
    case.send_back(HANDLER, NOW, "应由交通局处理", NOW + timedelta(days=2))
    assert case.returned_by == {"urban"}
    with pytest.raises(IllegalTransition, match="sent this case back"):
        assign_case(case, URBAN, SUPERVISOR, deadlines, NOW, "  ")
    assert case.status == Status.TRIAGE
    assign_case(case, URBAN, SUPERVISOR, deadlines, NOW, "经核实仍属住建")
    assert case.department is URBAN and case.events[-1].reason == "经核实仍属住建"
    case.send_back(HANDLER, NOW, "确实不归我们", NOW + timedelta(days=2))
    assign_case(case, TRANSPORT, SUPERVISOR, deadlines, NOW)  # elsewhere: no reason needed
    assert case.department is TRANSPORT


def test_a_case_others_were_merged_into_cannot_be_rejected() -> None:
    target = make_case(Status.TRIAGE)
    source = Case(id=11, tracking_number="MS-2026-000011", status=Status.TRIAGE, body="同一问题")
    source.merge_into(target, SUPERVISOR, NOW)
    with pytest.raises(IllegalTransition, match="merged into"):
        target.reject(SUPERVISOR, NOW, "广告", outcome=SPAM)
    assert target.status == Status.TRIAGE and not target.rejection_code
