"""Case lists: their filters, their orders, their counts per filter value, and pages that
cost the same on the last page as on the first.

A list is ordered by one of `SORTS` (newest received first, nearest deadline first, most
recently updated first), always with the case id as the tie-break. The next and previous
pages are found from the last or first case shown (keyset pagination: an index seek, not
``OFFSET``), the last page by reading the list from its end, and a page typed by number from
whichever end is nearer. The count reads at most `COUNT_CAP` + 1 index entries: past that, the
list says "10,000+" and the pages are not numbered to the end.

Each order has an index ending in id (migrations 0008 and 0014): (received_at, id), the
deadline ``coalesce(due_at, triage_due_at, received_at)`` and ``coalesce(updated_at,
received_at)``, each also after status or department where a list is usually narrowed so.

The counts per filter value (`facet_counts`) are read from the maintained tallies
(`triage.tallies`) when every filter chosen is one they are kept by, else counted from the
cases when the list's non-facet filters leave at most `COUNT_CAP` of them, else not shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Index,
    Select,
    and_,
    exists,
    func,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from intake.normalise import clean_line
from intake.submission import Kind
from triage import tallies
from triage.models import (
    OPEN_STATUSES,
    Attachment,
    Case,
    CaseFinding,
    Department,
    SavedView,
    Status,
)

__all__ = [
    "COUNT_CAP",
    "DEADLINE_KEY",
    "SORTS",
    "UPDATED_KEY",
    "CasePage",
    "ListFilters",
    "count_cases",
    "default_view",
    "facet_counts",
    "list_page",
    "save_view",
    "saved_views",
]

COUNT_CAP = 10_000
_MERGE_LIMIT = 1000
"""Rows read per piece at most when a page is merged from pieces (deeper: one query)."""

DEADLINE_KEY = func.coalesce(Case.due_at, Case.triage_due_at, Case.received_at)
"""A case's deadline as the lists sort it: handling, else dispatch, else receipt."""
UPDATED_KEY = func.coalesce(Case.updated_at, Case.received_at)

# The orders' indexes (migration 0014 creates them; declared here beside the orders).
Index("ix_cases_status_received", Case.status, Case.received_at, Case.id)
Index("ix_cases_deadline", DEADLINE_KEY, Case.id)
Index("ix_cases_department_deadline", Case.department_id, DEADLINE_KEY, Case.id)
Index("ix_cases_status_deadline", Case.status, DEADLINE_KEY, Case.id)
Index("ix_cases_updated", UPDATED_KEY, Case.id)
Index("ix_cases_channel", Case.channel)
Index("ix_cases_kind", Case.kind)
# The urgent and overdue filters' indexes (migration 0019).
Index(
    "ix_cases_urgent",
    Case.received_at,
    Case.id,
    sqlite_where=Case.urgent == true(),
    postgresql_where=Case.urgent == true(),
)
Index("ix_cases_status_triage_due", Case.status, Case.triage_due_at)
Index("ix_cases_status_due", Case.status, Case.due_at)
# The counts per filter value read from an index alone, whichever filters are chosen
# (migration 0024): a department's cases by channel read each case's row without them.
Index("ix_cases_facets", Case.status, Case.department_id, Case.channel, Case.kind)
Index("ix_cases_department_facets", Case.department_id, Case.status, Case.channel, Case.kind)

SORTS: Mapping[str, tuple[Any, bool]] = {
    "received": (Case.received_at, True),
    "deadline": (DEADLINE_KEY, False),
    "updated": (UPDATED_KEY, True),
}
"""Order name → (key, newest/largest first)."""

DAYS = (date(1900, 1, 1), date(9998, 12, 31))
"""The dates a list's date filters accept, both included."""

CLOSED_STATUSES = (Status.CLOSED, Status.MERGED, Status.REJECTED)
_OPEN = [str(s) for s in sorted(OPEN_STATUSES)]


@dataclass(frozen=True)
class ListFilters:
    """The filters of a case list as its query string carries them (all optional).

    ``status``: "open" or a `Status`; ``department``, ``channel``, ``kind``: a code;
    ``finding``: a supervision rule name; ``urgent``, ``overdue``, ``attachments``: "1";
    ``received_from`` … ``due_to``: local dates, both ends included.
    """

    status: str = ""
    department: str = ""
    channel: str = ""
    kind: str = ""
    urgent: bool = False
    overdue: bool = False
    finding: str = ""
    attachments: bool = False
    received_from: date | None = None
    received_to: date | None = None
    due_from: date | None = None
    due_to: date | None = None

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> tuple[ListFilters, list[str]]:
        """The filters of a query string, and the names of the parameters that were not
        understood (a bad date, an unknown status): those are left out, never an error."""
        bad: list[str] = []
        values: dict[str, Any] = {}
        status = args.get("status", "")
        if status == "open" or status in set(Status):
            values["status"] = status
        elif status:
            bad.append("status")
        for name in ("department", "channel", "finding"):
            # Control characters out: a saved view's query reaches here without the request's
            # guard against NUL, which PostgreSQL refuses in a comparison (a 500).
            raw = clean_line(args.get(name, ""))[:40]
            if raw:
                values[name] = raw
        kind = args.get("kind", "")
        if kind in set(Kind):
            values["kind"] = kind
        elif kind:
            bad.append("kind")
        for name in ("urgent", "overdue", "attachments"):
            values[name] = args.get(name, "") in ("1", "on", "true", "yes")
        for name in ("received_from", "received_to", "due_from", "due_to"):
            raw = args.get(name, "").strip()
            if not raw:
                continue
            try:
                day = date.fromisoformat(raw[:10])
            except ValueError:
                bad.append(name)
                continue
            # The first and last days of the calendar have no midnight in every time zone
            # (0001-01-01 in China is still year 0 in UTC): a day out of `DAYS` is not understood.
            if DAYS[0] <= day <= DAYS[1]:
                values[name] = day
            else:
                bad.append(name)
        return cls(**values), bad

    def query_args(self) -> dict[str, str]:
        """The filters as query-string parameters (only those set)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is True:
                out[f.name] = "1"
            elif isinstance(value, date):
                out[f.name] = value.isoformat()
            elif value:
                out[f.name] = str(value)
        return out

    def without(self, name: str) -> ListFilters:
        """These filters but ``name``'s (for counting that filter's values)."""
        return replace(self, **{name: type(self)().__getattribute__(name)})

    def clauses(self, now: datetime, timezone: ZoneInfo) -> list[ColumnElement[bool]]:
        """WHERE clauses on `Case` for these filters (``now`` decides what is overdue;
        dates are days in ``timezone``)."""
        where: list[ColumnElement[bool]] = []
        if self.status == "open":
            where.append(Case.status.in_(_OPEN))
        elif self.status:
            where.append(Case.status == self.status)
        if self.department:
            where.append(
                Case.department_id
                == select(Department.id).where(Department.code == self.department).scalar_subquery()
            )
        if self.channel:
            where.append(Case.channel == self.channel)
        if self.kind:
            where.append(Case.kind == self.kind)
        if self.urgent:
            # "= true", not "IS true": the term of the partial index ix_cases_urgent.
            where.append(Case.urgent == true())
        if self.overdue:
            where.append(overdue_clause(now))
        if self.finding:
            where.append(
                Case.id.in_(select(CaseFinding.case_id).where(CaseFinding.rule == self.finding))
            )
        if self.attachments:
            where.append(exists(select(Attachment.id).where(Attachment.case_id == Case.id)))
        start = _day_start
        deadline = DEADLINE_KEY
        if self.received_from:
            where.append(Case.received_at >= start(self.received_from, timezone))
        if self.received_to:
            where.append(Case.received_at < start(self.received_to + timedelta(days=1), timezone))
        if self.due_from:
            where.append(deadline >= start(self.due_from, timezone))
        if self.due_to:
            where.append(deadline < start(self.due_to + timedelta(days=1), timezone))
        return where


def _day_start(day: date, timezone: ZoneInfo) -> datetime:
    return datetime.combine(day, day_time(0), timezone).astimezone(UTC)


def overdue_clause(now: datetime) -> ColumnElement[bool]:
    """Open cases past their deadline (dispatch or handling), or found overdue by the last
    supervision tick (`cases.risk`)."""
    # The ids of the three kinds, each read from its own index (migration 0019; ix_cases_risk),
    # rather than an OR that the planner answered by reading another filter's cases one by
    # one (overdue by phone: every phone case, 35,000 at 100,000).
    return Case.id.in_(
        union_all(
            select(Case.id).where(
                Case.status.in_([Status.RECEIVED, Status.TRIAGE]), Case.triage_due_at < now
            ),
            select(Case.id).where(
                Case.status.in_([Status.ASSIGNED, Status.IN_PROGRESS]), Case.due_at < now
            ),
            select(Case.id).where(Case.status.in_(_OPEN), Case.risk == "overdue"),
        )
    )


@dataclass(frozen=True)
class CasePage:
    """One page: the case ids shown, in order; the page's number (1 = the list's start; 0 =
    the last page of a list too long to count); the number of cases counted (``capped``:
    more than `COUNT_CAP`); whether pages come before and after."""

    case_ids: list[int]
    number: int
    total: int
    capped: bool
    has_previous: bool
    has_next: bool
    size: int

    @property
    def pages(self) -> int | None:
        """How many pages there are; None when the count was capped."""
        if self.capped:
            return None
        return max(1, -(-self.total // self.size))


def count_cases(
    session: Session, where: Sequence[ColumnElement[bool]], cap: int = COUNT_CAP
) -> tuple[int, bool]:
    """(cases satisfying ``where``, up to ``cap``; whether there are more)."""
    n = session.scalar(
        select(func.count()).select_from(select(Case.id).where(*where).limit(cap + 1).subquery())
    )
    n = n or 0
    return min(n, cap), n > cap


def _ids(session: Session, query: Select[tuple[int]]) -> list[int]:
    return list(session.scalars(query))


def list_page(
    session: Session,
    where: Sequence[ColumnElement[bool]],
    *,
    size: int,
    page: int = 1,
    after: int | None = None,
    before: int | None = None,
    last: bool = False,
    sort: str = "received",
    parts: Sequence[ColumnElement[bool]] = (),
    scope: Sequence[ColumnElement[bool]] = (),
) -> CasePage:
    """The page of cases satisfying ``where``, in order ``sort`` (a key of `SORTS`; another
    is "received"), that the request asks for: the one after case id ``after`` or before
    ``before`` (``page`` is then only its shown number, 0 if not known), the ``last`` one, or
    page number ``page``. A cursor naming no case gives the first page.

    ``parts``: clauses that split the list into pieces each read in order from an index
    (e.g. one per status of "open": an IN list cannot be read in the order of
    (status, deadline, id)); a page is then merged from the pieces' first rows.

    ``scope``: what the user may see; a cursor naming a case outside it is no cursor (its
    key would tell, page by page, when another department's case came in)."""
    key, descending = SORTS.get(sort, SORTS["received"])
    total, capped = count_cases(session, where)
    pages = None if capped else max(1, -(-total // size))
    if len(where) > len(scope) and not capped:
        # A filtered list of at most COUNT_CAP cases: read them by the filters' indexes and
        # sort them. Both databases walked the order's index instead, through every case
        # before the first that matched (received in the last 30 days by deadline: 90,000 of
        # 100,000; 270 ms): SQLite has no statistics of a range's size, and PostgreSQL, which
        # has, expects the matches spread evenly along the order. The key wrapped in
        # coalesce(key, key), the same value, is no index's expression.
        key = func.coalesce(key, key, type_=key.type)
        # And in one piece: the pieces by status were there to read an order's index.
        parts = ()
    base = select(Case.id).where(*where)
    forward = (key.desc(), Case.id.desc()) if descending else (key.asc(), Case.id.asc())
    backward = (key.asc(), Case.id.asc()) if descending else (key.desc(), Case.id.desc())

    def read(extra: Sequence[Any], back: bool, limit: int, offset: int = 0) -> list[int]:
        order = backward if back else forward
        if not parts or offset + limit > _MERGE_LIMIT:
            return _ids(session, base.where(*extra).order_by(*order).offset(offset).limit(limit))
        rows: list[Any] = []
        for part in parts:
            query = select(Case.id, key).where(*where, part, *extra).order_by(*order)
            rows += session.execute(query.limit(offset + limit)).all()
        rows.sort(key=lambda r: (r[1], r[0]), reverse=descending != back)
        return [r[0] for r in rows[offset : offset + limit]]

    if after is not None or before is not None:
        cursor = after if after is not None else before
        at = select(key).where(Case.id == cursor, *scope).scalar_subquery()
        # Walking the list's way (after) or against it (before).
        down = (after is not None) == descending
        if down:
            seek = and_(key <= at, or_(key < at, Case.id < cursor))
        else:
            seek = and_(key >= at, or_(key > at, Case.id > cursor))
        if after is not None:
            ids = read([seek], False, size + 1)
            if ids:
                return CasePage(ids[:size], page, total, capped, True, len(ids) > size, size)
        else:
            ids = read([seek], True, size + 1)
            if ids:
                more = len(ids) > size
                number = page if more else 1
                return CasePage(ids[:size][::-1], number, total, capped, more, True, size)
        page = 1
    page = max(1, page)
    if last:
        if pages is None:
            ids = read([], True, size)[::-1]
            return CasePage(ids, 0, total, capped, True, False, size)
        page = pages
    if pages is not None:
        page = min(page, pages)
        if page > (pages + 1) // 2:
            # Nearer the end: read from there.
            offset = max(0, total - page * size)
            count = total - (page - 1) * size - offset
            ids = read([], True, count, offset)[::-1]
            return CasePage(ids, page, total, capped, page > 1, page < pages, size)
    ids = read([], False, size + 1, (page - 1) * size)
    if not ids and page > 1:
        return list_page(session, where, size=size, last=True, sort=sort, parts=parts)
    return CasePage(ids[:size], page, total, capped, page > 1, len(ids) > size, size)


# -- counts per filter value ------------------------------------------------------------------

FACETS: Mapping[str, Any] = {
    "status": Case.status,
    "department": Case.department_id,
    "channel": Case.channel,
    "kind": Case.kind,
}
"""Filter name → the column its values are counted by."""


def facet_counts(
    session: Session,
    scope: Sequence[ColumnElement[bool]],
    filters: ListFilters,
    *,
    now: datetime,
    timezone: ZoneInfo,
    facets: Sequence[str] = tuple(FACETS),
) -> dict[str, dict[Any, int]] | None:
    """{filter name: {value: cases}} for each of ``facets``: the cases the user may see
    (``scope``) under every chosen filter but that one, by value (department: by id; status
    "open" is the sum of the open statuses, added by the caller if wanted).

    When the scope and the chosen filters are all counted in the tallies (status,
    department, channel, kind, urgent: `triage.tallies`), read from them: the same few
    thousand rows at most whatever the number of cases, right as soon as a change commits.
    Otherwise (overdue, finding, attachments, dates) counted from the cases under the filters
    that are not facets, when those are at most `COUNT_CAP` (one GROUP BY of at most
    `COUNT_CAP` + 1 of them); None when there are more: no counts rather than a count over
    every case.
    """
    rest = replace(filters, **{name: "" for name in FACETS})
    where = [*scope, *rest.clauses(now, timezone)]
    on_tallies = tallies.on_tallies(where)
    if on_tallies is not None:
        rows = tallies.totals(session, on_tallies, [str(FACETS[n].key) for n in FACETS])
    else:
        # One statement, bounded: the facets' columns of at most COUNT_CAP + 1 of those cases,
        # grouped; more than COUNT_CAP of them and there are no counts.
        some = select(*FACETS.values()).where(*where).limit(COUNT_CAP + 1).subquery()
        columns = list(some.c)
        query = select(*columns, func.count()).group_by(*columns)
        rows = [tuple(r) for r in session.execute(query)]
        if sum(int(r[-1]) for r in rows) > COUNT_CAP:
            return None
    return _by_facet(session, rows, filters, facets)


def _by_facet(
    session: Session,
    rows: Sequence[tuple[Any, ...]],
    filters: ListFilters,
    facets: Sequence[str],
) -> dict[str, dict[Any, int]]:
    """Each facet's counts from ``rows`` (status, department id, channel, kind, cases) of
    the cases under the filters that are not facets: summed over the rows that match the
    other facets' chosen values. One read for every facet instead of one per facet."""
    names = list(FACETS)
    department_id = None
    if filters.department:
        department_id = session.scalar(
            select(Department.id).where(Department.code == filters.department)
        )

    def chosen(name: str, value: Any) -> bool:
        if name == "status":
            if filters.status == "open":
                return value in OPEN_STATUSES
            return not filters.status or value == filters.status
        if name == "department":
            return not filters.department or (department_id is not None and value == department_id)
        wanted = getattr(filters, name)
        return not wanted or value == wanted

    counts: dict[str, dict[Any, int]] = {name: {} for name in facets}
    for row in rows:
        values = dict(zip(names, row[:-1], strict=True))
        for name in facets:
            value = values[name]
            if value is None or not all(chosen(n, values[n]) for n in names if n != name):
                continue
            counts[name][value] = counts[name].get(value, 0) + int(row[-1])
    return counts


# -- saved views ------------------------------------------------------------------------------

BUILTIN_DEFAULTS: Mapping[str, str] = {
    "handler": "status=open&sort=deadline",
}
"""A role's list when it opens the case list with no parameters and nobody configured one."""


def saved_views(session: Session, user_id: int, role: str) -> list[SavedView]:
    """The user's own saved views, then their role's shared ones, by name."""
    return list(
        session.scalars(
            select(SavedView)
            .where(
                or_(
                    SavedView.user_id == user_id,
                    and_(SavedView.user_id.is_(None), SavedView.role == role),
                )
            )
            .order_by(SavedView.user_id.is_(None), SavedView.name, SavedView.id)
        )
    )


def default_view(session: Session, user_id: int, role: str) -> str | None:
    """The query string a user's case list opens with: their own default view, else their
    role's shared default, else the built-in one of their role (None: the plain list)."""
    views = saved_views(session, user_id, role)
    for mine in (True, False):
        for v in views:
            if v.is_default and (v.user_id is not None) == mine:
                return v.query
    return BUILTIN_DEFAULTS.get(role)


def save_view(
    session: Session,
    *,
    name: str,
    query: str,
    user_id: int | None,
    role: str = "",
    is_default: bool = False,
) -> SavedView:
    """Saves (or replaces, by name) a view: a user's own (``user_id``) or, with ``user_id``
    None, ``role``'s shared one. A new default unsets the owner's previous default.
    Flushes; the caller commits."""
    owner = (
        SavedView.user_id == user_id
        if user_id is not None
        else and_(SavedView.user_id.is_(None), SavedView.role == role)
    )
    if is_default:
        for v in session.scalars(select(SavedView).where(owner, SavedView.is_default.is_(True))):
            v.is_default = False
    view = session.scalar(select(SavedView).where(owner, SavedView.name == name))
    if view is None:
        view = SavedView(user_id=user_id, role=role if user_id is None else "", name=name)
        session.add(view)
    view.query = query
    view.is_default = is_default
    session.flush()
    return view
