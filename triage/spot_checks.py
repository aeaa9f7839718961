"""Unannounced spot checks (不定期抽查): random samples of recently closed cases, drawn so that
anyone can re-do the draw and get the same sample, and the supervisors' verification of each.

The population of a draw made at `window_end` is every case that, at `window_end`:
  - has a close event ("closed" or "closed_without_visit") in [window_start, window_end),
  - is closed: its last status change (an event whose from_status differs from its
    to_status) before `window_end` left it CLOSED, so a case reopened by a failed check or
    rework is not drawn until it is closed again,
  - has no check pending: no check of an earlier draw that was not recorded by then
    (`SpotCheck.checked_at` unset or not before `window_end`), so a case is checked once at a
    time and a draw holds each case once,
ordered by tracking number. Events are append-only, draws and the time a check was recorded
are fixed once written, and the window ends when the draw is made, so the same query gives
the same population at any later time: `redo_draw` re-runs it with the logged seed and must
give the logged sample. The sample is `random.Random(seed).sample(population, k)`: seeded
from a string, which Python hashes the same way on every platform and version since 3.2.

Like every use case, these functions flush and never commit.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, aliased, object_session, selectinload

from triage.cases import follow_inactive_department
from triage.deadlines import Deadlines
from triage.mail_intake import release_lease, take_lease
from triage.models import (
    N_,
    Actor,
    Case,
    CaseEvent,
    IllegalTransition,
    SpotCheck,
    SpotCheckDraw,
    SpotCheckResult,
    Status,
    User,
)

CLOSE_ACTIONS = ("closed", "closed_without_visit")


class SpotCheckPolicy(Protocol):
    """The `[supervision]` settings a draw needs; `web.settings.SupervisionSettings` is one."""

    @property
    def spot_check_sample(self) -> int: ...
    @property
    def spot_check_window_days(self) -> int: ...
    @property
    def spot_check_every_days(self) -> int: ...


@dataclass(frozen=True)
class Schedule:
    """A `SpotCheckPolicy` of its own, for tests and scripts."""

    spot_check_sample: int = 5
    spot_check_window_days: int = 30
    spot_check_every_days: int = 7


def population(
    session: Session,
    window_start: datetime,
    window_end: datetime,
    before_draw: int | None = None,
) -> list[str]:
    """Tracking numbers of the cases closed in [window_start, window_end), still closed and
    without a pending check at `window_end` (see the module's docstring), sorted.

    A pending check counts when its draw was made at or before `window_end` (a draw of the
    same instant too) and, with `before_draw` (re-doing that draw), only when its draw came
    before that one: draws are serialised, so ids give their order."""
    closed_in_window = (
        select(CaseEvent.case_id)
        .where(
            CaseEvent.action.in_(CLOSE_ACTIONS),
            CaseEvent.at >= window_start,
            CaseEvent.at < window_end,
        )
        .distinct()
        .subquery()
    )
    last_change = (
        select(CaseEvent.case_id, func.max(CaseEvent.id).label("event_id"))
        .where(
            CaseEvent.case_id.in_(select(closed_in_window.c.case_id)),
            CaseEvent.at < window_end,
            CaseEvent.from_status != CaseEvent.to_status,
        )
        .group_by(CaseEvent.case_id)
        .subquery()
    )
    status_event = aliased(CaseEvent)
    pending_then = (
        select(SpotCheck.id)
        .join(SpotCheckDraw, SpotCheckDraw.id == SpotCheck.draw_id)
        .where(
            SpotCheck.case_id == Case.id,
            SpotCheckDraw.drawn_at <= window_end,
            or_(SpotCheck.checked_at.is_(None), SpotCheck.checked_at >= window_end),
        )
    )
    if before_draw is not None:
        pending_then = pending_then.where(SpotCheckDraw.id < before_draw)
    rows = session.scalars(
        select(Case.tracking_number)
        .join(last_change, last_change.c.case_id == Case.id)
        .join(status_event, status_event.id == last_change.c.event_id)
        .where(status_event.to_status == Status.CLOSED, ~pending_then.exists())
    ).all()
    return sorted(rows)


def sample_of(numbers: list[str], seed: str, size: int) -> list[str]:
    """The draw itself: `size` numbers (or all, if fewer) in draw order."""
    return random.Random(seed).sample(numbers, k=min(size, len(numbers)))


def latest_draw(session: Session) -> SpotCheckDraw | None:
    return session.scalar(
        select(SpotCheckDraw).order_by(SpotCheckDraw.drawn_at.desc(), SpotCheckDraw.id.desc())
    )


def due_draw(session: Session, now: datetime, policy: SpotCheckPolicy) -> bool:
    """Whether the schedule calls for a draw at `now`: a sample size above 0 and no draw in the
    last `spot_check_every_days` days. The supervision tick asks this, then calls `draw`."""
    if policy.spot_check_sample <= 0:
        return False
    last = latest_draw(session)
    return last is None or now - last.drawn_at >= timedelta(days=policy.spot_check_every_days)


DRAW_LEASE = "spot-check-draw"


def draw(
    session: Session,
    now: datetime,
    policy: SpotCheckPolicy,
    seed: str | None = None,
    actor: Actor = "system",
) -> SpotCheckDraw:
    """Draws `policy.spot_check_sample` cases closed in the last `spot_check_window_days`
    days, logs the draw (seed, window, population size, sample) and opens a pending check on
    each drawn case (event "spot_check_drawn" {draw_id}). An empty population makes an empty
    draw, logged all the same. `seed` defaults to 16 random hex digits."""
    seed = (seed or "").strip() or secrets.token_hex(8)
    if len(seed) > 64:
        raise IllegalTransition(N_("A seed has at most 64 characters."))
    # Draws one at a time: the population leaves out cases with a pending check, which a
    # draw running beside this one has not committed yet. Taking the lease waits for such
    # a draw's commit (a row lock on PostgreSQL, the write lock on SQLite) before reading.
    holder = f"draw-{secrets.token_hex(6)}"
    if not take_lease(session, DRAW_LEASE, holder, now=datetime.now(UTC), ttl=timedelta(minutes=5)):
        raise IllegalTransition(N_("Another draw is under way; try again in a moment."))
    start = now - timedelta(days=policy.spot_check_window_days)
    numbers = population(session, start, now)
    chosen = sample_of(numbers, seed, policy.spot_check_sample)
    drawn = SpotCheckDraw(
        drawn_at=now,
        drawn_by=actor.label if isinstance(actor, User) else (actor or "system"),
        seed=seed,
        window_start=start,
        window_end=now,
        population=len(numbers),
        sample_size=policy.spot_check_sample,
        sample=chosen,
    )
    session.add(drawn)
    session.flush()
    cases = {
        c.tracking_number: c
        for c in session.scalars(
            select(Case).where(Case.tracking_number.in_(chosen)).options(selectinload(Case.events))
        )
    }
    for number in chosen:
        case = cases[number]
        session.add(SpotCheck(draw_id=drawn.id, case_id=case.id, result=SpotCheckResult.PENDING))
        case.mark_drawn(drawn, actor, now)
    session.flush()
    release_lease(session, DRAW_LEASE, holder)
    return drawn


def redo_draw(drawn: SpotCheckDraw, session: Session | None = None) -> list[str]:
    """The sample that `drawn`'s seed gives over its window's population now: equal to
    `drawn.sample` unless the audit log was tampered with. Raises ValueError if the
    population's size is not the logged one."""
    session = session or object_session(drawn)
    if session is None:
        raise ValueError("redo_draw needs a session: the draw is not attached to one")
    numbers = population(session, drawn.window_start, drawn.window_end, before_draw=drawn.id)
    if len(numbers) != drawn.population:
        raise ValueError(
            f"draw {drawn.id}: population is {len(numbers)}, the draw logged {drawn.population}"
        )
    return sample_of(numbers, drawn.seed, drawn.sample_size)


def record_check(
    check: SpotCheck,
    actor: Actor,
    now: datetime,
    *,
    passed: bool,
    method: str,
    note: str,
    deadlines: Deadlines,
) -> None:
    """A supervisor's verification of one drawn case. A failed check reopens the case for
    rework with a new deadline (`Deadlines.rework_due`); a failure needs a note.

    Two supervisors recording the same check at once: the second is refused (the check is
    claimed with a conditional UPDATE, which waits for the first transaction on PostgreSQL).
    """
    case = check.case
    session = object_session(check)
    if session is not None and check.id is not None:
        claimed: Any = session.execute(
            update(SpotCheck)
            .where(SpotCheck.id == check.id, SpotCheck.result == SpotCheckResult.PENDING)
            .values(checked_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            raise IllegalTransition(N_("This check was already recorded."))
    if passed:
        case.pass_spot_check(check, actor, now, method, note)
    else:
        case.fail_spot_check(
            check, actor, now, method, note, deadlines.rework_due(now, case.urgent)
        )
        # Its department deactivated since the close: on to its successor, or the queue.
        follow_inactive_department(case, actor, now)


def draws(session: Session, limit: int = 50) -> list[SpotCheckDraw]:
    """The latest draws, newest first, with their checks and cases loaded."""
    return list(
        session.scalars(
            select(SpotCheckDraw)
            .order_by(SpotCheckDraw.drawn_at.desc(), SpotCheckDraw.id.desc())
            .options(
                selectinload(SpotCheckDraw.checks).selectinload(SpotCheck.case),
            )
            .limit(limit)
        )
    )


def pending_checks(session: Session) -> list[SpotCheck]:
    """Every check not recorded yet, oldest draw first."""
    return list(
        session.scalars(
            select(SpotCheck)
            .where(SpotCheck.result == SpotCheckResult.PENDING)
            .order_by(SpotCheck.draw_id, SpotCheck.id)
            .options(selectinload(SpotCheck.case))
        )
    )


def checks_of(session: Session, case: Case) -> list[SpotCheck]:
    """The checks of one case, oldest first."""
    return list(
        session.scalars(
            select(SpotCheck)
            .where(SpotCheck.case_id == case.id)
            .order_by(SpotCheck.id)
            .options(selectinload(SpotCheck.draw), selectinload(SpotCheck.checked_by))
        )
    )
