"""The operators' desk and a caller's history: repeat calls (催办) on open cases, calls about
closed ones, the history lookup as the number is typed, the case page's history panel, the
caller key in exports, and migration 0010 on a populated database."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session, selectinload

from tests.conftest import analyze, csrf_from
from tests.integration.helpers import flashes, submit_complaint
from triage import system_reasons
from triage.callers import backfill_caller_keys, caller_key
from triage.export import iter_records
from triage.models import Base, Case, Department, Satisfaction
from web.db import make_engine, upgrade

PHONE = "13812345678"


def _desk(operator: Any, data: dict[str, Any]) -> Any:
    """Posts the desk's form as a browser would: with the token of the page it was shown on."""
    page = operator.get("/board/calls/new").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page)
    form = {
        "csrf_token": csrf_from(page),
        "token": token.group(1) if token else "",
        "kind": "complaint",
        "subject": "路灯又坏了",
        "body": "来电人说明德路路灯还是不亮",
        **data,
    }
    return operator.post("/board/calls/new", data=form)


def _case(runtime: Any, number: str) -> Case:
    """The case with its events, read in a session of its own (closed again: an open one
    would keep PostgreSQL from dropping the test's schema)."""
    with runtime.sessions() as s:
        case = s.scalars(
            select(Case).where(Case.tracking_number == number).options(selectinload(Case.events))
        ).one()
        s.expunge(case)
    return case


def _count(runtime: Any) -> int:
    with runtime.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Case)))


def _dispatch(runtime: Any, number: str, department: str) -> None:
    """Dispatches the case to `department`, as a supervisor would."""
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        dept = s.scalars(select(Department).where(Department.code == department)).one()
        due = runtime.settings.deadlines().handling_due(now, dept.code, case.urgent)
        if case.status in ("received", "triage"):
            case.assign(dept, "supervisor", now, due)
        else:
            case.transfer(dept, "supervisor", now, due, "测试转办")


def _close(runtime: Any, number: str) -> None:
    """Takes the case through reply and a satisfied return visit to closed."""
    _dispatch(runtime, number, "urban")
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        case.start("urban", now)
        case.reply("urban", now, "已修复。")
        case.record_visit(
            "supervisor", now, reached=True, solved=True, satisfaction=Satisfaction.SATISFIED
        )
        case.close("supervisor", now)


def test_a_repeat_call_about_an_open_case_is_urged_not_a_new_case(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _code = submit_complaint(client, "明德路路灯不亮已经一周", phone=PHONE)
    operator = login_as("operator")
    found = operator.get("/board/calls/history?phone=%2B86%20138-1234-5678").get_json()
    assert found["valid"] is True and found["total"] == 1
    (earlier,) = found["cases"]
    assert earlier["number"] == number and earlier["open"] is True
    assert [c["value"] for c in earlier["choices"]] == [f"urge:{number}"]
    assert PHONE not in json.dumps(found)

    before = _count(runtime)
    # Sent before the earlier cases showed: the desk asks instead of opening a second case.
    r = _desk(operator, {"phone": "138 1234 5678"})
    assert r.status_code == 200 and _count(runtime) == before
    assert any("open cases" in f or "未办结" in f for f in flashes(r.get_data(as_text=True)))

    page = operator.get("/board/calls/new").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1)
    data = {
        "csrf_token": csrf_from(page),
        "token": token,
        "phone": "１３８１２３４５６７８",
        "kind": "complaint",
        "subject": "催办路灯",
        "body": "第二次来电，路灯还是不亮",
        "about": f"urge:{number}",
        "callback": "y",
    }
    first = operator.post("/board/calls/new", data=data)
    again = operator.post("/board/calls/new", data=data)  # the same form sent twice
    assert first.status_code == again.status_code == 302
    assert first.headers["Location"].endswith(f"/board/cases/{number}")
    assert _count(runtime) == before
    case = _case(runtime, number)
    assert case.urge_count == 1
    (urged,) = [e for e in case.events if e.action == "urged"]
    assert "路灯还是不亮" in urged.reason and urged.detail["callback"] is True

    _dispatch(runtime, number, "urban")
    handler = login_as("urban")
    handler_page = handler.get(f"/board/cases/{number}").get_data(as_text=True)
    assert 'id="urge-count"' in handler_page and "催办" in handler_page
    assert "路灯还是不亮" in handler_page
    listed = handler.get("/board/cases").get_data(as_text=True)
    row = re.search(rf'<tr[^>]*data-case="{number}".*?</tr>', listed, re.S).group(0)
    assert "催办 1 次" in row


def test_a_call_about_a_closed_case_reopens_it_or_opens_a_linked_case(
    client: Any, login_as: Any, runtime: Any
) -> None:
    first, _ = submit_complaint(client, "幸福小区门口井盖松动", phone=PHONE)
    second, _ = submit_complaint(client, "幸福小区路面塌陷一个坑", phone="+86 138 1234 5678")
    _close(runtime, first)
    _close(runtime, second)
    operator = login_as("operator")
    found = operator.get(f"/board/calls/history?phone={PHONE}").get_json()
    choices = {c["number"]: [ch["value"] for ch in c["choices"]] for c in found["cases"]}
    assert choices[first] == [f"reopen:{first}", f"follow:{first}"]

    r = _desk(operator, {"phone": PHONE, "about": f"reopen:{first}", "body": "井盖还是松的"})
    assert r.status_code == 302
    case = _case(runtime, first)
    assert case.status == "in_progress" and case.rework_count == 1
    assert case.closed_at is None and case.due_at is not None
    assert case.events[-1].action == "reopened" and "井盖还是松的" in case.events[-1].reason

    before = _count(runtime)
    r = _desk(operator, {"phone": PHONE, "about": f"follow:{second}", "body": "坑旁边又塌了一块"})
    assert r.status_code == 302 and _count(runtime) == before + 1
    new_number = r.headers["Location"].rsplit("/", 1)[-1]
    new = _case(runtime, new_number)
    assert [e.detail.get("source") for e in new.events if e.action == "follows_up"] == [second]
    old = _case(runtime, second)
    assert old.status == "closed"
    assert [e.detail.get("into") for e in old.events if e.action == "follow_up_opened"] == [
        new_number
    ]

    # Another caller's case cannot be urged or reopened from this caller's call.
    stranger, _ = submit_complaint(client, "人民路噪音扰民", phone="13900001111")
    r = _desk(operator, {"phone": PHONE, "about": f"urge:{stranger}"})
    assert r.status_code == 400 and _case(runtime, stranger).urge_count == 0


def test_the_history_lookup_is_for_operators_and_supervisors_and_throttled(
    client: Any, login_as: Any, monkeypatch: Any
) -> None:
    submit_complaint(client, "明德路路灯不亮已经一周", phone=PHONE)
    url = f"/board/calls/history?phone={PHONE}"
    assert client.get(url).status_code == 302  # to the sign-in page
    for role in ("urban", "observer"):
        assert login_as(role).get(url).status_code == 403
    assert login_as("supervisor").get(url).get_json()["total"] == 1
    partial = login_as("supervisor").get("/board/calls/history?phone=1381").get_json()
    assert partial == {"valid": False, "total": 0, "more": False, "cases": []}

    import web.operator

    monkeypatch.setattr(web.operator, "LOOKUPS_PER_WINDOW", 3)
    operator = login_as("operator")
    codes = [operator.get(url).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_the_case_page_shows_the_callers_history_as_far_as_the_user_may_see(
    client: Any, login_as: Any, runtime: Any
) -> None:
    a, _ = submit_complaint(
        client, "明德路路灯不亮", phone="138 1234 5678", email="wang@example.com"
    )
    b, _ = submit_complaint(client, "河道有异味", phone="", email="Wang@Example.COM")
    c, _ = submit_complaint(
        client, "公交站牌倒了", subject="站牌倒了，电话13812345678", phone="+8613812345678"
    )
    other, _ = submit_complaint(client, "别人的投诉", phone="13900001111")
    _dispatch(runtime, a, "urban")
    _dispatch(runtime, b, "environment")
    _dispatch(runtime, c, "urban")

    page = login_as("supervisor").get(f"/board/cases/{a}").get_data(as_text=True)
    panel = page[page.index('id="caller-history"') :]
    assert b in panel and c in panel and other not in panel
    assert 'id="repeat-caller"' in page and "第1次" in page  # a came first
    page_c = login_as("supervisor").get(f"/board/cases/{c}").get_data(as_text=True)
    assert "第3次" in page_c

    handler = login_as("urban").get(f"/board/cases/{c}").get_data(as_text=True)
    panel = handler[handler.index('id="caller-history"') :]
    assert a in panel and b not in panel
    assert 'id="caller-history-hidden"' in panel

    observer = login_as("observer").get(f"/board/cases/{a}").get_data(as_text=True)
    panel = observer[observer.index('id="caller-history"') :]
    assert c in panel and "站牌倒了" in panel and "13812345678" not in panel


def test_the_export_has_the_caller_key_and_the_place_not_the_number(
    client: Any, runtime: Any
) -> None:
    submit_complaint(client, "明德路路灯不亮", phone="138 1234 5678", place="明德路12号")
    submit_complaint(client, "明德路路灯还是不亮", phone="+86 13812345678")
    submit_complaint(client, "匿名反映噪音", phone="", name="")
    with runtime.sessions() as s:
        records = list(iter_records(s, ZoneInfo("Asia/Shanghai"), masked=True))
    keys = [r["caller_key"] for r in records]
    assert keys[0] == keys[1] == caller_key(PHONE, "", runtime.secret) and keys[2] is None
    assert records[0]["place"] == "明德路12号" and records[0]["urge_count"] == 0
    assert PHONE not in json.dumps(records, ensure_ascii=False)


def test_the_public_form_takes_a_place_and_marks_required_fields(
    client: Any, login_as: Any
) -> None:
    page = client.get("/complain").get_data(as_text=True)
    assert 'id="required-legend"' in page
    for name in ("subject", "body"):
        tag = re.search(rf'<(?:input|textarea)[^>]*name="{name}"[^>]*>', page).group(0)
        assert "required" in tag and 'aria-required="true"' in tag
    place = re.search(r'<input[^>]*name="place"[^>]*>', page).group(0)
    assert "required" not in place and 'maxlength="200"' in place
    number, _ = submit_complaint(client, "路灯不亮很久了", place="  明德路　与人民路路口 ")
    case_page = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    assert re.search(r'id="case-place">明德路 与人民路路口<', case_page)
    r = client.post(
        "/complain",
        data={
            "csrf_token": csrf_from(page),
            "kind": "complaint",
            "subject": "路灯",
            "body": "路灯不亮很久了",
            "place": "路" * 201,
        },
    )
    assert r.status_code == 400 and "200" in r.get_data(as_text=True)


def test_without_javascript_the_look_up_button_shows_the_earlier_cases(
    client: Any, login_as: Any
) -> None:
    number, _ = submit_complaint(client, "明德路路灯不亮已经一周", phone=PHONE)
    operator = login_as("operator")
    page = operator.get("/board/calls/new").get_data(as_text=True)
    assert 'id="lookup-button"' in page and "desk.js" in page and "<script>" not in page
    r = operator.post(
        "/board/calls/new",
        data={"csrf_token": csrf_from(page), "phone": "138 1234 5678", "lookup": "1"},
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and f'value="urge:{number}"' in html
    assert 'class="error"' not in html  # a lookup is not a failed submission


def test_migration_0010_on_a_populated_database(empty_url: str) -> None:
    engine = make_engine(empty_url)
    upgrade(engine, "0009")
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with engine.begin() as conn:
        for i, (phone, email) in enumerate(
            [("138 1234 5678", ""), ("", "Wang@Example.com"), ("", ""), ("+8613812345678", "")]
        ):
            conn.execute(
                text(
                    "INSERT INTO cases (tracking_number, query_code_hash, channel, external_id,"
                    " kind, status, subject, body, contact_name, contact_phone, contact_email,"
                    " received_at, created_at, alternatives, model_version, urgent,"
                    ' urgent_reasons, "similar", rejection_reason, rejection_code,'
                    " public_reason, referred_to, masked_text, sent_back_count, rework_count,"
                    " version, risk, extension_count)"
                    " VALUES (:n, 'x', 'web', :e, 'complaint', 'triage', '路灯', '路灯不亮',"
                    " '', :p, :m, :r, :r, '[]', '', :f, '[]', '[]', '', '', '', '', '', 0, 0,"
                    " 1, '', 0)"
                ),
                {
                    "n": f"MS-2026-{i + 1:06d}",
                    "e": f"w-{i}",
                    "p": phone,
                    "m": email,
                    "r": now - timedelta(days=i),
                    "f": False,
                },
            )
    upgrade(engine)
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if any(t in repr(d) for t in ("caller_key", "caller_alt_key", "'place'", "urge_count"))
        ]
        assert differences == []
    secret = b"test-key"
    with Session(engine) as s, s.begin():
        assert s.scalar(select(func.count()).where(Case.caller_key.is_(None))) == 4
        assert backfill_caller_keys(s, secret, batch=3) == 4
        assert backfill_caller_keys(s, secret) == 0  # idempotent
    with Session(engine) as s:
        cases = s.scalars(select(Case).order_by(Case.id)).all()
        assert [c.caller_key for c in cases] == [
            caller_key(PHONE, "", secret),
            caller_key("", "wang@example.com", secret),
            "",
            caller_key(PHONE, "", secret),
        ]
        assert [(c.place, c.urge_count) for c in cases] == [("", 0)] * 4
    engine.dispose()


def test_init_gives_older_cases_their_caller_key(
    client: Any, runtime: Any, config_file: Any
) -> None:
    from click.testing import CliRunner

    from web.cli import main

    number, _ = submit_complaint(client, "明德路路灯不亮", phone="138 1234 5678")
    with runtime.sessions() as s, s.begin():  # as a case from before migration 0010 is
        s.execute(text("UPDATE cases SET caller_key = NULL, caller_alt_key = NULL"))
    result = CliRunner().invoke(main, ["init", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    secret = config_file.parent / "inst" / "secret_key"
    key = caller_key(PHONE, "", secret.read_text().strip() if secret.exists() else "")
    assert _case(runtime, number).caller_key == key


def test_the_operator_marks_a_call_urgent(login_as: Any, runtime: Any) -> None:
    r = _desk(
        login_as("operator"),
        {
            "phone": "13900003333",
            "body": "办事窗口排队太久，老人站不住",
            "urgent": "y",
            "place": "幸福小区",
        },
    )
    assert r.status_code == 302
    case = _case(runtime, r.headers["Location"].rsplit("/", 1)[-1])
    assert case.urgent is True and case.place == "幸福小区"
    # Stored as a code (triage/system_reasons.py), read in each reader's language.
    assert system_reasons.MARKED_URGENT_BY_OPERATOR in case.urgent_reasons
    assert case.received_at <= datetime.now(UTC)
    supervisor = login_as("supervisor")
    number = case.tracking_number
    for lang, said in (("zh", "话务员标记为紧急"), ("en", "marked urgent by the operator")):
        page = supervisor.get(f"/board/cases/{number}?lang={lang}").get_data(as_text=True)
        banner = re.search(r'<p class="flash error">(.*?)</p>', page, re.S).group(1)  # type: ignore[union-attr]
        assert said in banner and "system:" not in page
        queue = supervisor.get(f"/board/queue?lang={lang}").get_data(as_text=True)
        assert f'title="{said}"' in queue


def test_bad_desk_input_is_a_clear_error_never_a_server_error(login_as: Any, runtime: Any) -> None:
    operator = login_as("operator")
    before = _count(runtime)
    future = (datetime.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    for data, says in (
        ({"phone": PHONE, "called_at": future}, "晚于当前时间"),
        ({"phone": PHONE, "called_at": "明天下午"}, 'for="called_at"'),
        # A slip of the year: a case received in 1900 (MS-1900-…), or year 1 (no UTC time).
        ({"phone": PHONE, "called_at": "1900-01-01T08:00"}, "30 天前"),
        ({"phone": PHONE, "called_at": "0001-01-01T00:00"}, "30 天前"),
        ({"phone": PHONE, "about": "urge:"}, "不属于此来电人"),
        ({"phone": PHONE, "about": "urge:MS-2026-\x00001"}, "不属于此来电人"),
        ({"phone": PHONE, "about": "reopen:" + "9" * 80}, "60"),
        ({"phone": "12", "about": "new"}, "13800138000"),
        ({"phone": PHONE, "place": "路" * 201, "about": "new"}, "200"),
    ):
        r = _desk(operator, data)
        html = r.get_data(as_text=True)
        assert r.status_code == 400, (data, r.status_code)
        errors = re.findall(r'<p class="error" role="alert">([^<]*)</p>', html)
        shown = [f for f in flashes(html) if f]
        assert errors or shown, data
        assert says in html, (data, says)
        if says == 'for="called_at"':
            assert re.search(r'has-error">\s*<label for="called_at"', html), html
    assert _count(runtime) == before
    for phone in ("", "abc", "1" * 40, "%E2%80%AE13812345678"):
        r = operator.get(f"/board/calls/history?phone={phone}")
        assert r.status_code == 200 and r.get_json()["cases"] == []


def test_the_history_is_read_through_the_caller_key_indexes(runtime: Any) -> None:
    """The history's reads go through the (caller_key, received_at) indexes: their cost is
    one caller's cases, whatever the number of cases. Asked of the planner over 300 cases
    with their statistics, as in service (on an empty table the planner's choice among the
    case indexes is a toss-up). With statistics, SQLite's planner takes these indexes from
    about 60 cases on (below, it scans by received_at for the ORDER BY ... LIMIT), and the
    more cases the more they win: over 300 it answers as over 1,500, with the margin; so
    does PostgreSQL's, which takes them from a handful of cases on."""
    from web.demo_volume import add_volume

    with runtime.engine.begin() as conn:
        add_volume(conn, 300, months=6, seed=3, secret=runtime.secret)
    with runtime.engine.connect() as conn:
        key = conn.scalar(select(Case.caller_key).where(Case.caller_key != "").limit(1))
    assert key, "the generated cases have caller keys"
    keys = [key, "b" * 32]
    same = or_(Case.caller_key.in_(keys), Case.caller_alt_key.in_(keys))
    query = select(Case.id).where(same).order_by(Case.received_at.desc()).limit(5)
    engine = runtime.engine
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        analyze(conn)
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        else:
            plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
    assert "ix_cases_caller_key_received" in plan and "ix_cases_caller_alt_key_received" in plan
    assert "SCAN cases" not in plan and "Seq Scan" not in plan


def test_spellings_the_validator_refuses_still_find_and_log_the_same_caller(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _code = submit_complaint(client, "明德路路灯不亮已经一周", phone=PHONE)
    operator = login_as("operator")
    for typed in ("0086 138-1234-5678", "(+86)13812345678"):
        found = operator.get("/board/calls/history", query_string={"phone": typed}).get_json()
        assert found["total"] == 1 and found["cases"][0]["number"] == number, typed
    r = _desk(operator, {"phone": "0086 138-1234-5678", "about": f"urge:{number}"})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/board/cases/{number}")
    assert _case(runtime, number).urge_count == 1


def test_every_way_of_showing_a_callers_history_counts_against_the_limit(
    client: Any, login_as: Any, runtime: Any, monkeypatch: Any
) -> None:
    number, _code = submit_complaint(client, "明德路路灯不亮已经一周", phone=PHONE)
    import web.operator

    monkeypatch.setattr(web.operator, "LOOKUPS_PER_WINDOW", 2)
    operator = login_as("operator")
    # The digits typed so far are not a number: they cost nothing.
    for partial in ("1381", "13812", "138123"):
        assert operator.get(f"/board/calls/history?phone={partial}").status_code == 200
    assert operator.get(f"/board/calls/history?phone={PHONE}").get_json()["total"] == 1
    assert number in operator.get(f"/board/calls/new?phone={PHONE}").get_data(as_text=True)
    # Past the limit: neither the page with ?phone= nor the 'look up' button lists the case.
    page = operator.get(f"/board/calls/new?phone={PHONE}").get_data(as_text=True)
    assert number not in page and ("查询过于频繁" in page or "Too many lookups" in page)
    looked = operator.post(
        "/board/calls/new", data={"csrf_token": csrf_from(page), "phone": PHONE, "lookup": "1"}
    ).get_data(as_text=True)
    assert number not in looked
    assert operator.get(f"/board/calls/history?phone={PHONE}").status_code == 429
    # Logging the call still asks about the open case rather than opening a second one.
    before = _count(runtime)
    r = _desk(operator, {"phone": PHONE})
    assert r.status_code == 200 and _count(runtime) == before
    assert number in r.get_data(as_text=True)


def test_the_hidden_answer_a_new_matter_is_not_sent_nor_an_unknown_answer_taken(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _code = submit_complaint(client, "明德路路灯不亮已经一周", phone=PHONE)
    operator = login_as("operator")
    page = operator.get("/board/calls/new").get_data(as_text=True)
    # No history shown yet: its answers are disabled, so a browser sends none of them and the
    # server asks about the caller's open cases (below) instead of opening a second case.
    fieldset = re.search(r'<fieldset id="caller-history"[^>]*>', page).group(0)
    assert "hidden" in fieldset and "disabled" in fieldset
    before = _count(runtime)
    r = _desk(operator, {"phone": PHONE, "about": f"nonsense:{number}"})
    assert r.status_code == 400 and _count(runtime) == before
    r = _desk(operator, {"phone": PHONE})
    assert r.status_code == 200 and _count(runtime) == before
    shown = re.search(r'<fieldset id="caller-history"[^>]*>', r.get_data(as_text=True)).group(0)
    assert "hidden" not in shown and "disabled" not in shown


def test_the_same_form_sent_several_times_at_once_is_applied_once_and_never_an_error(
    client: Any, login_as: Any, runtime: Any
) -> None:
    import threading

    number, _code = submit_complaint(client, "明德路路灯不亮已经一周", phone=PHONE)
    operators = [login_as("operator") for _ in range(4)]
    pages = [o.get("/board/calls/new").get_data(as_text=True) for o in operators]
    token = re.search(r'name="token"[^>]*value="([^"]+)"', pages[0]).group(1)

    def send_all(data: dict[str, Any]) -> list[int]:
        codes: list[int] = []
        start = threading.Barrier(len(operators))

        def send(operator: Any, page: str) -> None:
            form = {"csrf_token": csrf_from(page), "token": token, "kind": "complaint", **data}
            start.wait()
            codes.append(operator.post("/board/calls/new", data=form).status_code)

        threads = [
            threading.Thread(target=send, args=op) for op in zip(operators, pages, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return codes

    urge = {"phone": PHONE, "about": f"urge:{number}", "subject": "催办", "body": "还是不亮"}
    assert send_all(urge) == [302] * 4
    assert _case(runtime, number).urge_count == 1
    before = _count(runtime)
    fresh = {"phone": "13900007777", "about": "new", "subject": "噪音", "body": "夜里工地噪音"}
    token = "double-click-token"
    assert send_all(fresh) == [302] * 4
    assert _count(runtime) == before + 1


def test_reopening_a_case_of_a_deactivated_department_says_where_it_went(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The desk's message after a reopen names the department that took the work of the
    closed case's deactivated department over, or says the case is back in the dispatch
    queue, instead of "reworked by its department" (which no longer exists)."""
    from sqlalchemy import update

    from tests.integration.test_department_successor import _deactivate_urban

    first, _ = submit_complaint(client, "幸福小区门口井盖松动", phone=PHONE)
    second, _ = submit_complaint(client, "幸福小区路面塌陷一个坑", phone=PHONE)
    _close(runtime, first)
    _close(runtime, second)
    _deactivate_urban(login_as, "environment")
    operator = login_as("operator")
    r = _desk(operator, {"phone": PHONE, "about": f"reopen:{first}", "body": "井盖还是松的"})
    assert r.status_code == 302
    said = flashes(operator.get(r.headers["Location"]).get_data(as_text=True))
    assert any("市生态环境局民声分局" in f and "停用" in f for f in said), said
    assert not any("由原部门" in f or "by its department" in f for f in said), said
    with runtime.sessions() as s:
        reopened = s.scalars(select(Case).where(Case.tracking_number == first)).one()
        assert reopened.department.code == "environment"

    # No department took the work over (environment deactivated without a successor).
    with runtime.sessions() as s:
        s.execute(update(Department).where(Department.code == "environment").values(active=False))
        s.commit()
    operator.get("/lang/en")
    r = _desk(operator, {"phone": PHONE, "about": f"reopen:{second}", "body": "坑旁边又塌了一块"})
    assert r.status_code == 302
    said = flashes(operator.get(r.headers["Location"]).get_data(as_text=True))
    assert any("dispatch queue" in f for f in said), said
    case = _case(runtime, second)
    assert case.status == "triage" and case.department_id is None


def test_a_call_logged_long_after_the_desk_was_opened_is_received_when_logged(
    login_as: Any, runtime: Any
) -> None:
    """The desk fills the call time in with the time the page was shown. An operator who
    opens the desk in the morning and takes a call hours later, leaving the time as it was,
    logs the call now, not at the morning's time (its deadlines count from it); a time the
    operator typed over it is kept."""
    operator = login_as("operator")
    page = operator.get("/board/calls/new").get_data(as_text=True)
    shown = re.search(r'name="called_at_shown"[^>]*value="([^"]+)"', page)
    assert shown is not None, "the desk keeps the call time it filled in"
    filled = re.search(r'id="called_at"[^>]*value="([^"]+)"', page)
    assert filled is not None and filled.group(1) == shown.group(1)

    zone = ZoneInfo(runtime.settings.app.timezone)
    morning = (datetime.now(zone) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1)
    form = {
        "csrf_token": csrf_from(page),
        "token": token,
        "phone": PHONE,
        "kind": "complaint",
        "subject": "路灯不亮",
        "body": "明德路路灯不亮三天了",
        "called_at": morning,
        "called_at_shown": morning,
    }
    before = datetime.now(UTC)
    r = operator.post("/board/calls/new", data=form)
    assert r.status_code == 302, r.get_data(as_text=True)
    number = r.headers["Location"].rsplit("/", 1)[1]
    received = _case(runtime, number).received_at
    assert received >= before - timedelta(minutes=1), received

    # Typed over: the operator logs a call that came an hour ago.
    page = operator.get("/board/calls/new").get_data(as_text=True)
    an_hour_ago = datetime.now(zone) - timedelta(hours=1)
    form.update(
        csrf_token=csrf_from(page),
        token=re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1),
        phone="13912345678",
        called_at=an_hour_ago.strftime("%Y-%m-%dT%H:%M"),
        called_at_shown=re.search(r'name="called_at_shown"[^>]*value="([^"]+)"', page).group(1),
    )
    r = operator.post("/board/calls/new", data=form)
    assert r.status_code == 302
    received = _case(runtime, r.headers["Location"].rsplit("/", 1)[1]).received_at
    assert received.astimezone(zone).strftime("%H:%M") == an_hour_ago.strftime("%H:%M")


def test_a_case_found_through_the_callers_email_can_be_urged_from_their_number(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The desk lists the caller's cases under the keys linked to their number (a case that
    gave the number and an email links the email-only ones): each listed case's choice is
    taken, not refused as 'not one of this caller's'."""
    email = "qian.qi@example.com"
    linked, _ = submit_complaint(client, "人民公园东门路灯坏了", phone=PHONE, email=email)
    by_mail, _ = submit_complaint(client, "人民公园西侧公厕没人打扫", phone="", email=email)
    operator = login_as("operator")
    found = operator.get(f"/board/calls/history?phone={PHONE}").get_json()
    assert {c["number"] for c in found["cases"]} == {linked, by_mail}

    before = _count(runtime)
    r = _desk(operator, {"phone": PHONE, "about": f"urge:{by_mail}", "body": "公厕还是很脏"})
    assert r.status_code == 302, flashes(r.get_data(as_text=True))
    assert r.headers["Location"].endswith(f"/board/cases/{by_mail}")
    assert _case(runtime, by_mail).urge_count == 1
    assert _count(runtime) == before


def test_a_repeat_call_about_a_merged_case_urges_the_case_it_was_merged_into(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The caller's case was merged into another citizen's open case about the same issue:
    their repeat call is offered as 催办 on that case and counted there, not a new case."""
    other, _ = submit_complaint(client, "幸福路人民路口井盖丢失", phone="13912345678")
    mine, _ = submit_complaint(client, "幸福路口井盖没了很危险", phone=PHONE)
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        target = s.scalars(select(Case).where(Case.tracking_number == other)).one()
        merged = s.scalars(select(Case).where(Case.tracking_number == mine)).one()
        merged.merge_into(target, "supervisor", now, "同一井盖")
    operator = login_as("operator")
    found = operator.get(f"/board/calls/history?phone={PHONE}").get_json()
    (listed,) = found["cases"]
    assert listed["number"] == mine
    assert f"urge:{other}" in [c["value"] for c in listed["choices"]]
    page = operator.get(f"/board/calls/new?phone={PHONE}").get_data(as_text=True)
    assert f'value="urge:{other}"' in page

    before = _count(runtime)
    # Sent before the history showed: asked, as for an open case of the caller's own.
    r = _desk(operator, {"phone": PHONE, "body": "井盖还没补上"})
    assert r.status_code == 200 and _count(runtime) == before
    assert any("未办结" in f for f in flashes(r.get_data(as_text=True)))
    r = _desk(operator, {"phone": PHONE, "about": f"urge:{other}", "body": "井盖还没补上"})
    assert r.status_code == 302, flashes(r.get_data(as_text=True))
    assert r.headers["Location"].endswith(f"/board/cases/{other}")
    assert _case(runtime, other).urge_count == 1
    assert _count(runtime) == before
    # Another caller's open case that none of theirs was merged into stays refused.
    third, _ = submit_complaint(client, "明德路路灯不亮", phone="13700001111")
    r = _desk(operator, {"phone": PHONE, "about": f"urge:{third}"})
    assert r.status_code == 400 and _case(runtime, third).urge_count == 0
