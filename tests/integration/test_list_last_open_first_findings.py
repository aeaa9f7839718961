"""Three faults of the staff case list (/board/cases), on both databases:

- "Last" under a search (``q=…&last=1``) showed the first page. It shows the last page of
  what the list shows (at most `SEARCH_CAP` newest matches), and paging back from it gives
  the same rows as paging forward, in every order offered under a search.
- "Nearest deadline first" without a status filter put the closed cases first (their
  deadlines long past). Open cases come first by deadline (overdue first), then the closed
  ones; Next and Previous (cursors), the last page and typed pages follow that order, under
  a search too, and a case closed while its page is shown does not shift the next page.
- On a list longer than `COUNT_CAP`, the finding filter's values had no counts. They are
  counted from the findings (whatever the list's other filters), each count the number of
  cases the list shows once that rule is picked; "Has attachments" stays without a count on
  such a list, and the page says why.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.integration.test_board_lists import _all_pages, _listed, _numbers, _volume
from tests.integration.test_list_counts import _counts, _mark, _total
from triage.models import FINAL_STATUSES as FINAL
from triage.models import Case, Department, Status
from web.supervision_findings import RULE_LABELS

PAGE = 7
SIZE = 20
CAP = 20
CHINA = timedelta(hours=8)


def _page_size(monkeypatch: Any, size: int) -> None:
    """Pages of ``size`` cases: a few dozen cases make many pages."""
    import web.board

    monkeypatch.setattr(web.board, "PAGE_SIZE", size)


def _link(html: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', html)
    return found.group(1).replace("&amp;", "&") if found else None


def _walk_back(client: Any, **params: str) -> tuple[list[str], str]:
    """The list from its Last link's page back to the first, by its Previous links; and the
    last page's HTML."""
    html = client.get("/board/cases", query_string={**params, "last": "1"}).get_data(as_text=True)
    last, pages = html, [_listed(html)]
    for _ in range(100):
        previous = _link(html, "prev")
        if previous is None:
            return [n for page in reversed(pages) for n in page], last
        html = client.get(previous).get_data(as_text=True)
        pages.append(_listed(html))
    raise AssertionError("too many pages")


def _open_first(cases: list[Case]) -> list[str]:
    """``cases`` as "Nearest deadline first" lists them: open ones, then closed, merged or
    rejected ones, each by deadline, ties by id."""
    ordered = sorted(
        cases,
        key=lambda c: (c.status in FINAL, c.due_at or c.triage_due_at or c.received_at, c.id),
    )
    return [c.tracking_number for c in ordered]


# -- 1. "Last" under a search ------------------------------------------------------------------


def test_last_page_of_a_search_in_every_order(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    _page_size(monkeypatch, PAGE)
    _volume(runtime, 160, seed=31)
    supervisor = login_as("supervisor")
    walks = {}
    for sort in ("relevance", "received", "deadline", "updated"):
        params = {"q": "小区", "sort": sort}
        walked = walks[sort] = _all_pages(supervisor, **params)
        assert len(walked) > 2 * PAGE and len(set(walked)) == len(walked), (params, walked)
        # Back from the last page by Previous: the same rows, none twice, none missing.
        back, last = _walk_back(supervisor, **params)
        assert back == walked, params
        # The last page: the last rows, and its number the last one.
        assert _listed(last) == walked[-(len(walked) % PAGE or PAGE) :], params
        pages = -(-len(walked) // PAGE)
        assert f"<span>{pages} / {pages}</span>" in last, params
    # A search matching more than it reads: the last page of the newest matches it shows.
    import web.board

    searched = web.board.search_cases
    monkeypatch.setattr(web.board, "search_cases", lambda *a, **k: searched(*a, **k, cap=17))
    for sort in ("relevance", "deadline"):
        params = {"q": "部门", "sort": sort}
        walked = _all_pages(supervisor, **params)
        assert len(walked) == 17, walked
        back, last = _walk_back(supervisor, **params)
        assert back == walked and _listed(last) == walked[-(17 % PAGE) :], sort
    # A cursor of the list without a search, kept in the address with one: the page after
    # (or before) that case among the results, on a page boundary, never an error.
    walked = walks["received"]
    with runtime.sessions() as s:
        ids = {n: i for n, i in s.execute(select(Case.tracking_number, Case.id))}
    for name, case, shown in (
        ("after", walked[PAGE - 1], walked[PAGE : 2 * PAGE]),
        ("before", walked[PAGE], walked[:PAGE]),
        ("after", "nobody", walked[:PAGE]),
    ):
        params = {"q": "小区", "sort": "received", name: str(ids.get(case, 0))}
        assert _numbers(supervisor, **params) == shown, name


# -- 2. Nearest deadline first: open cases first -----------------------------------------------


def test_deadline_order_lists_open_cases_first(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    _page_size(monkeypatch, SIZE)
    _volume(runtime, 150, seed=32)
    with runtime.sessions() as s:
        cases = list(s.scalars(select(Case)))
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
    assert {c.status in FINAL for c in cases} == {True, False}
    supervisor = login_as("supervisor")
    expected = _open_first(cases)
    first = _numbers(supervisor, sort="deadline")
    # The first page: open cases, the overdue ones (deadline past) first.
    by_number = {c.tracking_number: c for c in cases}
    assert all(by_number[n].status not in FINAL for n in first), first
    assert first == expected[:SIZE]
    # Every page by Next, by Previous from the last, a typed page near each end.
    assert _all_pages(supervisor, sort="deadline") == expected
    assert _walk_back(supervisor, sort="deadline")[0] == expected
    pages = -(-len(expected) // SIZE)
    for page in (2, pages // 2, pages // 2 + 1, pages - 1):
        shown = _numbers(supervisor, sort="deadline", page=str(page))
        assert shown == expected[(page - 1) * SIZE : page * SIZE], page
    # With filters: a small list read by its filters; a received window (read from the
    # deadline's index); a handler's cases; under a search.
    day = (datetime.now(UTC) - timedelta(days=20)).date()
    lists = [
        (supervisor, {"channel": "phone"}, lambda c: c.channel == "phone"),
        (
            supervisor,
            {"received_from": day.isoformat()},
            lambda c: (c.received_at + CHINA).date() >= day,
        ),
        (login_as("urban"), {}, lambda c: c.department_id == urban),
    ]
    for client, params, keep in lists:
        wanted = _open_first([c for c in cases if keep(c)])
        assert _all_pages(client, sort="deadline", **params) == wanted, params
        assert _walk_back(client, sort="deadline", **params)[0] == wanted, params
    walked = _all_pages(supervisor, q="部门", sort="deadline")
    found = [by_number[n] for n in walked]
    assert {c.status in FINAL for c in found} == {True, False}
    assert walked == _open_first(found)


def test_deadline_order_past_the_count_cap_and_a_case_closed_meanwhile(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    """A list too long to count (here 10) is read from its indexes in the same order, and
    its pages keep their place when a shown case is closed before Next is clicked."""
    from triage import case_list

    _page_size(monkeypatch, SIZE)
    counted = case_list.count_cases
    monkeypatch.setattr(case_list, "count_cases", lambda s, where, cap=10: counted(s, where, cap))
    _volume(runtime, 120, seed=33)
    with runtime.sessions() as s:
        cases = list(s.scalars(select(Case)))
    supervisor = login_as("supervisor")
    expected = _open_first(cases)
    assert _all_pages(supervisor, sort="deadline") == expected
    assert _walk_back(supervisor, sort="deadline")[0] == expected
    assert _numbers(supervisor, sort="deadline", last="1") == expected[-SIZE:]
    for page in (3, 5):
        shown = _numbers(supervisor, sort="deadline", page=str(page))
        assert shown == expected[(page - 1) * SIZE : page * SIZE], page
    phone = _open_first([c for c in cases if c.channel == "phone"])
    assert _all_pages(supervisor, sort="deadline", channel="phone") == phone
    assert _walk_back(supervisor, sort="deadline", channel="phone")[0] == phone
    # The first page is shown; its last case is closed; Next goes on after it as shown.
    html = supervisor.get("/board/cases", query_string={"sort": "deadline"}).get_data(as_text=True)
    assert _listed(html) == expected[:SIZE]
    with runtime.engine.begin() as conn:
        conn.execute(
            update(Case)
            .where(Case.tracking_number == expected[SIZE - 1])
            .values(status=Status.CLOSED)
        )
    nxt = _link(html, "next")
    assert nxt is not None
    assert _listed(supervisor.get(nxt).get_data(as_text=True)) == expected[SIZE : 2 * SIZE]


# -- 3. Counts of the finding filter on long lists ---------------------------------------------


def test_finding_counts_on_lists_past_the_count_cap(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    from triage import case_list

    cap = 12  # of 120 cases: each list below is longer, a handler's (14) too
    monkeypatch.setattr(case_list, "COUNT_CAP", cap)
    counted = case_list.count_cases
    monkeypatch.setattr(case_list, "count_cases", lambda s, where, cap=cap: counted(s, where, cap))
    _volume(runtime, 120, seed=34)
    _mark(runtime)
    day = (datetime.now(UTC) - timedelta(days=80)).date().isoformat()
    supervisor, handler = login_as("supervisor"), login_as("urban")
    lists = [
        (supervisor, {}),
        (supervisor, {"status": "open"}),
        (supervisor, {"received_from": day}),
        (supervisor, {"finding": "overdue"}),
        (supervisor, {"received_from": day, "attachments": "1"}),
        (handler, {}),
    ]
    nonzero = 0
    for client, params in lists:
        params = {"sort": "received", **params}
        html = client.get("/board/cases", query_string=params).get_data(as_text=True)
        total, more = _total(html)
        assert more or total > cap or {"finding", "attachments"} & set(params), params
        counts = _counts(html)
        rules = {value: shown for (name, value), shown in counts.items() if name == "finding"}
        assert set(rules) == set(RULE_LABELS), (params, counts)
        for rule, shown in rules.items():
            if shown == "0" and rule != "escalated":
                continue  # a rule no case has (one of them is checked)
            picked = {**params, "finding": rule}
            if shown.endswith("+"):
                page = client.get("/board/cases", query_string=picked).get_data(as_text=True)
                assert _total(page) == (cap, True), (params, rule)
            else:
                assert len(_all_pages(client, **picked)) == int(shown), (params, rule, shown)
                nonzero += shown != "0"
        # Has attachments: no count on a list this long, and the page says why.
        if ("attachments", "1") not in counts:
            assert 'id="attachments-not-counted"' in html, params
    assert nonzero > 6


def test_migration_0040_and_the_deadline_pages_that_read_its_index(empty_url: str) -> None:
    """ix_cases_open_first comes with 0040 and goes with its downgrade; the first, last and
    typed pages of the list by deadline and its Next and Previous read it on both databases
    (as written: the group's key as the index has it)."""
    from alembic import command
    from sqlalchemy import event

    from triage.case_list import OPEN_FIRST, list_page
    from web.db import alembic_config, make_engine, upgrade

    engine = make_engine(empty_url)
    try:
        upgrade(engine)

        def present() -> bool:
            sql = (
                "SELECT count(*) FROM sqlite_master WHERE name = 'ix_cases_open_first'"
                if engine.dialect.name == "sqlite"
                else "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_cases_open_first'"
                " AND schemaname = current_schema()"
            )
            with engine.connect() as conn:
                return bool(conn.exec_driver_sql(sql).scalar())

        assert present()
        statements: list[tuple[str, Any]] = []
        at = datetime(2026, 3, 1, tzinfo=UTC)
        with Session(engine) as s:
            conn = s.connection()

            def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
                if "ORDER BY" in statement:
                    statements.append((statement, params))

            event.listen(conn, "before_cursor_execute", capture)
            for request in (
                {},
                {"last": True},
                {"page": 3},
                {"after": 5, "at": at, "group": 0},
                {"before": 5, "at": at, "group": 1},
            ):
                list_page(s, [], size=50, sort="deadline", groups=OPEN_FIRST, **request)
            event.remove(conn, "before_cursor_execute", capture)
        assert len(statements) >= 5
        with engine.connect() as conn:
            for statement, params in statements:
                sql = str(statement)
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET enable_seqscan = off")
                    plan = " ".join(
                        str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {sql}", params)
                    )
                else:
                    plan = " ".join(
                        str(r[-1])
                        for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
                    )
                assert "ix_cases_open_first" in plan, (sql, plan)
                assert "TEMP B-TREE" not in plan and "Sort" not in plan, (sql, plan)
                conn.rollback()
        command.downgrade(alembic_config(engine), "0039")
        assert not present()
        upgrade(engine)
        assert present()
    finally:
        engine.dispose()


def test_a_finding_with_too_many_cases_is_shown_uncounted_not_as_zero(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    """Under a filter, a rule's count reads each of its findings' cases: past
    `FINDING_SCAN` of them the rule is shown without a count (never "(0)") and the page
    says why; the rules with fewer keep their exact counts."""
    from collections import Counter

    from triage import case_list
    from triage.models import CaseFinding

    monkeypatch.setattr(case_list, "COUNT_CAP", CAP)
    counted = case_list.count_cases
    monkeypatch.setattr(case_list, "count_cases", lambda s, where, cap=CAP: counted(s, where, cap))
    _volume(runtime, 200, seed=35)
    _mark(runtime)
    with runtime.sessions() as s:
        per_rule = Counter(s.scalars(select(CaseFinding.rule)))
    many, few = per_rule.most_common()[0], per_rule.most_common()[-1]
    assert many[1] > few[1], per_rule
    monkeypatch.setattr(case_list, "FINDING_SCAN", few[1])
    supervisor = login_as("supervisor")
    params = {"sort": "received", "status": "open"}
    html = supervisor.get("/board/cases", query_string=params).get_data(as_text=True)
    assert _total(html)[0] > CAP or _total(html)[1]
    counts = _counts(html)
    assert ("finding", many[0]) not in counts, counts
    assert re.search(rf'<option value="{many[0]}"[^>]*>[^<(]*</option>', html), many
    assert 'id="findings-not-counted"' in html
    shown = counts[("finding", few[0])]
    assert len(_all_pages(supervisor, **params, finding=few[0])) == int(shown)
    # No filter: every rule is counted from its findings alone.
    html = supervisor.get("/board/cases", query_string={"sort": "received"}).get_data(as_text=True)
    assert ("finding", many[0]) in _counts(html)
    assert 'id="findings-not-counted"' not in html
