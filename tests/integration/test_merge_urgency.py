"""Merging an urgent case into another keeps the hazard urgent, from the queue's merge button
and from the case page, on both databases: the case that carries both reports is urgent, with
the merged case's reasons, a deadline no later than the urgent one's, and a timeline that
says so; as a repeat call reporting the hazard (`triage.urgency.escalate`) makes it. Red team
rt2: a later report of a gas leak (urgent, dispatch within the hour) merged into an earlier
report of the same stairwell that read as ordinary left the case non-urgent, with an
ordinary deadline, below the urgent cases in the queue and lists."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from tests.integration.helpers import post_form, submit_complaint
from triage.cases import assign_case
from triage.models import Case, Department, Status, User

ORDINARY = ("明德路12号3单元楼道里有股怪味，好几天了。", "楼道异味")
GAS_LEAK = ("明德路12号3单元楼道燃气泄漏，味道很重，请马上派人。", "楼道燃气泄漏")


def _case(s: Any, number: str) -> Case:
    return s.scalar(select(Case).where(Case.tracking_number == number))


def _submitted(client: Any, runtime: Any) -> tuple[str, str]:
    """An ordinary report and a later urgent one of the same stairwell, both in the queue."""
    first, _ = submit_complaint(client, ORDINARY[0], subject=ORDINARY[1])
    urgent, _ = submit_complaint(client, GAS_LEAK[0], subject=GAS_LEAK[1])
    with runtime.sessions() as s:
        a, b = _case(s, first), _case(s, urgent)
        assert (a.urgent, b.urgent) == (False, True)
        assert a.status == b.status == Status.TRIAGE
        assert b.triage_due_at < a.triage_due_at
    return first, urgent


def _timeline_event(html: str, action: str) -> str:
    """The case page's timeline entry of ``action`` (its label and detail)."""
    m = re.search(rf'<li class="event-{action}">.*?</li>', html, re.S)
    assert m, f"no {action} event on the page"
    return m.group(0)


def test_merging_an_urgent_duplicate_from_the_case_page_keeps_the_case_urgent(
    client: Any, login_as: Any, runtime: Any
) -> None:
    first, urgent = _submitted(client, runtime)
    supervisor = login_as("supervisor")
    r = post_form(
        supervisor,
        f"/board/cases/{urgent}",
        f"/board/cases/{urgent}/merge",
        {"merge-target": first, "merge-reason": "同一楼道"},
    )
    assert r.status_code == 302
    with runtime.sessions() as s:
        target, source = _case(s, first), _case(s, urgent)
        assert source.status == Status.MERGED
        assert target.urgent, "the case carrying the gas leak report is not urgent"
        assert set(source.urgent_reasons) <= set(target.urgent_reasons)
        assert target.triage_due_at <= source.triage_due_at
        flagged = [e for e in target.events if e.action == "flagged_urgent"]
        assert len(flagged) == 1 and flagged[0].detail["source"] == urgent
        assert flagged[0].detail["triage_due_at"] == target.triage_due_at.isoformat()

    # The case page says it is urgent, and its timeline says why and since which case.
    html = supervisor.get(f"/board/cases/{first}").get_data(as_text=True)
    header = re.search(r"<h1>.*?</h1>", html, re.S).group(0)
    assert 'class="badge urgent"' in header
    event = _timeline_event(html, "flagged_urgent")
    assert f'href="/board/cases/{urgent}"' in event
    assert "燃气泄漏" in event
    # The queue lists it as urgent, first.
    queue = supervisor.get("/board/queue").get_data(as_text=True)
    rows = re.findall(r'<tr class="([^"]*)" data-case="([^"]+)"', queue)
    assert rows[0] == ("urgent", first), rows


def test_merging_an_urgent_duplicate_from_the_queue_into_a_dispatched_case(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The queue's merge button, into a case a department already handles on an ordinary
    deadline (days): the department's deadline comes forward to the urgent one (hours)."""
    first, urgent = _submitted(client, runtime)
    deadlines = runtime.settings.deadlines()
    with runtime.sessions() as s, s.begin():
        supervisor = s.scalar(select(User).where(User.username == "supervisor"))
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        assign_case(_case(s, first), urban, supervisor, deadlines, datetime.now(UTC))
    with runtime.sessions() as s:
        ordinary_due = _case(s, first).due_at
    r = post_form(
        login_as("supervisor"),
        "/board/queue",
        f"/board/cases/{urgent}/merge",
        {"merge-target": first, "merge-reason": "", "back": "queue"},
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/board/queue")
    merged_by = deadlines.handling_due(datetime.now(UTC), "urban", True)
    with runtime.sessions() as s:
        target, source = _case(s, first), _case(s, urgent)
        assert source.status == Status.MERGED
        assert target.status == Status.ASSIGNED and target.urgent
        assert set(source.urgent_reasons) <= set(target.urgent_reasons)
        assert target.due_at < ordinary_due
        assert target.due_at <= merged_by
        flagged = next(e for e in target.events if e.action == "flagged_urgent")
        assert flagged.detail["due_at"] == target.due_at.isoformat()
        assert flagged.detail["source"] == urgent
    # The department's list shows it urgent.
    html = login_as("urban").get("/board/cases").get_data(as_text=True)
    row = re.search(rf'<tr class="([^"]*)" data-case="{first}"', html)
    assert row and "urgent" in row.group(1).split()


def test_merging_an_ordinary_case_changes_no_deadline(
    client: Any, login_as: Any, runtime: Any
) -> None:
    first, _ = submit_complaint(client, ORDINARY[0], subject=ORDINARY[1])
    second, _ = submit_complaint(client, "明德路12号3单元楼道有异味。", subject="异味")
    with runtime.sessions() as s:
        before = _case(s, first).triage_due_at
    r = post_form(
        login_as("supervisor"),
        f"/board/cases/{second}",
        f"/board/cases/{second}/merge",
        {"merge-target": first, "merge-reason": "同一楼道"},
    )
    assert r.status_code == 302
    with runtime.sessions() as s:
        target = _case(s, first)
        assert _case(s, second).status == Status.MERGED
        assert not target.urgent and target.triage_due_at == before
        assert "flagged_urgent" not in {e.action for e in target.events}
