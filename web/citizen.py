"""The public pages: home, the complaint form with its receipt, and progress lookup."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from intake.files import sniff_type
from intake.submission import Attachment, Channel, Contact, Kind, Submission
from triage.cases import check_query_code, derived_query_code, find_by_external_id, register
from triage.models import Case, Department
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
        result.append(Attachment(filename=f.filename, content_type=kind, data=data))
    return tuple(result)


@bp.route("/complain", methods=["GET", "POST"])
def complain() -> Response | str | tuple[str, int]:
    if not runtime().settings.intake.web_form:
        abort(404)
    form = ComplaintForm()
    if request.method == "GET":
        form.token.data = secrets.token_urlsafe(16)
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template(
            "citizen/complain.html", form=form, limits=runtime().settings.attachments
        ), status
    token = (form.token.data or "").strip() or secrets.token_urlsafe(16)
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
        subject=form.subject.data.strip(),
        body=form.body.data.strip(),
        contact=Contact(
            name=form.name.data or "", phone=form.phone.data or "", email=form.email.data or ""
        ),
        attachments=attachments,
    )
    s = db()
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
    receipts = session.get("receipts", {})
    receipts[tracking] = code
    session["receipts"] = dict(list(receipts.items())[-5:])
    return redirect(url_for("citizen.receipt", number=tracking))


@bp.get("/receipt/<number>")
def receipt(number: str) -> str:
    """Shows the receipt to the browser that submitted; the code is known only to it."""
    receipts = session.get("receipts", {})
    if number not in receipts:
        abort(404)
    case = db().scalar(select(Case).where(Case.tracking_number == number))
    if case is None:
        abort(404)
    return render_template("citizen/receipt.html", case=case, query_code=receipts[number])


@bp.route("/track", methods=["GET", "POST"])
def track() -> str | tuple[str, int]:
    started = time.monotonic()
    form = TrackForm()
    if request.method == "GET" and request.args.get("number"):
        form.tracking_number.data = request.args["number"]
    if not form.validate_on_submit():
        return render_template("citizen/track.html", form=form, case=None)
    settings = runtime().settings.tracking
    number = form.tracking_number.data.strip().upper()
    # Counted before it is judged, so that guesses sent all at once cannot overtake the count.
    attempt = throttle.begin(
        runtime().sessions, throttle.tracking_limits(settings, number), datetime.now(UTC)
    )
    if attempt.refused is not None:
        flash(_track_locked_message(attempt, settings.hotline), "error")
        return render_template("citizen/track.html", form=form, case=None), 429
    s = db()
    case = s.scalar(select(Case).where(Case.tracking_number == number))
    if case is None or not check_query_code(case.query_code_hash, form.query_code.data):
        # Equal answer and equal time whether the number exists or not.
        time.sleep(max(0.0, TRACK_FAILURE_SECONDS - (time.monotonic() - started)))
        flash(_("No case matches this tracking number and query code."), "error")
        if attempt.remaining <= settings.warn_when_left:
            flash(_track_warning(attempt), "warning")
        return render_template("citizen/track.html", form=form, case=None), 404
    # A right code does not count, and clears nobody's failures but its own mark.
    throttle.succeeded(s, attempt)
    return render_template("citizen/track.html", form=form, **tracking_view(case))


TRACK_FAILURE_SECONDS = 0.3
"""Every failed lookup answers after this long from the start of the request."""


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
            "protect it. Try again after %(time)s, or call the hotline %(hotline)s.",
            time=until,
            hotline=hotline,
        )
    if kind == "track:client":
        return _(
            "Too many wrong lookups from your network. Try again after %(time)s, or call the "
            "hotline %(hotline)s.",
            time=until,
            hotline=hotline,
        )
    return _(
        "Too many wrong query codes for this tracking number. Try again after %(time)s, or "
        "call the hotline %(hotline)s.",
        time=until,
        hotline=hotline,
    )
