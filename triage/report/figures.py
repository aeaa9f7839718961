"""The month's figures (月度报表) as DOMAIN.md "Monthly figures (12345 practice)" defines them,
aggregated in SQL.

Every count is one or a few ``GROUP BY`` queries with conditional sums over an indexed time
window; Python only adds up the grouped rows (channels × kinds × departments, or 15-minute
buckets), never the cases one by one. The definitions below are those of the columns of
``minsheng export cases`` (triage/export.py), so that anyone can recompute the figures from an
export: see ``tests/integration/test_report_figures.py::figures_from_export``.

The month
    ``month`` is ``YYYY-MM``. Its window is [start, end) in the configured local time zone
    ([app] timezone; times are stored in UTC): the calendar month, or with ``[report]
    cutoff_day`` = d (1-28) the day after the d-th of the month before up to and including the
    d-th (d = 25: "2026-11" is 26 Oct 00:00 to 26 Nov 00:00 local). ``until`` (default: now)
    cuts the window short: the dashboard's current month so far.

The figures (export columns in brackets)
    received
        cases received in the window, every status (``received_at``).
    by_channel, by_kind, by_department
        the received cases by ``channel``, ``kind`` and current ``department`` code (cases
        not dispatched to any department are in ``received`` but in no department).
    valid_visits (有效回访数, N)
        cases whose own complainant had a valid return visit (有效回访: one that reached the
        citizen) in the window (``visits[].valid``, ``visits[].at``). A case visited twice in
        the window (a rework in between) counts once, with its latest valid visit in the
        window; a case replied in one month and visited in the next counts in the month of
        the visit. Visits to the citizens of merged cases are not counted.
    response_rate (响应率)
        of the N cases, those whose department contacted the citizen in time ÷ N: the counted
        visit's answer to that question (``visits[].contacted`` true). A visit recorded
        before the question was asked (``contacted`` null) falls back to the proxy used
        until then: the department answered by its handling deadline (``replied_at`` ≤
        ``due_at``; no deadline counts as in time).
    resolution_rate (解决率)
        of the N cases, those the counted visit says are solved (``visits[].solved``) ÷ N.
    satisfaction_rate (满意率)
        (satisfied + basic_satisfied_weight × basically satisfied) ÷ N, from the counted
        visit's ``satisfaction``; basic_satisfied_weight is [report] (0.9).
    composite (综合得分)
        response_weight × response + resolution_weight × resolution + satisfaction_weight ×
        satisfaction ([report]: 0.1, 0.5, 0.4); null when N = 0.
    on_time_rate (按时办结率)
        of the cases closed (办结: ``status`` closed) in the window (``closed_at``), those
        closed by their deadline (``closed_at`` ≤ ``due_at``) ÷ their number.
    avg_handling_working_days (平均办理时长)
        of the same closed cases, the mean of working days from receipt to close
        (``received_at`` → ``closed_at``; `WorkCalendar.working_days_between`: working days
        after the day of receipt up to and including the day of closing, official calendar).
    overdue (超期)
        cases, neither merged nor rejected, whose handling deadline (``due_at``) fell in the
        window and that were not answered by it: no ``replied_at``, a later one, or back with
        the department (``status`` assigned / in progress, e.g. reworked).
    reworked, sent_back, extended (重办, 退回, 延期)
        of the cases received in the window, those reworked at least once
        (``rework_count``), sent back by a department at least once (``sent_back_count``),
        granted at least one extension (``extension_count``).
    repeat_complainants (重复投诉人)
        callers (``caller_key``, triage/callers.py: the same phone, else the same address,
        on any channel) with more than one case received in the window, whatever became of
        them; anonymous cases (no key) are no caller. A case registered before caller keys
        counts once ``minsheng init`` has backfilled its key.
    hot_issues
        triage/report/hot_issues.py.
    departments
        every active department (and any other with figures in the month), with N and the
        rates above over its own cases (the case's current department), ``stars`` 1-5 from
        the composite and [report] star_thresholds (null without valid visits), ranked by
        composite, best first; departments without a composite last.
    previous
        the month before: ``month``, ``received``, ``valid_visits``, the five rates and
        ``avg_handling_working_days``, computed the same way over its whole window.

Rates are floats in [0, 1], not rounded, or null where there is nothing to divide by.
Timestamps in an export are cut to whole seconds; a reply in the same second as its deadline
may differ there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Integer, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from triage.calendar import WorkCalendar
from triage.models import Case, Department, ReturnVisit, Satisfaction, Status

RATE_KEYS = ("response_rate", "resolution_rate", "satisfaction_rate", "composite")
PREVIOUS_KEYS = (
    "month",
    "received",
    "valid_visits",
    *RATE_KEYS,
    "on_time_rate",
    "avg_handling_working_days",
)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
# Times are grouped in 15-minute buckets to find their local day in Python: every time zone's
# offset is a multiple of 15 minutes.
_BUCKET_SECONDS = 900


class _ReportConfig(Protocol):
    cutoff_day: int
    response_weight: float
    resolution_weight: float
    satisfaction_weight: float
    basic_satisfied_weight: float
    star_thresholds: list[float]
    hot_issues: int
    hot_issue_sample: int


class _Settings(Protocol):
    @property
    def report(self) -> _ReportConfig: ...

    def work_calendar(self) -> WorkCalendar: ...


@dataclass(frozen=True)
class ReportPolicy:
    """What the figures depend on: the calendar (working days, local time zone) and the
    [report] config. `from_settings` builds it from web.settings.Settings."""

    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    cutoff_day: int = 0
    response_weight: float = 0.1
    resolution_weight: float = 0.5
    satisfaction_weight: float = 0.4
    basic_satisfied_weight: float = 0.9
    star_thresholds: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9)
    hot_issues: int = 5
    hot_issue_sample: int = 2000

    @classmethod
    def from_settings(cls, settings: _Settings) -> ReportPolicy:
        r = settings.report
        return cls(
            calendar=settings.work_calendar(),
            cutoff_day=r.cutoff_day,
            response_weight=r.response_weight,
            resolution_weight=r.resolution_weight,
            satisfaction_weight=r.satisfaction_weight,
            basic_satisfied_weight=r.basic_satisfied_weight,
            star_thresholds=tuple(r.star_thresholds),
            hot_issues=r.hot_issues,
            hot_issue_sample=r.hot_issue_sample,
        )

    @property
    def timezone(self) -> ZoneInfo:
        return self.calendar.timezone

    def stars(self, composite: float | None) -> int | None:
        """1-5 stars (星级) from the composite score; None without one."""
        if composite is None:
            return None
        # A score of exactly a threshold, as the weights' floating sums may put it 1e-16 below.
        score = round(composite, 9)
        return 1 + sum(1 for t in self.star_thresholds if score >= t)


def parse_month(month: str) -> tuple[int, int]:
    """``"2026-11"`` → (2026, 11); ValueError saying what is wrong otherwise."""
    m = _MONTH.match((month or "").strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"month {month!r} is not YYYY-MM (e.g. 2026-11)")
    return int(m.group(1)), int(m.group(2))


def shift_month(month: str, by: int) -> str:
    """``shift_month("2026-01", -1)`` → ``"2025-12"``."""
    year, mon = parse_month(month)
    index = year * 12 + (mon - 1) + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_of(moment: datetime, policy: ReportPolicy) -> str:
    """The statistical month (YYYY-MM) that `moment` (aware) falls in."""
    local = moment.astimezone(policy.timezone)
    month = f"{local.year:04d}-{local.month:02d}"
    if policy.cutoff_day and local.day > policy.cutoff_day:
        month = shift_month(month, 1)
    return month


def month_window(month: str, policy: ReportPolicy) -> tuple[datetime, datetime]:
    """[start, end) of the statistical month in aware UTC datetimes (see the module)."""
    year, mon = parse_month(month)
    tz = policy.timezone
    if policy.cutoff_day:
        py, pm = parse_month(shift_month(month, -1))
        start = datetime(py, pm, policy.cutoff_day + 1, tzinfo=tz)
        end = datetime(year, mon, policy.cutoff_day + 1, tzinfo=tz)
    else:
        ny, nm = parse_month(shift_month(month, 1))
        start = datetime(year, mon, 1, tzinfo=tz)
        end = datetime(ny, nm, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _rates(
    n: int, responded: int, solved: int, satisfied: int, basic: int, policy: ReportPolicy
) -> dict[str, float | None]:
    if not n:
        return dict.fromkeys(RATE_KEYS)
    response = responded / n
    resolution = solved / n
    satisfaction = (satisfied + policy.basic_satisfied_weight * basic) / n
    composite = (
        policy.response_weight * response
        + policy.resolution_weight * resolution
        + policy.satisfaction_weight * satisfaction
    )
    return {
        "response_rate": response,
        "resolution_rate": resolution,
        "satisfaction_rate": satisfaction,
        "composite": composite,
    }


def _count_if(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _bucket(column: Any, dialect: str) -> Any:
    """The 15-minute bucket (seconds since 1970 UTC // 900) of a stored UTC time."""
    if dialect == "postgresql":
        seconds = cast(func.floor(func.extract("epoch", column)), BigInteger)
    else:
        seconds = cast(func.strftime("%s", column), Integer)
    return seconds // _BUCKET_SECONDS


def _in(column: Any, start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(column >= start, column < end)


def _visit_counts(
    session: Session, start: datetime, end: datetime
) -> dict[int | None, tuple[int, int, int, int, int]]:
    """department id → (N, responded in time, solved, satisfied, basically satisfied)."""
    latest = (
        select(ReturnVisit.case_id, func.max(ReturnVisit.id).label("visit_id"))
        .where(
            ReturnVisit.valid.is_(True),
            ReturnVisit.citizen_case_id.is_(None),
            _in(ReturnVisit.at, start, end),
        )
        .group_by(ReturnVisit.case_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Case.department_id,
            func.count(),
            _count_if(
                or_(
                    ReturnVisit.contacted.is_(True),
                    and_(
                        ReturnVisit.contacted.is_(None),
                        Case.replied_at.is_not(None),
                        or_(Case.due_at.is_(None), Case.replied_at <= Case.due_at),
                    ),
                )
            ),
            _count_if(ReturnVisit.solved.is_(True)),
            _count_if(ReturnVisit.satisfaction == str(Satisfaction.SATISFIED)),
            _count_if(ReturnVisit.satisfaction == str(Satisfaction.BASIC)),
        )
        .select_from(latest)
        .join(ReturnVisit, ReturnVisit.id == latest.c.visit_id)
        .join(Case, Case.id == latest.c.case_id)
        .group_by(Case.department_id)
    )
    return {d: (int(n), int(r), int(s), int(sa), int(b)) for d, n, r, s, sa, b in rows}


def _closed_counts(
    session: Session, start: datetime, end: datetime
) -> dict[int | None, tuple[int, int]]:
    """department id → (closed in the window, closed by the deadline)."""
    rows = session.execute(
        select(
            Case.department_id,
            func.count(),
            _count_if(and_(Case.due_at.is_not(None), Case.closed_at <= Case.due_at)),
        )
        .where(Case.status == str(Status.CLOSED), _in(Case.closed_at, start, end))
        .group_by(Case.department_id)
    )
    return {d: (int(n), int(k)) for d, n, k in rows}


def _working_day_index(days: Iterable[date], calendar: WorkCalendar) -> dict[date, int]:
    """For each day, the number of working days from the first of them up to it, so that
    ``index[b] - index[a]`` is `WorkCalendar.working_days_between` of a and b."""
    wanted = sorted(set(days))
    if not wanted:
        return {}
    index: dict[date, int] = {}
    count, day, last = 0, wanted[0], wanted[-1]
    while day <= last:
        if day != wanted[0] and calendar.is_workday(day):
            count += 1
        index[day] = count
        day += timedelta(days=1)
    return index


def _avg_handling(
    session: Session, start: datetime, end: datetime, policy: ReportPolicy
) -> float | None:
    """Mean working days from receipt to close of the cases closed in the window: the sum
    over cases of index(closed day) − index(received day), from two GROUP BY queries of
    15-minute buckets."""
    dialect = session.get_bind().dialect.name
    where = (Case.status == str(Status.CLOSED), _in(Case.closed_at, start, end))
    sums: dict[str, list[tuple[int, int]]] = {}
    for name, column in (("received", Case.received_at), ("closed", Case.closed_at)):
        bucket = _bucket(column, dialect).label("bucket")
        sums[name] = [
            (int(b), int(n))
            for b, n in session.execute(select(bucket, func.count()).where(*where).group_by(bucket))
        ]
    total = sum(n for _, n in sums["closed"])
    if not total:
        return None
    tz = policy.timezone

    def day(bucket: int) -> date:
        return datetime.fromtimestamp(bucket * _BUCKET_SECONDS, tz).date()

    index = _working_day_index((day(b) for rows in sums.values() for b, _ in rows), policy.calendar)
    closed = sum(index[day(b)] * n for b, n in sums["closed"])
    received = sum(index[day(b)] * n for b, n in sums["received"])
    return (closed - received) / total


def _received(session: Session, start: datetime, end: datetime) -> list[Any]:
    return list(
        session.execute(
            select(
                Case.channel,
                Case.kind,
                Case.department_id,
                func.count(),
                _count_if(Case.rework_count > 0),
                _count_if(Case.sent_back_count > 0),
                _count_if(Case.extension_count > 0),
            )
            .where(_in(Case.received_at, start, end))
            .group_by(Case.channel, Case.kind, Case.department_id)
        )
    )


def _overdue(session: Session, start: datetime, end: datetime) -> int:
    handling = (str(Status.ASSIGNED), str(Status.IN_PROGRESS))
    return int(
        session.scalar(
            select(func.count())
            .select_from(Case)
            .where(
                _in(Case.due_at, start, end),
                Case.status.not_in((str(Status.MERGED), str(Status.REJECTED))),
                or_(
                    Case.replied_at.is_(None),
                    Case.replied_at > Case.due_at,
                    Case.status.in_(handling),
                ),
            )
        )
        or 0
    )


def _repeat_complainants(session: Session, start: datetime, end: datetime) -> int:
    callers = (
        select(Case.caller_key)
        .where(
            _in(Case.received_at, start, end), Case.caller_key.is_not(None), Case.caller_key != ""
        )
        .group_by(Case.caller_key)
        .having(func.count() > 1)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(callers)) or 0)


def _stop(end: datetime, until: datetime | None) -> datetime:
    moment = until if until is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("until must be an aware datetime")
    return min(end, moment)


def monthly_figures(
    session: Session,
    month: str,
    policy: ReportPolicy | _Settings,
    until: datetime | None = None,
    *,
    with_previous: bool = True,
    with_hot_issues: bool = True,
    with_details: bool = True,
) -> dict[str, Any]:
    """The figures of `month` (``YYYY-MM``) as the issue's JSON object; definitions and
    sources in the module docstring. `policy`: a ReportPolicy, or the web Settings it is
    built from. `until` (aware; default now) ends the window early; ``previous`` is the
    whole month before. ``with_details=False`` skips what the public page does not show:
    ``avg_handling_working_days`` (None), ``overdue``, ``repeat_complainants`` (0) and
    ``hot_issues`` ([]), here and in ``previous``. ValueError for a malformed month."""
    from triage.report.hot_issues import hot_issues

    if not isinstance(policy, ReportPolicy):
        policy = ReportPolicy.from_settings(policy)

    start, end = month_window(month, policy)
    stop = _stop(end, until)
    departments = {d.id: d for d in session.scalars(select(Department).order_by(Department.code))}

    received_rows = _received(session, start, stop) if stop > start else []
    by_channel: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    by_department: dict[str, int] = {}
    received = reworked = sent_back = extended = 0
    for channel, kind, dept_id, n, rw, sb, ex in received_rows:
        received += n
        reworked, sent_back, extended = reworked + rw, sent_back + sb, extended + ex
        by_channel[channel] = by_channel.get(channel, 0) + n
        by_kind[kind] = by_kind.get(kind, 0) + n
        if dept_id is not None:
            code = departments[dept_id].code
            by_department[code] = by_department.get(code, 0) + n

    visits = _visit_counts(session, start, stop) if stop > start else {}
    closed = _closed_counts(session, start, stop) if stop > start else {}
    totals = [sum(v[i] for v in visits.values()) for i in range(5)]
    closed_n = sum(c[0] for c in closed.values())
    closed_on_time = sum(c[1] for c in closed.values())

    rows = []
    for dept_id, dept in departments.items():
        v = visits.get(dept_id, (0, 0, 0, 0, 0))
        c = closed.get(dept_id, (0, 0))
        if not dept.active and not v[0] and not c[0] and dept.code not in by_department:
            continue
        rates = _rates(*v, policy)
        rows.append(
            {
                "code": dept.code,
                "name": dept.name,
                "valid_visits": v[0],
                **rates,
                "stars": policy.stars(rates["composite"]),
                "on_time_rate": _ratio(c[1], c[0]),
            }
        )
    rows.sort(key=lambda r: (r["composite"] is None, -(r["composite"] or 0), r["code"]))

    figures: dict[str, Any] = {
        "month": month,
        "received": received,
        "by_channel": dict(sorted(by_channel.items())),
        "by_kind": dict(sorted(by_kind.items())),
        "by_department": dict(sorted(by_department.items())),
        "valid_visits": totals[0],
        **_rates(*totals, policy),
        "on_time_rate": _ratio(closed_on_time, closed_n),
        "avg_handling_working_days": (
            _avg_handling(session, start, stop, policy) if with_details and stop > start else None
        ),
        "overdue": _overdue(session, start, stop) if with_details and stop > start else 0,
        "reworked": reworked,
        "sent_back": sent_back,
        "extended": extended,
        "repeat_complainants": (
            _repeat_complainants(session, start, stop) if with_details and stop > start else 0
        ),
        "hot_issues": (
            hot_issues(session, start, stop, policy)
            if with_hot_issues and with_details and stop > start
            else []
        ),
        "departments": rows,
        "previous": None,
    }
    if with_previous:
        before = monthly_figures(
            session,
            shift_month(month, -1),
            policy,
            None,
            with_previous=False,
            with_hot_issues=False,
            with_details=with_details,
        )
        figures["previous"] = {k: before[k] for k in PREVIOUS_KEYS}
    return figures


def best_and_worst(figures: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The best and the worst ranked department of `figures` (those with a composite);
    (None, None) without any, the worst None when only one has a composite."""
    ranked = [d for d in figures["departments"] if d["composite"] is not None]
    if not ranked:
        return None, None
    return ranked[0], (ranked[-1] if len(ranked) > 1 else None)
