"""The pure parts of the monthly figures: months and their local-time windows, the cut-off
day, the rates' formulas and stars, and the working-day sums the average handling time uses."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from triage.calendar import WorkCalendar
from triage.report.figures import (
    ReportPolicy,
    _rates,
    _working_day_index,
    month_of,
    month_window,
    parse_month,
    shift_month,
)

TZ = ZoneInfo("Asia/Shanghai")
POLICY = ReportPolicy(calendar=WorkCalendar(TZ))


def test_a_calendar_month_is_its_local_days() -> None:
    start, end = month_window("2026-03", POLICY)
    # 1 March 00:00 in Shanghai is 28 February 16:00 UTC.
    assert start == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert end == datetime(2026, 3, 31, 16, tzinfo=UTC)


def test_december_ends_in_the_next_year() -> None:
    start, end = month_window("2026-12", POLICY)
    assert (start.astimezone(TZ).date(), end.astimezone(TZ).date()) == (
        date(2026, 12, 1),
        date(2027, 1, 1),
    )


def test_the_cut_off_day_ends_the_month_on_that_day() -> None:
    policy = ReportPolicy(calendar=WorkCalendar(TZ), cutoff_day=25)
    start, end = month_window("2026-01", policy)
    # "January" is 26 December to 25 January inclusive.
    assert start.astimezone(TZ) == datetime(2025, 12, 26, tzinfo=TZ)
    assert end.astimezone(TZ) == datetime(2026, 1, 26, tzinfo=TZ)
    assert month_of(datetime(2026, 1, 25, 23, 59, tzinfo=TZ), policy) == "2026-01"
    assert month_of(datetime(2026, 1, 26, 0, 0, tzinfo=TZ), policy) == "2026-02"
    assert month_of(datetime(2025, 12, 26, 0, 0, tzinfo=TZ), policy) == "2026-01"


def test_month_of_is_local() -> None:
    # 31 October 16:30 UTC is already 1 November in Shanghai.
    assert month_of(datetime(2026, 10, 31, 16, 30, tzinfo=UTC), POLICY) == "2026-11"
    assert month_of(datetime(2026, 10, 31, 15, 59, tzinfo=UTC), POLICY) == "2026-10"


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "2026-1", "26-01", "", "2026/01", "x"])
def test_a_malformed_month_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month(bad)


def test_shift_month_crosses_years() -> None:
    assert shift_month("2026-01", -1) == "2025-12"
    assert shift_month("2025-12", 1) == "2026-01"
    assert shift_month("2026-03", -14) == "2025-01"


def test_rates_follow_domain_md() -> None:
    # 10 valid visits: 8 in time, 7 solved, 5 satisfied and 4 basically satisfied.
    rates = _rates(10, 8, 7, 5, 4, POLICY)
    assert rates["response_rate"] == pytest.approx(0.8)
    assert rates["resolution_rate"] == pytest.approx(0.7)
    assert rates["satisfaction_rate"] == pytest.approx((5 + 0.9 * 4) / 10)  # 0.86
    # 0.1 × 0.8 + 0.5 × 0.7 + 0.4 × 0.86 = 0.08 + 0.35 + 0.344
    assert rates["composite"] == pytest.approx(0.774)


def test_no_valid_visit_gives_null_rates() -> None:
    assert set(_rates(0, 0, 0, 0, 0, POLICY).values()) == {None}


def test_weights_come_from_the_policy() -> None:
    policy = ReportPolicy(
        calendar=WorkCalendar(TZ),
        response_weight=0.2,
        resolution_weight=0.4,
        satisfaction_weight=0.4,
        basic_satisfied_weight=0.8,
    )
    rates = _rates(4, 4, 2, 0, 4, policy)
    assert rates["satisfaction_rate"] == pytest.approx(0.8)
    assert rates["composite"] == pytest.approx(0.2 * 1 + 0.4 * 0.5 + 0.4 * 0.8)


@pytest.mark.parametrize(
    ("composite", "stars"),
    [(None, None), (0.0, 1), (0.5999, 1), (0.6, 2), (0.7, 3), (0.79999, 3), (0.8, 4), (0.9, 5)],
)
def test_stars_from_the_thresholds(composite: float | None, stars: int | None) -> None:
    assert POLICY.stars(composite) == stars


def test_a_threshold_reached_through_float_sums_counts() -> None:
    # 7 visits, 5 in time, 7 solved, 4 satisfied: 0.1 × 5/7 + 0.5 + 0.4 × 4/7 = 0.8 exactly,
    # 0.7999999999999999 in floating point.
    composite = _rates(7, 5, 7, 4, 0, POLICY)["composite"]
    assert composite is not None and composite < 0.8
    assert POLICY.stars(composite) == 4


def test_working_day_index_differences_are_working_days_between() -> None:
    calendar = WorkCalendar(TZ)
    rng = random.Random(7)
    days = [date(2025, 9, 20) + timedelta(days=rng.randrange(200)) for _ in range(60)]
    index = _working_day_index(days, calendar)
    for _ in range(200):
        a, b = sorted(rng.sample(days, 2))
        at_a = datetime(a.year, a.month, a.day, 10, tzinfo=TZ)
        at_b = datetime(b.year, b.month, b.day, 18, tzinfo=TZ)
        assert index[b] - index[a] == calendar.working_days_between(at_a, at_b)


def test_working_days_know_the_official_calendar() -> None:
    calendar = WorkCalendar(TZ)
    # National Day 2025: 1-8 October off, Sunday 28 September and Saturday 11 October worked.
    index = _working_day_index([date(2025, 9, 26), date(2025, 10, 12)], calendar)
    # 27 Sep (Sat) off, 28 (Sun) on, 29, 30 on, 1-8 Oct off, 9, 10 on, 11 (Sat) on, 12 off.
    assert index[date(2025, 10, 12)] - index[date(2025, 9, 26)] == 6
