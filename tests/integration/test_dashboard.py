"""The board's dashboard and the public performance page on the real database (SQLite and
PostgreSQL): what each role sees, that the figures shown are the monthly report's
(monthly_figures), that the charts are PNGs with cache headers, and that a page costs a
bounded number of queries whatever the number of cases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from tests.integration.helpers import submit_complaint
from triage.models import OPEN_STATUSES, Case, Department, FigureSnapshot, User
from triage.report.figures import ReportPolicy, month_of, monthly_figures, shift_month
from triage.supervision import run_tick
from web import dashboard
from web.cli_supervise import supervision_policy
from web.dashboard import rate_text
from web.demo_volume import add_volume


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # The cache lives in the process and is keyed by database URL, which PostgreSQL tests share.
    dashboard.clear_cache()
    yield
    dashboard.clear_cache()


@pytest.fixture
def cases(runtime: Any, client: Any) -> datetime:
    """Three months of cases up to now, with the tick's findings (risk) stored."""
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        add_volume(conn, 300, months=3, now=now, seed=77)
    # And complaints right now: the current month and today have cases, whatever the hour.
    for text in (
        "莲花路路灯坏了三个星期了",
        "小区门口夜里施工噪音扰民",
        "人民公园厕所长期无人打扫",
    ):
        submit_complaint(client, text)
    run_tick(runtime.sessions, now, supervision_policy(runtime.settings))
    return now


def _cell(html: str, code: str, cls: str) -> str:
    row = re.search(rf'<tr data-department="{code}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {code}"
    m = re.search(rf'class="{cls}">([^<]*)<', row.group(1))
    assert m, f"no {cls} in the row of {code}"
    return m.group(1).strip()


def _tile(html: str, name: str) -> int:
    m = re.search(rf'id="tile-{name}">(\d+)<', html)
    assert m, name
    return int(m.group(1))


def _counts(runtime: Any, department_id: int | None = None) -> dict[str, int]:
    with runtime.sessions() as s:

        def n(*where: Any) -> int:
            q = select(func.count()).select_from(Case).where(*where)
            if department_id is not None:
                q = q.where(Case.department_id == department_id)
            return int(s.scalar(q) or 0)

        opened = Case.status.in_([str(x) for x in OPEN_STATUSES])
        return {
            "open": n(opened),
            "at-risk": n(opened, Case.risk == "at_risk"),
            "overdue": n(opened, Case.risk == "overdue"),
        }


def test_supervisor_sees_every_department_with_the_reports_figures(
    runtime: Any, login_as: Any, cases: datetime
) -> None:
    page = login_as("supervisor").get("/board/dashboard")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    with runtime.sessions() as s:
        policy = ReportPolicy.from_settings(runtime.settings)
        figures = monthly_figures(s, month_of(datetime.now(UTC), policy), policy)
        codes = list(s.scalars(select(Department.code).where(Department.active.is_(True))))
    assert figures["received"] > 0
    assert int(re.search(r'id="month-received">(\d+)<', html).group(1)) == figures["received"]
    assert re.search(r'id="month-resolution">([^<]+)<', html).group(1) == rate_text(
        figures["resolution_rate"]
    )
    for d in figures["departments"]:
        assert _cell(html, d["code"], "response") == rate_text(d["response_rate"])
        assert _cell(html, d["code"], "satisfaction") == rate_text(d["satisfaction_rate"])
        assert _cell(html, d["code"], "on-time") == rate_text(d["on_time_rate"])
    assert set(codes) <= {d["code"] for d in figures["departments"]}
    expected = _counts(runtime)
    assert expected["open"] > 0 and expected["overdue"] + expected["at-risk"] > 0
    for name, n in expected.items():
        assert _tile(html, name) == n
    for name in ("volume", "rates", "categories"):
        assert f'id="chart-{name}"' in html


def test_handler_sees_only_their_department(runtime: Any, login_as: Any, cases: datetime) -> None:
    with runtime.sessions() as s:
        handler = s.scalars(select(User).where(User.role == "handler")).first()
        own = s.get(Department, handler.department_id)
        username, code, dept_id = handler.username, own.code, own.id
    client = login_as(username)
    html = client.get("/board/dashboard").get_data(as_text=True)
    rows = re.findall(r'<tr data-department="([^"]+)">', html)
    assert rows == [code]
    for name, n in _counts(runtime, dept_id).items():
        assert _tile(html, name) == n
    assert client.get("/board/dashboard/charts/rates.png").status_code == 200
    # The office-wide categories are not theirs to see.
    assert client.get("/board/dashboard/charts/categories.png").status_code == 404
    assert 'id="chart-categories"' not in html


def test_a_handlers_month_tiles_count_their_department_not_the_office(
    runtime: Any, login_as: Any, cases: datetime
) -> None:
    with runtime.sessions() as s:
        handler = s.scalars(select(User).where(User.role == "handler")).first()
        code = s.get(Department, handler.department_id).code
        policy = ReportPolicy.from_settings(runtime.settings)
        figures = monthly_figures(s, month_of(datetime.now(UTC), policy), policy)
    own = next(d for d in figures["departments"] if d["code"] == code)
    assert figures["received"] > figures["by_department"].get(code, 0)
    html = login_as(handler.username).get("/board/dashboard").get_data(as_text=True)
    assert _month_received(html) == figures["by_department"].get(code, 0)
    visits = re.search(r'id="month-valid-visits">(\d+)<', html)
    assert visits and int(visits.group(1)) == own["valid_visits"]


def test_observer_sees_aggregates_only_and_operator_the_intake(
    runtime: Any, login_as: Any, cases: datetime
) -> None:
    page = login_as("observer").get("/board/dashboard").get_data(as_text=True)
    assert 'id="department-figures"' in page
    html = page.split("<main>", 1)[1].split("</main>", 1)[0]  # the header names the observer
    with runtime.sessions() as s:
        people = s.execute(select(Case.contact_phone, Case.contact_name, Case.subject)).all()
    for phone, name, _subject in people:
        assert not phone or phone not in html
        assert len(name) < 2 or name not in html
    assert "MS-" not in html  # no tracking number, no case
    op = login_as("operator").get("/board/dashboard").get_data(as_text=True)
    assert 'id="tile-received"' in op and 'id="department-figures"' not in op
    assert 'id="chart-volume"' in op and 'id="chart-rates"' not in op
    assert login_as("operator").get("/board/dashboard/charts/rates.png").status_code == 404


def test_dashboard_needs_a_sign_in(client: Any) -> None:
    assert client.get("/board/dashboard").status_code in (302, 401)
    assert client.get("/board/dashboard/charts/volume.png").status_code in (302, 401)


def test_charts_are_png_with_cache_headers(runtime: Any, login_as: Any, cases: datetime) -> None:
    client = login_as("supervisor")
    for name in ("volume", "rates", "categories"):
        r = client.get(f"/board/dashboard/charts/{name}.png")
        assert r.status_code == 200 and r.mimetype == "image/png"
        assert r.data.startswith(b"\x89PNG")
        assert r.headers["Cache-Control"] == "private, max-age=60"
        again = client.get(
            f"/board/dashboard/charts/{name}.png", headers={"If-None-Match": r.headers["ETag"]}
        )
        assert again.status_code == 304
    assert client.get("/board/dashboard/charts/nothing.png").status_code == 404


class Queries:
    def __init__(self, engine: Any) -> None:
        self.n = 0
        self.engine = engine

    def __enter__(self) -> Queries:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, *args: Any) -> None:
        self.n += 1


def test_the_query_count_does_not_grow_with_the_cases(runtime: Any, login_as: Any) -> None:
    client = login_as("supervisor")
    counts = []
    for extra in (60, 600):
        with runtime.engine.begin() as conn:
            add_volume(conn, extra, months=2, seed=extra)
            # No stored figures yet (a new database, or a tick that never ran): computed once.
            conn.execute(FigureSnapshot.__table__.delete())
        dashboard.clear_cache()
        with Queries(runtime.engine) as cold:
            assert client.get("/board/dashboard").status_code == 200
        with Queries(runtime.engine) as warm:
            assert client.get("/board/dashboard").status_code == 200
        counts.append((cold.n, warm.n))
    # Ten times the cases, the same queries: a few grouped ones for the month's figures
    # (whose hot issues, when there is something to cluster, take one more and a few for the
    # people of their cases to mask: merged and linked cases, triage.case_people) ...
    assert all(cold <= 32 for cold, _ in counts), counts
    assert abs(counts[0][0] - counts[1][0]) <= 6, counts
    # ... stored: a second view costs only today's counts, the page's own reads and one read
    # of the stored figures.
    assert counts[0][1] == counts[1][1] <= 8, counts


def test_the_public_page_shows_each_departments_commitments_and_year(
    runtime: Any, client: Any, cases: datetime
) -> None:
    r = client.get("/performance")
    assert r.status_code == 200
    assert "max-age" in r.headers["Cache-Control"]
    html = r.get_data(as_text=True)
    policy = ReportPolicy.from_settings(runtime.settings)
    last = shift_month(month_of(datetime.now(UTC), policy), -1)
    with runtime.sessions() as s:
        figures = monthly_figures(s, last, policy, with_previous=False, with_hot_issues=False)
        departments = list(s.scalars(select(Department).where(Department.active.is_(True))))
        people = s.execute(select(Case.contact_phone, Case.contact_name)).all()
    assert figures["received"] > 0
    for d in departments:
        section = re.search(
            rf'<section class="department" data-department="{d.code}">(.*?)</section>', html, re.S
        )
        assert section, d.code
        body = section.group(1)
        assert d.name in body
        assert body.count("<tr data-month=") == 12
        row = re.search(rf'<tr data-month="{last}">(.*?)</tr>', body, re.S).group(1)
        own = next(x for x in figures["departments"] if x["code"] == d.code)
        received = re.search(r'class="received">(\d+)<', row).group(1)
        assert int(received) == figures["by_department"].get(d.code, 0)
        on_time = re.search(r'class="on-time">([^<]+)<', row).group(1)
        assert on_time == rate_text(own["on_time_rate"])
        resolution = re.search(r'class="resolution">([^<]+)<', row).group(1)
        assert resolution == rate_text(own["resolution_rate"])
    for phone, name in people:
        assert not phone or phone not in html
        assert len(name) < 2 or name not in html
    for name in ("volume", "rates"):
        png = client.get(f"/performance/charts/{name}.png")
        assert png.status_code == 200 and png.data.startswith(b"\x89PNG")
        assert png.headers["Cache-Control"].startswith("public")
    assert 'href="/performance"' in client.get("/").get_data(as_text=True)
    assert 'href="/performance"' in client.get("/commitments").get_data(as_text=True)


def _month_received(html: str) -> int:
    m = re.search(r'id="month-received">(\d+)<', html)
    assert m, "no month figures on the page"
    return int(m.group(1))


def test_the_dashboard_reads_the_ticks_stored_figures(
    runtime: Any, login_as: Any, client: Any, config_file: Any
) -> None:
    """The tick stores the month's figures; every view (any process) reads them until the
    next refresh, and a missing snapshot is computed once, under a lease another process
    sees ('being computed' meanwhile)."""
    from click.testing import CliRunner

    from web.cli import main

    supervisor = login_as("supervisor")
    submit_complaint(client, "莲花路路灯坏了三个星期了")
    out = CliRunner().invoke(main, ["supervise", "tick", "--config", str(config_file), "--json"])
    assert out.exit_code == 0, out.output
    policy = ReportPolicy.from_settings(runtime.settings)
    month = month_of(datetime.now(UTC), policy)
    assert f"full:{month}" in out.stdout
    html = supervisor.get("/board/dashboard").get_data(as_text=True)
    assert _month_received(html) == 1 and 'id="figures-as-of"' in html
    # A new case: the page still shows the stored figures (no recomputation per view) ...
    submit_complaint(client, "小区门口夜里施工噪音扰民")
    dashboard.clear_cache()
    assert _month_received(supervisor.get("/board/dashboard").get_data(as_text=True)) == 1
    # ... until the tick's next refresh of a snapshot older than its max age.
    from triage.report import snapshots

    later = datetime.now(UTC) + snapshots.MAX_AGE * 2
    with runtime.sessions() as s:
        assert snapshots.refresh(s, policy, later, public_months=0) == [f"full:{month}"]
    assert _month_received(supervisor.get("/board/dashboard").get_data(as_text=True)) == 2


def test_a_missing_snapshot_is_computed_by_one_process_only(
    runtime: Any, login_as: Any, client: Any, monkeypatch: Any
) -> None:
    from triage.report import snapshots

    submit_complaint(client, "人民公园厕所长期无人打扫")
    policy = ReportPolicy.from_settings(runtime.settings)
    now = datetime.now(UTC)
    month = month_of(now, policy)
    # Another process took the lease and is computing: the page does not compute too.
    assert snapshots._claim(runtime.engine, snapshots.FULL, month, now)
    assert not snapshots._claim(runtime.engine, snapshots.FULL, month, now)
    monkeypatch.setattr(snapshots, "WAIT_SECONDS", 0.3)
    supervisor = login_as("supervisor")
    html = supervisor.get("/board/dashboard").get_data(as_text=True)
    assert 'id="figures-pending"' in html and "正在计算" in html
    assert 'id="month-received"' not in html
    # Its lease lapsed (the process died): the next view takes it over and computes.
    with runtime.engine.begin() as conn:
        conn.execute(FigureSnapshot.__table__.update().values(lease_until=None))
    assert _month_received(supervisor.get("/board/dashboard").get_data(as_text=True)) == 1
    with runtime.sessions() as s:
        rows = s.scalars(select(FigureSnapshot).where(FigureSnapshot.month == month)).all()
    assert [(r.scope, r.lease_until, r.figures["received"]) for r in rows] == [("full", None, 1)]


def test_a_complete_month_is_computed_once_for_the_public_page(
    runtime: Any, client: Any, cases: datetime
) -> None:
    policy = ReportPolicy.from_settings(runtime.settings)
    last = shift_month(month_of(datetime.now(UTC), policy), -1)
    assert client.get("/performance").status_code == 200
    with runtime.sessions() as s:
        stored = s.scalars(select(FigureSnapshot).where(FigureSnapshot.scope == "public")).all()
    assert len(stored) == 12 and all(r.complete for r in stored)
    assert {r.month for r in stored} >= {last}
    # The page needs none of the details: skipped when computed.
    latest = next(r for r in stored if r.month == last).figures
    assert latest["hot_issues"] == [] and latest["avg_handling_working_days"] is None
    # Later views read the twelve stored months in one query, computing nothing.
    with Queries(runtime.engine) as again:
        assert client.get("/performance").status_code == 200
    assert again.n <= 6, again.n


def test_concurrent_requests_compute_a_missing_month_once(runtime: Any, client: Any) -> None:
    """Four requests at once (threads with their own sessions, as web processes have) find
    no stored figures: one computes them, the others get that one's."""
    import threading

    from triage.report import snapshots

    submit_complaint(client, "莲花路路灯坏了三个星期了")
    policy = ReportPolicy.from_settings(runtime.settings)
    base = datetime.now(UTC)
    month = month_of(base, policy)
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def request(i: int) -> None:
        # Each its own moment: the snapshot's computed_at tells which request computed it.
        now = base + timedelta(milliseconds=i + 1)
        with runtime.sessions() as s:
            barrier.wait()
            results.append(
                snapshots.figures_for(s, snapshots.FULL, [month], policy, now, wait_seconds=30)
            )

    threads = [threading.Thread(target=request, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [r[month] for r in results]
    assert len(got) == 4 and all(g is not None for g in got)
    assert len({g.computed_at for g in got}) == 1
    assert {g.figures["received"] for g in got} == {1}


def test_overdue_tile_agrees_with_the_overdue_list_after_a_call_import(
    config_file: Any, login_as: Any, tmp_path: Any
) -> None:
    """Issue 10 (red-team): calls of last week imported, no supervision tick since: the
    overdue list (by the clock) has them, and so has the dashboard's Overdue tile (it
    counted only what the last tick had marked: 0 against the list's 2)."""
    import csv
    from zoneinfo import ZoneInfo

    from click.testing import CliRunner

    from web.cli import main

    earlier = datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=6)
    path = tmp_path / "calls.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["工单号", "来电号码", "来电时间", "通话时长", "诉求内容", "话务员"])
        for i, text in enumerate(["小区楼下烧烤店油烟很大，晚上噪音扰民", "单位拖欠工资三个月了"]):
            at = (earlier + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S")
            w.writerow([f"RT-{i}", f"1391234567{i}", at, "60", text, "op1"])
    args = ["intake", "calls", str(path), "--config", str(config_file), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    supervisor = login_as("supervisor")
    listed = supervisor.get("/board/cases?overdue=1").get_data(as_text=True)
    total = re.search(r"<small>\((\d+)\+?\)</small>", listed)
    assert total is not None and int(total.group(1)) >= 2  # past their dispatch deadline
    tile = _tile(supervisor.get("/board/dashboard").get_data(as_text=True), "overdue")
    assert tile == int(total.group(1))


def test_volume_chart_counts_this_month_at_once_and_earlier_months_hourly(
    runtime: Any, cases: datetime, app: Any
) -> None:
    """The volume chart's twelve months are the report's (volume_trend); a case received now
    shows at the next render, one received last month once the hour's count expires."""
    from triage.report.email import volume_trend

    settings = runtime.settings
    policy = ReportPolicy.from_settings(settings)
    now = datetime.now(UTC)
    month = month_of(now, policy)
    with runtime.sessions() as s:
        shown = dashboard.volume_months(s, settings, now, None)
        assert shown == volume_trend(s, month, policy, 12, until=now)
        assert [m for m, _ in shown][-1] == month and len(shown) == 12
        assert sum(n for _, n in shown) >= 300
    last_month_day = now.replace(day=1) - timedelta(days=3)
    with runtime.engine.begin() as conn:
        add_volume(conn, 5, months=1, now=now, seed=5)
    with runtime.sessions() as s:
        newest = s.scalar(select(func.max(Case.id)))
        s.get(Case, newest).received_at = last_month_day
        s.commit()
    with runtime.sessions() as s:
        again = dashboard.volume_months(s, settings, now, None)
        fresh = volume_trend(s, month, policy, 12, until=now)
        assert again[-1] == fresh[-1]  # this month: at once
        assert again[:-1] == shown[:-1]  # earlier months: from the hour's count
        dashboard.clear_cache()
        assert dashboard.volume_months(s, settings, now, None) == fresh
        assert fresh[-2][1] > shown[-2][1]  # the case moved to last month, at least
        assert sum(n for _, n in fresh) == sum(n for _, n in shown) + 5
