"""The satisfaction link of a reply notice (triage/satisfaction.py, web/satisfaction.py), on
both databases: the link is taken from the mail the citizen got (queued in the outbox).

Single use (a second answer, even from another session at the same moment, is refused);
expired (a clear page with the hotline); tampered (a clear not-found page); never a 500. A
satisfied answer is a valid return visit on the web channel that the figures count; an
unsatisfied or unsolved one goes to a supervisor's review, or to rework when the config says
so.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm.exc import StaleDataError

from tests.conftest import csrf_from, make_settings
from tests.integration.helpers import post_form, submit_complaint
from triage import system_reasons
from triage.models import Case, IllegalTransition, ReturnVisit, Satisfaction, Status
from triage.outbox import OutgoingMail
from triage.satisfaction import (
    AlreadyAnswered,
    SatisfactionResponse,
    answer,
    look_up,
    make_token,
    read_token,
)

CITIZEN = "zhao.liu@example.com"
REPLY = "已安排维修班组于本周五前更换明德路路灯灯具。"
LINK = re.compile(r"http://127\.0\.0\.1:5000(/satisfaction/\S+)")


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        mail={"sender": "xiaonengban@example.gov.cn"},
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


def case_of(runtime: Any, number: str) -> Case:
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        _ = case.events, case.visits, case.replies, case.findings
        return case


def replied_case(client: Any, login_as: Any, runtime: Any) -> tuple[str, str]:
    """A web-form case with an address, dispatched and replied; (number, the link's path)."""
    number, _code = submit_complaint(client, "明德路12号路灯坏了一个月，晚上很黑。", email=CITIZEN)
    case = case_of(runtime, number)
    r = post_form(
        login_as("supervisor"),
        "/board/queue",
        f"/board/cases/{number}/assign",
        {f"c{case.id}-department": "urban"},
    )
    assert r.status_code == 302
    r = post_form(
        login_as("urban"),
        f"/board/cases/{number}",
        f"/board/cases/{number}/reply",
        {"reply-text": REPLY},
    )
    assert r.status_code == 302
    return number, link_in_mail(runtime, number)


def link_in_mail(runtime: Any, number: str) -> str:
    with runtime.sessions() as s:
        raws = [
            m.raw
            for m in s.scalars(select(OutgoingMail).order_by(OutgoingMail.id))
            if "已答复" in m.subject and number in m.subject
        ]
    mail = message_from_bytes(raws[-1], policy=policy.default)
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    found = LINK.search(text)
    assert found, text
    return found.group(1)


def answer_link(client: Any, path: str, **data: str) -> Any:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return client.post(path, data={"csrf_token": csrf_from(page.get_data(as_text=True)), **data})


def any_csrf(client: Any) -> str:
    """A CSRF token of this client's session, from a page with a form."""
    return csrf_from(client.get("/complain").get_data(as_text=True))


def visits(runtime: Any, number: str) -> list[ReturnVisit]:
    return case_of(runtime, number).visits


def test_a_satisfied_answer_is_a_valid_web_visit_and_the_link_then_says_answered(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, path = replied_case(client, login_as, runtime)
    citizen = client.application.test_client()
    page = citizen.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert number in html and REPLY in html
    assert "满意" in html and "基本满意" in html and "不满意" in html
    assert CITIZEN not in html and "13812345678" not in html and "王小明" not in html
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"

    r = citizen.post(
        path,
        data={
            "csrf_token": csrf_from(html),
            "solved": "yes",
            "satisfaction": "satisfied",
            "comment": "修得很快，谢谢！",
        },
    )
    assert r.status_code == 200 and "感谢您的评价" in r.get_data(as_text=True)
    (visit,) = visits(runtime, number)
    assert (visit.channel, visit.valid, visit.reached) == ("web", True, True)
    assert (visit.solved, visit.satisfaction) == (True, Satisfaction.SATISFIED)
    assert "修得很快" in visit.note
    case = case_of(runtime, number)
    assert case.status == Status.VISITED
    visited = [e for e in case.events if e.action == "visited"][-1]
    assert visited.actor_name == "citizen (web)" and visited.detail["channel"] == "web"
    # The month's figures count it as a valid return visit, solved and satisfied.
    from triage.report.figures import ReportPolicy, month_of, monthly_figures

    report_policy = ReportPolicy.from_settings(runtime.settings)
    with runtime.sessions() as s:
        month = month_of(datetime.now(UTC), report_policy)
        figures = monthly_figures(s, month, report_policy, with_hot_issues=False)
    assert figures["valid_visits"] == 1
    (urban,) = [d for d in figures["departments"] if d["code"] == "urban"]
    assert urban["valid_visits"] == 1
    assert figures["resolution_rate"] == figures["satisfaction_rate"] == 1.0
    # The supervisor can close it now: the web visit is the valid return visit it needs.
    r = post_form(
        login_as("supervisor"), f"/board/cases/{number}", f"/board/cases/{number}/close", {}
    )
    assert r.status_code == 302 and case_of(runtime, number).status == Status.CLOSED

    again = citizen.get(path)
    assert again.status_code == 200 and "已经评价过" in again.get_data(as_text=True)
    # A second answer from another browser changes nothing.
    other = client.application.test_client()
    r = other.post(
        path, data={"csrf_token": any_csrf(other), "solved": "no", "satisfaction": "unsatisfied"}
    )
    assert r.status_code == 200 and "已经评价过" in r.get_data(as_text=True)
    assert len(visits(runtime, number)) == 1


@pytest.mark.parametrize(("solved", "satisfaction"), [("yes", "unsatisfied"), ("no", "basic")])
def test_unsatisfied_or_unsolved_goes_to_a_supervisors_review(
    client: Any, login_as: Any, runtime: Any, solved: str, satisfaction: str
) -> None:
    number, path = replied_case(client, login_as, runtime)
    r = answer_link(
        client.application.test_client(), path, solved=solved, satisfaction=satisfaction
    )
    assert r.status_code == 200 and "重新审查" in r.get_data(as_text=True)
    case = case_of(runtime, number)
    assert case.status == Status.VISITED and case.review_pending
    review = [e for e in case.events if e.action == "review_requested"][-1]
    # A neutral code (triage/system_reasons.py), shown in the reader's language.
    assert review.reason == (
        system_reasons.WEB_VISIT_UNSATISFIED
        if solved == "yes"
        else system_reasons.WEB_VISIT_UNSOLVED
    )
    # The supervisors' findings list it now, not at the next tick.
    assert "review_pending" in [f.rule for f in case.findings]


def test_with_rework_configured_unsatisfied_goes_back_to_the_department(
    tmp_path: Path, db_url: str
) -> None:
    from tests.conftest import login
    from web import create_app

    app = create_app(
        make_settings(
            tmp_path,
            db_url,
            satisfaction={"unsatisfied": "rework"},
            classifier={"auto_route": False, "model_dir": str(tmp_path / "m")},
        ),
        TESTING=True,
    )
    rt = app.extensions["minsheng"]
    try:
        number, path = replied_case(app.test_client(), lambda u: login(app.test_client(), u), rt)
        r = answer_link(app.test_client(), path, solved="no", satisfaction="unsatisfied")
        assert r.status_code == 200
        case = case_of(rt, number)
        assert case.status == Status.IN_PROGRESS and case.rework_count == 1
        assert case.events[-1].action == "reworked"
    finally:
        rt.engine.dispose()


def test_an_expired_link_shows_the_hotline_and_records_nothing(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, path = replied_case(client, login_as, runtime)
    token = read_token(runtime.secret, path.rsplit("/", 1)[1])
    expired = make_token(
        runtime.secret, token.case_id, token.reply_id, datetime.now(UTC) - timedelta(minutes=5)
    )
    page = client.get(f"/satisfaction/{expired}")
    html = page.get_data(as_text=True)
    assert page.status_code == 410
    assert "链接已过期" in html and "12345" in html and number in html
    assert "satisfaction-form" not in html
    r = client.post(
        f"/satisfaction/{expired}",
        data={"csrf_token": any_csrf(client), "solved": "yes", "satisfaction": "satisfied"},
    )
    assert r.status_code == 410
    assert visits(runtime, number) == []


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the MAC changed
        lambda t: "9" + t,  # another case id, same MAC
        lambda t: t.split(".")[0],  # no MAC
        lambda t: "x" * 300,
        lambda t: "%E4%B8%AD%E6%96%87",
        lambda t: t + "/../../track",
    ],
)
def test_a_tampered_link_is_a_clear_not_found_page(
    client: Any, login_as: Any, runtime: Any, mangle: Any
) -> None:
    number, path = replied_case(client, login_as, runtime)
    token = path.rsplit("/", 1)[1]
    for method, data in (("get", None), ("post", {"csrf_token": any_csrf(client)})):
        r = getattr(client, method)(f"/satisfaction/{mangle(token)}", data=data)
        html = r.get_data(as_text=True)
        assert r.status_code == 404, html[:300]
        assert "链接无效" in html or "没有找到" in html or "不存在" in html
        assert number not in html and REPLY not in html
    assert visits(runtime, number) == []


def test_a_form_without_its_csrf_token_is_refused(client: Any, login_as: Any, runtime: Any) -> None:
    number, path = replied_case(client, login_as, runtime)
    r = client.post(path, data={"solved": "yes", "satisfaction": "satisfied"})
    assert r.status_code == 400
    assert visits(runtime, number) == []


def test_a_link_is_not_needed_once_the_office_called_back_first(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, path = replied_case(client, login_as, runtime)
    r = post_form(
        login_as("supervisor"),
        f"/board/cases/{number}",
        f"/board/cases/{number}/visit",
        {
            "visit-channel": "phone",
            "visit-reached": "yes",
            "visit-solved": "yes",
            "visit-satisfaction": "basic",
        },
    )
    assert r.status_code == 302
    page = client.get(path)
    assert page.status_code == 200 and "无需再通过此链接评价" in page.get_data(as_text=True)
    assert len(visits(runtime, number)) == 1


def test_two_answers_at_the_same_moment_make_one_visit(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """Single use across processes: two sessions both see the link open; the unique
    constraint lets one answer through and stops the other before it touches the case."""
    number, path = replied_case(client, login_as, runtime)
    token = read_token(runtime.secret, path.rsplit("/", 1)[1])
    deadlines = runtime.settings.deadlines()
    now = datetime.now(UTC)
    first, second = runtime.sessions(), runtime.sessions()
    try:
        link_1, link_2 = look_up(first, token, now), look_up(second, token, now)
        assert link_1.state == link_2.state == "open"
        kwargs = {
            "solved": True,
            "satisfaction": Satisfaction.SATISFIED,
            "comment": "",
            "unsatisfied": "review",
            "deadlines": deadlines,
            "now": now,
        }
        answer(first, link_1, token, **kwargs)
        first.commit()
        with pytest.raises(AlreadyAnswered):
            answer(second, link_2, token, **kwargs)
        second.rollback()
    finally:
        first.close()
        second.close()
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(SatisfactionResponse)) == 1
    assert len(visits(runtime, number)) == 1


def test_an_answer_that_loses_to_the_offices_call_back_leaves_no_trace(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The citizen opens the link; the office records its call-back before the answer is
    written: the answer fails, is rolled back whole, and the link says it is no longer
    needed (on SQLite the answer's row used to stay committed: 'answered', no visit)."""
    number, path = replied_case(client, login_as, runtime)
    token = read_token(runtime.secret, path.rsplit("/", 1)[1])
    now = datetime.now(UTC)
    citizen = runtime.sessions()
    try:
        link = look_up(citizen, token, now)
        assert link.state == "open"
        r = post_form(
            login_as("supervisor"),
            f"/board/cases/{number}",
            f"/board/cases/{number}/visit",
            {
                "visit-channel": "phone",
                "visit-reached": "yes",
                "visit-solved": "yes",
                "visit-satisfaction": "satisfied",
            },
        )
        assert r.status_code == 302
        with pytest.raises((IllegalTransition, StaleDataError)):
            answer(
                citizen,
                link,
                token,
                solved=False,
                satisfaction=Satisfaction.UNSATISFIED,
                comment="",
                unsatisfied="review",
                deadlines=runtime.settings.deadlines(),
                now=now,
            )
        citizen.rollback()
    finally:
        citizen.close()
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(SatisfactionResponse)) == 0
    assert len(visits(runtime, number)) == 1
    page = client.get(path).get_data(as_text=True)
    assert 'data-state="superseded"' in page


def test_answers_are_throttled_per_client(tmp_path: Path, db_url: str) -> None:
    from tests.conftest import login
    from web import create_app

    app = create_app(
        make_settings(
            tmp_path,
            db_url,
            satisfaction={"answers_per_hour": 1},
            classifier={"auto_route": False, "model_dir": str(tmp_path / "m")},
        ),
        TESTING=True,
    )
    rt = app.extensions["minsheng"]
    try:
        staff = lambda u: login(app.test_client(), u)  # noqa: E731
        _n1, path_1 = replied_case(app.test_client(), staff, rt)
        n2, path_2 = replied_case(app.test_client(), staff, rt)
        citizen = app.test_client()
        assert (
            answer_link(citizen, path_1, solved="yes", satisfaction="satisfied").status_code == 200
        )
        r = answer_link(citizen, path_2, solved="yes", satisfaction="satisfied")
        assert r.status_code == 429 and "请一小时后再试" in r.get_data(as_text=True)
        assert visits(rt, n2) == []
    finally:
        rt.engine.dispose()


def test_the_token_reads_back_and_refuses_forgeries() -> None:
    secret = b"k" * 32
    later = datetime(2030, 1, 1, tzinfo=UTC)
    token = make_token(secret, 12, 34, later)
    assert len(token) < 45
    read = read_token(secret, token)
    assert (read.case_id, read.reply_id) == (12, 34) and read.expires_at >= later
    assert read_token(b"other", token) is None
    assert read_token(secret, token.replace("12-", "13-", 1)) is None
    assert read_token(secret, "") is None and read_token(secret, "中文.x") is None
