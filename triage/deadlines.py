"""Service commitments (服务承诺) turned into deadlines on the working-day calendar."""

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
    # A department's own commitment may be shorter (or longer) than the default.
    handling_by_department: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Deadlines:
    """Computes every clock of a case from its commitments."""

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

    def rework_due(self, start: datetime) -> datetime:
        return self.calendar.add_working_days(start, self.limits.rework_working_days)

    def send_back_deadline(self, assigned_at: datetime) -> datetime:
        return self.calendar.add_working_days(assigned_at, self.limits.send_back_working_days)

    def return_visit_due(self, replied_at: datetime) -> datetime:
        return self.calendar.add_working_days(replied_at, self.limits.return_visit_working_days)
