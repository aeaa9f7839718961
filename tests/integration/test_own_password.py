"""A user changing their own password meets the same policy as an administrator setting it:
with the account's name too, refused on the form (400 with the reason), never a 500."""

from __future__ import annotations

from typing import Any

from tests.conftest import csrf_from, password_of


def test_an_own_password_with_the_accounts_name_is_refused_on_the_form(login_as: Any) -> None:
    urban = login_as("urban")  # 住建局 王经办
    for new in ("王经办的新密码Tk8#q", "Lantern-王经办-42"):
        form = urban.get("/account/password").get_data(as_text=True)
        r = urban.post(
            "/account/password",
            data={
                "csrf_token": csrf_from(form),
                "current": password_of("urban"),
                "new": new,
                "repeat": new,
            },
        )
        assert r.status_code == 400, (new, r.status_code)
        assert "密码中不能包含该账号的姓名" in r.get_data(as_text=True), new
    assert urban.get("/board/cases").status_code == 200  # still signed in, same password
