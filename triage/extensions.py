"""Extensions of the handling deadline (延期): from the date a handler picks to a deadline, and
the furthest deadline the policy allows.

A handling deadline ends with a local working day (23:59:59 in the calendar's time zone), so a
proposed or granted date becomes the end of that day. The furthest is the current deadline
plus `extension_max_working_days` working days on the official calendar (the commitment of
the case's kind, urgency and department, see triage/deadlines.py). The checks of the
request itself (one pending at a time, how many may be granted, reasons) are on the Case
methods; these use cases only turn dates and policy into what those methods take.
"""

from __future__ import annotations

from datetime import date, datetime, time

from triage.deadlines import Deadlines
from triage.models import N_, Actor, Case, ExtensionRequest, IllegalTransition


def end_of_working_day(deadlines: Deadlines, day: date) -> datetime:
    """The deadline a picked `day` stands for: its end, local time (aware).

    Raises IllegalTransition when `day` is not a working day (a deadline on a Sunday or a
    holiday would silently be a day longer than it says).
    """
    if not deadlines.calendar.is_workday(day):
        raise IllegalTransition(
            N_("%(day)s is not a working day: choose a working day."), day=day.isoformat()
        )
    return datetime.combine(day, time(23, 59, 59), deadlines.calendar.timezone)


def latest_extension_due(deadlines: Deadlines, case: Case) -> datetime:
    """The furthest an extension may move the case's deadline: the end of the
    `extension_max_working_days`-th working day after it, by the commitment for the case's
    kind, urgency and department. Raises IllegalTransition for a case without a deadline."""
    if case.due_at is None:
        raise IllegalTransition(N_("The case has no handling deadline to extend."))
    department = case.department.code if case.department is not None else None
    commitment = deadlines.commitment(case.kind, bool(case.urgent), department)
    return deadlines.extension_limit(case.due_at, commitment)


def request_extension(
    case: Case,
    actor: Actor,
    deadlines: Deadlines,
    allowed: int,
    now: datetime,
    reason: str,
    day: date,
) -> ExtensionRequest:
    """A handler asks to move the case's deadline to the end of working day `day`."""
    return case.request_extension(
        actor,
        now,
        reason,
        end_of_working_day(deadlines, day),
        latest_due_at=latest_extension_due(deadlines, case),
        allowed=allowed,
    )


def grant_extension(
    case: Case,
    request: ExtensionRequest,
    actor: Actor,
    deadlines: Deadlines,
    allowed: int,
    now: datetime,
    *,
    day: date | None = None,
    reason: str = "",
) -> None:
    """A supervisor grants `request`, to the proposed date or to an earlier working `day`."""
    case.grant_extension(
        actor,
        now,
        request,
        latest_due_at=latest_extension_due(deadlines, case),
        allowed=allowed,
        due_at=end_of_working_day(deadlines, day) if day is not None else None,
        reason=reason,
    )
