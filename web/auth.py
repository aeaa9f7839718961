"""Signing in and out, password hashing, and the role checks every board view uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from triage.access import Action, can
from triage.models import User
from web import db
from web.forms import ChangePasswordForm, LoginForm
from web.i18n import _same_site
from web.throttle import client_key, failures, mark_failure, retry_after

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])

LOGIN_WINDOW = timedelta(minutes=15)
LOGIN_MAX_FAILURES = 10
# Checked against when the user does not exist, so both paths cost the same time.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def verify_password(user: User | None, password: str) -> bool:
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


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    form = LoginForm()
    if form.validate_on_submit():
        now = datetime.now(UTC)
        session = db()
        # Per address and username: one client guessing cannot lock everybody out.
        key = client_key(form.username.data.strip().lower())
        if failures(session, "login", key, now, LOGIN_WINDOW) >= LOGIN_MAX_FAILURES:
            wait = retry_after(session, "login", key, now, LOGIN_WINDOW)
            flash(
                _(
                    "Too many failed sign-ins. Try again in %(minutes)d minutes.",
                    minutes=max(1, wait // 60),
                ),
                "error",
            )
            return render_template("auth/login.html", form=form), 429
        user = session.scalar(select(User).where(User.username == form.username.data.strip()))
        if user is not None and user.active and verify_password(user, form.password.data):
            user.last_login_at = now
            login_user(user, remember=form.remember.data)
            return redirect(
                _same_site(request.args.get("next"))
                if request.args.get("next")
                else url_for("board.home")
            )
        if user is not None and not user.active:
            verify_password(None, form.password.data)
        mark_failure(session, "login", key, now)
        session.commit()  # the failure must count even though this response is an error
        time.sleep(0.5)
        flash(_("Wrong username or password."), "error")
        return render_template("auth/login.html", form=form), 401
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout() -> Response:
    logout_user()
    flash(_("You have signed out."), "info")
    return redirect(url_for("citizen.home"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> Response | str:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        if not verify_password(current_user, form.current.data):
            flash(_("The current password is wrong."), "error")
            return render_template("auth/password.html", form=form), 400
        current_user.password_hash = hash_password(form.new.data)
        flash(_("Password changed."), "info")
        return redirect(url_for("board.home"))
    return render_template("auth/password.html", form=form)
