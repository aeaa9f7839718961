"""Faults a second red-team tester found in the phone intake (issue #9), each as the user
meets it, on both databases: Excel's leading-apostrophe text idiom ('GD0001) in a CSV
export; the dry run of an export holding a call the desk logged as a repeat call (催办);
the sign-in and password pages' keyboard focus."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta
from typing import Any

import openpyxl
from sqlalchemy import select

from tests.conftest import csrf_from, login
from tests.integration.test_phone_intake_faults import HEADER, TZ, _count, _desk, _import
from triage.models import Case
from web.call_import_run import run_import

# -- the leading-apostrophe text idiom --------------------------------------------------------


def test_an_apostrophe_call_id_is_the_same_call_as_in_the_xlsx_export(runtime: Any) -> None:
    """Call-centre CSVs keep ids and numbers as text for Excel with a leading apostrophe
    ('GD0001) as well as ="…": the call id is GD0001, so the same call in the XLSX export
    is a duplicate, not a second case."""
    at = datetime.now(TZ) - timedelta(hours=3)
    first = _import(
        runtime, HEADER + f"'GD0001,13800138000,{at:%Y-%m-%d %H:%M:%S},60,路灯不亮,A1\r\n"
    )
    assert first["registered"] == 1, first
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER.strip().split(","))
    sheet.append(
        ["GD0001", "13800138000", at.replace(tzinfo=None, microsecond=0), 60, "路灯不亮", "A1"]
    )
    buffer = io.BytesIO()
    book.save(buffer)
    report = run_import(
        runtime, buffer.getvalue(), "calls.xlsx", mapping=None, actor="test", enrich=False
    )
    assert report.counts["duplicates"] == 1 and report.counts["registered"] == 0, report.counts
    assert _count(runtime) == 1


def test_the_apostrophe_idiom_is_read_in_typed_cells_and_kept_in_free_text(runtime: Any) -> None:
    """'13800138000 is a phone number, '60 a duration, '2026-… a call time, 'A1 an
    operator; an apostrophe at the start of the caller's words (诉求内容) is theirs."""
    at = datetime.now(TZ) - timedelta(hours=2)
    text = HEADER + (
        f"'GD0002,'13800138000,'{at:%Y-%m-%d %H:%M:%S},'60,'老街' 路灯不亮,'A1\r\n"
        f"GD0003,'13900139000,{at:%Y-%m-%d %H:%M:%S},60,路灯不亮,A1\r\n"
    )
    counts = _import(runtime, text)
    assert counts["registered"] == 2 and counts["rejected"] == 0, counts
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.external_id == "GD0002")).one()
        assert case.contact_phone == "13800138000"
        assert case.body == "'老街' 路灯不亮"
        other = s.scalars(select(Case).where(Case.external_id == "GD0003")).one()
        assert other.contact_phone == "13900139000"


# -- the dry run and the desk's repeat calls ---------------------------------------------------


def test_the_dry_run_counts_a_call_the_desk_logged_as_a_duplicate(
    runtime: Any, login_as: Any
) -> None:
    """A repeat call logged at the desk with its call id (C-2) is known to the import
    (nothing new); the dry run of the same file says so too, instead of 'registered 1'."""
    at = datetime.now(TZ) - timedelta(hours=2)
    _import(runtime, HEADER + f"C-1,13600136000,{at:%Y-%m-%d %H:%M},60,菜市场占道经营,D1\r\n")
    with runtime.sessions() as s:
        number = s.scalar(select(Case.tracking_number).where(Case.external_id == "C-1"))
    answer = _desk(
        login_as("operator"),
        {"phone": "136 0013 6000", "about": f"urge:{number}", "call_id": "C-2"},
    )
    assert answer.status_code == 302
    now = datetime.now(TZ) - timedelta(minutes=1)
    text = HEADER + (
        f"C-2,13600136000,{now:%Y-%m-%d %H:%M},45,菜市场仍然占道,D1\r\n"
        f"C-3,13700137000,{now:%Y-%m-%d %H:%M},45,路灯不亮,D1\r\n"
    )
    dry = run_import(
        runtime, text.encode(), "c.csv", mapping=None, actor="test", dry_run=True, enrich=False
    ).counts
    assert (dry["registered"], dry["duplicates"]) == (1, 1), dry
    assert _count(runtime) == 1  # the dry run stored nothing
    real = _import(runtime, text)
    assert (real["registered"], real["duplicates"]) == (1, 1), real


# -- keyboard focus on the staff entry pages ---------------------------------------------------


def _focused(page: str) -> list[str]:
    """The names of the inputs of `page` that have the autofocus attribute."""
    return [
        re.search(r'name="([^"]+)"', tag).group(1)  # type: ignore[union-attr]
        for tag in re.findall(r"<input[^>]*>", page)
        if re.search(r"\sautofocus[\s>=/]", tag)
    ]


def test_the_sign_in_page_focuses_the_field_to_type_in(client: Any) -> None:
    """An operator whose session ended is sent from the desk to the sign-in page: typing
    goes to the username; after a wrong password (the username kept) to the password."""
    page = client.get("/board/calls/new", follow_redirects=True).get_data(as_text=True)
    assert _focused(page) == ["username"]
    answer = client.post(
        "/login",
        data={"csrf_token": csrf_from(page), "username": "operator", "password": "wrong-one"},
    )
    assert answer.status_code == 401
    again = answer.get_data(as_text=True)
    assert 'value="operator"' in again and _focused(again) == ["password"]
    empty = client.post(
        "/login", data={"csrf_token": csrf_from(again), "username": "", "password": "x"}
    )
    assert _focused(empty.get_data(as_text=True)) == ["username"]


def test_the_password_page_focuses_the_current_password(app: Any) -> None:
    """Changing one's password starts at the current password, also after an error (the
    password fields come back empty)."""
    staff = login(app.test_client(), "operator")
    page = staff.get("/account/password").get_data(as_text=True)
    assert _focused(page) == ["current"]
    answer = staff.post(
        "/account/password",
        data={"csrf_token": csrf_from(page), "current": "x", "new": "short", "repeat": "short"},
    )
    assert answer.status_code == 400
    assert _focused(answer.get_data(as_text=True)) == ["current"]
