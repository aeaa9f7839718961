"""Administration in the browser's pages, on the real database (SQLite and PostgreSQL):
accounts, departments, API keys, the admin log; only the admin role; the rules that keep an
office able to work (no self-deactivation, always one active administrator); changes that
survive `minsheng init`; no password or key ever in the log."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import csrf_from, password_of
from tests.integration.helpers import flashes
from triage import admin_log, staff
from triage.models import AdminEvent, Department, User

NEW_PASSWORD = "Lantern-river-42"


def _user(runtime: Any, username: str) -> User:
    with runtime.sessions() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None, username
        s.expunge(user)
        return user


def _events(runtime: Any) -> list[AdminEvent]:
    with runtime.sessions() as s:
        rows = list(s.scalars(select(AdminEvent).order_by(AdminEvent.id)))
        for r in rows:
            s.expunge(r)
        return rows


def _post(client: Any, page: str, action: str, data: dict[str, Any]) -> Any:
    html = client.get(page).get_data(as_text=True)
    return client.post(action, data={"csrf_token": csrf_from(html), **data})


def _add(client: Any, **fields: Any) -> Any:
    data = {
        "username": "Zhou.Min",
        "display_name": "督查科 周敏",
        "role": "supervisor",
        "department": "",
        "email": "zhoumin@example.gov.cn",
        "password_mode": "generate",
        "password": "",
        **fields,
    }
    return _post(client, "/admin/users/new", "/admin/users/new", data)


def _sign_in(app: Any, username: str, password: str) -> Any:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    r = client.post(
        "/login",
        data={"csrf_token": csrf_from(page), "username": username, "password": password},
    )
    return client, r


def _no_secret_in_log(runtime: Any, *secrets: str) -> None:
    text = repr([(e.action, e.target, e.details) for e in _events(runtime)])
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize("role", ["supervisor", "urban", "observer", "operator"])
def test_only_the_admin_may_open_or_post(login_as: Any, role: str) -> None:
    client = login_as(role)
    for url in ("/admin/", "/admin/users", "/admin/users/new", "/admin/departments", "/admin/log"):
        assert client.get(url).status_code == 403, url
    page = client.get("/board/cases").get_data(as_text=True)
    assert 'id="nav-admin"' not in page
    r = client.post(
        "/admin/users/new",
        data={"csrf_token": csrf_from(page), "username": "intruder", "role": "admin"},
    )
    assert r.status_code == 403
    assert (
        client.post("/admin/users/1/deactivate", data={"csrf_token": csrf_from(page)}).status_code
        == 403
    )


def test_a_form_without_its_csrf_token_is_refused(login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    r = admin.post("/admin/users/new", data={"username": "nocsrf", "role": "supervisor"})
    assert r.status_code == 400
    with runtime.sessions() as s:
        assert s.scalar(select(User).where(User.username == "nocsrf")) is None


def test_add_an_account_with_a_one_time_password_and_sign_in(
    app: Any, login_as: Any, runtime: Any
) -> None:
    admin = login_as("admin")
    r = _add(admin)
    assert r.status_code == 201
    assert r.headers["Cache-Control"] == "no-store"
    html = r.get_data(as_text=True)
    password = re.search(r'id="password-value">([^<]+)<', html).group(1)
    # Stored in its normal form: the same spelling everywhere else in the app.
    user = _user(runtime, "zhou.min")
    assert (user.role, user.display_name, user.email) == (
        "supervisor",
        "督查科 周敏",
        "zhoumin@example.gov.cn",
    )
    client, signed_in = _sign_in(app, "ZHOU.MIN", password)
    assert signed_in.status_code == 302
    # A password the administrator has seen is changed before anything else.
    for page in ("/board/queue", "/board/cases", "/admin/"):
        r = client.get(page)
        assert r.status_code == 302 and r.headers["Location"].endswith("/account/password")
    form = client.get("/account/password").get_data(as_text=True)
    assert 'id="must-change"' in form
    sent = client.post("/board/queue/dispatch", data={"csrf_token": csrf_from(form), "one": "MS-1"})
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/account/password")
    changed = client.post(
        "/account/password",
        data={
            "csrf_token": csrf_from(form),
            "current": password,
            "new": NEW_PASSWORD,
            "repeat": NEW_PASSWORD,
        },
    )
    assert changed.status_code == 302, changed.get_data(as_text=True)[-800:]
    assert client.get("/board/queue").status_code == 200
    assert not _user(runtime, "zhou.min").must_change_password
    # The password is shown once: the account's page does not show it again.
    assert password not in admin.get(f"/admin/users/{user.id}").get_data(as_text=True)
    [event] = _events(runtime)
    assert (event.action, event.target, event.actor_name) == (
        "user_added",
        "user zhou.min",
        "系统管理员",
    )
    assert event.details["role"] == "supervisor"
    assert event.details["chosen_by"] == "generated"
    _no_secret_in_log(runtime, password)
    log = admin.get("/admin/log").get_data(as_text=True)
    assert "账号 zhou.min" in log and "账号已添加" in log


def test_adding_follows_the_rules(login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    weak = _add(admin, username="weak", password_mode="set", password="1234567890")
    assert weak.status_code == 400
    assert "太容易猜到" in weak.get_data(as_text=True) or "至少" in weak.get_data(as_text=True)
    taken = _add(admin, username="SUPERVISOR")
    assert taken.status_code == 400
    assert "supervisor" in taken.get_data(as_text=True)
    bad = _add(admin, username="王伟")
    assert bad.status_code == 400
    no_department = _add(admin, username="new-handler", role="handler")
    assert no_department.status_code == 400
    assert "经办人需要所属部门" in no_department.get_data(as_text=True)
    chosen = _add(
        admin,
        username="new-handler",
        role="handler",
        department="urban",
        password_mode="set",
        password=NEW_PASSWORD,
    )
    assert chosen.status_code == 302
    user = _user(runtime, "new-handler")
    assert user.department_id is not None
    assert [e.action for e in _events(runtime)] == ["user_added"]
    _no_secret_in_log(runtime, NEW_PASSWORD)


def test_change_role_department_head_and_email(login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    urban = _user(runtime, "urban")
    handler = login_as("urban")
    page = f"/admin/users/{urban.id}"
    r = _post(
        admin,
        page,
        page,
        {
            "display_name": "环境局 王经办",
            "role": "handler",
            "department": "environment",
            "head": "y",
            "email": "wang@example.gov.cn",
        },
    )
    assert r.status_code == 302
    changed = _user(runtime, "urban")
    with runtime.sessions() as s:
        assert s.get(Department, changed.department_id).code == "environment"
    assert changed.head and changed.email == "wang@example.gov.cn"
    # What the account may see changed: its open session starts again.
    assert handler.get("/board/cases").status_code == 302
    [event] = _events(runtime)
    assert event.action == "user_changed"
    assert event.details["department"] == ["urban", "environment"]
    assert event.details["head"] == [False, True]
    # The log reads as words, not as Python values.
    log = admin.get("/admin/log").get_data(as_text=True)
    assert "负责人：否 → 是" in log
    assert "True" not in log and "False" not in log and "None" not in log
    r = _post(admin, page, page, {"display_name": "环境局 王经办", "role": "supervisor"})
    assert r.status_code == 302
    log = admin.get("/admin/log").get_data(as_text=True)
    assert "角色：部门经办人 → 督查员" in log
    assert "电子邮件：wang@example.gov.cn → —" in log


def test_deactivated_user_loses_session_and_cannot_sign_in(
    app: Any, login_as: Any, runtime: Any
) -> None:
    admin = login_as("admin")
    handler = login_as("urban")
    assert handler.get("/board/cases").status_code == 200
    urban = _user(runtime, "urban")
    r = _post(admin, f"/admin/users/{urban.id}", f"/admin/users/{urban.id}/deactivate", {})
    assert r.status_code == 302
    assert not _user(runtime, "urban").active
    assert handler.get("/board/cases").status_code == 302  # to the sign-in page
    _client, again = _sign_in(app, "urban", password_of("urban"))
    assert again.status_code == 401
    r = _post(admin, f"/admin/users/{urban.id}", f"/admin/users/{urban.id}/reactivate", {})
    assert r.status_code == 302
    _client, back = _sign_in(app, "urban", password_of("urban"))
    assert back.status_code == 302
    assert [e.action for e in _events(runtime)] == ["user_deactivated", "user_reactivated"]


def test_the_admin_cannot_deactivate_themselves_nor_the_last_admin(
    login_as: Any, runtime: Any
) -> None:
    admin = login_as("admin")
    me = _user(runtime, "admin")
    page = f"/admin/users/{me.id}"
    assert 'id="deactivate-form"' not in admin.get(page).get_data(as_text=True)
    own = _post(admin, page, f"{page}/deactivate", {})
    assert own.status_code == 409
    assert "不能停用自己的账号" in own.get_data(as_text=True)
    demote = _post(admin, page, page, {"display_name": "系统管理员", "role": "supervisor"})
    assert demote.status_code == 409
    assert "最后一个" in demote.get_data(as_text=True)
    assert _user(runtime, "admin").role == "admin" and _user(runtime, "admin").active
    # A second administrator: now the first may be demoted by the second, and the second is
    # then the last one.
    r = _add(admin, username="admin2", role="admin", password_mode="set", password=NEW_PASSWORD)
    assert r.status_code == 302
    second = _user(runtime, "admin2")
    other, _r = _sign_in(admin.application, "admin2", NEW_PASSWORD)
    # The password the first one typed is theirs: the second chooses their own first.
    own = "Tangerine!Kettle#88"
    changed = _post(
        other,
        "/account/password",
        "/account/password",
        {"current": NEW_PASSWORD, "new": own, "repeat": own},
    )
    assert changed.status_code == 302
    r = _post(other, page, page, {"display_name": "系统管理员", "role": "supervisor"})
    assert r.status_code == 302
    assert _user(runtime, "admin").role == "supervisor"
    last = _post(other, f"/admin/users/{second.id}", f"/admin/users/{second.id}/deactivate", {})
    assert last.status_code == 409
    assert [e.action for e in _events(runtime)] == ["user_added", "user_changed"]


@pytest.mark.parametrize("second_change", ["demote", "deactivate"])
def test_two_admins_removing_each_other_at_once_leave_one(
    login_as: Any, runtime: Any, second_change: str
) -> None:
    """Two administrators, each taking the other's rights at the same moment: the second
    change waits for the first and is refused, so the office keeps an administrator."""
    admin = login_as("admin")
    r = _add(admin, username="admin2", role="admin", password_mode="set", password=NEW_PASSWORD)
    assert r.status_code == 302
    first, second = runtime.sessions(), runtime.sessions()
    refused: list[str] = []

    def demote(s: Any, username: str) -> None:
        user = s.scalar(select(User).where(User.username == username))
        staff.change_user(s, user, staff.Account(user.display_name, "supervisor", None, False, ""))

    def other_admin() -> None:
        try:
            if second_change == "demote":
                demote(second, "admin")
            else:
                me = second.scalar(select(User).where(User.username == "admin2"))
                admin1 = second.scalar(select(User).where(User.username == "admin"))
                staff.set_active(second, admin1, False, me)
            second.commit()
        except staff.StaffChangeRefused as e:
            refused.append(str(e))
            second.rollback()

    try:
        demote(first, "admin2")  # not committed yet: the other request runs meanwhile
        racer = threading.Thread(target=other_admin)
        racer.start()
        racer.join(0.5)
        first.commit()
        racer.join(30)
        assert not racer.is_alive()
    finally:
        first.close()
        second.close()
    assert len(refused) == 1
    with runtime.sessions() as s:
        assert staff.active_admins(s) == 1
        admin1 = s.scalar(select(User).where(User.username == "admin"))
        assert admin1 is not None and admin1.role == "admin" and admin1.active


@pytest.mark.parametrize("kind", ["account", "department"])
def test_the_same_name_added_twice_at_once_is_refused_not_an_error(runtime: Any, kind: str) -> None:
    """Two administrators add the same username (or department code) at the same moment:
    neither sees the other's row when it looks, and the second insert meets the first at the
    unique index. The second gets the "taken" refusal the page shows, not a database error
    (a 500 before)."""
    first, second = runtime.sessions(), runtime.sessions()
    if first.get_bind().dialect.name == "sqlite":
        # The first holds its transaction open, as a request does until it answers.
        first.connection().exec_driver_sql("BEGIN IMMEDIATE")

    def add(s: Any) -> None:
        if kind == "account":
            staff.add_user(s, "dup.user", staff.Account("", "observer", None, False, ""))
        else:
            staff.add_department(s, "dup-dept", "重复部门")

    refused: list[str] = []

    def the_other() -> None:
        try:
            add(second)
            second.commit()
        except staff.StaffChangeRefused as e:
            refused.append(str(e))
            second.rollback()

    try:
        add(first)
        racer = threading.Thread(target=the_other)
        racer.start()
        racer.join(0.5)
        first.commit()
        racer.join(30)
        assert not racer.is_alive()
    finally:
        first.close()
        second.close()
    assert refused and ("taken" in refused[0] or "exists" in refused[0])
    with runtime.sessions() as s:
        if kind == "account":
            assert len(list(s.scalars(select(User).where(User.username == "dup.user")))) == 1
        else:
            rows = s.scalars(select(Department).where(Department.code == "dup-dept"))
            assert len(list(rows)) == 1


def test_reset_password_generated_or_chosen(app: Any, login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    handler = login_as("urban")
    urban = _user(runtime, "urban")
    page = f"/admin/users/{urban.id}"
    r = _post(admin, page, f"{page}/password", {"pw-password_mode": "generate"})
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    generated = re.search(r'id="password-value">([^<]+)<', r.get_data(as_text=True)).group(1)
    assert handler.get("/board/cases").status_code == 302  # signed out
    _c, old = _sign_in(app, "urban", password_of("urban"))
    assert old.status_code == 401
    _c, new = _sign_in(app, "urban", generated)
    assert new.status_code == 302
    weak = _post(
        admin, page, f"{page}/password", {"pw-password_mode": "set", "pw-password": "urban12345678"}
    )
    assert weak.status_code == 400
    chosen = _post(
        admin, page, f"{page}/password", {"pw-password_mode": "set", "pw-password": NEW_PASSWORD}
    )
    assert chosen.status_code == 302
    _c, ok = _sign_in(app, "urban", NEW_PASSWORD)
    assert ok.status_code == 302
    assert [e.action for e in _events(runtime)] == ["password_reset", "password_reset"]
    _no_secret_in_log(runtime, generated, NEW_PASSWORD)


def test_the_log_refuses_a_secret() -> None:
    from datetime import UTC, datetime

    with pytest.raises(admin_log.SecretInLog):
        admin_log.record(None, "admin", "x", "y", datetime.now(UTC), password="p")  # type: ignore[arg-type]


def test_user_list_filters(login_as: Any) -> None:
    admin = login_as("admin")
    handlers = admin.get("/admin/users?role=handler&department=urban").get_data(as_text=True)
    rows = re.findall(r'data-user="([^"]+)"', handlers)
    assert sorted(rows) == ["urban", "urban-head"]
    assert (
        re.findall(
            r'data-user="([^"]+)"', admin.get("/admin/users?active=no").get_data(as_text=True)
        )
        == []
    )
    everyone = re.findall(r'data-user="([^"]+)"', admin.get("/admin/users").get_data(as_text=True))
    assert "admin" in everyone and "observer" in everyone


def test_departments_show_where_they_are_configured(login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    html = admin.get("/admin/departments").get_data(as_text=True)
    assert 'data-department="urban"' in html
    assert "[[departments]]" in html and "[time_limits]" in html
    r = _post(
        admin,
        "/admin/departments",
        "/admin/departments",
        {
            "new-code": "Civil-Affairs",
            "new-name": "区民政局",
            "new-name_en": "Civil Affairs Bureau",
        },
    )
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/admin/departments/civil-affairs")
    page = admin.get("/admin/departments/civil-affairs").get_data(as_text=True)
    assert "区民政局" in page and "minsheng init" in page
    dup = _post(
        admin, "/admin/departments", "/admin/departments", {"new-code": "urban", "new-name": "x"}
    )
    assert dup.status_code == 302
    assert "已有代码为 urban 的部门。" in flashes(
        admin.get("/admin/departments").get_data(as_text=True)
    )
    renamed = _post(
        admin,
        "/admin/departments/urban",
        "/admin/departments/urban",
        {
            "name": "区住房和城乡建设局（新）",
            "name_en": "Housing Bureau",
            "email": "",
            "active": "y",
        },
    )
    assert renamed.status_code == 302
    with runtime.sessions() as s:
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        assert urban.name == "区住房和城乡建设局（新）" and urban.admin_managed
    assert [e.action for e in _events(runtime)] == ["department_added", "department_changed"]
    # The new department takes dispatches at once.
    assert "区民政局" in admin.get("/board/cases").get_data(as_text=True)


def test_init_run_again_keeps_the_changes_made_in_the_browser(login_as: Any, runtime: Any) -> None:
    from web.cli import _initialise

    admin = login_as("admin")
    urban = _user(runtime, "urban")
    _post(
        admin,
        f"/admin/users/{urban.id}",
        f"/admin/users/{urban.id}",
        {"display_name": "王经办", "role": "supervisor", "department": "", "email": ""},
    )
    _post(
        admin,
        "/admin/departments",
        "/admin/departments",
        {"new-code": "civil", "new-name": "区民政局"},
    )
    _post(
        admin,
        "/admin/departments/transport",
        "/admin/departments/transport",
        {"name": "区交通运输局（改）", "name_en": "", "email": "", "active": "y"},
    )
    _initialise(runtime, lambda user: None)
    assert _user(runtime, "urban").role == "supervisor"
    with runtime.sessions() as s:
        codes = {d.code: d for d in s.scalars(select(Department))}
        assert codes["civil"].active
        assert codes["transport"].name == "区交通运输局（改）"
        # What nobody changed in the browser still follows the config.
        assert codes["environment"].name == "市生态环境局民声分局"


def test_api_keys_are_issued_once_and_revoked_with_a_log_entry(login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    assert 'href="/admin/api-keys"' in admin.get("/admin/").get_data(as_text=True)
    form = admin.get("/admin/api-keys").get_data(as_text=True)
    once = re.search(r'name="once"[^>]*value="([^"]+)"', form).group(1)
    r = admin.post(
        "/admin/api-keys", data={"csrf_token": csrf_from(form), "once": once, "name": "市民App"}
    )
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    key = re.search(r'id="new-key-value">([^<]+)<', page).group(1)
    assert key not in admin.get("/admin/api-keys").get_data(as_text=True)
    key_id = re.search(r'data-key="(\d+)"', page).group(1)
    r = _post(admin, "/admin/api-keys", f"/admin/api-keys/{key_id}/revoke", {})
    assert r.status_code == 302
    events = _events(runtime)
    assert [e.action for e in events] == ["api_key_issued", "api_key_revoked"]
    assert events[0].target == f"api key {key[: len(events[0].target) - 8]}"
    _no_secret_in_log(runtime, key)


def test_the_overview_shows_the_outbox_and_intake_health(login_as: Any) -> None:
    html = login_as("admin").get("/admin/").get_data(as_text=True)
    assert 'id="admin-outbox"' in html and 'id="intake-health"' in html


def test_migration_0013_upgrades_and_downgrades(empty_url: str) -> None:
    """Existing accounts and departments stay config-managed; the downgrade removes it all."""
    from alembic import command
    from sqlalchemy import inspect, text

    from web.db import alembic_config, make_engine, upgrade

    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0009")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO departments (code, name, name_en, email, active) "
                    "VALUES ('urban', '住建局', '', '', true)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO users (username, display_name, role, password_hash, active, "
                    "created_at, session_token, head, email) VALUES ('old', '', 'supervisor', "
                    "'', true, CURRENT_TIMESTAMP, 't', false, '')"
                )
            )
        upgrade(engine, "0013")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT admin_managed FROM users")).scalar_one() in (0, False)
            assert conn.execute(text("SELECT admin_managed FROM departments")).scalar_one() in (
                0,
                False,
            )
        names = {i["name"] for i in inspect(engine).get_indexes("cases")}
        assert {"ix_cases_status_closed_at", "ix_cases_department_id_status_closed_at"} <= names
        cfg = alembic_config(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0009")
        inspector = inspect(engine)
        assert "admin_events" not in inspector.get_table_names()
        assert "admin_managed" not in {c["name"] for c in inspector.get_columns("users")}
    finally:
        engine.dispose()


def test_a_generated_or_typed_reset_password_is_changed_at_the_next_sign_in(
    app: Any, login_as: Any, runtime: Any
) -> None:
    admin = login_as("admin")
    user = _user(runtime, "urban")
    page = f"/admin/users/{user.id}"
    r = _post(admin, page, f"{page}/password", {"pw-password_mode": "generate"})
    password = re.search(r'id="password-value">([^<]+)<', r.get_data(as_text=True)).group(1)
    assert _user(runtime, "urban").must_change_password
    client, _ = _sign_in(app, "urban", password)
    r = client.get("/board/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/account/password")
    # Signing out still works.
    assert client.get("/logout").status_code == 200
    # A password the administrator chose and typed is theirs too, not the user's (as
    # osTicket and Zammad have it): the user chooses their own at the next sign-in.
    r = _post(
        admin, page, f"{page}/password", {"pw-password_mode": "set", "pw-password": NEW_PASSWORD}
    )
    assert r.status_code == 302
    assert _user(runtime, "urban").must_change_password
    client, _ = _sign_in(app, "urban", NEW_PASSWORD)
    r = client.get("/board/cases")
    assert r.status_code == 302 and r.headers["Location"].endswith("/account/password")
