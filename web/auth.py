"""Signing in and out, changing one's password, and the role checks every board view uses.

Sign-in is limited per (address, username) and per address across usernames (password
spraying), counted before the password is checked (web.throttle). A failed sign-in costs the
same hash work and answers after the same time whether the username exists or not. Signing
out and changing the password renew the account's session token, which every session and
"stay signed in" cookie carries (User.get_id), so cookies issued before stop working.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from triage.access import Action, can
from triage.models import User
from web import db, runtime, throttle
from web.forms import ChangePasswordForm, LoginForm
from web.i18n import _same_site, local_time
from web.passwords import hash_password, renew_session_token, set_password

__all__ = ["hash_password", "requires", "verify_password"]

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])

LOGIN_WINDOW = timedelta(minutes=15)
# Wrong passwords for one username from one address.
LOGIN_MAX_FAILURES = 10
# Wrong sign-ins from one address, whatever the username: stops spraying one password over
# many accounts while an office behind one address still signs in.
LOGIN_MAX_FAILURES_PER_CLIENT = 30
# Wrong current passwords on the change-password form, per account.
PASSWORD_CHANGE_MAX_FAILURES = 5
# Every failed sign-in answers this long after the view started: longer than the hash work,
# so its duration tells nothing about whether the username exists.
FAILED_SIGN_IN_SECONDS = 0.5

# Checked against when the account does not exist (or has no password), with the same
# method and cost as a real one, so both paths do the same work.
_DUMMY_HASH = hash_password("not-a-real-password")


def verify_password(user: User | None, password: str) -> bool:
    """True if `password` is `user`'s; always does one full hash check, even for None."""
    if user is None or not user.password_hash:
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(user.password_hash, password)


def requires(action: Action) -> Callable[[F], F]:
    """Refuses (403) a signed-in user whose role may not do `action`."""

    def decorator(view: F) -> F:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not can(current_user, action):
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def _login_limits(username: str) -> list[throttle.Limit]:
    return [
        throttle.Limit(
            "login:pair",
            throttle.client_key(f"user|{username.lower()}"),
            LOGIN_MAX_FAILURES,
            LOGIN_WINDOW,
        ),
        throttle.Limit(
            "login:client", throttle.client_key(), LOGIN_MAX_FAILURES_PER_CLIENT, LOGIN_WINDOW
        ),
    ]


def _wait_message(attempt: throttle.Attempt) -> str:
    return _(
        "Too many failed sign-ins. Try again after %(time)s.",
        time=local_time(attempt.retry_at, "HH:mm") if attempt.retry_at else "",
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    started = time.monotonic()
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), (
            400 if request.method == "POST" else 200
        )
    username = form.username.data.strip()
    now = datetime.now(UTC)
    attempt = throttle.begin(runtime().sessions, _login_limits(username), now)
    if attempt.refused is not None:
        flash(_wait_message(attempt), "error")
        return render_template("auth/login.html", form=form), 429
    session = db()
    user = session.scalar(select(User).where(User.username == username))
    account = user if user is not None and user.active else None
    if account is not None and verify_password(account, form.password.data):
        throttle.succeeded(session, attempt)
        if not account.session_token:
            # An account made outside Minsheng (SQL, an old backup) still gets a token.
            renew_session_token(account)
        account.last_login_at = now
        login_user(account, remember=form.remember.data)
        target = request.args.get("next")
        return redirect(_same_site(target) if target else url_for("board.home"))
    if account is None:
        verify_password(None, form.password.data)
    # Padded from the start of the view, not slept after: the answer comes at the same moment
    # whatever work the path did.
    time.sleep(max(0.0, FAILED_SIGN_IN_SECONDS - (time.monotonic() - started)))
    flash(_("Wrong username or password."), "error")
    return render_template("auth/login.html", form=form), 401


@bp.get("/logout")
def logout_page() -> Response | str:
    """A page with the sign-out button: signing out takes a POST with its CSRF token."""
    if not current_user.is_authenticated:
        return redirect(url_for("citizen.home"))
    return render_template("auth/logout.html")


@bp.post("/logout")
def logout() -> Response:
    if current_user.is_authenticated:
        # Every copy of this account's cookies, here and elsewhere, stops working.
        renew_session_token(current_user._get_current_object())
    logout_user()
    flash(_("You have signed out."), "info")
    return redirect(url_for("citizen.home"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> Response | str | tuple[str, int]:
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return render_template("auth/password.html", form=form), (
            400 if request.method == "POST" else 200
        )
    user: User = current_user._get_current_object()
    limit = throttle.Limit(
        "password:user",
        throttle.key_of("user", str(user.id)),
        PASSWORD_CHANGE_MAX_FAILURES,
        LOGIN_WINDOW,
    )
    attempt = throttle.begin(runtime().sessions, [limit], datetime.now(UTC))
    if attempt.refused is not None:
        flash(_wait_message(attempt), "error")
        return render_template("auth/password.html", form=form), 429
    if not verify_password(user, form.current.data):
        form.current.errors = [_("The current password is wrong.")]
        return render_template("auth/password.html", form=form), 400
    throttle.succeeded(db(), attempt)
    # The form checked the policy already; set_password checks it once more and signs the
    # account out everywhere, then this browser is signed in again with the new token.
    set_password(user, form.new.data)
    remembered = current_app.config["REMEMBER_COOKIE_NAME"] in request.cookies
    login_user(user, remember=remembered)
    flash(_("Password changed. Other devices have been signed out."), "info")
    return redirect(url_for("board.home"))
