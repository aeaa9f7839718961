"""The supervisors' email-intake pages: the quarantine list (mail that could not be read, and
bounces of unknown mail), the suspected-spam list, a quarantined message's "make a case of
this" page, and the download of a raw message.

Only roles that triage (supervisors, administrators) may open any of them: raw mail carries
the citizen's full headers, so department handlers and external supervisors read the cleaned
later messages on the case page instead (web/board.py), never the raw bytes. The domain is
`triage.mail_intake`; these views parse input, call one function and render.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

from intake.mail.headers import parse_address
from intake.mail.salvage import salvage_text
from intake.normalise import clean_line
from triage.access import Action
from triage.mail_intake import (
    IncomingMail,
    ListActionError,
    ListStatus,
    Outcome,
    confirm_spam,
    intake_health,
    make_case_of_quarantined,
    pending_mail,
    raw_of,
    release_spam,
)
from triage.models import Case
from web import db, runtime
from web.auth import requires
from web.cli_intake import mail_policy
from web.forms import ActionForm, Form, whole_number

bp = Blueprint("mail", __name__, url_prefix="/board/mail")

PAGE_SIZE = 50
# Decided rows shown under a list, so a supervisor sees what became of the last ones.
RECENT = 20
# How much of an unreadable message's body is offered for the supervisor to edit.
PREFILL_CHARS = 5000
LISTS = ("quarantine", "spam")


class MakeCaseForm(Form):
    """A supervisor's reading of a quarantined message; what becomes the case's text."""

    subject = StringField(
        _l("Subject"),
        validators=[Optional(), Length(max=200, message=_l("At most 200 characters."))],
    )
    body = TextAreaField(
        _l("Text of the complaint"),
        validators=[
            DataRequired(_l("Please describe the problem.")),
            Length(max=5000, message=_l("Between 4 and 5000 characters, please.")),
        ],
    )
    contact_name = StringField(
        _l("Name (optional)"),
        validators=[Optional(), Length(max=100, message=_l("At most 100 characters."))],
    )
    contact_email = StringField(
        _l("Email (optional)"),
        validators=[
            Optional(),
            Email(message=_l("Not an email address.")),
            Length(max=200, message=_l("At most 200 characters.")),
        ],
    )


def _now() -> datetime:
    return datetime.now(UTC)


def intake_configured() -> bool:
    return runtime().settings.intake.imap is not None


def health_panel() -> dict[str, Any] | None:
    """What the board's intake panel shows (`intake_health`), or None when no mailbox is
    configured. A fixed handful of queries, whatever the number of messages or cases."""
    imap = runtime().settings.intake.imap
    if imap is None:
        return None
    return intake_health(db(), imap.mailbox_name, _now())


def _before(raw: str) -> int | None:
    """The keyset cursor as typed in the address bar: anything odd is the first page."""
    return whole_number(raw) or None


def _action_error(e: ListActionError) -> str:
    return _(e.template, **e.params) if e.params else _(e.template)


def _recent(which: str) -> list[IncomingMail]:
    """The last decided rows of a list, newest decision first (one query, by the
    status/outcome index)."""
    if which == "spam":
        where = (IncomingMail.outcome == Outcome.SUSPECTED_SPAM) & IncomingMail.status.in_(
            [ListStatus.CONFIRMED_SPAM, ListStatus.RELEASED]
        )
    else:
        where = IncomingMail.outcome.in_([Outcome.QUARANTINED, Outcome.BOUNCE]) & (
            IncomingMail.status == ListStatus.MADE_CASE
        )
    return list(
        db().scalars(
            select(IncomingMail)
            .where(where)
            .order_by(IncomingMail.handled_at.desc(), IncomingMail.id.desc())
            .limit(RECENT)
        )
    )


def _numbers(case_ids: set[int]) -> dict[int, str]:
    """Tracking numbers of these cases, in one query."""
    if not case_ids:
        return {}
    return dict(
        db().execute(select(Case.id, Case.tracking_number).where(Case.id.in_(case_ids))).all()
    )


def _list_page(which: str) -> str:
    before = _before(request.args.get("before", ""))
    rows = pending_mail(db(), which, limit=PAGE_SIZE + 1, before_id=before)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    recent = _recent(which) if before is None else []
    return render_template(
        f"mail/{which}.html",
        rows=rows,
        recent=recent,
        numbers=_numbers({m.case_id for m in recent if m.case_id is not None}),
        next_before=rows[-1].id if more else None,
        first_page=before is None,
        form=ActionForm(),
        health=health_panel(),
        which=which,
    )


@bp.get("/quarantine")
@requires(Action.TRIAGE)
def quarantine() -> str:
    return _list_page("quarantine")


@bp.get("/spam")
@requires(Action.TRIAGE)
def spam() -> str:
    return _list_page("spam")


def _raw_response(data: bytes, mail_id: int) -> Response:
    return Response(
        data,
        mimetype="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="mail-{mail_id}.eml"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/<int:mail_id>/raw")
@requires(Action.TRIAGE)
def raw(mail_id: int) -> Response:
    data = raw_of(db(), mail_id)
    if data is None:
        abort(404)
    return _raw_response(data, mail_id)


def readable_body(raw_bytes: bytes) -> str:
    """Best-effort text of a message the parser gave up on, for the supervisor to edit
    (`intake.mail.salvage.salvage_text`): its readable text parts, no MIME boundaries or
    part headers; "" when nothing in it reads as text."""
    return salvage_text(raw_bytes, PREFILL_CHARS)


def _prefilled(mail: IncomingMail) -> dict[str, str]:
    name, address, _defects = parse_address(mail.sender)
    return {
        "subject": clean_line(mail.subject)[:200],
        "body": readable_body(mail.raw),
        "contact_name": clean_line(name)[:100],
        "contact_email": address[:200] if "@" in address else "",
    }


def _quarantined(mail_id: int) -> IncomingMail:
    mail = db().get(IncomingMail, mail_id)
    if (
        mail is None
        or mail.outcome not in (Outcome.QUARANTINED, Outcome.BOUNCE)
        or (mail.case_id is not None and mail.status != ListStatus.MADE_CASE)
    ):
        abort(404)
    return mail


@bp.route("/quarantine/<int:mail_id>", methods=["GET", "POST"])
@requires(Action.TRIAGE)
def quarantined(mail_id: int) -> Response | str | tuple[str, int]:
    """One quarantined message: what is known of it, and the form that makes a case of it."""
    mail = _quarantined(mail_id)
    if mail.status == ListStatus.MADE_CASE and mail.case_id is not None:
        number = _numbers({mail.case_id}).get(mail.case_id)
        if number is not None:
            return redirect(url_for("board.case", number=number))
    form = MakeCaseForm(data=None if request.method == "POST" else _prefilled(mail))
    pending = mail.status == ListStatus.PENDING
    if request.method == "POST" and pending and form.validate_on_submit():
        s = db()
        try:
            case = make_case_of_quarantined(
                s,
                mail_id,
                actor=current_user._get_current_object(),
                now=_now(),
                policy=mail_policy(runtime()),
                subject=form.subject.data or "",
                body=form.body.data,
                contact_name=form.contact_name.data or "",
                contact_email=form.contact_email.data or "",
            )
        except ListActionError as e:
            s.rollback()
            flash(_action_error(e), "error")
            return redirect(url_for("mail.quarantine"))
        except IntegrityError:
            # Another supervisor made a case of the same message at the same moment.
            s.rollback()
            flash(_("Someone else handled this message at the same time."), "error")
            return redirect(url_for("mail.quarantine"))
        flash(_("Case %(n)s made of the quarantined message.", n=case.tracking_number), "info")
        return redirect(url_for("board.case", number=case.tracking_number))
    if request.method == "POST" and not pending:
        flash(_("Message %(id)s is not waiting on this list.", id=mail_id), "error")
        return redirect(url_for("mail.quarantine"))
    status = 400 if request.method == "POST" else 200
    return render_template("mail/quarantined.html", mail=mail, form=form), status


def _spam_action(mail_id: int, release: bool) -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    s = db()
    try:
        if release:
            case = release_spam(
                s,
                mail_id,
                actor=current_user._get_current_object(),
                now=_now(),
                policy=mail_policy(runtime()),
            )
            flash(_("Released: registered as case %(n)s.", n=case.tracking_number), "info")
        else:
            confirm_spam(s, mail_id, actor=current_user._get_current_object(), now=_now())
            flash(_("Marked as spam. The message is kept."), "info")
        s.flush()
    except ListActionError as e:
        s.rollback()
        flash(_action_error(e), "error")
    except IntegrityError:
        s.rollback()
        flash(_("Someone else handled this message at the same time."), "error")
    return redirect(url_for("mail.spam"))


@bp.post("/spam/<int:mail_id>/confirm")
@requires(Action.TRIAGE)
def confirm(mail_id: int) -> Response:
    return _spam_action(mail_id, release=False)


@bp.post("/spam/<int:mail_id>/release")
@requires(Action.TRIAGE)
def release(mail_id: int) -> Response:
    return _spam_action(mail_id, release=True)


@bp.app_context_processor
def _intake_flag() -> dict[str, object]:
    # The nav shows the mail lists only where a mailbox is read; no query.
    return {"mail_intake_on": intake_configured()}
