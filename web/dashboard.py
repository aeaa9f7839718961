"""The board's dashboard (/board/dashboard): today's intake, open, at-risk and overdue cases,
and a statistical month as the monthly report counts it, with its charts: the current month
so far (marked as partial, "so far, to <date>"), or an earlier one chosen with ``?month=YYYY-MM``
(back to the month of the first case received).

What each role sees:

- supervisor, admin: the whole office; every department's three rates and on-time rate;
- handler (and a department's head): their own department only;
- observer (external supervisor): the whole office, aggregate figures only (no case, no
  hot issue's example text);
- operator: the intake: today's cases by channel and the 12-month volume.

The month's figures are ``triage.report.figures.monthly_figures(session, month, settings,
until=...)``, the same function as the report email, read from the month's stored snapshot
(triage/report/snapshots.py, refreshed by the supervision tick; at 100,000 cases computing
them costs more than a page should), so a page reads one row whichever process serves it;
an earlier month's is the whole month's snapshot that the public performance page reads
(kept by the tick for the last 12 months, else computed once by the first view, under the
lease), so it equals the report's figures of that month;
today's intake is a grouped query over today's range of ``received_at``; the open, at-risk
and overdue cases are read from the maintained tallies (triage/tallies.py), whatever the
number of cases.
Charts are PNGs from triage/report/charts.py served by ``/board/dashboard/charts/<name>.png``
(private, cached ``CHART_TTL`` seconds, with an ETag), scoped like the page.

Functions: ``month_figures(session, settings, now, month=None) -> dict | None`` (the stored
figures of `month`, by default the current month so far, with ``computed_at`` and
``complete``; None while being computed); ``months_shown(session, settings, now) -> list[str]``
(the months the picker offers, newest first); ``chosen_month(value, months) -> (month,
error)``; ``month_span(settings, month, computed_at) -> dict`` (the dates the page names);
``today_counts(session, tz, now, department_id=None) -> dict`` with ``received``, ``open``,
``at_risk``, ``overdue`` (``overdue_capped``), ``by_channel``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, make_response, render_template, request
from flask_babel import format_date, get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from triage import tallies
from triage.case_list import AT_RISK_CLAUSE, COUNT_CAP, count_cases, overdue_clause, unindexed
from triage.models import OPEN_STATUSES, Case, Department, Role
from triage.report import charts, snapshots
from triage.report.email import categories, volume_trend
from triage.report.figures import ReportPolicy, month_of, month_window, parse_month, shift_month
from triage.tallies import CaseTally
from web import db, runtime
from web.i18n import KIND_LABELS

bp = Blueprint("dashboard", __name__, url_prefix="/board")

CHART_TTL = 60
PAST_MONTHS_TTL = 3600
CHART_NAMES = ("volume", "rates", "categories")
# The picker's oldest month at most this far back: a case dated decades ago by a bad import
# must not make the page list hundreds of months.
MAX_MONTHS = 120


class _TTLCache:
    """A small in-process cache: key → (expiry on the monotonic clock, value)."""

    def __init__(self, size: int = 64) -> None:
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._size = size

    def get(self, key: Any, ttl: float, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = compute()
        with self._lock:
            if len(self._items) >= self._size:
                for k in [k for k, (exp, _v) in self._items.items() if exp <= now] or list(
                    self._items
                )[: self._size // 2]:
                    self._items.pop(k, None)
            self._items[key] = (now + ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _TTLCache()


def clear_cache() -> None:
    """Forgets cached figures and charts (tests; a config reload)."""
    _cache.clear()


def _now() -> datetime:
    return datetime.now(UTC)


def month_figures(
    session: Session, settings: Any, now: datetime, month: str | None = None
) -> dict[str, Any] | None:
    """The figures of `month` (default: the current statistical month so far), from a
    stored snapshot (triage/report/snapshots.py) with ``computed_at`` and ``complete`` (the
    month had ended when computed) added. None while another process computes a missing one.

    The current month: its ``full`` snapshot, refreshed by the supervision tick every few
    minutes (computed here, once across processes, when missing or left stale). An earlier
    month: a whole-month snapshot, the one the public page reads (``public``: the tick keeps
    the last 12 months) or a ``full`` one (`minsheng report monthly`), else computed once
    here; one made while the month was still running, or marked since because cases of the
    month were registered late (`snapshots.mark_late`), is not used; of two complete ones,
    the one computed last (the report's after a late import). Either is
    `monthly_figures` of the whole month, as the report has it; ``public`` lacks the details
    the page does not show for an earlier month (hot issues)."""
    policy = ReportPolicy.from_settings(settings)
    current = month_of(now, policy)
    month = month or current
    if month == current:
        found = snapshots.figures_for(session, snapshots.FULL, [month], policy, now)
    else:
        found = snapshots.figures_for(
            session, snapshots.PUBLIC, [month], policy, now, stale_age=timedelta(0)
        )
    snapshot = found[month]
    if snapshot is None:
        return None
    return {
        **snapshot.figures,
        "computed_at": snapshot.computed_at,
        "complete": snapshot.complete,
    }


def first_month(session: Session, settings: Any, now: datetime) -> str:
    """The statistical month of the first case received (the current one without cases), at
    most `MAX_MONTHS` - 1 before the current one. One indexed MIN, counted once an hour per
    worker."""
    policy = ReportPolicy.from_settings(settings)
    current = month_of(now, policy)
    earliest = _cache.get(
        ("first-received", str(settings.database.url)),
        PAST_MONTHS_TTL,
        lambda: session.scalar(select(func.min(Case.received_at))),
    )
    if earliest is None:
        return current
    if earliest.tzinfo is None:
        earliest = earliest.replace(tzinfo=UTC)
    oldest = shift_month(current, -(MAX_MONTHS - 1))
    return min(current, max(oldest, month_of(earliest, policy)))


def months_shown(session: Session, settings: Any, now: datetime) -> list[str]:
    """The months the page offers, newest (the current one) first, back to `first_month`."""
    current = month_of(now, ReportPolicy.from_settings(settings))
    first = first_month(session, settings, now)
    months = [current]
    while months[-1] > first:
        months.append(shift_month(months[-1], -1))
    return months


def chosen_month(value: str | None, months: list[str]) -> tuple[str, str | None]:
    """The month asked for by ``?month=`` if it is one of `months` (newest first), else the
    current one (``months[0]``) with a message saying why; (month, None) when all is well
    and for no value at all."""
    if value is None or not value.strip():
        return months[0], None
    text = value.strip()
    try:
        parse_month(text)
    except ValueError:
        shown = text if len(text) <= 20 else text[:20] + "…"
        return months[0], _(
            "“%(value)s” is not a month: use YYYY-MM, for example %(example)s. "
            "Showing this month instead.",
            value=shown,
            example=months[-1],
        )
    if text not in months:
        return months[0], _(
            "There are no figures for %(month)s: choose a month from %(first)s to %(last)s. "
            "Showing this month instead.",
            month=text,
            first=months[-1],
            last=months[0],
        )
    return text, None


def _long_date(day: date) -> str:
    return format_date(day, "long")


def month_span(settings: Any, month: str, computed_at: datetime | None) -> dict[str, Any]:
    """What the page says of the month's window: its first and last local day (``start``,
    ``end``, formatted), and when the figures stop short of its end (``partial``): the local
    day they run to (``to``), which day of the month that is (``day``) of how many
    (``days``)."""
    policy = ReportPolicy.from_settings(settings)
    tz = policy.timezone
    start, end = month_window(month, policy)
    first = start.astimezone(tz).date()
    after = end.astimezone(tz).date()
    span: dict[str, Any] = {
        "start": _long_date(first),
        "end": _long_date(after - timedelta(days=1)),
        "days": (after - first).days,
        "partial": computed_at is not None and computed_at < end,
    }
    if span["partial"] and computed_at is not None:
        to = max(first, computed_at.astimezone(tz).date())
        span.update(to=_long_date(to), day=(to - first).days + 1)
    return span


def today_counts(
    session: Session, tz: Any, now: datetime, department_id: int | None = None
) -> dict[str, Any]:
    """Today's intake (since local midnight), by channel, and the open and at-risk cases now
    (the supervision tick's ``risk``), of one department or of the office; the overdue ones
    as the case list's overdue filter has them (`overdue_clause`: by the clock, or found so
    by the tick), up to `COUNT_CAP` (``overdue_capped``: more), so that the tile says what
    the list says: by the tick's mark alone, cases imported or come due since the last tick
    were in the list but not in the tile."""
    midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)

    def scoped(query: Any) -> Any:
        if department_id is not None:
            query = query.where(Case.department_id == department_id)
        return query

    # Grouped by an expression, not the column: SQLite otherwise walks the whole channel
    # index to group (110 ms at 30,000 cases) instead of today's range of received_at.
    channel = Case.channel.concat("").label("channel")
    by_channel = dict(
        session.execute(
            scoped(
                select(channel, func.count())
                .where(Case.received_at >= midnight.astimezone(UTC))
                .group_by(channel)
            )
        ).all()
    )
    # Open, at risk, overdue: from the maintained tallies (triage/tallies.py), not a count of
    # every open case (372 ms at 1,000,000 on PostgreSQL).
    where = [CaseTally.status.in_([str(s) for s in OPEN_STATUSES])]
    if department_id is not None:
        where.append(CaseTally.department_id == department_id)
    risks: dict[str, int] = {}
    for risk, n in tallies.totals(session, where, ["risk"]):
        risks[str(risk or "")] = risks.get(str(risk or ""), 0) + int(n)
    open_n = sum(risks.values())
    # At risk: the case list's "at risk" filter's clause, counted from the tallies, so that
    # the tile and the list it links to say the same number.
    in_department = [] if department_id is None else [Case.department_id == department_id]
    at_risk = tallies.count(session, [AT_RISK_CLAUSE, *in_department])
    # Read from the overdue filter's partial indexes (migration 0027), as the list reads
    # them: bounded by the overdue cases, not by every open one.
    overdue = [overdue_clause(now)]
    if department_id is not None:
        overdue.append(unindexed(Case.department_id) == department_id)
    overdue_n, overdue_capped = count_cases(session, overdue, COUNT_CAP)
    return {
        "received": sum(int(n) for n in by_channel.values()),
        "by_channel": {str(k): int(v) for k, v in sorted(by_channel.items())},
        "open": int(open_n or 0),
        "at_risk": int(at_risk or 0),
        "overdue": overdue_n,
        "overdue_capped": overdue_capped,
    }


def _scope() -> tuple[str, int | None]:
    """("office" | "department" | "intake", the department's id for handlers)."""
    role = current_user.role
    if role in (Role.ADMIN, Role.SUPERVISOR, Role.OBSERVER):
        return "office", None
    if role == Role.HANDLER:
        if current_user.department_id is None:
            abort(403)
        return "department", int(current_user.department_id)
    if role == Role.OPERATOR:
        return "intake", None
    abort(403)


def _department_rows(figures: dict[str, Any], department_id: int | None) -> list[dict[str, Any]]:
    rows = list(figures.get("departments") or [])
    if department_id is None:
        return rows
    code = db().scalar(select(Department.code).where(Department.id == department_id))
    return [r for r in rows if r.get("code") == code]


def _department_totals(
    figures: dict[str, Any], rows: list[dict[str, Any]], department_id: int | None
) -> dict[str, Any]:
    """The month's tiles of one department: its own received cases (``by_department``) and
    valid return visits (its ranking row), not the office's."""
    code = db().scalar(select(Department.code).where(Department.id == department_id))
    return {
        **figures,
        "received": int((figures.get("by_department") or {}).get(code, 0)),
        "valid_visits": int(rows[0].get("valid_visits") or 0) if rows else 0,
    }


def _names() -> dict[str, str]:
    """Department code → name in the user's language."""
    english = str(get_locale() or "zh") == "en"
    return {
        code: (name_en if english and name_en else name)
        for code, name, name_en in db().execute(
            select(Department.code, Department.name, Department.name_en)
        )
    }


@bp.get("/dashboard")
@login_required
def dashboard() -> Response:
    scope, department_id = _scope()
    settings = runtime().settings
    now = _now()
    tz = ReportPolicy.from_settings(settings).timezone
    today = today_counts(db(), tz, now, department_id if scope == "department" else None)
    figures: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    months: list[str] = []
    month = month_error = None
    if scope != "intake":
        months = months_shown(db(), settings, now)
        month, month_error = chosen_month(request.args.get("month"), months)
        figures = month_figures(db(), settings, now, month)
        rows = _department_rows(figures, department_id) if figures else []
        if figures and scope == "department":
            figures = _department_totals(figures, rows, department_id)
    names = _names()
    department = db().get(Department, department_id) if department_id else None
    charts_shown = {
        "office": CHART_NAMES,
        "department": ("volume", "rates"),
        "intake": ("volume",),
    }[scope]
    current = bool(months) and month == months[0]
    html = render_template(
        "board/dashboard.html",
        scope=scope,
        department=department,
        today=today,
        figures=figures,
        rows=rows,
        names=names,
        months=months,
        month=month,
        current=current,
        month_error=month_error,
        span=month_span(settings, month, (figures or {}).get("computed_at")) if month else None,
        charts_shown=charts_shown,
        chart_titles=_chart_titles(month if month and not current else None),
        chart_version=_chart_version(figures, today),
        # The hot issues of now; an earlier month's are in its report email.
        hot=[
            {"label": h.get("label"), "count": h.get("count")}
            for h in ((figures or {}).get("hot_issues") or [])
        ]
        if scope == "office" and current
        else [],
    )
    # A month asked for that the page cannot show: the current one is shown, with why, but
    # the answer says the request was wrong (a link or a script with a bad ?month=).
    return make_response(html, 400 if month_error else 200)


def _chart_titles(month: str | None) -> dict[str, str]:
    """Each chart's title (and its image's alt text): of the current month so far, or of
    an earlier `month`."""
    return {
        "volume": _("Cases received, last 12 months"),
        "rates": _("The three rates by department, this month so far")
        if month is None
        else _("The three rates by department, %(month)s", month=month),
        "categories": _("Cases by kind, this month so far")
        if month is None
        else _("Cases by kind, %(month)s", month=month),
    }


def _chart_version(figures: dict[str, Any] | None, today: dict[str, Any]) -> str:
    """Changes when the charts would: in the image URLs, so a browser refetches then."""
    basis = repr(((figures or {}).get("received"), (figures or {}).get("departments")))
    return hashlib.sha256(basis.encode()).hexdigest()[:10]


def volume_months(
    session: Session, settings: Any, now: datetime, department_id: int | None
) -> list[tuple[str, int]]:
    """The volume chart's figures: cases received in each of the last twelve statistical
    months, this one up to ``now``, oldest first (`triage.report.email.volume_trend`).

    The eleven months before this one change only by a late import (a call log of last
    month): counted once an hour per worker (`PAST_MONTHS_TTL`; they are most of the
    chart's cost: 930,000 of 1,000,000 cases, 53-109 ms on PostgreSQL), this month at
    each render."""
    policy = ReportPolicy.from_settings(settings)
    month = month_of(now, policy)
    earlier = _cache.get(
        ("volume-earlier", str(settings.database.url), month, department_id),
        PAST_MONTHS_TTL,
        lambda: volume_trend(
            session, shift_month(month, -1), policy, 11, department_id=department_id
        ),
    )
    return [
        *earlier,
        *volume_trend(session, month, policy, 1, until=now, department_id=department_id),
    ]


def _chart_png(name: str, scope: str, department_id: int | None, month: str | None) -> bytes:
    """The chart `name`; `month` (the rates and the categories): an earlier month, or None
    for the current one so far."""
    settings = runtime().settings
    now = _now()
    session = db()
    titles = _chart_titles(month)
    if name == "volume":
        trend = volume_months(
            session, settings, now, department_id if scope == "department" else None
        )
        return charts.volume_trend_png(trend, title=titles["volume"], ylabel=_("cases"))
    figures = month_figures(session, settings, now, month) or {}
    names = _names()
    if name == "rates":
        rows = [
            {**r, "name": names.get(str(r.get("code")), r.get("name"))}
            for r in _department_rows(figures, department_id)
            if r.get("valid_visits")
        ]
        return charts.rates_by_department_png(
            rows,
            title=titles["rates"],
            series=(_("Response rate"), _("Resolution rate"), _("Satisfaction rate")),
            empty=_("No valid return visits yet"),
        )
    return charts.categories_png(
        categories(figures, {k: str(v) for k, v in KIND_LABELS.items()}),
        title=titles["categories"],
        empty=_("No cases yet"),
    )


@bp.get("/dashboard/charts/<name>.png")
@login_required
def chart(name: str) -> Response:
    if name not in CHART_NAMES:
        abort(404)
    scope, department_id = _scope()
    allowed = {"office": CHART_NAMES, "department": ("volume", "rates"), "intake": ("volume",)}
    if name not in allowed[scope]:
        abort(404)
    settings = runtime().settings
    month: str | None = None
    if name != "volume" and request.args.get("month"):
        months = months_shown(db(), settings, _now())
        month, error = chosen_month(request.args.get("month"), months)
        if error:
            abort(400, description=error)
        if month == months[0]:
            month = None
    key = (
        "chart",
        str(settings.database.url),
        name,
        scope,
        department_id,
        month,
        str(get_locale() or "zh"),
    )
    png = _cache.get(key, CHART_TTL, lambda: _chart_png(name, scope, department_id, month))
    response = make_response(png)
    response.headers["Content-Type"] = "image/png"
    # Private: a department's chart is for its staff; short: the month changes all day.
    response.headers["Cache-Control"] = f"private, max-age={CHART_TTL}"
    response.set_etag(hashlib.sha256(png).hexdigest()[:32])
    return response.make_conditional(request)


def rate_text(value: float | None) -> str:
    """0.875 → "87.5%"; None → "—"."""
    return "—" if value is None else f"{value * 100:.1f}%"


@bp.app_template_filter("rate")
def _rate_filter(value: float | None) -> str:
    return rate_text(value)


@bp.app_template_filter("score")
def _score_filter(value: float | None) -> str:
    """The composite score out of 100, as the report email shows it: 0.8123 → "81.2"."""
    return "—" if value is None else f"{value * 100:.1f}"


@bp.app_template_filter("stars")
def _stars_filter(value: int | None) -> str:
    if not value:
        return "—"
    return "★" * int(value) + "☆" * (5 - int(value))
