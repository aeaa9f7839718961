"""One rule for usernames wherever an account is made or named: `minsheng user add`, the
config's [[users]] and the sign-in form. Names are NFKC, without control characters, of
a-z 0-9 _ . -, and compared ignoring case (a phone keyboard capitalises the first letter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from tests.conftest import password_of
from tests.integration.test_throttle import sign_in
from triage.directory import UserSpec, sync_users
from triage.models import Role, User
from web.cli import main


def run(config_file: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--config", str(config_file)], catch_exceptions=False)


def initial_password(output: str) -> str:
    return output.rsplit("initial password: ", 1)[1].strip()


def usernames(runtime: Any) -> list[str]:
    with runtime.sessions() as s:
        return list(s.scalars(select(User.username).order_by(User.username)))


def test_a_full_width_name_from_the_command_line_can_sign_in(
    config_file: Path, app: Any, runtime: Any
) -> None:
    out = run(config_file, "user", "add", "Obs２", "--role", "observer")
    assert out.exit_code == 0, out.output
    assert "user obs2 added" in out.output
    password = initial_password(out.output)
    for typed in ("obs2", "Obs2", "ＯＢＳ２", " obs2 "):
        assert sign_in(app.test_client(), typed, password).status_code == 302, typed
    assert "obs2" in usernames(runtime)


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("mal\x1bicious", "control characters"),
        ("ab\u200bc", "control characters"),  # zero-width space: looks like "abc"
        ("王伟", "not a username"),
        ("a", "not a username"),
        ("li wei", "not a username"),
        ("x" * 81, "not a username"),
    ],
)
def test_names_that_could_never_sign_in_are_refused(
    config_file: Path, runtime: Any, name: str, said: str
) -> None:
    before = usernames(runtime)
    out = CliRunner().invoke(
        main, ["user", "add", name, "--role", "observer", "--config", str(config_file)]
    )
    assert out.exit_code != 0
    assert said in out.output
    assert "added" not in out.output
    assert usernames(runtime) == before


def test_a_name_equal_to_another_ignoring_case_is_refused(
    config_file: Path, app: Any, runtime: Any
) -> None:
    assert run(config_file, "user", "add", "Obs", "--role", "observer").exit_code == 0
    for twin in ("obs", "OBS", "ｏｂｓ", "ADMIN"):
        out = CliRunner().invoke(
            main, ["user", "add", twin, "--role", "observer", "--config", str(config_file)]
        )
        assert out.exit_code != 0, twin
        assert "exists already (usernames ignore case)" in out.output
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).where(func.lower(User.username) == "obs")) == 1


def test_sign_in_ignores_case_and_width_and_counts_them_as_one_name(app: Any) -> None:
    for typed in ("Admin", "ADMIN", "ａｄｍｉｎ", " admin"):
        assert sign_in(app.test_client(), typed, password_of("admin")).status_code == 302, typed
    # Wrong passwords under every spelling count against the same name.
    client = app.test_client()
    spellings = ["admin", "Admin", "ADMIN", "ａｄｍｉｎ", "aDmin"] * 2
    assert [sign_in(client, s, "wrong-2026-pw").status_code for s in spellings] == [401] * 10
    assert sign_in(client, "admin", password_of("admin")).status_code == 429


def test_set_password_finds_the_account_whatever_the_case(config_file: Path, app: Any) -> None:
    out = run(config_file, "user", "set-password", "URBAN", "--password", "Lantern-river-2026")
    assert out.exit_code == 0, out.output
    assert "password of urban changed" in out.output
    assert sign_in(app.test_client(), "Urban", "Lantern-river-2026").status_code == 302


def test_config_sync_matches_ignoring_case_and_stores_the_normal_form(runtime: Any) -> None:
    made: list[str] = []

    def new_password(user: User) -> None:
        made.append(user.username)
        user.password_hash = generate_password_hash("Lantern-river-2026")

    with runtime.sessions() as s, s.begin():
        # An account made before this rule, spelt with a capital.
        s.add(User(username="Legacy", role="observer", password_hash="x"))
    with runtime.sessions() as s, s.begin():
        changes = sync_users(
            s,
            [
                UserSpec("Wang.Li", Role.OBSERVER),
                UserSpec("legacy", Role.SUPERVISOR),
                UserSpec("WANG.LI", Role.SUPERVISOR),
                UserSpec("admin", Role.ADMIN),
            ],
            new_password,
        )
    assert made == ["wang.li"]
    assert "user legacy updated" in changes, changes
    assert any("WANG.LI skipped" in c for c in changes), changes
    with runtime.sessions() as s:
        roles = {name: role for name, role in s.execute(select(User.username, User.role))}
    assert roles["wang.li"] == "observer" and roles["Legacy"] == "supervisor"
    assert "Wang.Li" not in roles and "legacy" not in roles
