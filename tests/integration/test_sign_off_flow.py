"""The head's sign-off (自律) through the board, on both databases: with
[supervision] reply_sign_off on, a handler's reply waits as a draft the citizen does not see
until the department head signs it off; the head may return it with a note; nobody else signs;
the head's own reply goes out at once. With the flag off nothing changes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.integration.helpers import flashes, post_form
from tests.integration.test_extension_requests import case_of, dispatched
from tests.integration.test_rejection_and_send_back import _track
from triage.models import ReplyState, Status

DRAFT = "已安排维修班组于本周五前更换路灯灯具。"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, supervision={"reply_sign_off": True})


def reply(client: Any, number: str, text: str = DRAFT) -> list[str]:
    r = post_form(
        client, f"/board/cases/{number}", f"/board/cases/{number}/reply", {"reply-text": text}
    )
    assert r.status_code == 302
    return flashes(client.get(r.headers["Location"]).get_data(as_text=True))


def sign(client: Any, number: str, reply_id: int, how: str = "sign-off", **data: str) -> Any:
    return post_form(
        client,
        f"/board/cases/{number}",
        f"/board/cases/{number}/replies/{reply_id}/{how}",
        data,
    )


def test_a_draft_goes_out_only_when_the_head_signs_it(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, code = dispatched(client, login_as, runtime)
    urban = login_as("urban")
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "提交负责人签发" in page
    said = reply(urban, number)
    assert any("签发" in f for f in said), said
    case = case_of(runtime, number)
    draft = case.pending_draft
    assert case.status == Status.IN_PROGRESS and draft is not None
    assert case.events[-1].action == "reply_drafted"
    assert case.events[-1].detail == {"reply_id": draft.id}

    # The citizen sees no reply yet; the handler sees the draft and no second reply form.
    track = _track(client, number, code)
    assert "更换路灯灯具" not in track and "status-in_progress" in track
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="draft-reply"' in page and 'id="reply-form"' not in page
    assert 'id="sign-off-form"' not in page

    head = login_as("urban-head")
    listing = head.get("/board/sign-off").get_data(as_text=True)
    assert number in listing
    page = head.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="sign-off-form"' in page and "负责人" in page
    r = sign(head, number, draft.id)
    assert r.status_code == 302
    case = case_of(runtime, number)
    sent = case.latest_reply
    assert (case.status, sent.state, sent.signed_off_at) == (
        Status.REPLIED,
        ReplyState.SENT,
        case.replied_at,
    )
    assert case.events[-1].action == "reply_signed_off" and case.events[-1].public
    track = _track(client, number, code)
    assert "更换路灯灯具" in track and "status-replied" in track
    assert number not in head.get("/board/sign-off").get_data(as_text=True)
    assert "刘局长 签发" in head.get(f"/board/cases/{number}").get_data(as_text=True)


def test_only_the_departments_head_signs(client: Any, login_as: Any, runtime: Any) -> None:
    number, _code = dispatched(client, login_as, runtime)
    urban = login_as("urban")
    reply(urban, number)
    draft_id = case_of(runtime, number).pending_draft.id
    assert sign(urban, number, draft_id).status_code == 403
    assert sign(login_as("supervisor"), number, draft_id).status_code == 403
    assert urban.get("/board/sign-off").status_code == 403
    other_head = login_as("transport-head")
    assert other_head.get(f"/board/cases/{number}").status_code == 404
    assert number not in other_head.get("/board/sign-off").get_data(as_text=True)
    page = other_head.get("/board/sign-off").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = other_head.post(
        f"/board/cases/{number}/replies/{draft_id}/sign-off", data={"csrf_token": token}
    )
    assert r.status_code == 404
    # Without a CSRF token even the head is refused.
    head = login_as("urban-head")
    r = head.post(f"/board/cases/{number}/replies/{draft_id}/sign-off", data={})
    assert r.status_code == 400
    case = case_of(runtime, number)
    assert case.status == Status.IN_PROGRESS and case.pending_draft is not None


def test_returned_with_a_note_then_rewritten(client: Any, login_as: Any, runtime: Any) -> None:
    number, code = dispatched(client, login_as, runtime)
    urban = login_as("urban")
    reply(urban, number)
    draft_id = case_of(runtime, number).pending_draft.id
    head = login_as("urban-head")
    r = sign(head, number, draft_id, "return", **{"return-note": ""})
    said = flashes(head.get(r.headers["Location"]).get_data(as_text=True))
    assert any("修改" in f for f in said), said
    assert case_of(runtime, number).pending_draft is not None
    sign(head, number, draft_id, "return", **{"return-note": "请写明具体完成日期"})
    case = case_of(runtime, number)
    assert case.pending_draft is None and case.status == Status.IN_PROGRESS
    assert case.events[-1].action == "reply_returned"
    assert case.events[-1].reason == "请写明具体完成日期"
    page = urban.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "请写明具体完成日期" in page and 'id="reply-form"' in page
    assert "请写明具体完成日期" not in _track(client, number, code)
    reply(urban, number, "已于11月27日更换路灯灯具，恢复照明。")
    assert case_of(runtime, number).pending_draft is not None


def test_the_heads_own_reply_goes_out_at_once(client: Any, login_as: Any, runtime: Any) -> None:
    number, code = dispatched(client, login_as, runtime)
    head = login_as("urban-head")
    page = head.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "提交负责人签发" not in page
    reply(head, number, "路灯已修复。")
    case = case_of(runtime, number)
    assert case.status == Status.REPLIED
    assert case.latest_reply.signed_off_by_id == case.latest_reply.author_id
    assert "路灯已修复" in _track(client, number, code)
