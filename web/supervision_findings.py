"""The supervision tick's findings on the board: the case page's panel, the lists' red and
amber rows, and a department's own at-risk and overdue cases first in its workspace.

Read from what the tick stored (`case_findings`, `cases.risk`); one query per page for the
findings of all the cases it lists (`findings_by_case`), never one per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, request
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import literal, select
from sqlalchemy.orm import Session, selectinload

from triage.models import OPEN_STATUSES, Case, CaseFinding, Role
from web import db, runtime
from web.i18n import local_time
from web.shown_case import shown_case

bp = Blueprint("supervision_findings", __name__)

ATTENTION_LIMIT = 50

RULE_LABELS = {
    "not_acknowledged": _l("Receipt not acknowledged"),
    "triage_overdue": _l("Dispatch overdue"),
    "deadline_near": _l("Deadline near"),
    "overdue": _l("Overdue"),
    "escalated": _l("Escalated (督办)"),
    "extension_pending": _l("Extension waiting for a decision"),
    "reply_unsigned": _l("Reply waiting for the head's sign-off"),
    "delay_unreported": _l("Delay not reported"),
    "visit_overdue": _l("Return visit overdue"),
    "rework_pending": _l("Rework pending"),
    "review_pending": _l("Review pending"),
    "spot_check_pending": _l("Spot check pending"),
    "spot_check_failed": _l("Spot check failed"),
    "observation_open": _l("Observation unanswered"),
    "calendar_unknown": _l("Holidays of that year unknown"),
}

COMBINATION_LABELS = {
    1: _l("Before, during and after"),
    2: _l("Rules and self-discipline"),
    3: _l("Daily supervision and visits"),
    4: _l("Internal and social supervision"),
}

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def findings_by_case(session: Session, case_ids: Iterable[int]) -> dict[int, list[CaseFinding]]:
    """{case id: its findings, the most severe first} for the cases of one page, one query."""
    ids = list(dict.fromkeys(case_ids))
    found: dict[int, list[CaseFinding]] = {i: [] for i in ids}
    if not ids:
        return found
    for f in session.scalars(select(CaseFinding).where(CaseFinding.case_id.in_(ids))):
        found[f.case_id].append(f)
    for items in found.values():
        items.sort(key=lambda f: (SEVERITY_ORDER.get(f.severity, 3), f.since))
    return found


def attention_cases(session: Session, department_id: int) -> list[Case]:
    """A department's open cases the tick found overdue or at risk: overdue first, then by
    deadline (the workspace opens on these)."""
    order = (Case.risk.desc(), Case.due_at, Case.id)
    # The ids first, in order from ix_cases_attention alone (its predicate, a constant here,
    # and every column the test reads), then their rows: as one query the planner read every
    # open case of the department found at risk and sorted them (hundreds at 100,000 cases,
    # tens of thousands at 1,000,000 with old cases left open).
    shown = (
        select(Case.id)
        .where(
            Case.department_id == department_id,
            Case.risk != literal("", literal_execute=True),
            Case.status.in_([str(s) for s in OPEN_STATUSES]),
        )
        .order_by(*order)
        .limit(ATTENTION_LIMIT)
    )
    return list(
        session.scalars(
            select(Case)
            .where(Case.id.in_(shown.scalar_subquery()))
            .order_by(*order)
            .options(selectinload(Case.department))
        )
    )


def refresh_findings(case_id: int) -> None:
    """Re-evaluates one case's findings and risk now, right after a board action changed it,
    so that the page it returns to does not show the last tick's (a reported delay still
    listed as unreported). Same rules as the tick (`triage.supervision.evaluate_case`)."""
    from triage.supervision import evaluate_case
    from web.cli_supervise import supervision_policy

    rules = supervision_policy(runtime().settings).rules
    evaluate_case(db(), case_id, datetime.now(UTC), rules)


@bp.app_template_filter("rule_label")
def rule_label(rule: str) -> str:
    """A rule's name as people read it."""
    return str(RULE_LABELS.get(rule, rule))


@bp.app_template_filter("iso_local_time")
def iso_local_time(value: str | None) -> str:
    """A finding's ISO time (its detail is JSON) in the office's time zone."""
    if not value:
        return ""
    try:
        return local_time(datetime.fromisoformat(value))
    except (TypeError, ValueError):
        return str(value)


@bp.app_context_processor
def _findings_context() -> dict[str, Any]:
    """The case page's findings, and a handler's own at-risk and overdue cases on the
    unfiltered case list (their workspace)."""
    context: dict[str, Any] = {"RULE_LABELS": RULE_LABELS, "COMBINATION_LABELS": COMBINATION_LABELS}
    if not current_user.is_authenticated:
        return context
    if request.endpoint == "board.case":
        case = shown_case()
        if case is not None:
            context["case_findings"] = findings_by_case(db(), [case.id])[case.id]
    elif (
        request.endpoint == "board.cases"
        and current_user.role == Role.HANDLER
        and current_user.department_id is not None
        and not any(request.args.get(k) for k in ("q", "status", "after", "before", "last"))
        and request.args.get("page", "1") in ("", "1")
    ):
        cases = attention_cases(db(), current_user.department_id)
        context["attention"] = cases
        context["attention_findings"] = findings_by_case(db(), [c.id for c in cases])
    return context
