"""The public pages: home, the complaint form with its receipt, and progress lookup."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from intake.files import name_for_type, sniff_type
from intake.normalise import clean_filename
from intake.submission import Attachment, Channel, Contact, Kind, Submission
from triage.cases import (
    check_query_code,
    derived_query_code,
    find_by_external_id,
    register,
)
from triage.models import Case, Department
from triage.tracking_numbers import normalise_tracking_number
from web import db, runtime, throttle
from web.forms import ComplaintForm, TrackForm
from web.i18n import local_time
from web.tracking import tracking_view

bp = Blueprint("citizen", __name__)


@bp.get("/")
def home() -> str:
    departments = (
        db()
        .scalars(select(Department).where(Department.active.is_(True)).order_by(Department.id))
        .all()
    )
    return render_template("citizen/home.html", departments=departments)


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers and bots ask for it on every site; the icon is the SVG the pages link."""
    return send_from_directory(
        current_app.static_folder or "static",
        "favicon.svg",
        mimetype="image/svg+xml",
        max_age=86400,
    )


class AttachmentRefused(ValueError):
    pass


def _read_attachments(files: list) -> tuple[Attachment, ...]:
    """Reads the uploads, refusing too many, too big or the wrong type, with a clear reason."""
    limits = runtime().settings.attachments
    uploads = [f for f in files if f and f.filename]
    if len(uploads) > limits.max_files:
        raise AttachmentRefused(
            _("At most %(n)d files, please; you chose %(m)d.", n=limits.max_files, m=len(uploads))
        )
    max_bytes = int(limits.max_file_mb * 1024 * 1024)
    result = []
    for f in uploads:
        f.filename = clean_filename(f.filename)
        data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise AttachmentRefused(
                _(
                    "%(name)s is larger than %(mb)s MB.",
                    name=f.filename,
                    mb=f"{limits.max_file_mb:g}",
                )
            )
        if not data:
            raise AttachmentRefused(_("%(name)s is empty.", name=f.filename))
        kind = sniff_type(data)
        if kind not in limits.allowed_types:
            raise AttachmentRefused(
                _("%(name)s is not a photo or PDF we can accept.", name=f.filename)
            )
        name = name_for_type(clean_filename(f.filename), kind)
        result.append(Attachment(filename=name, content_type=kind, data=data))
    return tuple(result)


RECEIPT_MINUTES = 30
"""How long after submitting the receipt page still shows the query code."""


def _browser_id() -> str:
    """A random id of this browser, kept in its session from the first visit to the form."""
    if "browser" not in session:
        session["browser"] = secrets.token_urlsafe(16)
    return session["browser"]


def _sign(*parts: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(key, "|".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def _new_form_token() -> str:
    """A form token bound to this browser: another browser cannot use it to see a receipt."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_sign('form', _browser_id(), nonce)}"


def _form_token_of_this_browser(token: str) -> bool:
    nonce, _dot, signature = token.partition(".")
    browser = session.get("browser")
    if not nonce or not signature or not browser:
        return False
    return hmac.compare_digest(signature, _sign("form", browser, nonce))


RECEIPT_COOKIE_DAYS = 7
"""How long a browser keeps the right to see its receipt (without the code, after a while)."""


def receipt_cookie(number: str) -> str:
    """The cookie that proves this browser sent case `number`'s form."""
    return f"minsheng_receipt_{number}"


def receipt_key(external_id: str) -> str:
    """What the receipt's address carries to prove that its holder sent the form."""
    return _sign("receipt", external_id)


@bp.route("/complain", methods=["GET", "POST"])
def complain() -> Response | str | tuple[str, int]:
    if not runtime().settings.intake.web_form:
        abort(404)
    form = ComplaintForm()
    if request.method == "GET":
        form.token.data = _new_form_token()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template(
            "citizen/complain.html", form=form, limits=runtime().settings.attachments
        ), status
    token = form.token.data or ""
    if not _form_token_of_this_browser(token):
        # A token made for another browser (or none): this is a complaint of its own, and
        # never a way to that browser's receipt.
        token = secrets.token_urlsafe(16)
    try:
        attachments = _read_attachments(request.files.getlist(form.attachments.name))
    except AttachmentRefused as e:
        form.attachments.errors = [str(e)]
        return render_template(
            "citizen/complain.html", form=form, limits=runtime().settings.attachments
        ), 400
    now = datetime.now(UTC)
    submission = Submission(
        channel=Channel.WEB,
        external_id=f"form:{token[:200]}",
        received_at=now,
        kind=Kind(form.kind.data),
        subject=form.subject.data,
        body=form.body.data,
        contact=Contact(
            name=form.name.data or "", phone=form.phone.data or "", email=form.email.data or ""
        ),
        attachments=attachments,
        place=form.place.data or "",
    )
    s = db()
    earlier = find_by_external_id(s, Channel.WEB, submission.external_id)
    if earlier is not None and (earlier.subject, earlier.body) != (
        submission.subject,
        submission.body,
    ):
        # The form was sent before and then changed (back, edit, send): a complaint of its
        # own, not a repeat of the first; sent twice in its new form, still one case.
        content = hashlib.sha256(f"{submission.subject}\n{submission.body}".encode())
        submission = replace(
            submission, external_id=f"{submission.external_id}#{content.hexdigest()[:16]}"
        )
    code = derived_query_code(current_app.config["SECRET_KEY"], submission.external_id)
    try:
        tracking = register(
            s, submission, runtime().intake_policy(), now, code
        ).case.tracking_number
        s.commit()
    except IntegrityError:
        # The same form sent twice at once: the other request made the case.
        s.rollback()
        case = find_by_external_id(s, Channel.WEB, submission.external_id)
        if case is None:
            raise
        tracking = case.tracking_number
    # A cookie of this receipt's own, not the session, says who may see it: two forms sent
    # at once from one browser each get theirs (each answer would rewrite the one session),
    # and no key appears in an address, a log or a browser's history.
    response = redirect(url_for("citizen.receipt", number=tracking))
    response.set_cookie(
        receipt_cookie(tracking),
        receipt_key(submission.external_id),
        max_age=RECEIPT_COOKIE_DAYS * 86400,
        path=url_for("citizen.receipt", number=tracking),
        secure=runtime().settings.app.session_cookie_secure,
        httponly=True,
        samesite="Lax",
    )
    # The browser that sent the case may always look it up, whatever others guessed.
    throttle.remember_tracking_number(response, tracking)
    return response


@bp.get("/receipt/<number>")
def receipt(number: str) -> Response:
    """The receipt, for the browser that sent the form (it holds the receipt's cookie).

    The query code shows for `RECEIPT_MINUTES` after submitting; then the page says to use
    the one written down. Never cached, never sent on as a referrer.
    """
    case = db().scalar(select(Case).where(Case.tracking_number == number))
    key = request.cookies.get(receipt_cookie(number), "")
    if (
        case is None
        or case.channel != Channel.WEB
        or not hmac.compare_digest(key.encode(), receipt_key(case.external_id).encode())
    ):
        abort(404)
    shown_until = case.received_at + timedelta(minutes=RECEIPT_MINUTES)
    code = None
    if datetime.now(UTC) < shown_until:
        code = derived_query_code(current_app.config["SECRET_KEY"], case.external_id)
    response = make_response(
        render_template("citizen/receipt.html", case=case, query_code=code, shown_until=shown_until)
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/track", methods=["GET", "POST"])
def track() -> Response:
    """Progress lookup by tracking number and query code, limited per web.throttle.

    Any spelling of the number (`normalise_tracking_number`) and of the code counts as the
    same; one that cannot be a tracking number is a form error and costs no attempt. A right
    answer marks the browser as holding the number (`throttle.remember_tracking_number`).
    """
    started = time.monotonic()
    form = TrackForm()
    if request.method == "GET" and request.args.get("number"):
        form.tracking_number.data = request.args["number"]
    if not form.validate_on_submit():
        return _track_page(form, 400 if request.method == "POST" else 200)
    settings = runtime().settings.tracking
    number = normalise_tracking_number(
        form.tracking_number.data, runtime().settings.app.tracking_prefix
    )
    if number is None:
        form.tracking_number.errors = [
            _(
                "This is not a tracking number: it looks like %(example)s.",
                example=f"{runtime().settings.app.tracking_prefix}-{datetime.now(UTC).year}-000123",
            )
        ]
        return _track_page(form, 400)
    form.tracking_number.data = number
    # Counted before it is judged, so that guesses sent all at once cannot overtake the count.
    known = throttle.knows_tracking_number(number)
    attempt = throttle.begin(
        runtime().sessions,
        throttle.tracking_limits(settings, number, known_browser=known),
        datetime.now(UTC),
    )
    if attempt.refused is not None:
        flash(_track_locked_message(attempt, settings.hotline), "error")
        return _track_page(form, 429)
    s = db()
    case = s.scalar(select(Case).where(Case.tracking_number == number))
    if case is None or not check_query_code(
        case.query_code_hash, form.query_code.data, current_app.config["SECRET_KEY"].encode()
    ):
        # Equal answer and equal time whether the number exists or not.
        time.sleep(max(0.0, settings.failed_answer_seconds - (time.monotonic() - started)))
        flash(_("No case matches this tracking number and query code."), "error")
        if attempt.remaining <= settings.warn_when_left:
            flash(_track_warning(attempt), "warning")
        return _track_page(form, 404)
    # A right code does not count, and clears nobody's failures but its own mark.
    throttle.succeeded(s, attempt)
    response = _track_page(form, 200, **tracking_view(case))
    return throttle.remember_tracking_number(response, case.tracking_number)


def _track_page(form: TrackForm, status: int, **context: object) -> Response:
    """The tracking page: the query code is never written back into it, and no answer of
    /track is kept in a cache (a shared computer's back button or a proxy would show it)."""
    form.query_code.data = ""
    context.setdefault("case", None)
    response = make_response(render_template("citizen/track.html", form=form, **context), status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _track_warning(attempt: throttle.Attempt) -> str:
    """Said before the lock, so that nobody is locked out without warning."""
    per_network = attempt.tightest is not None and attempt.tightest.kind == "track:client"
    if attempt.remaining == 0:
        if per_network:
            return _("That was the last attempt for now: lookups from your network pause.")
        return _("That was the last attempt for now: lookups of this number pause.")
    if per_network:
        return _(
            "Wrong lookups left from your network: %(n)d. After that, lookups pause for a while.",
            n=attempt.remaining,
        )
    return _(
        "Attempts left for this tracking number: %(n)d. After that, lookups of it pause for "
        "a while.",
        n=attempt.remaining,
    )


def _track_locked_message(attempt: throttle.Attempt, hotline: str) -> str:
    until = local_time(attempt.retry_at, "HH:mm") if attempt.retry_at else ""
    kind = attempt.refused.kind if attempt.refused else ""
    if kind == "track:number":
        return _(
            "This tracking number has had too many wrong query codes and is locked for now to "
            "protect it. The browser that submitted it, or one that looked it up before, can "
            "still look it up. Otherwise try again after %(time)s, or call the hotline "
            "%(hotline)s, who can tell you the progress of your case.",
            time=until,
            hotline=hotline,
        )
    if kind == "track:client":
        return _(
            "Too many wrong lookups from your network. A browser that submitted a case, or "
            "looked it up before, can still look that case up. Otherwise try again after "
            "%(time)s, or call the hotline %(hotline)s, who can tell you the progress of your "
            "case.",
            time=until,
            hotline=hotline,
        )
    return _(
        "Too many wrong query codes for this tracking number. Try again after %(time)s, or "
        "call the hotline %(hotline)s, who can tell you the progress of your case.",
        time=until,
        hotline=hotline,
    )
