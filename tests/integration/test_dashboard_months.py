"""The dashboard's month picker (?month=YYYY-MM) on the real database (SQLite and PostgreSQL):
an earlier month shows the monthly report's figures of that month (`minsheng report monthly
--json`), the current one is marked as partial ("so far, to <date>"), the picker goes back to
the month of the first case, a month the page cannot show is refused with a message (400,
never a 500), and an earlier month costs the same few queries whatever the number of cases."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from babel.dates import format_date
from click.testing import CliRunner
from sqlalchemy import func, select

from tests.integration.test_dashboard import Queries, _cell, _month_received
from triage.models import Case, Department, FigureSnapshot, User
from triage.report import snapshots
from triage.report.figures import ReportPolicy, month_of, month_window, shift_month
from web import dashboard
from web.cli import main
from web.dashboard import rate_text
from web.demo_volume import add_volume


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # The cache lives in the process and is keyed by database URL, which PostgreSQL tests share.
    dashboard.clear_cache()
    yield
    dashboard.clear_cache()


@pytest.fixture
def months(runtime: Any) -> tuple[str, str]:
    """Cases over the last three months; returns (this month, the month before)."""
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        add_volume(conn, 240, months=3, now=now, seed=31)
    policy = ReportPolicy.from_settings(runtime.settings)
    current = month_of(now, policy)
    return current, shift_month(current, -1)


def _text(html: str, id_: str) -> str:
    m = re.search(rf'<(\w+)[^>]* id="{id_}"[^>]*>(.*?)</\1>', html, re.S)
    assert m, f"no #{id_} on the page"
    return re.sub(r"<[^>]+>", "", m.group(2)).strip()


def _report(config_file: Any, month: str) -> dict[str, Any]:
    out = CliRunner().invoke(
        main, ["report", "monthly", "--month", month, "--json", "--config", str(config_file)]
    )
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_an_earlier_month_shows_the_monthly_reports_figures(
    runtime: Any, login_as: Any, months: tuple[str, str], config_file: Any
) -> None:
    _current, last = months
    client = login_as("supervisor")
    now_page = client.get("/board/dashboard").get_data(as_text=True)
    page = client.get(f"/board/dashboard?month={last}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # What `minsheng report monthly` computes for that month, after the page computed its own.
    report = _report(config_file, last)
    assert report["received"] > 0 and report["valid_visits"] > 0
    assert _month_received(html) == report["received"]
    assert int(_text(html, "month-valid-visits")) == report["valid_visits"]
    for key, id_ in (
        ("response_rate", "month-response"),
        ("resolution_rate", "month-resolution"),
        ("satisfaction_rate", "month-satisfaction"),
        ("on_time_rate", "month-on-time"),
    ):
        assert _text(html, id_) == rate_text(report[key]), key
    for d in report["departments"]:
        assert _cell(html, d["code"], "response") == rate_text(d["response_rate"])
        assert _cell(html, d["code"], "satisfaction") == rate_text(d["satisfaction_rate"])
        assert _cell(html, d["code"], "on-time") == rate_text(d["on_time_rate"])
    # Not this month's figures, and said to be a whole month, not a partial one.
    assert _month_received(now_page) != report["received"]
    assert last in _text(html, "month-heading")
    assert 'id="month-partial"' not in html and 'id="month-whole"' in html
    assert re.search(rf'<option value="{last}" selected>', html)
    # The charts of that month, not of this one.
    assert f"/board/dashboard/charts/rates.png?month={last}" in html
    rates = client.get(f"/board/dashboard/charts/rates.png?month={last}")
    assert rates.status_code == 200 and rates.data.startswith(b"\x89PNG")
    assert rates.data != client.get("/board/dashboard/charts/rates.png").data


def test_a_handler_sees_their_departments_row_of_an_earlier_month(
    runtime: Any, login_as: Any, months: tuple[str, str], config_file: Any
) -> None:
    _current, last = months
    with runtime.sessions() as s:
        handler = s.scalars(select(User).where(User.role == "handler")).first()
        code = s.get(Department, handler.department_id).code
        username = handler.username
    html = login_as(username).get(f"/board/dashboard?month={last}").get_data(as_text=True)
    report = _report(config_file, last)
    own = next(d for d in report["departments"] if d["code"] == code)
    assert re.findall(r'<tr data-department="([^"]+)">', html) == [code]
    assert _month_received(html) == report["by_department"].get(code, 0)
    assert int(_text(html, "month-valid-visits")) == own["valid_visits"]
    assert _cell(html, code, "resolution") == rate_text(own["resolution_rate"])


def test_the_current_month_is_marked_as_partial_in_both_languages(
    runtime: Any, login_as: Any, months: tuple[str, str]
) -> None:
    current, _last = months
    client = login_as("supervisor")
    zh = client.get("/board/dashboard").get_data(as_text=True)
    policy = ReportPolicy.from_settings(runtime.settings)
    with runtime.sessions() as s:
        computed = s.scalar(
            select(FigureSnapshot.computed_at).where(
                FigureSnapshot.month == current, FigureSnapshot.scope == "full"
            )
        )
    tz = policy.timezone
    local = computed.replace(tzinfo=computed.tzinfo or UTC).astimezone(tz).date()
    first = month_window(current, policy)[0].astimezone(tz).date()
    day = (local - first).days + 1
    mark = _text(zh, "month-partial")
    assert "本月未结束" in mark
    assert f"截至 {format_date(local, 'long', locale='zh')}" in mark
    assert f"本月第 {day} 天" in mark
    assert 'id="month-whole"' not in zh
    assert re.search(rf'<option value="{current}" selected>{current}（至今）</option>', zh)
    en = client.get("/board/dashboard?lang=en").get_data(as_text=True)
    mark = _text(en, "month-partial")
    assert "Partial month" in mark
    assert f"so far, to {format_date(local, 'long', locale='en')} (day {day} of" in mark


def test_the_picker_goes_back_to_the_month_of_the_first_case(
    runtime: Any, login_as: Any, months: tuple[str, str]
) -> None:
    current, _last = months
    policy = ReportPolicy.from_settings(runtime.settings)
    with runtime.sessions() as s:
        earliest = s.scalar(select(func.min(Case.received_at)))
        # One case long before the others: the picker reaches back to its month.
        oldest = s.get(Case, s.scalar(select(func.min(Case.id))))
        oldest.received_at = earliest - timedelta(days=150)
        s.commit()
        first = month_of(oldest.received_at.replace(tzinfo=UTC), policy)
    html = login_as("supervisor").get("/board/dashboard").get_data(as_text=True)
    offered = re.findall(r'<option value="(\d{4}-\d{2})"', html)
    expected = [current]
    while expected[-1] != first:
        expected.append(shift_month(expected[-1], -1))
    assert offered == expected and len(offered) >= 7
    # The oldest month shows too: a month with a case but few figures.
    page = login_as("supervisor").get(f"/board/dashboard?month={first}")
    assert page.status_code == 200 and _month_received(page.get_data(as_text=True)) >= 1


BAD_MONTHS = (
    "2026-13",
    "abc",
    "2026-1",
    "0000-01",
    "1999-12",
    "2999-01",
    "2026-05-01",
    "２０２６-０５",
    "x" * 300,
)


def test_a_month_the_page_cannot_show_is_refused_with_a_message(
    runtime: Any, login_as: Any, months: tuple[str, str]
) -> None:
    current, _last = months
    client = login_as("supervisor")
    for value in BAD_MONTHS:
        page = client.get("/board/dashboard", query_string={"month": value})
        assert page.status_code == 400, value
        html = page.get_data(as_text=True)
        message = _text(html, "month-error")
        assert "现显示本月数据" in message, value
        assert "x" * 30 not in message  # a long value is cut short
        # This month's figures, not an error page.
        assert current in _text(html, "month-heading") and 'id="month-partial"' in html
        chart = client.get("/board/dashboard/charts/rates.png", query_string={"month": value})
        assert chart.status_code == 400, value
    en = client.get("/board/dashboard", query_string={"month": "2026-13", "lang": "en"})
    assert en.status_code == 400
    message = _text(en.get_data(as_text=True), "month-error")
    assert message.startswith("“2026-13” is not a month") and "Showing this month" in message
    en = client.get("/board/dashboard", query_string={"month": "2999-01", "lang": "en"})
    message = _text(en.get_data(as_text=True), "month-error")
    assert "choose a month from" in message and f"to {current}." in message


def test_no_month_or_an_empty_one_is_this_month(login_as: Any, months: tuple[str, str]) -> None:
    current, _last = months
    client = login_as("supervisor")
    for query in ("", "?month=", f"?month={current}", "?month=%20"):
        page = client.get(f"/board/dashboard{query}")
        assert page.status_code == 200, query
        html = page.get_data(as_text=True)
        assert 'id="month-error"' not in html and current in _text(html, "month-heading")
    # The operator sees no month's figures: the parameter changes nothing for them.
    op = login_as("operator").get("/board/dashboard?month=nonsense")
    assert op.status_code == 200 and 'id="month-picker"' not in op.get_data(as_text=True)


def test_a_snapshot_made_before_the_month_ended_is_computed_again_whole(
    runtime: Any, login_as: Any, months: tuple[str, str], config_file: Any
) -> None:
    """The tick's last refresh of last month ran before the month ended: the dashboard does
    not show that as last month's figures, it computes the whole month once."""
    _current, last = months
    policy = ReportPolicy.from_settings(runtime.settings)
    _start, end = month_window(last, policy)
    with runtime.sessions() as s:
        early = snapshots.compute_and_store(
            s, snapshots.FULL, last, policy, end - timedelta(days=3)
        )
    assert not early.complete
    client = login_as("supervisor")
    html = client.get(f"/board/dashboard?month={last}").get_data(as_text=True)
    with runtime.sessions() as s:
        rows = s.scalars(select(FigureSnapshot).where(FigureSnapshot.month == last)).all()
    assert {(r.scope, r.complete) for r in rows} == {("full", False), ("public", True)}
    report = _report(config_file, last)
    assert early.figures["received"] < report["received"]
    assert _month_received(html) == report["received"]
    assert 'id="month-partial"' not in html


def test_an_earlier_months_queries_do_not_grow_with_the_cases(runtime: Any, login_as: Any) -> None:
    client = login_as("supervisor")
    policy = ReportPolicy.from_settings(runtime.settings)
    last = shift_month(month_of(datetime.now(UTC), policy), -1)
    counts = []
    # 60 cases, then 200 more (some 20, then some 90, in the month shown): a query per case
    # of the month would be counted dozens of times more.
    for extra in (60, 200):
        with runtime.engine.begin() as conn:
            add_volume(conn, extra, months=3, seed=extra)
            conn.execute(FigureSnapshot.__table__.delete())
        dashboard.clear_cache()
        with Queries(runtime.engine) as cold:
            page = client.get(f"/board/dashboard?month={last}")
        with Queries(runtime.engine) as warm:
            again = client.get(f"/board/dashboard?month={last}")
        for shown in (page, again):
            assert shown.status_code == 200
            assert last in _text(shown.get_data(as_text=True), "month-heading")
        counts.append((cold.n, warm.n))
    # Nothing stored: computed once, a few grouped queries whatever the cases ...
    assert all(cold <= 30 for cold, _ in counts), counts
    assert abs(counts[0][0] - counts[1][0]) <= 1, counts
    # ... then the page reads one stored row, as for this month.
    assert counts[0][1] == counts[1][1] <= 8, counts
    # The supervision tick keeps the last 12 whole months (for the public page): the page
    # reads its snapshot and computes nothing.
    with runtime.engine.begin() as conn:
        conn.execute(FigureSnapshot.__table__.delete())
    with runtime.sessions() as s:
        assert f"public:{last}" in snapshots.refresh(s, policy, datetime.now(UTC))
    with Queries(runtime.engine) as after_tick:
        page = client.get(f"/board/dashboard?month={last}")
    assert page.status_code == 200 and after_tick.n == counts[1][1], after_tick.n
