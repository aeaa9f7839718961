"""Working days on the official Chinese calendar, and deadlines counted in them.

Weekends and statutory holidays are off, make-up working days (调休) are on. The
`chinese_calendar` package knows the years the State Council has published; for a year it
does not know yet, Monday to Friday count as working days until the office adds that year's
holidays to the config (``extra_holidays`` / ``extra_workdays``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

log = logging.getLogger(__name__)
_warned_years: set[int] = set()


@lru_cache(maxsize=65536)
def _is_workday(calendar: WorkCalendar, day: date) -> bool:
    # The supervision tick asks about the same few weeks for every open case; the package's
    # own lookup validates each date and costs tens of microseconds.
    return calendar._compute_workday(day)


@lru_cache(maxsize=256)
def _knows_year(calendar: WorkCalendar, year: int) -> bool:
    return calendar._compute_knows_year(year)


@dataclass(frozen=True)
class WorkCalendar:
    """Which days are working days, and the local time zone deadlines are counted in."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    extra_holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()

    @classmethod
    def build(
        cls, tz: str, holidays: Iterable[date] = (), workdays: Iterable[date] = ()
    ) -> WorkCalendar:
        return cls(ZoneInfo(tz), frozenset(holidays), frozenset(workdays))

    def is_workday(self, day: date) -> bool:
        return _is_workday(self, day)

    def _compute_workday(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year not in _warned_years:
                _warned_years.add(day.year)
                log.warning(
                    "no official calendar for %s: counting Monday-Friday as working days",
                    day.year,
                )
            return day.weekday() < 5

    def knows_year(self, year: int) -> bool:
        """Whether the holidays of `year` are known: published in the package, or some of
        its days given in the config. Deadlines in an unknown year count Monday to Friday."""
        return _knows_year(self, year)

    def _compute_knows_year(self, year: int) -> bool:
        if any(d.year == year for d in self.extra_holidays | self.extra_workdays):
            return True
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.timezone)

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """End of the `days`-th working day after the day of `start` (23:59:59 local).

        With days == 0 the deadline is the end of the start day if it is a working day,
        else the end of the next working day.
        """
        if days < 0:
            raise ValueError("days must not be negative")
        day = self.local(start).date()
        if days == 0:
            while not self.is_workday(day):
                day += timedelta(days=1)
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_workday(day):
                counted += 1
        return datetime.combine(day, time(23, 59, 59), self.timezone)

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """Working days after the day of `start` up to and including the day of `end`."""
        a, b = self.local(start).date(), self.local(end).date()
        sign = 1
        if b < a:
            a, b, sign = b, a, -1
        count = 0
        day = a
        while day < b:
            day += timedelta(days=1)
            if self.is_workday(day):
                count += 1
        return sign * count
