"""The public performance page (/performance, 办事公开): each department's service
commitments (the same policy as /commitments and the deadlines) beside its figures for each
of the last 12 complete months: cases received, on-time rate, the three rates, composite
score and stars (星级), as the monthly report counts them (triage/report/figures.py). No
case and no personal data: only counts and rates. Public, no login.

Cost: one read of the twelve months' stored figures (triage/report/snapshots.py, scope
``public``: ``monthly_figures`` without the details this page does not show, computed once
per complete month, by the supervision tick or else the first request, under a lease); the
charts
(``/performance/charts/<name>.png``: ``volume``, the office's 12 months; ``rates``, the
three rates by department in the latest month) are cached ``PAGE_TTL`` seconds and sent
with public cache headers.

Functions: ``year_of_figures(session, settings, now) -> list[dict]`` (the 12 months' figures,
oldest first, cached); ``department_months(figures, code) -> list[dict]`` (one department's
``{month, received, valid_visits, response_rate, resolution_rate, satisfaction_rate,
composite, stars, on_time_rate}`` per month).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, make_response, render_template, request
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from triage.models import Department
from triage.report import charts, snapshots
from triage.report.figures import ReportPolicy, month_of, shift_month
from web import db, runtime
from web.commitments import amount, department_rows, extension_text
from web.dashboard import _cache

bp = Blueprint("performance", __name__)

PAGE_TTL = 600.0
MONTHS = 12
KEYS = (
    "valid_visits",
    "response_rate",
    "resolution_rate",
    "satisfaction_rate",
    "composite",
    "stars",
    "on_time_rate",
)


def _months(settings: Any, now: datetime) -> list[str]:
    """The last 12 complete statistical months, oldest first."""
    current = month_of(now, ReportPolicy.from_settings(settings))
    return [shift_month(current, -k) for k in range(MONTHS, 0, -1)]


def year_of_figures(session: Session, settings: Any, now: datetime) -> list[dict[str, Any]]:
    """The last 12 complete months' figures, oldest first, from their stored snapshots
    (triage/report/snapshots.py, scope ``public``: computed once per month, by the
    supervision tick or by the first request after the month ends, under a lease). A month
    another process is still computing is ``{"month": m, "pending": True}``."""
    policy = ReportPolicy.from_settings(settings)
    months = _months(settings, now)
    found = snapshots.figures_for(session, snapshots.PUBLIC, months, policy, now)
    return [
        snap.figures if snap is not None else {"month": month, "pending": True}
        for month, snap in found.items()
    ]


def department_months(figures: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    rows = []
    for f in figures:
        if f.get("pending"):
            rows.append({"month": f["month"], "received": None, **dict.fromkeys(KEYS)})
            continue
        own = next((d for d in f.get("departments") or [] if d.get("code") == code), {})
        rows.append(
            {
                "month": f["month"],
                "received": int((f.get("by_department") or {}).get(code, 0)),
                **{k: own.get(k) for k in KEYS},
            }
        )
    return rows


def _now() -> datetime:
    return datetime.now(UTC)


def _names() -> dict[str, str]:
    english = str(get_locale() or "zh") == "en"
    return {
        code: (name_en if english and name_en else name)
        for code, name, name_en in db().execute(
            select(Department.code, Department.name, Department.name_en)
        )
    }


def _cached(response: Response) -> Response:
    response.headers["Cache-Control"] = f"public, max-age={int(PAGE_TTL) // 2}"
    response.headers["Vary"] = "Cookie, Accept-Language"
    return response


@bp.get("/performance")
def performance() -> Response:
    settings = runtime().settings
    figures = year_of_figures(db(), settings, _now())
    departments = list(
        db().scalars(select(Department).where(Department.active.is_(True)).order_by(Department.id))
    )
    tables = [
        (d, department_rows(d.code), list(reversed(department_months(figures, d.code))))
        for d in departments
    ]
    first, last = figures[0]["month"], figures[-1]["month"]
    html = render_template(
        "citizen/performance.html",
        tables=tables,
        first=first,
        last=last,
        amount=amount,
        extension_text=extension_text,
        pending=any(f.get("pending") for f in figures),
        version=hashlib.sha256(repr([f.get("received") for f in figures]).encode()).hexdigest()[
            :10
        ],
    )
    return _cached(make_response(html))


def _chart(name: str) -> bytes:
    settings = runtime().settings
    figures = year_of_figures(db(), settings, _now())
    names = _names()
    if name == "volume":
        return charts.volume_trend_png(
            [(f["month"], int(f.get("received") or 0)) for f in figures],
            title=_("Cases received, last 12 months"),
            ylabel=_("cases"),
        )
    latest = figures[-1]
    rows = [
        {**d, "name": names.get(str(d.get("code")), d.get("name"))}
        for d in latest.get("departments") or []
        if d.get("valid_visits")
    ]
    return charts.rates_by_department_png(
        rows,
        title=_("The three rates by department, %(month)s", month=latest["month"]),
        series=(_("Response rate"), _("Resolution rate"), _("Satisfaction rate")),
        empty=_("No valid return visits yet"),
    )


@bp.get("/performance/charts/<name>.png")
def chart(name: str) -> Response:
    if name not in ("volume", "rates"):
        abort(404)
    settings = runtime().settings
    month = month_of(_now(), ReportPolicy.from_settings(settings))
    key = ("public-chart", str(settings.database.url), name, month, str(get_locale() or "zh"))
    png = _cache.get(key, PAGE_TTL, lambda: _chart(name))
    response = make_response(png)
    response.headers["Content-Type"] = "image/png"
    response.set_etag(hashlib.sha256(png).hexdigest()[:32])
    return _cached(response.make_conditional(request))
