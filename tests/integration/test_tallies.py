"""The maintained case tallies (triage/tallies.py, migration 0025): after every kind of writer
they equal a GROUP BY over the cases (both databases), concurrent writers on PostgreSQL
neither deadlock nor lose a count, the case list's counts per filter value and the
dashboard's tiles read from them show what is in the database right after a change, per
role; the migration comes and goes with the counts backfilled."""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, insert, select, text, update

from tests.conftest import DB_KIND
from tests.integration.helpers import post_form, submit_complaint
from tests.integration.test_call_import_batch import export, import_rows
from tests.integration.test_department_successor import _deactivate_urban
from tests.integration.test_kanban import _case, _dispatch, _replied_and_visited
from triage import tallies
from triage.cases import register
from triage.models import OPEN_STATUSES, Base, Case, Department, Status
from triage.supervision import run_tick
from triage.tallies import DIMENSIONS, CaseTally
from web.cli_supervise import supervision_policy
from web.db import alembic_config, make_engine, upgrade
from web.demo_volume import add_volume

_CHANNELS = ("web", "email", "phone", "call_log", "letter", "visit", "api")


def _grouped(conn: Any) -> Counter[tuple[Any, ...]]:
    """The cases by every tallied column, counted from the cases."""
    columns = [getattr(Case, c) for c in DIMENSIONS]
    rows = conn.execute(select(*columns, func.count()).group_by(*columns))
    return Counter({tuple(r[:-1]): int(r[-1]) for r in rows})


def _tallied(conn: Any) -> Counter[tuple[Any, ...]]:
    return Counter({tuple(r[:-1]): int(r[-1]) for r in tallies.totals(conn, [], DIMENSIONS)})


def _check(runtime: Any, after: str) -> Counter[tuple[Any, ...]]:
    with runtime.sessions() as s:
        grouped, tallied = _grouped(s), _tallied(s)
    assert tallied == grouped, after
    return grouped


def test_the_tallies_follow_every_writer(
    runtime: Any, client: Any, login_as: Any, tmp_path: Path
) -> None:
    assert _check(runtime, "empty") == Counter()
    with runtime.engine.begin() as conn:
        add_volume(conn, 60, months=2, seed=3, label_map=runtime.settings.label_map)
    _check(runtime, "demo volume")
    with runtime.sessions() as s:
        # The demo volume folded its rows: one per combination, not one per case.
        assert s.scalar(select(func.count()).select_from(CaseTally)) == len(_grouped(s))
    number, _ = submit_complaint(client, "和平路施工噪音扰民，深夜还在打桩。", "施工噪音")
    before = _check(runtime, "web form")
    import_rows(runtime, export(tmp_path), one_by_one=False)
    after = _check(runtime, "register_rows import")
    phone = sum(n for key, n in (after - before).items() if key[2] == "phone")
    assert phone >= 7  # the calls imported (one is a duplicate of another)
    _dispatch(login_as, runtime, number, "transport")
    _check(runtime, "dispatch")
    post_form(
        login_as("transport"),
        f"/board/cases/{number}",
        f"/board/cases/{number}/send-back",
        {"sendback-reason": "该道路在小区红线内，应由住建部门督促物业维修。"},
    )
    assert _case(runtime, number).status == Status.TRIAGE
    _check(runtime, "send-back")
    first, _ = submit_complaint(client, "幸福小区3号楼电梯坏了两个星期，物业一直不修。", "电梯")
    second, _ = submit_complaint(client, "幸福小区3号楼电梯坏了两个星期，物业一直不修。", "电梯")
    supervisor = login_as("supervisor")
    page = supervisor.get(f"/board/cases/{second}").get_data(as_text=True)
    token = re.search(r'name="merge-csrf_token"[^>]*value="([^"]+)"', page)
    assert token, "no merge form"
    supervisor.post(
        f"/board/cases/{second}/merge",
        data={"merge-csrf_token": token.group(1), "merge-target": first},
    )
    assert _case(runtime, second).status == Status.MERGED
    _check(runtime, "merge")
    visited = _replied_and_visited(client, login_as, runtime, "satisfied", "yes")
    post_form(
        login_as("supervisor"), f"/board/cases/{visited}", f"/board/cases/{visited}/close", {}
    )
    assert _case(runtime, visited).status == Status.CLOSED
    _check(runtime, "close")
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        in_hand = s.scalar(
            select(func.count()).where(Case.department_id == urban, Case.status.in_(OPEN_STATUSES))
        )
    assert in_hand
    _deactivate_urban(login_as)  # its open cases handed over to environment
    with runtime.sessions() as s:
        left = s.scalar(
            select(func.count()).where(Case.department_id == urban, Case.status.in_(OPEN_STATUSES))
        )
    assert left == 0
    _check(runtime, "department hand-over")
    run_tick(
        runtime.sessions,
        datetime.now(UTC) + timedelta(days=40),
        supervision_policy(runtime.settings),
    )
    grouped = _check(runtime, "supervision tick (risk)")
    assert any(key[5] == "overdue" for key in grouped)
    with runtime.sessions() as s:
        # The tick folded the ledger.
        assert s.scalar(select(func.count()).select_from(CaseTally)) == len(grouped)
    with runtime.engine.begin() as conn:
        # Raw SQL (a restore, a repair script): a copy of a case inserted, then deleted.
        copied = [f'"{c.name}"' for c in Case.__table__.columns if c.name != "id"]
        values = [
            {'"tracking_number"': "'MS-1999-000001'", '"external_id"': "'raw'"}.get(c, c)
            for c in copied
        ]
        conn.execute(
            text(
                f"INSERT INTO cases ({', '.join(copied)}) SELECT {', '.join(values)}"
                " FROM cases WHERE tracking_number = :n"
            ),
            {"n": first},
        )
    _check(runtime, "raw insert")
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM cases WHERE tracking_number = 'MS-1999-000001'"))
    _check(runtime, "delete")
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM case_tallies"))
        assert tallies.recount(conn) == conn.scalar(select(func.count()).select_from(Case))
    _check(runtime, "recount")


def _facet(html: str, value: str) -> int | None:
    m = re.search(rf'<option value="{value}"[^>]*>[^<(]*\((\d+)\)</option>', html)
    return int(m.group(1)) if m else None


def _channels(html: str) -> dict[str, int]:
    return {c: n for c in _CHANNELS if (n := _facet(html, c))}


def test_list_counts_and_dashboard_tiles_as_each_role_sees_them(
    runtime: Any, client: Any, login_as: Any
) -> None:
    with runtime.engine.begin() as conn:
        add_volume(conn, 120, months=3, seed=11, label_map=runtime.settings.label_map)
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        cases = s.scalars(select(Case)).all()
    is_open = [c for c in cases if c.status in OPEN_STATUSES]
    supervisor = login_as("supervisor")
    page = supervisor.get("/board/cases?status=open").get_data(as_text=True)
    assert _channels(page) == dict(Counter(c.channel for c in is_open)), page[:3000]
    assert _facet(page, "open") == len(is_open)
    assert _facet(page, "urban") == sum(1 for c in is_open if c.department_id == urban)
    observer = login_as("observer")
    assert _channels(observer.get("/board/cases?status=open").get_data(as_text=True)) == (
        _channels(page)
    )
    handler = login_as("urban")
    mine = [c for c in is_open if c.department_id == urban]
    page = handler.get("/board/cases?status=open").get_data(as_text=True)
    assert _channels(page) == dict(Counter(c.channel for c in mine))
    assert _facet(page, "open") == len(mine)
    # Urgent is tallied too: phone and urgent, counted by status.
    page = supervisor.get("/board/cases?channel=phone&urgent=1").get_data(as_text=True)
    phone_urgent = [c for c in cases if c.channel == "phone" and c.urgent]
    assert _facet(page, "closed") == sum(1 for c in phone_urgent if c.status == "closed")
    # Overdue is not tallied: counted from the few cases it leaves (fewer than COUNT_CAP).
    page = supervisor.get("/board/cases?overdue=1").get_data(as_text=True)
    now = datetime.now(UTC)
    overdue = [
        c for c in cases if c.is_overdue(now) or (c.risk == "overdue" and c.status in OPEN_STATUSES)
    ]
    assert sum(_channels(page).values()) == len(overdue)

    def tiles(user: Any) -> dict[str, int]:
        html = user.get("/board/dashboard").get_data(as_text=True)
        return {
            name: int(re.search(rf'id="tile-{name}">(\d+)<', html).group(1))  # type: ignore[union-attr]
            for name in ("open", "at-risk", "overdue")
        }

    def expected(department: int | None) -> dict[str, int]:
        with runtime.sessions() as s:
            mine = [
                c
                for c in s.scalars(select(Case).where(Case.status.in_(OPEN_STATUSES)))
                if department is None or c.department_id == department
            ]
        return {
            "open": len(mine),
            "at-risk": sum(1 for c in mine if c.risk == "at_risk"),
            "overdue": sum(1 for c in mine if c.risk == "overdue"),
        }

    run_tick(runtime.sessions, now, supervision_policy(runtime.settings))
    assert tiles(supervisor) == expected(None)
    assert tiles(handler) == expected(urban)
    assert tiles(observer) == expected(None)
    # A new case, then its dispatch: the next request of each page shows it.
    number, _ = submit_complaint(client, "网上提交：小区门口路灯不亮，晚上很黑。", "路灯")
    before = _channels(supervisor.get("/board/cases?status=open").get_data(as_text=True))
    handler_before = handler.get("/board/cases?status=open").get_data(as_text=True)
    assert tiles(supervisor) == expected(None)
    _dispatch(login_as, runtime, number, "urban")
    supervisor = login_as("supervisor")
    page = supervisor.get("/board/cases?status=open").get_data(as_text=True)
    assert _channels(page) == before  # still open, still by web
    assert _facet(page, "assigned") == sum(1 for c in is_open if c.status == "assigned") + 1
    handler = login_as("urban")
    after = handler.get("/board/cases?status=open").get_data(as_text=True)
    assert _facet(after, "open") == (_facet(handler_before, "open") or 0) + 1
    assert tiles(handler) == expected(urban)


@pytest.mark.skipif(DB_KIND != "postgresql", reason="concurrent writers: PostgreSQL")
def test_concurrent_writers_neither_deadlock_nor_lose_counts(runtime: Any) -> None:
    """Two threads registering cases and changing the same case, and a third compacting, at
    once, each in many short transactions: no deadlock, no error, and the tallies equal the
    cases after. (One registration per transaction: two in one, by `register`, can deadlock
    on the tracking-number counter whatever the tallies.)"""
    policy = runtime.intake_policy()
    errors: list[BaseException] = []
    stop = threading.Event()
    from intake.submission import Channel, Submission

    def writer(name: str) -> None:
        try:
            for i in range(40):
                with runtime.sessions() as s, s.begin():
                    register(
                        s,
                        Submission(
                            channel=Channel.WEB,
                            external_id=f"{name}-{i}",
                            received_at=datetime.now(UTC),
                            body=f"小区路灯不亮 {name} {i}",
                        ),
                        policy,
                        datetime.now(UTC),
                    )
                    # And a change of a counted column of a case the other thread may be
                    # changing too (the same combination's tally, were it a counter row).
                    s.execute(
                        update(Case)
                        .where(Case.id == s.scalar(select(func.min(Case.id))))
                        .values(risk="at_risk" if i % 2 else "")
                    )
        except BaseException as e:
            errors.append(e)

    def compactor() -> None:
        try:
            while not stop.is_set():
                with runtime.engine.begin() as conn:
                    tallies.compact(conn)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    folding = threading.Thread(target=compactor)
    folding.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    folding.join(timeout=60)
    assert not any(t.is_alive() for t in [*threads, folding]), "stuck"
    assert errors == []
    grouped = _check(runtime, "concurrent writers")
    assert sum(grouped.values()) == 80


def test_migration_0025_backfills_and_goes(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            for code in ("urban", "transport"):
                conn.execute(insert(Department).values(code=code, name=code))
            add_volume(conn, 30, months=1, seed=5)
        with engine.connect() as conn:
            assert tallies.tallied(conn)
            expected = _grouped(conn)
            differences = [
                d
                for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                if "case_tallies" in repr(d)
            ]
            assert differences == []  # the model is the migration's table
        command.downgrade(alembic_config(engine), "0024")
        with engine.connect() as conn:
            assert not tallies.tallied(conn)
            assert conn.execute(text("SELECT count(*) FROM cases")).scalar() == sum(
                expected.values()
            )
        upgrade(engine)
        with engine.connect() as conn:
            assert tallies.tallied(conn)
            assert _tallied(conn) == expected == _grouped(conn)
    finally:
        engine.dispose()


def test_an_admin_checks_and_recounts_the_tallies(runtime: Any, config_file: Path) -> None:
    from click.testing import CliRunner

    from web.cli import main

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["tallies", "--config", str(config_file), *args])

    with runtime.engine.begin() as conn:
        add_volume(conn, 40, months=1, seed=9, label_map=runtime.settings.label_map)
    ok = run()
    assert ok.exit_code == 0 and "agree" in ok.output, ok.output
    with runtime.engine.begin() as conn:  # as a TRUNCATE or a restore without triggers would
        conn.execute(text("DELETE FROM case_tallies WHERE status = 'closed'"))
    wrong = run()
    assert wrong.exit_code == 1 and "differ" in wrong.output, wrong.output
    fixed = run("--recount")
    assert fixed.exit_code == 0 and "recounted 40 cases" in fixed.output, fixed.output
    assert run().exit_code == 0
    _check(runtime, "recounted by the command")


def test_counts_left_out_past_the_cap_of_untallied_filters(
    runtime: Any, login_as: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filters the tallies do not count (dates, overdue, ...) are counted from the cases only
    when they leave at most COUNT_CAP of them; past that the values are listed without
    counts and the page says why, while tallied filters are counted whatever their size."""
    import triage.case_list as case_list
    import web.board as board

    monkeypatch.setattr(case_list, "COUNT_CAP", 20)
    monkeypatch.setattr(board, "COUNT_CAP", 20)
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        add_volume(conn, 60, months=2, now=now, seed=4, label_map=runtime.settings.label_map)
    with runtime.sessions() as s:
        received = sorted(s.scalars(select(Case.received_at)))
    supervisor = login_as("supervisor")
    day = (received[0] - timedelta(days=1)).date().isoformat()
    wide = supervisor.get(f"/board/cases?received_from={day}").get_data(as_text=True)
    assert 'id="counts-left-out"' in wide and "超过 20 件" in wide
    assert _channels(wide) == {} and _facet(wide, "open") is None
    recent = (received[-5] + timedelta(days=1)).date().isoformat()
    narrow = supervisor.get(f"/board/cases?received_from={recent}").get_data(as_text=True)
    assert 'id="counts-left-out"' not in narrow
    total = int(re.search(r"<small>\((\d+)\)</small>", narrow).group(1))  # type: ignore[union-attr]
    assert 0 < total <= 20 and sum(_channels(narrow).values()) == total
    tallied = supervisor.get("/board/cases?status=open&urgent=1").get_data(as_text=True)
    assert 'id="counts-left-out"' not in tallied and _facet(tallied, "open") is not None


@pytest.mark.skipif(DB_KIND != "postgresql", reason="compaction on read: PostgreSQL")
def test_a_long_ledger_is_folded_by_the_reader_when_no_tick_runs(
    runtime: Any, login_as: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tallies, "COMPACT_AT", 10)
    with runtime.engine.begin() as conn:
        add_volume(conn, 30, months=1, seed=2, label_map=runtime.settings.label_map)
    with runtime.engine.begin() as conn:
        for i in range(12):  # one statement each: a row of deltas each, cancelling in pairs
            conn.execute(update(Case).values(risk="at_risk" if i % 2 == 0 else ""))
    with runtime.sessions() as s:
        long = s.scalar(select(func.count()).select_from(CaseTally))
    page = login_as("supervisor").get("/board/cases?status=open").get_data(as_text=True)
    with runtime.sessions() as s:
        folded = s.scalar(select(func.count()).select_from(CaseTally))
        assert folded < long and folded == len(_grouped(s))
    grouped = _check(runtime, "folded by a reader")
    assert _facet(page, "open") == sum(n for key, n in grouped.items() if key[0] in OPEN_STATUSES)


def test_triggers_dropped_by_a_later_migration_come_back_with_the_counts(
    runtime: Any, client: Any
) -> None:
    """A SQLite batch copy of `cases` (a later migration) drops its triggers: the next
    upgrade (``minsheng init``) makes them again and recounts what was missed meanwhile."""
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER case_tallies_insert"
            + (" ON cases" if conn.dialect.name == "postgresql" else "")
        )
        assert not tallies.tallied(conn)
    submit_complaint(client, "网上提交：小区门口路灯不亮，晚上很黑。", "路灯")  # not counted
    with runtime.sessions() as s:
        assert _tallied(s) != _grouped(s)
    upgrade(runtime.engine)
    with runtime.engine.connect() as conn:
        assert tallies.tallied(conn)
    _check(runtime, "after the upgrade")
    submit_complaint(client, "网上提交：公交站台的顶棚漏雨。", "公交站")
    _check(runtime, "a case after")


@pytest.mark.skipif(DB_KIND != "postgresql", reason="advisory locks are PostgreSQL's")
def test_offices_in_two_schemas_of_one_database_compact_their_ledgers_at_once(
    runtime: Any,
) -> None:
    """Two installations sharing a PostgreSQL database in schemas of their own: while one
    folds its ledger (holding the fold's lock), the other's fold is not turned away, and
    each folds only its own rows. (The lock was the database's: one office's compaction
    made the other's give up, and in CI one test's fold deadlocked with another's upgrade.)"""
    other = f"office_{os.getpid()}_{threading.get_ident()}"
    with runtime.engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {other}"))
        conn.execute(text(f"CREATE TABLE {other}.case_tallies (LIKE case_tallies INCLUDING ALL)"))
        conn.execute(
            text(f"INSERT INTO {other}.case_tallies (status, n) VALUES ('new', 2), ('new', 3)")
        )
    try:
        with runtime.engine.connect() as first, first.begin():
            assert tallies.compact(first) is True
            with runtime.engine.connect() as second, second.begin():
                second.execute(text(f"SET LOCAL search_path TO {other}"))
                assert tallies.compact(second) is True, "turned away by the other office"
                rows = second.execute(text("SELECT status, n FROM case_tallies")).all()
        assert rows == [("new", 5)]
    finally:
        with runtime.engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {other} CASCADE"))


def test_the_demo_volume_leaves_the_ledger_table_as_small_as_its_rows(
    runtime: Any, config_file: Path
) -> None:
    """Each case a bulk load writes adds delta rows the fold deletes; left as they were, the
    dead rows made every list page's counts read ten times the ledger's live rows (809
    pages for 956 rows at 1,000,000 cases)."""
    from click.testing import CliRunner

    from web.cli import main

    def pages() -> int:
        with runtime.engine.connect() as conn:
            return conn.execute(text("SELECT pg_relation_size('case_tallies') / 8192")).scalar()

    with runtime.engine.begin() as conn:
        add_volume(conn, 300, months=2, seed=4, label_map=runtime.settings.label_map)
        for i in range(20):  # churn: a delta row per combination each time
            conn.execute(update(Case).values(risk="at_risk" if i % 2 == 0 else ""))
        tallies.compact(conn)
    if DB_KIND == "postgresql":
        assert pages() > 3, "the churn left no dead rows to measure"
    result = CliRunner().invoke(
        main,
        ["demo", "--config", str(config_file), "--no-model", "--volume", "20", "--months", "1"],
    )
    assert result.exit_code == 0, result.output
    if DB_KIND == "postgresql":
        # Measured before any read: a reader folds a long ledger, and the fold's rows are
        # written beside the ones it deletes. Some 90 rows fit a page: a bound of 30.
        with runtime.engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(CaseTally)).scalar()
        assert pages() <= 2 + rows // 30, rows
    _check(runtime, "after the load")
