"""Signing out and changing a password revoke what was issued before: a copied session
cookie, a "stay signed in" cookie, another device's session. As an attacker who copied the
cookies would try them, by replaying them in a browser of their own."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from sqlalchemy import select, update

from tests.conftest import csrf_from, password_of
from triage.models import User

SESSION = "minsheng_session"
REMEMBER = "minsheng_remember"
NEW_PASSWORD = "Lantern-river-2026"


def sign_in(app: Any, username: str, password: str | None = None, remember: bool = True) -> Any:
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    data = {
        "csrf_token": token,
        "username": username,
        "password": password or password_of(username),
    }
    if remember:
        data["remember"] = "y"
    r = client.post("/login", data=data)
    assert r.status_code == 302, f"sign-in of {username}: {r.status_code}"
    return client


def signed_in(client: Any) -> bool:
    r = client.get("/board/cases")
    if r.status_code == 200:
        return True
    assert r.status_code == 302 and "/login" in r.headers["Location"], r.status_code
    return False


def cookie(client: Any, name: str) -> str:
    found = client.get_cookie(name)
    assert found is not None, f"no {name} cookie"
    return found.value


def browser_with(app: Any, **cookies: str) -> Any:
    """Another browser that holds only the given (copied) cookies."""
    client = app.test_client()
    for name, value in cookies.items():
        client.set_cookie(name, value)
    return client


def sign_out(client: Any) -> Any:
    page = client.get("/board/cases").get_data(as_text=True)
    return client.post("/logout", data={"csrf_token": csrf_from(page)})


def change_password(client: Any, current: str, new: str, repeat: str | None = None) -> Any:
    token = csrf_from(client.get("/account/password").get_data(as_text=True))
    return client.post(
        "/account/password",
        data={"csrf_token": token, "current": current, "new": new, "repeat": repeat or new},
    )


def test_copied_cookies_sign_in_until_sign_out_and_never_after(app: Any) -> None:
    victim = sign_in(app, "supervisor")
    stolen_session = cookie(victim, SESSION)
    stolen_remember = cookie(victim, REMEMBER)
    # While the victim is signed in, the copies work (that is what makes them worth revoking).
    assert signed_in(browser_with(app, **{SESSION: stolen_session}))
    assert signed_in(browser_with(app, **{REMEMBER: stolen_remember}))

    r = sign_out(victim)
    assert r.status_code == 302
    assert not signed_in(victim)
    assert not signed_in(browser_with(app, **{SESSION: stolen_session}))
    assert not signed_in(browser_with(app, **{REMEMBER: stolen_remember}))
    assert not signed_in(browser_with(app, **{SESSION: stolen_session, REMEMBER: stolen_remember}))


def test_signing_out_signs_out_every_device(app: Any) -> None:
    laptop = sign_in(app, "urban")
    phone = sign_in(app, "urban", remember=False)
    assert signed_in(phone)
    sign_out(laptop)
    assert not signed_in(phone)


def test_each_sign_in_after_a_sign_out_gets_a_new_remember_cookie(app: Any) -> None:
    first = sign_in(app, "operator")
    before = cookie(first, REMEMBER)
    sign_out(first)
    second = sign_in(app, "operator")
    after = cookie(second, REMEMBER)
    assert after != before
    assert signed_in(browser_with(app, **{REMEMBER: after}))
    assert not signed_in(browser_with(app, **{REMEMBER: before}))


def test_password_change_shuts_out_old_cookies_and_other_devices(app: Any) -> None:
    here = sign_in(app, "observer")
    elsewhere = sign_in(app, "observer")
    stolen = {SESSION: cookie(elsewhere, SESSION), REMEMBER: cookie(elsewhere, REMEMBER)}

    r = change_password(here, password_of("observer"), NEW_PASSWORD)
    assert r.status_code == 302
    assert signed_in(here), "the browser that changed the password stays signed in"
    assert not signed_in(elsewhere)
    assert not signed_in(browser_with(app, **stolen))
    # The browser that changed it also got a new remember cookie that works on its own.
    assert signed_in(browser_with(app, **{REMEMBER: cookie(here, REMEMBER)}))

    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    old = client.post(
        "/login",
        data={"csrf_token": token, "username": "observer", "password": password_of("observer")},
    )
    assert old.status_code == 401
    assert signed_in(sign_in(app, "observer", NEW_PASSWORD))


def test_password_form_applies_the_policy_and_needs_the_current_password(app: Any) -> None:
    client = sign_in(app, "safety", remember=False)
    cases = [
        (password_of("safety"), "short1", None, "10"),
        (password_of("safety"), "safety-officer-1", None, "用户名"),
        (password_of("safety"), "1234567890", None, "容易"),
        (password_of("safety"), NEW_PASSWORD, NEW_PASSWORD + "x", "不一致"),
    ]
    for current, new, repeat, says in cases:
        r = change_password(client, current, new, repeat)
        assert r.status_code == 400, new
        assert says in r.get_data(as_text=True), (new, says)
    wrong = change_password(client, "not-my-password", NEW_PASSWORD)
    assert wrong.status_code == 400
    assert "当前密码错误" in wrong.get_data(as_text=True)
    assert signed_in(client)
    # Nothing was changed: the old password still signs in.
    assert signed_in(sign_in(app, "safety", remember=False))


def test_guessing_the_current_password_on_a_stolen_session_is_limited(app: Any) -> None:
    client = sign_in(app, "transport", remember=False)
    answers = [change_password(client, f"guess-{i}", NEW_PASSWORD).status_code for i in range(7)]
    assert answers == [400] * 5 + [429] * 2
    # Even the right one now waits, and the password is unchanged.
    assert change_password(client, password_of("transport"), NEW_PASSWORD).status_code == 429
    assert signed_in(sign_in(app, "transport", remember=False))


def test_remember_cookie_is_short_lived_and_not_readable_by_scripts(app: Any) -> None:
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    r = client.post(
        "/login",
        data={
            "csrf_token": token,
            "username": "admin",
            "password": password_of("admin"),
            "remember": "y",
        },
    )
    header = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith(REMEMBER + "="))
    assert "HttpOnly" in header and "SameSite=Lax" in header
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", header).group(1))
    assert expires - datetime.now(UTC) < timedelta(days=15)


def test_get_logout_shows_a_sign_out_button_and_does_not_sign_out(app: Any) -> None:
    client = sign_in(app, "supervisor", remember=False)
    page = client.get("/logout")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert re.search(r'<form method="post" action="/logout"', html)
    assert signed_in(client), "a GET (a link, an image) must not sign anybody out"
    # A forged POST without the page's token is refused and signs nobody out.
    assert client.post("/logout").status_code == 400
    assert signed_in(client)
    assert client.post("/logout", data={"csrf_token": csrf_from(html)}).status_code == 302
    assert not signed_in(client)
    # Signed out, /logout just leads home.
    again = client.get("/logout")
    assert again.status_code == 302 and again.headers["Location"].endswith("/")


def test_cookies_of_the_old_form_sign_nobody_in(app: Any, runtime: Any) -> None:
    """Before session tokens, the cookies carried the bare user id; such a cookie, valid
    and signed with the right key, must not sign anybody in any more."""
    from flask_login.utils import encode_cookie

    with runtime.sessions() as s:
        admin_id = s.scalar(select(User.id).where(User.username == "admin"))
    with app.test_request_context():
        old_remember = encode_cookie(str(admin_id))
    assert not signed_in(browser_with(app, **{REMEMBER: old_remember}))


def test_an_account_without_a_token_still_signs_in_and_stays(app: Any, runtime: Any) -> None:
    with runtime.sessions() as s, s.begin():
        s.execute(update(User).where(User.username == "urban").values(session_token=""))
    client = sign_in(app, "urban", remember=False)
    assert signed_in(client)
    assert signed_in(client)
