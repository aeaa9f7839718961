"""Delay reports (自律) through the board, on both databases: an overdue department says why
it is late; the case page and the extensions-and-delays board show the reason; a case in time
has nothing to report; other departments see nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from tests.integration.helpers import flashes, post_form
from tests.integration.test_extension_requests import case_of, dispatched
from triage.models import Case

WHY = "需等待供电公司停电检修窗口，预计12月5日前答复。"


def report(client: Any, number: str, reason: str = WHY) -> list[str]:
    r = post_form(
        client, f"/board/cases/{number}", f"/board/cases/{number}/delay", {"delay-reason": reason}
    )
    assert r.status_code == 302
    return flashes(client.get(r.headers["Location"]).get_data(as_text=True))


def make_overdue(runtime: Any, number: str) -> None:
    with runtime.sessions() as s, s.begin():
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        case.due_at = datetime.now(UTC) - timedelta(hours=1)


def test_an_overdue_department_reports_why(client: Any, login_as: Any, runtime: Any) -> None:
    number, _code = dispatched(client, login_as, runtime)
    urban = login_as("urban")
    assert 'id="delay-form"' not in urban.get(f"/board/cases/{number}").get_data(as_text=True)
    said = report(urban, number)
    assert any("未超期" in f for f in said), said
    assert case_of(runtime, number).delay_reports == []

    make_overdue(runtime, number)
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="delay-form"' in page
    board = login_as("supervisor").get("/board/extensions").get_data(as_text=True)
    assert number in board and "未报告" in board
    said = report(urban, number, "")
    assert any("理由" in f for f in said), said
    report(urban, number)

    case = case_of(runtime, number)
    event = case.events[-1]
    assert (event.action, event.reason, event.public) == ("delay_reported", WHY, False)
    assert WHY in urban.get(f"/board/cases/{number}").get_data(as_text=True)
    board = login_as("supervisor").get("/board/extensions").get_data(as_text=True)
    assert WHY in board
    # Not the supervisor's to report, and not another department's to see.
    r = post_form(
        login_as("supervisor"),
        f"/board/cases/{number}",
        f"/board/cases/{number}/delay",
        {"delay-reason": "督查员代报"},
    )
    assert r.status_code == 403
    transport = login_as("transport")
    assert number not in transport.get("/board/extensions").get_data(as_text=True)
    assert transport.get(f"/board/cases/{number}").status_code == 404


def test_the_findings_after_a_report_are_evaluated_at_once(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The tick found the overdue case's delay unreported; the department's report takes the
    finding off the case page at once, without waiting for the next tick, and the panel says
    when the findings were evaluated."""
    from triage.supervision import run_tick
    from web.cli_supervise import supervision_policy

    number, _code = dispatched(client, login_as, runtime)
    make_overdue(runtime, number)
    past = datetime.now(UTC) - timedelta(minutes=1)
    run_tick(runtime.sessions, past, supervision_policy(runtime.settings))
    urban = login_as("urban")
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'data-rule="delay_unreported"' in page and 'data-rule="overdue"' in page
    report(urban, number)
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'data-rule="delay_unreported"' not in page and 'data-rule="overdue"' in page
    assert 'id="findings-evaluated"' in page
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        assert {f.rule for f in case.findings} >= {"overdue"}
        assert all(f.evaluated_at > past for f in case.findings)
