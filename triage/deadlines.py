"""Service commitments (服务承诺) turned into deadlines on the working-day calendar.

Every clock of an ordinary case is counted in working days; every clock of an urgent safety
hazard is counted in hours, since a window of days around a deadline of hours is no window.
A send-back window never ends after the handling deadline it belongs to: once the department
owes its reply, it can no longer say the case was never its own.

The limits may differ by kind, urgency and department (`CommitmentOverride`): every clock
takes the case's kind and department, and `Deadlines.commitment` resolves the limits that
apply to one case, which is also what the public commitments page lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta

from triage.calendar import WorkCalendar


@dataclass(frozen=True)
class TimeLimits:
    """The published time limits; all are configuration."""

    triage_working_days: int = 1
    handling_working_days: int = 5
    urgent_triage_hours: int = 1
    urgent_handling_hours: int = 2
    extension_max_working_days: int = 10
    send_back_working_days: int = 2
    return_visit_working_days: int = 3
    rework_working_days: int = 5
    urgent_send_back_hours: int = 1
    urgent_return_visit_hours: int = 24
    urgent_rework_hours: int = 2
    # The department is reminded this long before its deadline (0: no reminder) ...
    reminder_before_working_days: int = 1
    urgent_reminder_before_hours: int = 1
    # ... and the case is escalated (督办) this long after it (0: at once).
    escalation_grace_working_days: int = 1
    urgent_escalation_grace_hours: int = 1
    # A department's own commitment may be shorter (or longer) than the default.
    handling_by_department: Mapping[str, int] = field(default_factory=dict)
    # Limits for some kinds, urgencies or departments; the most specific match wins.
    overrides: tuple[CommitmentOverride, ...] = ()


LIMIT_NAMES = (
    "triage_working_days",
    "handling_working_days",
    "urgent_triage_hours",
    "urgent_handling_hours",
    "extension_max_working_days",
    "send_back_working_days",
    "return_visit_working_days",
    "rework_working_days",
    "urgent_send_back_hours",
    "urgent_return_visit_hours",
    "urgent_rework_hours",
    "reminder_before_working_days",
    "urgent_reminder_before_hours",
    "escalation_grace_working_days",
    "urgent_escalation_grace_hours",
)
"""The numeric limits an override may set (TimeLimits' field names)."""


@dataclass(frozen=True)
class CommitmentOverride:
    """Limits that replace the defaults for the cases it matches.

    `kind` (a Kind value), `urgent` and `department` (a code) each match any case when None;
    `limits` maps names of LIMIT_NAMES to their value here. Of several matching overrides the
    more specific (more of the three set) wins; among equals the later one.
    """

    kind: str | None = None
    urgent: bool | None = None
    department: str | None = None
    limits: tuple[tuple[str, int], ...] = ()

    def matches(self, kind: str | None, urgent: bool, department: str | None) -> bool:
        return (
            (self.kind is None or self.kind == kind)
            and (self.urgent is None or self.urgent == urgent)
            and (self.department is None or self.department == department)
        )

    @property
    def specificity(self) -> int:
        return sum(v is not None for v in (self.kind, self.urgent, self.department))


@dataclass(frozen=True)
class Commitment:
    """The service commitment (服务承诺) that applies to one case, resolved.

    `unit` is "hours" for an urgent hazard, else "working_days"; every clock but the
    extension maximum (always working days) is in that unit.
    """

    urgent: bool
    unit: str
    triage: int
    handling: int
    send_back: int
    return_visit: int
    rework: int
    reminder_before: int
    escalation_grace: int
    extension_max_working_days: int


@dataclass(frozen=True)
class Deadlines:
    """Computes every clock of a case from its commitments.

    All datetimes are timezone-aware; results are aware too (working-day results end at the
    end of the local working day, hour results are the start plus the hours).
    """

    calendar: WorkCalendar
    limits: TimeLimits
    _resolved: dict[tuple[str | None, bool, str | None], Commitment] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def commitment(
        self, kind: str | None = None, urgent: bool = False, department: str | None = None
    ) -> Commitment:
        """The limits for a case of this kind, urgency and department (code)."""
        key = (kind, bool(urgent), department)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolved[key] = self._resolve(kind, bool(urgent), department)
        return found

    def _resolve(self, kind: str | None, urgent: bool, department: str | None) -> Commitment:
        limits = self.limits
        if department is not None and department in limits.handling_by_department:
            days = limits.handling_by_department[department]
            limits = replace(limits, handling_working_days=days)
        matching = [o for o in limits.overrides if o.matches(kind, urgent, department)]
        for o in sorted(matching, key=lambda o: o.specificity):
            limits = replace(limits, **dict(o.limits))
        if urgent:
            return Commitment(
                urgent=True,
                unit="hours",
                triage=limits.urgent_triage_hours,
                handling=limits.urgent_handling_hours,
                send_back=limits.urgent_send_back_hours,
                return_visit=limits.urgent_return_visit_hours,
                rework=limits.urgent_rework_hours,
                reminder_before=limits.urgent_reminder_before_hours,
                escalation_grace=limits.urgent_escalation_grace_hours,
                extension_max_working_days=limits.extension_max_working_days,
            )
        return Commitment(
            urgent=False,
            unit="working_days",
            triage=limits.triage_working_days,
            handling=limits.handling_working_days,
            send_back=limits.send_back_working_days,
            return_visit=limits.return_visit_working_days,
            rework=limits.rework_working_days,
            reminder_before=limits.reminder_before_working_days,
            escalation_grace=limits.escalation_grace_working_days,
            extension_max_working_days=limits.extension_max_working_days,
        )

    def after(self, start: datetime, amount: int, commitment: Commitment) -> datetime:
        """`amount` of the commitment's unit after `start`."""
        if commitment.unit == "hours":
            return start + timedelta(hours=amount)
        return self.calendar.add_working_days(start, amount)

    def triage_due(
        self, received_at: datetime, urgent: bool, *, kind: str | None = None
    ) -> datetime:
        c = self.commitment(kind, urgent)
        return self.after(received_at, c.triage, c)

    def handling_due(
        self, start: datetime, department_code: str, urgent: bool, *, kind: str | None = None
    ) -> datetime:
        c = self.commitment(kind, urgent, department_code)
        return self.after(start, c.handling, c)

    def rework_due(
        self,
        start: datetime,
        urgent: bool = False,
        *,
        kind: str | None = None,
        department: str | None = None,
    ) -> datetime:
        """When the department owes its new reply after an unsatisfied visit (重办)."""
        c = self.commitment(kind, urgent, department)
        return self.after(start, c.rework, c)

    def send_back_deadline(
        self,
        assigned_at: datetime,
        urgent: bool = False,
        handling_due: datetime | None = None,
        *,
        kind: str | None = None,
        department: str | None = None,
    ) -> datetime:
        """The end of the window in which the department may send the case back (退回).

        Counted from the dispatch; never later than `handling_due`, the handling deadline of
        that dispatch, when it is known.
        """
        c = self.commitment(kind, urgent, department)
        end = self.after(assigned_at, c.send_back, c)
        if handling_due is not None:
            end = min(end, handling_due)
        return end

    def return_visit_due(
        self,
        replied_at: datetime,
        urgent: bool = False,
        *,
        kind: str | None = None,
        department: str | None = None,
    ) -> datetime:
        """When the return visit (回访) to the citizen is due after the reply."""
        c = self.commitment(kind, urgent, department)
        return self.after(replied_at, c.return_visit, c)

    def reminder_at(self, due: datetime, commitment: Commitment) -> datetime | None:
        """When the department is reminded of `due`; None when the commitment says never.

        In working days: the start (00:00 local) of the `reminder_before`-th working day
        counted back from the deadline's day, that day included, so 1 reminds on the
        morning of the last day.
        """
        if commitment.reminder_before <= 0:
            return None
        if commitment.unit == "hours":
            return due - timedelta(hours=commitment.reminder_before)
        day = self.calendar.local(due).date()
        counted = 1
        while counted < commitment.reminder_before:
            day -= timedelta(days=1)
            if self.calendar.is_workday(day):
                counted += 1
        return datetime.combine(day, time(0, 0), self.calendar.timezone)

    def escalation_at(self, due: datetime, commitment: Commitment) -> datetime:
        """When an overdue case is escalated (督办): `escalation_grace` after `due`."""
        if commitment.unit == "hours":
            return due + timedelta(hours=commitment.escalation_grace)
        if commitment.escalation_grace == 0:
            return due
        return self.calendar.add_working_days(due, commitment.escalation_grace)

    def extension_limit(self, due: datetime, commitment: Commitment) -> datetime:
        """The latest deadline one extension may set: the maximum in working days after `due`."""
        return self.calendar.add_working_days(due, commitment.extension_max_working_days)
