"""Language switch and the template helpers that turn domain values into local text."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from flask import Blueprint, Flask, redirect, request, session
from flask_babel import format_datetime, get_locale
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

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
    "rejected": _l("Invalid"),
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
    "rejected": _l("Marked invalid"),
    "merged": _l("Merged into another case"),
    "merged_in": _l("Another case merged into this one"),
    "similar_found": _l("Possible duplicates found"),
}


def local_time(value: datetime | None, fmt: str = "yyyy-MM-dd HH:mm") -> str:
    if value is None:
        return ""
    return format_datetime(value, fmt)


def _same_site(target: str | None) -> str:
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@bp.get("/lang/<code>")
def switch(code: str) -> Response:
    """Remembers the chosen language in the session and a year-long cookie."""
    from web import LOCALES

    target = _same_site(
        request.args.get("next")
        or (request.referrer and urlsplit(request.referrer)._replace(scheme="", netloc="").geturl())
    )
    response = redirect(target)
    if code in LOCALES:
        session["lang"] = code
        response.set_cookie("lang", code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_filter(local_time, "local_time")

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
