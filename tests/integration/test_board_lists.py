"""The board's lists at a district's scale, on both databases: the case list's filters, counts
per filter value, orders and last page, saved views and a handler's default view; the triage
queue's deadline column and bulk dispatch (one case failing, the others going); and the
number of SQL statements per page staying the same as the cases grow."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import event, func, select, update

from tests.conftest import csrf_from
from tests.integration.helpers import flashes, submit_complaint
from triage.models import OPEN_STATUSES, Case, CaseEvent, Department, SavedView, Status
from web.demo_volume import add_volume

NUMBERS = re.compile(r'<tr class="[^"]*" data-case="([^"]+)"')


def _listed(html: str) -> list[str]:
    """The cases of the list itself (not of the "needs attention" panel above it)."""
    return NUMBERS.findall(html.split('class="cases case-list"', 1)[-1])


def _numbers(client: Any, **params: str) -> list[str]:
    r = client.get("/board/cases", query_string=params)
    assert r.status_code == 200, r.status_code
    return _listed(r.get_data(as_text=True))


def _all_pages(client: Any, **params: str) -> list[str]:
    """Every case of a list, walking its Next links."""
    html = client.get("/board/cases", query_string=params).get_data(as_text=True)
    seen = _listed(html)
    for _ in range(100):
        nxt = re.search(r'<a href="([^"]+)" rel="next">', html)
        if not nxt:
            return seen
        html = client.get(nxt.group(1).replace("&amp;", "&")).get_data(as_text=True)
        seen += _listed(html)
    raise AssertionError("too many pages")


def _volume(runtime: Any, n: int, seed: int = 7, months: int = 3) -> None:
    with runtime.engine.begin() as conn:
        add_volume(conn, n, months=months, seed=seed, label_map=runtime.settings.label_map)


def test_filters_counts_and_orders_match_the_database(runtime: Any, login_as: Any) -> None:
    _volume(runtime, 180)
    supervisor = login_as("supervisor")
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        cases = s.scalars(select(Case)).all()
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
    phone = {c.tracking_number for c in cases if c.channel == "phone"}
    assert set(_all_pages(supervisor, channel="phone")) == phone
    open_urban = {
        c.tracking_number for c in cases if c.department_id == urban and c.status in OPEN_STATUSES
    }
    assert set(_all_pages(supervisor, status="open", department="urban")) == open_urban
    overdue = {c.tracking_number for c in cases if c.is_overdue(now) or c.risk == "overdue"}
    assert overdue and set(_all_pages(supervisor, overdue="1")) == overdue
    # Received in a date range (China time), both ends included.
    day = (now - timedelta(days=20)).date()
    since = {c.tracking_number for c in cases if (c.received_at + timedelta(hours=8)).date() >= day}
    assert set(_all_pages(supervisor, received_from=day.isoformat())) == since
    # Counts per filter value: the channel's, under the status chosen.
    page = supervisor.get("/board/cases", query_string={"status": "closed"}).get_data(as_text=True)
    closed_by_channel = Counter(c.channel for c in cases if c.status == Status.CLOSED)
    phone_closed = closed_by_channel["phone"]
    assert re.search(rf'<option value="phone"\s*>[^<(]*\({phone_closed}\)</option>', page), page
    # Orders: nearest deadline first, newest received first, recently updated first.
    by_deadline = _numbers(supervisor, status="open", sort="deadline")
    deadline = {
        c.tracking_number: c.due_at or c.triage_due_at or c.received_at
        for c in cases
        if c.status in OPEN_STATUSES
    }
    assert [deadline[n] for n in by_deadline] == sorted(deadline[n] for n in by_deadline)
    assert by_deadline[0] == min(deadline, key=lambda n: (deadline[n], n))
    newest = _numbers(supervisor, sort="received")
    received = {c.tracking_number: c.received_at for c in cases}
    assert [received[n] for n in newest] == sorted((received[n] for n in newest), reverse=True)
    # Bad input is left out, never an error.
    r = supervisor.get("/board/cases?received_from=2024-13-45&status=nonsense&sort=x&page=abc")
    assert r.status_code == 200


def test_counts_and_orders_under_urgent_overdue_and_dates(runtime: Any, login_as: Any) -> None:
    """The counts per filter value under filters that are not themselves counted (urgent,
    overdue, dates: one grouped read for every count) and a small filtered list read by its
    filters and sorted are what the database holds."""
    _volume(runtime, 220, seed=9)
    with runtime.engine.begin() as conn:
        conn.execute(update(Case).where(Case.id % 3 == 0).values(urgent=True))
    supervisor = login_as("supervisor")
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        cases = s.scalars(select(Case)).all()
        codes = {d.id: d.code for d in s.scalars(select(Department))}
    hot = [c for c in cases if c.urgent and (c.is_overdue(now) or c.risk == "overdue")]
    hot_phone = {c.tracking_number for c in hot if c.channel == "phone"}
    assert hot_phone
    query = {"urgent": "1", "overdue": "1", "channel": "phone"}
    assert set(_all_pages(supervisor, **query)) == hot_phone
    page = supervisor.get("/board/cases", query_string=query).get_data(as_text=True)
    # The channel's counts leave the channel chosen aside; the departments' keep it.
    for channel, n in Counter(c.channel for c in hot).items():
        assert re.search(rf'<option value="{channel}"[^>]*>[^<(]*\({n}\)</option>', page), channel
    by_department = Counter(
        codes[c.department_id] for c in hot if c.channel == "phone" and c.department_id
    )
    for code, n in by_department.items():
        assert re.search(rf'<option value="{code}"[^>]*>[^<(]*\({n}\)</option>', page), code
    # Received in the last 20 days, nearest deadline first (the open cases first), over every
    # page.
    day = (now - timedelta(days=20)).date()
    walked = _all_pages(supervisor, received_from=day.isoformat(), sort="deadline")
    deadline = {
        c.tracking_number: (
            c.status not in OPEN_STATUSES,
            c.due_at or c.triage_due_at or c.received_at,
            c.id,
        )
        for c in cases
        if (c.received_at + timedelta(hours=8)).date() >= day
    }
    assert walked == sorted(deadline, key=deadline.__getitem__)


def test_last_page_and_keyset_paging_in_every_order(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    import web.board

    # Pages of 10: three full pages and a short last one, as 130 cases made with 50.
    monkeypatch.setattr(web.board, "PAGE_SIZE", 10)
    _volume(runtime, 36)
    supervisor = login_as("supervisor")
    for sort in ("received", "deadline", "updated"):
        walked = _all_pages(supervisor, sort=sort)
        assert len(walked) == len(set(walked)) == 36, sort
        last = _numbers(supervisor, sort=sort, last="1")
        assert last == walked[30:], sort
        # A typed page number still works, and is the same page.
        assert _numbers(supervisor, sort=sort, page="2") == walked[10:20], sort


def test_handler_default_is_their_open_cases_by_deadline(runtime: Any, login_as: Any) -> None:
    _volume(runtime, 150)
    handler = login_as("urban")
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        mine = {
            c.tracking_number: c.due_at
            for c in s.scalars(
                select(Case).where(
                    Case.department_id == urban, Case.status.in_([str(x) for x in OPEN_STATUSES])
                )
            )
        }
    shown = _numbers(handler)
    assert shown and set(shown) == set(mine)
    assert [mine[n] for n in shown] == sorted(mine[n] for n in shown)
    # Asking for all statuses explicitly shows the closed ones too.
    assert len(_numbers(handler, sort="received")) > len(shown)
    # Choosing the language by ?lang= is not asking for another list.
    assert _numbers(handler, lang="en") == shown


def test_saved_views_per_user_and_role_defaults(runtime: Any, login_as: Any) -> None:
    _volume(runtime, 60)
    supervisor = login_as("supervisor")
    page = supervisor.get("/board/cases?channel=phone&sort=deadline").get_data(as_text=True)
    token = re.search(r'name="view-csrf_token"[^>]*value="([^"]+)"', page).group(1)
    query = re.search(r'name="view-query"[^>]*value="([^"]+)"', page).group(1)
    assert "channel=phone" in query.replace("&amp;", "&")
    # Without the CSRF token nothing is saved.
    r = supervisor.post(
        "/board/views", data={"view-name": "来电视图甲", "view-query": "channel=phone"}
    )
    assert "来电视图甲" not in supervisor.get("/board/cases?sort=received").get_data(as_text=True)
    r = supervisor.post(
        "/board/views",
        data={
            "view-csrf_token": token,
            "view-name": "来电视图甲",
            "view-query": query,
            "view-default": "y",
        },
    )
    assert r.status_code == 302
    # The supervisor's list now opens with the saved view.
    assert set(_numbers(supervisor)) == set(
        _all_pages(supervisor, channel="phone", sort="deadline")
    )
    assert "来电视图甲" in supervisor.get("/board/cases?sort=received").get_data(as_text=True)
    # Another user does not see it.
    other = login_as("urban")
    assert "来电视图甲" not in other.get("/board/cases").get_data(as_text=True)
    # The admin sets a shared default for handlers: it replaces the built-in one.
    admin = login_as("admin")
    page = admin.get("/board/cases?channel=web&sort=received").get_data(as_text=True)
    token = re.search(r'name="view-csrf_token"[^>]*value="([^"]+)"', page).group(1)
    r = admin.post(
        "/board/views",
        data={
            "view-csrf_token": token,
            "view-name": "网站来件",
            "view-query": "channel=web&sort=received",
            "view-default": "y",
            "view-role": "handler",
        },
    )
    assert r.status_code == 302
    html = other.get("/board/cases").get_data(as_text=True)
    assert "网站来件" in html
    assert "selected>" in html and re.search(r'<option value="web"\s*selected>', html)
    # A handler cannot save for a role (the field offers only themselves).
    page = other.get("/board/cases?sort=received").get_data(as_text=True)
    token = re.search(r'name="view-csrf_token"[^>]*value="([^"]+)"', page).group(1)
    other.post(
        "/board/views",
        data={
            "view-csrf_token": token,
            "view-name": "越权视图",
            "view-query": "",
            "view-role": "admin",
        },
    )
    assert "越权视图" not in admin.get("/board/cases?sort=received").get_data(as_text=True)
    assert "越权视图" not in other.get("/board/cases?sort=received").get_data(as_text=True)


def _queue_numbers(client: Any) -> list[str]:
    html = client.get("/board/queue").get_data(as_text=True)
    return re.findall(r'data-case="([^"]+)"', html)


def test_bulk_dispatch_with_one_failing_case(runtime: Any, client: Any, login_as: Any) -> None:
    numbers = [
        submit_complaint(client, f"第{i}号楼门口的路灯坏了，晚上看不清路。", subject="路灯")[0]
        for i in range(4)
    ]
    supervisor = login_as("supervisor")
    queue = supervisor.get("/board/queue").get_data(as_text=True)
    assert all(n in queue for n in numbers)
    assert 'class="deadline' in queue and "剩余" in queue
    # The department selector is rendered once, not once per row.
    assert queue.count('name="bulk-department"') == 1
    # One of them is dispatched by someone else meanwhile: it fails, the others go.
    with runtime.sessions() as s, s.begin():
        gone = s.scalar(select(Case).where(Case.tracking_number == numbers[0]))
        gone.status = Status.REJECTED
    token = re.search(r'name="bulk-csrf_token"[^>]*value="([^"]+)"', queue).group(1)
    r = supervisor.post(
        "/board/queue/dispatch",
        data={"bulk-csrf_token": token, "bulk-department": "environment", "case": numbers[:3]},
        follow_redirects=True,
    )
    html = r.get_data(as_text=True)
    messages = flashes(html)
    assert any(numbers[0] in m for m in messages), messages
    assert any(numbers[1] in m and numbers[2] in m for m in messages), messages
    left = _queue_numbers(supervisor)
    assert numbers[1] not in left and numbers[2] not in left and numbers[3] in left
    with runtime.sessions() as s:
        for n in numbers[1:3]:
            c = s.scalar(select(Case).where(Case.tracking_number == n))
            assert c.status == Status.ASSIGNED and c.department.code == "environment"
            assert c.events[-1].action == "assigned" and c.events[-1].actor_name
    # Without the token nothing happens.
    r = supervisor.post(
        "/board/queue/dispatch", data={"bulk-department": "urban", "case": [numbers[3]]}
    )
    assert r.status_code == 400
    assert numbers[3] in _queue_numbers(supervisor)
    # A handler may not dispatch, even with a valid token of theirs.
    handler = login_as("urban")
    token = csrf_from(handler.get("/board/cases").get_data(as_text=True))
    r = handler.post(
        "/board/queue/dispatch",
        data={"csrf_token": token, "bulk-department": "urban", "case": [numbers[3]]},
    )
    assert r.status_code == 403
    assert numbers[3] in _queue_numbers(supervisor)


def _count_queries(runtime: Any, client: Any, path: str) -> int:
    count = [0]

    def counting(*_: Any) -> None:
        count[0] += 1

    client.get(path)
    event.listen(runtime.engine, "before_cursor_execute", counting)
    try:
        r = client.get(path)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", counting)
    assert r.status_code == 200, (path, r.status_code)
    return count[0]


def test_queries_per_page_do_not_grow_with_the_cases(runtime: Any, login_as: Any) -> None:
    supervisor, handler = login_as("supervisor"), login_as("urban")
    pages = [
        (supervisor, "/board/queue"),
        (supervisor, "/board/cases"),
        (supervisor, "/board/cases?status=open&department=urban&sort=deadline"),
        (supervisor, "/board/cases?last=1&sort=updated"),
        (supervisor, "/board/cases?q=噪音"),
        (handler, "/board/cases"),
    ]
    _volume(runtime, 50, seed=1)
    small = [_count_queries(runtime, c, p) for c, p in pages]
    # Four times the cases (each page but the first lists more rows than before): a query
    # per case, or per row shown, would be counted again and again.
    _volume(runtime, 150, seed=2)
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 200
        assert s.scalar(select(func.count()).select_from(CaseEvent)) > 800
    large = [_count_queries(runtime, c, p) for c, p in pages]
    assert large == small, list(zip([p for _, p in pages], small, large, strict=True))


def test_queue_page_is_light(runtime: Any, login_as: Any) -> None:
    # Received over the last month, the cases are mostly open: 63 of these 300 wait.
    _volume(runtime, 300, seed=5, months=1)
    supervisor = login_as("supervisor")
    html = supervisor.get("/board/queue").get_data(as_text=True)
    rows = len(re.findall(r'data-case="', html))
    # The 50 most urgent (100 rows were 91 KB at 100,000 cases), the total in the heading.
    assert rows == 50
    assert "最紧急的 50 件" in html, html
    # No department list per row: about 1 KB a row (the urgent ones first, with their reasons).
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert len(body.encode()) / rows < 1000, len(body.encode()) / rows
    assert html.count("<option") < 40


def test_list_urls_of_other_tools_keep_working(runtime: Any, login_as: Any) -> None:
    _volume(runtime, 80)
    supervisor = login_as("supervisor")
    for params in (
        {"q": "路灯", "page": "2"},
        {"status": "open", "department": "urban", "page": "1"},
        {"page": "999999"},
        {"status": "closed", "after": "5"},
        {"before": "70", "page": "3"},
    ):
        r = supervisor.get("/board/cases?" + urlencode(params))
        assert r.status_code == 200, params


def test_merge_a_duplicate_from_the_queue(runtime: Any, client: Any, login_as: Any) -> None:
    text = "幸福小区3号楼电梯已经坏了两个星期，老人上下楼非常困难，物业一直不修。"
    first, _ = submit_complaint(client, text, subject="电梯坏了")
    second, _ = submit_complaint(client, text, subject="电梯坏了")
    supervisor = login_as("supervisor")
    queue = supervisor.get("/board/queue").get_data(as_text=True)
    row = queue.split(f'data-case="{second}"', 1)[1].split("</tr>", 1)[0]
    assert f'name="merge-target" value="{first}"' in row
    token = re.search(r'name="merge-csrf_token"[^>]*value="([^"]+)"', row).group(1)
    r = supervisor.post(
        f"/board/cases/{second}/merge",
        data={"merge-csrf_token": token, "merge-target": first, "back": "queue"},
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/board/queue")
    left = _queue_numbers(supervisor)
    assert second not in left and first in left
    with runtime.sessions() as s:
        merged = s.scalar(select(Case).where(Case.tracking_number == second))
        assert merged.status == Status.MERGED and merged.merged_into.tracking_number == first
    # A third like them: the first is closed meanwhile; the row no longer offers a merge
    # into it (the button could only fail: "cannot merge into a closed case").
    third, _ = submit_complaint(client, text, subject="电梯坏了")
    with runtime.sessions() as s, s.begin():
        s.scalar(select(Case).where(Case.tracking_number == first)).status = Status.CLOSED
    queue = supervisor.get("/board/queue").get_data(as_text=True)
    row = queue.split(f'data-case="{third}"', 1)[1].split("</tr>", 1)[0]
    assert f'value="{first}"' not in row and f'value="{second}"' not in row


def test_open_cases_merged_from_each_status_in_order(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    import web.board

    size = 10  # pages of 10: a page merged from the statuses' pieces five times over
    monkeypatch.setattr(web.board, "PAGE_SIZE", size)
    with runtime.engine.begin() as conn:
        add_volume(conn, 60, months=1, seed=5, label_map=runtime.settings.label_map)
    supervisor = login_as("supervisor")
    with runtime.sessions() as s:
        opened = s.scalars(
            select(Case).where(Case.status.in_([str(x) for x in OPEN_STATUSES]))
        ).all()
    assert len(opened) > 4 * size
    assert len({c.status for c in opened}) == len(OPEN_STATUSES) - 1  # all but "received"
    for sort, key, newest in (
        ("deadline", lambda c: (c.due_at or c.triage_due_at or c.received_at, c.id), False),
        ("received", lambda c: (c.received_at, c.id), True),
    ):
        expected = [c.tracking_number for c in sorted(opened, key=key, reverse=newest)]
        assert _all_pages(supervisor, status="open", sort=sort) == expected, sort
        tail = len(expected) % size or size
        assert _numbers(supervisor, status="open", sort=sort, last="1") == expected[-tail:]
        assert _numbers(supervisor, status="open", sort=sort, page="2") == expected[size : 2 * size]


def test_odd_dates_and_junk_saved_views_never_fail(runtime: Any, login_as: Any) -> None:
    """Days at the calendar's ends (no midnight in UTC for 0001-01-01 in China) are left out
    with a message, not a 500; a saved view's query is stored as understood, so junk in it
    (a NUL, which PostgreSQL refuses) never reaches the list that opens with it."""
    _volume(runtime, 30)
    supervisor = login_as("supervisor")
    everything = _all_pages(supervisor, sort="received")
    for name, day in (
        ("received_from", "0001-01-01"),
        ("received_to", "9999-12-31"),
        ("due_from", "0001-01-01"),
        ("due_to", "9999-12-31"),
        ("due_to", "2026-02-30"),
    ):
        r = supervisor.get("/board/cases", query_string={name: day, "sort": "received"})
        assert r.status_code == 200, (name, day, r.status_code)
        html = r.get_data(as_text=True)
        assert "无法识别，已忽略" in html, (name, day)
        assert _listed(html) == everything[:50]
    page = supervisor.get("/board/cases?sort=received").get_data(as_text=True)
    token = re.search(r'name="view-csrf_token"[^>]*value="([^"]+)"', page).group(1)
    r = supervisor.post(
        "/board/views",
        data={
            "view-csrf_token": token,
            "view-name": "杂项",
            "view-query": "channel=%00&finding=a%00b&status=open&junk=1&after=5&sort=zzz",
            "view-default": "y",
        },
    )
    assert r.status_code == 302
    assert supervisor.get(r.headers["Location"]).status_code == 200
    with runtime.sessions() as s:
        stored = s.scalar(select(SavedView.query).where(SavedView.name == "杂项"))
    assert stored == "status=open&finding=ab"
    # The list opens with it: the open cases.
    r = supervisor.get("/board/cases")
    assert r.status_code == 200


def test_search_counts_only_the_cases_it_found(runtime: Any, login_as: Any) -> None:
    """Counts per filter value beside a search were those of the list without it (开放 (69)
    then 4 listed): under a search they are of its matches (tests/integration/
    test_list_counts.py checks each against the results with its value picked)."""
    _volume(runtime, 60)
    supervisor = login_as("supervisor")
    html = supervisor.get("/board/cases", query_string={"q": "路灯"}).get_data(as_text=True)
    shown = re.search(r'<option value="closed"[^>]*>[^<]*\((\d+)\)</option>', html)
    closed = supervisor.get("/board/cases", query_string={"q": "路灯", "status": "closed"})
    assert shown and len(_listed(closed.get_data(as_text=True))) == int(shown.group(1))
    html = supervisor.get("/board/cases", query_string={"sort": "received"}).get_data(as_text=True)
    assert re.search(r'<option value="closed"[^>]*>[^<]*\(\d+\)</option>', html)


def test_bulk_dispatch_of_closed_cases_and_too_many(runtime: Any, login_as: Any) -> None:
    """A closed, merged or rejected case ticked (a forged form, or a stale page) is said to be
    not waiting, not "already dispatched"; more than the queue's hundred are not silently
    dropped; a hundred failures are not a hundred red lines."""
    _volume(runtime, 60)
    with runtime.sessions() as s:
        by_status = {
            st: s.scalar(select(Case.tracking_number).where(Case.status == st).limit(1))
            for st in (Status.CLOSED, Status.MERGED, Status.REJECTED, Status.ASSIGNED)
        }
    supervisor = login_as("supervisor")
    queue = supervisor.get("/board/queue").get_data(as_text=True)
    token = re.search(r'name="bulk-csrf_token"[^>]*value="([^"]+)"', queue).group(1)
    shown = [n for n in by_status.values() if n]
    r = supervisor.post(
        "/board/queue/dispatch",
        data={"bulk-csrf_token": token, "bulk-department": "urban", "case": shown},
        follow_redirects=True,
    )
    messages = flashes(r.get_data(as_text=True))
    closed = by_status[Status.CLOSED]
    assert closed and any(closed in m and "不在待派单状态" in m for m in messages), messages
    assert not any(closed in m and "已经派出" in m for m in messages), messages
    assigned = by_status[Status.ASSIGNED]
    assert any(assigned in m and "已经派出" in m for m in messages), messages
    forged = ["X" * 5000] + [f"MS-1999-{i:06d}" for i in range(149)]
    r = supervisor.post(
        "/board/queue/dispatch",
        data={"bulk-csrf_token": token, "bulk-department": "urban", "case": forged},
        follow_redirects=True,
    )
    messages = flashes(r.get_data(as_text=True))
    assert any("一次最多派出 50 件" in m and "另有 100 件" in m for m in messages), messages
    assert len(messages) <= 12 and any("另有 40 件未能派出" in m for m in messages), messages
    assert not any("X" * 31 in m for m in messages)


def test_a_cursor_of_another_departments_case_tells_nothing(runtime: Any, login_as: Any) -> None:
    """A handler's list paged "after" a case of another department was read from where that
    case sits in the order: by trying ids, its receipt time could be narrowed down. Such a
    cursor is now no cursor: the first page of their own cases."""
    _volume(runtime, 60)
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        other = s.scalars(
            select(Case.id).where(Case.department_id != urban).order_by(Case.received_at.desc())
        ).all()
    handler = login_as("urban")
    first = _numbers(handler, sort="received")
    assert first
    # Five of them, spread from the newest to the oldest: were such a cursor honoured, the
    # handler's cases after a newer one, or before an older one, would not be their first page.
    for case_id in other[:: len(other) // 5][:5]:
        for way in ("after", "before"):
            assert _numbers(handler, sort="received", **{way: str(case_id)}) == first, way


def test_bulk_dispatch_to_a_suggestion_no_longer_active(
    runtime: Any, client: Any, login_as: Any
) -> None:
    """A case whose suggested department was deactivated since is not dispatched there, and
    the message says why (not "no suggested department")."""
    text = "小区门口的路灯坏了一个星期，晚上看不清路。"
    number = submit_complaint(client, text, subject="路灯")[0]
    with runtime.sessions() as s, s.begin():
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        dept = s.scalar(select(Department).where(Department.code == "safety"))
        case.suggested_department_id = dept.id
        dept.active = False
    supervisor = login_as("supervisor")
    queue = supervisor.get("/board/queue").get_data(as_text=True)
    token = re.search(r'name="bulk-csrf_token"[^>]*value="([^"]+)"', queue).group(1)
    for data in (
        {"bulk-department": "_suggested", "case": [number]},
        {"bulk-department": "_suggested", "one": number, f"to-{number}": ""},
    ):
        r = supervisor.post(
            "/board/queue/dispatch", data={"bulk-csrf_token": token, **data}, follow_redirects=True
        )
        messages = flashes(r.get_data(as_text=True))
        assert any(number in m and "建议部门已停用" in m for m in messages), messages
    r = supervisor.post(
        "/board/queue/dispatch",
        data={"bulk-csrf_token": token, "bulk-department": "safety", "case": [number]},
        follow_redirects=True,
    )
    assert any("不是有效的选择" in m for m in flashes(r.get_data(as_text=True)))
    with runtime.sessions() as s:
        assert s.scalar(select(Case.status).where(Case.tracking_number == number)) in (
            Status.RECEIVED,
            Status.TRIAGE,
        )


def test_migration_0019_list_filter_indexes_up_and_down(empty_url: str) -> None:
    """The urgent and overdue filters' indexes come with 0019 and go with its downgrade; the
    urgent filter's term is the partial index's (SQLite reads it instead of every case)."""
    from alembic import command
    from sqlalchemy import inspect

    from triage.case_list import ListFilters
    from web.db import alembic_config, make_engine, upgrade

    names = {"ix_cases_urgent", "ix_cases_status_triage_due", "ix_cases_status_due"}
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0019")
        assert names <= {i["name"] for i in inspect(engine).get_indexes("cases")}
        if engine.dialect.name == "sqlite":
            where = ListFilters(urgent=True).clauses(datetime.now(UTC), None)  # type: ignore[arg-type]
            query = select(func.count()).select_from(Case).where(*where)
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            with engine.connect() as conn:
                plan = " ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "ix_cases_urgent" in plan, plan
        command.downgrade(alembic_config(engine), "0018")
        assert not names & {i["name"] for i in inspect(engine).get_indexes("cases")}
        upgrade(engine, "0019")
        assert names <= {i["name"] for i in inspect(engine).get_indexes("cases")}
    finally:
        engine.dispose()


def test_counts_come_from_the_tallies_and_follow_a_change_at_once(
    runtime: Any, client: Any, login_as: Any
) -> None:
    """The counts per filter value of a list narrowed only by tallied filters are read from
    the maintained tallies (triage/tallies.py), never by grouping the cases (that cost 0.2 s
    of CPU per filter at 1,000,000 cases, after any change); a new case shows in them on the
    next request, on any worker or web machine (nothing is kept between requests); a
    handler's are of their department only."""
    _volume(runtime, 150, seed=5)
    supervisor = login_as("supervisor")
    grouped: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        # Grouping at most COUNT_CAP + 1 of the list's cases (overdue, finding, attachments
        # of a list that short) is bounded; a GROUP BY of every case is not.
        upper = statement.upper()
        if "GROUP BY" in upper and "FROM cases" in statement and "LIMIT" not in upper:
            grouped.append(statement)

    def channels(page: str) -> dict[str, int]:
        return {
            c: int(n)
            for c, n in re.findall(r'<option value="(\w+)"[^>]*>[^<(]*\((\d+)\)</option>', page)
            if c in ("web", "email", "phone", "call_log", "letter", "visit", "api") and n != "0"
        }

    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        open_cases = s.scalars(select(Case).where(Case.status.in_(OPEN_STATUSES))).all()
    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        first = supervisor.get("/board/cases?status=open").get_data(as_text=True)
        handler = login_as("urban")
        mine = channels(handler.get("/board/cases?status=open").get_data(as_text=True))
        submit_complaint(client, "网上提交：小区门口路灯不亮，晚上很黑。", subject="路灯")
        fresh = supervisor.get("/board/cases?status=open").get_data(as_text=True)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)
    assert not grouped, grouped
    wanted: dict[str, int] = {}
    for c in open_cases:
        wanted[c.channel] = wanted.get(c.channel, 0) + 1
    assert channels(first) == {k: v for k, v in wanted.items() if v}
    handler_wanted: dict[str, int] = {}
    for c in open_cases:
        if c.department_id == urban:
            handler_wanted[c.channel] = handler_wanted.get(c.channel, 0) + 1
    assert mine == handler_wanted
    assert channels(fresh)["web"] == channels(first).get("web", 0) + 1, (channels(fresh), first)


def _next_link(html: str) -> str:
    found = re.search(r'<a href="([^"]+)" rel="next">', html)
    assert found is not None
    return found.group(1).replace("&amp;", "&")


def test_next_page_after_the_last_case_shown_moved(
    runtime: Any, login_as: Any, monkeypatch: Any
) -> None:
    """Issue 10 (red-team): the Next link carries the last case's key value as shown, so a
    change to that case between the two clicks (handled: a newer last change; extended: a
    later deadline) neither repeats page 1 on page 2 nor skips the cases it jumped over."""
    import web.board

    monkeypatch.setattr(web.board, "PAGE_SIZE", 5)
    _volume(runtime, 70, months=1)  # 16 assigned
    supervisor = login_as("supervisor")
    for sort in ("updated", "deadline"):
        first = supervisor.get(f"/board/cases?status=assigned&sort={sort}").get_data(as_text=True)
        page1, nxt = _listed(first), _next_link(first)
        expected = _listed(supervisor.get(nxt).get_data(as_text=True))
        assert len(page1) == 5 and len(expected) == 5
        last = page1[-1]
        if sort == "updated":
            # The department starts handling the last case of page 1 in another browser.
            with runtime.sessions() as s:
                code = s.scalar(
                    select(Department.code)
                    .join(Case, Case.department_id == Department.id)
                    .where(Case.tracking_number == last)
                )
            handler = login_as(code)
            token = csrf_from(handler.get(f"/board/cases/{last}").get_data(as_text=True))
            r = handler.post(f"/board/cases/{last}/start", data={"csrf_token": token})
            assert r.status_code == 302
        else:
            # Its deadline is extended by a month (an approved extension).
            with runtime.sessions() as s:
                moved = s.scalars(select(Case).where(Case.tracking_number == last)).one()
                moved.due_at = (moved.due_at or moved.received_at) + timedelta(days=30)
                s.commit()
        page2 = _listed(supervisor.get(nxt).get_data(as_text=True))
        assert not set(page1) & set(page2), sort  # nothing repeated
        assert [n for n in expected if n != last][:4] == [n for n in page2 if n != last][:4], sort


def test_odd_cursors_give_the_first_page_and_old_links_still_work(
    runtime: Any, login_as: Any
) -> None:
    _volume(runtime, 60)
    supervisor = login_as("supervisor")
    first = _numbers(supervisor, sort="received")
    with runtime.sessions() as s:
        cursor_id = s.scalar(select(Case.id).where(Case.tracking_number == first[-1]))
    # A link of before the cursors carried the key (after=<id>) still gives the next page.
    assert (
        _numbers(supervisor, sort="received", after=str(cursor_id))
        == _all_pages(supervisor, sort="received")[50:]
    )
    for odd in ("1.x", "1.", ".5", "1.2.3", "1.9999999999999999", "1.²", "x", "-1.5", "1.-5"):
        for name in ("after", "before"):
            assert _numbers(supervisor, sort="received", **{name: odd}) == first, (name, odd)


def test_a_long_queue_says_its_exact_length(login_as: Any, runtime: Any, monkeypatch: Any) -> None:
    """More cases wait than the queue shows: its heading gives how many wait in all, exact
    even past the count cap of the lists (read from the tallies, not counted up to a cap)."""
    import triage.case_list
    import web.board

    # A queue of 10 (50 in service) and a cap of 5: 22 of these 120 cases wait.
    monkeypatch.setattr(web.board, "QUEUE_SIZE", 10)
    monkeypatch.setattr(triage.case_list, "COUNT_CAP", 5)
    _volume(runtime, 120, seed=5, months=1)
    with runtime.sessions() as s:
        waiting = s.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.status.in_([Status.RECEIVED, Status.TRIAGE]))
        )
    assert waiting > 10, "the generated cases should fill the queue"
    html = login_as("supervisor").get("/board/queue").get_data(as_text=True)
    assert len(re.findall(r'data-case="', html)) == 10
    assert f"<small>({waiting})</small>" in html
    hint = re.search(r'<p class="hint">(.*?)</p>', html)
    assert hint and str(waiting) in hint.group(1) and "10" in hint.group(1)


def test_a_list_past_the_count_cap_gives_its_exact_length_when_tallied(
    login_as: Any, runtime: Any, monkeypatch: Any
) -> None:
    """A list longer than the count's cap, under filters the tallies count (status,
    department, channel, kind): its heading gives the exact length, as its counts per filter
    value do; under one they do not count (a received date), it says "cap+"."""
    from triage import case_list

    counted = case_list.count_cases
    monkeypatch.setattr(case_list, "count_cases", lambda s, where, cap=10: counted(s, where, cap))
    with runtime.engine.begin() as conn:
        add_volume(conn, 120, months=2, seed=9)
    with runtime.sessions() as s:
        closed = s.scalar(
            select(func.count()).select_from(Case).where(Case.status == Status.CLOSED)
        )
        by_web = s.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.status == Status.CLOSED, Case.channel == "web")
        )
    assert closed > 10 and by_web > 10
    supervisor = login_as("supervisor")
    for query, n in (("status=closed", closed), ("status=closed&channel=web", by_web)):
        html = supervisor.get(f"/board/cases?{query}").get_data(as_text=True)
        assert f"<small>({n})</small>" in html, query
    dated = supervisor.get("/board/cases?status=closed&received_from=2000-01-01")
    assert "<small>(10+)</small>" in dated.get_data(as_text=True)
