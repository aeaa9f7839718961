"""Input as people really type it: full-width digits, separators, short Chinese, control
characters; the operator's form says what is wrong as specifically as the citizen's."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import csrf_from
from tests.integration.helpers import flashes, post_form, submit_complaint
from triage.models import Attachment, Case

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


def _post(client: Any, **fields: Any) -> Any:
    page = client.get("/complain").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1)
    data = {
        "csrf_token": csrf_from(page),
        "token": token,
        "kind": "complaint",
        "subject": "路灯不亮",
        "body": "明德路路灯坏了三个星期",
        **fields,
    }
    return client.post("/complain", data=data, content_type="multipart/form-data")


def _errors(r: Any) -> str:
    return " ".join(re.findall(r'class="error"[^>]*>([^<]+)<', r.get_data(as_text=True)))


def test_full_width_phone_is_a_phone(client: Any, runtime: Any) -> None:
    assert _post(client, phone="１３８００１３８０００").status_code == 302
    assert _post(client, phone="+86 138-0013-8001").status_code == 302
    with runtime.sessions() as s:
        assert sorted(s.scalars(select(Case.contact_phone))) == ["13800138000", "13800138001"]


@pytest.mark.parametrize(
    "phone", ["-----", "( ) ( )", "12345", "+1", "电话号码", "138001380001234"]
)
def test_what_is_not_a_phone_is_refused_with_the_reason(client: Any, phone: str) -> None:
    r = _post(client, phone=phone)
    assert r.status_code == 400
    assert "13800138000" in _errors(r)  # the message shows what a phone looks like


def test_lengths_count_what_is_stored(client: Any, runtime: Any) -> None:
    r = _post(client, body="a    ")
    assert r.status_code == 400 and "4" in _errors(r)
    r = _post(client, body="\u3000\u3000路灯\x00\u3000", subject="  \x1b ")
    assert r.status_code == 400
    r = _post(client, body="\u3164\u3164\u3164\u3164\u2800\u2800")
    assert r.status_code == 400  # looks like nothing, is nothing
    assert _post(client, body="路灯不亮", subject="路灯").status_code == 302
    with runtime.sessions() as s:
        assert s.scalars(select(Case.body)).all() == ["路灯不亮"]


def test_control_and_bidi_characters_never_reach_storage(client: Any, runtime: Any) -> None:
    r = _post(
        client,
        subject="噪音\x1b[2J扰民",
        body="酒吧\x00每晚\u202e唱歌\r\n到两点",
        name="王\x07小明",
        attachments=[
            (io.BytesIO(PNG), "a.png\x00.html"),
            (io.BytesIO(PNG + b"2"), "photo\u202egnp.exe"),
        ],
    )
    assert r.status_code == 302
    with runtime.sessions() as s:
        case = s.scalars(select(Case)).one()
        names = sorted(s.scalars(select(Attachment.filename)))
    # A terminal escape goes whole, its parameters too: nothing of "[2J" is left.
    assert case.subject == "噪音扰民" and case.body == "酒吧每晚唱歌\n到两点"
    assert case.contact_name == "王小明"
    assert names == ["a.png.html.png", "photognp.exe.png"]


def test_an_attachment_downloads_under_a_safe_name(client: Any, login_as: Any) -> None:
    number, _ = submit_complaint(
        client, "路灯坏了，附照片", attachments=[(io.BytesIO(PNG), "灯\x00.png\u202e.html")]
    )
    supervisor = login_as("supervisor")
    page = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    link = re.search(r'href="(/board/attachments/\d+)"', page).group(1)
    r = supervisor.get(link)
    assert r.status_code == 200 and r.data == PNG
    assert r.headers["Content-Type"] == "image/png"
    disposition = r.headers.get("Content-Disposition", "")
    assert "\x00" not in disposition and "\u202e" not in disposition


def test_full_width_tracking_number_and_code_find_the_case(client: Any) -> None:
    number, code = submit_complaint(client, "学校门口早上堵车严重，希望增加交警疏导。")
    wide = str.maketrans(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-",
        "０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ－",
    )
    page = client.get("/track").get_data(as_text=True)
    r = client.post(
        "/track",
        data={
            "csrf_token": csrf_from(page),
            "tracking_number": f" {number.translate(wide)} ",
            "query_code": code.lower().translate(wide),
        },
    )
    assert r.status_code == 200
    assert number in r.get_data(as_text=True)


def test_operator_form_says_what_is_wrong(login_as: Any) -> None:
    operator = login_as("operator")
    r = post_form(
        operator,
        "/board/calls/new",
        "/board/calls/new",
        {"kind": "complaint", "subject": " ", "body": "a  ", "phone": "-----"},
    )
    assert r.status_code == 400
    errors = _errors(r)
    assert "标题" in errors and "4" in errors and "13800138000" in errors
    r = post_form(
        operator,
        "/board/calls/new",
        "/board/calls/new",
        {"kind": "complaint", "subject": "燃气", "body": "路灯不亮", "phone": "８７６５４３２１"},
    )
    assert r.status_code == 302


def test_small_things_a_user_notices(client: Any, login_as: Any) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.content_type.startswith("image/")
    missing = client.get("/no-such-page").get_data(as_text=True)
    assert 'href="/"' in missing
    staff = login_as("urban")
    page = staff.get("/no-such-page").get_data(as_text=True)
    assert 'href="/board/"' in page
    assert flashes(page) == []


def test_the_public_form_types_its_contact_fields(client: Any) -> None:
    """The contact fields say what they hold, as browsers, password managers and scripts
    filling the form by field type read it (the shared web-form check does): the phone a
    tel, the email an email. The form is sent unchecked by the browser (novalidate: its
    check refuses 张三@example.cn, which the office can write to); the server checks it."""
    html = client.get("/complain").get_data(as_text=True)
    form = re.search(r"<form[^>]*complain[^>]*>", html)
    assert form and "novalidate" in form.group(0)
    email = re.search(r'<input[^>]*name="email"[^>]*>', html)
    phone = re.search(r'<input[^>]*name="phone"[^>]*>', html)
    assert email and 'type="email"' in email.group(0)
    assert phone and 'type="tel"' in phone.group(0)
