"""The board: the triage queue, case lists and the case page with its actions.

Every view checks the signed-in user's rights through `triage.access`: a case a user may not
see is a 404 to them, by link or by typed URL alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

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
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from intake.normalise import clean_line
from intake.submission import Kind
from triage import admin_log, tallies
from triage.access import Action, can, can_view, sees_all_cases, sees_personal_data
from triage.case_list import (
    COUNT_CAP,
    DEADLINE_KEY,
    FINDING_SCAN,
    FLAGS,
    SORTS,
    WAITING,
    ListFilters,
    cursor_text,
    default_view,
    facet_counts,
    found_page,
    list_page,
    list_risk,
    order_found,
    order_groups,
    order_ranges,
    parse_cursor,
    save_view,
    saved_views,
    shared_views,
    unindexed_clauses,
)
from triage.case_people import people_by_case, people_of
from triage.cases import (
    assign_case,
    citizens_to_call,
    rework_case,
    send_back_case,
    send_back_deadline,
)
from triage.mail_intake import case_messages_of, mail_of_case
from triage.models import (
    OPEN_STATUSES,
    Attachment,
    Case,
    CaseEvent,
    Department,
    IllegalTransition,
    ReplyState,
    Role,
    Satisfaction,
    SavedView,
    Status,
)
from triage.privacy import People, mask_email, mask_name, mask_phone
from triage.search import (
    SEARCH_CAP,
    SearchResult,
    excerpt,
    highlight,
    search_cases,
    search_terms,
)
from triage.tracking_numbers import normalise_tracking_number
from web import db, runtime
from web.case_path import citizens_to_call as citizen_rows
from web.case_path import reject_form, visit_form
from web.db import is_conflict
from web.forms import (
    ActionForm,
    AssignForm,
    BulkDispatchForm,
    CloseForm,
    MergeForm,
    ReasonForm,
    ReplyForm,
    SavedViewForm,
    whole_number,
)
from web.i18n import (
    CHANNEL_LABELS,
    ROLE_LABELS,
    STATUS_LABELS,
    department_name,
    error_text,
    join_list,
)
from web.mail_lists import health_panel
from web.shown_case import remember_shown_case
from web.supervision_findings import RULE_LABELS, findings_by_case, refresh_findings

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
    return whole_number(raw) or 1


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
    """What a template may show of a case for the current user: masked for observers, with
    the data of every citizen its texts may carry (`triage.case_people`: its own caller's
    and those of the cases merged with it or linked to it). `people`: those citizens, when
    read for many cases at once (`case_views`); else read when first needed."""

    def __init__(self, case: Case, masked: bool, people: People | None = None) -> None:
        self.case = case
        self.masked = masked
        self._people = people

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

    @property
    def people(self) -> People:
        """Whose data the case's texts are masked of: its caller (with the names given on
        later calls) and the citizens of its group of merged and linked cases."""
        if self._people is None:
            self._people = people_of(db(), self.case.id)
        own = People.of(
            self.case.caller_names, [self.case.contact_phone], [self.case.contact_email]
        )
        return own | self._people

    def shown(self, text: str) -> str:
        """Free text written about the case (replies, notes, reasons), masked if need be."""
        if not self.masked or not text:
            return text
        return self.people.mask(text)

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


def case_views(cases: list[Case], masked: bool | None = None) -> list[CaseView]:
    """`CaseView`s of a list's cases (masked for the current user unless `masked` says),
    whose citizens are read for all of them at once."""
    if masked is None:
        masked = not sees_personal_data(current_user)
    if not masked or not cases:
        return [CaseView(c, masked) for c in cases]
    people = people_by_case(db(), [c.id for c in cases])
    return [CaseView(c, True, people.get(c.id, People())) for c in cases]


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
    """Cases waiting for dispatch: urgent first, then the nearest dispatch deadline. One
    department selector dispatches the cases ticked (`dispatch_many`); each row dispatches to
    its suggestion with one button, and merges into its likely duplicate with another."""
    if not can(current_user, Action.TRIAGE):
        abort(403)
    waiting = WAITING
    cases = (
        db()
        .scalars(
            select(Case)
            .where(waiting)
            .order_by(Case.urgent.desc(), DEADLINE_KEY, Case.id)
            .options(
                selectinload(Case.suggested_department),
                # Only the send-backs (their reasons, who returned it): the row shows nothing
                # else of the history (a case has some seven events, all read for each row).
                selectinload(Case.events.and_(CaseEvent.action == "sent_back")),
            )
            .limit(QUEUE_SIZE)
        )
        .all()
    )
    total = len(cases)
    if total == QUEUE_SIZE:
        # The whole queue's count from the maintained tallies: exact, whatever its length
        # (a count of its cases was capped at COUNT_CAP and read them all up to it).
        total = tallies.count(db(), [waiting]) or 0  # status is tallied: never None
    departments = _departments()
    now = _now()
    form = BulkDispatchForm(prefix="bulk")
    form.department.choices = [
        SelectChoice(SUGGESTED, _("each to its suggested department")),
        *[SelectChoice(d.code, department_name(d)) for d in departments],
    ]
    return render_template(
        "board/queue.html",
        rows=[(_view(c), deadline_state(c, now)) for c in cases],
        total=total,
        form=form,
        merge_form=MergeForm(prefix="merge"),
        models=sorted({c.model_version for c in cases if c.model_version}),
        merge_targets=_merge_targets(cases),
        findings=findings_by_case(db(), [c.id for c in cases]),
        by_code={d.code: d for d in departments},
        now=now,
        problem=runtime().routers.problem,
        intake=health_panel(),
    )


QUEUE_SIZE = 50
"""Cases the queue shows (the most urgent) and dispatches at once at most: 100 rows were
91 KB and some 230-320 ms at p95 under load at 100,000 cases; the rest follow as these go."""
SUGGESTED = "_suggested"


def _merge_targets(cases: list[Case]) -> dict[int, str]:
    """{case id: the tracking number its row offers to merge it into}: its most similar case
    that can still take it (`Case.similar` is kept from the case's registration: a case
    closed, merged or rejected since would only make the button fail). One query."""
    wanted = {c.id: [str(s[0]) for s in (c.similar or [])[:3] if s] for c in cases}
    numbers = {n for ns in wanted.values() for n in ns}
    if not numbers:
        return {}
    final = (Status.CLOSED, Status.MERGED, Status.REJECTED)
    open_numbers = set(
        db().scalars(
            select(Case.tracking_number).where(
                Case.tracking_number.in_(numbers), Case.status.not_in(final)
            )
        )
    )
    targets: dict[int, str] = {}
    for case_id, ns in wanted.items():
        for n in ns:
            if n in open_numbers:
                targets[case_id] = n
                break
    return targets


def deadline_state(case: Case, now: datetime) -> tuple[datetime | None, str]:
    """(the deadline the case runs against now, its mark: "overdue" / "at_risk" / ""). The
    deadline: dispatch while the case waits for it, else handling. The mark: `list_risk`,
    the "at risk" and overdue filters' rules, so that a list's amber and red rows are the
    cases those filters give."""
    waiting = case.status in (Status.RECEIVED, Status.TRIAGE)
    due = case.triage_due_at if waiting else (case.due_at or case.triage_due_at)
    return due, list_risk(case, now)


def _sent_number(sent: str) -> str:
    """A tracking number a form sent: its canonical spelling (`normalise_tracking_number`),
    else the text without control characters (PostgreSQL refuses NUL in a query), cut to 30
    characters for the message saying no case has it."""
    number = normalise_tracking_number(sent, runtime().settings.app.tracking_prefix)
    if number is not None:
        return number
    return "".join(c for c in sent if c.isprintable()).strip().upper()[:30]


@bp.post("/queue/dispatch")
@login_required
def dispatch_many() -> Response:
    """Dispatches the cases ticked in the queue (or the one whose row button was pressed) to
    one department, or each to its suggestion: each through `assign_case`, as the single
    dispatch does, in a savepoint of its own, so a case that cannot go is reported and the
    others go."""
    if not can(current_user, Action.TRIAGE):
        abort(403)
    departments = _departments()
    form = BulkDispatchForm(prefix="bulk")
    form.department.choices = [SUGGESTED, *[d.code for d in departments]]
    one = request.form.get("one", "")
    if one:
        # A row's own button: the row's department selector (a copy of the bulk one made by
        # static/board_lists.js), else the case's suggestion.
        form.department.data = request.form.get(f"to-{one}", "") or SUGGESTED
    if not form.validate_on_submit():
        flash(error_text(_form_error(form)), "error")
        return redirect(url_for("board.queue"))
    sent = [one] if one else request.form.getlist("case")
    numbers = list(dict.fromkeys(_sent_number(n) for n in sent if n.strip()))
    if len(numbers) > QUEUE_SIZE:
        flash(
            _(
                "Only %(n)s cases are dispatched at once (the queue shows as many): "
                "%(left)s were left out; tick them again.",
                n=QUEUE_SIZE,
                left=len(numbers) - QUEUE_SIZE,
            ),
            "error",
        )
        numbers = numbers[:QUEUE_SIZE]
    if not numbers:
        flash(_("Tick the cases to dispatch first."), "error")
        return redirect(url_for("board.queue"))
    by_code = {d.code: d for d in departments}
    by_id = {d.id: d for d in departments}
    s = db()
    cases = {
        c.tracking_number: c
        for c in s.scalars(
            select(Case)
            .where(Case.tracking_number.in_(numbers))
            .options(selectinload(Case.suggested_department), selectinload(Case.events))
        )
    }
    deadlines = runtime().settings.deadlines()
    done: list[str] = []
    failed: list[str] = []
    for number in numbers:
        c = cases.get(number)
        if c is None or not can(current_user, Action.TRIAGE, c):
            failed.append(_("%(n)s: no such case to dispatch.", n=number))
            continue
        if c.status not in (Status.RECEIVED, Status.TRIAGE):
            if c.status in (Status.ASSIGNED, Status.IN_PROGRESS, Status.REPLIED, Status.VISITED):
                failed.append(_("%(n)s: already dispatched.", n=number))
            else:
                # Closed, merged, rejected: "dispatched" would be untrue.
                failed.append(
                    _(
                        "%(n)s: not waiting for dispatch (%(status)s).",
                        n=number,
                        status=STATUS_LABELS.get(str(c.status), str(c.status)),
                    )
                )
            continue
        if form.department.data == SUGGESTED:
            dept = by_id.get(c.suggested_department_id or 0)
        else:
            dept = by_code.get(form.department.data)
        if dept is None and form.department.data == SUGGESTED and c.suggested_department_id:
            failed.append(
                _("%(n)s: its suggested department is no longer active; choose one.", n=number)
            )
            continue
        if dept is None:
            failed.append(_("%(n)s: no suggested department; choose one.", n=number))
            continue
        try:
            with s.begin_nested():
                assign_case(c, dept, current_user, deadlines, _now(), form.reason.data or "")
                s.flush()
        except IllegalTransition as e:
            failed.append(f"{number}: {error_text(e)}")
            continue
        except (StaleDataError, DBAPIError) as e:
            # PostgreSQL's deadlock or serialization failure rolled back this case's
            # savepoint only: told like a stale version, the other cases still dispatched.
            if isinstance(e, DBAPIError) and not is_conflict(e):
                raise
            failed.append(_("%(n)s: someone else changed this case at the same time.", n=number))
            continue
        refresh_findings(c.id)
        done.append(number)
    if done:
        flash(
            _("%(count)s dispatched: %(numbers)s.", count=len(done), numbers=join_list(done)),
            "info",
        )
    # A page of a hundred red lines helps nobody: the first few, then how many more.
    for message in failed[:_FAILURES_SHOWN]:
        flash(message, "error")
    if len(failed) > _FAILURES_SHOWN:
        flash(
            _(
                "…and %(n)s more that could not be dispatched.",
                n=len(failed) - _FAILURES_SHOWN,
            ),
            "error",
        )
    return redirect(url_for("board.queue"))


_FAILURES_SHOWN = 10


def _scope() -> list[ColumnElement[bool]]:
    """The WHERE clauses of what the user may see of the case lists."""
    if sees_all_cases(current_user):
        return []
    if current_user.role == Role.HANDLER and current_user.department_id is not None:
        return [Case.department_id == current_user.department_id]
    return [false()]


def _search_department(filters: ListFilters) -> int | None:
    """The one department a search is limited to (the handler's own, or the list's
    department filter), whose postings it then reads alone; None: the office's."""
    if not sees_all_cases(current_user):
        return current_user.department_id if current_user.role == Role.HANDLER else None
    if filters.department:
        return db().scalar(select(Department.id).where(Department.code == filters.department))
    return None


RELEVANCE = "relevance"
"""The order of search results by default: best match (`search_cases`'s ranking) first."""


def _sort_of(raw: str, q: str) -> str:
    """The list's order from its ``sort`` parameter: a key of `SORTS`, or under a search also
    `RELEVANCE`, its default (else "received"). Under a search the order chosen is honoured:
    the dropdown showed it while the results came best match first."""
    if raw in SORTS:
        return raw
    return RELEVANCE if q else "received"


@bp.get("/cases")
@login_required
def cases() -> str:
    """A case list: filters (`ListFilters`), an order (``sort``: received, deadline,
    updated), keyset paging (``after``/``before`` a case id, ``last``; a typed ``page``
    still works), counts per filter value, saved views; or, with ``q``, search results best
    first, matches highlighted. With no parameters at all, the user's default view."""
    args = request.args
    default = None
    # ?lang= chooses the language (web/__init__.py), not a list: the default view still opens.
    if not [k for k in args if k != "lang"]:
        default = default_view(db(), current_user.id, current_user.role)
        if default:
            args = MultiDict(parse_qsl(default))
    known = {"department": set(db().scalars(select(Department.code))), "finding": RULE_LABELS}
    swapped: list[str] = []
    filters, bad = ListFilters.parse(args, known, swapped)
    if not sees_all_cases(current_user):
        filters = replace(filters, department="")
    q = clean_line(args.get("q", ""))[:200]
    sort = _sort_of(args.get("sort", ""), q)
    # "<id>.<key value>" (the links' since issue 10) or a bare id (older links); odd: none.
    after_at = parse_cursor(args.get("after", ""))
    before_at = parse_cursor(args.get("before", "")) if after_at is None else None
    after = after_at[0] if after_at else None
    before = before_at[0] if before_at else None
    at, group = (after_at or before_at or (None, None, None))[1:]
    last = args.get("last", "") == "1"
    typed = args.get("page", "")
    # After a cursor without a page number (walking back from an uncounted end): unknown.
    page = _page_number(typed) if typed or (after is None and before is None) else 0
    now = _now()
    timezone = ZoneInfo(runtime().settings.app.timezone)
    scope = _scope()
    # Beside "overdue", the scope too is tested on the overdue index's rows (SQLite).
    seen = unindexed_clauses(scope) if filters.overdue else scope
    where = [*seen, *filters.clauses(now, timezone)]
    masked = not sees_personal_data(current_user)
    terms: list[str] = []
    if q:
        found = search_cases(
            db(), q, masked=masked, where=where, department_id=_search_department(filters)
        )
        terms = search_terms(q)
        # The order chosen, among the matches read (`order_found`); else best match first.
        ordered = found.case_ids if sort == RELEVANCE else order_found(db(), found.case_ids, sort)
        listing = found_page(
            ordered,
            size=PAGE_SIZE,
            capped=found.capped,
            page=page,
            last=last,
            after=after,
            before=before,
        )
    else:
        listing = list_page(
            db(),
            where,
            size=PAGE_SIZE,
            page=page,
            after=after,
            before=before,
            at=at,
            group=group,
            last=last,
            sort=sort,
            # "Open" is six statuses: each read in order from (status, key, id) and merged.
            parts=[Case.status == s for s in sorted(OPEN_STATUSES)]
            if filters.status == "open" and sort in ("received", "deadline")
            else (),
            ranges=order_ranges(filters, sort, timezone),
            scope=scope,
            # By deadline, the open cases first, then the closed ones.
            groups=order_groups(filters, sort, pieces=bool(scope or filters.department)),
        )
    exact = None
    if listing.capped and not q:
        # Past the count's cap, the whole list's length from the tallies when its filters
        # are all tallied (the heading then agrees with the counts per filter value beside it;
        # the pages stay unnumbered to the end).
        exact = tallies.count(db(), where)
    options = [selectinload(Case.department)]
    if q and not masked:
        options.append(selectinload(Case.replies))
    loaded = {
        c.id: c
        for c in db().scalars(select(Case).where(Case.id.in_(listing.case_ids)).options(*options))
    }
    rows = case_views([loaded[i] for i in listing.case_ids if i in loaded])
    shown = [loaded[i] for i in listing.case_ids if i in loaded]
    cursors = (cursor_text(shown[0], sort), cursor_text(shown[-1], sort)) if shown else (None, None)
    departments = _departments()
    keep = {**filters.query_args(), "sort": sort, "q": q or None}
    keep = {k: v for k, v in keep.items() if v}
    view_form = SavedViewForm(prefix="view")
    view_form.query.data = urlencode(keep)
    view_form.role.choices = _view_roles()
    return render_template(
        "board/cases.html",
        rows=rows,
        findings=findings_by_case(db(), listing.case_ids),
        matches={r.id: _matches(r, terms) for r in rows} if terms else {},
        listing=listing,
        previous_cursor=cursors[0],
        next_cursor=cursors[1],
        total=exact if exact is not None else listing.total,
        total_exact=exact is not None,
        page=listing.number,
        pages=listing.pages if not q else max(1, -(-listing.total // PAGE_SIZE)),
        filters=filters,
        status=filters.status,
        department=filters.department,
        sort=sort,
        sorts=list(SORTS),
        q=q,
        keep=keep,
        # Under a search: of the cases it matches (bounded), not of the list without it.
        facets=_search_facets(q, found, scope, filters, now, timezone, departments, masked)
        if q
        else _facets(seen, filters, now, timezone, departments),
        count_cap=COUNT_CAP,
        finding_scan=FINDING_SCAN,
        search_cap=SEARCH_CAP,
        bad=[_PARAMETER_LABELS[b]() for b in bad if b in _PARAMETER_LABELS],
        swapped=swapped,
        rules=sorted(RULE_LABELS),
        departments=departments if sees_all_cases(current_user) else [],
        statuses=list(Status),
        kinds=list(Kind),
        channels=list(CHANNEL_LABELS),
        views=saved_views(db(), current_user.id, current_user.role),
        # The admin saves views for other roles: listed apart, to open and delete them.
        other_shared=[v for v in shared_views(db()) if v.role != current_user.role]
        if current_user.role == Role.ADMIN
        else [],
        view_form=view_form,
        default=default,
        now=now,
        deadline_state=deadline_state,
    )


_PARAMETER_LABELS: dict[str, Callable[[], str]] = {
    "status": lambda: _("Status"),
    "department": lambda: _("Department"),
    "channel": lambda: _("Channel"),
    "kind": lambda: _("Kind"),
    "finding": lambda: _("Finding"),
    "received_from": lambda: _("Received from"),
    "received_to": lambda: _("Received to"),
    "due_from": lambda: _("Due from"),
    "due_to": lambda: _("Due to"),
}
"""A list parameter's name as its filter is labelled (for "not understood: …")."""


def _facets(
    scope: list[ColumnElement[bool]],
    filters: ListFilters,
    now: datetime,
    timezone: ZoneInfo,
    departments: list[Department],
) -> dict[str, dict[str, int]]:
    """Counts per filter value for the template: {filter: {value as in the URL: cases}}
    (a flag's value: "1"; a count above `COUNT_CAP`: more than that); a filter left out is
    not counted (`facet_counts`: none rather than a count over every case), its values are
    then shown without counts.

    Not kept between requests: read from the tallies (or bounded), they cost less than a
    cache shared by the workers of one host, and are right as soon as a change commits,
    on every web machine."""
    names = ["status", "channel", "kind", *FLAGS, "finding"]
    if sees_all_cases(current_user):
        names.append("department")
    counts = facet_counts(db(), scope, filters, now=now, timezone=timezone, facets=names)
    shown: dict[str, dict[str, int]] = {
        n: {str(k): v for k, v in counts[n].items()}
        for n in ("status", "channel", "kind", "finding")
        if n in counts
    }
    for flag in FLAGS:
        if flag in counts:
            shown[flag] = {"1": counts[flag].get(True, 0)}
    if "status" in shown:
        shown["status"]["open"] = sum(v for k, v in shown["status"].items() if k in OPEN_STATUSES)
    if "department" in counts:
        codes = {d.id: d.code for d in departments}
        shown["department"] = {codes[k]: v for k, v in counts["department"].items() if k in codes}
    return shown


def _search_facets(
    q: str,
    found: SearchResult,
    scope: list[ColumnElement[bool]],
    filters: ListFilters,
    now: datetime,
    timezone: ZoneInfo,
    departments: list[Department],
    masked: bool,
) -> dict[str, dict[str, int]]:
    """Counts per filter value under a search: of the cases it matches under the list's dates
    alone (the other filters are the ones counted), each value's count what the results
    would number with it picked. Those matches are at most `SEARCH_CAP` (the search reads no
    more), so the counts cost the same whatever the number of cases; empty when the search
    matches more (beyond, its matches are not read)."""
    dates = ListFilters(
        received_from=filters.received_from,
        received_to=filters.received_to,
        due_from=filters.due_from,
        due_to=filters.due_to,
    )
    if dates != filters:
        # The results' own search was narrowed by the other filters too: once more without.
        found = search_cases(
            db(),
            q,
            masked=masked,
            where=[*scope, *dates.clauses(now, timezone)],
            department_id=_search_department(dates),
        )
    if found.capped:
        return {}
    matched = [*scope, Case.id.in_(found.case_ids)]
    return _facets(matched, filters, now, timezone, departments)


def _view_roles() -> list[SelectChoice]:
    """Whom a view may be saved for: oneself; an admin, also each role (its shared default)."""
    choices = [SelectChoice("", _("Myself"))]
    if current_user.role == Role.ADMIN:
        choices += [SelectChoice(str(r), ROLE_LABELS.get(str(r), str(r))) for r in Role]
    return choices


@bp.post("/views")
@login_required
def save_case_view() -> Response:
    """Saves the case list as shown under a name (replacing one of the same name)."""
    form = SavedViewForm(prefix="view")
    form.role.choices = _view_roles()
    if not form.validate_on_submit():
        flash(error_text(_form_error(form)), "error")
        return redirect(url_for("board.cases"))
    query = _view_query(form.query.data or "")
    role = form.role.data or ""
    default = bool(form.default.data)
    # The shared view this save replaces, if any: the log says what it was.
    before = (
        db().scalar(
            select(SavedView).where(
                SavedView.user_id.is_(None),
                SavedView.role == role,
                SavedView.name == form.name.data,
            )
        )
        if role
        else None
    )
    was = (before.query, before.is_default) if before is not None else None
    save_view(
        db(),
        name=form.name.data,
        query=query,
        user_id=None if role else current_user.id,
        role=role,
        is_default=default,
    )
    if role:
        # A role's shared view is the admin's doing for others: in the admin log, a
        # replaced one as what changed from what to what.
        admin_log.record(
            db(),
            current_user,
            "view_shared",
            f"view {role}: {form.name.data}",
            _now(),
            role=role,
            query=query if was is None or was[0] == query else [was[0], query],
            default=default if was is None or was[1] == default else [was[1], default],
        )
    flash(_("View “%(name)s” saved.", name=form.name.data), "info")
    return redirect(url_for("board.cases") + ("?" + query if query else "?sort=received"))


def _view_query(raw: str) -> str:
    """A saved view's query string as the list understands it: its filters, order and
    search, re-written from what was understood (no paging, no unknown or junk parameters,
    no control characters: the list opens with it without the request's own checks)."""
    args = MultiDict(parse_qsl(raw[:2000]))
    filters, _bad = ListFilters.parse(args)
    q = clean_line(args.get("q", ""))[:200]
    sort = args.get("sort", "")
    sort = sort if sort in SORTS or (q and sort == RELEVANCE) else ""
    kept = {**filters.query_args(), "sort": sort, "q": q}
    return urlencode({k: v for k, v in kept.items() if v})


@bp.post("/views/<int:view_id>/delete")
@login_required
def delete_case_view(view_id: int) -> Response:
    view = db().get(SavedView, view_id)
    mine = view is not None and view.user_id == current_user.id
    shared = view is not None and view.user_id is None and current_user.role == Role.ADMIN
    if not (mine or shared) or not ActionForm().validate_on_submit():
        abort(404)
    if shared:
        admin_log.record(
            db(),
            current_user,
            "view_unshared",
            f"view {view.role}: {view.name}",
            _now(),
            role=view.role,
            query=view.query,
        )
    db().delete(view)
    flash(_("View deleted."), "info")
    return redirect(url_for("board.cases"))


def _matches(view: CaseView, terms: list[str]) -> dict[str, object]:
    """Where a search result matched, as (piece, matched) pairs for the template: the
    subject, and an excerpt of the body, a reply or the contact when the subject holds none."""
    subject = view.subject or view.excerpt
    texts = [view.body]
    if view.masked:
        # The replies as the case page shows them: sent ones, masked.
        texts += [view.shown(r.body) for r in view.case.sent_replies]
    else:
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
    similar, openable = _similar_shown(c)
    now = _now()
    return render_template(
        "board/case.html",
        case=view,
        similar=similar,
        openable=openable,
        shown=view.shown,
        forms=forms,
        by_code=by_code,
        may_triage=can(current_user, Action.TRIAGE, c),
        may_handle=can(current_user, Action.HANDLE, c),
        may_visit=can(current_user, Action.VISIT, c),
        send_back_until=send_back_deadline(c, deadlines),
        citizens=citizen_rows(c, merged, masked=not sees_personal_data(current_user)),
        visit_citizens={m.id: m.tracking_number for m in merged},
        now=now,
        # The header's Overdue / At risk badge, as the lists mark the case.
        risk=list_risk(c, now),
        Status=Status,
        messages=case_messages_of(db(), c.id),
        # Raw mail carries the citizen's full headers: only those who triage download it.
        raw_mails=mail_of_case(db(), c.id) if can(current_user, Action.TRIAGE) else [],
        mask_sender=mask_email if view.masked else None,
        **supervision_panels(c),
    )


def _similar_shown(case: Case) -> tuple[list[tuple[str, float]], set[str] | None]:
    """The case's possible duplicates ([(tracking number, score)], best first) that the user
    may open, and the tracking numbers of those the timeline names that the user may open
    (None: all). A handler is not shown the numbers of other departments' cases."""
    similar = [(str(s[0]), float(s[1])) for s in (case.similar or []) if s]
    if sees_all_cases(current_user):
        return similar, None
    named = {n for n, _score in similar}
    for event in case.events:
        named.update(str(c[0]) for c in (event.detail or {}).get("cases") or [] if c)
    visible: set[str] = set()
    if named:
        visible = set(
            db().scalars(
                select(Case.tracking_number).where(Case.tracking_number.in_(named), *_scope())
            )
        )
    return [(n, score) for n, score in similar if n in visible], visible


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
    except (StaleDataError, DBAPIError) as e:
        # A stale version, or PostgreSQL's deadlock / serialization failure between two
        # writers of the same cases: nothing saved, the case shown again as it is now.
        if isinstance(e, DBAPIError) and not is_conflict(e):
            raise
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
        # Both cases locked in the order of their ids before either is changed: two
        # supervisors merging A into B and B into A at once otherwise locked them in
        # opposite orders and PostgreSQL rolled one back as a deadlock. The second waits,
        # then sees the first's merge (the rows read again) and is refused cleanly.
        db().execute(
            select(Case)
            .where(Case.id.in_(sorted({c.id, target.id})))
            .order_by(Case.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        c.merge_into(
            target,
            current_user,
            _now(),
            form.reason.data or "",
            deadlines=runtime().settings.deadlines(),
        )
        # The target's deadline may have come forward (an urgent case merged in): its risk
        # judged again now, as the merged case's is by `_act`.
        db().flush()
        refresh_findings(target.id)
        return _("Merged into %(n)s.", n=target.tracking_number)

    response = _act(number, Action.TRIAGE, change)
    if request.form.get("back") == "queue":
        return redirect(url_for("board.queue"))
    return response


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
            "contacted": {"yes": True, "no": False}.get(form.contacted.data or "")
            if reached
            else None,
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
        if c.status == Status.TRIAGE:
            return _(
                "Its department is inactive and none took its work over: the case is back "
                "in the dispatch queue."
            )
        if c.events[-1].action == "transferred":
            return _(
                "Its department is inactive: the case goes for rework to %(dept)s, which "
                "took its work over.",
                dept=department_name(c.department),
            )
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
