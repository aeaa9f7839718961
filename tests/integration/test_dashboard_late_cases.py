"""A past month's figures after cases of it are registered late (a call log of the 30th
imported on the 1st, `minsheng demo --volume`, a case whose received time is corrected), on
the real database (SQLite and PostgreSQL): the dashboard's month picker, the public
performance page and `minsheng report monthly --json` say the same number received, not the
snapshot stored before the late cases came in (triage/report/snapshots.py, `mark_late`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.helpers import submit_complaint
from tests.integration.test_call_import import cli_json, write_csv
from tests.integration.test_dashboard import _month_received
from tests.integration.test_dashboard_months import _report
from triage.models import Case, FigureSnapshot
from triage.report.figures import ReportPolicy, month_of, month_window, shift_month
from web import dashboard
from web.demo_volume import add_volume
from web.performance import year_of_figures


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    dashboard.clear_cache()
    yield
    dashboard.clear_cache()


@pytest.fixture
def last(runtime: Any) -> str:
    """Cases over the last three months; returns the month before this one (complete)."""
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        add_volume(conn, 120, months=3, now=now, seed=7)
    return shift_month(month_of(now, ReportPolicy.from_settings(runtime.settings)), -1)


def _dashboard(login_as: Any, month: str) -> int:
    dashboard.clear_cache()
    page = login_as("supervisor").get(f"/board/dashboard?month={month}")
    assert page.status_code == 200
    return _month_received(page.get_data(as_text=True))


def _public(runtime: Any, month: str) -> int:
    """The public performance page's figure of `month` (one of its 12 complete months)."""
    with runtime.sessions() as s:
        year = year_of_figures(s, runtime.settings, datetime.now(UTC))
    (found,) = [f for f in year if f["month"] == month]
    return int(found["received"])


def _in_month(runtime: Any, month: str, days: int = 3) -> datetime:
    start, _end = month_window(month, ReportPolicy.from_settings(runtime.settings))
    return start + timedelta(days=days, hours=2)


def test_a_late_call_import_shows_on_every_view_of_its_month(
    runtime: Any, login_as: Any, config_file: Path, tmp_path: Path, last: str
) -> None:
    """Dashboard, public page and report all stored their snapshot of last month; then the
    call log of last month is imported: each says one more received, as the report does."""
    before = _dashboard(login_as, last)
    assert _public(runtime, last) == before
    assert _report(config_file, last)["received"] == before  # stored as the `full` snapshot

    local = _in_month(runtime, last).astimezone(
        ReportPolicy.from_settings(runtime.settings).timezone
    )
    row = ["GDLATE1", "13812340001", local.strftime("%Y/%m/%d %H:%M"), "60", "幸福路井盖丢失"]
    path = write_csv(tmp_path / "calls.csv", [[*row, "王芳", "", "", "投诉"]])
    assert cli_json(config_file, str(path))["registered"] == 1

    assert _dashboard(login_as, last) == before + 1
    assert _public(runtime, last) == before + 1
    assert _report(config_file, last)["received"] == before + 1
    assert _dashboard(login_as, last) == before + 1


def test_a_bulk_add_of_old_cases_shows_on_the_dashboards_past_month(
    runtime: Any, login_as: Any, config_file: Path, last: str
) -> None:
    """`minsheng demo --volume` adds cases over past months after their figures were stored."""
    before = _dashboard(login_as, last)
    with runtime.engine.begin() as conn:
        add_volume(conn, 60, months=3, now=datetime.now(UTC), seed=8)
    report = _report(config_file, last)["received"]
    assert report > before
    assert _dashboard(login_as, last) == report == _public(runtime, last)


def test_a_case_moved_into_a_past_month_shows_on_the_dashboard(
    runtime: Any, login_as: Any, client: Any, config_file: Path, last: str
) -> None:
    """A case registered now whose received time is then set back into last month (the
    received time of a call corrected): the dashboard follows the report, not its
    snapshot of before."""
    before = _dashboard(login_as, last)
    number, _ = submit_complaint(client, "幸福路井盖丢失很危险", name="迟到", phone="13812340001")
    with runtime.sessions() as s, s.begin():
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        case.received_at = _in_month(runtime, last)
    assert _report(config_file, last)["received"] == before + 1
    assert _dashboard(login_as, last) == before + 1


def test_a_case_registered_as_it_comes_in_leaves_the_past_months_figures_final(
    runtime: Any, login_as: Any, client: Any, last: str
) -> None:
    """Only cases of a closed month make its figures be computed again."""
    _dashboard(login_as, last)
    submit_complaint(client, "明德路路灯不亮", name="李四", phone="13800138000")
    with runtime.sessions() as s:
        rows = s.scalars(select(FigureSnapshot).where(FigureSnapshot.month == last)).all()
    assert rows and all(r.complete for r in rows)
