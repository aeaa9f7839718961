"""Long unbroken text (a pasted URL of 2,000 characters in the case text, the extension
reason and the delay reason) wraps on a 375 px phone: neither the case page nor the
extensions-and-delays list is wider than the screen; on the phone the list's cells name
themselves (the column headings are hidden there)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from intake.submission import Channel, Contact, Kind, Submission
from tests.browser.test_walkthrough import sign_in
from triage.cases import assign_case, register
from triage.extensions import latest_extension_due, request_extension
from triage.models import Department, User

pytestmark = pytest.mark.browser

WORD = "https://example.com/" + "a" * 1980
SMALL_PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True}


def overdue_case_with_long_texts(runtime: Any) -> str:
    now = datetime.now(UTC)
    submission = Submission(
        channel=Channel.WEB,
        external_id=f"form-{uuid.uuid4().hex}",
        received_at=now - timedelta(days=20),
        subject="路灯不亮",
        body=f"照片在这里：{WORD}",
        contact=Contact("王小明", "13812345678", ""),
        kind=Kind.COMPLAINT,
    )
    deadlines = runtime.settings.deadlines()
    with runtime.sessions() as s, s.begin():
        case = register(s, submission, runtime.intake_policy(), submission.received_at).case
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        supervisor = s.scalar(select(User).where(User.username == "supervisor"))
        handler = s.scalar(select(User).where(User.username == "urban"))
        if case.department_id is None:
            assign_case(case, urban, supervisor, deadlines, now - timedelta(days=19))
        latest = latest_extension_due(deadlines, case).astimezone(deadlines.calendar.timezone)
        request_extension(case, handler, deadlines, 1, now, f"原因：{WORD}", latest.date())
        case.due_at = now - timedelta(hours=1)
        case.report_delay(handler, now, f"延误：{WORD}")
        return case.tracking_number


def test_long_words_wrap_on_a_small_phone(chromium: Any, live_server: str, app: Any) -> None:
    number = overdue_case_with_long_texts(app.extensions["minsheng"])
    width = "document.documentElement.scrollWidth"
    for username, url in (
        ("urban", f"/board/cases/{number}"),
        ("supervisor", f"/board/cases/{number}"),
        ("supervisor", "/board/extensions"),
    ):
        page = chromium.new_context(**SMALL_PHONE, base_url=live_server).new_page()
        sign_in(page, username)
        page.goto(url)
        assert WORD[:200] in page.content()
        assert page.evaluate(width) <= 375, (url, username, page.evaluate(width))
        if url == "/board/extensions":
            label = page.evaluate(
                "getComputedStyle(document.querySelector("
                "'#pending-extensions td[data-label]:nth-child(4)'), '::before').content"
            )
            assert "延期" in label or "期限" in label, label
        page.context.close()
