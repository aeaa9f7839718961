"""The kanban (看板): a column per status of the case life cycle, for one department (a
handler's own; a supervisor picks one) or the whole office.

Cards move only through the legal transitions (triage/case_moves.py). A drop in the browser
(web/static/kanban.js) and the buttons on each card (without script) post to the same
`move` view, which makes the change through the case's own method, as the case page does,
so every move is an event in the case's audit log. A move that needs input (a reply, a
reason, a department, a return visit's outcome) goes to that form on the case page instead
of being made blind. A move that cannot be undone (closing) first asks on a page of its own
(`confirm`): what it rests on, the reason it may need, one button; the drop only opens it.
Each column holds at most COLUMN_SIZE cards, the most pressing first,
with a link to the full list for the rest: the page costs the same however many cases there
are (the closed column reads an index, migration 0013).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import format_timedelta
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from triage import tallies
from triage.access import can, sees_all_cases, sees_personal_data
from triage.case_list import list_risk
from triage.case_moves import (
    COLUMN_STATUSES,
    COLUMNS,
    Move,
    find_move,
    form_of,
    moves_of,
    needs_reason_to_close,
)
from triage.models import Case, Department, IllegalTransition, Role, Status
from web import db
from web.board import CaseView, case_views, load_case
from web.db import is_conflict
from web.i18n import STATUS_LABELS, error_text
from web.supervision_findings import refresh_findings

bp = Blueprint("kanban", __name__, url_prefix="/board/kanban")
COLUMN_SIZE = 50
# Counted up to this many per column ("1000+"): a count, too, must not grow with the years.
COUNT_CAP = 1000
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _now() -> datetime:
    return datetime.now(UTC)


def move_label(name: str, with_form: bool) -> str:
    labels = {
        "dispatch": _("Dispatch…"),
        "start": _("Start handling"),
        "reply": _("Reply…"),
        "send_back": _("Send back…"),
        "visit": _("Return visit…"),
        "rework": _("Rework…"),
        "close": _("Close…"),
    }
    return labels.get(name, name)


def _scope() -> tuple[Department | None, bool]:
    """(the department shown or None, whether that is the whole office). A handler sees
    their own department whatever the address says; others may pick one."""
    if not sees_all_cases(current_user):
        if current_user.role == Role.HANDLER and current_user.department_id is not None:
            return current_user.department, False
        abort(403)
    code = request.args.get("department", "")
    if not code:
        return None, True
    dept = db().scalar(select(Department).where(Department.code == code))
    if dept is None:
        abort(404)
    return dept, False


def _order(column: Status) -> list[ColumnElement[object]]:
    if column == Status.CLOSED:
        return [Case.closed_at.desc(), Case.id.desc()]
    if column == Status.TRIAGE:
        return [Case.urgent.desc(), Case.triage_due_at, Case.id]
    if column in (Status.ASSIGNED, Status.IN_PROGRESS):
        return [Case.urgent.desc(), Case.due_at, Case.id]
    return [Case.urgent.desc(), Case.replied_at, Case.id]


def _due(case: Case) -> datetime | None:
    """The deadline the card shows: dispatch for a queued case, the reply for one with a
    department; none after the reply."""
    if case.status in (Status.RECEIVED, Status.TRIAGE):
        return case.triage_due_at
    if case.status in (Status.ASSIGNED, Status.IN_PROGRESS):
        return case.due_at
    return None


def time_left(due: datetime | None, now: datetime) -> str:
    """ "3天后到期" / "已超期 5小时", in the user's language; "" without a deadline."""
    if due is None:
        return ""
    if due < now:
        return _("overdue by %(t)s", t=format_timedelta(now - due, threshold=1.1))
    return _("%(t)s left", t=format_timedelta(due - now, threshold=1.1))


class Card:
    """What a card shows of a case, masked for observers, with the user's legal moves."""

    def __init__(self, case: Case, masked: bool, now: datetime, view: CaseView | None = None):
        self.view = view or CaseView(case, masked)
        self.case = case
        due = _due(case)
        self.due = due
        self.time_left = time_left(due, now)
        # Red and amber as the lists' rows and filters: `list_risk`.
        risk = list_risk(case, now)
        self.overdue = risk == "overdue"
        self.at_risk = risk == "at_risk"
        self.moves: list[tuple[Move, str | None]] = [
            (m, form_of(m, case)) for m in moves_of(case) if can(current_user, m.action, case)
        ]


def _columns(
    where: list[ColumnElement[bool]], whole_office: bool, now: datetime
) -> list[dict[str, object]]:
    masked = not sees_personal_data(current_user)
    columns = []
    for column in COLUMNS:
        if column == Status.TRIAGE and not whole_office:
            # Queued cases belong to no department yet.
            continue
        statuses = COLUMN_STATUSES[column]
        query = (
            select(Case)
            .where(Case.status.in_(statuses), *where)
            .order_by(*_order(column))
            .limit(COLUMN_SIZE)
            .options(selectinload(Case.department))
        )
        if column == Status.VISITED:
            query = query.options(selectinload(Case.visits))
        cases = list(db().scalars(query))
        capped = False
        tallied = None
        if len(cases) == COLUMN_SIZE:
            # The column's whole count from the maintained tallies, not its cases.
            tallied = tallies.count(db(), [Case.status.in_(statuses), *where])
        if len(cases) < COLUMN_SIZE:
            total = len(cases)
        elif tallied is not None:
            total = tallied
        else:
            ids = select(Case.id).where(Case.status.in_(statuses), *where).limit(COUNT_CAP + 1)
            total = int(db().scalar(select(func.count()).select_from(ids.subquery())) or 0)
            capped = total > COUNT_CAP
        columns.append(
            {
                "status": column,
                "label": STATUS_LABELS.get(column, column),
                "cards": [
                    Card(c, masked, now, v)
                    for c, v in zip(cases, case_views(cases, masked), strict=True)
                ],
                "total": total,
                "capped": capped,
            }
        )
    return columns


@bp.get("")
@login_required
def board() -> str:
    dept, whole_office = _scope()
    where: list[ColumnElement[bool]] = []
    if dept is not None:
        where.append(Case.department_id == dept.id)
    now = _now()
    departments = (
        list(
            db().scalars(
                select(Department).where(Department.active.is_(True)).order_by(Department.id)
            )
        )
        if sees_all_cases(current_user)
        else []
    )
    return render_template(
        "board/kanban.html",
        columns=_columns(where, whole_office, now),
        department=dept,
        departments=departments,
        whole_office=whole_office,
        column_size=COLUMN_SIZE,
        count_cap=COUNT_CAP,
        move_label=move_label,
    )


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def _department_code(code: str) -> str | None:
    """`code` (from the address or a form) if it is a department's the board can show, else
    None: the way back to the board then leads to the whole board (or the handler's own),
    not to a 404 for a code that is no department (a stale bookmark, a typo)."""
    code = (code or "")[:40]
    if not code or _CONTROL.search(code) or not sees_all_cases(current_user):
        return None
    found = db().scalar(select(Department.code).where(Department.code == code))
    return code if found is not None else None


def _back() -> str:
    return url_for("kanban.board", department=_department_code(request.form.get("department", "")))


def _refuse(message: str, status: int) -> Response:
    if _wants_json():
        response = jsonify({"ok": False, "message": message})
        response.status_code = status
        return response
    flash(message, "error")
    return redirect(_back())


def _direct(move: Move) -> Callable[[Case], str]:
    """The change a move made without a form makes."""
    if move.name == "start":

        def start(c: Case) -> str:
            c.start(current_user, _now())
            return _("%(n)s: you are handling this case now.", n=c.tracking_number)

        return start

    def close(c: Case) -> str:
        c.close(current_user, _now(), request.form.get("reason", "")[:2000])
        return _("%(n)s closed.", n=c.tracking_number)

    return close


@bp.post("/move")
@login_required
def move() -> Response:
    """Moves the case `number` to the column `to`: made here when the move needs no input,
    else the answer points to the case page's form. JSON for the script (Accept:
    application/json), else a redirect back to the board with a message."""
    number = request.form.get("number", "")
    to = request.form.get("to", "")
    # A NUL would reach PostgreSQL (which refuses it: a 500); an unknown case or one of
    # another department answers the script in JSON, not with the HTML 404 page.
    unseen = _("This case is not on your board: it does not exist or you may not see it.")
    if not number or len(number) > 40 or _CONTROL.search(number + to):
        return _refuse(unseen, 404)
    try:
        c = load_case(number)
    except NotFound:
        return _refuse(unseen, 404)
    found = find_move(c, to)
    if found is None:
        return _refuse(
            _(
                "%(n)s cannot move from “%(a)s” to “%(b)s”: the case life cycle does not allow it.",
                n=c.tracking_number,
                a=STATUS_LABELS.get(c.status, c.status),
                b=STATUS_LABELS.get(to, to),
            ),
            409,
        )
    if not can(current_user, found.action, c):
        return _refuse(
            _(
                "Your role may not move %(n)s to “%(b)s”.",
                n=c.tracking_number,
                b=STATUS_LABELS.get(to, to),
            ),
            403,
        )
    form = form_of(found, c)
    if form is not None:
        target = url_for("board.case", number=c.tracking_number) + "#" + form
        if _wants_json():
            return jsonify({"ok": True, "redirect": target})
        return redirect(target)
    if found.confirm and request.form.get("confirmed") != "yes":
        target = _confirm_url(c, found)
        if _wants_json():
            return jsonify({"ok": True, "redirect": target})
        return redirect(target)
    s = db()
    try:
        message = _direct(found)(c)
        s.flush()
        refresh_findings(c.id)
    except IllegalTransition as e:
        s.rollback()
        if found.confirm and not _wants_json():
            # The question's own form: shown again with the message. The script (or any
            # client asking for JSON) gets the reason as JSON, the card stays.
            flash(error_text(e), "error")
            return redirect(_confirm_url(c, found))
        return _refuse(error_text(e), 409)
    except (StaleDataError, DBAPIError) as e:
        if isinstance(e, DBAPIError) and not is_conflict(e):
            raise  # not two writers at once (PostgreSQL's deadlock, serialization failure)
        s.rollback()
        return _refuse(
            _("Someone else changed this case at the same time. Please look again."), 409
        )
    if _wants_json():
        card = Card(c, not sees_personal_data(current_user), _now())
        html = render_template(
            "board/_kanban_card.html",
            card=card,
            dept_code=request.form.get("department", ""),
            move_label=move_label,
        )
        return jsonify({"ok": True, "message": message, "status": str(found.to), "card": html})
    flash(message, "info")
    return redirect(_back())


def _confirm_url(c: Case, found: Move) -> str:
    return url_for(
        "kanban.confirm",
        number=c.tracking_number,
        to=str(found.to),
        department=_department_code(request.values.get("department", "")),
    )


@bp.get("/confirm")
@login_required
def confirm() -> str:
    """Asks before a move that cannot be undone (`Move.confirm`): the case, the reply and the
    return visit it rests on, the reason it needs (after an unsatisfied or unsolved visit,
    as the case page asks), and one button that posts the move; "Cancel" goes back to the
    board. 404 for a case the user may not see, 409 for a move its life cycle refuses."""
    number = request.args.get("number", "")
    to = request.args.get("to", "")
    if not number or len(number) > 40 or _CONTROL.search(number + to):
        abort(404)
    c = load_case(number)
    found = find_move(c, to)
    if found is None or not found.confirm:
        abort(409)
    if not can(current_user, found.action, c):
        abort(403)
    from web.supervision_checks import VISIT_CHANNEL_LABELS

    return render_template(
        "board/kanban_confirm.html",
        case=CaseView(c, not sees_personal_data(current_user)),
        move=found,
        reply=c.latest_reply,
        visit=c.latest_visit,
        needs_reason=needs_reason_to_close(c),
        dept_code=_department_code(request.args.get("department", "")) or "",
        VISIT_CHANNEL_LABELS=VISIT_CHANNEL_LABELS,
    )
