"""The head's sign-off (自律) and the department's delay reports, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.models import (
    Case,
    Department,
    IllegalTransition,
    ReplyState,
    Status,
    User,
)

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
URBAN = Department(id=1, code="urban", name="住建局")
HANDLER = User(id=5, username="urban", role="handler", department_id=1, head=False)
HEAD = User(id=6, username="urban-head", role="handler", department_id=1, head=True)
OTHER_HEAD = User(id=7, username="transport-head", role="handler", department_id=2, head=True)
SUPERVISOR = User(id=2, username="supervisor", role="supervisor", head=False)


def handled_case(status: Status = Status.IN_PROGRESS) -> Case:
    return Case(
        id=10,
        tracking_number="MS-2026-000010",
        status=status,
        body="路灯不亮",
        department=URBAN,
        department_id=1,
        due_at=NOW + timedelta(days=5),
    )


def test_without_sign_off_a_reply_goes_out_as_before() -> None:
    case = handled_case()
    reply = case.reply(HANDLER, NOW, "已修复")
    assert (case.status, reply.state, case.latest_reply) == (Status.REPLIED, "sent", reply)
    assert case.events[-1].action == "replied"


def test_a_handlers_reply_is_a_draft_the_citizen_does_not_see() -> None:
    case = handled_case(Status.ASSIGNED)
    draft = case.reply(HANDLER, NOW, "已修复", sign_off=True)
    assert draft.state == ReplyState.PENDING_SIGN_OFF
    assert case.status == Status.IN_PROGRESS and case.replied_at is None
    assert case.latest_reply is None and case.pending_draft is draft
    assert (case.events[-1].action, case.events[-1].public) == ("reply_drafted", False)
    with pytest.raises(IllegalTransition, match="already waits"):
        case.reply(HANDLER, NOW, "再写一次", sign_off=True)


def test_the_head_signs_it_off_and_it_goes_out_then() -> None:
    case = handled_case()
    draft = case.reply(HANDLER, NOW, "已修复", sign_off=True)
    later = NOW + timedelta(hours=3)
    case.sign_off_reply(HEAD, later, draft)
    assert (draft.state, draft.signed_off_by_id, draft.signed_off_at) == ("sent", 6, later)
    assert (case.status, case.replied_at, case.latest_reply) == (Status.REPLIED, later, draft)
    assert (case.events[-1].action, case.events[-1].public) == ("reply_signed_off", True)


@pytest.mark.parametrize("who", [HANDLER, OTHER_HEAD, SUPERVISOR])
def test_nobody_but_the_departments_head_signs(who: User) -> None:
    case = handled_case()
    draft = case.reply(HANDLER, NOW, "已修复", sign_off=True)
    with pytest.raises(IllegalTransition, match="head"):
        case.sign_off_reply(who, NOW, draft)
    with pytest.raises(IllegalTransition, match="head"):
        case.return_reply(who, NOW, draft, "请补充")
    assert draft.state == ReplyState.PENDING_SIGN_OFF and case.status == Status.IN_PROGRESS


def test_returned_with_a_note_and_written_again() -> None:
    case = handled_case()
    draft = case.reply(HANDLER, NOW, "已修复", sign_off=True)
    with pytest.raises(IllegalTransition, match="reason"):
        case.return_reply(HEAD, NOW, draft, " ")
    case.return_reply(HEAD, NOW, draft, "请写明修复日期")
    assert (draft.state, draft.sign_off_note) == (ReplyState.RETURNED, "请写明修复日期")
    assert case.events[-1].action == "reply_returned" and case.events[-1].reason
    assert case.pending_draft is None and case.returned_drafts == [draft]
    again = case.reply(HANDLER, NOW, "已于11月25日修复", sign_off=True)
    assert case.pending_draft is again
    with pytest.raises(IllegalTransition):
        case.sign_off_reply(HEAD, NOW, draft)  # the returned one cannot go out any more


def test_the_heads_own_reply_goes_out_at_once_signed_by_the_head() -> None:
    case = handled_case()
    reply = case.reply(HEAD, NOW, "已修复", sign_off=True)
    assert (reply.state, reply.signed_off_by_id, case.status) == ("sent", 6, Status.REPLIED)
    assert case.events[-1].action == "replied"


def test_another_departments_head_only_drafts() -> None:
    case = handled_case()
    assert case.reply(OTHER_HEAD, NOW, "已修复", sign_off=True).state == "pending_sign_off"


def test_a_delay_is_reported_only_when_overdue_and_with_a_reason() -> None:
    case = handled_case()
    with pytest.raises(IllegalTransition, match="not overdue"):
        case.report_delay(HANDLER, NOW, "材料未到")
    late = NOW + timedelta(days=6)
    with pytest.raises(IllegalTransition, match="reason"):
        case.report_delay(HANDLER, late, "")
    event = case.report_delay(HANDLER, late, "供电公司未到场，已约12月3日")
    assert (event.action, event.reason, event.public) == (
        "delay_reported",
        "供电公司未到场，已约12月3日",
        False,
    )
    assert case.delay_reports == [event]
    replied = handled_case(Status.REPLIED)
    with pytest.raises(IllegalTransition):
        replied.report_delay(HANDLER, late, "材料未到")


def test_a_draft_left_behind_by_a_transfer_waits_for_nobody() -> None:
    case = handled_case()
    draft = case.reply(HANDLER, NOW, "已修复", sign_off=True)
    transport = Department(id=2, code="transport", name="交通局")
    case.transfer(transport, SUPERVISOR, NOW, NOW + timedelta(days=5), "属交通局管辖")
    assert case.pending_draft is None
    with pytest.raises(IllegalTransition):
        case.sign_off_reply(OTHER_HEAD, NOW, draft)
    assert case.reply(OTHER_HEAD, NOW, "交通局已处理", sign_off=True).state == "sent"
    assert case.latest_reply is not None and case.latest_reply.body == "交通局已处理"


@pytest.mark.parametrize("leave", ["transfer", "send_back"])
def test_a_case_leaving_its_department_ends_its_draft_and_its_extension_request(
    leave: str,
) -> None:
    case = handled_case()
    draft = case.reply(HANDLER, NOW, "已修复", sign_off=True)
    request = case.request_extension(
        HANDLER,
        NOW,
        "需要协调交通局",
        NOW + timedelta(days=8),
        latest_due_at=NOW + timedelta(days=20),
        allowed=1,
    )
    if leave == "transfer":
        transport = Department(id=2, code="transport", name="交通局")
        case.transfer(transport, SUPERVISOR, NOW, NOW + timedelta(days=5), "属交通局职责")
    else:
        case.sent_back_count = 0
        case.send_back(HANDLER, NOW, "不属本部门", NOW + timedelta(days=1))
    assert draft.state == ReplyState.RETURNED and draft.sign_off_note
    assert request.state == "refused" and request.decision_reason
    assert case.pending_draft is None and case.pending_extension is None
    assert [e.action for e in case.events[-3:-1]] == ["reply_returned", "extension_refused"]
    assert all(e.detail.get("withdrawn") for e in case.events[-3:-1])


def test_the_systems_withdrawal_reasons_are_shown_in_the_users_language() -> None:
    from flask import Flask
    from flask_babel import Babel, force_locale

    from web.i18n import SYSTEM_REASONS, system_reason

    app = Flask(__name__, root_path=str(__import__("pathlib").Path("web").resolve()))
    Babel(app, default_translation_directories="translations")
    with app.test_request_context(), force_locale("zh"):
        assert {system_reason(r) for r in SYSTEM_REASONS} == {
            "工单已转办。",
            "工单已答复。",
            "工单已退回。",
        }
        assert system_reason("需要协调交通局") == "需要协调交通局"
