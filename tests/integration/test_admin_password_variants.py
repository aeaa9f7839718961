"""An administrator's password (set or generated: the account must change it at its first
sign-in) is not kept by changing it to itself with a space, a capital or a full-width letter
added: the change form refuses it as "the current one" (web/auth.py, `same_password`)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import csrf_from
from triage.models import User
from web.passwords import hash_password

TYPED = "Qv7!plumb-ostrich-9"


def _change(app: Any, runtime: Any, new: str) -> Any:
    with runtime.sessions() as s, s.begin():
        user = s.scalar(select(User).where(User.username == "urban"))
        user.password_hash = hash_password(TYPED)
        user.must_change_password = True
    c = app.test_client()
    page = c.get("/login").get_data(as_text=True)
    c.post("/login", data={"csrf_token": csrf_from(page), "username": "urban", "password": TYPED})
    page = c.get("/account/password").get_data(as_text=True)
    data = {"csrf_token": csrf_from(page), "current": TYPED, "new": new, "repeat": new}
    return c.post("/account/password", data=data)


@pytest.mark.parametrize(
    "new",
    [TYPED + " ", " " + TYPED, "Qv7! plumb-ostrich-9", TYPED.upper(), "Ｑv7!plumb-ostrich-9"],
)
def test_the_administrators_password_with_a_space_or_capital_is_refused(
    app: Any, runtime: Any, new: str
) -> None:
    r = _change(app, runtime, new)
    assert r.status_code == 400, "the administrator's password, barely changed, was accepted"
    assert "不能沿用当前密码" in r.get_data(as_text=True)  # not the current one
    with runtime.sessions() as s:
        assert s.scalar(select(User.must_change_password).where(User.username == "urban"))


def test_a_password_of_ones_own_is_taken(app: Any, runtime: Any) -> None:
    r = _change(app, runtime, "Lantern-quokka-58!river")
    assert r.status_code == 302
    with runtime.sessions() as s:
        assert not s.scalar(select(User.must_change_password).where(User.username == "urban"))
