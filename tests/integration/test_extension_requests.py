"""Extensions (延期) through the board, on both databases: the department asks, a supervisor
grants (to a shorter date) or refuses with a reason; the citizen sees the new deadline and no
reason; one request at a time, within the maximum, once; other departments see nothing."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from tests.integration.helpers import flashes, post_form, submit_complaint
from tests.integration.test_rejection_and_send_back import _track
from triage.models import Case, ExtensionRequest, RequestState, Status


def dispatched(client: Any, login_as: Any, runtime: Any, body: str = "") -> tuple[str, str]:
    """A complaint dispatched to the urban department; (tracking number, query code)."""
    number, code = submit_complaint(client, body or "明德路12号路灯坏了一个月，晚上很黑。")
    case = case_of(runtime, number)
    r = post_form(
        login_as("supervisor"),
        "/board/queue",
        f"/board/cases/{number}/assign",
        {f"c{case.id}-department": "urban"},
    )
    assert r.status_code == 302
    return number, code


def case_of(runtime: Any, number: str) -> Case:
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        _ = case.events, case.extension_requests, [r.author for r in case.replies]
        return case


def local_due(runtime: Any, number: str) -> date:
    tz = runtime.settings.deadlines().calendar.timezone
    return case_of(runtime, number).due_at.astimezone(tz).date()


def working_days_after(runtime: Any, day: date, n: int) -> date:
    calendar = runtime.settings.deadlines().calendar
    while n:
        day += timedelta(days=1)
        n -= calendar.is_workday(day)
    return day


def ask(client: Any, number: str, day: date | str, reason: str = "需协调供电公司") -> list[str]:
    r = post_form(
        client,
        f"/board/cases/{number}",
        f"/board/cases/{number}/extension",
        {"extension-due_date": str(day), "extension-reason": reason},
    )
    assert r.status_code == 302, r.status_code
    return flashes(client.get(r.headers["Location"]).get_data(as_text=True))


def decide(
    client: Any, number: str, how: str, request_id: int, **fields: str
) -> tuple[int, list[str]]:
    data = {"decision-due_date": "", "decision-reason": ""}
    data |= {f"decision-{k}": v for k, v in fields.items()}
    r = post_form(
        client,
        f"/board/cases/{number}",
        f"/board/cases/{number}/extension/{request_id}/{how}",
        data,
    )
    if r.status_code != 302:
        return r.status_code, []
    return r.status_code, flashes(client.get(r.headers["Location"]).get_data(as_text=True))


def test_asked_granted_shorter_and_shown_to_the_citizen(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, code = dispatched(client, login_as, runtime)
    urban = login_as("urban")
    due = local_due(runtime, number)
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="extension-form"' in page and 'type="date"' in page
    proposed = working_days_after(runtime, due, 5)
    said = ask(urban, number, proposed, "需协调供电公司更换地下电缆")
    assert any("延期" in f for f in said), said

    supervisor = login_as("supervisor")
    listing = supervisor.get("/board/extensions").get_data(as_text=True)
    assert number in listing and "需协调供电公司更换地下电缆" in listing
    page = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="extension-decision-form"' in page
    request_id = case_of(runtime, number).pending_extension.id
    granted = working_days_after(runtime, due, 3)
    status, said = decide(
        supervisor, number, "grant", request_id, due_date=str(granted), reason="内部：同意三天"
    )
    assert status == 302 and any("批准" in f or "同意" in f for f in said), said

    case = case_of(runtime, number)
    tz = runtime.settings.deadlines().calendar.timezone
    assert case.due_at.astimezone(tz).date() == granted and case.extended_to == case.due_at
    assert case.extension_count == 1
    assert [e.action for e in case.events][-2:] == ["extension_requested", "extension_granted"]
    assert case.extension_requests[0].state == RequestState.GRANTED

    # The handler sees the new deadline; the citizen too, with the event but no reason.
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    assert granted.isoformat() in page and 'id="extended-to"' in page
    track = _track(client, number, code)
    assert granted.isoformat() in track
    assert "延期" in track
    assert "内部" not in track and "供电公司" not in track
    # The configured one extension is used: no form, and a forged request is refused.
    assert 'id="extension-form"' not in page
    said = ask(urban, number, working_days_after(runtime, granted, 1))
    assert any("延期" in f for f in said), said
    assert len(case_of(runtime, number).extension_requests) == 1


def test_one_request_at_a_time_within_the_maximum(client: Any, login_as: Any, runtime: Any) -> None:
    number, _code = dispatched(client, login_as, runtime)
    urban = login_as("urban")
    due = local_due(runtime, number)
    limit = runtime.settings.time_limits.extension_max_working_days
    beyond = working_days_after(runtime, due, limit + 1)
    said = ask(urban, number, beyond)
    assert any(working_days_after(runtime, due, limit).isoformat() in f for f in said), said
    said = ask(urban, number, due)
    assert said and "after" not in said[0]  # in Chinese: 须晚于
    said = ask(urban, number, "2026-13-45")
    assert said
    saturday = next(
        d
        for d in (due + timedelta(days=i) for i in range(1, 10))
        if not runtime.settings.deadlines().calendar.is_workday(d)
    )
    said = ask(urban, number, saturday)
    assert any("工作日" in f for f in said), said
    assert case_of(runtime, number).extension_requests == []
    # The form carries its CSRF token, and a post without one is refused.
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    form = re.search(r'<form[^>]+id="extension-form".*?</form>', page, flags=re.S).group(0)
    assert re.search(r'name="[a-z-]*csrf_token" [^>]*value="[^"]+"', form)
    r = urban.post(
        f"/board/cases/{number}/extension",
        data={
            "extension-due_date": str(working_days_after(runtime, due, 2)),
            "extension-reason": "x",
        },
    )
    assert r.status_code == 400 and case_of(runtime, number).extension_requests == []

    ask(urban, number, working_days_after(runtime, due, limit))
    with runtime.sessions() as s:
        row = s.scalar(select(ExtensionRequest))
        stored = s.get(Case, row.case_id)
        assert row.previous_due_at == stored.due_at and row.state == RequestState.PENDING
        event = stored.events[-1]
        assert event.detail["request_id"] == row.id
        assert datetime.fromisoformat(event.detail["proposed_due_at"]) == row.proposed_due_at
    said = ask(urban, number, working_days_after(runtime, due, 2))
    assert any("等待" in f for f in said), said
    assert len(case_of(runtime, number).extension_requests) == 1


def test_refusing_needs_a_reason(client: Any, login_as: Any, runtime: Any) -> None:
    number, _code = dispatched(client, login_as, runtime)
    urban = login_as("urban")
    ask(urban, number, working_days_after(runtime, local_due(runtime, number), 2))
    request_id = case_of(runtime, number).pending_extension.id
    supervisor = login_as("supervisor")
    status, said = decide(supervisor, number, "refuse", request_id)
    assert status == 302 and any("理由" in f for f in said), said
    assert case_of(runtime, number).pending_extension is not None
    status, said = decide(supervisor, number, "refuse", request_id, reason="尚有五天，无需延期")
    case = case_of(runtime, number)
    assert case.extension_requests[0].state == RequestState.REFUSED
    assert case.events[-1].action == "extension_refused" and case.extension_count == 0
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "尚有五天，无需延期" in page
    # After a refusal the department may ask again.
    assert 'id="extension-form"' in page
    ask(urban, number, working_days_after(runtime, local_due(runtime, number), 1))
    # Replied meanwhile: the reply withdraws the request, nothing is left to decide.
    r = post_form(
        urban, f"/board/cases/{number}", f"/board/cases/{number}/reply", {"reply-text": "已修复"}
    )
    assert r.status_code == 302 and case_of(runtime, number).status == Status.REPLIED
    case = case_of(runtime, number)
    assert case.pending_extension is None
    assert case.extension_requests[-1].state == RequestState.REFUSED
    withdrawn = [e for e in case.events if e.detail.get("withdrawn")]
    assert [e.action for e in withdrawn] == ["extension_refused"]
    page = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="extension-refuse"' not in page and 'id="extension-grant"' not in page
    assert (
        number
        not in supervisor.get("/board/extensions")
        .get_data(as_text=True)
        .split('id="overdue-delays"')[0]
    )


def test_roles_and_departments(client: Any, login_as: Any, runtime: Any) -> None:
    number, _code = dispatched(client, login_as, runtime)
    urban = login_as("urban")
    ask(urban, number, working_days_after(runtime, local_due(runtime, number), 2))
    request_id = case_of(runtime, number).pending_extension.id

    # The department may not decide its own request.
    status, _said = decide(urban, number, "grant", request_id)
    assert status == 403
    # Another department does not even see the case.
    transport = login_as("transport")
    assert transport.get(f"/board/cases/{number}").status_code == 404
    page = transport.get("/board/extensions").get_data(as_text=True)
    assert number not in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = transport.post(
        f"/board/cases/{number}/extension",
        data={"csrf_token": token, "extension-due_date": "2026-12-30", "extension-reason": "x"},
    )
    assert r.status_code == 404
    # Observers see neither the list nor any form.
    observer = login_as("observer")
    assert observer.get("/board/extensions").status_code == 403
    assert 'id="extension-decision-form"' not in observer.get(f"/board/cases/{number}").get_data(
        as_text=True
    )
    # A request id of another case is not found.
    other, _ = dispatched(client, login_as, runtime, "人民路口红绿灯坏了，车辆乱行。")
    status, _said = decide(login_as("supervisor"), other, "grant", request_id)
    assert status == 404
    assert case_of(runtime, number).pending_extension is not None
