"""Deadlines in working days on the official calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from triage.calendar import WorkCalendar
from triage.deadlines import Deadlines, TimeLimits

CAL = WorkCalendar.build("Asia/Shanghai")


def bj(y: int, m: int, d: int, h: int = 10) -> datetime:
    return datetime(y, m, d, h, tzinfo=CAL.timezone)


def test_weekend_is_skipped() -> None:
    # Friday 27 Nov 2026 + 1 working day = Monday 30 Nov, end of day.
    assert CAL.add_working_days(bj(2026, 11, 27), 1) == datetime(
        2026, 11, 30, 23, 59, 59, tzinfo=CAL.timezone
    )


def test_national_day_holiday_is_skipped() -> None:
    # Wednesday 30 Sep 2026 + 1 working day jumps the National Day holiday (1-7 Oct).
    assert all(not CAL.is_workday(date(2026, 10, d)) for d in range(1, 8))
    assert CAL.add_working_days(bj(2026, 9, 30), 1).date() == date(2026, 10, 8)


def test_make_up_working_day_counts() -> None:
    # Saturday 10 Oct 2026 is a make-up working day (调休) for the National Day holiday.
    assert date(2026, 10, 10).weekday() == 5 and CAL.is_workday(date(2026, 10, 10))
    assert CAL.add_working_days(bj(2026, 10, 9), 1).date() == date(2026, 10, 10)
    assert not CAL.is_workday(date(2026, 10, 11))


def test_unknown_year_falls_back_to_weekdays_and_config_can_add_holidays() -> None:
    assert CAL.is_workday(date(2027, 1, 4))  # a Monday: no official data yet
    assert not CAL.is_workday(date(2027, 1, 2))  # Saturday
    custom = WorkCalendar.build(
        "Asia/Shanghai", holidays=[date(2027, 1, 1)], workdays=[date(2027, 1, 2)]
    )
    assert not custom.is_workday(date(2027, 1, 1)) and custom.is_workday(date(2027, 1, 2))


def test_deadlines_follow_commitments_and_urgency() -> None:
    d = Deadlines(CAL, TimeLimits(handling_by_department={"safety": 3}))
    start = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # Thursday 10:00 Beijing
    assert d.handling_due(start, "urban", urgent=False).date() == date(2026, 12, 3)
    assert d.handling_due(start, "safety", urgent=False).date() == date(2026, 12, 1)
    assert d.handling_due(start, "urban", urgent=True) == start + timedelta(hours=2)
    assert d.send_back_deadline(start).date() == date(2026, 11, 30)
    assert CAL.working_days_between(start, datetime(2026, 12, 3, 2, tzinfo=UTC)) == 5
