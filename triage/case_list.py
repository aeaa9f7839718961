"""Case lists: their filters, their orders, their counts per filter value, and pages that
cost the same on the last page as on the first.

A list is ordered by one of `SORTS` (newest received first, nearest deadline first, most
recently updated first), always with the case id as the tie-break; by deadline, the open
cases come before the closed ones (`OPEN_FIRST`: two groups, each read in pieces by status
from (status, key, id), one after the other). The next and previous
pages are found from the last or first case shown (keyset pagination: an index seek, not
``OFFSET``), the last page by reading the list from its end, and a page typed by number from
whichever end is nearer. The count reads at most `COUNT_CAP` + 1 index entries: past that, the
list says "10,000+" and the pages are not numbered to the end.

Each order has an index ending in id (migrations 0008 and 0014): (received_at, id), the
deadline ``coalesce(due_at, triage_due_at, received_at)`` and ``coalesce(updated_at,
received_at)``, each also after status or department where a list is usually narrowed so.

A page reads about what it shows, whatever the number of cases (migration 0027): the overdue
filter is a test of each case's columns on partial indexes holding only the cases that may be
overdue (`overdue_clause`); a window of receipt by deadline or last change is read from that
day on in the order's index (`order_ranges`); a handler's open cases in pieces by status,
each in order from (department_id, status, key, id).

The counts per filter value (`facet_counts`: status, department, channel, kind, urgent, at
risk, overdue, finding, has attachments) are read from the maintained tallies
(`triage.tallies`) when every filter chosen is one they are kept by, else counted from the
cases when the list's untallied filters leave at most `COUNT_CAP` of them (or a search's
matches, at most `triage.search.SEARCH_CAP`), else not shown; overdue and at risk can always
be counted up to `COUNT_CAP` from their partial indexes, and each finding from the findings
(`_by_rule`: as many as the cases needing attention). "Has attachments" is not counted past
`COUNT_CAP`: the attachments are as many as the cases that ever had one, closed ones
included, so a count driven by them costs what the office's history holds.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    ColumnElement,
    Index,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.visitors import replacement_traverse

from intake.normalise import clean_line
from intake.submission import Channel, Kind
from triage import tallies
from triage.models import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    Attachment,
    Case,
    CaseFinding,
    Department,
    SavedView,
    Status,
)
from triage.rules.findings import Rule

__all__ = [
    "ALL_FACETS",
    "AT_RISK_CLAUSE",
    "COUNT_CAP",
    "DEADLINE_KEY",
    "FLAGS",
    "MORE",
    "NOT_COUNTED",
    "OPEN_FIRST",
    "SORTS",
    "UPDATED_KEY",
    "WAITING",
    "CasePage",
    "ListFilters",
    "OrderGroup",
    "OrderRanges",
    "count_cases",
    "default_view",
    "facet_counts",
    "found_page",
    "list_page",
    "list_risk",
    "order_found",
    "order_group",
    "order_groups",
    "order_ranges",
    "save_view",
    "saved_views",
    "shared_views",
    "unindexed",
    "unindexed_clauses",
]

COUNT_CAP = 10_000
FINDING_SCAN = 1_000
"""Findings of one rule read at most to count them under a filter on a list longer than
`COUNT_CAP` (`_by_rule`): a rule with more is not counted."""
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
Index("ix_cases_department_updated", Case.department_id, UPDATED_KEY, Case.id)  # migration 0030
# No index of its own on status, received_at, department_id or risk (migration 0030 dropped
# them): the composite indexes led by each answer the same queries, and every index costs
# each case written.
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
"""Order name → (key, newest/largest first). Ties go by case id the same way (the indexes end
in it, and a cursor needs a total order): ids are given as cases are registered, which is the
order of receipt except for a case registered after its receipt time (a call imported from
the call centre's log, mail fetched late), placed among equal keys by its registration."""

DAYS = (date(1900, 1, 1), date(9998, 12, 31))
"""The dates a list's date filters accept, both included."""

CLOSED_STATUSES = (Status.CLOSED, Status.MERGED, Status.REJECTED)
_OPEN = [str(s) for s in sorted(OPEN_STATUSES)]
OPEN_CLAUSE = Case.status.in_(_OPEN)
"""The "open" filter's clause (one object: `list_page` leaves it out of the pieces by
status that split it, each of which implies it)."""
_FINAL = [str(s) for s in sorted(FINAL_STATUSES)]

OPEN_FIRST_KEY = case(
    (Case.status.in_([literal(v, literal_execute=True) for v in _FINAL]), literal_column("1")),
    else_=literal_column("0"),
)
"""0 for an open case, 1 for a closed, merged or rejected one: the first key of "nearest
deadline first" (`OPEN_FIRST`), before the deadline and the id. Written with constants, as
ix_cases_open_first (migration 0040) has it, so that both databases match the expression."""
# The deadline order of the lists that hold cases of both groups (migration 0040).
Index("ix_cases_open_first", OPEN_FIRST_KEY, DEADLINE_KEY, Case.id)


@dataclass(frozen=True)
class OrderGroup:
    """Cases that an order shows all together, before those of the next group: those whose
    `OPEN_FIRST_KEY` is ``number`` (the cases of ``statuses``), read from ix_cases_open_first.

    ``clause`` (key = number) on SQLite, ``ranged`` (key BETWEEN number AND number) on
    PostgreSQL, with the key in the order asked for either way. SQLite seeks the index only
    on an equality (with a range it read the group from its start to the cursor).
    PostgreSQL seeks it on the range too, and, the key not being constant there, no other
    index gives the order: with the equality it walked ix_cases_deadline backward through
    every open case due after the last closed one to read the closed cases from their end
    (7,968 rows at 1,000,000 cases).

    ``parts``: the group read in pieces, one per status, each in order from an index led by
    it (a department's (department_id, status, key, id)); empty: in one piece."""

    number: int
    statuses: frozenset[str]
    clause: ColumnElement[bool]
    ranged: ColumnElement[bool]
    parts: tuple[ColumnElement[bool], ...] = ()


def _group(number: int, statuses: Sequence[str]) -> OrderGroup:
    key = OPEN_FIRST_KEY
    return OrderGroup(number, frozenset(statuses), key == number, key.between(number, number))


OPEN_FIRST = (_group(0, _OPEN), _group(1, _FINAL))
""""Nearest deadline first": the open cases (the overdue first, their deadlines past), then
the closed, merged and rejected ones, whose deadlines are long past and need nothing more.
By deadline alone, a list of every case opened on a year's closed cases."""


def order_groups(filters: ListFilters, sort: str, *, pieces: bool) -> tuple[OrderGroup, ...]:
    """The groups a list in order ``sort`` shows one after the other (for `list_page`):
    `OPEN_FIRST` by deadline when the filters keep cases of both (no status filter, no
    overdue or at risk, which keep open cases only); else none, the list is one group.

    ``pieces``: the list is a department's (a handler's, or the department filter): each
    group is then read in pieces by status, from (department_id, status, key, id). As one
    piece, PostgreSQL, which expects a department's open cases spread evenly along its
    deadlines, walked (department_id, deadline, id) through the department's closed cases
    before the first open one."""
    if sort != "deadline" or filters.status or filters.overdue or filters.at_risk:
        return ()
    if not pieces:
        return OPEN_FIRST
    return tuple(
        replace(g, parts=tuple(Case.status == s for s in sorted(g.statuses))) for g in OPEN_FIRST
    )


def order_group(status: str, sort: str) -> int:
    """The group of order ``sort`` (`OPEN_FIRST` for "deadline") a case of ``status`` is in:
    its index, 0 for an order of one group."""
    if sort != "deadline":
        return 0
    return next((g.number for g in OPEN_FIRST if status in g.statuses), 0)


AT_RISK_CLAUSE = and_(
    Case.risk == "at_risk",
    # Implied by the test above, and written as ix_cases_attention's predicate (a constant):
    # SQLite reads a partial index only for a query naming its predicate. That index holds
    # just the cases with a risk, so the list reads them, whatever the number of cases.
    Case.risk != literal("", literal_execute=True),
    # Tested on those rows (the index has the status), not searched in a status index:
    # SQLite read every open case from ix_cases_facets instead.
    func.coalesce(Case.status, Case.status).in_(_OPEN),
)
"""The "at risk" filter's clause: open cases the last supervision tick found at risk
(`cases.risk`). The dashboard's "At risk" tile counts the same clause from the tallies, so
the tile and the list it links to agree."""


@dataclass(frozen=True)
class ListFilters:
    """The filters of a case list as its query string carries them (all optional).

    ``status``: "open" or a `Status`; ``department``, ``channel``, ``kind``: a code;
    ``finding``: a supervision rule name; ``urgent``, ``overdue``, ``at_risk``,
    ``attachments``: "1";
    ``received_from`` … ``due_to``: local dates, both ends included.
    """

    status: str = ""
    department: str = ""
    channel: str = ""
    kind: str = ""
    urgent: bool = False
    overdue: bool = False
    at_risk: bool = False
    finding: str = ""
    attachments: bool = False
    received_from: date | None = None
    received_to: date | None = None
    due_from: date | None = None
    due_to: date | None = None

    @classmethod
    def parse(
        cls,
        args: Mapping[str, str],
        known: Mapping[str, Collection[str]] | None = None,
        swapped: list[str] | None = None,
    ) -> tuple[ListFilters, list[str]]:
        """The filters of a query string, and the names of the parameters that were not
        understood (a bad date, an unknown status, channel or kind; a department code or
        finding not in `known`'s "department" or "finding", when given): those are left
        out, never an error. Dates are read in their NFKC form (２０２６－１１－０１ typed
        in a Chinese input method's full-width mode is 2026-11-01). A range typed backwards
        (from after to: the two boxes mixed up, easy with a phone's date pickers) is read
        the right way round, and its name ("received", "due") added to ``swapped``."""
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
            allowed = set(Channel) if name == "channel" else (known or {}).get(name)
            if raw and allowed is not None and raw not in allowed:
                bad.append(name)
            elif raw:
                values[name] = raw
        kind = args.get("kind", "")
        if kind in set(Kind):
            values["kind"] = kind
        elif kind:
            bad.append("kind")
        for name in ("urgent", "overdue", "at_risk", "attachments"):
            values[name] = args.get(name, "") in ("1", "on", "true", "yes")
        for name in ("received_from", "received_to", "due_from", "due_to"):
            raw = unicodedata.normalize("NFKC", args.get(name, "")).strip()
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
        for name in ("received", "due"):
            first, last = values.get(f"{name}_from"), values.get(f"{name}_to")
            if first is not None and last is not None and first > last:
                values[f"{name}_from"], values[f"{name}_to"] = last, first
                if swapped is not None:
                    swapped.append(name)
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
        # Under "overdue" the other filters are tested on the rows of its partial indexes
        # rather than searched in their own (`unindexed`).
        col = unindexed if self.overdue else _same
        if self.status == "open":
            where.append(OPEN_CLAUSE)
        elif self.status:
            where.append(col(Case.status) == self.status)
        if self.department:
            where.append(
                col(Case.department_id)
                == select(Department.id).where(Department.code == self.department).scalar_subquery()
            )
        if self.channel:
            where.append(col(Case.channel) == self.channel)
        if self.kind:
            where.append(col(Case.kind) == self.kind)
        if self.urgent:
            # "= true", not "IS true": the term of the partial index ix_cases_urgent.
            where.append(col(Case.urgent) == true())
        if self.overdue:
            where.append(overdue_clause(now))
        if self.at_risk:
            where.append(AT_RISK_CLAUSE)
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


def _same(column: Any) -> Any:
    return column


def unindexed(column: Any) -> Any:
    """``column`` as coalesce(column, column): the same value, which no index answers.

    For the filters beside "overdue": SQLite, which keeps no statistics, took an equality
    on an indexed column (channel = 'phone') for a few rows and read a third of the cases
    from the table rather than the overdue filter's small covering index
    (`ix_cases_overdue_received`), 45 ms twice a page at 100,000 cases."""
    return func.coalesce(column, column, type_=column.type)


def unindexed_clauses(clauses: Sequence[ColumnElement[bool]]) -> list[ColumnElement[bool]]:
    """``clauses`` with each of `Case`'s columns `unindexed` (a user's scope beside the
    overdue filter: a department's cases were read from the table, as above)."""

    def swap(element: Any) -> Any:
        if isinstance(element, Column) and element.table is Case.__table__:
            return unindexed(element)
        return None

    return [replacement_traverse(c, {}, swap) for c in clauses]


def _day_start(day: date, timezone: ZoneInfo) -> datetime:
    return datetime.combine(day, day_time(0), timezone).astimezone(UTC)


def _flag(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """``condition`` as CASE WHEN condition THEN 1 ELSE 0 END = 1: the same rows, but no
    index answers it, so that a partial index with this predicate is read in its order
    rather than the condition's terms searched in their own indexes and sorted (SQLite)."""
    flag = case((condition, literal_column("1")), else_=literal_column("0"))
    return flag == literal_column("1")


def _constants(values: Sequence[str]) -> list[Any]:
    return [literal(v, literal_execute=True) for v in values]


OVERDUE_CANDIDATES = _flag(
    or_(
        Case.status.in_(_constants(("received", "triage", "assigned", "in_progress"))),
        Case.risk == literal("overdue", literal_execute=True),
    )
)
"""The cases that may be overdue: waiting or being handled (their deadline runs), or found
overdue by the last supervision tick. The predicate of the overdue filter's partial indexes
(migration 0027), written with constants (not bound parameters) so that both databases see
that a query with this term may read them; a CASE, not an OR, which SQLite answered from the
status and risk indexes (every candidate read and sorted) rather than from those."""

_OVERDUE_COLUMNS = (
    Case.status,
    Case.risk,
    Case.triage_due_at,
    Case.due_at,
    Case.channel,
    Case.urgent,
    Case.department_id,
    Case.kind,
)
# The overdue filter's indexes (migration 0027): only the cases that may be overdue, in the
# orders of the lists, with every column the overdue test and the other filters read, so
# that a page walks them in order and stops once it has its cases, and a count reads no row.
Index(
    "ix_cases_overdue_received",
    Case.received_at,
    Case.id,
    *_OVERDUE_COLUMNS,
    sqlite_where=OVERDUE_CANDIDATES,
    postgresql_where=OVERDUE_CANDIDATES,
)
Index(
    "ix_cases_overdue_deadline",
    DEADLINE_KEY,
    Case.id,
    Case.received_at,
    *_OVERDUE_COLUMNS,
    sqlite_where=OVERDUE_CANDIDATES,
    postgresql_where=OVERDUE_CANDIDATES,
)


WAITING = _flag(Case.status.in_(_constants(("received", "triage"))))
"""Cases waiting for dispatch (the triage queue): ix_cases_queue's predicate."""

# The triage queue in its order (urgent first, then by deadline), of the waiting cases only:
# the page reads its 50 rows, not every waiting case sorted (old cases left waiting grow with
# the office's history).
Index(
    "ix_cases_queue",
    Case.urgent.desc(),
    DEADLINE_KEY,
    Case.id,
    sqlite_where=WAITING,
    postgresql_where=WAITING,
)
# A department's open cases found at risk or overdue, overdue first, then by handling
# deadline (web/supervision_findings.py `attention_cases`, on a handler's list): the page
# reads its rows instead of every open case of the department.
Index(
    "ix_cases_attention",
    Case.department_id,
    Case.risk.desc(),
    Case.due_at,
    Case.id,
    Case.status,
    sqlite_where=Case.risk != literal("", literal_execute=True),
    postgresql_where=Case.risk != literal("", literal_execute=True),
)
# A department's cases of one status in each order (a handler's open cases, by deadline
# or by receipt, read in pieces by status: `list_page`'s ``parts``).
Index("ix_cases_department_status_deadline", Case.department_id, Case.status, DEADLINE_KEY, Case.id)
Index(
    "ix_cases_department_status_received",
    Case.department_id,
    Case.status,
    Case.received_at,
    Case.id,
)
# Any list in order of receipt, read from the index alone (a page typed by number counts its
# offset in index entries instead of table rows).
Index("ix_cases_received_id", Case.received_at, Case.id)
# A case's deadline and last change come after its receipt, but nothing enforces it: these
# (normally empty) indexes hold the cases where they do not, so that a list narrowed by dates
# may be read from the order's index in pieces (`order_ranges`) and still miss none.
Index(
    "ix_cases_deadline_before_receipt",
    Case.received_at,
    Case.id,
    sqlite_where=Case.received_at > DEADLINE_KEY,
    postgresql_where=Case.received_at > DEADLINE_KEY,
)
Index(
    "ix_cases_updated_before_receipt",
    Case.received_at,
    Case.id,
    sqlite_where=Case.received_at > UPDATED_KEY,
    postgresql_where=Case.received_at > UPDATED_KEY,
)


@dataclass(frozen=True)
class OrderRanges:
    """A list narrowed by dates, split for `list_page`: the cases ``within`` one range of its
    order's index, and those ``outside`` it, which satisfy ``odd`` (a partial index's
    predicate that normally no case satisfies) and ``bound``. ``window``: the list's own
    clause of the dates, which ``within`` repeats in a form no index answers, left out of
    the range's query."""

    within: ColumnElement[bool]
    odd: ColumnElement[bool]
    bound: ColumnElement[bool]
    window: ColumnElement[bool] | None = None


def order_ranges(filters: ListFilters, sort: str, timezone: ZoneInfo) -> OrderRanges | None:
    """How a list narrowed by dates is read in its order from one range of the order's index
    (for `list_page`), or None when its dates give no such range.

    Received since a day, by deadline (or last change): the cases whose deadline is on or
    after that day, a range of the deadline's index, and those whose deadline is before their
    own receipt (none, normally: `ix_cases_deadline_before_receipt`). Without the range a
    page walked the deadline's index from its start, through every older case (910,000
    buffers at 1,000,000 cases), or read and sorted every case of the window. Due by a day,
    newest received first: those received before the end of that day, and those due before
    their receipt. Every case of the list is in exactly one of the two."""
    key = SORTS.get(sort, SORTS["received"])[0]
    if filters.received_from and sort in ("deadline", "updated"):
        start = _day_start(filters.received_from, timezone)
        # The window tested on each row of the range, not searched in ix_cases_received_at:
        # PostgreSQL, which cannot tell that a recent case's deadline is recent too, expected
        # a few of a department's cases in both ranges, read all of the window's and sorted
        # them (a department's month: 634 buffers at 100,000 cases, ten times that at 1M).
        unindexed = func.coalesce(Case.received_at, Case.received_at) >= start
        return OrderRanges(
            and_(key >= start, unindexed),
            Case.received_at > key,
            key < start,
            window=Case.received_at >= start,
        )
    if filters.due_to and sort == "received":
        end = _day_start(filters.due_to + timedelta(days=1), timezone)
        return OrderRanges(
            Case.received_at < end, Case.received_at > DEADLINE_KEY, Case.received_at >= end
        )
    return None


def overdue_clause(now: datetime) -> ColumnElement[bool]:
    """Open cases past their deadline (dispatch or handling), or found overdue by the last
    supervision tick (`cases.risk`).

    A test of each case's own columns under `OVERDUE_CANDIDATES` (which every overdue case
    satisfies), so that the lists read the overdue filter's partial indexes: a page walks
    one in its order and stops at its size, whatever the number of overdue cases (tens of
    thousands at 1,000,000, with old cases left open). The ids of every overdue case, read
    first and joined, cost what all of them cost on every page.

    The deadline's test is a CASE, which no index answers: as an OR of indexable terms SQLite
    read the ids of every overdue case from three indexes and sorted them instead."""
    past_deadline = case(
        (Case.status.in_([Status.RECEIVED, Status.TRIAGE]), Case.triage_due_at < now),
        (Case.status.in_([Status.ASSIGNED, Status.IN_PROGRESS]), Case.due_at < now),
        else_=false(),
    )
    return and_(
        OVERDUE_CANDIDATES,
        or_(past_deadline, and_(Case.status.in_(_OPEN), Case.risk == "overdue")),
    )


def list_risk(case: Case, now: datetime) -> str:
    """The mark a case carries wherever it is shown (list and queue rows, kanban cards, the
    case page): "at_risk", "overdue" or "", by the filters' own rules, so that the amber
    cases are exactly those the "at risk" filter (`AT_RISK_CLAUSE`) and the dashboard's tile
    give, and the red ones those the overdue filter (`overdue_clause`) gives.

    "at_risk": open, and the last supervision tick found it at risk (`Case.risk`); an empty
    risk is the tick's verdict of no risk, never guessed from the clock. "overdue": open and
    past its running deadline (`Case.is_overdue`), or found overdue by the tick. A case found
    at risk whose deadline has passed since is in both filters: it stays amber until the next
    tick (minutes) finds it overdue, as the "at risk" filter still lists it."""
    if case.status not in OPEN_STATUSES:
        return ""
    if case.risk == "at_risk":
        return "at_risk"
    if case.risk == "overdue" or case.is_overdue(now):
        return "overdue"
    return ""


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MICROSECONDS = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def sort_value(c: Case, sort: str) -> datetime:
    """``c``'s value of the key of order ``sort`` (a key of `SORTS`, else "received"), as
    the database sorts it (`DEADLINE_KEY`, `UPDATED_KEY`)."""
    if sort == "deadline":
        return c.due_at or c.triage_due_at or c.received_at
    if sort == "updated":
        return c.updated_at or c.received_at
    return c.received_at


_ORDER_CHUNK = 500


def order_found(session: Session, case_ids: Sequence[int], sort: str) -> list[int]:
    """``case_ids`` (a search's matches) in order ``sort`` (a key of `SORTS`; another is
    "received"), ties by case id as the lists break them; by deadline the open cases first
    (`OPEN_FIRST`), as `list_page` shows them.

    A search reads at most `triage.search.SEARCH_CAP` matches, the newest (its cost stays
    bounded however many cases match): a capped search is ordered among the matches read,
    so a nearer deadline among older matches beyond the cap is not shown. Each key is read
    by primary key, ``_ORDER_CHUNK`` ids a statement."""
    key, descending = SORTS.get(sort, SORTS["received"])
    ids = list(dict.fromkeys(case_ids))
    rows: list[Any] = []
    for start in range(0, len(ids), _ORDER_CHUNK):
        chunk = ids[start : start + _ORDER_CHUNK]
        rows += session.execute(select(Case.id, key, Case.status).where(Case.id.in_(chunk))).all()
    # The group is never reversed: open cases first whichever way the key goes.
    rows.sort(key=lambda r: (r[1], r[0]), reverse=descending)
    rows.sort(key=lambda r: order_group(r[2], sort))
    return [r[0] for r in rows]


def found_page(
    ordered: Sequence[int],
    *,
    size: int,
    capped: bool,
    page: int = 1,
    last: bool = False,
    after: int | None = None,
    before: int | None = None,
) -> CasePage:
    """The page of a search's results ``ordered`` (every case the list shows under the
    search: at most `triage.search.SEARCH_CAP` matches, ``capped`` when it matched more)
    that the request asks for: the ``last`` one, the one holding the result that follows
    case ``after`` (or precedes ``before``; a case not among them: page ``page``), or page
    number ``page`` (1 when odd, the last when beyond).

    Pages are cut at fixed places of ``ordered`` (every ``size`` results), whichever way the
    user came, so that paging back from the last page shows each result once, as paging on
    from the first does."""
    pages = max(1, -(-len(ordered) // size))
    cursor = after if after is not None else before
    if last:
        page = pages
    elif cursor is not None and cursor in ordered:
        at = list(ordered).index(cursor)
        page = (at + 1) // size + 1 if after is not None else max(0, at - 1) // size + 1
    page = min(max(1, page), pages)
    shown = list(ordered[(page - 1) * size : page * size])
    return CasePage(shown, page, len(ordered), capped, page > 1, page < pages, size)


def cursor_text(c: Case, sort: str) -> str:
    """A paging cursor for the link after or before ``c`` in order ``sort``:
    "<case id>.<its key's value in microseconds since 1970 UTC>", by deadline followed by
    ".<its group>" (`order_group`: 0 open, 1 closed). Carrying the value and group as the
    page showed them, the next page starts where this one ended even when the case has moved
    since (handled: a newer last change; extended: a later deadline; closed: the next group).
    Without the value, the page read the case's key as it was then: cases repeated or
    skipped."""
    value = f"{c.id}.{(sort_value(c, sort) - _EPOCH) // timedelta(microseconds=1)}"
    return f"{value}.{order_group(c.status, sort)}" if sort == "deadline" else value


def parse_cursor(raw: str) -> tuple[int, datetime | None, int | None] | None:
    """(case id, key value or None, group or None) of a cursor of `cursor_text`, or of a
    bare case id (links of before: the key and group read from the case); None when ``raw``
    is anything else (ASCII digits only, at most 9 for the id and 18 for the value, a date
    the calendar has, a group of `OPEN_FIRST`'s: 0 or 1)."""

    def number(part: str, digits: int) -> int | None:
        ok = 0 < len(part) <= digits and part.isascii() and part.isdigit()
        return int(part) if ok else None

    head, dot, tail = raw.partition(".")
    case_id = number(head, 9)
    if case_id is None:
        return None
    if not dot:
        return case_id, None, None
    tail, dot, last = tail.partition(".")
    value = number(tail, 18)
    if value is None or value > _MAX_MICROSECONDS:
        return None
    group = number(last, 1) if dot else None
    if dot and (group is None or group >= len(OPEN_FIRST)):
        return None
    return case_id, _EPOCH + timedelta(microseconds=value), group


def list_page(
    session: Session,
    where: Sequence[ColumnElement[bool]],
    *,
    size: int,
    page: int = 1,
    after: int | None = None,
    before: int | None = None,
    at: datetime | None = None,
    group: int | None = None,
    last: bool = False,
    sort: str = "received",
    parts: Sequence[ColumnElement[bool]] = (),
    ranges: OrderRanges | None = None,
    scope: Sequence[ColumnElement[bool]] = (),
    groups: Sequence[OrderGroup] = (),
) -> CasePage:
    """The page of cases satisfying ``where``, in order ``sort`` (a key of `SORTS`; another
    is "received"), that the request asks for: the one after case id ``after`` or before
    ``before`` (``page`` is then only its shown number, 0 if not known), the ``last`` one, or
    page number ``page``. A cursor naming no case gives the first page. ``at``, ``group``:
    the cursor case's key value and group as the link carried them (`parse_cursor`), the
    place read from the link rather than from the case as it is now (which may have moved
    since); None: read from the case.

    ``groups``: the list shown group after group (`order_groups`), each in the order and read
    in its own pieces by status; a cursor's place is in its case's group. Empty: one group.

    ``parts``: clauses that split the list into pieces each read in order from an index
    (e.g. one per status of "open": an IN list cannot be read in the order of
    (status, deadline, id)); a page is then merged from the pieces' first rows.

    ``ranges``: the list split by `order_ranges`: its range read in the order's index
    however many cases the list has (stopping at the page's end), and the odd cases outside
    it (normally none, read by their own index first).

    ``scope``: what the user may see; a cursor naming a case outside it is no cursor (its
    key would tell, page by page, when another department's case came in)."""
    key, descending = SORTS.get(sort, SORTS["received"])
    total, capped = count_cases(session, where)
    pages = None if capped else max(1, -(-total // size))
    # The groups, each (its clauses, its pieces): the list itself when it is one group.
    ranged = session.get_bind().dialect.name == "postgresql"
    segments: list[tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]] = (
        [([*where, g.ranged if ranged else g.clause], list(g.parts)) for g in groups]
        if groups
        else [(list(where), list(parts))]
    )
    odd: list[int] | None = None
    small = False
    if ranges is not None:
        segments = [(w, [ranges.within]) for w, _ in segments]
        # Outside the range: normally none, read from their partial index by id alone (a
        # query with the other filters too was planned over another index, every case of
        # the window read from the table, as the planner cannot tell that they are none).
        odd = list(session.scalars(select(Case.id).where(ranges.odd).limit(_MERGE_LIMIT + 1)))
    elif len(where) > len(scope) + (1 if parts else 0) and not capped:
        # A filtered list of at most COUNT_CAP cases: read them by the filters' indexes and
        # sort them. Both databases walked the order's index instead, through every case
        # before the first that matched (received in the last 30 days by deadline: 90,000 of
        # 100,000; 270 ms): SQLite has no statistics of a range's size, and PostgreSQL, which
        # has, expects the matches spread evenly along the order. The key wrapped in
        # coalesce(key, key), the same value, is no index's expression.
        key = func.coalesce(key, key, type_=key.type)
        # And in one piece: the pieces by status were there to read an order's index. By
        # deadline, the open cases first in the same query (`read`), the group's key too
        # wrapped so: SQLite read a whole group by ix_cases_open_first rather than the
        # filters' indexes.
        segments = [(w, []) for w, _ in segments]
        small = True
    # Else, when the pieces' filter (e.g. "open", in pieces by status) is the only one, each
    # piece is read in order from an index holding exactly its cases ((status, key, id), or
    # for a department (department_id, status, key, id)): the page reads its own rows.
    group_key = func.coalesce(OPEN_FIRST_KEY, OPEN_FIRST_KEY) if small else OPEN_FIRST_KEY
    forward = (key.desc(), Case.id.desc()) if descending else (key.asc(), Case.id.asc())
    backward = (key.asc(), Case.id.asc()) if descending else (key.desc(), Case.id.desc())

    def ordered(back: bool, grouped: bool) -> tuple[Any, ...]:
        """The order of a read: the list's (``back``: reversed), after the group's key when
        ``grouped`` and the list has groups. (Not in a group's own queries on SQLite: there
        the key is equal to a parameter, and SQLite, not seeing that the index gives the
        order, sorted the rest of the group.)"""
        order = backward if back else forward
        if not groups or not grouped:
            return order
        return (group_key.desc() if back else group_key.asc(), *order)

    # The list in one query in the order of ix_cases_open_first, groups and all (first,
    # last and typed pages; a small list's cursors too): no group counted to find where an
    # offset falls.
    whole = len(segments) > 1 and not any(p for _, p in segments)
    in_groups = {id(c) for g in groups for c in (g.clause, g.ranged)}

    def read_group(
        number: int, extra: Sequence[Any], back: bool, limit: int, offset: int = 0
    ) -> list[int]:
        group_where, group_parts = segments[number]
        if not group_parts or (offset + limit > _MERGE_LIMIT and ranges is None):
            order = ordered(back, grouped=ranged)
            query = select(Case.id).where(*group_where, *extra).order_by(*order)
            return _ids(session, query.offset(offset).limit(limit))
        rows: list[Any] = []
        # The "open" filter (or a group's statuses) left out of its pieces by status: with
        # both, PostgreSQL counted the status twice, expected a few rows of a piece and read
        # and sorted all of them. (Only the pieces by status do: each implies it. A date
        # range's piece does not.)
        split = ranges is None
        pieces_where = group_where
        if split:
            pieces_where = [
                c for c in group_where if c is not OPEN_CLAUSE and id(c) not in in_groups
            ]
        order = ordered(back, grouped=ranged and not split)
        if ranges is not None and ranges.window is not None:
            window = ranges.window
            pieces_where = [c for c in pieces_where if not c.compare(window)]
        for part in group_parts:
            query = select(Case.id, key).where(*pieces_where, part, *extra).order_by(*order)
            rows += session.execute(query.limit(offset + limit)).all()
        if ranges is not None and odd:
            query = select(Case.id, key).where(*group_where, ranges.bound, *extra)
            if len(odd) <= _MERGE_LIMIT:
                # Sorted here (a few rows), not by walking the order's index.
                query = query.where(Case.id.in_(odd))
            else:
                unindexed = func.coalesce(key, key, type_=key.type)
                back_order = (unindexed.desc(), Case.id.desc())
                if descending == back:
                    back_order = (unindexed.asc(), Case.id.asc())
                query = query.where(ranges.odd).order_by(*back_order).limit(offset + limit)
            rows += session.execute(query).all()
        rows.sort(key=lambda r: (r[1], r[0]), reverse=descending != back)
        return [r[0] for r in rows[offset : offset + limit]]

    def read(
        extra: Sequence[Any], back: bool, limit: int, offset: int = 0, start: int | None = None
    ) -> list[int]:
        """Up to ``limit`` ids of the list from its start (``back``: its end), skipping
        ``offset``; with ``start``, from that group on, ``extra`` (a cursor's seek) applied
        to it. A group wholly within the offset is counted (up to the offset), not read."""
        numbers = list(range(len(segments)))[:: -1 if back else 1]
        if start is not None:
            numbers = numbers[numbers.index(start) :]
        if whole and (start is None or small):
            query = select(Case.id).where(*where)
            if start is not None:
                beyond = group_key < start if back else group_key > start
                query = query.where(or_(beyond, and_(group_key == start, *extra)))
            query = query.order_by(*ordered(back, grouped=True))
            return _ids(session, query.offset(offset).limit(limit))
        ids: list[int] = []
        for number in numbers:
            if len(ids) >= limit:
                break
            seek = extra if start is None or number == start else []
            if offset and len(segments) > 1:
                n, more = count_cases(session, [*segments[number][0], *seek], offset)
                if not more:
                    offset -= n
                    continue
            ids += read_group(number, seek, back, limit - len(ids), offset)
            offset = 0
        return ids

    if after is not None or before is not None:
        cursor = after if after is not None else before
        # Given, the value is the user's own: it tells nothing of a case outside the scope.
        place: Any = (
            literal(at, Case.received_at.type)
            if at is not None
            else select(key).where(Case.id == cursor, *scope).scalar_subquery()
        )
        start = 0
        if len(segments) > 1:
            if group is None:
                status = session.scalar(select(Case.status).where(Case.id == cursor, *scope))
                group = next((g.number for g in groups if status in g.statuses), 0)
            start = min(group, len(segments) - 1)
        # Walking the list's way (after) or against it (before).
        down = (after is not None) == descending
        if down:
            seek = and_(key <= place, or_(key < place, Case.id < cursor))
        else:
            seek = and_(key >= place, or_(key > place, Case.id > cursor))
        if after is not None:
            ids = read([seek], False, size + 1, start=start)
            if ids:
                return CasePage(ids[:size], page, total, capped, True, len(ids) > size, size)
        else:
            ids = read([seek], True, size + 1, start=start)
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
        return list_page(
            session,
            where,
            size=size,
            last=True,
            sort=sort,
            parts=parts,
            ranges=ranges,
            groups=groups,
        )
    return CasePage(ids[:size], page, total, capped, page > 1, len(ids) > size, size)


# -- counts per filter value ------------------------------------------------------------------

FACETS: Mapping[str, Any] = {
    "status": Case.status,
    "department": Case.department_id,
    "channel": Case.channel,
    "kind": Case.kind,
}
"""Filter name → the column its values are counted by (the tallies' dimensions)."""

FLAGS = ("urgent", "at_risk", "overdue", "attachments")
"""Filters of one value ("1"): each counted as {True: cases}."""

ALL_FACETS = (*FACETS, *FLAGS, "finding")
"""Every filter counted per value: ``finding`` by supervision rule."""

_GROUPED = (*FACETS, "urgent", "at_risk")
"""The filters the tallies count (at risk: a risk of "at_risk" on an open case)."""

MORE = COUNT_CAP + 1
"""A count of more than `COUNT_CAP` (a capped count: "10,000+")."""
NOT_COUNTED = -1
"""A value whose count would cost too much under the filters chosen (a finding's rule with
more than `FINDING_SCAN` findings): shown without a count, not as zero."""

_Row = dict[str, Any]


def facet_counts(
    session: Session,
    scope: Sequence[ColumnElement[bool]],
    filters: ListFilters,
    *,
    now: datetime,
    timezone: ZoneInfo,
    facets: Sequence[str] = ALL_FACETS,
) -> dict[str, dict[Any, int]]:
    """{filter name: {value: cases}} for each of ``facets`` that can be counted at a bounded
    cost: the cases the user may see (``scope``) under every chosen filter but that one, by
    value (department: by id; a flag of `FLAGS`: True; finding: the rule; status "open" is
    the sum of the open statuses, added by the caller if wanted). A facet left out is not
    counted; a count of `MORE` means more than `COUNT_CAP`.

    - When the scope and the filters that are not in the tallies (overdue, finding,
      attachments, dates) allow (none of those chosen), status, department, channel, kind,
      urgent and at risk are read from the tallies (`triage.tallies`): a few thousand rows at
      most whatever the number of cases. Overdue, finding and attachments are then counted
      over the list's own cases when the tallies say they are at most `COUNT_CAP`; past that,
      overdue by a capped count on its partial indexes (`overdue_clause`) and finding from
      the findings (`_by_rule`), attachments not.
    - Otherwise every facet is counted in one grouped read of the cases under the filters
      that are not tallied, when those are at most `COUNT_CAP` (``scope`` may hold a search's
      matches, `Case.id` IN …, which always are); past that, overdue and at risk only, each a
      capped count on its partial index, and finding from the findings. No counts rather
      than a count over every case.
    """
    department_id = None
    if filters.department:
        department_id = session.scalar(
            select(Department.id).where(Department.code == filters.department)
        )
    chosen = _Chosen(filters, department_id)
    rest = replace(filters, **{n: ListFilters().__getattribute__(n) for n in _GROUPED})
    rest_where = [*scope, *rest.clauses(now, timezone)]
    on = tallies.on_tallies(rest_where)
    if on is not None:
        rows = [_tally_row(r) for r in tallies.totals(session, on, list(tallies.DIMENSIONS))]
        counts, listed = chosen.count(rows, [f for f in facets if f in _GROUPED])
        wanted = [f for f in facets if f in ("overdue", "attachments", "finding")]
        if not wanted:
            return counts
        if listed <= COUNT_CAP:
            # None of these three is chosen: the list's own cases are the ones to count.
            found = _grouped(session, [*scope, *filters.clauses(now, timezone)], now)
            if found is not None:
                counts.update(chosen.count(found[0], [f for f in wanted if f != "finding"])[0])
                if "finding" in wanted:
                    counts.update(chosen.count(found[1], ["finding"])[0])
        else:
            if "overdue" in wanted:
                overdue = _capped(session, scope, filters, "overdue", now, timezone)
                counts["overdue"] = {True: overdue}
            if "finding" in wanted:
                counts["finding"] = _by_rule(session, scope, filters, now, timezone)
        return counts
    found = _grouped(session, rest_where, now)
    if found is None:
        counts = {
            name: {True: _capped(session, scope, filters, name, now, timezone)}
            for name in ("overdue", "at_risk")
            if name in facets
        }
        if "finding" in facets:
            counts["finding"] = _by_rule(session, scope, filters, now, timezone)
        return counts
    base, by_rule = found
    counts = chosen.count(base, [f for f in facets if f != "finding"])[0]
    if "finding" in facets:
        if filters.finding:
            # The other rules' counts are of the cases without the rule chosen.
            others = _grouped(
                session, [*scope, *replace(rest, finding="").clauses(now, timezone)], now
            )
            if others is None:
                counts["finding"] = _by_rule(session, scope, filters, now, timezone)
                return counts
            by_rule = others[1]
        counts.update(chosen.count(by_rule, ["finding"])[0])
    return counts


def _by_rule(
    session: Session,
    scope: Sequence[ColumnElement[bool]],
    filters: ListFilters,
    now: datetime,
    timezone: ZoneInfo,
) -> dict[Any, int]:
    """{rule: the cases the list would show with that finding picked} (the other filters
    kept), each up to `COUNT_CAP` (`MORE` past it); rules of no case left out.

    Read from the findings, not the cases: a finding is the last supervision tick's, on a
    case still needing attention, so they are as many as those cases (and the spot checks'
    sample), however many closed cases the office has kept. Each rule's findings are read
    by their index, and each one's case by primary key, with every filter tested on that
    row: a scalar subquery per finding, which neither database turns into a join (as a
    join, PostgreSQL read every case of a small office and hashed them; at scale it could
    walk a filter's index of the cases instead, tens of thousands of open ones at 1,000,000
    cases). Without any filter, the findings alone. One statement, a capped count per rule.

    Cost: under a filter, each rule's findings up to `FINDING_SCAN` of them, a primary-key
    read each (some 3 buffers on PostgreSQL); a rule with more findings than that is not
    counted (`NOT_COUNTED`). Unbounded, a department's list read 255,000 buffers (190-230 ms)
    with 83,573 findings at 1,000,000 cases (129,112 open), a rare filter's 361,000.
    Without any filter, the findings alone, each rule's up to `COUNT_CAP` + 1 in its index."""
    where = [*scope, *filters.without("finding").clauses(now, timezone)]
    rules = [str(r) for r in Rule]
    if not where:
        # Every case of the office, no filter: a rule's findings are its cases (one per
        # case), counted in its index alone.
        probes = [
            select(func.count())
            .select_from(
                select(literal(1))
                .select_from(CaseFinding)
                .where(CaseFinding.rule == rule)
                .limit(COUNT_CAP + 1)
                .subquery()
            )
            .scalar_subquery()
            for rule in rules
        ]
        row = session.execute(select(*probes)).one()
        return {r: MORE if n > COUNT_CAP else n for r, n in zip(rules, row, strict=True) if n}
    probes = []
    for rule in rules:
        first = (
            select(CaseFinding.case_id, CaseFinding.rule)
            .where(CaseFinding.rule == rule)
            .limit(FINDING_SCAN + 1)
            .subquery()
        )
        test = select(literal(1)).where(Case.id == first.c.case_id, *where)
        probes += [
            select(func.count()).select_from(first).scalar_subquery(),
            select(func.count())
            .select_from(first)
            .where(test.correlate(first).scalar_subquery().is_not(None))
            .scalar_subquery(),
        ]
    row = session.execute(select(*probes)).one()
    return {
        rule: row[2 * i + 1] if row[2 * i] <= FINDING_SCAN else NOT_COUNTED
        for i, rule in enumerate(rules)
        if row[2 * i] > FINDING_SCAN or row[2 * i + 1]
    }


def _tally_row(row: Sequence[Any]) -> _Row:
    values = dict(zip(tallies.DIMENSIONS, row[:-1], strict=True))
    status = values["status"]
    return {
        "status": status,
        "department": values["department_id"],
        "channel": values["channel"],
        "kind": values["kind"],
        "urgent": bool(values["urgent"]),
        "at_risk": values["risk"] == "at_risk" and status in OPEN_STATUSES,
        "n": int(row[-1]),
    }


_ATTRIBUTES = (*_GROUPED, "overdue", "attachments")


def _grouped(
    session: Session, where: Sequence[ColumnElement[bool]], now: datetime
) -> tuple[list[_Row], list[_Row]] | None:
    """The cases satisfying ``where`` grouped by every counted attribute (``base``), and
    again by those and each rule they have a finding of (``by_rule``); None when they are
    more than `COUNT_CAP`. One statement over at most `COUNT_CAP` + 1 of them."""

    def flag(condition: ColumnElement[bool]) -> Any:
        return case((condition, literal_column("1")), else_=literal_column("0"))

    at_risk = and_(Case.risk == "at_risk", Case.status.in_(_OPEN))
    attached = exists(select(Attachment.id).where(Attachment.case_id == Case.id))
    some = (
        select(
            Case.id.label("id"),
            Case.status.label("status"),
            Case.department_id.label("department"),
            Case.channel.label("channel"),
            Case.kind.label("kind"),
            flag(Case.urgent == true()).label("urgent"),
            flag(at_risk).label("at_risk"),
            flag(overdue_clause(now)).label("overdue"),
            flag(attached).label("attachments"),
        )
        .where(*where)
        .limit(COUNT_CAP + 1)
        .cte("counted")
    )
    columns = [some.c[name] for name in _ATTRIBUTES]
    base = select(*columns, literal_column("NULL").label("rule"), func.count()).group_by(*columns)
    by_rule = (
        select(*columns, CaseFinding.rule, func.count())
        .select_from(some.join(CaseFinding, CaseFinding.case_id == some.c.id))
        .group_by(*columns, CaseFinding.rule)
    )
    rows: tuple[list[_Row], list[_Row]] = ([], [])
    for r in session.execute(base.union_all(by_rule)):
        row: _Row = dict(zip(_ATTRIBUTES, r[: len(_ATTRIBUTES)], strict=True))
        for name in _ATTRIBUTES[len(FACETS) :]:
            row[name] = bool(row[name])
        row["n"] = int(r[-1])
        if r[-2] is None:
            rows[0].append(row)
        else:
            row["finding"] = r[-2]
            rows[1].append(row)
    if sum(r["n"] for r in rows[0]) > COUNT_CAP:
        return None
    return rows


def _capped(
    session: Session,
    scope: Sequence[ColumnElement[bool]],
    filters: ListFilters,
    name: str,
    now: datetime,
    timezone: ZoneInfo,
) -> int:
    """The cases the list would count with flag ``name`` picked (its own capped count, read
    from the flag's partial indexes: overdue's, or the cases with a risk); `MORE` past
    `COUNT_CAP`."""
    picked = replace(filters, **{name: True})
    seen = unindexed_clauses(scope) if picked.overdue else scope
    n, capped = count_cases(session, [*seen, *picked.clauses(now, timezone)])
    return MORE if capped else n


class _Chosen:
    """Whether a row's values are those of the filters chosen, filter by filter."""

    def __init__(self, filters: ListFilters, department_id: int | None) -> None:
        # A test for each filter chosen only: a list page judges ~1,000 rows of the tallies,
        # and most filters are not chosen (any value passes).
        tests: dict[str, Callable[[Any], bool]] = {}
        if filters.status == "open":
            tests["status"] = OPEN_STATUSES.__contains__
        elif filters.status:
            tests["status"] = filters.status.__eq__
        if filters.department:
            tests["department"] = (
                (lambda _v: False) if department_id is None else department_id.__eq__
            )
        for name in ("channel", "kind", "finding"):
            wanted = getattr(filters, name)
            if wanted:
                tests[name] = wanted.__eq__
        for name in FLAGS:
            if getattr(filters, name):
                tests[name] = bool
        self.tests = tests

    def failed(self, row: _Row) -> list[str]:
        """The chosen filters ``row`` holds a value of and fails."""
        return [n for n, test in self.tests.items() if n in row and test(row[n]) is not True]

    def count(
        self, rows: Sequence[_Row], facets: Sequence[str]
    ) -> tuple[dict[str, dict[Any, int]], int]:
        """(each of ``facets`` counted over ``rows`` (those holding it), each row that
        matches every other chosen filter added to its value's count (a flag's: when set),
        the cases of the rows matching every chosen filter). One read for every facet
        instead of one per facet."""
        counts: dict[str, dict[Any, int]] = {name: {} for name in facets}
        listed = 0
        # Each row judged once: a row failing no chosen filter counts in every facet, one
        # failing one filter only in that filter's facet, others in none.
        for row in rows:
            failed = self.failed(row)
            if len(failed) > 1:
                continue
            if not failed:
                listed += row["n"]
            for name in failed or facets:
                value = row.get(name)
                if name not in counts or value is None or value is False:
                    continue
                counts[name][value] = counts[name].get(value, 0) + row["n"]
        return counts, listed


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


SHARED_VIEWS_SHOWN = 500
"""Every role's shared views listed at most (`shared_views`): an admin saves them by hand."""


def shared_views(session: Session) -> list[SavedView]:
    """Every role's shared views (saved with no user, for a role), by role then name: what
    the admin, who saves them, manages; `saved_views` lists only one role's."""
    return list(
        session.scalars(
            select(SavedView)
            .where(SavedView.user_id.is_(None))
            .order_by(SavedView.role, SavedView.name, SavedView.id)
            .limit(SHARED_VIEWS_SHOWN)
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
    Flushes; the caller commits.

    One upsert (INSERT … ON CONFLICT DO UPDATE, on both databases), not a look-up then an
    insert: two saves of one name at once (a double click, two tabs) would both find none
    and the second insert would break the unique key (PostgreSQL), or, for a role's shared
    view, store it twice."""
    owner = (
        SavedView.user_id == user_id
        if user_id is not None
        else and_(SavedView.user_id.is_(None), SavedView.role == role)
    )
    if is_default:
        for v in session.scalars(select(SavedView).where(owner, SavedView.is_default.is_(True))):
            v.is_default = False
    session.flush()
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(SavedView).values(
        user_id=user_id,
        role=role if user_id is None else "",
        name=name,
        query=query,
        is_default=is_default,
    )
    stmt = stmt.on_conflict_do_update(
        # The key it would break: uq_saved_views_owner, or for a shared view the partial
        # unique index uq_saved_views_shared (migration 0031).
        index_elements=["user_id", "role", "name"] if user_id is not None else ["role", "name"],
        index_where=None if user_id is not None else SavedView.user_id.is_(None),
        set_={"query": stmt.excluded.query, "is_default": stmt.excluded.is_default},
    )
    view_id = session.execute(stmt.returning(SavedView.id)).scalar_one()
    view = session.get(SavedView, view_id, populate_existing=True)
    assert view is not None
    return view
