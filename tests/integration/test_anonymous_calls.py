"""Anonymous callers (匿名/未知 in a call-centre export, or a caller at the desk who gives
no number): the case page labels the caller as anonymous where the contact would show and
offers no call-back that cannot work. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.integration.test_call_import import finished, upload, write_csv
from triage.models import Case, Department, Status


def _imported_anonymous_case(login_as: Any, runtime: Any, tmp_path: Path) -> str:
    rows = [["AN7", "匿名", "2026/11/20 9:05", "60", "和平路夜间施工噪音扰民", "王芳", "", "", ""]]
    operator = login_as("operator")
    r = upload(operator, write_csv(tmp_path / "anon.csv", rows))
    assert r.status_code == 302
    finished(operator, r.headers["Location"])
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.external_id == "AN7")).one()
        assert case.contact_phone == "" and case.contact_email == ""
        return case.tracking_number


def _replied(runtime: Any, number: str) -> None:
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        dept = s.scalars(select(Department).where(Department.code == "urban")).one()
        if case.status in (Status.RECEIVED, Status.TRIAGE):
            case.assign(dept, "supervisor", now, now)
        case.start("urban", now)
        case.reply("urban", now, "已责令施工单位夜间停工。")


def test_an_anonymous_calls_case_says_so_and_offers_no_call_back(
    login_as: Any, runtime: Any, tmp_path: Path
) -> None:
    number = _imported_anonymous_case(login_as, runtime, tmp_path)
    supervisor = login_as("supervisor")
    html = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    contact = re.search(r'<dd id="case-contact">(.*?)</dd>', html, re.S).group(1)
    assert "匿名来电" in contact and 'id="no-call-back"' in contact
    assert 'id="citizen-unreachable"' not in html  # no "call them back on the number above"

    _replied(runtime, number)
    html = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    form = re.search(r'<form[^>]*id="visit-form".*?</form>', html, re.S).group(0)
    assert 'value="phone"' not in form and 'value="sms"' not in form
    assert 'value="visit"' in form
    # Posting a phone call-back anyway is refused, not recorded.
    from tests.integration.helpers import post_form

    r = post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/visit",
        {
            "visit-channel": "phone",
            "visit-reached": "yes",
            "visit-solved": "yes",
            "visit-satisfaction": "satisfied",
        },
    )
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        assert case.status == Status.REPLIED and not case.visits, r.status_code

    supervisor.get("/lang/en")
    html = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    contact = re.search(r'<dd id="case-contact">(.*?)</dd>', html, re.S).group(1)
    assert "Anonymous caller" in contact


def _desk(operator: Any, data: dict[str, Any]) -> Any:
    from tests.integration.test_operator_desk import _desk as desk

    return desk(operator, data)


def test_the_desk_logs_a_caller_who_gives_no_number(login_as: Any, runtime: Any) -> None:
    """Anonymous, or number withheld: the box ticked, no number, the call is a case without
    a caller, with no repeat-call matching and no call-back wanted."""
    from tests.integration.helpers import flashes

    operator = login_as("operator")
    page = operator.get("/board/calls/new").get_data(as_text=True)
    assert 'name="anonymous"' in page and "匿名来电" in page
    # Without a number and without the box: the desk says what is missing.
    r = _desk(operator, {"phone": ""})
    assert r.status_code == 400
    assert "匿名" in r.get_data(as_text=True)
    # A number and the box at once: contradictory.
    r = _desk(operator, {"phone": "13812345678", "anonymous": "y"})
    assert r.status_code == 400
    # The box, and a call-back wanted: it cannot be; refused, not logged.
    r = _desk(operator, {"phone": "", "anonymous": "y", "callback": "y"})
    assert r.status_code == 400
    r = _desk(operator, {"phone": "", "anonymous": "y", "name": "王先生"})
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    number = r.headers["Location"].rsplit("/", 1)[-1]
    said = flashes(operator.get(r.headers["Location"]).get_data(as_text=True))
    assert any(number in f for f in said)
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        assert case.contact_phone == "" and case.contact_name == "王先生"
        assert not case.caller_key
        actions = [e.action for e in case.events]
        assert "callback_wanted" not in actions
        assert "anonymous_call" in actions
    html = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    assert "匿名来电" in re.search(r'<dd id="case-contact">(.*?)</dd>', html, re.S).group(1)
    # A second anonymous call is its own case: no matching by an absent number.
    r = _desk(operator, {"phone": "", "anonymous": "y", "body": "和平路又在夜间施工"})
    assert r.status_code == 302 and r.headers["Location"].rsplit("/", 1)[-1] != number


def test_a_caller_who_gives_a_number_but_no_name_is_not_shown_as_anonymous(
    login_as: Any, runtime: Any
) -> None:
    """A caller who gives their number but not their name is no anonymous caller: the case
    page says the name was not given, beside the number to call back, in either language."""
    operator = login_as("operator")
    r = _desk(operator, {"phone": "021-6543 2100", "name": ""})
    assert r.status_code == 302
    number = r.headers["Location"].rsplit("/", 1)[-1]
    supervisor = login_as("supervisor")
    html = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    contact = re.search(r'<dd id="case-contact">(.*?)</dd>', html, re.S).group(1)
    assert "02165432100" in contact
    assert "匿名" not in contact and "未留姓名" in contact, contact
    supervisor.get("/lang/en")
    html = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    contact = re.search(r'<dd id="case-contact">(.*?)</dd>', html, re.S).group(1)
    assert "anonymous" not in contact.lower() and "name not given" in contact, contact
