"""External supervisors' observations (效能监督员) and the supervisors' answers.

- Observers file an observation from a case page or, on a department, from
  /board/observations, which also lists their own observations and the answers.
- Supervisors (and administrators) see every observation there, open ones first, and on the
  case page (`board/_observations.html`), and answer each.
- An observer never sees another observer's observations, and sees every text masked
  (triage/observations.py says why).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response
from wtforms import HiddenField, SelectField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from triage import observations
from triage.access import can_view
from triage.case_people import people_by_case
from triage.models import Case, Department, IllegalTransition, Observation
from triage.privacy import People
from web import db
from web.board import _departments, _form_error
from web.forms import Form
from web.i18n import department_name, error_text
from web.shown_case import shown_case
from web.supervision_findings import refresh_findings

bp = Blueprint("observations", __name__, url_prefix="/board/observations")


class ObservationForm(Form):
    # The case's tracking number when filed from a case page; else a department is chosen.
    case = HiddenField(validators=[Optional(), Length(max=30)])
    department = SelectField(_l("Department"), default="", validators=[Optional()])
    body = TextAreaField(
        _l("Your observation"),
        validators=[
            DataRequired(_l("Please write the observation.")),
            Length(max=observations.MAX_LENGTH),
        ],
    )


class AnswerForm(Form):
    answer = TextAreaField(
        _l("Answer"),
        validators=[
            DataRequired(_l("Please write the answer.")),
            Length(max=observations.MAX_LENGTH),
        ],
    )


class ShownObservation:
    """An observation as the current user may read it: masked for observers."""

    def __init__(
        self, observation: Observation, masked: bool, people: People | None = None
    ) -> None:
        self.o = observation
        body, answer = (
            observations.masked_texts(observation, people)
            if masked
            else (observation.body, observation.answer)
        )
        self.body, self.answer = body, answer
        self.form = AnswerForm(prefix=f"answer{observation.id}")

    def __getattr__(self, name: str) -> object:
        return getattr(self.o, name)


def _now() -> datetime:
    return datetime.now(UTC)


def _department_choices(form: ObservationForm, departments: list[Department]) -> None:
    form.department.choices = [SelectChoice("", _("— choose a department —"))] + [
        SelectChoice(d.code, department_name(d)) for d in departments
    ]


def _shown(items: list[Observation]) -> list[ShownObservation]:
    masked = not observations.may_answer(current_user)
    ids = [o.case_id for o in items if o.case_id is not None] if masked else []
    people = people_by_case(db(), ids) if ids else {}
    return [
        ShownObservation(o, masked, people.get(o.case_id) if o.case_id else None) for o in items
    ]


@bp.app_context_processor
def _open_observations() -> dict[str, Any]:
    """How many observations wait for an answer, for the supervisors' menu."""
    if not current_user.is_authenticated or not observations.may_answer(current_user):
        return {}
    return {"open_observations": observations.open_count(db())}


@bp.app_context_processor
def _case_observations() -> dict[str, Any]:
    """The case page's observation panel (board.case only)."""
    if request.endpoint != "board.case" or not current_user.is_authenticated:
        return {}
    if not (observations.may_answer(current_user) or observations.may_file(current_user)):
        return {}
    case = shown_case()
    if case is None:
        return {}
    form = ObservationForm(prefix="obs")
    form.case.data = case.tracking_number
    return {
        "case_observations": _shown(observations.on_case(db(), current_user, case)),
        "observation_form": form if observations.may_file(current_user) else None,
        "may_answer_observations": observations.may_answer(current_user),
    }


@bp.get("/")
@login_required
def index() -> str:
    if not (observations.may_answer(current_user) or observations.may_file(current_user)):
        abort(403)
    form = ObservationForm(prefix="obs")
    _department_choices(form, _departments())
    items = observations.visible_to(db(), current_user)
    return render_template(
        "board/observations.html",
        items=_shown(items),
        form=form if observations.may_file(current_user) else None,
        may_answer=observations.may_answer(current_user),
        open_count=sum(1 for o in items if o.state == "open"),
        # Office-level findings: departments with unanswered observations on them.
        department_findings=observations.department_findings(db())
        if observations.may_answer(current_user)
        else [],
    )


@bp.post("/new")
@login_required
def new() -> Response:
    if not observations.may_file(current_user):
        abort(403)
    departments = _departments()
    form = ObservationForm(prefix="obs")
    _department_choices(form, departments)
    s = db()
    case: Case | None = None
    back = url_for("observations.index")
    try:
        if form.case.data:
            case = s.scalar(select(Case).where(Case.tracking_number == form.case.data.upper()))
            if case is None or not can_view(current_user, case):
                abort(404)
            back = url_for("board.case", number=case.tracking_number)
        if not form.validate_on_submit():
            raise _form_error(form)
        department = None
        if case is None:
            department = next((d for d in departments if d.code == form.department.data), None)
            if department is None:
                raise IllegalTransition(_("Choose the department the observation is about."))
        observations.file(s, current_user, _now(), form.body.data, case=case, department=department)
    except IllegalTransition as e:
        s.rollback()
        flash(error_text(e), "error")
    except StaleDataError:
        s.rollback()
        flash(_("Someone else changed this case at the same time. Please look again."), "error")
    else:
        flash(_("Observation filed; the efficiency office will answer it."), "info")
    return redirect(back)


@bp.post("/<int:observation_id>/answer")
@login_required
def answer(observation_id: int) -> Response:
    if not observations.may_answer(current_user):
        abort(403)
    s = db()
    observation = s.get(Observation, observation_id)
    if observation is None:
        abort(404)
    back = (
        url_for("board.case", number=observation.case.tracking_number)
        if request.form.get("back") == "case" and observation.case is not None
        else url_for("observations.index")
    )
    form = AnswerForm(prefix=f"answer{observation.id}")
    try:
        if not form.validate_on_submit():
            raise _form_error(form)
        observations.answer(s, observation, current_user, _now(), form.answer.data)
        if observation.case_id is not None:
            refresh_findings(observation.case_id)
    except IllegalTransition as e:
        s.rollback()
        flash(error_text(e), "error")
    except StaleDataError:
        s.rollback()
        flash(_("Someone else changed this case at the same time. Please look again."), "error")
    else:
        flash(_("Answer recorded; the observer sees it."), "info")
    return redirect(back)
