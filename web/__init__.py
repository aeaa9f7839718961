"""The Flask application: public pages, the board, auth. One database session per request,
committed once when the view has succeeded."""

from __future__ import annotations

import gc
import hmac
import os
import re
from datetime import timedelta
from typing import Any

from flask import Flask, Response, abort, current_app, g, request, session
from flask_babel import Babel
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from werkzeug.exceptions import Conflict, ServiceUnavailable
from werkzeug.routing import IntegerConverter

from triage.models import User
from web.db import is_busy, is_conflict
from web.runtime import Runtime
from web.settings import Settings, load_settings

LOCALES = ("zh", "en")
BUSY_RETRY_SECONDS = 10
"""Retry-After of the 503 a request gets when SQLite's write lock was busy too long."""
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_CONTROL_NOT_SPACE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control characters but tab and line breaks: those a pasted search or date brings, which
every view reads as white space."""
# (endpoint, parameter) whose view reads control characters itself: a search box's pasted
# tab or line break is a space there, and a NUL is refused with a message, not a bare 400.
_OWN_CONTROL_CHECK = {("admin.users", "q")}


class DatabaseId(IntegerConverter):
    """An integer path segment within the range of a database integer column."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


csrf = CSRFProtect()
babel = Babel()
login_manager = LoginManager()


def runtime() -> Runtime:
    return current_app.extensions["minsheng"]


def db() -> Session:
    """The request's session; the request commits it once at the end."""
    if "db" not in g:
        g.db = runtime().sessions()
    return g.db


def select_locale() -> str:
    lang = request.args.get("lang") or session.get("lang") or request.cookies.get("lang")
    if lang in LOCALES:
        return lang
    return runtime().settings.app.default_locale


def create_app(
    config: Settings | str | os.PathLike[str] | None = None, **flask_config: Any
) -> Flask:
    settings = config if isinstance(config, Settings) else load_settings(config)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    # Every <int:…> in a URL is a database id: one too large for the column is "not found",
    # not an overflow in the driver.
    app.url_map.converters["int"] = DatabaseId
    app.config.update(
        SECRET_KEY=settings.secret_key(),
        MAX_CONTENT_LENGTH=int(
            settings.attachments.max_files * settings.attachments.max_file_mb * 1024 * 1024
            + 1024 * 1024
        ),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.app.session_cookie_secure,
        SESSION_COOKIE_NAME="minsheng_session",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.app.session_cookie_secure,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_NAME="minsheng_remember",
        REMEMBER_COOKIE_DURATION=timedelta(days=14),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        WTF_CSRF_TIME_LIMIT=None,
        BABEL_DEFAULT_LOCALE=settings.app.default_locale,
        BABEL_DEFAULT_TIMEZONE=settings.app.timezone,
        BABEL_TRANSLATION_DIRECTORIES=os.path.join(os.path.dirname(__file__), "translations"),
    )
    app.config.update(flask_config)
    app.extensions["minsheng"] = Runtime.build(settings)
    if settings.app.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.app.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    # Flask-Login's own prompts are English: ours, translated when shown.
    login_manager.login_message = _l("Please sign in to see this page.")
    login_manager.login_message_category = "info"
    login_manager.needs_refresh_message = _l("Please sign in again to see this page.")
    login_manager.needs_refresh_message_category = "info"
    login_manager.localize_callback = str  # the lazy text in the request's language
    login_manager.session_protection = "strong"

    from web import auth, board, citizen, i18n, operator

    app.register_blueprint(citizen.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(board.bp)
    app.register_blueprint(operator.bp)
    from web import call_imports

    app.register_blueprint(call_imports.bp)
    from web import mail_lists

    app.register_blueprint(mail_lists.bp)
    from web import observations, supervision_checks

    app.register_blueprint(supervision_checks.bp)
    app.register_blueprint(observations.bp)
    from web import open311

    open311.init_app(app)
    from web import dashboard, performance

    app.register_blueprint(dashboard.bp)
    app.register_blueprint(performance.bp)
    from web import supervision_extensions

    app.register_blueprint(supervision_extensions.bp)
    from web import commitments, supervision_findings

    app.register_blueprint(supervision_findings.bp)
    app.register_blueprint(commitments.bp)
    from web import satisfaction

    app.register_blueprint(satisfaction.bp)
    from web import admin, kanban

    app.register_blueprint(admin.bp)
    app.register_blueprint(kanban.bp)
    i18n.init_app(app)
    from web import notices

    notices.init_app(app)

    @login_manager.user_loader
    def _load_user(user_id: str) -> User | None:
        # "<id>:<session token>" (User.get_id): a cookie issued before the last sign-out or
        # password change carries an old token and signs nobody in.
        number, _sep, token = str(user_id).partition(":")
        if not (number.isascii() and number.isdigit() and token and len(number) <= 10):
            return None
        if int(number) >= 2**31:
            return None
        user = db().get(User, int(number))
        if user is None or not user.active:
            return None
        return user if hmac.compare_digest(user.session_token, token) else None

    @app.after_request
    def _commit_and_harden(response: Response) -> Response:
        s: Session | None = g.get("db")
        if s is not None:
            if response.status_code < 400:
                try:
                    s.commit()
                except OperationalError as e:
                    # A change first written at the commit (flushed only then).
                    if is_conflict(e):
                        response = conflict_response(e)
                    elif is_busy(e):
                        response = busy_response(e)
                    else:
                        raise
            else:
                s.rollback()
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
            "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "geolocation=(), microphone=()")
        if settings.app.session_cookie_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    _register_error_pages(app)

    @app.before_request
    def _keep_chosen_language() -> None:
        # A link with ?lang= (shared, or the page's own) chooses the language for the visit:
        # the pages it links to carry no lang, and would switch back at the next click.
        lang = request.args.get("lang")
        if lang in LOCALES and request.blueprint != "open311" and session.get("lang") != lang:
            session["lang"] = lang

    @app.before_request
    def _refuse_control_characters() -> None:
        # No page has an address or parameter with control characters, and PostgreSQL
        # refuses NUL in any text: refuse them before they reach a query.
        if _CONTROL.search(request.path):
            abort(404)
        for k, v in request.args.items(multi=True):
            if (request.endpoint, k) not in _OWN_CONTROL_CHECK and _CONTROL_NOT_SPACE.search(v):
                from flask_babel import gettext as _

                abort(
                    400,
                    description=_(
                        "The address's “%(name)s” holds a character that cannot be typed "
                        "(a control character). Remove it and try again.",
                        name=k[:40],
                    ),
                )

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        s: Session | None = g.pop("db", None)
        if s is not None:
            if exc is not None:
                s.rollback()
            s.close()

    if not app.testing:
        # The app's startup leaves some 230,000 long-lived objects (templates, models,
        # statements); every full collection walked them all, 100-120 ms of CPU every few
        # requests in each gunicorn worker. Frozen, collections skip them.
        gc.freeze()
    return app


def busy_response(error: Exception) -> Response:
    """The 503 "busy, not saved, send it again" (Retry-After: `BUSY_RETRY_SECONDS`) of a
    request whose write did not get SQLite's write lock in time (`web.db.is_busy`), in the
    format of the request's blueprint (the Open311 API's own). The request's session is
    rolled back first: the page's header reads the database."""
    current_app.logger.warning("database busy: %s %s: %s", request.method, request.path, error)
    s: Session | None = g.get("db")
    if s is not None:
        s.rollback()
    response = current_app.make_response(current_app.handle_http_exception(ServiceUnavailable()))
    response.headers["Retry-After"] = str(BUSY_RETRY_SECONDS)
    return response


def conflict_response(error: Exception) -> Response:
    """The 409 "someone else changed this at the same time, look again" of a request whose
    transaction PostgreSQL rolled back for colliding with another (`web.db.is_conflict`:
    a deadlock, a serialization failure), after rolling the request's session back (the
    page's header reads the database)."""
    current_app.logger.warning("write conflict: %s %s: %s", request.method, request.path, error)
    s: Session | None = g.get("db")
    if s is not None:
        s.rollback()
    return current_app.make_response(current_app.handle_http_exception(Conflict()))


def _register_error_pages(app: Flask) -> None:
    from flask import render_template
    from flask_babel import gettext as _
    from werkzeug.exceptions import HTTPException

    pages = {
        400: (
            lambda: _("Request not accepted"),
            lambda: _("The form was not accepted; it may have expired. Reload it and try again."),
        ),
        403: (lambda: _("Not allowed"), lambda: _("Your role may not do this.")),
        404: (
            lambda: _("Not found"),
            lambda: _("There is nothing here, or you may not see it."),
        ),
        405: (lambda: _("Not allowed"), lambda: _("This address does not take this request.")),
        409: (
            lambda: _("Changed at the same time"),
            lambda: _(
                "Someone else changed this case at the same time: what you sent was not "
                "saved. Please look again."
            ),
        ),
        413: (lambda: _("Too large"), lambda: _("The upload is too large.")),
        429: (
            lambda: _("Too many attempts"),
            lambda: _("Too many attempts. Please wait a few minutes."),
        ),
        503: (
            lambda: _("The system is busy"),
            lambda: _(
                "The system is busy right now: what you sent was not saved. Please go back "
                "and send it again in a moment."
            ),
        ),
    }

    @app.errorhandler(DBAPIError)
    def _database_busy(e: DBAPIError) -> Any:
        """SQLite's write lock not had within the busy timeout (another process's long
        transaction): 503 "busy, not saved, send it again", in the page's own format (the
        Open311 API's JSON), not a server error; PostgreSQL's deadlock or serialization
        failure between two writers: 409 "changed at the same time". Any other database
        error stays one."""
        if is_conflict(e):
            return conflict_response(e)
        if not is_busy(e):
            raise e
        return busy_response(e)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> tuple[str, int]:
        code = e.code or 500
        s: Session | None = g.get("db")
        if code >= 500 and s is not None:
            # The error may have left the session failed (PendingRollbackError on the
            # page's first query: a bare 500 instead of this page).
            s.rollback()
        title, message = pages.get(
            code, (lambda: _("Something went wrong"), lambda: _("Please try again later."))
        )
        # A view's own reason (abort's description) says more than the code's page.
        said = e.description if e.description != type(e).description else None
        shown = said or message()
        return render_template("error.html", code=code, title=title(), message=shown), code
