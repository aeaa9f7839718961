"""Extensions (延期), the head's sign-off (自律) and delay reports on the board.

A handler of the case's department asks for an extension and reports a delay; a supervisor
grants or refuses the extension; the department head signs drafts off or returns them. Each
action is one Case method (triage/models.py) with its event; these views parse the form,
check the role and call it. The case page shows the panels of `case_context`; the lists are
`/board/extensions` (supervisors: pending requests and the delays of overdue cases) and
`/board/sign-off` (a head: the department's drafts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, abort, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response
from wtforms import DateField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from triage.access import Action, can, sees_personal_data
from triage.extensions import grant_extension, latest_extension_due, request_extension
from triage.models import (
    Case,
    CaseReply,
    ExtensionRequest,
    IllegalTransition,
    ReplyState,
    RequestState,
    Role,
    Status,
)
from web import db, runtime
from web.board import CaseView, _act, case_views, visible_cases
from web.forms import ActionForm, Form

bp = Blueprint("supervision_extensions", __name__, url_prefix="/board")
LIST_LIMIT = 200
HANDLING = (Status.ASSIGNED, Status.IN_PROGRESS)


class ExtensionRequestForm(Form):
    due_date = DateField(
        _l("New deadline (a working day)"),
        validators=[DataRequired(_l("Pick the new deadline."))],
    )
    reason = TextAreaField(
        _l("Why the department needs longer"),
        validators=[DataRequired(_l("Please give a reason.")), Length(max=2000)],
    )


class ExtensionDecisionForm(Form):
    due_date = DateField(_l("Grant until (empty: the proposed date)"), validators=[Optional()])
    reason = TextAreaField(
        _l("Reason (required to refuse; not shown to the citizen)"),
        validators=[Optional(), Length(max=2000)],
    )


class NoteForm(Form):
    note = TextAreaField(
        _l("What to change"),
        validators=[DataRequired(_l("Please say what to change.")), Length(max=2000)],
    )


class DelayForm(Form):
    reason = TextAreaField(
        _l("Why the case is late and when it will be answered"),
        validators=[DataRequired(_l("Please give a reason.")), Length(max=2000)],
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _allowed() -> int:
    return runtime().settings.supervision.extensions_allowed


def _form_message(form: Form) -> str:
    return "; ".join(str(e) for errors in form.errors.values() for e in errors)


@dataclass
class SupervisionPanel:
    """What the case page shows of extensions, sign-off and delays for the current user."""

    pending: ExtensionRequest | None
    decided: list[ExtensionRequest]
    may_request: bool
    may_decide: bool
    may_grant: bool
    earliest: date | None
    latest: date | None
    request_form: ExtensionRequestForm
    decision_form: ExtensionDecisionForm
    draft: CaseReply | None
    returned: list[CaseReply]
    sign_off_required: bool
    may_sign: bool
    sign_form: ActionForm
    note_form: NoteForm
    may_report_delay: bool
    delay_form: DelayForm


def case_context(case: Case) -> dict[str, object]:
    """The extra template context of the case page (`supervision`)."""
    settings = runtime().settings
    now = _now()
    deadlines = settings.deadlines()
    handling = case.status in HANDLING
    handles = can(current_user, Action.HANDLE, case)
    earliest = latest = None
    if handling and case.due_at is not None:
        tz = deadlines.calendar.timezone
        earliest = case.due_at.astimezone(tz).date() + timedelta(days=1)
        latest = latest_extension_due(deadlines, case).astimezone(tz).date()
    request_form = ExtensionRequestForm(prefix="extension")
    decision_form = ExtensionDecisionForm(prefix="decision")
    for f in (request_form.due_date, decision_form.due_date):
        f.render_kw = {
            "min": earliest.isoformat() if earliest else "",
            "max": latest.isoformat() if latest else "",
        }
    pending = case.pending_extension
    panel = SupervisionPanel(
        pending=pending,
        decided=[r for r in case.extension_requests if r.state != RequestState.PENDING],
        may_request=handles
        and handling
        and pending is None
        and (case.extension_count or 0) < _allowed()
        and case.due_at is not None,
        # A request left waiting when the case was replied can still be refused, not granted.
        may_decide=can(current_user, Action.TRIAGE, case) and pending is not None,
        may_grant=can(current_user, Action.TRIAGE, case) and pending is not None and handling,
        earliest=earliest,
        latest=latest,
        request_form=request_form,
        decision_form=decision_form,
        draft=case.pending_draft,
        returned=case.returned_drafts,
        sign_off_required=settings.supervision.reply_sign_off
        and not case.is_head_of_department(current_user),
        may_sign=handles and handling and case.is_head_of_department(current_user),
        sign_form=ActionForm(prefix="signoff"),
        note_form=NoteForm(prefix="return"),
        may_report_delay=handles and case.is_overdue(now),
        delay_form=DelayForm(prefix="delay"),
    )
    return {"supervision": panel}


def _request_of(case: Case, request_id: int) -> ExtensionRequest:
    found = next((r for r in case.extension_requests if r.id == request_id), None)
    if found is None:
        abort(404)
    return found


def _reply_of(case: Case, reply_id: int) -> CaseReply:
    found = next((r for r in case.replies if r.id == reply_id), None)
    if found is None:
        abort(404)
    return found


@bp.post("/cases/<number>/extension")
@login_required
def ask(number: str) -> Response:
    def change(c: Case) -> str:
        form = ExtensionRequestForm(prefix="extension")
        if not form.validate_on_submit():
            raise IllegalTransition(_form_message(form) or _("The form was incomplete."))
        request_extension(
            c,
            current_user,
            runtime().settings.deadlines(),
            _allowed(),
            _now(),
            form.reason.data,
            form.due_date.data,
        )
        return _("Extension requested; a supervisor will decide.")

    return _act(number, Action.HANDLE, change)


@bp.post("/cases/<number>/extension/<int:request_id>/grant")
@login_required
def grant(number: str, request_id: int) -> Response:
    def change(c: Case) -> str:
        form = ExtensionDecisionForm(prefix="decision")
        if not form.validate_on_submit():
            raise IllegalTransition(_form_message(form) or _("The form was incomplete."))
        grant_extension(
            c,
            _request_of(c, request_id),
            current_user,
            runtime().settings.deadlines(),
            _allowed(),
            _now(),
            day=form.due_date.data,
            reason=form.reason.data or "",
        )
        return _("Extension granted.")

    return _act(number, Action.TRIAGE, change)


@bp.post("/cases/<number>/extension/<int:request_id>/refuse")
@login_required
def refuse(number: str, request_id: int) -> Response:
    def change(c: Case) -> str:
        form = ExtensionDecisionForm(prefix="decision")
        if not form.validate_on_submit():
            raise IllegalTransition(_form_message(form) or _("The form was incomplete."))
        c.refuse_extension(current_user, _now(), _request_of(c, request_id), form.reason.data)
        return _("Extension refused.")

    return _act(number, Action.TRIAGE, change)


def _as_head(c: Case) -> None:
    # A handler who is not the head gets a refusal, not a hidden error: the role may not.
    if not c.is_head_of_department(current_user):
        abort(403)


@bp.post("/cases/<number>/replies/<int:reply_id>/sign-off")
@login_required
def sign_off(number: str, reply_id: int) -> Response:
    def change(c: Case) -> str:
        _as_head(c)
        if not ActionForm(prefix="signoff").validate_on_submit():
            raise IllegalTransition(_("The form expired; please try again."))
        c.sign_off_reply(current_user, _now(), _reply_of(c, reply_id))
        return _("Reply signed off and sent to the citizen.")

    return _act(number, Action.HANDLE, change)


@bp.post("/cases/<number>/replies/<int:reply_id>/return")
@login_required
def return_draft(number: str, reply_id: int) -> Response:
    def change(c: Case) -> str:
        _as_head(c)
        form = NoteForm(prefix="return")
        if not form.validate_on_submit():
            raise IllegalTransition(_form_message(form) or _("The form was incomplete."))
        c.return_reply(current_user, _now(), _reply_of(c, reply_id), form.note.data)
        return _("Draft returned to the handler.")

    return _act(number, Action.HANDLE, change)


@bp.post("/cases/<number>/delay")
@login_required
def report_delay(number: str) -> Response:
    def change(c: Case) -> str:
        form = DelayForm(prefix="delay")
        if not form.validate_on_submit():
            raise IllegalTransition(_form_message(form) or _("The form was incomplete."))
        c.report_delay(current_user, _now(), form.reason.data)
        return _("Delay reported.")

    return _act(number, Action.HANDLE, change)


@bp.get("/extensions")
@login_required
def extensions() -> str:
    """Pending extension requests, and the open overdue cases with their delay reports.

    Supervisors see every department; a handler sees the department's own."""
    if not (can(current_user, Action.TRIAGE) or can(current_user, Action.HANDLE)):
        abort(403)
    now = _now()
    pending = (
        db()
        .scalars(
            visible_cases(select(Case))
            .join(ExtensionRequest, ExtensionRequest.case_id == Case.id)
            .where(ExtensionRequest.state == RequestState.PENDING)
            .order_by(ExtensionRequest.requested_at)
            .options(selectinload(Case.department), selectinload(Case.extension_requests))
            .limit(LIST_LIMIT)
        )
        .all()
    )
    overdue = (
        db()
        .scalars(
            visible_cases(select(Case))
            .where(Case.status.in_(HANDLING), Case.due_at < now)
            .order_by(Case.due_at)
            .options(selectinload(Case.department), selectinload(Case.events))
            .limit(LIST_LIMIT)
        )
        .all()
    )
    masked = not sees_personal_data(current_user)
    return render_template(
        "board/extensions.html",
        pending=case_views(list(pending), masked),
        overdue=case_views(list(overdue), masked),
        may_decide=can(current_user, Action.TRIAGE),
        now=now,
    )


@bp.get("/sign-off")
@login_required
def drafts() -> str:
    """The drafts of the head's department waiting for the head's sign-off."""
    if not (current_user.role == Role.HANDLER and current_user.head):
        abort(403)
    cases = (
        db()
        .scalars(
            select(Case)
            .join(CaseReply, CaseReply.case_id == Case.id)
            .where(
                Case.department_id == current_user.department_id,
                CaseReply.department_id == current_user.department_id,
                CaseReply.state == ReplyState.PENDING_SIGN_OFF,
            )
            .order_by(CaseReply.at)
            .options(selectinload(Case.replies).selectinload(CaseReply.author))
            .limit(LIST_LIMIT)
        )
        .all()
    )
    return render_template(
        "board/sign_off.html", rows=[CaseView(c, False) for c in cases], now=_now()
    )
