"""The "Overdue" badge of a list row follows the overdue filter's rule (and the case page's):
the clock runs against dispatch while a case waits for it and against handling while a
department has it; a case replied to in time is not overdue because its return visit is
still to come (acceptance review of issue 10: 47 rows marked against the filter's 19)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from triage.models import Case, Department, Status


def _rows(html: str) -> dict[str, str]:
    return {
        m.group(1): m.group(0)
        for m in re.finditer(r'<tr[^>]*data-case="([^"]+)"[^>]*>.*?</tr>', html, re.S)
    }


def test_a_case_replied_in_time_is_not_marked_overdue(runtime: Any, login_as: Any) -> None:
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
    cases = {
        # number: (status, handling deadline, risk the tick found)
        "T-000001": (Status.REPLIED, now - timedelta(days=2), ""),
        "T-000002": (Status.VISITED, now - timedelta(days=2), ""),
        "T-000003": (Status.IN_PROGRESS, now - timedelta(days=2), ""),
        "T-000004": (Status.ASSIGNED, now + timedelta(days=5), ""),
        "T-000005": (Status.REPLIED, now - timedelta(days=2), "overdue"),
        "T-000006": (Status.CLOSED, now - timedelta(days=2), ""),
    }
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
                    "received_at": now - timedelta(days=20),
                    "created_at": now - timedelta(days=20),
                    "assigned_at": now - timedelta(days=19),
                    "department_id": urban,
                    "due_at": due,
                    "triage_due_at": now - timedelta(days=19),
                    "risk": risk,
                }
                for number, (status, due, risk) in cases.items()
            ],
        )
    overdue = {"T-000003", "T-000005"}
    for user in ("supervisor", "urban"):
        client = login_as(user)
        rows = _rows(client.get("/board/cases?sort=received").get_data(as_text=True))
        marked = {n for n, row in rows.items() if n in cases and 'class="badge overdue"' in row}
        assert marked == overdue, (user, marked)
        listed = _rows(client.get("/board/cases?overdue=1").get_data(as_text=True))
        assert {n for n in listed if n in cases} == overdue, user
    with runtime.sessions() as s:
        for number in cases:
            case = s.scalar(select(Case).where(Case.tracking_number == number))
            assert case.is_overdue(now) == (number == "T-000003"), number
