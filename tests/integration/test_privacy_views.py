"""Personal data stays masked wherever masked users look: pages, search and exports; form
tokens stay secret; receipts belong to the browser that sent the form."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from tests.conftest import csrf_from
from tests.integration.helpers import submit_complaint, submit_complaint_with_receipt
from triage.models import Case
from web.cli import main

SIGNED_BODY = (
    "The fire exit of the Riverside gym has been locked for a week.\n"
    "Call me on +86 139-1234-5678 or write to erik.lindqvist@example.se.\n"
    "My landlord's number is (010) 8765 4321, my ID 110101199003071234.\n"
    "Regards,\nE. Lindqvist"
)


def _case_page(client: Any, number: str) -> str:
    r = client.get(f"/board/cases/{number}")
    assert r.status_code == 200
    return r.get_data(as_text=True)


@pytest.fixture
def signed_case(client: Any) -> str:
    number, _ = submit_complaint(
        client,
        SIGNED_BODY,
        subject="Locked fire exit, E. Lindqvist",
        name="E. Lindqvist",
        phone="１３９ １２３４ ５６７８",
        email="erik.lindqvist@example.se",
    )
    return number


def test_observer_sees_no_personal_data_in_free_text(signed_case: str, login_as: Any) -> None:
    page = _case_page(login_as("observer"), signed_case)
    assert "fire exit of the Riverside gym" in page
    for secret in ("Lindqvist", "1234-5678", "12345678", "erik.lindqvist", "8765 4321", "19900307"):
        assert secret not in page, secret
    assert "139****5678" in page
    supervisor_page = _case_page(login_as("supervisor"), signed_case)
    assert "E. Lindqvist" in supervisor_page and "13912345678" in supervisor_page


def test_observer_can_only_search_what_they_see(signed_case: str, login_as: Any) -> None:
    def found(client: Any, q: str) -> bool:
        r = client.get("/board/cases", query_string={"q": q})
        assert r.status_code == 200
        return signed_case in r.get_data(as_text=True)

    observer, supervisor = login_as("observer"), login_as("supervisor")
    for probe in ("1391234", "13912345", "Lindqvist", "erik.lindqvist", "19900307", "8765"):
        assert not found(observer, probe), probe
    assert found(observer, "Riverside gym") and found(observer, "5678")
    # Staff who see the data find the caller by phone, however it is typed.
    for probe in ("13912345678", "139 1234 5678", "１３９１２３４５６７８", "Lindqvist"):
        assert found(supervisor, probe), probe


def test_percent_and_underscore_are_not_wildcards(client: Any, login_as: Any) -> None:
    plain, _ = submit_complaint(client, "明德路的路灯坏了三个星期了")
    with_percent, _ = submit_complaint(client, "物业费涨了50%，没有公示", subject="物业费_上涨")
    supervisor = login_as("supervisor")
    for q, expected, unexpected in (
        ("%", with_percent, plain),
        ("_", with_percent, plain),
        ("50%", with_percent, plain),
        ("路_", None, plain),
    ):
        page = supervisor.get("/board/cases", query_string={"q": q}).get_data(as_text=True)
        assert unexpected not in page, q
        if expected:
            assert expected in page, q


def test_odd_page_numbers_and_ids_are_not_errors(client: Any, login_as: Any) -> None:
    submit_complaint(client, "明德路的路灯坏了三个星期了")
    supervisor = login_as("supervisor")
    for page in ("99999999999999999999", "-1", "0", "abc", "1e9", "２", ""):
        r = supervisor.get("/board/cases", query_string={"page": page})
        assert r.status_code == 200, page
    for url in (
        "/board/attachments/99999999999999999999",
        "/board/attachments/2147483648",
        "/board/attachments/-1",
        "/board/cases/%00",
        "/board/cases/MS-2026-999999",
        "/receipt/MS-2026-000001?key=%00",
        "/track?number=%00",
    ):
        r = supervisor.get(url)
        assert r.status_code in (200, 400, 404), (url, r.status_code)


def test_masked_export_has_no_form_token_and_no_personal_data(
    signed_case: str, config_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cases.jsonl"
    result = CliRunner().invoke(
        main, ["export", "cases", "--config", str(config_file), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    record = json.loads(text.splitlines()[0])
    assert record["tracking_number"] == signed_case
    assert record["external_id"] is None and "form:" not in text
    for secret in ("Lindqvist", "erik.lindqvist", "1234-5678", "19900307"):
        assert secret not in text, secret
    assert "fire exit of the Riverside gym" in record["body"]


def test_csv_export_opens_in_excel_and_runs_no_formula(
    client: Any, config_file: Path, tmp_path: Path
) -> None:
    submit_complaint(client, '=HYPERLINK("http://evil.example","点我")', subject="@SUM(1+1)")
    out = tmp_path / "cases.csv"
    result = CliRunner().invoke(
        main,
        ["export", "cases", "--config", str(config_file), "--format", "csv", "--output", str(out)],
    )
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    row = next(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert row["body"].startswith("'=HYPERLINK") and row["subject"] == "'@SUM(1+1)"


def test_a_form_token_from_another_browser_shows_no_receipt(app: Any, runtime: Any) -> None:
    victim = app.test_client()
    page = victim.get("/complain").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1)
    data = {
        "csrf_token": csrf_from(page),
        "token": token,
        "kind": "complaint",
        "subject": "噪音",
        "body": "楼下酒吧每晚唱歌到凌晨两点",
    }
    r = victim.post("/complain", data=data, follow_redirects=True)
    victim_code = re.search(r'id="query-code">([^<]+)<', r.get_data(as_text=True)).group(1)

    attacker = app.test_client()
    attacker_page = attacker.get("/complain").get_data(as_text=True)
    r = attacker.post(
        "/complain",
        data={**data, "csrf_token": csrf_from(attacker_page), "body": "我想看看别人的查询码"},
        follow_redirects=True,
    )
    html = r.get_data(as_text=True)
    assert victim_code not in html
    with runtime.sessions() as s:
        bodies = sorted(s.scalars(select(Case.body)).all())
    assert bodies == sorted(["楼下酒吧每晚唱歌到凌晨两点", "我想看看别人的查询码"])


def test_two_forms_sent_at_once_from_one_browser_both_get_their_receipt(app: Any) -> None:
    browser = app.test_client()
    first = browser.get("/complain").get_data(as_text=True)
    second = browser.get("/complain").get_data(as_text=True)
    session_before = browser.get_cookie("minsheng_session").value
    answers = []
    for page, body in ((first, "明德路路灯不亮"), (second, "翠湖小区电梯坏了")):
        # Both requests carry the cookies of before either answer, as two tabs at once.
        browser.set_cookie("minsheng_session", session_before)
        answers.append(
            browser.post(
                "/complain",
                data={
                    "csrf_token": csrf_from(page),
                    "token": re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1),
                    "kind": "complaint",
                    "subject": body[:4],
                    "body": body,
                },
            )
        )
    for answer in answers:
        assert answer.status_code == 302
        # Neither answer rewrites the session: nothing one writes can undo the other.
        assert not any(
            h.startswith("minsheng_session=") for h in answer.headers.getlist("Set-Cookie")
        )
        assert "key=" not in answer.headers["Location"]  # no secret in addresses or logs
    receipts = [browser.get(a.headers["Location"]).get_data(as_text=True) for a in answers]
    numbers = {re.search(r'id="tracking-number">([^<]+)<', h).group(1) for h in receipts}
    codes = {re.search(r'id="query-code">([^<]+)<', h).group(1) for h in receipts}
    assert len(numbers) == 2 and len(codes) == 2
    # Another browser, without the receipt's cookie, sees nothing.
    assert app.test_client().get(f"/receipt/{numbers.pop()}").status_code == 404


def test_a_form_sent_again_after_editing_is_a_new_complaint(app: Any, runtime: Any) -> None:
    browser = app.test_client()
    page = browser.get("/complain").get_data(as_text=True)
    data = {
        "csrf_token": csrf_from(page),
        "token": re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1),
        "kind": "complaint",
        "subject": "噪音",
        "body": "楼下酒吧每晚唱歌到凌晨两点",
    }
    numbers = []
    for body in (
        "楼下酒吧每晚唱歌到凌晨两点",
        "改一下：楼下酒吧每晚唱到三点",
        "改一下：楼下酒吧每晚唱到三点",
    ):
        r = browser.post("/complain", data={**data, "body": body})
        numbers.append(r.headers["Location"].rsplit("/", 1)[1])
    assert numbers[0] != numbers[1] and numbers[1] == numbers[2]
    with runtime.sessions() as s:
        assert sorted(s.scalars(select(Case.body))) == sorted(
            ["楼下酒吧每晚唱歌到凌晨两点", "改一下：楼下酒吧每晚唱到三点"]
        )


def test_the_receipt_stops_showing_the_code(client: Any, runtime: Any) -> None:
    number, code, url = submit_complaint_with_receipt(client, "明德路路灯不亮三个星期")
    again = client.get(url)
    assert code in again.get_data(as_text=True)
    assert again.headers["Cache-Control"] == "no-store"
    with runtime.sessions() as s, s.begin():
        received = s.scalar(select(Case.received_at).where(Case.tracking_number == number))
        s.execute(
            update(Case)
            .where(Case.tracking_number == number)
            .values(received_at=received - timedelta(hours=1))
        )
    later = client.get(url).get_data(as_text=True)
    assert number in later and code not in later


def test_urgent_reasons_and_call_ids_are_masked_too(
    client: Any, login_as: Any, config_file: Path, tmp_path: Path
) -> None:
    number, _ = submit_complaint(
        client,
        "我叫张伟。安全出口被张伟家堵死了。楼道里13800138001电动车在充电。",
        subject="消防隐患",
        name="张伟",
        phone="13800138001",
    )
    page = _case_page(login_as("observer"), number)
    assert "安全出口" in page and "张伟" not in page and "13800138001" not in page
    operator = login_as("operator")
    form = operator.get("/board/calls/new").get_data(as_text=True)
    r = operator.post(
        "/board/calls/new",
        data={
            "csrf_token": csrf_from(form),
            "call_id": "13800138002-20261130-0001",
            "kind": "complaint",
            "subject": "路灯",
            "body": "明德路路灯不亮",
            "phone": "13800138002",
        },
    )
    assert r.status_code == 302
    out = tmp_path / "cases.jsonl"
    result = CliRunner().invoke(
        main, ["export", "cases", "--config", str(config_file), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    for secret in ("13800138001", "13800138002", "张伟"):
        assert secret not in text, secret
    assert "安全出口" in text


def test_the_submitting_browser_looks_its_case_up_whatever_others_guessed(app: Any) -> None:
    citizen = app.test_client()
    number, code = submit_complaint(citizen, "明德路路灯坏了三个星期")
    for i in range(12):  # strangers from several addresses lock the number
        stranger = app.test_client()
        page = stranger.get("/track").get_data(as_text=True)
        stranger.post(
            "/track",
            data={"csrf_token": csrf_from(page), "tracking_number": number, "query_code": "ZZZZZZ"},
            environ_base={"REMOTE_ADDR": f"127.0.9.{i}"},
        )
    fresh = app.test_client()
    page = fresh.get("/track").get_data(as_text=True)
    data = {"csrf_token": csrf_from(page), "tracking_number": number, "query_code": code}
    assert fresh.post("/track", data=data).status_code == 429
    page = citizen.get("/track").get_data(as_text=True)
    r = citizen.post("/track", data={**data, "csrf_token": csrf_from(page)})
    assert r.status_code == 200 and number in r.get_data(as_text=True)
