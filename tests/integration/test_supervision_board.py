"""Findings on the board after a tick: the case page's panel, overdue rows red and at-risk rows
amber in the lists (with one query for the page's findings, however many rows), a
department's workspace opening on its own overdue and at-risk cases; and the public
commitments page, from the same policy as the deadlines."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select

from intake.submission import Channel, Contact, Kind, Submission
from triage.cases import assign_case, register
from triage.models import Case, Department, User
from triage.supervision import run_tick
from web.cli_supervise import supervision_policy

# Monday 23 Nov 2026, 09:00 in Beijing.
MONDAY = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def new_case(runtime: Any, department: str | None, received: datetime, subject: str) -> str:
    submission = Submission(
        channel=Channel.WEB,
        external_id=f"form-{uuid.uuid4().hex}",
        received_at=received,
        subject=subject,
        body=f"{subject}，已经持续两个星期，请尽快处理。",
        contact=Contact("王小明", "13812345678", ""),
        kind=Kind.COMPLAINT,
    )
    with runtime.sessions() as s, s.begin():
        case = register(s, submission, runtime.intake_policy(), received).case
        if department and case.department_id is None:
            supervisor = s.scalar(select(User).where(User.username == "supervisor"))
            dept = s.scalar(select(Department).where(Department.code == department))
            assign_case(case, dept, supervisor, runtime.settings.deadlines(), received)
        return case.tracking_number


def tick_at(runtime: Any, now: datetime) -> None:
    result = run_tick(runtime.sessions, now, supervision_policy(runtime.settings))
    assert result.ran


def row_class(html: str, number: str) -> str:
    m = re.search(rf'<tr class="([^"]*)" data-case="{number}"', html)
    assert m, f"{number} not listed"
    return m.group(1)


def test_findings_show_in_lists_case_page_and_workspace(runtime: Any, login_as: Any) -> None:
    overdue = new_case(runtime, "urban", MONDAY, "莲花路路灯不亮")
    # Dispatched on Wednesday: due the next Wednesday, the day of the tick.
    near = new_case(runtime, "urban", MONDAY + timedelta(days=2), "金桥街井盖缺失")
    calm = new_case(runtime, "urban", MONDAY + timedelta(days=7), "公园长椅损坏")
    # Its deadline well after the day the pages are read: they judge overdue by the real
    # clock (the overdue filter's rule), the tick by its own, and a deadline of next week
    # would turn the calm case red once the real date passed it.
    with runtime.sessions() as s, s.begin():
        case = s.scalar(select(Case).where(Case.tracking_number == calm))
        case.due_at = max(case.due_at, datetime.now(UTC) + timedelta(days=30))
    other = new_case(runtime, "transport", MONDAY, "公交站牌倒了")
    waiting = new_case(runtime, None, MONDAY, "小区噪音扰民")
    # Wednesday 2 Dec, 10:00: the first is past its deadline and grace, the second due
    # tonight, the third next week; the unassigned one waited past its dispatch limit.
    tick_at(runtime, datetime(2026, 12, 2, 2, 0, tzinfo=UTC))

    supervisor = login_as("supervisor")
    html = supervisor.get("/board/cases").get_data(as_text=True)
    assert "risk-overdue" in row_class(html, overdue)
    assert "risk-overdue" in row_class(html, other)
    assert "risk-at_risk" in row_class(html, near)
    assert "risk-" not in row_class(html, calm)
    queue = supervisor.get("/board/queue").get_data(as_text=True)
    assert "risk-overdue" in row_class(queue, waiting)

    page = supervisor.get(f"/board/cases/{overdue}").get_data(as_text=True)
    panel = page[page.index('id="findings"') :]
    rules = re.findall(r'data-rule="([a-z_]+)"', panel)
    assert set(rules) == {"overdue", "escalated", "delay_unreported"}
    assert rules[-1] == "delay_unreported"  # the most severe first
    assert "severity-critical" in panel
    calm_page = supervisor.get(f"/board/cases/{calm}").get_data(as_text=True)
    # No finding of time (its deadline, moved past the real date above, may fall in a year
    # the holiday calendar does not know yet: that one is said).
    calm_rules = set(re.findall(r'data-rule="([a-z_]+)"', calm_page))
    assert calm_rules <= {"calendar_unknown"}, calm_rules

    # The urban department's workspace opens on its own overdue case, then the at-risk one;
    # nothing of another department, nothing calm.
    urban = login_as("urban")
    html = urban.get("/board/cases").get_data(as_text=True)
    start = html.index('id="attention"')
    attention = html[start : html.index("</section>", start)]
    assert re.findall(r'data-case="([^"]+)"', attention) == [overdue, near]
    assert "risk-at_risk" in row_class(attention, near)
    # A filtered list is the filter's, not the workspace.
    filtered = urban.get("/board/cases?status=closed").get_data(as_text=True)
    assert 'id="attention"' not in filtered


def test_list_pages_read_findings_in_one_query(runtime: Any, login_as: Any) -> None:
    for i in range(3):
        new_case(runtime, "urban", MONDAY, f"第{i}处路灯不亮")
    tick_at(runtime, datetime(2026, 12, 2, 2, 0, tzinfo=UTC))
    client = login_as("supervisor")
    engine = runtime.engine

    def statements(url: str) -> int:
        seen: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            r = client.get(url)
            assert r.status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        # The rows' findings in one query; the counts per finding rule (one bounded GROUP BY)
        # are another.
        rows = [s for s in seen if "case_findings" in s and "GROUP BY" not in s]
        assert len(rows) <= 1, rows
        return len(seen)

    few = statements("/board/cases")
    for i in range(12):
        new_case(runtime, "urban", MONDAY, f"第{i + 3}处井盖缺失")
    tick_at(runtime, datetime(2026, 12, 2, 2, 5, tzinfo=UTC))
    many = statements("/board/cases")
    assert many == few
    with runtime.sessions() as s:
        flagged = s.scalars(select(Case.risk).where(Case.risk == "overdue")).all()
    assert len(flagged) == 15


def test_commitments_page_is_public_and_follows_the_policy(client: Any, runtime: Any) -> None:
    home = client.get("/").get_data(as_text=True)
    assert 'href="/commitments"' in home
    r = client.get("/commitments")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    deadlines = runtime.settings.deadlines()
    with runtime.sessions() as s:
        departments = s.scalars(select(Department).where(Department.active.is_(True))).all()
    for d in departments:
        assert f'data-department="{d.code}"' in html
        assert d.name in html
        section = html[html.index(f'data-department="{d.code}"') :]
        section = section[: section.index("</section>")]
        handling = deadlines.commitment("complaint", False, d.code).handling
        cells = re.findall(r"<td>([^<]*)</td>", section)
        assert any(cell.strip().startswith(f"{handling} ") for cell in cells[2:3]), cells[:8]
        urgent = deadlines.commitment("complaint", True, d.code).handling
        assert 'class="urgent"' in section and f"{urgent} " in section


def test_commitments_page_says_no_extension_when_none_is_allowed(
    tmp_path: Any, db_url: str
) -> None:
    from tests.conftest import make_settings
    from web import create_app

    settings = make_settings(tmp_path, db_url, supervision={"extensions_allowed": 0})
    app = create_app(settings, TESTING=True)
    html = app.test_client().get("/commitments").get_data(as_text=True)
    app.extensions["minsheng"].engine.dispose()
    cells = re.findall(r'<td class="extension">([^<]*)</td>', html)
    assert cells and set(cells) == {"不可延期"}, cells
    assert "0 个工作日" not in html
