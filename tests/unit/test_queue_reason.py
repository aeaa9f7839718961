"""The triage queue's reason "confidence below the threshold" shows two different numbers."""

from __future__ import annotations

from web.i18n import _distinct_percents


def test_close_percentages_get_the_decimals_that_tell_them_apart() -> None:
    assert _distinct_percents(0.8652, 0.87) == ("86.5%", "87.0%")
    assert _distinct_percents(0.86999, 0.87) == ("86.999%", "87.000%")
    assert _distinct_percents(0.5, 0.87) == ("50%", "87%")
    assert _distinct_percents(0.87, 0.87) == ("87%", "87%")
