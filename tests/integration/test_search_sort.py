"""Search results in the order chosen, on both databases (issue 10's review): the case list
under a search showed "Nearest deadline first" in its order dropdown while the results came
best match first. The order chosen is honoured now, ties by case id as the lists break them;
without one a search is ranked best match first, and its dropdown says so. A capped search
is ordered among the matches it read."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.helpers import submit_complaint
from triage.case_list import order_found
from triage.models import Case
from triage.search import search_cases

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _numbers(client: Any, **params: str) -> list[str]:
    r = client.get("/board/cases", query_string=params)
    assert r.status_code == 200
    return re.findall(r'data-case="([^"]+)"', r.get_data(as_text=True))


def _chosen_order(client: Any, **params: str) -> str:
    html = client.get("/board/cases", query_string=params).get_data(as_text=True)
    select_html = re.search(r'<select name="sort">(.*?)</select>', html, re.S).group(1)
    return re.search(r'<option value="(\w+)"\s*selected>', select_html).group(1)


@pytest.fixture
def manholes(client: Any, runtime: Any) -> dict[str, str]:
    """Five cases about a manhole cover (井盖): "subject" ones name it in the subject (ranked
    first), the others in the body only. Receipt, deadline and last change each put them in
    another order than their ids, and two share a deadline."""
    cases = {
        # name: (subject, received hours after BASE, due hours, updated hours)
        "a": ("井盖松动", 1, 50, 3),
        "b": ("路面塌陷", 5, 20, 9),
        "c": ("井盖丢失", 3, 20, 2),
        "d": ("路面积水", 2, 80, 7),
        "e": ("下水道堵", 4, 10, 5),
    }
    numbers = {
        name: submit_complaint(
            client, f"幸福路{name}号门口的井盖出了问题，行人容易摔倒。", subject=subject
        )[0]
        for name, (subject, *_hours) in cases.items()
    }
    with runtime.sessions() as s, s.begin():
        for name, (_subject, received, due, updated) in cases.items():
            case = s.scalar(select(Case).where(Case.tracking_number == numbers[name]))
            case.received_at = BASE + timedelta(hours=received)
            case.due_at = BASE + timedelta(hours=due)
            case.updated_at = BASE + timedelta(hours=updated)
    return numbers


def test_search_results_follow_the_order_chosen(manholes: dict[str, str], login_as: Any) -> None:
    n = manholes
    supervisor = login_as("supervisor")
    by = {
        "deadline": [n["e"], n["b"], n["c"], n["a"], n["d"]],  # b and c due alike: by id
        "received": [n["b"], n["e"], n["c"], n["d"], n["a"]],
        "updated": [n["b"], n["d"], n["e"], n["a"], n["c"]],
    }
    for sort, expected in by.items():
        assert _numbers(supervisor, q="井盖", sort=sort) == expected, sort
        assert _chosen_order(supervisor, q="井盖", sort=sort) == sort
    # Without an order (a link from elsewhere), or asked for, best match first: the subject's
    # matches, newest first, then the body's; and the dropdown says so.
    best = [n["c"], n["a"], n["e"], n["d"], n["b"]]
    assert _numbers(supervisor, q="井盖") == best
    assert _numbers(supervisor, q="井盖", sort="relevance") == best
    assert _numbers(supervisor, q="井盖", sort="nonsense") == best
    assert _chosen_order(supervisor, q="井盖") == "relevance"
    # With other filters and a narrower search, the order still holds.
    assert _numbers(supervisor, q="井盖 摔倒", sort="deadline", status="triage") == by["deadline"]
    # No search: no "best match" to offer; the list's own default order.
    html = supervisor.get("/board/cases?sort=relevance").get_data(as_text=True)
    assert 'value="relevance"' not in html
    assert _chosen_order(supervisor, sort="relevance") == "received"
    # A handler's search is still limited to their department's cases (none of these).
    handler = login_as("urban")
    assert _numbers(handler, q="井盖", sort="deadline") == []


def test_a_saved_view_keeps_a_search_and_its_order(manholes: dict[str, str], login_as: Any) -> None:
    supervisor = login_as("supervisor")
    page = supervisor.get("/board/cases?q=井盖&sort=deadline").get_data(as_text=True)
    token = re.search(r'name="view-csrf_token"[^>]*value="([^"]+)"', page).group(1)
    query = re.search(r'name="view-query"[^>]*value="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert "sort=deadline" in query
    r = supervisor.post(
        "/board/views",
        data={"view-csrf_token": token, "view-name": "井盖按期限", "view-query": query},
    )
    assert r.status_code == 302 and "sort=deadline" in r.headers["Location"]
    r = supervisor.post(
        "/board/views",
        data={
            "view-csrf_token": token,
            "view-name": "井盖最相关",
            "view-query": "q=井盖&sort=relevance",
        },
    )
    assert "sort=relevance" in r.headers["Location"]


def test_a_capped_search_is_ordered_among_the_matches_it_read(
    manholes: dict[str, str], runtime: Any
) -> None:
    n = manholes
    with runtime.sessions() as s:
        ids = {
            c.tracking_number: c.id
            for c in s.scalars(select(Case).where(Case.tracking_number.in_(n.values())))
        }
        found = search_cases(s, "井盖", masked=False, cap=3)
        assert found.capped
        # The three newest matches (c, d, e by id), by deadline among themselves.
        assert set(found.case_ids) == {ids[n["c"]], ids[n["d"]], ids[n["e"]]}
        assert order_found(s, found.case_ids, "deadline") == [ids[n[k]] for k in "ecd"]
        assert order_found(s, [], "deadline") == []
