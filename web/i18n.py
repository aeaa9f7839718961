"""Language switch and the template helpers that turn domain values into local text."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from flask import Blueprint, Flask, redirect, request, session
from flask_babel import format_datetime, get_locale, gettext, to_user_timezone
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from triage import delivery_reasons, system_reasons
from triage.models import CaseEvent, Department, IllegalTransition

bp = Blueprint("i18n", __name__)

STATUS_LABELS = {
    "received": _l("Received"),
    "triage": _l("Awaiting dispatch"),
    "assigned": _l("Assigned"),
    "in_progress": _l("In progress"),
    "replied": _l("Replied"),
    "visited": _l("Return visit done"),
    "closed": _l("Closed"),
    "merged": _l("Merged"),
    # Not only spam: "not ours to handle, turn to …" is a rejection too.
    "rejected": _l("Not accepted"),
}
KIND_LABELS = {
    "complaint": _l("Complaint"),
    "suggestion": _l("Suggestion"),
    "inquiry": _l("Inquiry"),
    "praise": _l("Praise"),
}
CHANNEL_LABELS = {
    "web": _l("Web form"),
    "email": _l("Email"),
    "phone": _l("Phone"),
    "call_log": _l("Call log"),
    "letter": _l("Letter"),
    "visit": _l("Visit"),
    "api": _l("Open311 API"),
}
SATISFACTION_LABELS = {
    "satisfied": _l("Satisfied"),
    "basic": _l("Basically satisfied"),
    "unsatisfied": _l("Unsatisfied"),
}
ROLE_LABELS = {
    "admin": _l("Administrator"),
    "supervisor": _l("Supervisor"),
    "operator": _l("Operator"),
    "handler": _l("Department handler"),
    "observer": _l("External supervisor"),
}
ACTION_LABELS = {
    "received": _l("Received"),
    "suggested": _l("Department suggested"),
    "flagged_urgent": _l("Flagged as urgent safety hazard"),
    "queued": _l("Waiting for dispatch"),
    "assigned": _l("Dispatched to department"),
    "auto_assigned": _l("Dispatched automatically"),
    "transferred": _l("Transferred to another department"),
    "started": _l("Department started handling"),
    "replied": _l("Department replied"),
    "sent_back": _l("Sent back by department"),
    "visited": _l("Return visit recorded"),
    "reworked": _l("Sent back for rework"),
    "closed": _l("Closed"),
    "rejected": _l("Not accepted as a case"),
    "merged": _l("Merged into another case"),
    "merged_in": _l("Another case merged into this one"),
    "citizen_visited": _l("Return visit to the citizen of a merged case"),
    "similar_found": _l("Possible duplicates found"),
    # The outbox (triage/outbox.py): the event's reason names the recipients, which the
    # case page masks for external supervisors like any free text.
    "mail_queued": _l("Mail queued for sending"),
    "mail_sent": _l("Mail sent"),
    "mail_deferred": _l("Mail not sent yet, will retry"),
    "mail_failed": _l("Mail could not be sent"),
    # Text messages to citizens who gave only a phone (triage/sms.py); reason = the number.
    "sms_queued": _l("Text message queued for sending"),
    "sms_sent": _l("Text message sent"),
    "sms_deferred": _l("Text message not sent yet, will retry"),
    "sms_failed": _l("Text message could not be sent"),
    # A notice the citizen cannot get: no address, and a landline or no gateway.
    "notice_not_sent": _l("The citizen could not be told (no mail, no SMS): call them back"),
    # Email intake (triage/mail_intake.py): a threaded reply or a bounce; reason = sender.
    "message_added": _l("Message from the citizen added"),
    "made_from_quarantine": _l("Registered from a quarantined mail"),
    "released_from_spam": _l("Released from the suspected-spam list"),
    "not_acknowledged": _l("No acknowledgment sent (automatic or looping mail)"),
    "attachments_refused": _l("Attachments of the mail not kept (see the reason)"),
    # Return visits, spot checks and observations (web/supervision_checks.py, web/observations.py).
    "closed_without_visit": _l("Closed without a valid return visit"),
    "review_requested": _l("Sent to a supervisor's review"),
    "spot_check_drawn": _l("Drawn for a spot check"),
    "spot_check_passed": _l("Spot check passed"),
    "spot_check_failed": _l("Spot check failed: reopened for rework"),
    "observation_filed": _l("Observation filed by an external supervisor"),
    "observation_answered": _l("Observation answered"),
    # Open311 (web/open311/registration.py): the key, the caller's service and place.
    "api_filed": _l("Filed through the Open311 API"),
    # Call-centre imports (web/call_imports.py): reason = "<file> : <row>".
    "call_imported": _l("Registered from a call-centre import"),
    # Extensions, the head's sign-off and delay reports (web/supervision_extensions.py).
    "extension_requested": _l("Extension requested"),
    "extension_granted": _l("Deadline extended"),
    "extension_refused": _l("Extension refused"),
    "reply_drafted": _l("Reply drafted, waiting for the head's sign-off"),
    "reply_signed_off": _l("Department replied (signed off by the head)"),
    "reply_returned": _l("Draft reply returned by the head"),
    "delay_reported": _l("Department reported its delay"),
    # The supervision tick (triage/supervision.py).
    "reminded": _l("Department reminded of the deadline"),
    "escalated": _l("Escalated (督办) to the department head and the supervisors"),
    # The operators' desk (web/operator.py).
    "urged": _l("The citizen called again (催办)"),
    "reopened": _l("Reopened on the citizen's call: back to the department for rework"),
    "follows_up": _l("Opened on a call following up an earlier case"),
    "follow_up_opened": _l("The citizen called again: a new case follows this one up"),
    "callback_wanted": _l("The caller wants to be called back"),
    "anonymous_call": _l("Anonymous caller: no number given or number withheld"),
    # A reworked case of a department deactivated with no successor (triage/cases.py).
    "requeued": _l("Back in the dispatch queue: its department is inactive"),
}


# The participles that IllegalTransition messages use for the refused change.
REFUSED_ACTIONS = {
    "queued": _l("queued"),
    "dispatched": _l("dispatched"),
    "transferred": _l("transferred"),
    "started": _l("started"),
    "replied": _l("replied to"),
    "sent back": _l("sent back"),
    "visited": _l("given a return visit"),
    "reworked": _l("sent for rework"),
    "closed": _l("closed"),
    "rejected": _l("marked invalid"),
    "merged": _l("merged"),
    "reviewed": _l("sent to review"),
    "reopened": _l("reopened"),
    "urged": _l("urged (it is no longer open)"),
    "extended": _l("extended"),
    "signed off": _l("signed off"),
    "reported late": _l("reported late"),
    "requeued": _l("put back in the dispatch queue"),
}


def error_text(error: IllegalTransition) -> str:
    """The refusal in the user's language, with statuses and times localised."""
    params: dict[str, object] = {}
    for key, value in error.params.items():
        if key == "status":
            value = STATUS_LABELS.get(str(value), value)
        elif key == "action":
            value = REFUSED_ACTIONS.get(str(value), value)
        elif key == "role":
            value = ROLE_LABELS.get(str(value), value)
        elif isinstance(value, datetime):
            value = local_time(value)
        params[key] = value
    return gettext(error.template, **params) if params else gettext(error.template)


def _chinese() -> bool:
    return str(get_locale() or "zh") != "en"


def list_separator() -> str:
    """What separates the items of a list in running text: the enumeration comma 、 in
    Chinese, a comma and a space in English."""
    return "、" if _chinese() else ", "


def colon() -> str:
    """A colon before what follows it in running text: full-width ： in Chinese, ": " in
    English."""
    return "：" if _chinese() else ": "


def join_list(items: Iterable[object]) -> str:
    """`items` as one run of text in the user's language (`list_separator`)."""
    return list_separator().join(str(i) for i in items)


# Patterns of digits only, the same in every locale: formatted by strftime, since Babel parses
# the pattern again for each time (a list page shows a hundred, some 15% of its rendering).
_DIGIT_PATTERNS = {"yyyy-MM-dd HH:mm": "%Y-%m-%d %H:%M", "MM-dd HH:mm": "%m-%d %H:%M"}


def local_time(value: datetime | None, fmt: str = "yyyy-MM-dd HH:mm") -> str:
    """``value`` (UTC when naive) in the user's time zone, as the CLDR pattern ``fmt``."""
    if value is None:
        return ""
    digits = _DIGIT_PATTERNS.get(fmt)
    if digits is not None:
        return to_user_timezone(value).strftime(digits)
    return format_datetime(value, fmt)


def short_time(value: datetime | None, now: datetime | None = None) -> str:
    """A time where space is short (a kanban card): month, day and time in the current
    year, with the year as well in any other (a deadline of last December, or of next
    January, must not read as this year's)."""
    if value is None:
        return ""
    now = now or datetime.now(UTC)
    same_year = to_user_timezone(value).year == to_user_timezone(now).year
    return local_time(value, "MM-dd HH:mm" if same_year else "yyyy-MM-dd HH:mm")


def _same_site(target: str | None) -> str:
    """``target`` if it is a path on this site, else "/": never another site's address,
    however written (browsers read a backslash as a slash and drop tabs and line breaks, so
    ``/\\evil.example`` and ``/\t/evil.example`` lead away)."""
    if not target or "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _without_lang(target: str) -> str:
    """``target`` without its ``lang`` parameter: one would outrank the language just chosen
    on the page it leads back to."""
    parts = urlsplit(target)
    if "lang" not in parse_qs(parts.query, keep_blank_values=True):
        return target
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "lang"]
    )
    return parts._replace(query=query).geturl()


@bp.get("/lang/<code>")
def switch(code: str) -> Response:
    """Remembers the chosen language in the session and a year-long cookie."""
    from web import LOCALES

    target = _without_lang(
        _same_site(
            request.args.get("next")
            or (
                request.referrer
                and urlsplit(request.referrer)._replace(scheme="", netloc="").geturl()
            )
        )
    )
    response = redirect(target)
    if code in LOCALES:
        session["lang"] = code
        response.set_cookie("lang", code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response


QUEUE_REASONS = {
    "no_suggestion": _l("no department could be suggested"),
    "auto_route_off": _l("automatic routing is switched off"),
}


# The citizen as the actor of an event, by channel: reads on after the action's label
# ("Received from the citizen (web form)").
CITIZEN_ACTORS = {
    "web": _l("from the citizen (web form)"),
    "email": _l("from the citizen (email)"),
    "phone": _l("from the citizen (phone call)"),
    "call_log": _l("from the citizen (call centre log)"),
    "letter": _l("from the citizen (letter)"),
    "visit": _l("from the citizen (in person)"),
    "api": _l("from the citizen (through another system, Open311)"),
}


def actor_label(event: CaseEvent) -> str:
    """Who did it: a staff member's name as recorded, or the system, model or citizen."""
    name = event.actor_name or ""
    if event.actor_id is not None:
        return name
    if name.startswith("model "):
        return gettext("model %(version)s", version=name.removeprefix("model "))
    if name.startswith("citizen"):
        # Recorded as "citizen (<channel>)" at registration.
        channel = name.removeprefix("citizen").strip(" ()")
        label = CITIZEN_ACTORS.get(channel or str(event.detail.get("channel", "")))
        return str(label) if label is not None else gettext("from the citizen")
    if name == "system":
        return gettext("system")
    return name


def _distinct_percents(a: float, b: float) -> tuple[str, str]:
    """`a` and `b` (fractions) as percentages with the fewest decimals (up to 3) that show
    them different: 0.8652 and 0.87 read "86.5%" and "87.0%", not "87%" and "87%"."""
    shown = (f"{a:.0%}", f"{b:.0%}")
    for decimals in range(4):
        shown = (f"{a:.{decimals}%}", f"{b:.{decimals}%}")
        if a == b or shown[0] != shown[1]:
            break
    return shown


def queue_reason(detail: dict[str, object]) -> str:
    why = str(detail.get("why", ""))
    if why == "below_threshold" and float(detail.get("threshold") or 0) > 1:
        # Keyword rules, or a model that reached its target precision at no threshold.
        return gettext("the current routing never dispatches automatically")
    if why == "below_threshold":
        confidence, threshold = _distinct_percents(
            float(detail.get("confidence") or 0), float(detail.get("threshold") or 0)
        )
        return gettext(
            "confidence %(confidence)s is below the auto-route threshold %(threshold)s",
            confidence=confidence,
            threshold=threshold,
        )
    return str(QUEUE_REASONS.get(why, ""))


def rejection_label(code: str) -> str:
    """The public reason of a rejection in the user's language; "" for no or an unknown code
    (a code no longer in the config: the citizen still reads the supervisor's text)."""
    from web import runtime

    outcome = runtime().settings.rejection_outcomes().get(code or "")
    if outcome is None:
        return ""
    if str(get_locale() or "zh") == "en" and outcome.label_en:
        return outcome.label_en
    return outcome.label


def department_name(department: Department | None) -> str:
    """The department's name in the user's language (Chinese when no English name is set)."""
    if department is None:
        return "—"
    if str(get_locale() or "zh") == "en" and department.name_en:
        return department.name_en
    return department.name


# Reasons the system itself writes into the log when a case leaves its department or is
# replied (triage/models.py _withdraw_department_requests): stored in English, shown translated.
SYSTEM_REASONS = frozenset(
    {"The case was transferred.", "The case was replied.", "The case was sent back."}
)


# A domain after @ with an IDNA label (xn--): the outbox writes 张三@例子.中国 so on the wire.
_ACE_DOMAIN = re.compile(r"(?<=@)(?:[a-z0-9-]{1,63}\.){0,8}xn--[a-z0-9.-]{1,200}", re.IGNORECASE)


def unicode_addresses(text: str) -> str:
    """`text` with every address's IDNA domain (张三@xn--fsqu00a.xn--fiqs8s) in the Unicode
    form people read (张三@例子.中国), as the case page shows it; a label that does not
    decode stays as it is."""

    def decoded(m: re.Match[str]) -> str:
        domain = m.group(0)
        tail = len(domain) - len(domain.rstrip(".-"))  # a sentence's full stop after it
        try:
            return (
                domain[: len(domain) - tail].encode("ascii").decode("idna")
                + domain[len(domain) - tail :]
            )
        except UnicodeError:
            return domain

    return _ACE_DOMAIN.sub(decoded, text) if "xn--" in text.lower() else text


# The reasons stored as a neutral code (triage/system_reasons.py), per code; %(previous)s
# and %(department)s are the names of the event's detail's departments, in the reader's
# language at the time it is shown.
CODED_REASONS = {
    system_reasons.DEACTIVATED_HANDED_OVER: _l(
        "%(previous)s was deactivated: its case in hand goes to %(department)s, which took "
        "its work over (deadline unchanged)."
    ),
    system_reasons.REWORK_TO_SUCCESSOR: _l(
        "%(previous)s is inactive: the case sent for rework goes to %(department)s, which "
        "took its work over (deadline unchanged)."
    ),
    system_reasons.REWORK_REQUEUED: _l(
        "%(department)s is inactive and no department took its work over: the case sent "
        "for rework goes back to the dispatch queue."
    ),
    system_reasons.OVERDUE_ESCALATED: _l(
        "Past the handling time limit and its grace period: escalated."
    ),
    system_reasons.WEB_VISIT_UNSATISFIED: _l(
        "Web return visit (satisfaction link): the citizen is not satisfied."
    ),
    system_reasons.WEB_VISIT_UNSOLVED: _l(
        "Web return visit (satisfaction link): the problem is not solved."
    ),
    system_reasons.WEB_VISIT_UNSATISFIED_UNSOLVED: _l(
        "Web return visit (satisfaction link): the citizen is not satisfied and the problem "
        "is not solved."
    ),
    system_reasons.MARKED_URGENT_BY_OPERATOR: _l("marked urgent by the operator"),
}


# Why a mail or text message did not go, stored as a code with its facts
# (triage/delivery_reasons.py), in the reader's language when shown.
DELIVERY_REASONS = {
    delivery_reasons.NEEDS_SMTPUTF8: _l(
        "The mail server %(server)s does not offer SMTPUTF8, which the address %(addresses)s "
        "needs (not ASCII before the @): the citizen must be told another way."
    ),
    delivery_reasons.SENDER_STOPPED: _l(
        "The sender stopped during the last try (the mail may have gone)."
    ),
    delivery_reasons.SERVER_UNAVAILABLE: _l("Mail server %(server)s not reachable: %(error)s"),
    delivery_reasons.GATEWAY_UNAVAILABLE: _l("SMS gateway %(gateway)s not reachable: %(error)s"),
    delivery_reasons.UNKNOWN: _l("Unknown error."),
    delivery_reasons.BOUNCED: _l("The mail to %(recipient)s was not delivered."),
}


def delivery_reason(text: str) -> str:
    """A stored failure reason (an outbox row's last error, a case event's reason) in the
    user's language when the system wrote it as a code (`DELIVERY_REASONS`, with
    "recipients: " before it when its facts name them); a server's own words as they are."""
    found = delivery_reasons.parse(text or "")
    if found is None:
        return unicode_addresses(text or "")
    code, facts = found
    if code == delivery_reasons.BOUNCED:
        facts = {**facts, "recipient": facts.get("recipient") or gettext("(unknown address)")}
    said = str(DELIVERY_REASONS[code]) % delivery_reasons.Facts(facts)
    if code == delivery_reasons.BOUNCED:
        # The DSN status and the remote server's own words, as they came.
        said += f" ({facts['status']})" if facts.get("status") else ""
        said += f"\n{facts['diagnostic']}" if facts.get("diagnostic") else ""
    said = unicode_addresses(said)
    return f"{unicode_addresses(facts['to'])}: {said}" if facts.get("to") else said


def _named(code: object) -> str:
    """The name of the department `code` in the user's language (the code itself if there
    is no such department; "—" for none)."""
    if not code:
        return "—"
    from sqlalchemy import select

    from web import db

    dept = db().scalar(select(Department).where(Department.code == str(code)))
    return department_name(dept) if dept is not None else str(code)


def system_reason(text: str, detail: dict[str, Any] | None = None) -> str:
    """`text` in the user's language when the system wrote it (`SYSTEM_REASONS`, or a code
    of `CODED_REASONS` with the departments of the event's `detail` named); a person's text
    as it was written; addresses with their domains in Unicode (`unicode_addresses`)."""
    if text in CODED_REASONS:
        detail = detail or {}
        return str(CODED_REASONS[text]) % {
            "previous": _named(detail.get("previous")),
            "department": _named(detail.get("department")),
        }
    if text.startswith(delivery_reasons.PREFIX):
        return delivery_reason(text)
    return gettext(text) if text in SYSTEM_REASONS else unicode_addresses(text)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_filter(system_reason, "system_reason")
    app.add_template_filter(unicode_addresses, "unicode_addresses")
    app.add_template_filter(delivery_reason, "delivery_reason")
    app.add_template_filter(local_time, "local_time")
    app.add_template_filter(short_time, "short_time")
    app.add_template_filter(department_name, "dept_name")
    app.add_template_filter(actor_label, "actor_label")
    app.add_template_filter(queue_reason, "queue_reason")
    app.add_template_filter(rejection_label, "rejection_label")
    app.add_template_filter(join_list, "join_list")
    app.add_template_global(colon, "colon")
    app.add_template_global(list_separator, "list_separator")

    @app.context_processor
    def _labels() -> dict[str, object]:
        return {
            "STATUS_LABELS": STATUS_LABELS,
            "KIND_LABELS": KIND_LABELS,
            "CHANNEL_LABELS": CHANNEL_LABELS,
            "SATISFACTION_LABELS": SATISFACTION_LABELS,
            "ROLE_LABELS": ROLE_LABELS,
            "ACTION_LABELS": ACTION_LABELS,
            "current_locale": str(get_locale() or "zh"),
        }
