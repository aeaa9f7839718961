"""Supervisors' checks after the reply: closing a case whose citizen cannot be reached, the
review of an unsatisfied visit, and unannounced spot checks (不定期抽查).

- The case page gets its panels through a context processor (`board/_visit_outcome.html`,
  `board/_spot_checks.html`): the board's own view stays as it is.
- /board/spot-checks lists the draws and the pending checks; supervisors draw (optionally
  with a seed, to re-do a draw by hand) and record each verification. A failed check reopens
  the case for rework (triage/spot_checks.py).

Only those who do return visits (Action.VISIT: supervisors, administrators) act here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response
from wtforms import RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from triage import spot_checks
from triage.access import Action, can
from triage.models import Case, IllegalTransition, Satisfaction, SpotCheck, SpotCheckResult, Status
from web import db, runtime
from web.board import _act, _form_error, case_views
from web.forms import Form
from web.i18n import error_text
from web.shown_case import shown_case
from web.supervision_findings import refresh_findings

bp = Blueprint("checks", __name__, url_prefix="/board")


class ReasonedForm(Form):
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(), Length(max=2000)])


class DrawForm(Form):
    seed = StringField(
        _l("Seed (optional: the seed of an earlier draw re-does it)"),
        validators=[Optional(), Length(max=64)],
    )


class SpotCheckForm(Form):
    method = RadioField(
        _l("Checked by"),
        choices=[SelectChoice("phone", _l("Call")), SelectChoice("visit", _l("On-site visit"))],
        default="phone",
        validators=[DataRequired()],
    )
    result = RadioField(
        _l("Result"),
        choices=[
            SelectChoice("passed", _l("Passed: handled as replied")),
            SelectChoice("failed", _l("Failed: reopen for rework")),
        ],
        validators=[DataRequired(_l("Say whether the check passed."))],
    )
    note = TextAreaField(
        _l("Note (required when the check failed)"), validators=[Optional(), Length(max=2000)]
    )


CHECK_RESULT_LABELS = {
    "pending": _l("Pending"),
    "passed": _l("Passed"),
    "failed": _l("Failed"),
}
CHECK_METHOD_LABELS = {"phone": _l("Call"), "visit": _l("On-site visit")}
VISIT_CHANNEL_LABELS = {
    "phone": _l("Phone"),
    "sms": _l("SMS"),
    "web": _l("Web"),
    "visit": _l("On-site visit"),
}


def _now() -> datetime:
    return datetime.now(UTC)


@bp.app_context_processor
def _labels() -> dict[str, Any]:
    return {
        "CHECK_RESULT_LABELS": CHECK_RESULT_LABELS,
        "CHECK_METHOD_LABELS": CHECK_METHOD_LABELS,
        "VISIT_CHANNEL_LABELS": VISIT_CHANNEL_LABELS,
    }


def check_form(check: SpotCheck) -> SpotCheckForm:
    return SpotCheckForm(prefix=f"check{check.id}")


@bp.app_context_processor
def _case_panels() -> dict[str, Any]:
    """What the case page's visit and spot-check panels show (board.case only)."""
    if request.endpoint != "board.case" or not current_user.is_authenticated:
        return {}
    case = shown_case()
    if case is None:
        return {}
    may = can(current_user, Action.VISIT, case)
    required = runtime().settings.supervision.visit_attempts_before_close
    latest = case.latest_visit
    unsatisfied = latest is not None and (
        latest.satisfaction == Satisfaction.UNSATISFIED or latest.solved is False
    )
    checks = spot_checks.checks_of(db(), case) if may else []
    return {
        "visit_panel": {
            "may": may,
            "attempts": case.failed_visit_attempts,
            "required": required,
            "awaiting_visit": case.status == Status.REPLIED
            or (case.status == Status.VISITED and latest is not None and not latest.valid),
            "review_pending": case.review_pending,
            "may_request_review": case.status == Status.VISITED
            and unsatisfied
            and not case.review_pending,
            "close_form": ReasonedForm(prefix="novisit"),
            "review_form": ReasonedForm(prefix="review"),
        },
        "case_checks": [(c, check_form(c)) for c in checks],
    }


@bp.post("/cases/<number>/close-without-visit")
@login_required
def close_without_visit(number: str) -> Response:
    def change(c: Case) -> str:
        form = ReasonedForm(prefix="novisit")
        if not form.validate_on_submit():
            raise IllegalTransition(_("Closing without a return visit needs a reason."))
        required = runtime().settings.supervision.visit_attempts_before_close
        c.close_without_visit(current_user, _now(), form.reason.data, required)
        return _("Case closed without a valid return visit; the reason is recorded.")

    return _act(number, Action.VISIT, change)


@bp.post("/cases/<number>/review")
@login_required
def request_review(number: str) -> Response:
    def change(c: Case) -> str:
        form = ReasonedForm(prefix="review")
        if not form.validate_on_submit():
            raise IllegalTransition(_("A review needs a reason."))
        c.request_review(current_user, _now(), form.reason.data)
        return _("Sent to a supervisor's review: close it with a reason or send it for rework.")

    return _act(number, Action.VISIT, change)


def _require_checker() -> None:
    if not can(current_user, Action.VISIT):
        abort(403)


@bp.get("/spot-checks")
@login_required
def index() -> str:
    _require_checker()
    s = db()
    pending = spot_checks.pending_checks(s)
    policy = runtime().settings.supervision
    return render_template(
        "board/spot_checks.html",
        draws=spot_checks.draws(s),
        pending=[
            (c, v, check_form(c))
            for c, v in zip(pending, case_views([c.case for c in pending]), strict=True)
        ],
        draw_form=DrawForm(prefix="draw"),
        policy=policy,
        due=spot_checks.due_draw(s, _now(), policy),
    )


@bp.post("/spot-checks/draw")
@login_required
def draw() -> Response:
    _require_checker()
    form = DrawForm(prefix="draw")
    if not form.validate_on_submit():
        flash(error_text(_form_error(form)), "error")
        return redirect(url_for("checks.index"))
    s = db()
    try:
        drawn = spot_checks.draw(
            s, _now(), runtime().settings.supervision, seed=form.seed.data, actor=current_user
        )
    except IllegalTransition as e:
        s.rollback()
        flash(error_text(e), "error")
        return redirect(url_for("checks.index"))
    except StaleDataError:
        # A drawn case was changed by someone else meanwhile (its version moved on).
        s.rollback()
        flash(_("Someone else changed this case at the same time. Please look again."), "error")
        return redirect(url_for("checks.index"))
    flash(
        _(
            "Drew %(k)s of %(n)s cases closed in the window (seed %(seed)s).",
            k=len(drawn.sample),
            n=drawn.population,
            seed=drawn.seed,
        ),
        "info",
    )
    return redirect(url_for("checks.index"))


@bp.post("/spot-checks/<int:check_id>")
@login_required
def record(check_id: int) -> Response:
    _require_checker()
    s = db()
    check = s.get(SpotCheck, check_id)
    if check is None:
        abort(404)
    back = (
        url_for("board.case", number=check.case.tracking_number)
        if request.form.get("back") == "case"
        else url_for("checks.index")
    )
    form = check_form(check)
    try:
        if not form.validate_on_submit():
            raise _form_error(form)
        spot_checks.record_check(
            check,
            current_user,
            _now(),
            passed=form.result.data == SpotCheckResult.PASSED,
            method=form.method.data or "",
            note=form.note.data or "",
            deadlines=runtime().settings.deadlines(),
        )
        s.flush()
        refresh_findings(check.case_id)
    except IllegalTransition as e:
        s.rollback()
        flash(error_text(e), "error")
    except StaleDataError:
        s.rollback()
        flash(_("Someone else changed this case at the same time. Please look again."), "error")
    else:
        if check.result == SpotCheckResult.FAILED:
            flash(
                _(
                    "Check failed: %(n)s is back with its department for rework.",
                    n=check.case.tracking_number,
                ),
                "info",
            )
        else:
            flash(_("Check passed: %(n)s stays closed.", n=check.case.tracking_number), "info")
    return redirect(back)
