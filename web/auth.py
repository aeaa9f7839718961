"""Signing in and out, changing one's password, and the role checks every board view uses.

Usernames are compared ignoring case and width (triage.directory.username_key). Sign-in is
limited per (address, username), per address across usernames (password spraying) and per
username across addresses (guessing from many machines), counted before the password is
checked (web.throttle). The last two do not apply in a browser that has signed in with that
username before (a signed "known device" cookie), so guessers spread over many addresses
cannot lock the owner out, nor a sprayer behind an office's one address its colleagues.
A failed sign-in costs the same hash work and answers after the same time whether the
username exists or not. Signing out and changing the password renew the account's session
token, which every session and "stay signed in" cookie carries (User.get_id), so cookies
issued before stop working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as browser_session
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from triage.access import Action, can
from triage.directory import find_user, username_key
from triage.models import User
from web import db, runtime, throttle
from web.forms import ChangePasswordForm, LoginForm
from web.i18n import _same_site, local_time
from web.passwords import (
    candidates,
    hash_password,
    renew_session_token,
    same_password,
    set_password,
)

__all__ = ["hash_password", "requires", "verify_password"]

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])

# The sign-in limits are configuration ([sign_in]); this one is not worth a setting.
PASSWORD_CHANGE_WINDOW = timedelta(minutes=15)
DEVICE_COOKIE = "minsheng_device"
DEVICE_COOKIE_DAYS = 180
# Wrong current passwords on the change-password form, per account.
PASSWORD_CHANGE_MAX_FAILURES = 5
# Every failed sign-in answers [sign_in] failed_answer_seconds after the view started: longer
# than the hash work, so its duration tells nothing about whether the username exists.

# Checked against when the account does not exist (or has no password), with the same
# method and cost as a real one, so both paths do the same work.
_DUMMY_HASH = hash_password("not-a-real-password")


def verify_password(user: User | None, password: str) -> bool:
    """True if `password` (in its NFKC form, or as typed for hashes stored before) is
    `user`'s. Does the same hash work whatever the answer and even for None: one check per
    form of the password, none skipped."""
    stored = user.password_hash if user is not None and user.password_hash else None
    results = [check_password_hash(stored or _DUMMY_HASH, p) for p in candidates(password)]
    return stored is not None and any(results)


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


def _login_limits(username: str, known_device: bool) -> list[throttle.Limit]:
    """This address with this username (`username_key`); unless this browser has signed in
    with it before, also this address with any username (spraying) and this username from
    anywhere (guessing from many machines). So a colleague behind the same office address,
    or the owner, is not locked out by somebody else's guessing."""
    settings = runtime().settings.sign_in
    limits = [
        throttle.Limit(
            "login:pair",
            throttle.client_key(f"user|{username}"),
            settings.max_failures,
            timedelta(minutes=settings.window_minutes),
        )
    ]
    if not known_device:
        limits += [
            throttle.Limit(
                "login:client",
                throttle.client_key(),
                settings.client_max_failures,
                timedelta(minutes=settings.client_window_minutes),
            ),
            throttle.Limit(
                "login:account",
                throttle.key_of("account", username),
                settings.account_max_failures,
                timedelta(minutes=settings.account_window_minutes),
            ),
        ]
    return limits


def _device_signature(username: str, nonce: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    message = f"device|{username_key(username)}|{nonce}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def _known_device(username: str) -> bool:
    """True if this browser has signed in with `username` before (its cookie says so)."""
    nonce, _dot, signature = request.cookies.get(DEVICE_COOKIE, "").partition(".")
    if not nonce or not signature:
        return False
    return hmac.compare_digest(signature, _device_signature(username, nonce))


def _remember_device(response: Response, username: str) -> Response:
    nonce = secrets.token_urlsafe(12)
    response.set_cookie(
        DEVICE_COOKIE,
        f"{nonce}.{_device_signature(username, nonce)}",
        max_age=int(timedelta(days=DEVICE_COOKIE_DAYS).total_seconds()),
        path=url_for("auth.login"),
        httponly=True,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        samesite="Lax",
    )
    return response


def _wait_message(attempt: throttle.Attempt) -> str:
    if attempt.refused is not None and attempt.refused.kind == "login:account":
        return _(
            "Too many wrong passwords for this username from many places. It is locked until "
            "%(time)s, except in browsers that have signed in with it before.",
            time=local_time(attempt.retry_at, "HH:mm") if attempt.retry_at else "",
        )
    if attempt.refused is not None and attempt.refused.kind == "login:client":
        return _(
            "Too many failed sign-ins from your network. Try again after %(time)s; browsers "
            "that have signed in with your username before are not affected.",
            time=local_time(attempt.retry_at, "HH:mm") if attempt.retry_at else "",
        )
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
    # One spelling of a username for the limits, the device cookie and the account: `Admin`
    # (a phone keyboard's capital) and `ａｄｍｉｎ` are `admin`.
    username = username_key(form.username.data)
    now = datetime.now(UTC)
    limits = _login_limits(username, known_device=_known_device(username))
    attempt = throttle.begin(runtime().sessions, limits, now)
    if attempt.refused is not None:
        flash(_wait_message(attempt), "error")
        return render_template("auth/login.html", form=form), 429
    session = db()
    user = find_user(session, form.username.data)
    account = user if user is not None and user.active else None
    if account is not None and verify_password(account, form.password.data):
        throttle.succeeded(session, attempt)
        if not account.session_token:
            # An account made outside Minsheng (SQL, an old backup) still gets a token.
            renew_session_token(account)
        account.last_login_at = now
        login_user(account, remember=form.remember.data)
        target = request.args.get("next")
        response = redirect(_same_site(target) if target else url_for("board.home"))
        return _remember_device(response, username)
    if account is None:
        verify_password(None, form.password.data)
    # Padded from the start of the view, not slept after: the answer comes at the same moment
    # whatever work the path did.
    padding = runtime().settings.sign_in.failed_answer_seconds
    time.sleep(max(0.0, padding - (time.monotonic() - started)))
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


# Where an account that must change its password may still go: the form, signing out, the
# language switch and the static files the form's page needs.
_WHILE_CHANGING = {
    "auth.change_password",
    "auth.logout_page",
    "auth.logout",
    "i18n.switch",
    "static",
}


@bp.before_app_request
def _password_first() -> Response | None:
    """An account whose password an administrator set or generated (`must_change_password`)
    is led to choose its own before any other page (a form sent meanwhile is not acted on).
    """
    if request.endpoint in _WHILE_CHANGING or request.blueprint == "open311":
        return None
    if "_user_id" not in browser_session:
        # Nobody signed in (a citizen's form): reading current_user would rewrite the
        # session cookie, and two tabs' answers would undo each other's receipt.
        return None
    if not current_user.is_authenticated or not current_user.must_change_password:
        return None
    if request.method == "GET":
        flash(_("Choose a password of your own before you go on."), "info")
    return redirect(url_for("auth.change_password"))


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
        PASSWORD_CHANGE_WINDOW,
    )
    attempt = throttle.begin(runtime().sessions, [limit], datetime.now(UTC))
    if attempt.refused is not None:
        flash(_wait_message(attempt), "error")
        return render_template("auth/password.html", form=form), 429
    if not verify_password(user, form.current.data):
        form.current.errors = [_("The current password is wrong.")]
        return render_template("auth/password.html", form=form), 400
    throttle.succeeded(db(), attempt)
    if same_password(form.new.data or "", form.current.data or ""):
        # Kept (or with a space or a capital added), a password an administrator set would
        # stay known to them.
        form.new.errors = [_("Choose a new password, not the current one.")]
        return render_template("auth/password.html", form=form), 400
    # The form checked the policy already; set_password checks it once more and signs the
    # account out everywhere, then this browser is signed in again with the new token.
    set_password(user, form.new.data)
    user.must_change_password = False
    remembered = current_app.config["REMEMBER_COOKIE_NAME"] in request.cookies
    login_user(user, remember=remembered)
    flash(_("Password changed. Other devices have been signed out."), "info")
    return redirect(url_for("board.home"))
