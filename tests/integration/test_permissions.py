"""Each role sees and does only what it may: a department only its own cases, by link or URL;
an external supervisor sees masked data and can act on nothing; CSRF guards every form."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import csrf_from
from tests.integration.helpers import post_form, submit_complaint
from triage.models import Case, Status


@pytest.fixture
def assigned_case(client: Any, login_as: Any, runtime: Any) -> str:
    """A case assigned to the urban department, with the citizen's contact data."""
    number, _ = submit_complaint(client, "翠湖小区3栋电梯坏了一个月，物业不修，联系我13812345678。")
    with runtime.sessions() as s:
        case_id = s.scalar(select(Case.id).where(Case.tracking_number == number))
    supervisor = login_as("supervisor")
    r = post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/assign",
        {f"c{case_id}-department": "urban"},
    )
    assert r.status_code == 302
    return number


def test_handler_of_another_department_gets_404(assigned_case: str, login_as: Any) -> None:
    other = login_as("transport")
    assert other.get(f"/board/cases/{assigned_case}").status_code == 404
    assert assigned_case not in other.get("/board/cases").get_data(as_text=True)
    own = login_as("urban")
    assert own.get(f"/board/cases/{assigned_case}").status_code == 200
    assert assigned_case in own.get("/board/cases").get_data(as_text=True)


def test_handler_of_another_department_cannot_act(
    assigned_case: str, login_as: Any, runtime: Any
) -> None:
    other = login_as("transport")
    token = csrf_from(other.get("/board/cases").get_data(as_text=True))
    for action, data in [
        ("reply", {"reply-text": "不是我们的"}),
        ("send-back", {"sendback-reason": "x"}),
        ("start", {}),
    ]:
        r = other.post(f"/board/cases/{assigned_case}/{action}", data={"csrf_token": token, **data})
        assert r.status_code == 404, action
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == assigned_case))
        assert case.status == Status.ASSIGNED and not case.replies


def test_handler_cannot_dispatch_or_close(assigned_case: str, login_as: Any) -> None:
    handler = login_as("urban")
    token = csrf_from(handler.get(f"/board/cases/{assigned_case}").get_data(as_text=True))
    assert handler.get("/board/queue").status_code == 403
    for action in ("assign", "reject", "merge", "visit", "close", "rework"):
        r = handler.post(f"/board/cases/{assigned_case}/{action}", data={"csrf_token": token})
        assert r.status_code == 403, action


def test_observer_sees_masked_data_and_cannot_act(
    assigned_case: str, login_as: Any, runtime: Any
) -> None:
    handler = login_as("urban")
    post_form(
        handler,
        f"/board/cases/{assigned_case}",
        f"/board/cases/{assigned_case}/reply",
        {"reply-text": "已电话联系王小明（13812345678），电梯已修复。"},
    )
    observer = login_as("observer")
    page = observer.get(f"/board/cases/{assigned_case}").get_data(as_text=True)
    assert "翠湖小区3栋电梯" in page
    assert "13812345678" not in page and "138****5678" in page
    assert "王小明" not in page and "王*" in page
    assert 'id="reply-form"' not in page and 'id="assign-form"' not in page
    token = csrf_from(page)
    for action in ("assign", "reply", "reject", "visit", "close", "start"):
        r = observer.post(f"/board/cases/{assigned_case}/{action}", data={"csrf_token": token})
        assert r.status_code == 403, action
    with runtime.sessions() as s:
        assert s.scalar(select(Case.status).where(Case.tracking_number == assigned_case)) == (
            Status.REPLIED
        )


def test_board_needs_sign_in(client: Any, assigned_case: str) -> None:
    for url in ("/board/queue", "/board/cases", f"/board/cases/{assigned_case}"):
        r = client.get(url)
        assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_post_without_csrf_token_is_refused(
    assigned_case: str, login_as: Any, runtime: Any, client: Any
) -> None:
    handler = login_as("urban")
    r = handler.post(f"/board/cases/{assigned_case}/reply", data={"reply-text": "伪造的答复"})
    assert r.status_code == 400
    r = client.post(
        "/complain", data={"subject": "x", "body": "没有令牌的投诉内容", "kind": "complaint"}
    )
    assert r.status_code == 400
    r = client.post("/login", data={"username": "admin", "password": "pw-admin-secret"})
    assert r.status_code == 400
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == assigned_case))
        assert not case.replies
        assert s.scalar(select(Case).where(Case.body == "没有令牌的投诉内容")) is None


def test_wrong_password_is_refused_and_repeated_failures_slow_down(app: Any) -> None:
    c = app.test_client()
    for _ in range(10):
        token = csrf_from(c.get("/login").get_data(as_text=True))
        r = c.post("/login", data={"csrf_token": token, "username": "admin", "password": "nope"})
        assert r.status_code == 401
    token = csrf_from(c.get("/login").get_data(as_text=True))
    r = c.post(
        "/login", data={"csrf_token": token, "username": "admin", "password": "pw-admin-secret"}
    )
    assert r.status_code == 429


def test_security_headers_and_cookie_flags(client: Any) -> None:
    r = client.get("/complain")
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    session_cookie = next(c for c in r.headers.getlist("Set-Cookie") if "minsheng_session=" in c)
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie


def test_operator_logs_a_phone_call_once(login_as: Any, runtime: Any) -> None:
    operator = login_as("operator")
    data = {
        "call_id": "CALL-20261126-0042",
        "kind": "inquiry",
        "subject": "社保转移",
        "body": "来电人询问外地社保如何转入本区",
        "name": "赵先生",
        "phone": "13700001234",
    }
    first = post_form(operator, "/board/calls/new", "/board/calls/new", data)
    again = post_form(operator, "/board/calls/new", "/board/calls/new", data)
    assert first.status_code == again.status_code == 302
    assert first.headers["Location"] == again.headers["Location"]
    with runtime.sessions() as s:
        cases = s.scalars(select(Case).where(Case.channel == "phone")).all()
        assert len(cases) == 1 and cases[0].kind == "inquiry"
        assert cases[0].external_id == "CALL-20261126-0042"
    handler = login_as("urban")
    assert handler.get("/board/calls/new").status_code == 403


def test_behind_a_proxy_one_guesser_does_not_lock_out_others(tmp_path: Any, db_url: str) -> None:
    from tests.conftest import make_settings, password_of
    from web import create_app

    app = create_app(make_settings(tmp_path, db_url, app={"trusted_proxies": 1}), TESTING=True)

    def attempt(client: Any, ip: str, password: str) -> int:
        token = csrf_from(client.get("/login").get_data(as_text=True))
        return client.post(
            "/login",
            data={"csrf_token": token, "username": "admin", "password": password},
            headers={"X-Forwarded-For": ip},
        ).status_code

    guesser = app.test_client()
    assert [attempt(guesser, "203.0.113.9", "guess") for _ in range(11)][-1] == 429
    assert attempt(app.test_client(), "198.51.100.7", password_of("admin")) == 302
    app.extensions["minsheng"].engine.dispose()


def test_possible_duplicates_only_those_the_handler_may_open(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The case page's possible duplicates list tracking numbers; a handler sees only those of
    cases their department holds, a supervisor all of them."""
    text = "翠湖小区3栋电梯坏了一个月，物业一直不修，老人上下楼非常困难，请尽快处理。"
    first, _ = submit_complaint(client, text)
    second, _ = submit_complaint(client, text)
    supervisor = login_as("supervisor")
    with runtime.sessions() as s:
        ids = dict(
            s.execute(
                select(Case.tracking_number, Case.id).where(
                    Case.tracking_number.in_([first, second])
                )
            ).all()
        )
        similar = s.scalar(select(Case.similar).where(Case.tracking_number == second))
    assert similar and str(similar[0][0]) == first, "the second case should list the first"
    for number, department in ((first, "transport"), (second, "urban")):
        r = post_form(
            supervisor,
            f"/board/cases/{number}",
            f"/board/cases/{number}/assign",
            {f"c{ids[number]}-department": department},
        )
        assert r.status_code == 302
    assert first in supervisor.get(f"/board/cases/{second}").get_data(as_text=True)
    page = login_as("urban").get(f"/board/cases/{second}").get_data(as_text=True)
    assert second in page
    assert first not in page
