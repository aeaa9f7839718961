"""Faults a red-team tester found in the phone intake (issue #9), each as the user meets it,
on both databases: a call logged at the desk as a repeat call (催办) or a reopen comes back
with the next day's export; an export without call ids keys a local number by its spelling;
an area code set after going live; the 'received' notice of an imported call dated at the
call; the ="…" text idiom of call-centre CSVs; an open case beyond the desk's history list;
a name given on a repeat call; the sign-in prompt's language; a repeat call about a hazard."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from tests.conftest import base_config, csrf_from, login, make_settings
from tests.integration.test_operator_desk import _close
from triage.models import CallKey, Case, CaseEvent
from web.call_import_run import run_import

HEADER = "工单号,来电号码,来电时间,通话时长,诉求内容,话务员\r\n"
TZ = ZoneInfo("Asia/Shanghai")


def _count(runtime: Any) -> int:
    with runtime.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Case)))


def _import(runtime: Any, text: str, name: str = "calls.csv") -> dict[str, int]:
    report = run_import(
        runtime, text.encode("utf-8"), name, mapping=None, actor="test", enrich=False
    )
    return dict(report.counts)


def _number(runtime: Any, external_id: str) -> str:
    with runtime.sessions() as s:
        return str(s.scalar(select(Case.tracking_number).where(Case.external_id == external_id)))


def _desk(operator: Any, data: dict[str, Any]) -> Any:
    page = operator.get("/board/calls/new").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page)
    form = {
        "csrf_token": csrf_from(page),
        "token": token.group(1) if token else "",
        "kind": "complaint",
        "subject": "菜市场占道",
        "body": "来电人说菜市场门口仍然占道经营",
        **data,
    }
    return operator.post("/board/calls/new", data=form)


def _app_with(tmp_path: Path, db_url: str, sub: str, **sections: Any) -> Any:
    from web import create_app

    raw_app = {
        **base_config()["app"],
        "instance_dir": str(tmp_path / sub),
        "secret_key": "test-key",
    }
    raw_app.update(sections.pop("app", {}))
    settings = make_settings(tmp_path / sub, db_url, app=raw_app, **sections)
    return create_app(settings, TESTING=True)


# -- every call id seen is known to the import and the desk ---------------------------------


@pytest.mark.parametrize("about", ["urge", "reopen"])
def test_a_repeat_call_or_reopen_logged_with_its_call_id_is_not_imported_again(
    runtime: Any, login_as: Any, about: str
) -> None:
    """A 催办 (or a reopen) logged at the desk with its call id: the next day's export, which
    holds that call, creates nothing new; the desk, given the call id again, says it is
    logged on that case."""
    now = datetime.now(TZ) - timedelta(minutes=5)
    first = now - timedelta(hours=2)
    row1 = f"C-1,13600136000,{first:%Y-%m-%d %H:%M},60,菜市场占道经营,D1\r\n"
    assert _import(runtime, HEADER + row1)["registered"] == 1
    number = _number(runtime, "C-1")
    if about == "reopen":
        _close(runtime, number)
    operator = login_as("operator")
    r = _desk(operator, {"phone": "136 0013 6000", "about": f"{about}:{number}", "call_id": "C-2"})
    assert r.status_code == 302 and r.headers["Location"].endswith(number)
    before = _count(runtime)
    row2 = f"C-2,13600136000,{now:%Y-%m-%d %H:%M},45,菜市场仍然占道,D1\r\n"
    counts = _import(runtime, HEADER + row1 + row2)
    assert _count(runtime) == before, counts
    assert counts["registered"] == 0 and counts["duplicates"] == 2
    # The desk again with the same call id: already logged, on that case.
    r = _desk(operator, {"phone": "13600136000", "about": "new", "call_id": "C-2"})
    assert r.status_code == 302 and r.headers["Location"].endswith(number)
    assert _count(runtime) == before


def test_a_call_id_already_imported_is_not_logged_again_at_the_desk(
    runtime: Any, login_as: Any
) -> None:
    at = datetime.now(TZ) - timedelta(hours=1)
    _import(runtime, HEADER + f"C-9,13600136000,{at:%Y-%m-%d %H:%M},60,路灯不亮,D1\r\n")
    number = _number(runtime, "C-9")
    before = _count(runtime)
    operator = login_as("operator")
    r = _desk(operator, {"phone": "13600136000", "about": f"urge:{number}", "call_id": "C-9"})
    assert r.status_code == 302 and r.headers["Location"].endswith(number)
    with runtime.sessions() as s:
        urges = s.scalar(select(Case.urge_count).where(Case.tracking_number == number))
    assert urges == 0 and _count(runtime) == before


def test_migration_0029_keeps_the_call_ids_of_earlier_repeat_calls(
    runtime: Any, login_as: Any
) -> None:
    """Repeat calls logged before the call-key store: the upgrade finds their call ids on the
    events, so their calls in an export are duplicates too; the downgrade drops the store."""
    from alembic import command
    from sqlalchemy import inspect

    from web.db import alembic_config, upgrade

    at = datetime.now(TZ) - timedelta(hours=2)
    _import(runtime, HEADER + f"M-1,13600136000,{at:%Y-%m-%d %H:%M},60,井盖丢失,D1\r\n")
    number = _number(runtime, "M-1")
    operator = login_as("operator")
    r = _desk(operator, {"phone": "13600136000", "about": f"urge:{number}", "call_id": "M-2"})
    assert r.status_code == 302
    engine = runtime.engine
    command.downgrade(alembic_config(engine), "0028")
    assert "call_keys" not in inspect(engine).get_table_names()
    upgrade(engine)
    with runtime.sessions() as s:
        kept = s.execute(select(CallKey.key, CallKey.case_id, CallKey.event_id)).all()
        event_id = s.scalar(select(CaseEvent.id).where(CaseEvent.action == "urged"))
        case_id = s.scalar(select(Case.id).where(Case.tracking_number == number))
    assert [tuple(k) for k in kept] == [("M-2", case_id, event_id)]
    before = _count(runtime)
    later = datetime.now(TZ) - timedelta(minutes=3)
    counts = _import(runtime, HEADER + f"M-2,13600136000,{later:%Y-%m-%d %H:%M},60,还没修,D1\r\n")
    assert counts["duplicates"] == 1 and _count(runtime) == before


# -- a call without call id is keyed by the caller's main number ---------------------------


def test_an_overlapping_export_without_call_ids_keys_the_callers_main_number(
    tmp_path: Path, db_url: str
) -> None:
    """[app] area_code = "010": 8765 4321 and 010-8765 4321 (or with an extension) at the same
    time are one call, in any export; a file imported before the key was the main number's
    (its key the number as written) creates nothing new either, once `minsheng init` ran."""
    from web.cli import _initialise

    app = _app_with(tmp_path, db_url, "k", app={"area_code": "010"})
    rt = app.extensions["minsheng"]
    at = datetime.now(TZ) - timedelta(hours=3)
    a = _import(rt, HEADER + f",8765 4321,{at:%Y-%m-%d %H:%M},60,东门井盖丢失,B1\r\n")
    assert a["registered"] == 1
    b = _import(rt, HEADER + f",010-8765 4321,{at:%Y/%m/%d %H:%M}:00,60,东门井盖丢失,B1\r\n")
    assert b["registered"] == 0 and b["duplicates"] == 1, b
    c = _import(rt, HEADER + f",010-87654321 转 123,{at:%Y-%m-%d %H:%M},60,东门井盖丢失,B1\r\n")
    assert c["registered"] == 0 and c["duplicates"] == 1, c
    # A case imported under the old key (the number as written): init re-keys it.
    old = f"{at + timedelta(minutes=1):%Y-%m-%d %H:%M}"
    assert _import(rt, HEADER + f",8765 4322,{old},60,西门路灯不亮,B1\r\n")["registered"] == 1
    with rt.sessions() as s, s.begin():
        case = s.scalars(select(Case).where(Case.contact_phone == "87654322")).one()
        case.external_id = case.external_id.replace("call:01087654322@", "call:87654322@")
    _initialise(rt, lambda user: None)
    again = _import(rt, HEADER + f",8765 4322,{old},60,西门路灯不亮,B1\r\n")
    rt.engine.dispose()
    assert again["registered"] == 0 and again["duplicates"] == 1, again


def test_setting_the_area_code_later_rekeys_local_number_callers(
    tmp_path: Path, db_url: str
) -> None:
    """An office sets [app] area_code after going live: `minsheng init` makes the keys of
    the cases with a local number again, so the caller's earlier cases are found by the
    number with its area code (and again when the setting changes back)."""
    from web.cli import _initialise

    before = _app_with(tmp_path, db_url, "a")
    rt_a = before.extensions["minsheng"]
    _initialise(rt_a, lambda user: None)
    at = datetime.now(TZ) - timedelta(days=2)
    row = f"K-1,8765 4321,{at:%Y-%m-%d %H:%M},60,东门井盖丢失,B1\r\n"
    assert _import(rt_a, HEADER + row)["registered"] == 1
    history = "/board/calls/history?phone="
    operator = login(before.test_client(), "operator")
    assert operator.get(history + "8765%204321").get_json()["total"] == 1
    rt_a.engine.dispose()

    after = _app_with(tmp_path, db_url, "b", app={"area_code": "010"})
    rt_b = after.extensions["minsheng"]
    _initialise(rt_b, lambda user: None)
    operator = login(after.test_client(), "operator")
    assert operator.get(history + "010-8765%204321").get_json()["total"] == 1
    assert operator.get(history + "8765%204321").get_json()["total"] == 1
    rt_b.engine.dispose()


# -- a repeat call about a hazard ----------------------------------------------------------


def _due(runtime: Any, number: str) -> tuple[bool, datetime, list[CaseEvent]]:
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        due = case.triage_due_at if case.status == "triage" else case.due_at
        assert due is not None
        flagged = [e for e in case.events if e.action == "flagged_urgent"]
        s.expunge_all()
        return case.urgent, due if due.tzinfo else due.replace(tzinfo=UTC), flagged


@pytest.mark.parametrize("how", ["ticked", "hazard in the note"])
def test_a_repeat_call_about_a_hazard_gets_the_urgent_deadline(
    runtime: Any, login_as: Any, how: str
) -> None:
    """A caller rings again about their open case: now there is a gas smell. Ticked urgent
    by the operator, or only said in the note (燃气泄漏, the hazard rules of a new case): the
    case is urgent with the hour-level deadline, and the audit log says so."""
    at = datetime.now(TZ) - timedelta(minutes=30)
    _import(runtime, HEADER + f"G-1,13600136000,{at:%Y-%m-%d %H:%M},60,小区地下室有异味,D1\r\n")
    number = _number(runtime, "G-1")
    urgent, due, _flagged = _due(runtime, number)
    assert not urgent and due > datetime.now(UTC) + timedelta(hours=2)
    operator = login_as("operator")
    data = {"phone": "13600136000", "about": f"urge:{number}", "subject": "再次来电"}
    if how == "ticked":
        data |= {"urgent": "y", "body": "来电人说味道更浓了"}
    else:
        data |= {"body": "来电人说地下室燃气泄漏味道很浓"}
    assert _desk(operator, data).status_code == 302
    urgent, due, flagged = _due(runtime, number)
    assert urgent is True
    assert due <= datetime.now(UTC) + timedelta(hours=2), f"urgent case due {due}"
    assert len(flagged) == 1 and flagged[0].detail.get("triage_due_at")


def test_an_urgent_repeat_call_brings_a_departments_deadline_forward(
    client: Any, runtime: Any, login_as: Any
) -> None:
    from tests.integration.test_operator_desk import _dispatch

    at = datetime.now(TZ) - timedelta(minutes=30)
    _import(runtime, HEADER + f"G-2,13600136000,{at:%Y-%m-%d %H:%M},60,楼道里有异味,D1\r\n")
    number = _number(runtime, "G-2")
    _dispatch(runtime, number, "urban")
    _urgent, due_before, _f = _due(runtime, number)
    operator = login_as("operator")
    data = {
        "phone": "13600136000",
        "about": f"urge:{number}",
        "urgent": "y",
        "body": "来电人说楼道里味道更浓了",
    }
    assert _desk(operator, data).status_code == 302
    urgent, due, flagged = _due(runtime, number)
    assert urgent and due < due_before and due <= datetime.now(UTC) + timedelta(hours=3)
    assert flagged[0].detail.get("due_at")


# -- the ="…" text idiom of call-centre CSVs -----------------------------------------------


def test_the_excel_text_idiom_is_read_as_its_text_in_every_cell(runtime: Any) -> None:
    """Call-centre systems write ="13800138000" so that Excel keeps numbers as text: the
    number is a number, the call id the same key as in a plain export."""
    at = datetime.now(TZ) - timedelta(hours=1)
    text = HEADER + f'="GD0001",="13800138000",{at:%Y-%m-%d %H:%M},="60",路灯不亮,="A1"\r\n'
    counts = _import(runtime, text)
    assert counts["registered"] == 1 and counts["rejected"] == 0, counts
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.external_id == "GD0001")).one()
        assert case.contact_phone == "13800138000"
    plain = HEADER + f"GD0001,13800138000,{at:%Y-%m-%d %H:%M},60,路灯不亮,A1\r\n"
    assert _import(runtime, plain)["duplicates"] == 1


# -- the audit log's times ----------------------------------------------------------------


def test_the_received_notice_of_an_imported_call_is_logged_when_queued(
    tmp_path: Path, db_url: str
) -> None:
    """A call from 3 days ago imported now: the case is received at the call, its 'received'
    SMS is queued now, and the timeline says so (not days before it happened)."""
    app = _app_with(tmp_path, db_url, "s", sms={"url": "http://127.0.0.1:9/send"})
    rt = app.extensions["minsheng"]
    at = datetime.now(TZ) - timedelta(days=3)
    started = datetime.now(UTC)
    row = f"S-1,13800138000,{at:%Y-%m-%d %H:%M},60,路灯不亮,A1\r\n"
    assert _import(rt, HEADER + row)["registered"] == 1
    with rt.sessions() as s:
        received = s.scalar(select(CaseEvent.at).where(CaseEvent.action == "received"))
        queued = s.scalar(select(CaseEvent.at).where(CaseEvent.action == "sms_queued"))
    rt.engine.dispose()
    assert received is not None and queued is not None
    received, queued = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (received, queued))
    assert received < started - timedelta(days=2)
    assert queued >= started - timedelta(seconds=5), f"sms_queued dated {queued}"


# -- an open case beyond the desk's history list ---------------------------------------------


def test_the_desk_offers_an_older_open_case_for_urging(runtime: Any, login_as: Any) -> None:
    """A frequent caller: one open case, then five newer ones closed or rejected. The desk
    lists the open case first (beyond its five newest) and offers it for 催办, and asks
    before opening a new case when the operator did not say what the call is about."""
    now = datetime.now(TZ)
    lines = [
        f"H-{i},13700137000,{now - timedelta(days=20 - i):%Y-%m-%d %H:%M},60,第{i}件事情,A1"
        for i in range(6)
    ]
    assert _import(runtime, HEADER + "\r\n".join(lines) + "\r\n")["registered"] == 6
    with runtime.sessions() as s, s.begin():
        for c in s.scalars(select(Case).where(Case.external_id != "H-0")):
            c.reject("supervisor", datetime.now(UTC), "重复", public_reason="")
    open_number = _number(runtime, "H-0")
    operator = login_as("operator")
    found = operator.get("/board/calls/history?phone=13700137000").get_json()
    assert found["cases"][0]["number"] == open_number and len(found["cases"]) == 6
    assert [ch["value"] for ch in found["cases"][0]["choices"]] == [f"urge:{open_number}"]
    page = operator.get("/board/calls/new?phone=13700137000").get_data(as_text=True)
    assert f'value="urge:{open_number}"' in page
    before = _count(runtime)
    r = _desk(operator, {"phone": "13700137000"})
    assert r.status_code == 200 and _count(runtime) == before  # asked, nothing logged


# -- library prompts in the page's language ------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_sign_in_prompt_is_in_the_pages_language(client: Any, lang: str) -> None:
    """An operator who opens the desk before signing in is sent to the sign-in page with a
    prompt in the page's language, not Flask-Login's English one."""
    page = client.get(f"/board/calls/new?lang={lang}", follow_redirects=True).get_data(as_text=True)
    assert "Please log in to access this page." not in page
    if lang == "zh":
        assert 'lang="zh' in page and "请先登录再查看此页面。" in page
    else:
        assert "Please sign in to see this page." in page


# -- a name given on a repeat call -----------------------------------------------------------


def test_a_name_given_on_a_repeat_call_is_masked_for_observers_and_in_the_export(
    runtime: Any, login_as: Any
) -> None:
    """The export had no name; on the repeat call the caller gives it and the operator
    types it in the name field (and in the note). Observers see it masked on the case page
    and in the masked export (also where the case's own text named them); staff see it."""
    import json

    from triage.export import iter_records

    at = datetime.now(TZ) - timedelta(hours=3)
    body = "欧阳娜娜反映电梯经常停运"
    _import(runtime, HEADER + f"N-1,13600136000,{at:%Y-%m-%d %H:%M},60,{body},D1\r\n")
    number = _number(runtime, "N-1")
    operator = login_as("operator")
    data = {
        "phone": "13600136000",
        "name": "欧阳娜娜",
        "about": f"urge:{number}",
        "subject": "欧阳娜娜再次来电",
        "body": "欧阳娜娜说电梯还是坏的",
    }
    assert _desk(operator, data).status_code == 302
    observer = login_as("observer")
    page = observer.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "欧阳娜娜" not in page and "电梯还是坏的" in page
    with runtime.sessions() as s:
        masked = json.dumps(list(iter_records(s, TZ, masked=True)), ensure_ascii=False)
        clear = json.dumps(list(iter_records(s, TZ, masked=False)), ensure_ascii=False)
    assert "欧阳娜娜" not in masked and "电梯经常停运" in masked
    assert "欧阳娜娜" in clear
    assert "来电人：" in page  # the name given, masked
    staff = login_as("supervisor")
    page = staff.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "欧阳娜娜说电梯还是坏的" in page and "来电人：欧阳娜娜" in page
