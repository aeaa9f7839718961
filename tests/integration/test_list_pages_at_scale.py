"""Case list pages that read what they show (migration 0027, triage/case_list.py), on both
databases: the overdue filter, date windows by deadline or last change, a handler's open
cases and the queue give the same cases in the same order as the database's rows say, over
every page, the last page and typed pages, odd cases included (a deadline before receipt, a
case overdue only by the tick's mark, a closed case still marked); and the indexes that let a
page stop at its size are the ones the queries can read."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from alembic import command
from sqlalchemy import select, text, update

from tests.integration.test_board_lists import _all_pages, _listed, _numbers
from triage.case_list import DEADLINE_KEY, WAITING, ListFilters, unindexed_clauses
from triage.models import OPEN_STATUSES, Case, Department, Status
from web.db import alembic_config, make_engine, upgrade
from web.demo_volume import add_volume

PAGE = 50
NAMES = {
    "ix_cases_overdue_received",
    "ix_cases_overdue_deadline",
    "ix_cases_deadline_before_receipt",
    "ix_cases_updated_before_receipt",
    "ix_cases_queue",
    "ix_cases_attention",
    "ix_cases_department_status_deadline",
    "ix_cases_department_status_received",
    "ix_cases_received_id",
}
CHINA = timedelta(hours=8)


def _odd_cases(runtime: Any) -> dict[str, str]:
    """Cases the shortcuts must not lose, made from generated ones: {what: tracking number}."""
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        recent = s.scalars(
            select(Case)
            .where(Case.status == Status.CLOSED, Case.received_at > now - timedelta(days=18))
            .order_by(Case.id)
            .limit(3)
        ).all()
        early, stale, marked_closed = recent
        # Due before its receipt (a data import, a clock put right): still in "received since".
        early.due_at = early.received_at - timedelta(days=40)
        # Last changed before its receipt: still in "received since", by last change.
        stale_id, stale_at = stale.id, stale.received_at - timedelta(days=30)
        marked_closed.risk = "overdue"
        replied = s.scalars(select(Case).where(Case.status == Status.REPLIED).limit(1)).one()
        replied.risk = "overdue"  # overdue by the tick's mark alone
        late = s.scalars(
            select(Case).where(Case.status == Status.IN_PROGRESS).order_by(Case.id).limit(1)
        ).one()
        late.due_at, late.risk = now - timedelta(hours=3), ""  # overdue by the clock alone
        numbers = {
            "early": early.tracking_number,
            "stale": stale.tracking_number,
            "marked_closed": marked_closed.tracking_number,
            "replied": replied.tracking_number,
            "late": late.tracking_number,
        }
    with runtime.engine.begin() as conn:
        conn.execute(update(Case).where(Case.id == stale_id).values(updated_at=stale_at))
    return numbers


def _overdue(c: Case, now: datetime) -> bool:
    return c.status in OPEN_STATUSES and (c.is_overdue(now) or c.risk == "overdue")


def _deadline(c: Case) -> datetime:
    return c.due_at or c.triage_due_at or c.received_at


def _updated(c: Case) -> datetime:
    return c.updated_at or c.received_at


SORT_KEYS: dict[str, tuple[Callable[[Case], datetime], bool]] = {
    "received": (lambda c: c.received_at, True),
    "deadline": (_deadline, False),
    "updated": (_updated, True),
}


def _expected(cases: list[Case], keep: Callable[[Case], bool], sort: str) -> list[str]:
    key, newest_first = SORT_KEYS[sort]
    shown = sorted((c for c in cases if keep(c)), key=lambda c: (key(c), c.id))
    shown = shown[::-1] if newest_first else shown
    if sort == "deadline":
        # The open cases first, then the closed ones (a stable sort: each by deadline).
        shown.sort(key=lambda c: c.status not in OPEN_STATUSES)
    return [c.tracking_number for c in shown]


def _walk(client: Any, **params: str) -> tuple[list[str], str]:
    """Every case of a list, walking its Next links (as `_all_pages`); and its first page."""
    first = html = client.get("/board/cases", query_string=params).get_data(as_text=True)
    seen = _listed(html)
    for _ in range(100):
        nxt = re.search(r'<a href="([^"]+)" rel="next">', html)
        if not nxt:
            return seen, first
        html = client.get(nxt.group(1).replace("&amp;", "&")).get_data(as_text=True)
        seen += _listed(html)
    raise AssertionError("too many pages")


def _check(client: Any, expected: list[str], size: int = PAGE, **params: str) -> None:
    """Every page (Next links), the total shown, the last page and a typed page are those of
    ``expected``, in its order (pages of ``size``)."""
    walked, html = _walk(client, **params)
    assert walked == expected, params
    shown = re.search(r"<small>\((\d+)\+?\)</small>", html)
    assert shown and int(shown.group(1)) == len(expected), (params, shown)
    tail = len(expected) % size or size
    assert _numbers(client, **params, last="1") == expected[-tail:], params
    if len(expected) > size:
        assert _numbers(client, **params, page="2") == expected[size : 2 * size], params


def test_list_pages_are_the_databases_cases_in_order(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    import web.board

    # Pages of 40 of 300 cases: the overdue lists (47), the windows (55, 71, 247) span pages
    # as with 50 of 420; a handler's lists are of 8 to 12.
    size = 40
    monkeypatch.setattr(web.board, "PAGE_SIZE", size)
    check = partial(_check, size=size)
    with runtime.engine.begin() as conn:
        add_volume(conn, 300, months=3, seed=11, label_map=runtime.settings.label_map)
        conn.execute(update(Case).where(Case.id % 3 == 0).values(urgent=True))
    odd = _odd_cases(runtime)
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        cases = list(s.scalars(select(Case)))
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
    day = (now - timedelta(days=20)).date()
    since = day.isoformat()

    def received_since(c: Case) -> bool:
        return (c.received_at + CHINA).date() >= day

    supervisor = login_as("supervisor")
    overdue = {
        n for n in odd.values() if any(c.tracking_number == n and _overdue(c, now) for c in cases)
    }
    # The odd cases are where they belong: the tick's mark counts only while the case is open.
    assert {odd["replied"], odd["late"]} <= overdue and odd["marked_closed"] not in overdue
    for sort in ("received", "deadline", "updated"):
        check(
            supervisor,
            _expected(cases, lambda c: _overdue(c, now), sort),
            overdue="1",
            sort=sort,
        )
        check(
            supervisor,
            _expected(cases, received_since, sort),
            received_from=since,
            sort=sort,
        )
    check(
        supervisor,
        _expected(
            cases, lambda c: c.urgent and c.channel == "phone" and _overdue(c, now), "received"
        ),
        urgent="1",
        channel="phone",
        overdue="1",
    )
    # Open and received since a day, by deadline: pieces of the date range, still only open.
    check(
        supervisor,
        _expected(cases, lambda c: c.status in OPEN_STATUSES and received_since(c), "deadline"),
        status="open",
        received_from=since,
        sort="deadline",
    )
    due_by = (now - timedelta(days=10)).date()
    check(
        supervisor,
        _expected(cases, lambda c: (_deadline(c) + CHINA).date() <= due_by, "received"),
        due_to=due_by.isoformat(),
        sort="received",
    )
    # The odd ones are in the windows they belong to.
    by_deadline = _all_pages(supervisor, received_from=since, sort="deadline")
    assert odd["early"] in by_deadline
    assert odd["stale"] in _all_pages(supervisor, received_from=since, sort="updated")

    handler = login_as("urban")

    def mine(c: Case) -> bool:
        return c.department_id == urban

    for sort in ("deadline", "received"):
        check(
            handler,
            _expected(cases, lambda c: mine(c) and c.status in OPEN_STATUSES, sort),
            status="open",
            sort=sort,
        )
    check(
        handler,
        _expected(cases, lambda c: mine(c) and received_since(c), "deadline"),
        received_from=since,
        sort="deadline",
    )
    check(
        handler,
        _expected(cases, lambda c: mine(c) and _overdue(c, now), "deadline"),
        overdue="1",
        sort="deadline",
    )


def test_queue_and_attention_panel_in_their_order(runtime: Any, login_as: Any) -> None:
    """The queue (urgent first, then by deadline) and a handler's cases needing attention
    (overdue first, then by handling deadline), read from their indexes, are in order."""
    with runtime.engine.begin() as conn:
        add_volume(conn, 200, months=3, seed=5, label_map=runtime.settings.label_map)
        conn.execute(update(Case).where(Case.id % 4 == 0).values(urgent=True))
    with runtime.sessions() as s:
        waiting = s.scalars(select(Case).where(WAITING)).all()
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        risky = s.scalars(
            select(Case).where(
                Case.department_id == urban,
                Case.risk != "",
                Case.status.in_([str(x) for x in OPEN_STATUSES]),
            )
        ).all()
    assert waiting and risky
    queue = re.findall(
        r'data-case="([^"]+)"', login_as("supervisor").get("/board/queue").get_data(as_text=True)
    )
    order = sorted(waiting, key=lambda c: (not c.urgent, _deadline(c), c.id))
    assert list(dict.fromkeys(queue))[: len(order)] == [c.tracking_number for c in order][:50]
    from web.supervision_findings import attention_cases

    with runtime.sessions() as s:
        shown = [c.tracking_number for c in attention_cases(s, urban)]
    far = datetime.max.replace(tzinfo=UTC)
    expected = sorted(risky, key=lambda c: (c.risk != "overdue", c.due_at or far, c.id))
    assert shown == [c.tracking_number for c in expected][:50]


def _plan(conn: Any, sql: str) -> str:
    if conn.dialect.name == "sqlite":
        return " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    conn.exec_driver_sql("SET enable_seqscan = off")
    return " ".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))


def test_migrations_0027_0028_indexes_and_the_queries_that_read_them(empty_url: str) -> None:
    """The indexes come with 0027 (and 0028), go with their downgrades and come back; the
    overdue filter, the queue and the attention panel name their partial indexes' predicates
    as the indexes do, so that each database reads them (SQLite matches a partial index's
    terms exactly)."""
    engine = make_engine(empty_url)
    try:
        upgrade(engine)

        def indexes() -> set[str]:
            # From the catalogue: SQLite's inspector leaves expression indexes out.
            sql = (
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cases'"
                if engine.dialect.name == "sqlite"
                else "SELECT indexname FROM pg_indexes"
                " WHERE tablename = 'cases' AND schemaname = current_schema()"
            )
            with engine.connect() as conn:
                return set(conn.exec_driver_sql(sql).scalars())

        def present() -> set[str]:
            return NAMES & indexes()

        assert present() == NAMES
        now = datetime.now(UTC)
        overdue = ListFilters(overdue=True).clauses(now, None)  # type: ignore[arg-type]
        # With other filters and a handler's scope, still the overdue index (SQLite read a
        # whole channel's or department's cases from the table when those were indexable).
        beside = ListFilters(overdue=True, channel="phone", urgent=True, kind="complaint")
        mixed = [
            *unindexed_clauses([Case.department_id == 1]),
            *beside.clauses(now, None),  # type: ignore[arg-type]
        ]
        queries = {
            "ix_cases_overdue_received": select(Case.id)
            .where(*overdue)
            .order_by(Case.received_at.desc(), Case.id.desc())
            .limit(51),
            "ix_cases_overdue_deadline": select(Case.id)
            .where(*mixed)
            .order_by(DEADLINE_KEY, Case.id)
            .limit(51),
            "ix_cases_queue": select(Case.id)
            .where(WAITING)
            .order_by(Case.urgent.desc(), DEADLINE_KEY, Case.id)
            .limit(50),
        }
        with engine.connect() as conn:
            for name, query in queries.items():
                sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
                assert name in _plan(conn, sql), (name, _plan(conn, sql))
            # The attention panel's first query, as web/supervision_findings.py writes it.
            conn.rollback()
            sql = (
                "SELECT id FROM cases WHERE department_id = 1 AND risk != ''"
                " ORDER BY risk DESC, due_at, id LIMIT 50"
            )
            assert "ix_cases_attention" in _plan(conn, sql)
            conn.rollback()
            sql = (
                "SELECT id FROM cases"
                " WHERE received_at > coalesce(due_at, triage_due_at, received_at)"
            )
            assert "ix_cases_deadline_before_receipt" in _plan(conn, sql)
            conn.execute(text("SELECT 1"))
        # 0028: a department's case ids in order, for a handler's search.
        assert "ix_cases_department_ids" in indexes()
        command.downgrade(alembic_config(engine), "0027")
        assert "ix_cases_department_ids" not in indexes()
        command.downgrade(alembic_config(engine), "0026")
        assert present() == set()
        upgrade(engine)
        assert present() == NAMES and "ix_cases_department_ids" in indexes()
    finally:
        engine.dispose()


def test_lists_too_long_to_count_walk_their_index_in_order(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    """Past the count's cap (here 10, 10,000 in service) a page is read by walking the order's
    index and stopping at its size (overdue, a date window, open cases in pieces): the same
    cases in the same order, page after page, and the last page read from the end."""
    from triage import case_list

    counted = case_list.count_cases
    monkeypatch.setattr(case_list, "count_cases", lambda s, where, cap=10: counted(s, where, cap))
    with runtime.engine.begin() as conn:
        add_volume(conn, 300, months=3, seed=13, label_map=runtime.settings.label_map)
    odd = _odd_cases(runtime)
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        cases = list(s.scalars(select(Case)))
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
    day = (now - timedelta(days=30)).date()
    supervisor = login_as("supervisor")
    lists: list[tuple[Any, Callable[[Case], bool], dict[str, str]]] = [
        (supervisor, lambda c: _overdue(c, now), {"overdue": "1", "sort": "received"}),
        (supervisor, lambda c: _overdue(c, now), {"overdue": "1", "sort": "deadline"}),
        (
            supervisor,
            lambda c: (c.received_at + CHINA).date() >= day,
            {"received_from": day.isoformat(), "sort": "deadline"},
        ),
        (
            login_as("urban"),
            lambda c: c.department_id == urban and c.status in OPEN_STATUSES,
            {"status": "open", "sort": "deadline"},
        ),
    ]
    for client, keep, params in lists:
        expected = _expected(cases, keep, params["sort"])
        assert len(expected) > 10, params
        html = client.get("/board/cases", query_string=params).get_data(as_text=True)
        # Past the cap: "10+", or the exact length where the tallies count the filters.
        tallied = set(params) <= {"status", "sort"}
        heading = f"<small>({len(expected)})</small>" if tallied else "<small>(10+)</small>"
        assert heading in html, params
        assert _all_pages(client, **params) == expected, params
        assert _numbers(client, **params, last="1") == expected[-PAGE:], params
    assert odd["early"] in _all_pages(supervisor, received_from=day.isoformat(), sort="deadline")
