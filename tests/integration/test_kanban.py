"""The kanban on the real database (SQLite and PostgreSQL): cards move only through the legal
transitions, through the case's own changes (audit events); moves that need input go to the
case page's form; columns are bounded; each role sees what it may."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select

from tests.conftest import csrf_from
from tests.integration.helpers import flashes, post_form, submit_complaint
from triage.models import Case, Department, Status

JSON = {"Accept": "application/json"}


def _case(runtime: Any, number: str) -> Case:
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        _ = case.department, case.events
        return case


def _dispatch(login_as: Any, runtime: Any, number: str, department: str = "urban") -> None:
    supervisor = login_as("supervisor")
    r = post_form(
        supervisor,
        "/board/queue",
        f"/board/cases/{number}/assign",
        {f"c{_case(runtime, number).id}-department": department, "back": "queue"},
    )
    assert r.status_code == 302
    assert _case(runtime, number).status == Status.ASSIGNED


def _move(client: Any, number: str, to: str, as_json: bool = True, **extra: str) -> Any:
    page = client.get("/board/kanban").get_data(as_text=True)
    return client.post(
        "/board/kanban/move",
        data={"csrf_token": csrf_from(page), "number": number, "to": to, **extra},
        headers=JSON if as_json else {},
    )


def _cards(html: str, column: str) -> list[str]:
    section = re.search(
        rf'<section class="kanban-column" data-status="{column}".*?</section>', html, re.S
    )
    return re.findall(r'data-number="([^"]+)"', section.group(0)) if section else []


def test_a_legal_move_is_made_and_logged(client: Any, login_as: Any, runtime: Any) -> None:
    number, _code = submit_complaint(client, "明德路路灯不亮已经一周，晚上走路很危险。", "路灯不亮")
    supervisor = login_as("supervisor")
    assert number in _cards(supervisor.get("/board/kanban").get_data(as_text=True), "triage")
    _dispatch(login_as, runtime, number)
    handler = login_as("urban")
    board = handler.get("/board/kanban").get_data(as_text=True)
    assert number in _cards(board, "assigned")
    assert 'data-status="triage"' not in board  # queued cases belong to no department
    before = len(_case(runtime, number).events)
    r = _move(handler, number, "in_progress")
    assert r.status_code == 200
    answer = r.get_json()
    assert answer["ok"] and answer["status"] == "in_progress"
    assert f'data-number="{number}" data-status="in_progress"' in answer["card"]
    case = _case(runtime, number)
    assert case.status == Status.IN_PROGRESS
    assert [e.action for e in case.events[before:]] == ["started"]
    assert case.events[-1].actor_name == "住建局 王经办"
    assert number in _cards(handler.get("/board/kanban").get_data(as_text=True), "in_progress")


def test_without_script_the_buttons_post_the_same_move(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _code = submit_complaint(client, "人民路井盖缺失，夜间极易有人掉落。", "井盖缺失")
    _dispatch(login_as, runtime, number)
    handler = login_as("urban")
    board = handler.get("/board/kanban").get_data(as_text=True)
    card = re.search(
        rf'<li class="kanban-card[^"]*"[^>]*data-number="{number}".*?</li>', board, re.S
    )
    assert 'data-move="start"' in card.group(0)
    assert f'href="/board/cases/{number}#reply-form"' in card.group(0)
    assert f'href="/board/cases/{number}#send-back-form"' in card.group(0)
    r = _move(handler, number, "in_progress", as_json=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/board/kanban")
    assert _case(runtime, number).status == Status.IN_PROGRESS
    assert any(
        "您已开始办理" in f for f in flashes(handler.get("/board/kanban").get_data(as_text=True))
    )


def test_an_illegal_move_is_refused_and_the_case_stays(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _code = submit_complaint(client, "幸福小区垃圾三天没人清运，气味很大。", "垃圾无人清运")
    _dispatch(login_as, runtime, number)
    handler = login_as("urban")
    before = len(_case(runtime, number).events)
    r = _move(handler, number, "closed")
    assert r.status_code == 409
    assert r.get_json()["message"] == (
        f"{number} 不能从“已分派”移到“办结”：工单流程不允许这样流转。"
    )
    r = _move(handler, number, "triage", as_json=False)  # a send-back needs its reason first
    assert r.status_code == 302 and r.headers["Location"].endswith(
        f"/board/cases/{number}#send-back-form"
    )
    r = _move(handler, number, "nonsense", as_json=False)
    assert r.status_code == 302
    assert "工单流程不允许" in flashes(handler.get("/board/kanban").get_data(as_text=True))[0]
    case = _case(runtime, number)
    assert case.status == Status.ASSIGNED and len(case.events) == before
    # A handler may not do the supervisors' moves, even legal ones.
    supervisor = login_as("supervisor")
    assert _move(supervisor, number, "in_progress").status_code == 403
    assert _case(runtime, number).status == Status.ASSIGNED


def test_moves_that_need_input_open_the_case_form(client: Any, login_as: Any, runtime: Any) -> None:
    number, _code = submit_complaint(client, "和平路施工噪音扰民，深夜还在打桩。", "施工噪音")
    supervisor = login_as("supervisor")
    r = _move(supervisor, number, "assigned")
    assert r.get_json() == {"ok": True, "redirect": f"/board/cases/{number}#assign-form"}
    assert _case(runtime, number).status == Status.TRIAGE
    _dispatch(login_as, runtime, number)
    handler = login_as("urban")
    r = _move(handler, number, "replied")
    assert r.get_json()["redirect"] == f"/board/cases/{number}#reply-form"
    post_form(
        handler,
        f"/board/cases/{number}",
        f"/board/cases/{number}/reply",
        {"reply-text": "已责令施工单位夜间停工。"},
    )
    assert _move(handler, number, "visited").status_code == 403  # the office calls back
    r = _move(supervisor, number, "visited")
    assert r.get_json()["redirect"] == f"/board/cases/{number}#visit-form"
    post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/visit",
        {"visit-reached": "yes", "visit-solved": "yes", "visit-satisfaction": "satisfied"},
    )
    # Satisfied and solved: closing needs nothing more, but cannot be undone: the drop asks
    # first, on the board's confirmation page, and only its button closes.
    r = _move(supervisor, number, "closed")
    assert r.get_json() == {
        "ok": True,
        "redirect": f"/board/kanban/confirm?number={number}&to=closed",
    }
    assert _case(runtime, number).status == Status.VISITED
    r = _move(supervisor, number, "closed", confirmed="yes")
    assert r.get_json()["ok"]
    case = _case(runtime, number)
    assert case.status == Status.CLOSED and case.events[-1].action == "closed"


def _many(runtime: Any, n: int, start: int = 0, department: str = "urban") -> None:
    """Cases n° `start` to `start + n - 1`, assigned to `department`; n° 54 is urgent."""
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        dept = s.scalar(select(Department).where(Department.code == department))
        for i in range(start, start + n):
            s.add(
                Case(
                    tracking_number=f"MS-2026-9{i:05d}",
                    query_code_hash="x",
                    channel="web",
                    external_id=f"bulk-{department}-{i}",
                    subject=f"批量工单{i}",
                    body="测试看板的列上限",
                    received_at=now - timedelta(hours=i),
                    status=Status.ASSIGNED,
                    department_id=dept.id,
                    assigned_at=now,
                    due_at=now + timedelta(days=1, hours=i),
                    urgent=i == 54,
                )
            )


def _queries(app: Any, client: Any, url: str) -> int:
    engine = app.extensions["minsheng"].engine
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_columns_are_bounded_and_the_page_costs_the_same(
    app: Any, login_as: Any, runtime: Any
) -> None:
    supervisor = login_as("supervisor")
    _many(runtime, 3)
    few = _queries(app, supervisor, "/board/kanban?department=urban")
    _many(runtime, 52, start=3)
    many = _queries(app, supervisor, "/board/kanban?department=urban")
    assert many <= few + 1  # the "N more" count of the full column
    html = supervisor.get("/board/kanban?department=urban").get_data(as_text=True)
    cards = _cards(html, "assigned")
    assert len(cards) == 50
    assert cards[0] == "MS-2026-900054"  # urgent first, then by deadline
    assert cards[1] == "MS-2026-900000"
    assert 'href="/board/cases?status=assigned&amp;department=urban">还有 5 件</a>' in html
    english = supervisor.get("/board/kanban?department=urban&lang=en").get_data(as_text=True)
    assert ">5 more</a>" in english and "<h1>Kanban" in english


def test_role_scoping_and_masking(client: Any, login_as: Any, runtime: Any) -> None:
    mine, _c = submit_complaint(
        client,
        "王小明反映：13812345678 这个号码的邻居夜里装修。",
        "王小明 13812345678 反映装修扰民",
    )
    other, _c = submit_complaint(client, "河道里漂着死鱼，水发臭。", "河道污染")
    _dispatch(login_as, runtime, mine, "urban")
    _dispatch(login_as, runtime, other, "environment")
    handler = login_as("urban")
    html = handler.get("/board/kanban?department=environment").get_data(as_text=True)
    assert mine in html and other not in html  # a handler sees their own department only
    assert handler.get("/board/kanban").status_code == 200
    assert _move(handler, other, "in_progress").status_code == 404

    supervisor = login_as("supervisor")
    office = supervisor.get("/board/kanban").get_data(as_text=True)
    assert mine in office and other in office
    environment = supervisor.get("/board/kanban?department=environment").get_data(as_text=True)
    assert other in environment and mine not in environment
    assert supervisor.get("/board/kanban?department=nope").status_code == 404

    observer = login_as("observer")
    seen = observer.get("/board/kanban").get_data(as_text=True)
    assert mine in seen
    assert "13812345678" not in seen and "王小明" not in seen
    assert "data-move=" not in seen  # observers move nothing
    assert 'draggable="true"' not in seen  # nor may they pick a card up
    assert f'draggable="true" data-number="{mine}"' in html  # the handler may start it
    assert _move(observer, mine, "in_progress").status_code == 403
    assert json.loads(_move(observer, mine, "in_progress").get_data(as_text=True))["ok"] is False
    assert _case(runtime, mine).status == Status.ASSIGNED


def test_a_move_without_csrf_is_refused(client: Any, login_as: Any, runtime: Any) -> None:
    number, _code = submit_complaint(client, "公交站台顶棚破损漏雨。", "站台漏雨")
    _dispatch(login_as, runtime, number)
    handler = login_as("urban")
    r = handler.post("/board/kanban/move", data={"number": number, "to": "in_progress"})
    assert r.status_code == 400
    assert _case(runtime, number).status == Status.ASSIGNED


def test_odd_input_to_a_move_gets_a_clear_refusal(client: Any, login_as: Any, runtime: Any) -> None:
    """A forged or broken drop (a NUL, an unknown or another department's case, a huge or
    empty number) is answered in JSON with a message the board shows: never a 500, never
    an HTML page the script cannot read, and no case changes."""
    number, _code = submit_complaint(client, "小区门口井盖缺失，很危险。", "井盖缺失")
    _dispatch(login_as, runtime, number, "environment")
    handler = login_as("urban")
    before = len(_case(runtime, number).events)
    for odd in (number, "MS-2026-\x00001", "", "MS-" + "9" * 5000, "<b>x</b>"):
        r = _move(handler, odd, "in_progress")
        assert r.status_code == 404, odd
        answer = r.get_json()
        assert answer["ok"] is False
        assert "看板上没有这件工单" in answer["message"]
    r = _move(handler, number, "in_progress\x00")
    assert r.status_code in (404, 409) and r.get_json()["ok"] is False
    r = _move(handler, "MS-2026-\x00001", "in_progress", as_json=False)
    assert r.status_code == 302
    assert "看板上没有这件工单" in flashes(handler.get("/board/kanban").get_data(as_text=True))[0]
    assert len(_case(runtime, number).events) == before
    assert _case(runtime, number).status == Status.ASSIGNED


def _replied_and_visited(
    client: Any, login_as: Any, runtime: Any, satisfaction: str, solved: str
) -> str:
    number, _code = submit_complaint(client, "和平路施工噪音扰民，深夜还在打桩。", "施工噪音")
    _dispatch(login_as, runtime, number)
    handler = login_as("urban")
    post_form(
        handler,
        f"/board/cases/{number}",
        f"/board/cases/{number}/reply",
        {"reply-text": "已责令施工单位夜间停工。"},
    )
    supervisor = login_as("supervisor")
    post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/visit",
        {"visit-reached": "yes", "visit-solved": solved, "visit-satisfaction": satisfaction},
    )
    assert _case(runtime, number).status == Status.VISITED
    return number


def test_closing_from_the_board_asks_first(client: Any, login_as: Any, runtime: Any) -> None:
    number = _replied_and_visited(client, login_as, runtime, "satisfied", "yes")
    supervisor = login_as("supervisor")
    # The card's button is a link to the question, not a form that closes.
    board = supervisor.get("/board/kanban").get_data(as_text=True)
    card = re.search(rf'<li [^>]*id="card-{number}".*?</li>', board, re.S).group(0)
    assert "/board/kanban/confirm?number=" in card and 'name="to" value="closed"' not in card
    # Without script: the plain post goes to the question too; nothing changes.
    r = _move(supervisor, number, "closed", as_json=False)
    assert r.status_code == 302 and "/board/kanban/confirm" in r.headers["Location"]
    assert _case(runtime, number).status == Status.VISITED
    page = supervisor.get(f"/board/kanban/confirm?number={number}&to=closed")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "已责令施工单位夜间停工" in html and "满意" in html  # what the close rests on
    assert 'name="confirmed" value="yes"' in html and "required" not in html
    r = supervisor.post(
        "/board/kanban/move",
        data={"csrf_token": csrf_from(html), "number": number, "to": "closed", "confirmed": "yes"},
    )
    assert r.status_code == 302
    assert _case(runtime, number).status == Status.CLOSED
    # A move that needs no confirmation is no question; a case one may not see is a 404.
    assert supervisor.get(f"/board/kanban/confirm?number={number}&to=closed").status_code == 409
    assert (
        login_as("transport").get(f"/board/kanban/confirm?number={number}&to=closed").status_code
        == 404
    )


def test_closing_after_an_unsatisfied_visit_needs_the_reason_on_the_question(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number = _replied_and_visited(client, login_as, runtime, "unsatisfied", "no")
    supervisor = login_as("supervisor")
    r = _move(supervisor, number, "closed")
    assert r.get_json()["redirect"] == f"/board/kanban/confirm?number={number}&to=closed"
    html = supervisor.get(r.get_json()["redirect"]).get_data(as_text=True)
    assert "required" in html and "不满意" in html
    data = {"csrf_token": csrf_from(html), "number": number, "to": "closed", "confirmed": "yes"}
    r = supervisor.post("/board/kanban/move", data=data)
    assert r.status_code == 302 and "/board/kanban/confirm" in r.headers["Location"]
    assert "请填写理由。" in flashes(supervisor.get(r.headers["Location"]).get_data(as_text=True))
    assert _case(runtime, number).status == Status.VISITED
    r = supervisor.post(
        "/board/kanban/move", data={**data, "reason": "市民诉求超出政策范围，已解释。"}
    )
    case = _case(runtime, number)
    assert case.status == Status.CLOSED
    assert case.events[-1].reason == "市民诉求超出政策范围，已解释。"


def test_a_refused_close_asked_as_json_gets_json_with_the_reason(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The script (fetch, Accept: application/json) posting a close the case refuses (no
    reason after an unsatisfied visit) gets a JSON refusal it can show, not the HTML page
    the redirect to the question leads to."""
    number = _replied_and_visited(client, login_as, runtime, "unsatisfied", "no")
    supervisor = login_as("supervisor")
    r = _move(supervisor, number, "closed", confirmed="yes")
    assert r.status_code == 409
    answer = r.get_json()
    assert answer is not None and answer["ok"] is False
    assert answer["message"] == "请填写理由。"
    assert _case(runtime, number).status == Status.VISITED
    # In English, the same reason in English.
    supervisor.get("/lang/en")
    r = _move(supervisor, number, "closed", confirmed="yes")
    assert r.status_code == 409 and r.get_json()["message"] == "Please give a reason."


def test_the_questions_cancel_link_never_leads_to_a_404(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """A department code in the address that is no department (a stale bookmark, a typo):
    the question's Cancel goes back to the whole board, which exists."""
    number = _replied_and_visited(client, login_as, runtime, "satisfied", "yes")
    supervisor = login_as("supervisor")
    page = supervisor.get(f"/board/kanban/confirm?number={number}&to=closed&department=nosuch")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    cancel = re.search(r'id="confirm-cancel" href="([^"]+)"', html).group(1)
    assert supervisor.get(cancel.replace("&amp;", "&")).status_code == 200
    assert 'name="department" value="nosuch"' not in html
    # A real department is kept on the way back.
    html = supervisor.get(
        f"/board/kanban/confirm?number={number}&to=closed&department=urban"
    ).get_data(as_text=True)
    cancel = re.search(r'id="confirm-cancel" href="([^"]+)"', html).group(1)
    assert "department=urban" in cancel
