"""Return visits through the pages, on a real database: an unreached visit is an attempt and the
case stays replied; closing needs a valid visit or, after the configured failed attempts, a
supervisor's reason; an unsatisfied visit goes to review or rework. Role checks and CSRF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import make_settings
from tests.integration.helpers import flashes, post_form
from triage.models import Case, Department, Status

NOW = datetime.now(UTC)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, supervision={"visit_attempts_before_close": 2})


def replied_case(runtime: Any, number: str = "MS-2026-000501") -> str:
    with runtime.sessions() as s, s.begin():
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        case = Case(
            tracking_number=number,
            query_code_hash="x",
            channel="web",
            external_id=number,
            status=Status.TRIAGE,
            body="幸福路路灯不亮已一周",
            received_at=NOW - timedelta(days=3),
            contact_name="王小明",
            contact_phone="13812345678",
        )
        s.add(case)
        case.assign(urban, "supervisor", NOW - timedelta(days=2), NOW + timedelta(days=3))
        case.reply("urban", NOW - timedelta(days=1), "路灯已修复。")
    return number


def _case(runtime: Any, number: str) -> Case:
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        _ = case.events, case.visits
        return case


def _page(client: Any, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, f"{url}: {r.status_code}"
    return r.get_data(as_text=True)


def _visit(office: Any, number: str, **fields: str) -> Any:
    data = {f"visit-{k}": v for k, v in fields.items()}
    return post_form(office, f"/board/cases/{number}", f"/board/cases/{number}/visit", data)


def test_unreached_visits_then_closing_without_a_visit(runtime: Any, login_as: Any) -> None:
    number = replied_case(runtime)
    office = login_as("supervisor")
    page = _page(office, f"/board/cases/{number}")
    assert 'name="visit-channel"' in page and 'id="close-without-visit-form"' not in page

    _visit(office, number, channel="sms", reached="no")
    html = _page(office, f"/board/cases/{number}")
    assert any("1" in f for f in flashes(html))
    case = _case(runtime, number)
    assert case.status == Status.REPLIED
    assert (case.visits[0].channel, case.visits[0].valid) == ("sms", False)
    assert case.events[-1].detail["valid"] is False
    # Not closable: no valid visit, and one attempt is not enough.
    assert 'id="visit-form"' in html and 'id="visit-attempts"' in html
    assert 'id="close-form"' not in html and 'id="close-without-visit-form"' not in html
    post_form(office, f"/board/cases/{number}", f"/board/cases/{number}/close", {})
    assert flashes(_page(office, f"/board/cases/{number}"))
    post_form(
        office,
        f"/board/cases/{number}",
        f"/board/cases/{number}/close-without-visit",
        {"novisit-reason": "联系不上"},
    )
    assert any("2" in f for f in flashes(_page(office, f"/board/cases/{number}")))
    assert _case(runtime, number).status == Status.REPLIED

    _visit(office, number, channel="phone", reached="no", note="电话无人接听")
    html = _page(office, f"/board/cases/{number}")
    assert 'id="close-without-visit-form"' in html
    # A department handler may not close it; a post without the CSRF token is refused.
    handler = login_as("urban")
    r = post_form(
        handler,
        f"/board/cases/{number}",
        f"/board/cases/{number}/close-without-visit",
        {"novisit-reason": "x"},
    )
    assert r.status_code == 403
    r = office.post(f"/board/cases/{number}/close-without-visit", data={"novisit-reason": "无令牌"})
    assert r.status_code == 400
    # No reason: refused.
    post_form(office, f"/board/cases/{number}", f"/board/cases/{number}/close-without-visit", {})
    assert flashes(_page(office, f"/board/cases/{number}"))
    assert _case(runtime, number).status == Status.REPLIED

    post_form(
        office,
        f"/board/cases/{number}",
        f"/board/cases/{number}/close-without-visit",
        {"novisit-reason": "两次电话、一次短信均未联系上，号码已停机。"},
    )
    case = _case(runtime, number)
    assert case.status == Status.CLOSED and case.closed_at is not None
    closing = case.events[-1]
    assert closing.action == "closed_without_visit" and closing.detail["attempts"] == 2
    assert "号码已停机" in _page(office, f"/board/cases/{number}")


def test_unsatisfied_visit_goes_to_review_then_rework(runtime: Any, login_as: Any) -> None:
    number = replied_case(runtime)
    office = login_as("supervisor")
    _visit(office, number, reached="yes", solved="no", satisfaction="unsatisfied", channel="web")
    html = _page(office, f"/board/cases/{number}")
    case = _case(runtime, number)
    assert case.status == Status.VISITED and case.visits[-1].valid
    assert 'id="review-form"' in html and 'id="close-form"' in html
    post_form(
        office,
        f"/board/cases/{number}",
        f"/board/cases/{number}/review",
        {"review-reason": "待复核"},
    )
    html = _page(office, f"/board/cases/{number}")
    assert 'id="review-pending"' in html and 'id="review-form"' not in html
    assert _case(runtime, number).events[-1].action == "review_requested"
    # The reviewer closes only with a reason …
    post_form(office, f"/board/cases/{number}", f"/board/cases/{number}/close", {})
    assert flashes(_page(office, f"/board/cases/{number}"))
    # … or sends it for rework, with a new deadline.
    post_form(
        office,
        f"/board/cases/{number}",
        f"/board/cases/{number}/rework",
        {"rework-reason": "复核认为路灯仍时亮时灭"},
    )
    case = _case(runtime, number)
    assert case.status == Status.IN_PROGRESS and case.rework_count == 1
    assert case.due_at is not None and case.due_at > datetime.now(UTC)
