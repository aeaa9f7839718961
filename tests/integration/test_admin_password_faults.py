"""Staff administration faults testers found, each as a kind: a password an administrator typed
is the user's for good (only a generated one had to be changed); the password policy let the
office's and the departments' English names (and pinyin) through; the admin log showed a
value set from nothing without saying it was a change, and some actions (deactivating,
moving a department's head, replacing a shared view) without what they changed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.conftest import csrf_from, password_of
from tests.integration.helpers import post_form
from triage.models import AdminEvent, User
from web.cli import main

TYPED = "Lantern-river-42"  # what the administrator types and tells the user
OWN = "Tangerine!Kettle#88"  # what the user then chooses


def _sign_in(app: Any, username: str, password: str) -> tuple[Any, Any]:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    r = client.post(
        "/login",
        data={"csrf_token": csrf_from(page), "username": username, "password": password},
    )
    return client, r


def _user(runtime: Any, username: str) -> User:
    with runtime.sessions() as s:
        user = s.scalar(select(User).where(User.username == username))
        s.expunge(user)
        return user


def _events(runtime: Any, action: str) -> list[dict[str, Any]]:
    with runtime.sessions() as s:
        return [
            dict(e.details or {})
            for e in s.scalars(
                select(AdminEvent).where(AdminEvent.action == action).order_by(AdminEvent.id)
            )
        ]


def _change(client: Any, current: str, new: str) -> Any:
    form = client.get("/account/password").get_data(as_text=True)
    return client.post(
        "/account/password",
        data={"csrf_token": csrf_from(form), "current": current, "new": new, "repeat": new},
    )


def _forced_to_change(client: Any) -> None:
    """Every page leads to the password page, a form sent meanwhile is not acted on."""
    for page in ("/board/", "/board/cases", "/admin/"):
        r = client.get(page)
        assert r.status_code == 302 and r.headers["Location"].endswith("/account/password"), page
    form = client.get("/account/password").get_data(as_text=True)
    assert 'id="must-change"' in form
    sent = client.post("/board/queue/dispatch", data={"csrf_token": csrf_from(form), "one": "x"})
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/account/password")


# -- an administrator's typed password is changed at the first sign-in ----------------------


def test_a_typed_password_of_a_new_account_must_be_changed_at_first_sign_in(
    app: Any, login_as: Any, runtime: Any
) -> None:
    admin = login_as("admin")
    r = post_form(
        admin,
        "/admin/users/new",
        "/admin/users/new",
        {"username": "lin.tao", "display_name": "督查科 林涛", "role": "supervisor",
         "department": "", "email": "", "password_mode": "set", "password": TYPED},
    )  # fmt: skip
    assert r.status_code == 302
    assert _user(runtime, "lin.tao").must_change_password
    client, signed_in = _sign_in(app, "lin.tao", TYPED)
    assert signed_in.status_code == 302
    _forced_to_change(client)
    # Kept, the administrator would still know it; the policy applies to the new one.
    same = _change(client, TYPED, TYPED)
    assert same.status_code == 400 and "不能沿用当前密码" in same.get_data(as_text=True)
    weak = _change(client, TYPED, "EfficiencyOffice2026!")
    assert weak.status_code == 400 and "本办公室的名称" in weak.get_data(as_text=True)
    _forced_to_change(client)
    assert _change(client, TYPED, OWN).status_code == 302
    assert client.get("/board/cases").status_code == 200
    assert not _user(runtime, "lin.tao").must_change_password
    (added,) = _events(runtime, "user_added")
    assert added["chosen_by"] == "admin" and added["change_at_sign_in"] is True
    log = admin.get("/admin/log?lang=en").get_data(as_text=True)
    assert "Must choose their own at the next sign-in: yes" in log
    assert TYPED not in log and OWN not in log


def test_a_typed_reset_must_be_changed_but_not_the_admins_own(
    app: Any, login_as: Any, runtime: Any
) -> None:
    admin = login_as("admin")
    urban = _user(runtime, "urban")
    page = f"/admin/users/{urban.id}"
    hint = admin.get(page).get_data(as_text=True)
    assert 'id="change-at-sign-in"' in hint
    r = post_form(
        admin, page, f"{page}/password", {"pw-password_mode": "set", "pw-password": TYPED}
    )
    assert r.status_code == 302
    shown = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert "下次登录时须设置自己的密码" in shown
    client, _ = _sign_in(app, "urban", TYPED)
    _forced_to_change(client)
    assert _change(client, TYPED, OWN).status_code == 302
    assert client.get("/board/cases").status_code == 200
    assert _events(runtime, "password_reset")[-1]["change_at_sign_in"] is True

    # An administrator setting their own password here sets it for themselves.
    me = _user(runtime, "admin")
    own_page = f"/admin/users/{me.id}"
    assert 'id="change-at-sign-in"' not in admin.get(own_page).get_data(as_text=True)
    r = post_form(
        admin, own_page, f"{own_page}/password", {"pw-password_mode": "set", "pw-password": OWN}
    )
    assert r.status_code == 302
    assert not _user(runtime, "admin").must_change_password
    assert _events(runtime, "password_reset")[-1]["change_at_sign_in"] is False


def test_the_command_line_sets_a_password_as_is_or_temporary(
    app: Any, runtime: Any, config_file: Path
) -> None:
    def set_password(*extra: str) -> None:
        result = CliRunner().invoke(
            main,
            ["user", "set-password", "urban", "--password", TYPED, "--config", str(config_file),
             *extra],
        )  # fmt: skip
        assert result.exit_code == 0, result.output

    set_password()
    assert not _user(runtime, "urban").must_change_password
    client, _ = _sign_in(app, "urban", TYPED)
    assert client.get("/board/cases").status_code == 200
    set_password("--temporary")
    assert _user(runtime, "urban").must_change_password
    client, _ = _sign_in(app, "urban", TYPED)
    _forced_to_change(client)


# -- the policy refuses the office's and departments' names in English and pinyin --------


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("M1nsh3ng2026!", "name of this system (minsheng)"),  # leetspeak
        ("MINSHENG-tide-2026", "name of this system (minsheng)"),
        ("EfficiencyOffice2026!", "name of this office (efficiency office)"),
        ("efficiency office 2026", "name of this office (efficiency office)"),
        ("Eff1c1ency-0ff1ce!", "name of this office (efficiency office)"),
        ("District.Efficiency#7", "name of this office (district efficiency)"),
        ("Efficiency2026!", "name of this office or of a department (efficiency)"),
        ("DistrictOffice#2026", "name of this office or of a department"),
        ("TransportBureau2026!", "name of a department (Transport Bureau)"),
        ("Tr@nsp0rt-Bure@u9", "name of a department (Transport Bureau)"),
        ("HealthCommission#2026", "name of a department (Health Commission)"),
        ("bureau2026!!", "name of this office or of a department (bureau)"),
        ("xiaonengjianshe2026", "name of this office (效能建设 xiaonengjianshe)"),
        ("JiGuanXiaoNeng#88", "name of this office"),
        ("xiaonengban2026!", "name of this office or of a department (效能 xiaoneng)"),
        ("jiaotongyunshu!2026", "name of a department"),  # 交通运输局
    ],
)
def test_the_office_and_department_names_are_refused_in_english_and_pinyin(
    app: Any, password: str, reason: str
) -> None:
    from web.passwords import WeakPassword, check_password

    with app.test_request_context("/?lang=en"), pytest.raises(WeakPassword) as e:
        check_password(password, "lin.tao", ["Lin Tao 林涛"])
    assert reason in str(e.value)


@pytest.mark.parametrize(
    "password",
    [TYPED, OWN, "BackOffice-Lantern-77", "Transport-Lantern-88", "correct horse battery staple"],
)
def test_passwords_with_words_of_their_own_still_pass(app: Any, password: str) -> None:
    from web.passwords import check_password

    with app.test_request_context("/?lang=en"):
        check_password(password, "lin.tao", ["Lin Tao 林涛"])


def test_a_department_added_in_the_browser_is_refused_too_with_the_reason_in_chinese(
    app: Any, login_as: Any
) -> None:
    admin = login_as("admin")
    r = post_form(
        admin,
        "/admin/departments",
        "/admin/departments",
        {"new-code": "harbour", "new-name": "港务局", "new-name_en": "Harbour Authority",
         "new-email": ""},
    )  # fmt: skip
    assert r.status_code == 302
    handler = login_as("urban")
    weak = _change(handler, password_of("urban"), "HarbourAuthority#2026")
    html = weak.get_data(as_text=True)
    assert weak.status_code == 400 and "密码中不能包含部门的名称（Harbour Authority）" in html
    weak = _change(handler, password_of("urban"), "Efficiency2026!")
    assert weak.status_code == 400 and "请加入您自己的词语" in weak.get_data(as_text=True)


# -- the admin log says what changed from what to what ---------------------------------------


def _details(log: str, action: str) -> list[str]:
    rows = re.findall(rf'<tr data-action="{action}">(.*?)</tr>', log, flags=re.S)
    return [
        " ".join(re.sub(r"<[^>]+>", " ", r[r.index('class="details"') :]).split()) for r in rows
    ]


def test_the_admin_log_shows_every_change_as_old_to_new(login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    r = post_form(
        admin,
        "/admin/users/new",
        "/admin/users/new",
        {"username": "lin.tao", "display_name": "", "role": "handler", "department": "urban",
         "head": "y", "email": "", "password_mode": "generate", "password": ""},
    )  # fmt: skip
    assert r.status_code == 201
    page = f"/admin/users/{_user(runtime, 'lin.tao').id}"
    for name in ("Lin Tao", "Lin T. Tao"):
        data = {"display_name": name, "role": "handler", "department": "urban", "head": "y"}
        assert post_form(admin, page, page, data).status_code == 302
    assert post_form(admin, page, f"{page}/deactivate", {}).status_code == 302
    assert post_form(admin, page, f"{page}/reactivate", {}).status_code == 302
    # Deactivating the department moves its head to the successor as a handler.
    dept = "/admin/departments/urban"
    r = post_form(
        admin,
        dept,
        dept,
        {"name": "区住房和城乡建设局", "name_en": "Housing Bureau", "email": "",
         "successor": "environment", "staff": "move"},
    )  # fmt: skip
    assert r.status_code == 302, r.get_data(as_text=True)[-1500:]

    log = admin.get("/admin/log?lang=en").get_data(as_text=True)
    changed = _details(log, "user_changed")
    # Set from nothing, then changed: both say from what.
    assert any("Display name: (none) → Lin Tao" in d for d in changed), changed
    assert any("Display name: Lin Tao → Lin T. Tao" in d for d in changed), changed
    assert any("Active: yes → no" in d for d in _details(log, "user_deactivated"))
    assert any("Active: no → yes" in d for d in _details(log, "user_reactivated"))
    moved = [d for d in changed if "Because this department was deactivated" in d]
    assert any("head: yes → no" in d for d in moved), moved
    (renamed,) = _details(log, "department_changed")
    assert "Housing and Urban-Rural Development Bureau → Housing Bureau" in renamed
    assert "Active: yes → no" in renamed


def test_replacing_a_shared_view_logs_what_it_was(login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    for query in ("status=assigned", "status=in_progress"):
        r = post_form(
            admin,
            "/board/cases",
            "/board/views",
            {"view-name": "在办", "view-query": query, "view-role": "handler"},
        )
        assert r.status_code == 302
    first, second = _events(runtime, "view_shared")
    assert first["query"] == "status=assigned"
    assert second["query"] == ["status=assigned", "status=in_progress"]
