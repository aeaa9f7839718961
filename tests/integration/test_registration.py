"""Registering submissions: once per (channel, external id), tracking numbers, routing,
urgency, attachments, and the append-only audit log, on the real database."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from intake.submission import Attachment, Channel, Contact, Submission
from tests.conftest import csrf_from
from tests.integration.helpers import submit_complaint
from triage.cases import register
from triage.models import Case, IllegalTransition, Status

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # a Thursday, 10:00 in Beijing
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def submission(
    external_id: str = "call-1", body: str = "小区物业乱收停车费", **kw: Any
) -> Submission:
    return Submission(
        channel=kw.pop("channel", Channel.PHONE),
        external_id=external_id,
        received_at=kw.pop("received_at", NOW),
        body=body,
        subject=kw.pop("subject", "物业收费"),
        contact=Contact("李女士", "13900001111", ""),
        **kw,
    )


def test_same_submission_twice_makes_one_case(runtime: Any) -> None:
    policy = runtime.intake_policy()
    with runtime.sessions() as s, s.begin():
        first = register(s, submission(), policy, NOW)
        again = register(s, submission(), policy, NOW)
        other = register(s, submission("call-2"), policy, NOW)
    assert first.created and first.query_code
    assert not again.created and again.case.id == first.case.id and again.query_code is None
    assert other.case.id != first.case.id
    with runtime.sessions() as s:
        assert s.scalar(select(Case).where(Case.external_id == "call-1")) is not None
        assert len(s.scalars(select(Case)).all()) == 2


def test_tracking_numbers_are_readable_and_sequential(runtime: Any) -> None:
    policy = runtime.intake_policy()
    with runtime.sessions() as s, s.begin():
        numbers = [
            register(s, submission(f"c{i}"), policy, NOW).case.tracking_number for i in range(3)
        ]
    assert numbers == ["MS-2026-000001", "MS-2026-000002", "MS-2026-000003"]


def test_low_confidence_waits_in_the_queue_with_its_suggestion(runtime: Any) -> None:
    with runtime.sessions() as s, s.begin():
        case = register(s, submission(), runtime.intake_policy(), NOW).case
        assert case.status == Status.TRIAGE
        assert case.suggested_department.code == "urban"
        assert case.confidence is not None and case.model_version
        assert [e.action for e in case.events] == ["received", "suggested", "queued"]
        # Triage within one working day: Friday end of day, Beijing time.
        assert case.triage_due_at == datetime(2026, 11, 27, 15, 59, 59, tzinfo=UTC)


def test_confident_suggestion_routes_automatically(runtime: Any) -> None:
    policy = replace(runtime.intake_policy(), auto_route_threshold=0.0)
    with runtime.sessions() as s, s.begin():
        case = register(s, submission(), policy, NOW).case
        assert case.status == Status.ASSIGNED and case.department.code == "urban"
        ev = case.events[-1]
        assert ev.action == "auto_assigned" and ev.actor_name.startswith("model ")
        assert ev.detail["confidence"] == pytest.approx(case.confidence, abs=1e-4)
        # Five working days from Thursday 26 November: Thursday 3 December.
        assert case.due_at == datetime(2026, 12, 3, 15, 59, 59, tzinfo=UTC)


def test_urgent_hazard_gets_an_hour_level_deadline(runtime: Any) -> None:
    body = "幸福里小区5号楼一楼有很浓的燃气泄漏味道，请马上派人来！"
    with runtime.sessions() as s, s.begin():
        case = register(s, submission(body=body), runtime.intake_policy(), NOW).case
        assert case.urgent and case.urgent_reasons
        assert case.triage_due_at == NOW + timedelta(hours=1)
        assert "flagged_urgent" in [e.action for e in case.events]


def test_attachments_are_stored_once_by_content_hash(runtime: Any) -> None:
    photo = Attachment("门口.png", "image/png", PNG)
    policy = runtime.intake_policy()
    with runtime.sessions() as s, s.begin():
        a = register(s, submission("a", attachments=(photo,)), policy, NOW).case
        b = register(
            s, submission("b", attachments=(replace(photo, filename="x.png"),)), policy, NOW
        ).case
        assert a.attachments[0].sha256 == b.attachments[0].sha256 == photo.sha256
        assert a.attachments[0].filename == "门口.png" and a.attachments[0].size == len(PNG)
    stored = runtime.attachments.path(photo.sha256)
    assert stored.read_bytes() == PNG
    assert len(list(stored.parent.iterdir())) == 1


def test_the_audit_log_cannot_be_rewritten(runtime: Any) -> None:
    with runtime.sessions() as s, s.begin():
        case = register(s, submission(), runtime.intake_policy(), NOW).case
        case_id = case.id
    with runtime.sessions() as s:
        case = s.get(Case, case_id)
        case.events[0].reason = "history rewritten"
        with pytest.raises(IllegalTransition, match="append-only"):
            s.flush()
    for statement in ("UPDATE case_events SET reason = 'x'", "DELETE FROM case_events"):
        with runtime.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(statement))
    with runtime.sessions() as s:
        assert len(s.get(Case, case_id).events) == 3


def test_form_refuses_bad_attachments_with_a_clear_message(client: Any, runtime: Any) -> None:
    page = client.get("/complain").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1)
    base = {
        "csrf_token": csrf_from(page),
        "token": token,
        "kind": "complaint",
        "subject": "路灯不亮",
        "body": "明德路路灯坏了三个星期",
    }
    r = client.post(
        "/complain",
        content_type="multipart/form-data",
        data={**base, "attachments": [(io.BytesIO(b"MZ\x90\x00virus"), "photo.jpg")]},
    )
    assert r.status_code == 400
    assert "photo.jpg" in r.get_data(as_text=True)
    too_many = [(io.BytesIO(PNG), f"p{i}.png") for i in range(6)]
    r = client.post(
        "/complain", content_type="multipart/form-data", data={**base, "attachments": too_many}
    )
    assert r.status_code == 400 and "6" in r.get_data(as_text=True)
    with runtime.sessions() as s:
        assert s.scalars(select(Case)).all() == []
    r = client.post(
        "/complain",
        content_type="multipart/form-data",
        follow_redirects=True,
        data={**base, "attachments": [(io.BytesIO(PNG), "灯.png")]},
    )
    assert r.status_code == 200 and "MS-2026-" in r.get_data(as_text=True)


def test_double_submit_of_one_form_makes_one_case_and_both_get_the_receipt(
    app: Any, runtime: Any
) -> None:
    first_tab = app.test_client()
    page = first_tab.get("/complain").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1)
    # A double click: the second request carries the cookie from before the first answer.
    second_tab = app.test_client()
    cookie = first_tab.get_cookie("minsheng_session")
    second_tab.set_cookie("minsheng_session", cookie.value)
    data = {
        "csrf_token": csrf_from(page),
        "token": token,
        "kind": "complaint",
        "subject": "噪音",
        "body": "楼下酒吧每晚唱歌到凌晨两点",
    }
    first = first_tab.post("/complain", data=data, follow_redirects=True)
    second = second_tab.post("/complain", data=data, follow_redirects=True)
    assert first.status_code == second.status_code == 200
    code = re.compile(r'id="query-code">([^<]+)<')
    assert code.search(first.get_data(as_text=True)).group(1) == code.search(
        second.get_data(as_text=True)
    ).group(1)
    with runtime.sessions() as s:
        assert len(s.scalars(select(Case)).all()) == 1


def test_progress_lookup_is_generic_and_slows_down_guessing(client: Any) -> None:
    number, code = submit_complaint(client, "学校门口早上堵车严重，希望增加交警疏导。")

    def lookup(tracking_number: str, query_code: str) -> Any:
        token = csrf_from(client.get("/track").get_data(as_text=True))
        data = {"csrf_token": token, "tracking_number": tracking_number, "query_code": query_code}
        return client.post("/track", data=data)

    def errors(r: Any) -> list[str]:
        return re.findall(r'class="flash error"[^>]*>([^<]+)<', r.get_data(as_text=True))

    wrong_code = lookup(number, "ZZZZZZ")
    wrong_number = lookup("MS-2026-999999", code)
    assert wrong_code.status_code == wrong_number.status_code == 404
    assert errors(wrong_code) == errors(wrong_number) and errors(wrong_code)
    for _ in range(4):
        lookup(number, "ZZZZZZ")
    # Five wrong codes for this number from this address: now even the right code waits.
    assert lookup(number, code).status_code == 429
