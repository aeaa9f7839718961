"""The queue's bulk dispatch reads the tracking numbers a form sends: a tampered or broken
form's number (a NUL, odd spacing, full width) is reported or read as the number it spells,
never a server error (PostgreSQL refuses NUL in text). Both databases."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from tests.integration.helpers import flashes, submit_complaint
from triage.models import Case, Status


def _dispatch(supervisor: Any, data: dict[str, Any]) -> tuple[int, list[str]]:
    queue = supervisor.get("/board/queue").get_data(as_text=True)
    token = re.search(r'name="bulk-csrf_token"[^>]*value="([^"]+)"', queue).group(1)
    r = supervisor.post("/board/queue/dispatch", data={"bulk-csrf_token": token, **data})
    page = supervisor.get("/board/queue").get_data(as_text=True)
    return r.status_code, flashes(page)


def test_a_number_with_control_characters_is_reported_not_a_server_error(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _ = submit_complaint(client, "明德路12号路灯不亮，晚上很黑。")
    supervisor = login_as("supervisor")
    for data in (
        {"bulk-department": "urban", "case": ["MS-2026-9999\x00"]},
        {"bulk-department": "urban", "one": "MS-\x00\x1b2026-9999"},
        {"bulk-department": "urban", "case": ["\x00"]},
    ):
        status, messages = _dispatch(supervisor, data)
        assert status == 302, data
        assert messages, data
        assert not any("\x00" in m or "\x1b" in m for m in messages)
    with runtime.sessions() as s:
        assert s.scalar(select(Case.status).where(Case.tracking_number == number)) in (
            Status.RECEIVED,
            Status.TRIAGE,
        )


def test_a_number_sent_in_another_spelling_dispatches_its_case(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _ = submit_complaint(client, "明德路12号路灯不亮，晚上很黑。")
    prefix, year, serial = number.split("-")
    status, messages = _dispatch(
        login_as("supervisor"),
        {"bulk-department": "urban", "case": [f"{prefix.lower()} {year} {int(serial)}"]},
    )
    assert status == 302
    with runtime.sessions() as s:
        c = s.scalar(select(Case).where(Case.tracking_number == number))
        assert c.status == Status.ASSIGNED and c.department.code == "urban", messages
