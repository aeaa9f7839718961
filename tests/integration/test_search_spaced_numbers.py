"""A number in a complaint's text or a reply is found however it was spaced there and
however it is typed in the search box: 13800138000 finds 138-0013-8000 and the other way
round; observers find no personal number either way; migration 0038 indexes the cases
written before it. Both databases."""

from __future__ import annotations

import re
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tests.integration.helpers import insert_case_row, submit_complaint
from triage.search import search_cases
from triage.search_index import SearchGram, rebuild, spaced_grams
from web.db import alembic_config, make_engine, upgrade


def _numbers(client: Any, q: str) -> list[str]:
    r = client.get("/board/cases", query_string={"q": q})
    assert r.status_code == 200, (q, r.status_code)
    return re.findall(r'data-case="([^"]+)"', r.get_data(as_text=True))


@pytest.fixture
def cases(client: Any) -> dict[str, str]:
    found = {}
    for key, body in {
        "dashes": "隔壁工地夜间施工，我邻居的电话138-0013-8000可以作证。",
        "spaces": "物业不处理漏水，物业经理手机 139 0013 9000 一直不接。",
        "landline": "噪音投诉，居委会电话(010)8765-4321，无人处理。",
        "plain": "路灯坏了，值班电话13700137000打不通。",
        "date": "2026-11-30 起一直停水，至今未恢复。",
    }.items():
        found[key], _ = submit_complaint(client, body, phone="13511112222")
    return found


@pytest.mark.parametrize(
    ("q", "key"),
    [
        ("13800138000", "dashes"),
        ("138 0013 8000", "dashes"),
        ("138.0013.8000", "dashes"),
        ("00138000", "dashes"),
        ("13900139000", "spaces"),
        ("139-0013-9000", "spaces"),
        ("01087654321", "landline"),
        ("010-87654321", "landline"),
        ("87654321", "landline"),
        ("137-0013-7000", "plain"),
        ("137 0013 7000", "plain"),
        ("+86 137 0013 7000", "plain"),
        ("20261130", "date"),
    ],
)
def test_staff_find_a_number_however_it_was_spaced_in_the_text(
    cases: dict[str, str], login_as: Any, q: str, key: str
) -> None:
    supervisor = login_as("supervisor")
    assert _numbers(supervisor, q) == [cases[key]], q


def test_the_match_is_highlighted_as_written(cases: dict[str, str], login_as: Any) -> None:
    page = login_as("supervisor").get("/board/cases", query_string={"q": "13800138000"})
    html = page.get_data(as_text=True)
    assert re.search(r"<mark[^>]*>138-0013-8000</mark>", html), html[:3000]


def test_observers_find_no_personal_number_however_it_is_typed(
    cases: dict[str, str], login_as: Any, runtime: Any
) -> None:
    observer = login_as("observer")
    for q in ("13800138000", "138-0013-8000", "13900139000", "139 0013 9000", "13511112222"):
        assert _numbers(observer, q) == [], q
    # What their page shows unmasked they find, spaced either way.
    assert _numbers(observer, "20261130") == [cases["date"]]
    with runtime.sessions() as s:
        assert search_cases(s, "2026-11-30", masked=True).total == 1


def test_a_reply_with_a_spaced_number_is_found_by_the_digits(
    client: Any, login_as: Any, runtime: Any
) -> None:
    from tests.integration.test_extension_requests import case_of, dispatched
    from tests.integration.test_sign_off_flow import reply

    number, _ = dispatched(client, login_as, runtime)
    reply(login_as("urban"), number, "已联系施工单位，负责人电话 186 0018 6000，夜间停工。")
    assert case_of(runtime, number).replies
    assert _numbers(login_as("supervisor"), "18600186000") == [number]


def test_migration_0038_indexes_the_numbers_of_cases_written_before_it(empty_url: str) -> None:
    engine = make_engine(empty_url)
    upgrade(engine)
    body = "施工扰民，工头电话 138-0013-8000，晚上十点后还在干。"
    with Session(engine) as s, s.begin():
        insert_case_row(s, number="MS-2026-100001", body=body)
        insert_case_row(s, number="MS-2026-100002", body="楼道灯坏了，电话13800138001")
        rebuild(s)
        # As the code before 0038 indexed it: no grams of the spaced number.
        s.execute(
            delete(SearchGram).where(
                SearchGram.case_id == 1, SearchGram.gram.in_(spaced_grams(body))
            )
        )
    with Session(engine) as s:
        assert search_cases(s, "13800138000", masked=False).case_ids == []
        before = s.scalar(select(func.count()).select_from(SearchGram))
    command.downgrade(alembic_config(engine), "0037")
    upgrade(engine)
    with Session(engine) as s:
        assert search_cases(s, "13800138000", masked=False).case_ids == [1]
        assert search_cases(s, "13800138001", masked=False).case_ids == [2]
        assert search_cases(s, "13800138000", masked=True).case_ids == []
        after = s.scalar(select(func.count()).select_from(SearchGram))
        assert after == before + len(spaced_grams(body))
    # Run again (a re-run of the upgrade): nothing is added twice.
    from triage.search_index import add_spaced_numbers

    with Session(engine) as s, s.begin():
        assert add_spaced_numbers(s)[0] == 2  # their tracking numbers too
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(SearchGram)) == after
    engine.dispose()
