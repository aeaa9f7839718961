"""The board: the triage queue, case lists and the case page with its actions.

Every view checks the signed-in user's rights through `triage.access`: a case a user may not
see is a 404 to them, by link or by typed URL alike.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import ColumnElement, Select, false, select
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from intake.normalise import clean_line
from triage.access import Action, can, can_view, sees_all_cases, sees_personal_data
from triage.case_list import CasePage, list_page
from triage.cases import (
    assign_case,
    citizens_to_call,
    rework_case,
    send_back_case,
    send_back_deadline,
)
from triage.mail_intake import case_messages_of, mail_of_case
from triage.models import (
    Attachment,
    Case,
    Department,
    IllegalTransition,
    ReplyState,
    Role,
    Satisfaction,
    Status,
)
from triage.privacy import mask_email, mask_name, mask_phone, mask_text
from triage.search import excerpt, highlight, search_cases, search_terms
from web import db, runtime
from web.case_path import citizens_to_call as citizen_rows
from web.case_path import reject_form, shown_with_merged, visit_form
from web.forms import (
    ActionForm,
    AssignForm,
    CloseForm,
    MergeForm,
    ReasonForm,
    ReplyForm,
)
from web.i18n import department_name, error_text
from web.mail_lists import health_panel
from web.shown_case import remember_shown_case
from web.supervision_findings import findings_by_case, refresh_findings

bp = Blueprint("board", __name__, url_prefix="/board")
PAGE_SIZE = 50


def _now() -> datetime:
    return datetime.now(UTC)


def _departments() -> list[Department]:
    return list(
        db().scalars(select(Department).where(Department.active.is_(True)).order_by(Department.id))
    )


def _assign_form(case: Case, departments: list[Department]) -> AssignForm:
    """The dispatch (or transfer) form, with the suggestion chosen unless the suggested
    department is one that sent the case back: then nothing is chosen, the supervisor picks."""
    form = AssignForm(prefix=f"c{case.id}")
    returned = case.returned_by
    choices = [
        SelectChoice(
            d.code,
            _("%(d)s (sent it back)", d=department_name(d))
            if d.code in returned
            else department_name(d),
        )
        for d in departments
    ]
    chosen = None
    if case.department is not None:
        chosen = case.department.code
    elif case.suggested_department is not None and case.suggested_department.code not in returned:
        chosen = case.suggested_department.code
    if chosen is None:
        choices.insert(0, SelectChoice("", _("— choose a department —")))
    form.department.choices = choices
    if not form.is_submitted() and chosen is not None:
        form.department.data = chosen
    return form


def _page_number(raw: str) -> int:
    """A page number as typed in the address bar: anything odd is page 1, never an error."""
    return int(raw) if raw.isdigit() and 0 < len(raw) <= 9 and int(raw) > 0 else 1


def visible_cases(query: Select[tuple[Case]]) -> Select[tuple[Case]]:
    """Restricts a case query to what the current user may see."""
    if sees_all_cases(current_user):
        return query
    if current_user.role == Role.HANDLER and current_user.department_id is not None:
        return query.where(Case.department_id == current_user.department_id)
    return query.where(False)


def load_case(number: str) -> Case:
    case = db().scalar(
        select(Case)
        .where(Case.tracking_number == number)
        .options(
            selectinload(Case.events),
            selectinload(Case.replies),
            selectinload(Case.visits),
            selectinload(Case.attachments),
        )
    )
    if case is None or not can_view(current_user, case):
        abort(404)
    # The case page's panels (web/supervision_*.py, web/observations.py) read it from here:
    # only a case this user may see, loaded once.
    remember_shown_case(case)
    return case


class CaseView:
    """What a template may show of a case for the current user: masked for observers."""

    def __init__(self, case: Case, masked: bool) -> None:
        self.case = case
        self.masked = masked

    def __getattr__(self, name: str) -> object:
        return getattr(self.case, name)

    @property
    def contact_name(self) -> str:
        return mask_name(self.case.contact_name) if self.masked else self.case.contact_name

    @property
    def contact_phone(self) -> str:
        return mask_phone(self.case.contact_phone) if self.masked else self.case.contact_phone

    @property
    def contact_email(self) -> str:
        return mask_email(self.case.contact_email) if self.masked else self.case.contact_email

    @property
    def body(self) -> str:
        return self.shown(self.case.body)

    @property
    def subject(self) -> str:
        return self.shown(self.case.subject)

    def shown(self, text: str) -> str:
        """Free text written about the case (replies, notes, reasons), masked if need be."""
        if not self.masked:
            return text
        return mask_text(
            text,
            names=[self.case.contact_name],
            phones=[self.case.contact_phone],
            emails=[self.case.contact_email],
        )

    @property
    def urgent_reasons(self) -> list[str]:
        """The phrases that made the case urgent: pieces of the text, so masked like it."""
        return [self.shown(r) for r in self.case.urgent_reasons]

    @property
    def referred_to(self) -> str:
        return self.shown(self.case.referred_to)

    @property
    def public_reason(self) -> str:
        return self.shown(self.case.public_reason)

    @property
    def excerpt(self) -> str:
        text = self.body.replace("\n", " ")
        return text[:80] + ("…" if len(text) > 80 else "")


def _view(case: Case) -> CaseView:
    return CaseView(case, masked=not sees_personal_data(current_user))


@bp.get("/")
@login_required
def home() -> Response:
    if can(current_user, Action.TRIAGE):
        return redirect(url_for("board.queue"))
    if current_user.role == Role.OPERATOR:
        return redirect(url_for("operator.new_call"))
    return redirect(url_for("board.cases"))


@bp.get("/queue")
@login_required
def queue() -> str:
    if not can(current_user, Action.TRIAGE):
        abort(403)
    cases = (
        db()
        .scalars(
            select(Case)
            .where(Case.status.in_([Status.RECEIVED, Status.TRIAGE]))
            .order_by(Case.urgent.desc(), Case.received_at)
            .options(selectinload(Case.suggested_department), selectinload(Case.events))
            .limit(200)
        )
        .all()
    )
    departments = _departments()
    by_code = {d.code: d for d in departments}
    rows = [(_view(c), _assign_form(c, departments)) for c in cases]
    return render_template(
        "board/queue.html",
        rows=rows,
        findings=findings_by_case(db(), [c.id for c in cases]),
        by_code=by_code,
        now=_now(),
        problem=runtime().routers.problem,
        intake=health_panel(),
    )


def _cursor(raw: str) -> int | None:
    """A case id from a paging link; anything odd is no cursor, never an error."""
    return int(raw) if raw.isdigit() and 0 < len(raw) <= 9 else None


def _list_filters(status: str, department: str) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a case list: what the user may see, and the filters chosen."""
    where: list[ColumnElement[bool]] = []
    if not sees_all_cases(current_user):
        if current_user.role == Role.HANDLER and current_user.department_id is not None:
            where.append(Case.department_id == current_user.department_id)
        else:
            where.append(false())
    if status == "open":
        where.append(Case.status.notin_([Status.CLOSED, Status.MERGED, Status.REJECTED]))
    elif status in set(Status):
        where.append(Case.status == status)
    if department and sees_all_cases(current_user):
        where.append(
            Case.department_id
            == select(Department.id).where(Department.code == department).scalar_subquery()
        )
    return where


@bp.get("/cases")
@login_required
def cases() -> str:
    """Newest first with keyset paging (``after``/``before`` a case id, ``last``; a typed
    ``page`` still works), or, with ``q``, search results best first, matches highlighted."""
    status = request.args.get("status", "")
    department = request.args.get("department", "")
    q = clean_line(request.args.get("q", ""))[:200]
    after = _cursor(request.args.get("after", ""))
    before = _cursor(request.args.get("before", ""))
    typed = request.args.get("page", "")
    # After a cursor without a page number (walking back from an uncounted end): unknown.
    page = _page_number(typed) if typed or (after is None and before is None) else 0
    where = _list_filters(status, department)
    masked = not sees_personal_data(current_user)
    terms: list[str] = []
    if q:
        found = search_cases(db(), q, masked=masked, where=where)
        terms = search_terms(q)
        pages = max(1, -(-found.total // PAGE_SIZE))
        page = min(max(1, page), pages)
        listing = CasePage(
            found.case_ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
            page,
            found.total,
            found.capped,
            page > 1,
            page < pages,
            PAGE_SIZE,
        )
    else:
        listing = list_page(
            db(),
            where,
            size=PAGE_SIZE,
            page=page,
            after=after,
            before=before,
            last=request.args.get("last", "") == "1",
        )
    options = [selectinload(Case.department)]
    if q and not masked:
        options.append(selectinload(Case.replies))
    loaded = {
        c.id: c
        for c in db().scalars(select(Case).where(Case.id.in_(listing.case_ids)).options(*options))
    }
    rows = [_view(loaded[i]) for i in listing.case_ids if i in loaded]
    return render_template(
        "board/cases.html",
        rows=rows,
        findings=findings_by_case(db(), listing.case_ids),
        matches={r.id: _matches(r, terms) for r in rows} if terms else {},
        listing=listing,
        total=listing.total,
        page=listing.number,
        pages=listing.pages if not q else max(1, -(-listing.total // PAGE_SIZE)),
        status=status,
        department=department,
        q=q,
        departments=_departments() if sees_all_cases(current_user) else [],
        statuses=list(Status),
        now=_now(),
    )


def _matches(view: CaseView, terms: list[str]) -> dict[str, object]:
    """Where a search result matched, as (piece, matched) pairs for the template: the
    subject, and an excerpt of the body, a reply or the contact when the subject holds none."""
    subject = view.subject or view.excerpt
    texts = [view.body]
    if not view.masked:
        texts += [r.body for r in view.case.replies]
        texts.append(" ".join(filter(None, [view.contact_name, view.contact_phone])))
        texts.append(view.contact_email)
    marked = highlight(subject, terms)
    in_subject = any(matched for _, matched in marked)
    return {
        "number": highlight(view.tracking_number, terms),
        "subject": marked,
        "excerpt": None if in_subject else excerpt(texts, terms),
    }


@bp.get("/cases/<number>")
@login_required
def case(number: str) -> str:
    from web.supervision_extensions import case_context as supervision_panels

    c = load_case(number)
    departments = _departments()
    deadlines = runtime().settings.deadlines()
    merged = citizens_to_call(db(), c)
    forms = {
        "assign": _assign_form(c, departments),
        "reject": reject_form(),
        "merge": MergeForm(prefix="merge"),
        "reply": ReplyForm(prefix="reply"),
        "send_back": ReasonForm(prefix="sendback"),
        "visit": visit_form(c, merged, offered_only=True),
        "rework": ReasonForm(prefix="rework"),
        "close": CloseForm(prefix="close"),
        "action": ActionForm(),
    }
    by_code = {d.code: d for d in departments}
    view = _view(c)
    return render_template(
        "board/case.html",
        case=view,
        shown=shown_with_merged(view.shown, merged, view.masked),
        forms=forms,
        by_code=by_code,
        may_triage=can(current_user, Action.TRIAGE, c),
        may_handle=can(current_user, Action.HANDLE, c),
        may_visit=can(current_user, Action.VISIT, c),
        send_back_until=send_back_deadline(c, deadlines),
        citizens=citizen_rows(c, merged, masked=not sees_personal_data(current_user)),
        visit_citizens={m.id: m.tracking_number for m in merged},
        now=_now(),
        Status=Status,
        messages=case_messages_of(db(), c.id),
        # Raw mail carries the citizen's full headers: only those who triage download it.
        raw_mails=mail_of_case(db(), c.id) if can(current_user, Action.TRIAGE) else [],
        mask_sender=mask_email if view.masked else None,
        **supervision_panels(c),
    )


@bp.get("/attachments/<int:attachment_id>")
@login_required
def attachment(attachment_id: int) -> Response:
    att = db().get(Attachment, attachment_id)
    if att is None:
        abort(404)
    c = db().get(Case, att.case_id)
    if c is None or not can_view(current_user, c) or not sees_personal_data(current_user):
        abort(404)
    path = runtime().attachments.path(att.sha256)
    if not path.exists():
        abort(404)
    return send_file(
        path,
        mimetype=att.content_type,
        as_attachment=not att.content_type.startswith("image/"),
        download_name=att.filename,
    )


def _act(number: str, action: Action, change: Callable[[Case], str]) -> Response:
    """Runs one change on a case the user may act on, then returns to the case page.

    `change` returns the message to show on success; an illegal change is shown as an error
    and nothing is saved.
    """
    c = load_case(number)
    if not can(current_user, action, c):
        abort(403)
    s = db()
    try:
        message = change(c)
        s.flush()
        refresh_findings(c.id)
    except IllegalTransition as e:
        s.rollback()
        flash(error_text(e), "error")
    except StaleDataError:
        s.rollback()
        flash(_("Someone else changed this case at the same time. Please look again."), "error")
    else:
        flash(message, "info")
    return redirect(url_for("board.case", number=number))


def _form_error(form: object) -> IllegalTransition:
    errors = [
        f"{getattr(form, name).label.text}: {', '.join(map(str, errs))}"
        for name, errs in form.errors.items()
    ]  # type: ignore[attr-defined]
    return IllegalTransition("; ".join(errors) or _("The form was incomplete."))


@bp.post("/cases/<number>/assign")
@login_required
def assign(number: str) -> Response:
    departments = _departments()

    def change(c: Case) -> str:
        form = _assign_form(c, departments)
        if not form.validate_on_submit():
            raise _form_error(form)
        dept = next((d for d in departments if d.code == form.department.data), None)
        if dept is None:
            raise IllegalTransition(_("Unknown department."))
        assign_case(
            c, dept, current_user, runtime().settings.deadlines(), _now(), form.reason.data or ""
        )
        return _("Case %(n)s dispatched to %(d)s.", n=c.tracking_number, d=department_name(dept))

    response = _act(number, Action.TRIAGE, change)
    if request.form.get("back") == "queue":
        return redirect(url_for("board.queue"))
    return response


@bp.post("/cases/<number>/reject")
@login_required
def reject(number: str) -> Response:
    def change(c: Case) -> str:
        form = reject_form()
        if not form.validate_on_submit():
            raise _form_error(form)
        c.reject(
            current_user,
            _now(),
            form.reason.data,
            outcome=runtime().settings.rejection_outcomes().get(form.outcome.data),
            public_reason=form.public_reason.data or "",
            referred_to=form.referred_to.data or "",
        )
        return _("Case not accepted; the citizen sees the public reason.")

    return _act(number, Action.TRIAGE, change)


@bp.post("/cases/<number>/merge")
@login_required
def merge(number: str) -> Response:
    def change(c: Case) -> str:
        form = MergeForm(prefix="merge")
        if not form.validate_on_submit():
            raise _form_error(form)
        target = db().scalar(
            select(Case).where(Case.tracking_number == form.target.data.strip().upper())
        )
        if target is None:
            raise IllegalTransition(_("No case %(n)s.", n=form.target.data))
        c.merge_into(target, current_user, _now(), form.reason.data or "")
        return _("Merged into %(n)s.", n=target.tracking_number)

    return _act(number, Action.TRIAGE, change)


@bp.post("/cases/<number>/start")
@login_required
def start(number: str) -> Response:
    def change(c: Case) -> str:
        if not ActionForm().validate_on_submit():
            raise IllegalTransition(_("The form expired; please try again."))
        c.start(current_user, _now())
        return _("You are handling this case now.")

    return _act(number, Action.HANDLE, change)


@bp.post("/cases/<number>/reply")
@login_required
def reply(number: str) -> Response:
    def change(c: Case) -> str:
        form = ReplyForm(prefix="reply")
        if not form.validate_on_submit():
            raise IllegalTransition(_("A reply needs a text."))
        reply = c.reply(
            current_user,
            _now(),
            form.text.data,
            sign_off=runtime().settings.supervision.reply_sign_off,
        )
        if reply.state == ReplyState.PENDING_SIGN_OFF:
            return _("Reply saved; it goes out when the department head signs it off.")
        return _("Reply sent.")

    return _act(number, Action.HANDLE, change)


@bp.post("/cases/<number>/send-back")
@login_required
def send_back(number: str) -> Response:
    def change(c: Case) -> str:
        form = ReasonForm(prefix="sendback")
        if not form.validate_on_submit():
            raise IllegalTransition(_("Sending a case back needs a reason."))
        send_back_case(c, current_user, runtime().settings.deadlines(), _now(), form.reason.data)
        return _("Case sent back to the efficiency office.")

    response = _act(number, Action.HANDLE, change)
    case = db().scalar(select(Case).where(Case.tracking_number == number))
    if case is not None and not can_view(current_user, case):
        # Sent back: the case is no longer the handler's to see.
        return redirect(url_for("board.cases"))
    return response


@bp.post("/cases/<number>/visit")
@login_required
def visit(number: str) -> Response:
    def change(c: Case) -> str:
        merged = citizens_to_call(db(), c)
        form = visit_form(c, merged, offered_only=False)
        if not form.validate_on_submit():
            raise _form_error(form)
        reached = form.reached.data == "yes"
        if reached and (not form.solved.data or not form.satisfaction.data):
            raise IllegalTransition(
                _("When the citizen was reached, say whether it is solved and how satisfied.")
            )
        outcome = {
            "reached": reached,
            "solved": (form.solved.data == "yes") if reached else None,
            "satisfaction": Satisfaction(form.satisfaction.data) if reached else None,
            "note": form.note.data or "",
            "channel": form.channel.data or "phone",
        }
        citizen = next((m for m in merged if m.tracking_number == form.citizen.data), None)
        if citizen is not None:
            c.record_citizen_visit(citizen, current_user, _now(), **outcome)
            return _("Return visit to the citizen of %(n)s recorded.", n=citizen.tracking_number)
        c.record_visit(current_user, _now(), **outcome)
        if not reached:
            return _(
                "Attempt %(n)s recorded: the citizen was not reached. The case stays replied; "
                "try again.",
                n=c.failed_visit_attempts,
            )
        return _("Return visit recorded.")

    return _act(number, Action.VISIT, change)


@bp.post("/cases/<number>/rework")
@login_required
def rework(number: str) -> Response:
    def change(c: Case) -> str:
        form = ReasonForm(prefix="rework")
        if not form.validate_on_submit():
            raise IllegalTransition(_("Rework needs a reason."))
        rework_case(c, current_user, runtime().settings.deadlines(), _now(), form.reason.data)
        return _("Case sent back to the department for rework.")

    return _act(number, Action.VISIT, change)


@bp.post("/cases/<number>/close")
@login_required
def close(number: str) -> Response:
    def change(c: Case) -> str:
        form = CloseForm(prefix="close")
        if not form.validate_on_submit():
            raise _form_error(form)
        c.close(current_user, _now(), form.reason.data or "")
        return _("Case closed.")

    return _act(number, Action.VISIT, change)
