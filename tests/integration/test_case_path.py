"""The whole path of a case through the web app, as each role sees it.

No model is deployed in these tests, so the keyword rules suggest and every case waits in
the triage queue.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.integration.helpers import flashes, post_form, submit_complaint
from triage.models import Case, Status


def _case(runtime: Any, number: str) -> Case:
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        _ = case.department, case.events, case.replies, case.visits
        return case


def test_complaint_from_form_to_close(client: Any, login_as: Any, runtime: Any) -> None:
    number, code = submit_complaint(client, "明德路12号楼道里堆满杂物，堵住了消防通道，物业不管。")
    assert _case(runtime, number).status == Status.TRIAGE

    supervisor = login_as("supervisor")
    queue = supervisor.get("/board/queue").get_data(as_text=True)
    assert number in queue
    r = post_form(
        supervisor,
        "/board/queue",
        f"/board/cases/{number}/assign",
        {f"c{_case(runtime, number).id}-department": "urban", "back": "queue"},
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/board/queue")
    case = _case(runtime, number)
    assert case.status == Status.ASSIGNED and case.department.code == "urban"
    assert case.due_at is not None

    handler = login_as("urban")
    page = handler.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "明德路12号" in page
    r = post_form(
        handler,
        f"/board/cases/{number}",
        f"/board/cases/{number}/reply",
        {"reply-text": "已联系物业于当日清理完毕，消防通道已恢复畅通。"},
    )
    assert r.status_code == 302
    assert _case(runtime, number).status == Status.REPLIED

    r = post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/visit",
        {
            "visit-reached": "yes",
            "visit-solved": "yes",
            "visit-satisfaction": "satisfied",
            "visit-note": "群众表示满意",
        },
    )
    assert r.status_code == 302
    r = post_form(supervisor, f"/board/cases/{number}", f"/board/cases/{number}/close", {})
    case = _case(runtime, number)
    assert case.status == Status.CLOSED and case.closed_at is not None
    actions = [e.action for e in case.events]
    assert actions[-3:] == ["replied", "visited", "closed"]
    timeline = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "群众表示满意" in timeline

    page = client.get("/track")
    from tests.conftest import csrf_from

    r = client.post(
        "/track",
        data={
            "csrf_token": csrf_from(page.get_data(as_text=True)),
            "tracking_number": number,
            "query_code": code,
        },
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "status-closed" in html
    assert "已联系物业于当日清理完毕" in html
    assert "王小明" not in html and "13812345678" not in html


def test_supervisor_rejects_only_with_a_reason(client: Any, login_as: Any, runtime: Any) -> None:
    number, _ = submit_complaint(client, "这是一条测试广告，加微信领取优惠券。", subject="广告")
    supervisor = login_as("supervisor")
    assert _case(runtime, number).status == Status.TRIAGE
    r = post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/reject",
        {"reject-reason": "", "reject-outcome": ""},
    )
    html = supervisor.get(r.headers["Location"]).get_data(as_text=True)
    assert any("理由" in f for f in flashes(html))
    assert _case(runtime, number).status == Status.TRIAGE
    post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/reject",
        {"reject-reason": "广告信息", "reject-outcome": "spam"},
    )
    case = _case(runtime, number)
    assert case.status == Status.REJECTED and case.rejection_reason == "广告信息"
    assert case.rejection_code == "spam"
    assert case.events[-1].actor_name == "效能办 李督查"


def test_handler_sends_a_misrouted_case_back(client: Any, login_as: Any, runtime: Any) -> None:
    number, _ = submit_complaint(client, "公交站台的顶棚破了，下雨没法等车。", subject="站台破损")
    supervisor = login_as("supervisor")
    case = _case(runtime, number)
    post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/assign",
        {f"c{case.id}-department": "urban"},
    )
    assert _case(runtime, number).department.code == "urban"
    handler = login_as("urban")
    r = post_form(
        handler,
        f"/board/cases/{number}",
        f"/board/cases/{number}/send-back",
        {"sendback-reason": "公交站台归交通局管理"},
    )
    assert r.status_code == 302
    case = _case(runtime, number)
    assert case.status == Status.TRIAGE and case.department is None
    assert case.events[-1].reason == "公交站台归交通局管理"
    # It is no longer theirs to see.
    assert handler.get(f"/board/cases/{number}").status_code == 404
    assert number in supervisor.get("/board/queue").get_data(as_text=True)
