"""A case marked at risk (amber) anywhere on the board is one the "At risk" filter lists and
the dashboard's tile counts: the supervision tick's verdict (`cases.risk`), never a guess of
the clock's. Red rows stay the overdue filter's. Red team rt2: the rows took the clock's
verdict (less than a quarter of the time left) where the tick had found no risk, so the list
showed amber rows the filter left out (on the demo with 3000 cases, 26 amber rows against
the filter's 18)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from triage.models import Case, CaseEvent, Department, Status
from triage.supervision import run_tick
from web import dashboard
from web.cli_supervise import supervision_policy


def _rows(html: str) -> dict[str, str]:
    return {
        m.group(1): m.group(0)
        for m in re.finditer(r'<tr[^>]*data-case="([^"]+)"[^>]*>.*?</tr>', html, re.S)
    }


def _cards(html: str) -> dict[str, str]:
    """{tracking number: its kanban card's class}."""
    return {
        m.group(2): m.group(1)
        for m in re.finditer(r'<li class="(kanban-card[^"]*)"[^>]*data-number="([^"]+)"', html)
    }


def _marked(rows: dict[str, str], mark: str, ours: set[str]) -> set[str]:
    return {n for n, row in rows.items() if n in ours and mark in row}


def test_the_amber_cases_are_the_at_risk_filters_everywhere(runtime: Any, login_as: Any) -> None:
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
    cases = {
        # number: (status, received, assigned, dispatch deadline, handling deadline,
        #          the acknowledgment failed: a finding of the tick's, so at risk)
        # Waiting for dispatch for 22 hours, 2 hours left: the old clock rule's amber.
        "T-000001": (Status.TRIAGE, now - timedelta(hours=22), None, timedelta(hours=2), None),
        # With the department for 16 days, 4 days of 20 left (no reminder due yet): the
        # old clock rule's amber too.
        "T-000002": (
            Status.IN_PROGRESS,
            now - timedelta(days=16, hours=2),
            now - timedelta(days=16),
            -timedelta(days=15),
            timedelta(days=4),
        ),
        # Plenty of time on either clock, but the acknowledgment mail failed: at risk.
        "T-000003": (Status.TRIAGE, now - timedelta(hours=2), None, timedelta(hours=22), None),
        "T-000004": (
            Status.IN_PROGRESS,
            now - timedelta(days=10, hours=2),
            now - timedelta(days=10),
            -timedelta(days=9),
            timedelta(days=10),
        ),
        # Past its handling deadline: overdue, red.
        "T-000005": (
            Status.IN_PROGRESS,
            now - timedelta(days=21, hours=2),
            now - timedelta(days=21),
            -timedelta(days=20),
            -timedelta(days=1),
        ),
    }
    mail_failed = {"T-000003", "T-000004"}
    with runtime.sessions() as s, s.begin():
        s.execute(
            insert(Case.__table__),
            [
                {
                    "tracking_number": number,
                    "query_code_hash": "x",
                    "channel": "phone",
                    "external_id": number,
                    "kind": "complaint",
                    "status": status,
                    "subject": "井盖缺失",
                    "body": "人民路口井盖缺失",
                    "received_at": received,
                    "created_at": received,
                    "assigned_at": assigned,
                    "department_id": urban if assigned else None,
                    "triage_due_at": now + triage_due,
                    "due_at": now + due if due is not None else None,
                }
                for number, (status, received, assigned, triage_due, due) in cases.items()
            ],
        )
        ids = dict(
            s.execute(
                select(Case.tracking_number, Case.id).where(Case.tracking_number.in_(cases))
            ).all()
        )
        for number in sorted(mail_failed):
            s.add(
                CaseEvent(
                    case_id=ids[number],
                    at=cases[number][1],
                    action="mail_failed",
                    actor_name="system",
                    detail={"kind": "acknowledgment"},
                )
            )
    # The tick judges every open case (as `minsheng supervise run` does every few minutes).
    run_tick(runtime.sessions, now, supervision_policy(runtime.settings))
    ours = set(cases)
    at_risk, overdue = {"T-000003", "T-000004"}, {"T-000005"}

    supervisor = login_as("supervisor")
    page = supervisor.get("/board/cases?at_risk=1").get_data(as_text=True)
    assert {n for n in _rows(page) if n in ours} == at_risk
    page = supervisor.get("/board/cases?overdue=1").get_data(as_text=True)
    assert {n for n in _rows(page) if n in ours} == overdue
    dashboard.clear_cache()
    tile = supervisor.get("/board/dashboard").get_data(as_text=True)
    assert re.search(r'id="tile-at-risk">(\d+)<', tile).group(1) == str(len(at_risk))

    for sort in ("deadline", "received"):
        rows = _rows(supervisor.get(f"/board/cases?sort={sort}").get_data(as_text=True))
        assert _marked(rows, "risk-at_risk", ours) == at_risk, sort
        assert _marked(rows, "risk-overdue", ours) == overdue, sort
    # The dispatch queue's rows: of its two cases, the one the tick found at risk.
    rows = _rows(supervisor.get("/board/queue").get_data(as_text=True))
    assert {"T-000001", "T-000003"} <= set(rows)
    assert _marked(rows, "risk-at_risk", ours) == {"T-000003"}
    assert _marked(rows, "risk-", ours) == {"T-000003"}
    # The kanban's cards.
    cards = _cards(supervisor.get("/board/kanban").get_data(as_text=True))
    assert ours <= set(cards)
    assert _marked(cards, " at-risk", ours) == at_risk
    assert _marked(cards, " overdue", ours) == overdue
    # The case page's header.
    for number in sorted(ours):
        html = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
        header = re.search(r"<h1>.*?</h1>", html, re.S).group(0)
        assert ('class="badge at-risk"' in header) == (number in at_risk), number
        assert ('class="badge overdue"' in header) == (number in overdue), number

    # The department's own list and kanban mark the same of its cases.
    handler = login_as("urban")
    page = handler.get("/board/cases?sort=deadline").get_data(as_text=True)
    rows = _rows(re.sub(r'<section class="attention".*?</section>', "", page, flags=re.S))
    assert _marked(rows, "risk-at_risk", ours) == at_risk - {"T-000003"}
    cards = _cards(handler.get("/board/kanban").get_data(as_text=True))
    assert _marked(cards, " at-risk", ours) == at_risk - {"T-000003"}
