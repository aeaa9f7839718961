"""The public service-commitments page (服务承诺): each department's time limits, read from
the same policy the deadlines and the supervision rules use (`Settings.deadlines()`), so the
page can never promise what the system does not enforce. Public: no login."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from intake.submission import Kind
from triage.deadlines import Commitment
from triage.models import Department
from web import db, runtime

bp = Blueprint("commitments", __name__)

KIND_NAMES = {
    Kind.COMPLAINT: _l("Complaints"),
    Kind.SUGGESTION: _l("Suggestions"),
    Kind.INQUIRY: _l("Inquiries"),
    Kind.PRAISE: _l("Praise"),
}


@dataclass(frozen=True)
class CommitmentRow:
    """One line of a department's table: the kinds it covers and their commitment."""

    kinds: list[str]
    urgent: bool
    commitment: Commitment


def amount(value: int, unit: str) -> str:
    """ "5 working days" / "2 hours", in the user's language."""
    if unit == "hours":
        if value == 1:
            return _("%(num)s hour", num=value)
        return _("%(num)s hours", num=value)
    if value == 1:
        return _("%(num)s working day", num=value)
    return _("%(num)s working days", num=value)


def extension_text(commitment: Commitment) -> str:
    """The "extension at most" cell: "不可延期" when `[supervision] extensions_allowed` is 0
    (the system refuses every request) or the policy allows no working day."""
    allowed = runtime().settings.supervision.extensions_allowed
    if allowed <= 0 or commitment.extension_max_working_days <= 0:
        return _("No extension")
    return amount(commitment.extension_max_working_days, "working_days")


def department_rows(department_code: str) -> list[CommitmentRow]:
    """The department's commitments: kinds with the same limits share a line; urgent safety
    hazards (hours) last."""
    deadlines = runtime().settings.deadlines()
    rows: list[CommitmentRow] = []
    for kind in Kind:
        c = deadlines.commitment(str(kind), False, department_code)
        same = next((r for r in rows if r.commitment == c), None)
        if same is not None:
            same.kinds.append(str(KIND_NAMES[kind]))
        else:
            rows.append(CommitmentRow([str(KIND_NAMES[kind])], False, c))
    urgent = deadlines.commitment(str(Kind.COMPLAINT), True, department_code)
    rows.append(CommitmentRow([str(_l("Urgent safety hazards"))], True, urgent))
    return rows


@bp.get("/commitments")
def commitments() -> str:
    departments = db().scalars(
        select(Department).where(Department.active.is_(True)).order_by(Department.id)
    )
    tables = [(d, department_rows(d.code)) for d in departments]
    return render_template(
        "citizen/commitments.html", tables=tables, amount=amount, extension_text=extension_text
    )
