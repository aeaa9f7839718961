"""Service commitments (服务承诺) turned into deadlines on the working-day calendar.

Every clock of an ordinary case is counted in working days; every clock of an urgent safety
hazard is counted in hours, since a window of days around a deadline of hours is no window.
A send-back window never ends after the handling deadline it belongs to: once the department
owes its reply, it can no longer say the case was never its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
    # A department's own commitment may be shorter (or longer) than the default.
    handling_by_department: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Deadlines:
    """Computes every clock of a case from its commitments.

    All datetimes are timezone-aware; results are aware too (working-day results end at the
    end of the local working day, hour results are the start plus the hours).
    """

    calendar: WorkCalendar
    limits: TimeLimits

    def triage_due(self, received_at: datetime, urgent: bool) -> datetime:
        if urgent:
            return received_at + timedelta(hours=self.limits.urgent_triage_hours)
        return self.calendar.add_working_days(received_at, self.limits.triage_working_days)

    def handling_due(self, start: datetime, department_code: str, urgent: bool) -> datetime:
        if urgent:
            return start + timedelta(hours=self.limits.urgent_handling_hours)
        days = self.limits.handling_by_department.get(
            department_code, self.limits.handling_working_days
        )
        return self.calendar.add_working_days(start, days)

    def rework_due(self, start: datetime, urgent: bool = False) -> datetime:
        """When the department owes its new reply after an unsatisfied visit (重办)."""
        if urgent:
            return start + timedelta(hours=self.limits.urgent_rework_hours)
        return self.calendar.add_working_days(start, self.limits.rework_working_days)

    def send_back_deadline(
        self,
        assigned_at: datetime,
        urgent: bool = False,
        handling_due: datetime | None = None,
    ) -> datetime:
        """The end of the window in which the department may send the case back (退回).

        Counted from the dispatch; never later than `handling_due`, the handling deadline of
        that dispatch, when it is known.
        """
        if urgent:
            end = assigned_at + timedelta(hours=self.limits.urgent_send_back_hours)
        else:
            end = self.calendar.add_working_days(assigned_at, self.limits.send_back_working_days)
        if handling_due is not None:
            end = min(end, handling_due)
        return end

    def return_visit_due(self, replied_at: datetime, urgent: bool = False) -> datetime:
        """When the return visit (回访) to the citizen is due after the reply."""
        if urgent:
            return replied_at + timedelta(hours=self.limits.urgent_return_visit_hours)
        return self.calendar.add_working_days(replied_at, self.limits.return_visit_working_days)
