"""Stored month figures (figure_snapshots), so that the dashboard and the public page read one
row per month instead of aggregating it at request time.

A snapshot is ``monthly_figures`` of one month in one scope, as computed at ``computed_at``:

- ``full``: every figure of the month so far (hot issues included, ``previous`` None): the
  board's dashboard. `minsheng report monthly` stores its month here too.
- ``public``: ``with_details=False`` (no average handling time, overdue, repeat callers or
  hot issues): the public performance page's 12 complete months.

A month whose window had ended when it was computed is ``complete`` and not computed again
(the definitions count a month by times inside it; later changes to a case, e.g. a transfer
to another department, do not move a complete month's figures) unless a case received in it
is registered late (a call log of the 30th imported on the 1st, a bulk import): `mark_late`,
run in the registering transaction (a flush hook for the ORM's writers, called by the bulk
writers ``register_rows`` and the demo volume), marks the month's snapshots not complete
again, so that the next view or tick computes them again. Of two complete snapshots of a
month the one computed last is read (the report's ``full`` one after a late import). The
current month's snapshot
is refreshed by the supervision tick (`refresh`) once it is older than ``max_age``; a page
that finds none (a new database, a tick that does not run) computes it once under a lease
(``lease_until``) that other processes see, so that concurrent requests do not all compute
it: they use the last snapshot if there is one, else wait a little for it, else show that it
is being computed. A snapshot made under another [report] policy (weights, cut-off, star
thresholds, time zone) is ignored and computed again.

Functions take a Session or an Engine; the writes (lease, figures) go in short transactions
of their own on the engine, never in the caller's.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, event, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, attributes

from triage.models import Case, FigureSnapshot
from triage.report.figures import (
    ReportPolicy,
    month_of,
    month_window,
    monthly_figures,
    shift_month,
)

log = logging.getLogger(__name__)

FULL = "full"
PUBLIC = "public"
SCOPES = (FULL, PUBLIC)
# The current month's snapshot is refreshed by the tick when older than this.
MAX_AGE = timedelta(minutes=10)
# A page recomputes a snapshot the tick left this stale (the tick is not running).
STALE_AGE = timedelta(minutes=30)
# How long one computation may hold the lease before another process may take it over.
LEASE = timedelta(minutes=5)
# How long a page waits for another process's computation of a missing snapshot.
WAIT_SECONDS = 5.0

_T = FigureSnapshot.__table__


@dataclass(frozen=True)
class Snapshot:
    """A stored month: its figures (the issue's JSON object), when computed (aware UTC), and
    whether the month had ended then."""

    scope: str
    month: str
    figures: dict[str, Any]
    computed_at: datetime
    complete: bool

    def stale(self, policy: ReportPolicy) -> bool:
        """Computed after its month ended yet not complete: marked by `mark_late`."""
        return not self.complete and self.computed_at >= month_window(self.month, policy)[1]


def policy_key(policy: ReportPolicy) -> str:
    """A digest of what the figures depend on besides the data (not the holiday list)."""
    basis = repr(
        (
            str(policy.timezone),
            policy.cutoff_day,
            policy.response_weight,
            policy.resolution_weight,
            policy.satisfaction_weight,
            policy.basic_satisfied_weight,
            tuple(policy.star_thresholds),
            policy.hot_issues,
            policy.hot_issue_sample,
        )
    )
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def _engine(bind: Session | Engine) -> Engine:
    if isinstance(bind, Engine):
        return bind
    engine = bind.get_bind()
    return engine if isinstance(engine, Engine) else engine.engine


def _compute(
    session: Session, scope: str, month: str, policy: ReportPolicy, now: datetime
) -> dict[str, Any]:
    if scope == FULL:
        return monthly_figures(session, month, policy, now, with_previous=False)
    return monthly_figures(
        session, month, policy, now, with_previous=False, with_hot_issues=False, with_details=False
    )


def read(
    bind: Session | Engine, scope: str, months: Iterable[str], policy: ReportPolicy
) -> dict[str, Snapshot]:
    """The stored snapshots of `months` in `scope` (a ``full`` one stands in for a missing
    ``public`` one) made under `policy`: month → Snapshot. One indexed query."""
    months = list(months)
    scopes = (FULL, PUBLIC) if scope == PUBLIC else (FULL,)
    key = policy_key(policy)
    with _engine(bind).connect() as conn:
        rows = conn.execute(
            select(_T.c.scope, _T.c.month, _T.c.figures, _T.c.computed_at, _T.c.complete).where(
                _T.c.month.in_(months),
                _T.c.scope.in_(scopes),
                _T.c.policy_key == key,
                _T.c.figures.is_not(None),
            )
        ).all()
    found: dict[str, Snapshot] = {}
    for s, m, figures, computed_at, complete in rows:
        have = found.get(m)
        # Prefer a complete month, then the one computed last (it counts the cases registered
        # late that the other may not), then the scope asked for.
        mine = (bool(complete), computed_at, s == scope)
        if have is None or mine > (have.complete, have.computed_at, have.scope == scope):
            found[m] = Snapshot(s, m, dict(figures), computed_at, bool(complete))
    return found


def mark_late(conn: Connection | Session, received: Iterable[datetime | None]) -> int:
    """Marks not complete the complete snapshots of the months that cases received at
    `received` (UTC, aware or naive) belong to, when computed after that: registered now,
    those cases are not in their figures. In the caller's transaction, so the mark commits
    with the cases. Returns the snapshots marked.

    One UPDATE of the small snapshot table whatever the number of cases; none for a case
    received after every snapshot was computed (registration as the call comes in). Without
    the report's policy the statistical month of a time is not known here: the calendar
    month either side of it is marked too (a cut-off day or the time zone moves a month's
    window by less than a month), and those recomputed figures are the same."""
    times = [t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in received if t]
    if not times:
        return 0
    first, last = min(times), max(times)
    result = conn.execute(
        update(_T)
        .where(
            _T.c.complete.is_(True),
            _T.c.computed_at > first,
            _T.c.month >= shift_month(f"{first:%Y-%m}", -1),
            _T.c.month <= shift_month(f"{last:%Y-%m}", 1),
        )
        .values(complete=False)
    )
    return int(result.rowcount or 0)


@event.listens_for(Session, "after_flush")
def _mark_late_cases(session: Session, flush_context: Any) -> None:
    """`mark_late` for the cases this flush inserted or deleted, or whose received_at it
    changed (its old and new time: both months change)."""
    times: list[datetime | None] = []
    for obj in session.new:
        if isinstance(obj, Case):
            times.append(obj.received_at)
    for obj in session.deleted:
        if isinstance(obj, Case):
            times.append(obj.received_at)
    for obj in session.dirty:
        if isinstance(obj, Case):
            history = attributes.get_history(obj, "received_at")
            if history.added:
                times.extend([*history.added, *history.deleted])
    if times:
        mark_late(session, times)


def _claim(engine: Engine, scope: str, month: str, now: datetime) -> bool:
    """Takes the lease of (scope, month) for this process: True when it should compute."""
    until = now + LEASE
    with engine.begin() as conn:
        taken = conn.execute(
            update(_T)
            .where(
                _T.c.scope == scope,
                _T.c.month == month,
                or_(_T.c.lease_until.is_(None), _T.c.lease_until < now),
            )
            .values(lease_until=until)
        ).rowcount
    if taken:
        return True
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(_T).values(
                    scope=scope,
                    month=month,
                    complete=False,
                    figures=None,
                    policy_key="",
                    lease_until=until,
                )
            )
    except IntegrityError:
        return False  # the row exists: another process holds its lease
    return True


def _store(
    engine: Engine,
    scope: str,
    month: str,
    figures: dict[str, Any],
    policy: ReportPolicy,
    computed_at: datetime,
) -> Snapshot:
    _start, end = month_window(month, policy)
    complete = computed_at >= end
    values = {
        "figures": figures,
        "computed_at": computed_at,
        "complete": complete,
        "policy_key": policy_key(policy),
        "lease_until": None,
    }
    with engine.begin() as conn:
        changed = conn.execute(
            update(_T).where(_T.c.scope == scope, _T.c.month == month).values(**values)
        ).rowcount
        if not changed:
            conn.execute(insert(_T).values(scope=scope, month=month, **values))
    return Snapshot(scope, month, figures, computed_at, complete)


def _release(engine: Engine, scope: str, month: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(_T).where(_T.c.scope == scope, _T.c.month == month).values(lease_until=None)
        )


def compute_and_store(
    session: Session, scope: str, month: str, policy: ReportPolicy, now: datetime
) -> Snapshot:
    """Computes the month's figures in `scope` as of `now` and stores them (no lease)."""
    figures = _compute(session, scope, month, policy, now)
    return _store(_engine(session), scope, month, figures, policy, now)


def store(
    bind: Session | Engine,
    scope: str,
    month: str,
    figures: dict[str, Any],
    policy: ReportPolicy,
    computed_at: datetime,
) -> Snapshot:
    """Stores figures computed elsewhere (`minsheng report monthly`)."""
    return _store(_engine(bind), scope, month, figures, policy, computed_at)


def _fresh(
    snapshot: Snapshot | None, now: datetime, max_age: timedelta, policy: ReportPolicy
) -> bool:
    """Complete, or made while its month ran and not older than `max_age`; one marked by
    `mark_late` is never fresh."""
    if snapshot is None or snapshot.stale(policy):
        return False
    return snapshot.complete or now - snapshot.computed_at <= max_age


def figures_for(
    session: Session,
    scope: str,
    months: list[str],
    policy: ReportPolicy,
    now: datetime,
    *,
    stale_age: timedelta = STALE_AGE,
    wait_seconds: float | None = None,
) -> dict[str, Snapshot | None]:
    """The figures of `months` for a page: the stored snapshots, each month that has none
    (or one older than `stale_age` while the month was not complete, or one marked by
    `mark_late`) computed once under the lease. Of concurrent requests only the lease
    holder computes; the others take the stale snapshot, else wait up to `wait_seconds`
    (default WAIT_SECONDS) for the holder's, else get None for that month ("being
    computed")."""
    found = read(session, scope, months, policy)
    engine = _engine(session)
    out: dict[str, Snapshot | None] = {}
    waiting: list[str] = []
    for month in months:
        snapshot = found.get(month)
        if _fresh(snapshot, now, stale_age, policy):
            out[month] = snapshot
            continue
        if _claim(engine, scope, month, now):
            try:
                out[month] = compute_and_store(session, scope, month, policy, now)
            except Exception:
                _release(engine, scope, month)
                raise
        elif snapshot is not None:
            out[month] = snapshot
        else:
            waiting.append(month)
    deadline = time.monotonic() + (WAIT_SECONDS if wait_seconds is None else wait_seconds)
    while waiting:
        got = read(engine, scope, waiting, policy)
        for month, snapshot in got.items():
            out[month] = snapshot
        waiting = [m for m in waiting if m not in got]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for month in waiting:
        out[month] = None
    return out


def refresh(
    session: Session,
    policy: ReportPolicy,
    now: datetime,
    *,
    max_age: timedelta = MAX_AGE,
    public_months: int = 12,
) -> list[str]:
    """What the supervision tick calls: the current month's ``full`` snapshot when missing or
    older than `max_age`, and each of the last `public_months` complete months' ``public``
    snapshot that is missing or was made before the month ended. Returns the
    ``scope:month`` computed. A month being computed by another process (its lease held) is
    left to it."""
    current = month_of(now, policy)
    wanted = [(FULL, current)] + [
        (PUBLIC, shift_month(current, -k)) for k in range(public_months, 0, -1)
    ]
    have = {
        **{(FULL, m): s for m, s in read(session, FULL, [current], policy).items()},
        **{
            (PUBLIC, m): s
            for m, s in read(session, PUBLIC, [m for _s, m in wanted[1:]], policy).items()
        },
    }
    engine = _engine(session)
    done = []
    for scope, month in wanted:
        snapshot = have.get((scope, month))
        if scope == PUBLIC and snapshot is not None and snapshot.complete:
            continue
        if scope == FULL and _fresh(snapshot, now, max_age, policy):
            continue
        if not _claim(engine, scope, month, now):
            continue
        try:
            compute_and_store(session, scope, month, policy, now)
        except Exception:
            _release(engine, scope, month)
            log.exception("the %s figures of %s could not be computed", scope, month)
            continue
        done.append(f"{scope}:{month}")
    return done
