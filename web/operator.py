"""The operators' desk: logging a citizen's phone call, and a caller's history.

The desk (/board/calls/new) takes a call with the keyboard alone: the caller's number (their
earlier cases appear as it is typed, through /board/calls/history, or with the 'look up'
button without JavaScript), name, call time, kind, subject and summary, place, callback
wanted, urgent. The call is then one of:

- a new case (registered like any submission, at the call time);
- a repeat call about an open case of the caller (催办): an "urged" event on that case,
  counted in ``cases.urge_count``, no new case;
- a call about a closed case the caller says is not solved: the case is reopened for rework
  (`Case.reopen`, the summary as the reason), or a new case is opened linked to it.

Also the case page's caller-history panel (board/_caller_history.html): the caller's other
cases by caller key (triage/callers.py), as far as the user may see them.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response

from intake.normalise import PhoneError, normalise_phone
from intake.phone import operator_submission
from triage import call_keys, system_reasons
from triage.access import Action, can, sees_all_cases, sees_personal_data
from triage.callers import (
    LINK_KEYS,
    CallerHistory,
    caller_history,
    caller_keys,
    case_keys,
    is_callers_case,
)
from triage.case_people import people_by_case
from triage.cases import IntakePolicy, find_by_external_id, follow_inactive_department, register
from triage.models import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    Case,
    CaseEvent,
    IllegalTransition,
    Role,
    Status,
)
from triage.privacy import People
from triage.urgency import detect_hazard, escalate
from web import db, runtime
from web.auth import requires
from web.forms import PhoneCallForm
from web.i18n import STATUS_LABELS, department_name, error_text
from web.shown_case import shown_case

bp = Blueprint("operator", __name__, url_prefix="/board/calls")

# How many earlier cases the desk and the case page list (newest first); more are counted.
HISTORY_LIMIT = 5
# Lookups as the number is typed, per operator: a call takes a handful.
LOOKUPS_PER_WINDOW = 120
LOOKUP_WINDOW = timedelta(minutes=10)
# A call time later than now by more than this is a typing mistake.
FUTURE_SLACK = timedelta(minutes=5)
# The desk logs calls as they come; older ones come with the call centre's export (the
# import page). Past this, a call time is a typing mistake (a case received in 1900).
PAST_LIMIT_DAYS = 30


def _tz() -> ZoneInfo:
    return ZoneInfo(runtime().settings.app.timezone)


def _phone_number(phone: str) -> str | None:
    """The number as typed in its canonical form, or None while it is not (yet) one. Also
    reads spellings `normalise_phone` refuses but a caller key takes as the same caller
    (``0086 138-0013-8000``: the last group would be an extension; ``(+86)13800138000``), by
    dropping separators and brackets."""
    try:
        return normalise_phone(phone or "")
    except PhoneError:
        pass
    squeezed = re.sub(r"[\s\-().]", "", unicodedata.normalize("NFKC", phone or ""))
    try:
        return normalise_phone(squeezed)
    except PhoneError:
        return None


def _phone_keys(phone: str) -> list[str]:
    """The caller keys of a number as typed ([] while it is not yet a number)."""
    number = _phone_number(phone)
    area = runtime().settings.app.area_code
    return caller_keys(number, "", runtime().secret, area_code=area) if number else []


def _history(phone: str) -> CallerHistory:
    return caller_history(db(), _phone_keys(phone), limit=HISTORY_LIMIT, open_first=True)


def _lookup_refused(now: datetime) -> datetime | None:
    """Counts one look-up of a caller's history against the operator's limit; when refused,
    the time it is allowed again (else None). Every way of showing a history counts (the
    JSON endpoint, the page with ``?phone=``, the 'look up' button, a form shown again), so
    none of them lists callers past the limit."""
    from web import throttle

    limit = throttle.Limit(
        "desk:lookup",
        throttle.key_of("desk-lookup", str(current_user.id)),
        LOOKUPS_PER_WINDOW,
        LOOKUP_WINDOW,
    )
    attempt = throttle.begin(runtime().sessions, [limit], now)
    if attempt.refused is None:
        return None
    return attempt.retry_at or now + LOOKUP_WINDOW


def _shown_history(phone: str) -> CallerHistory | None:
    """The caller's history to show on the desk's page, counted against the look-up limit
    (None, with a warning, past it; None for no number)."""
    keys = _phone_keys(phone)
    if not keys:
        return None
    if _lookup_refused(datetime.now(UTC)) is not None:
        flash(_("Too many lookups. Please wait a moment."), "warning")
        return None
    return caller_history(db(), keys, limit=HISTORY_LIMIT, open_first=True)


@dataclass(frozen=True)
class Choice:
    """One answer to 'what is this call about?': a radio button of the desk."""

    value: str
    label: str


def _open_matter(case: Case) -> bool:
    """Whether the caller's `case` is still being handled: open, or merged into an open case."""
    if case.status == Status.MERGED:
        target = case.merge_target
        return target is not None and target.status in OPEN_STATUSES
    return case.status in OPEN_STATUSES


def _choices(case: Case) -> list[Choice]:
    number = case.tracking_number
    target = case.merge_target if case.status == Status.MERGED else None
    if target is not None and target.status in OPEN_STATUSES:
        # Merged into an open case about the same issue: a repeat call urges that one.
        return [
            Choice(
                f"urge:{target.tracking_number}",
                _(
                    "Repeat call about %(n)s, merged into %(m)s (催办 on %(m)s)",
                    n=number,
                    m=target.tracking_number,
                ),
            ),
            Choice(f"follow:{number}", _("New case following up %(n)s", n=number)),
        ]
    if case.status in OPEN_STATUSES:
        return [Choice(f"urge:{number}", _("Repeat call about %(n)s (催办)", n=number))]
    if case.status == Status.CLOSED:
        return [
            Choice(f"reopen:{number}", _("Not solved: reopen %(n)s for rework", n=number)),
            Choice(f"follow:{number}", _("New case following up %(n)s", n=number)),
        ]
    return [Choice(f"follow:{number}", _("New case following up %(n)s", n=number))]


def _case_json(case: Case) -> dict[str, Any]:
    return {
        "number": case.tracking_number,
        "status": case.status,
        "status_label": str(STATUS_LABELS.get(case.status, case.status)),
        "received": case.received_at.astimezone(_tz()).strftime("%Y-%m-%d"),
        "subject": case.subject,
        "open": case.status in OPEN_STATUSES,
        "urge_count": case.urge_count,
        "url": url_for("board.case", number=case.tracking_number),
        "choices": [{"value": c.value, "label": c.label} for c in _choices(case)],
    }


@bp.get("/history")
@requires(Action.LOG_CALL)
def history() -> Response | tuple[Response, int]:
    """The caller's latest cases as JSON, for the desk as the number is typed:
    ``{"valid": bool, "total": int, "cases": [{number, status, status_label, received
    (local date), subject, open, urge_count, url, choices: [{value, label}]}]}``. The
    number itself is not sent back. 429 with ``retry_at`` past the per-operator limit; only
    a whole number counts against it (not the digits typed so far)."""
    keys = _phone_keys(request.args.get("phone", "")[:40])
    if keys and (retry := _lookup_refused(datetime.now(UTC))) is not None:
        return jsonify(
            {"error": _("Too many lookups. Please wait a moment."), "retry_at": retry.isoformat()}
        ), 429
    found = caller_history(db(), keys, limit=HISTORY_LIMIT, open_first=True)
    response = jsonify(
        {
            "valid": bool(keys),
            "total": found.total,
            # total is WINDOW (100) when there are more: the desk shows "100+".
            "more": found.total_capped,
            "cases": [_case_json(c) for c in found.cases],
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# The call time the desk filled in (a hidden field beside it, ``%Y-%m-%dT%H:%M``, office
# time): posted back unchanged, the operator left the time alone and the call is now.
CALLED_AT_SHOWN = "called_at_shown"
_MINUTE = "%Y-%m-%dT%H:%M"


def _time_untouched(form: PhoneCallForm) -> bool:
    """Whether the call time posted is the one the desk filled in (or none): the page may
    have been shown hours before the call came."""
    typed = form.called_at.data
    shown = request.form.get(CALLED_AT_SHOWN, "") if request.method == "POST" else ""
    return typed is None or (bool(shown) and typed.strftime(_MINUTE) == shown.strip())


def _called_at(form: PhoneCallForm, now: datetime) -> datetime | None:
    """The call time as typed (office time zone), or now when none was typed or the one the
    desk filled in came back unchanged; None (with the field's error) if it lies in the
    future or more than `PAST_LIMIT_DAYS` days back."""
    typed = form.called_at.data
    if typed is None or _time_untouched(form):
        return now
    earliest = now - timedelta(days=PAST_LIMIT_DAYS)
    # Compared in local time first: year 1 in UTC would not exist (OverflowError).
    if typed < earliest.astimezone(_tz()).replace(tzinfo=None):
        form.called_at.errors = [_("The call time is more than %(n)d days ago.", n=PAST_LIMIT_DAYS)]
        return None
    at = typed.replace(tzinfo=_tz()).astimezone(UTC)
    if at > now + FUTURE_SLACK:
        form.called_at.errors = [_("The call time is in the future.")]
        return None
    return at


def _render(form: PhoneCallForm, found: CallerHistory | None, status: int = 200) -> tuple[str, int]:
    if form.token.data in (None, ""):
        form.token.data = secrets.token_urlsafe(16)
    if _time_untouched(form) and not form.called_at.errors:
        # Shown again (or for the first time): the time the desk fills in is now's.
        form.called_at.data = datetime.now(_tz()).replace(second=0, microsecond=0, tzinfo=None)
        shown = form.called_at.data.strftime(_MINUTE)
    else:
        shown = request.form.get(CALLED_AT_SHOWN, "")[:20]
    return render_template(
        "board/call.html",
        form=form,
        found=found,
        called_at_shown=shown,
        choices={c.tracking_number: _choices(c) for c in (found.cases if found else [])},
        # With an open case listed nothing is chosen: Enter must not open a new case for a
        # repeat call (the server asks when no answer is sent).
        chosen=form.about.data
        or ("" if found and any(_open_matter(c) for c in found.cases) else "new"),
    ), status


class _Flagged:
    """The hazard detector's answer with the operator's 'urgent' added."""

    def __init__(self, found: Any, reason: str) -> None:
        self.urgent = True
        self.reasons = [*found.reasons, reason] if not found.urgent else list(found.reasons)


def _policy(urgent: bool) -> IntakePolicy:
    policy = runtime().intake_policy()
    if not urgent:
        return policy
    # A code, not the operator's words of the moment: read in each reader's language.
    detect, reason = policy.detect_hazard, system_reasons.MARKED_URGENT_BY_OPERATOR
    return replace(policy, detect_hazard=lambda s, b: _Flagged(detect(s, b), reason))


@bp.route("/new", methods=["GET", "POST"])
@requires(Action.LOG_CALL)
def new_call() -> Response | str | tuple[str, int]:
    form = PhoneCallForm()
    if request.method == "GET":
        form.called_at.data = None  # filled in with now by _render
        form.phone.data = request.args.get("phone", "")[:40]
        form.phone.errors = []
        return _render(form, _shown_history(form.phone.data))
    if form.phone.data and (number := _phone_number(form.phone.data)) is not None:
        form.phone.data = number  # a spelling the caller key reads but the validator would not
    if request.form.get("lookup"):
        # The 'look up' button (no JavaScript): the same form again, with the history.
        form.validate_on_submit()
        for name in ("subject", "body", "called_at"):
            getattr(form, name).errors = []
        return _render(form, _shown_history(form.phone.data or ""))
    if not form.validate_on_submit() or not _caller_given(form):
        return _render(form, _shown_history(form.phone.data or ""), 400)
    now = datetime.now(UTC)
    called_at = _called_at(form, now)
    if called_at is None:
        return _render(form, _shown_history(form.phone.data or ""), 400)
    call_id = (form.call_id.data or "").strip()
    token = (form.token.data or "").strip() or secrets.token_urlsafe(16)
    s = db()
    if call_id and (earlier := find_by_external_id(s, "phone", call_id)) is not None:
        flash(_("This call was already logged as %(n)s.", n=earlier.tracking_number), "info")
        return redirect(url_for("board.case", number=earlier.tracking_number))
    about = (form.about.data or "").strip()
    if form.anonymous.data:
        # No number: no earlier cases to match, always a new case.
        if about not in ("", "new"):
            form.about.errors = [_("That case is not one of this caller's.")]
            return _render(form, None, 400)
        return _new_case(form, called_at, call_id, token, now)
    found = _history(form.phone.data or "")
    if not about and any(_open_matter(c) for c in found.cases):
        # The caller has open cases and the operator did not say whether this call is
        # about one of them (the form was sent before they showed): ask.
        flash(
            _("This caller has open cases: say whether the call is about one of them."),
            "warning",
        )
        return _render(form, found)
    kind, _sep, number = about.partition(":")
    if about not in ("", "new") and kind not in ("urge", "reopen", "follow"):
        form.about.errors = [_("That case is not one of this caller's.")]
        return _render(form, found, 400)
    if kind in ("urge", "reopen", "follow"):
        target = _callers_case(number, form.phone.data or "")
        if target is None:
            form.about.errors = [_("That case is not one of this caller's.")]
            return _render(form, found, 400)
        try:
            if kind == "urge":
                return _urge(target, form, called_at, token, now)
            if kind == "reopen":
                return _reopen(target, form, called_at, token, now)
        except (IllegalTransition, StaleDataError) as e:
            s.rollback()
            if (done := _applied_by_twin(number, form, token)) is not None:
                return done
            if isinstance(e, IllegalTransition):
                flash(error_text(e), "error")
            else:
                flash(
                    _("Someone else changed this case at the same time. Please look again."),
                    "error",
                )
            return _render(form, _history(form.phone.data or ""), 409)
        return _new_case(form, called_at, call_id, token, now, follows=target)
    return _new_case(form, called_at, call_id, token, now)


def _caller_given(form: PhoneCallForm) -> bool:
    """Whether the form says who called: a number, or 'anonymous caller' ticked (and then no
    number, and no call-back, which could not be made). False with the field's error."""
    phone = (form.phone.data or "").strip()
    if form.anonymous.data:
        if phone:
            form.anonymous.errors = [
                _("A number is given: untick 'anonymous caller', or clear the number.")
            ]
            return False
        if form.callback.data:
            form.callback.errors = [_("An anonymous caller cannot be called back.")]
            return False
        return True
    if not phone:
        form.phone.errors = [
            _("Type the caller's number, or tick 'anonymous caller' if they give none.")
        ]
        return False
    return True


def _applied_by_twin(number: str, form: PhoneCallForm, token: str) -> Response | None:
    """After a conflict: when the same form, sent twice at once (a double click), was applied
    by the other request, the way to the case as if this one had done it; else None."""
    case = _callers_case(number, form.phone.data or "")
    if case is None or not _done_with_token(case, token):
        return None
    flash(_("This call was already logged as %(n)s.", n=case.tracking_number), "info")
    return redirect(url_for("board.case", number=case.tracking_number))


def _callers_case(number: str, phone: str) -> Case | None:
    """The case `number` if it is one of the caller's (by caller key, or a key linked to
    the number's as the desk's history links them), else None."""
    keys = _phone_keys(phone)
    case = db().scalar(select(Case).where(Case.tracking_number == number.strip()))
    if case is None or not keys:
        return None
    stored = case_keys(case, runtime().secret, area_code=runtime().settings.app.area_code)
    if set(keys) & set(stored) or is_callers_case(db(), keys, case):
        return case
    return case if _merged_from_callers(case, keys) else None


def _merged_from_callers(case: Case, keys: list[str], depth: int = 5) -> bool:
    """Whether one of the caller's cases (by `keys`) was merged into `case`, directly or
    through a chain of merges of at most `depth` steps."""
    s = db()
    level = [case.id]
    for _step in range(depth):
        merged = s.scalars(select(Case).where(Case.merged_into_id.in_(level))).all()
        if not merged:
            return False
        if any(is_callers_case(s, keys, m) for m in merged):
            return True
        level = [m.id for m in merged]
    return False


def _done_with_token(case: Case, token: str) -> bool:
    """Whether this form (its token) was already applied to `case`: a form sent twice."""
    return any(e.detail.get("token") == token for e in case.events if e.detail)


def _call_detail(form: PhoneCallForm, called_at: datetime, token: str) -> dict[str, Any]:
    detail: dict[str, Any] = {"token": token, "called_at": called_at.isoformat()}
    if form.call_id.data:
        detail["call_id"] = form.call_id.data.strip()
    if form.callback.data:
        detail["callback"] = True
    return detail


def _later_call_detail(
    case: Case, form: PhoneCallForm, called_at: datetime, token: str
) -> dict[str, Any]:
    """`_call_detail` of a repeat call or reopen, with the name the caller gave when it is
    not the case's (``caller_name``: masking knows it, `Case.caller_names`)."""
    detail = _call_detail(form, called_at, token)
    name = (form.name.data or "").strip()[:100]
    if name and name != case.contact_name:
        detail["caller_name"] = name
    return detail


def _note_call_id(case: Case, event: CaseEvent, form: PhoneCallForm) -> None:
    """The call id of a repeat call or reopen, kept on its event, is one the import must
    know too: the next day's export holds the call (triage/call_keys.py)."""
    if form.call_id.data and form.call_id.data.strip():
        call_keys.note(db(), case, event, form.call_id.data.strip())


def _flag_urgent(case: Case, form: PhoneCallForm, now: datetime) -> None:
    """A repeat call or reopen marked urgent, or whose note reports a hazard (the rules of
    triage/urgency.py, as for a new case): the case is urgent, with the urgent deadlines
    counted from the call (`escalate`)."""
    reasons: list[str] = []
    if form.urgent.data:
        reasons.append(system_reasons.MARKED_URGENT_BY_OPERATOR)
    terms = tuple(runtime().settings.classifier.hazard_terms)
    hazard = detect_hazard(form.subject.data or "", form.body.data or "", terms)
    reasons += list(hazard.reasons)
    if reasons:
        escalate(case, current_user, now, reasons, runtime().settings.deadlines())


def _urge(
    case: Case, form: PhoneCallForm, called_at: datetime, token: str, now: datetime
) -> Response:
    number = case.tracking_number
    if not _done_with_token(case, token):
        note = "\n".join(p for p in (form.subject.data, form.body.data) if p)
        ev = case.urge(current_user, now, note, **_later_call_detail(case, form, called_at, token))
        _note_call_id(case, ev, form)
        _flag_urgent(case, form, now)
        _refresh(case)
    flash(
        _(
            "Repeat call added to %(n)s (催办 %(k)d in all); no new case.",
            n=number,
            k=case.urge_count,
        ),
        "info",
    )
    return redirect(url_for("board.case", number=number))


def _reopen(
    case: Case, form: PhoneCallForm, called_at: datetime, token: str, now: datetime
) -> Response:
    number = case.tracking_number
    if not _done_with_token(case, token):
        deadlines = runtime().settings.deadlines()
        due = deadlines.rework_due(
            now,
            case.urgent or bool(form.urgent.data),
            kind=case.kind,
            department=case.department.code if case.department else None,
        )
        reason = "\n".join(p for p in (form.subject.data, form.body.data) if p)
        closed_in = case.department_id
        detail = _later_call_detail(case, form, called_at, token)
        ev = case.reopen(current_user, now, reason, due, **detail)
        _note_call_id(case, ev, form)
        # Its department deactivated since the close: on to its successor, or the queue.
        follow_inactive_department(case, current_user, now)
        _flag_urgent(case, form, now)
        _refresh(case)
        flash(_reopened_message(case, closed_in), "info")
    else:
        flash(_reopened_message(case, case.department_id), "info")
    return redirect(url_for("board.case", number=number))


def _reopened_message(case: Case, closed_in: int | None) -> str:
    """Where the reopened case went: its department (`closed_in`, the id it was closed
    in); the department that took the work of its deactivated one over; or, with none, the
    dispatch queue."""
    number = case.tracking_number
    if case.status == Status.TRIAGE:
        return _(
            "%(n)s is reopened; its department is inactive and none took its work over: the "
            "case is back in the dispatch queue.",
            n=number,
        )
    if case.department_id != closed_in:
        return _(
            "%(n)s is reopened; its department is inactive: the case goes for rework to "
            "%(dept)s, which took its work over.",
            n=number,
            dept=department_name(case.department),
        )
    return _("%(n)s is reopened for rework by its department.", n=number)


def _refresh(case: Case) -> None:
    from web.supervision_findings import refresh_findings

    db().flush()
    refresh_findings(case.id)


def _new_case(
    form: PhoneCallForm,
    called_at: datetime,
    call_id: str,
    token: str,
    now: datetime,
    follows: Case | None = None,
) -> Response:
    submission = operator_submission(
        call_id=call_id,
        form_token=token,
        phone=form.phone.data or "",
        name=form.name.data or "",
        called_at=called_at,
        kind=form.kind.data,
        subject=form.subject.data or "",
        body=form.body.data or "",
        place=form.place.data or "",
    )
    s = db()
    try:
        reg = register(s, submission, _policy(bool(form.urgent.data)), now)
    except IntegrityError:
        # The same form sent twice at once (a double click): the other request registered it.
        s.rollback()
        twin = find_by_external_id(s, submission.channel, submission.external_id)
        if twin is None:
            raise
        flash(_("This call was already logged as %(n)s.", n=twin.tracking_number), "info")
        return redirect(url_for("board.case", number=twin.tracking_number))
    case = reg.case
    if not reg.created:
        flash(_("This call was already logged as %(n)s.", n=case.tracking_number), "info")
        return redirect(url_for("board.case", number=case.tracking_number))
    if form.anonymous.data:
        case.record("anonymous_call", current_user, now)
    elif form.callback.data:
        case.record("callback_wanted", current_user, now)
    if follows is not None:
        case.record("follows_up", current_user, now, source=follows.tracking_number)
        follows.record("follow_up_opened", current_user, now, into=case.tracking_number)
    flash(
        _(
            "Call logged as %(n)s. Tell the caller the number and the query code %(c)s.",
            n=case.tracking_number,
            c=reg.query_code,
        ),
        "info",
    )
    return redirect(url_for("board.case", number=case.tracking_number))


# -- the case page's caller history --------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """One other case of the caller as the case page lists it."""

    number: str
    status: str
    received_at: datetime
    subject: str
    urge_count: int


def _row(case: Case, masked: bool, people: People | None = None) -> HistoryRow:
    """`people`: the citizens its texts may carry but its contact (`triage.case_people`)."""
    subject = case.subject
    if masked:
        own = People.of([case.contact_name], [case.contact_phone], [case.contact_email])
        subject = (own | (people or People())).mask(subject)
    return HistoryRow(case.tracking_number, case.status, case.received_at, subject, case.urge_count)


@bp.app_context_processor
def _caller_history_panel() -> dict[str, Any]:
    """The case page's caller history (board.case only): the caller's other cases this user
    may see (a handler: their department's; the others are only counted), masked for
    external supervisors, and which contact of the caller the case is."""
    if request.endpoint != "board.case" or not current_user.is_authenticated:
        return {}
    case = shown_case()
    if case is None:
        return {}
    keys = case_keys(case, runtime().secret, area_code=runtime().settings.app.area_code)
    if not keys:
        return {}
    department = None
    if not sees_all_cases(current_user):
        # Only their department's cases are listed (-1: none, for anyone else); the rest
        # are counted.
        own = current_user.department_id if current_user.role == Role.HANDLER else None
        department = own if own is not None else -1
    found = caller_history(db(), keys, exclude=case, department_id=department, limit=HISTORY_LIMIT)
    masked = not sees_personal_data(current_user)
    # Names given on later calls and the citizens of merged and linked cases are masked too
    # (a few queries for the listed cases).
    later = people_by_case(db(), [c.id for c in found.cases]) if masked and found.cases else {}
    return {
        "caller_history": found,
        "caller_history_rows": [_row(c, masked, later.get(c.id)) for c in found.cases],
        "caller_history_link_keys": LINK_KEYS,
        "may_log_call": can(current_user, Action.LOG_CALL),
        "FINAL_STATUSES": FINAL_STATUSES,
    }
