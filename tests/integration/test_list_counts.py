"""Counts beside every filter of the case list (issue 10), on both databases: status,
department, channel, kind, urgent, overdue, at risk, each finding and has attachments, also
under a search; each count is the number of cases the list shows once that value is picked,
for a supervisor, a handler (their department only) and an observer (masked search); and what
they cost does not grow with the number of cases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, insert, select, update

from tests.conftest import analyze
from tests.integration.test_board_lists import _listed, _volume
from triage import tallies
from triage.case_list import ListFilters, facet_counts
from triage.models import Attachment, Case, CaseFinding, Department
from triage.search_index import reindex_cases

RULES = ("overdue", "deadline_near", "reply_unsigned")
HEADING = re.compile(r"<h1>[^<]*<small>\((\d+)(\+?)\)</small></h1>")
CHECKS = ("urgent", "overdue", "at_risk", "attachments")


def _mark(runtime: Any) -> None:
    """Urgent, at-risk, findings and attachments on some of the generated cases."""
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        conn.execute(update(Case).where(Case.id % 4 == 0).values(urgent=True))
        conn.execute(
            update(Case)
            .where(Case.id % 5 == 1, Case.risk == "")
            .values(risk="at_risk", updated_at=now)
        )
    with runtime.sessions() as s, s.begin():
        ids = list(s.scalars(select(Case.id).order_by(Case.id)))
        for i, case_id in enumerate(ids):
            for r, rule in enumerate(RULES):
                if (i + r) % (3 + r) == 0:
                    s.add(
                        CaseFinding(
                            case_id=case_id,
                            rule=rule,
                            combination=1,
                            severity="warning",
                            since=now,
                            detail={},
                            evaluated_at=now,
                        )
                    )
            if i % 7 == 2:
                for k in range(1 + i % 2):  # one or two files: a case counts once
                    s.add(
                        Attachment(
                            case_id=case_id,
                            sha256="0" * 64,
                            filename=f"photo{k}.jpg",
                            content_type="image/jpeg",
                            size=10,
                        )
                    )


def _total(html: str) -> tuple[int, bool]:
    m = HEADING.search(html)
    assert m, html[:3000]
    return int(m.group(1)), bool(m.group(2))


def _counts(html: str) -> dict[tuple[str, str], str]:
    """{(filter, value): the count shown beside it} of the filter form."""
    form = html.split('class="filters"', 1)[1].split("</form>", 1)[0]
    out: dict[tuple[str, str], str] = {}
    for name, body in re.findall(r'<select name="(\w+)">(.*?)</select>', form, re.S):
        for value, count in re.findall(
            r'<option value="([^"]+)"[^>]*>[^<]*?\(([\d,]+\+?)\)</option>', body
        ):
            out[(name, value)] = count
    for name, count in re.findall(
        r'<input type="checkbox" name="(\w+)" value="1"[^>]*>[^<(]*\(([\d,]+\+?)\)</label>', form
    ):
        out[(name, "1")] = count
    return out


Totals = dict[tuple[tuple[str, str], ...], tuple[int, bool]]
# Filters whose value is a column of the case (or, finding, a rule of its findings): a list
# with one's value picked shows the list's cases having it.
OWN_VALUES = ("status", "department", "channel", "kind", "finding")


def _values_listed(runtime: Any, client: Any, params: dict[str, str]) -> dict[str, set[str]]:
    """{filter of `OWN_VALUES`: the values the cases of the list under ``params`` have},
    from every case the list shows (on one page) and what the database holds of them."""
    import web.board

    size = web.board.PAGE_SIZE
    web.board.PAGE_SIZE = 1000  # the test's own size is put back by its monkeypatch
    try:
        html = client.get("/board/cases", query_string=params).get_data(as_text=True)
    finally:
        web.board.PAGE_SIZE = size
    numbers = _listed(html)
    assert _total(html) == (len(numbers), False), params
    with runtime.sessions() as s:
        rows = s.execute(
            select(Case.id, Case.status, Department.code, Case.channel, Case.kind)
            .outerjoin(Department, Department.id == Case.department_id)
            .where(Case.tracking_number.in_(numbers))
        ).all()
        rules = s.scalars(
            select(CaseFinding.rule).where(CaseFinding.case_id.in_([r.id for r in rows]))
        )
        values = {"finding": {str(r) for r in rules}}
    assert len(rows) == len(numbers), params
    for i, name in enumerate(OWN_VALUES[:-1], start=1):
        values[name] = {str(r[i]) for r in rows if r[i] is not None}
    return values


def _check_counts(
    client: Any,
    params: dict[str, str],
    wanted: set[str],
    totals: Totals | None = None,
    listed: dict[str, set[str]] | None = None,
) -> int:
    """Every count shown under ``params`` is the total of the list with its value picked;
    ``wanted``: the filters that must have counts. Returns how many were checked.

    ``totals``: the heading of each list already asked for by this client (nothing changes
    the cases meanwhile, so the same list shows the same total), by its parameters.
    ``listed``: the values the list's own cases have (`_values_listed`): with a value of a
    filter of `OWN_VALUES` not chosen in the list that none of them has picked, the list
    shows no case, so its count must be 0. The first such list is still asked for (the page
    agrees: 0); the others are not, each a page spared (most values a list offers: rules no
    case has, a channel nobody used, the statuses of none of a search's matches)."""
    html = client.get("/board/cases", query_string=params).get_data(as_text=True)
    counts = _counts(html)
    assert wanted <= {name for name, _ in counts}, (params, wanted, sorted(counts))
    seen = {} if totals is None else totals
    empty_asked = False
    for (name, value), shown in counts.items():
        picked = {**params, name: value}
        key = tuple(sorted(picked.items()))
        none_listed = (
            listed is not None
            and name in OWN_VALUES
            and name not in params  # else its values are counted with its choice left aside
            and value != "open"  # six statuses
            and value not in listed[name]
        )
        if none_listed and empty_asked:
            assert shown == "0", (params, name, value, shown)
            continue
        if key not in seen:
            page = client.get("/board/cases", query_string=picked).get_data(as_text=True)
            seen[key] = _total(page)
            empty_asked = empty_asked or none_listed
        total, more = seen[key]
        assert shown == (f"{total}+" if more else str(total)), (params, name, value, shown)
    return len(counts)


def test_each_count_is_the_lists_total_with_its_value_picked(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    import web.board

    # The heading's total is counted whatever the page's size (`count_cases`, a search's
    # matches): pages of two cases spare rendering some hundred pages of fifty rows.
    monkeypatch.setattr(web.board, "PAGE_SIZE", 2)
    _volume(runtime, 160, seed=21)
    _mark(runtime)
    day = (datetime.now(UTC) - timedelta(days=25)).date().isoformat()
    everything = {"status", "channel", "kind", "finding", *CHECKS}
    supervisor, handler, observer = login_as("supervisor"), login_as("urban"), login_as("observer")
    lists = [
        {},
        {"status": "open"},
        {"channel": "phone", "urgent": "1"},
        {"overdue": "1"},
        {"finding": "deadline_near", "status": "open"},
        {"attachments": "1", "at_risk": "1"},
        {"received_from": day},
        {"q": "路灯"},
        {"q": "噪音", "status": "closed", "urgent": "1"},
    ]
    checked = 0
    # Observers: the whole list and their searches (of the masked text); the filters alone
    # count as the supervisor's do.
    observed = [p for p in lists if not p or "q" in p]
    for client, own, shown in (
        (supervisor, True, lists),
        (handler, False, lists),
        (observer, True, observed),
    ):
        totals: Totals = {}
        for params in shown:
            wanted = everything | ({"department"} if own else set())
            params = {"sort": "received", **params}
            listed = _values_listed(runtime, client, params)
            checked += _check_counts(client, params, wanted, totals, listed)
    assert checked > 250
    # A handler's counts are of their department's cases only.
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        theirs = s.scalar(
            select(func.count()).select_from(Case).where(Case.department_id == urban, Case.urgent)
        )
    html = handler.get("/board/cases", query_string={"sort": "received"}).get_data(as_text=True)
    assert _counts(html)[("urgent", "1")] == str(theirs)
    assert '<select name="department">' not in html


def test_counts_past_the_cap_come_from_tallies_and_partial_indexes(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    """A list of more than `COUNT_CAP` cases (here 30): status, department, channel, kind,
    urgent and at risk still counted exactly from the tallies, overdue and each finding up to
    the cap ("30+" past it), attachments not at all (nor every filter under a received
    date leaving more than the cap, but overdue, at risk and finding); a search matching
    more than it reads shows none."""
    from triage import case_list

    monkeypatch.setattr(case_list, "COUNT_CAP", 30)
    counted = case_list.count_cases
    monkeypatch.setattr(case_list, "count_cases", lambda s, where, cap=30: counted(s, where, cap))
    _volume(runtime, 200, seed=22)
    _mark(runtime)
    supervisor = login_as("supervisor")
    html = supervisor.get("/board/cases", query_string={"sort": "received"}).get_data(as_text=True)
    counts = _counts(html)
    with runtime.sessions() as s:
        urgent = s.scalar(select(func.count()).select_from(Case).where(Case.urgent))
        at_risk = s.scalar(select(func.count()).select_from(Case).where(case_list.AT_RISK_CLAUSE))
    assert counts[("urgent", "1")] == str(urgent)
    assert counts[("at_risk", "1")] == str(at_risk)
    assert ("overdue", "1") in counts
    # The findings counted from the findings themselves; attachments not at all.
    assert [k for k in counts if k[0] == "finding"], counts
    assert not [k for k in counts if k[0] == "attachments"], counts
    assert 'id="attachments-not-counted"' in html
    day = (datetime.now(UTC) - timedelta(days=80)).date().isoformat()
    html = supervisor.get("/board/cases", query_string={"received_from": day}).get_data(
        as_text=True
    )
    counts = _counts(html)
    assert {name for name, _ in counts} == {"overdue", "at_risk", "finding"}, counts
    assert 'id="counts-left-out"' in html
    import web.board

    searched = web.board.search_cases
    monkeypatch.setattr(web.board, "search_cases", lambda *a, **k: searched(*a, **k, cap=0))
    html = supervisor.get("/board/cases", query_string={"q": "路灯"}).get_data(as_text=True)
    assert not _counts(html) and 'id="counts-left-out"' in html


def _grow(runtime: Any, n: int, start: int) -> None:
    """``n`` closed cases of one combination of the tallied columns, with a text that no
    search below matches: more cases, and nothing more for any count to show.

    Written in one statement with their search index rows from `reindex_cases` (what a
    flush of new cases writes, `triage.search_index._keep_index`) and their tallies by the
    tables' triggers: a flush of thousands of ORM objects cost most of this test."""
    at = datetime(2020, 3, 1, tzinfo=UTC)
    with runtime.engine.begin() as conn:
        department = conn.scalar(select(Department.id).where(Department.code == "urban"))
        after = conn.scalar(select(func.max(Case.id))) or 0
        conn.execute(
            insert(Case),
            [
                {
                    "tracking_number": f"MS-2020-{start + i:06d}",
                    "query_code_hash": "x",
                    "channel": "letter",
                    "external_id": f"grow-{start + i}",
                    "kind": "suggestion",
                    "status": "closed",
                    "subject": "旧档",
                    "body": "历史档案，已办结",
                    "department_id": department,
                    "received_at": at + timedelta(minutes=i),
                    "closed_at": at + timedelta(days=3),
                }
                for i in range(n)
            ],
        )
        grown = conn.scalars(select(Case.id).where(Case.id > after)).all()
        assert len(grown) == n
        assert reindex_cases(conn, grown) > 0
        tallies.compact(conn)
        if conn.dialect.name == "postgresql":
            analyze(conn)


def _rows_read(node: dict[str, Any]) -> int:
    """Rows a PostgreSQL plan read from tables and indexes (kept and filtered out, over all
    loops)."""
    rows = 0
    if "Relation Name" in node or "Index Name" in node:
        kept = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        rows = round(kept * node.get("Actual Loops", 1))
    return rows + sum(_rows_read(child) for child in node.get("Plans", []))


def _work(runtime: Any, run: Any) -> tuple[int, int]:
    """(statements, work) of ``run(session)``: PostgreSQL, the rows its plans read (each
    statement again under EXPLAIN ANALYZE); SQLite, its virtual machine's steps."""
    with runtime.sessions() as s:
        conn = s.connection()
        statements: list[tuple[str, Any]] = []

        def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
            statements.append((statement, params))

        event.listen(conn, "before_cursor_execute", capture)
        raw = conn.connection.driver_connection
        steps = [0]
        if conn.dialect.name == "sqlite":

            def step() -> int:
                steps[0] += 1
                return 0

            raw.set_progress_handler(step, 100)
        try:
            run(s)
        finally:
            event.remove(conn, "before_cursor_execute", capture)
            if conn.dialect.name == "sqlite":
                raw.set_progress_handler(None, 0)
        if conn.dialect.name == "sqlite":
            return len(statements), steps[0] * 100
        work = 0
        for statement, params in statements:
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                work += _rows_read(cur.fetchone()[0][0]["Plan"])
        return len(statements), work


@pytest.mark.parametrize("cap", [40])
def test_counts_cost_the_same_as_the_cases_grow(
    runtime: Any, login_as: Any, monkeypatch: Any, cap: int
) -> None:
    """The counts of every list state (tallies and the overdue partial index's capped count;
    the grouped read of a small list; a search's matches; a handler's) read the same rows
    and run the same statements with 600 or 2,400 more closed cases."""
    from triage import case_list
    from triage.search import search_cases

    monkeypatch.setattr(case_list, "COUNT_CAP", cap)
    counted = case_list.count_cases
    monkeypatch.setattr(case_list, "count_cases", lambda s, where, cap=cap: counted(s, where, cap))
    _volume(runtime, 150, seed=23)
    _mark(runtime)
    now = datetime.now(UTC)
    tz = ZoneInfo(runtime.settings.app.timezone)
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
    day = (now - timedelta(days=3)).date()

    def lists() -> list[Any]:
        mine = [Case.department_id == urban]

        def under_search(s: Any, q: str, scope: list[Any], f: ListFilters) -> None:
            found = search_cases(s, q, masked=False, where=scope)
            assert not found.capped
            facet_counts(s, [*scope, Case.id.in_(found.case_ids)], f, now=now, timezone=tz)

        return [
            lambda s: facet_counts(s, [], ListFilters(), now=now, timezone=tz),
            lambda s: facet_counts(s, [], ListFilters(status="open"), now=now, timezone=tz),
            lambda s: facet_counts(s, mine, ListFilters(status="open"), now=now, timezone=tz),
            lambda s: facet_counts(s, [], ListFilters(received_from=day), now=now, timezone=tz),
            lambda s: facet_counts(
                s, [], ListFilters(received_from=day, finding="overdue"), now=now, timezone=tz
            ),
            lambda s: facet_counts(
                s, [], ListFilters(overdue=True, channel="phone"), now=now, timezone=tz
            ),
            lambda s: under_search(s, "路灯", [], ListFilters(status="open")),
            lambda s: under_search(s, "噪音", mine, ListFilters()),
        ]

    runs = []
    start = 1
    for more in (600, 2400):
        _grow(runtime, more, start)
        start += more
        runs.append([_work(runtime, run) for run in lists()])
    small, large = runs
    slack = 200
    if runtime.engine.dialect.name == "postgresql":
        # The planner's choice among indexes flips on a few hundred rows (a department's open
        # cases read through a partial index of all open cases, a date's through another,
        # the findings by a scan of their small table): each reads some hundred rows more or
        # less, never the 1,800 closed cases added between the runs, which a count reading
        # the cases would read.
        slack = 1800 // 2
    for i, ((q1, w1), (q2, w2)) in enumerate(zip(small, large, strict=True)):
        assert q1 == q2, (i, small, large)
        assert w2 <= w1 + slack, (i, small, large)
    # The page itself: the same statements per page as the cases grow.
    supervisor = login_as("supervisor")
    for path in ("/board/cases?sort=received", "/board/cases?q=路灯", "/board/cases?overdue=1"):
        assert supervisor.get(path).status_code == 200
