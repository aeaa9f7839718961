"""Faults an acceptance review found in administration (issue 10), each as a kind, on the
real database (SQLite and PostgreSQL): guessable passwords; a typed password dropped when
"generate" is chosen; Chinese list punctuation in English; two departments of one name;
roles with a department or head flag they cannot have (web, CLI, config alike); the admin
log naming departments by code and an API key's owner as "Name (Chinese)"; unknown filter
values dropped without a word; full-width dates; kanban dates without their year."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.integration.helpers import flashes, post_form, submit_complaint
from triage import admin_log
from triage.models import AdminEvent, Case, Department, User
from web.cli import main
from web.passwords import WeakPassword, check_password

GOOD = "Lantern-river-42"


def _add(client: Any, **fields: Any) -> Any:
    data = {
        "username": "lin.tao",
        "display_name": "督查科 林涛",
        "role": "supervisor",
        "department": "",
        "email": "",
        "password_mode": "generate",
        "password": "",
        **fields,
    }
    return post_form(client, "/admin/users/new", "/admin/users/new", data)


def _user(runtime: Any, username: str) -> User | None:
    with runtime.sessions() as s:
        return s.scalar(select(User).where(User.username == username))


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("asdfghjkl;", "neighbouring keys"),
        ("qwertyuiop1", "too easy to guess"),
        ("1234567890ab", "too easy to guess"),
        ("zaq12wsxcde", "too easy to guess"),
        ("minsheng-demo", "name of this system"),
        ("MinSheng#Tide-77", "name of this system"),
        ("linTao-Harbor-9", "account's name"),
        ("lin.tao-Harbor-9", "username"),
    ],
)
def test_guessable_passwords_are_refused_with_the_reason(
    app: Any, password: str, reason: str
) -> None:
    with app.test_request_context("/?lang=en"), pytest.raises(WeakPassword) as e:
        check_password(password, "lin.tao", ["Lin Tao 林涛"])
    assert reason in str(e.value)


def test_a_strong_password_passes(app: Any) -> None:
    with app.test_request_context("/"):
        check_password(GOOD, "lin.tao", ["督查科 林涛"])


def test_the_form_refuses_a_keyboard_run_and_a_password_typed_with_generate(
    login_as: Any, runtime: Any
) -> None:
    admin = login_as("admin")
    weak = _add(admin, password_mode="set", password="asdfghjkl;")
    assert weak.status_code == 400
    assert "键盘上相邻" in weak.get_data(as_text=True)
    both = _add(admin, password_mode="generate", password=GOOD)
    assert both.status_code == 400
    assert "已输入密码，但选择的是" in both.get_data(as_text=True)
    assert _user(runtime, "lin.tao") is None
    ok = _add(admin, password_mode="set", password=GOOD)
    assert ok.status_code == 302
    user = _user(runtime, "lin.tao")
    assert user is not None
    page = f"/admin/users/{user.id}"
    r = post_form(
        admin, page, f"{page}/password", {"pw-password_mode": "generate", "pw-password": GOOD}
    )
    assert r.status_code == 400


def test_lists_use_the_separators_of_the_language(login_as: Any) -> None:
    admin = login_as("admin")
    zh = admin.get("/admin/departments").get_data(as_text=True)
    assert "、" in zh
    en = admin.get("/admin/departments?lang=en").get_data(as_text=True)
    table = en[en.index('id="departments"') : en.index("</table>")]
    assert "、" not in table and "：" not in table
    assert ", " in table
    perf = admin.get("/commitments?lang=en").get_data(as_text=True)
    assert "、" not in perf


@pytest.mark.parametrize(
    ("code", "name", "name_en", "clash"),
    [
        ("city-works", "区住房和城乡建设局", "", "urban"),
        ("city-works", "新部门", "", None),
    ],
)
def test_department_names_are_unique(
    login_as: Any, runtime: Any, code: str, name: str, name_en: str, clash: str | None
) -> None:
    admin = login_as("admin")
    with runtime.sessions() as s:
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        urban_name, urban_en = urban.name, urban.name_en
    if clash:
        name = urban_name
    data = {"new-code": code, "new-name": name, "new-name_en": name_en, "new-email": ""}
    r = post_form(admin, "/admin/departments", "/admin/departments", data)
    html = admin.get("/admin/departments").get_data(as_text=True)
    with runtime.sessions() as s:
        added = s.scalar(select(Department).where(Department.code == code))
    if clash:
        assert added is None
        assert any("urban" in f and "已被部门" in f for f in flashes(html)), flashes(html)
    else:
        assert added is not None, r.get_data(as_text=True)
        # The English name, differing only in case and spaces, clashes too; and on a rename.
        spaced = "  " + urban_en.upper().replace(" ", "  ") + " "
        page = f"/admin/departments/{code}"
        r = post_form(
            admin, page, page, {"name": "新部门", "name_en": spaced, "email": "", "active": "y"}
        )
        assert r.status_code == 409
        assert "已被部门 urban" in r.get_data(as_text=True)
        r = post_form(
            admin, page, page, {"name": urban_name, "name_en": "", "email": "", "active": "y"}
        )
        assert r.status_code == 409


def test_roles_get_only_the_department_and_head_flag_they_can_have(
    login_as: Any, runtime: Any, config_file: Path
) -> None:
    admin = login_as("admin")
    observer = _add(admin, username="obs2", role="observer", department="urban")
    assert observer.status_code == 400
    assert "不属于任何部门" in observer.get_data(as_text=True)
    head = _add(admin, username="sup2", role="supervisor", head="y")
    assert head.status_code == 400
    assert "只有部门经办人才能担任部门负责人" in head.get_data(as_text=True)
    assert _user(runtime, "obs2") is None and _user(runtime, "sup2") is None
    # Changing an existing account: the same rule.
    with runtime.sessions() as s:
        obs = s.scalar(select(User).where(User.username == "observer"))
        page = f"/admin/users/{obs.id}"
    r = post_form(
        admin,
        page,
        page,
        {"display_name": "x", "role": "observer", "department": "urban", "email": ""},
    )
    assert r.status_code == 409
    # The command line: the same rule.
    runner = CliRunner()
    out = runner.invoke(
        main,
        [
            "user",
            "add",
            "obs3",
            "--role",
            "observer",
            "--department",
            "urban",
            "--config",
            str(config_file),
        ],
    )
    assert out.exit_code != 0 and "belongs to no department" in out.output
    out = runner.invoke(
        main, ["user", "add", "adm3", "--role", "admin", "--head", "--config", str(config_file)]
    )
    assert out.exit_code != 0 and "head a department" in out.output
    out = runner.invoke(
        main,
        [
            "user",
            "add",
            "h3",
            "--role",
            "handler",
            "--department",
            "urban",
            "--head",
            "--config",
            str(config_file),
        ],
    )
    assert out.exit_code == 0, out.output
    assert _user(runtime, "h3").head


def test_the_admin_log_names_departments_and_key_owners(login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    r = _add(admin, username="h4", role="handler", department="environment")
    assert r.status_code in (200, 201)
    # What the API keys page logs when it issues a key (web/open311/admin.py).
    with runtime.sessions() as s, s.begin():
        me = s.scalar(select(User).where(User.username == "admin"))
        admin_log.record(
            s, me, "api_key_issued", "api key ab12cd34", datetime.now(UTC), name="市 12345 平台"
        )
    with runtime.sessions() as s:
        env_name = s.scalar(select(Department.name).where(Department.code == "environment"))
        actions = [e.action for e in s.scalars(select(AdminEvent))]
    assert "api_key_issued" in actions
    log = admin.get("/admin/log").get_data(as_text=True)
    row = next(r for r in log.split("<tr") if 'data-action="user_added"' in r)
    assert env_name in row and "environment" not in row
    key_row = next(r for r in log.split("<tr") if 'data-action="api_key_issued"' in r)
    assert "密钥使用方" in key_row and "市 12345 平台" in key_row
    assert "名称（中文）" not in key_row and "Name (Chinese)" not in key_row


def test_unknown_filter_values_are_said_and_full_width_dates_read(login_as: Any) -> None:
    supervisor = login_as("supervisor")
    for args, label in [
        ("department=nope", "Department"),
        ("channel=pigeon", "Channel"),
        ("kind=bogus", "Kind"),
        ("finding=nope", "Finding"),
        ("status=bogus", "Status"),
    ]:
        html = supervisor.get(f"/board/cases?{args}&lang=en").get_data(as_text=True)
        said = [f for f in flashes(html) if "Not understood" in f]
        assert said and label in said[0], (args, flashes(html))
    fine = supervisor.get("/board/cases?department=urban&finding=overdue&channel=web&lang=en")
    assert not [f for f in flashes(fine.get_data(as_text=True)) if "Not understood" in f]
    wide = supervisor.get("/board/cases?received_from=２０２６－１１－０１&lang=en")
    html = wide.get_data(as_text=True)
    assert not [f for f in flashes(html) if "Not understood" in f]
    assert 'value="2026-11-01"' in html
    admin = login_as("admin")
    users = admin.get("/admin/users?department=nope&lang=en").get_data(as_text=True)
    assert [f for f in flashes(users) if "Not understood" in f and "Department" in f]


def test_kanban_cards_show_the_year_of_another_year(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _code = submit_complaint(client, "明德路路灯不亮已经一周，晚上走路很危险。", "路灯不亮")
    supervisor = login_as("supervisor")
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        case_id = case.id
    r = post_form(
        supervisor,
        "/board/queue",
        f"/board/cases/{number}/assign",
        {f"c{case_id}-department": "urban", "back": "queue"},
    )
    assert r.status_code == 302
    later = datetime.now(UTC).replace(month=6, day=15, hour=4) + timedelta(days=366 * 2)
    with runtime.sessions() as s, s.begin():
        s.get(Case, case_id).due_at = later
    html = supervisor.get("/board/kanban").get_data(as_text=True)
    card = html[html.index(f'id="card-{number}"') :]
    shown = re.search(r'<p class="due"><time[^>]*>([^<]+)</time>', card).group(1)
    assert shown.startswith(f"{later.year}-"), shown
