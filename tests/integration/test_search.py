"""Search on the board, through the search index, on both databases: Chinese substrings of two
and four characters, a phone number for staff, nothing personal for masked views, the index
kept with replies and merges and rebuilt identically, and lists paged to their last page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from tests.integration.helpers import post_form, submit_complaint, work_of
from triage.models import Case, Status
from triage.search import search_cases
from triage.search_index import SearchGram, rebuild
from web.cli import main
from web.demo_volume import add_volume

NOISE = "楼下饭店每天深夜噪音扰民，油烟也很大，请环保部门处理。"
PARKING = "小区物业乱收停车费，一个车位每月涨到八百元，没有任何公示。"
LAMP = "明德路路灯坏了三个星期，晚上一片漆黑。"


def _numbers(client: Any, q: str, **params: str) -> list[str]:
    r = client.get("/board/cases", query_string={"q": q, **params})
    assert r.status_code == 200
    return re.findall(r'data-case="([^"]+)"', r.get_data(as_text=True))


@pytest.fixture
def three(client: Any) -> dict[str, str]:
    noise, _ = submit_complaint(client, NOISE, subject="饭店噪音", name="张伟", phone="13911112222")
    parking, _ = submit_complaint(client, PARKING, subject="停车费", name="陈先生")
    lamp, _ = submit_complaint(client, LAMP, subject="路灯不亮", email="lamp.fan@example.com")
    return {"noise": noise, "parking": parking, "lamp": lamp}


def test_chinese_substrings_of_two_and_four_characters(three: dict[str, str], login_as: Any):
    supervisor = login_as("supervisor")
    assert _numbers(supervisor, "噪音") == [three["noise"]]
    assert _numbers(supervisor, "物业") == [three["parking"]]
    assert _numbers(supervisor, "停车") == [three["parking"]]  # subject and body
    assert _numbers(supervisor, "噪音扰民") == [three["noise"]]
    # Every gram is there, but not in this order: not a match.
    assert _numbers(supervisor, "扰民噪音") == []
    # Words apart: both must occur, anywhere.
    assert _numbers(supervisor, "路灯 漆黑") == [three["lamp"]]
    assert _numbers(supervisor, "路灯 噪音") == []
    # One character: no gram to look up, found by the bounded scan.
    assert set(_numbers(supervisor, "灯")) == {three["lamp"]}
    page = supervisor.get("/board/cases", query_string={"q": "物业"}).get_data(as_text=True)
    assert "<mark>物业</mark>" in page


def test_staff_find_a_phone_number_and_masked_views_find_nothing_personal(
    three: dict[str, str], login_as: Any
) -> None:
    supervisor, observer = login_as("supervisor"), login_as("observer")
    for q in ("13911112222", "139 1111 2222", "1111 2222", "张伟", "lamp.fan@example.com"):
        expected = three["lamp"] if "lamp" in q else three["noise"]
        assert _numbers(supervisor, q) == [expected], q
        assert _numbers(observer, q) == [], q
    assert _numbers(observer, "陈先生") == []
    # What they are shown they do find, the tracking number included.
    assert _numbers(observer, "噪音扰民") == [three["noise"]]
    assert _numbers(observer, three["lamp"]) == [three["lamp"]]
    page = supervisor.get("/board/cases", query_string={"q": "13911112222"}).get_data(as_text=True)
    assert "<mark>13911112222</mark>" in page


def test_a_phone_sharing_all_but_its_last_digit_is_another_caller(
    three: dict[str, str], client: Any, login_as: Any
) -> None:
    """Only the rarest few of a phone's nine trigrams are read from the index (joining all nine
    cost PostgreSQL 140 ms of planning): the rest are checked on the text, so a number that
    shares every trigram but one is not found for it."""
    near, _ = submit_complaint(client, LAMP, subject="路灯", name="王五", phone="13911112223")
    supervisor, observer = login_as("supervisor"), login_as("observer")
    assert _numbers(supervisor, "13911112222") == [three["noise"]]
    assert _numbers(supervisor, "13911112223") == [near]
    assert _numbers(supervisor, "1391111222") == [near, three["noise"]]  # newest first
    assert _numbers(observer, "13911112223") == []


def test_a_handler_searches_only_the_department(three: dict[str, str], login_as: Any) -> None:
    handler = login_as("urban")
    assert _numbers(handler, "噪音") == []


def test_highlights_are_escaped(client: Any, login_as: Any) -> None:
    number, _ = submit_complaint(
        client, "窗外<script>alert(1)</script>施工噪音", subject="<b>夜间施工</b>"
    )
    page = login_as("supervisor").get("/board/cases", query_string={"q": "script"})
    html = page.get_data(as_text=True)
    assert number in html
    assert "<script>alert" not in html and "<b>夜间" not in html
    assert "&lt;<mark>script</mark>&gt;alert(1)" in html


def test_the_index_follows_replies_and_merges(
    three: dict[str, str], login_as: Any, runtime: Any
) -> None:
    supervisor = login_as("supervisor")
    with runtime.sessions() as s:
        parking = s.scalar(select(Case).where(Case.tracking_number == three["parking"]))
        parking_id = parking.id
    post_form(
        supervisor,
        "/board/queue",
        f"/board/cases/{three['parking']}/assign",
        {f"c{parking_id}-department": "urban"},
    )
    handler = login_as("urban")
    assert _numbers(handler, "价格主管部门") == []
    r = post_form(
        handler,
        f"/board/cases/{three['parking']}",
        f"/board/cases/{three['parking']}/reply",
        {"reply-text": "已约谈物业公司，停车费调整须报价格主管部门备案。"},
    )
    assert r.status_code == 302
    assert _numbers(handler, "价格主管部门") == [three["parking"]]
    page = handler.get("/board/cases", query_string={"q": "价格主管"}).get_data(as_text=True)
    assert "<mark>价格主管</mark>" in page  # the reply's excerpt
    # Observers find it by the reply too: it went out, and the case page shows it them.
    assert _numbers(login_as("observer"), "价格主管部门") == [three["parking"]]

    r = post_form(
        supervisor,
        f"/board/cases/{three['lamp']}",
        f"/board/cases/{three['lamp']}/merge",
        {"merge-target": three["noise"], "merge-reason": "同一居民"},
    )
    assert r.status_code == 302
    # The merged case's number finds it and the case it went into.
    assert set(_numbers(supervisor, three["lamp"])) == {three["lamp"], three["noise"]}


def test_reindex_rebuilds_the_same_index(
    three: dict[str, str], config_file: Path, runtime: Any
) -> None:
    def rows() -> list[tuple[int, int, int]]:
        with runtime.sessions() as s:
            query = select(SearchGram.gram, SearchGram.case_id, SearchGram.fields)
            return [tuple(r) for r in s.execute(query.order_by(*query.selected_columns))]

    kept = rows()
    assert kept
    for _ in range(2):
        result = CliRunner().invoke(main, ["search", "reindex", "--config", str(config_file)])
        assert result.exit_code == 0, result.output
        assert "3 cases indexed" in result.output
        assert rows() == kept
    with runtime.engine.begin() as conn:
        assert rebuild(conn)[0] == 3
    assert rows() == kept


def test_lists_page_to_the_end_by_cursor_and_by_number(runtime: Any, login_as: Any) -> None:
    with runtime.engine.begin() as conn:
        add_volume(conn, 130, months=2, now=datetime.now(UTC), seed=7)
    with runtime.sessions() as s:
        oldest = s.scalars(select(Case.tracking_number).order_by(Case.received_at).limit(30)).all()
        newest = s.scalars(
            select(Case.tracking_number).order_by(Case.received_at.desc()).limit(50)
        ).all()
        assert s.scalar(select(func.count()).select_from(Case)) == 130
    supervisor = login_as("supervisor")
    first = supervisor.get("/board/cases").get_data(as_text=True)
    assert re.findall(r'data-case="([^"]+)"', first) == list(newest)
    assert "1 / 3" in first
    last = supervisor.get("/board/cases", query_string={"page": "3"}).get_data(as_text=True)
    assert re.findall(r'data-case="([^"]+)"', last) == list(oldest)[::-1]
    assert re.findall(r'data-case="([^"]+)"', last) == re.findall(
        r'data-case="([^"]+)"',
        supervisor.get("/board/cases", query_string={"last": "1"}).get_data(as_text=True),
    )
    # Walking with the Next links visits every case once, newest first.
    seen: list[str] = []
    url: str | None = "/board/cases"
    while url:
        html = supervisor.get(url).get_data(as_text=True)
        seen += re.findall(r'data-case="([^"]+)"', html)
        m = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert len(seen) == 130 == len(set(seen))
    assert seen[-30:] == list(oldest)[::-1]
    # ... and back with Previous from the last page.
    html = supervisor.get("/board/cases", query_string={"last": "1"}).get_data(as_text=True)
    back = re.search(r'<a href="([^"]+)" rel="prev">', html).group(1).replace("&amp;", "&")
    middle = re.findall(r'data-case="([^"]+)"', supervisor.get(back).get_data(as_text=True))
    assert middle == seen[50:100]
    # A filter and search on the synthetic cases: every one found has the word.
    open_ = supervisor.get("/board/cases", query_string={"status": "closed"}).get_data(as_text=True)
    assert "status-closed" in open_
    with runtime.sessions() as s:
        closed = s.scalar(select(func.count()).where(Case.status == Status.CLOSED))
    assert f"({closed})" in open_


def test_a_phone_search_costs_what_its_six_digit_grams_hold(runtime: Any) -> None:
    """Six digits in a row are a gram of their own: a phone's search reads its six-digit
    postings, not its trigrams, which every phone and tracking number shares. Cases whose
    text holds every trigram of the phone (139 391 911 111 112 122 222, apart) are added,
    100 then 300: the search still finds the one caller, at the same cost. (Were the
    trigrams read, the cost would grow fourfold: seen 615 -> 2,415 postings on PostgreSQL,
    6,000 -> 22,300 steps on SQLite.)"""

    def case(n: int, body: str, phone: str) -> Case:
        return Case(
            tracking_number=f"MS-2026-{600000 + n:06d}",
            query_code_hash="x",
            channel="phone",
            external_id=f"digits-{n}",
            kind="complaint",
            status=Status.RECEIVED,
            subject="来电",
            body=body,
            contact_phone=phone,
            received_at=datetime(2026, 11, 2, tzinfo=UTC),
        )

    with runtime.sessions() as s, s.begin():
        s.add(case(0, "楼道灯坏了", "13911112222"))
    costs = []
    n = 1
    for more in (100, 300):
        with runtime.sessions() as s, s.begin():
            s.add_all(
                case(n + i, "编号 139 391 911 111 112 122 222，请回电", "") for i in range(more)
            )
        n += more
        with runtime.sessions() as s:
            if s.connection().dialect.name == "postgresql":
                s.execute(select(func.count()).select_from(Case))  # a transaction begun
                s.connection().exec_driver_sql("ANALYZE search_grams")
            with work_of(s) as cost:
                found = search_cases(s, "13911112222", masked=False)
            assert len(found.case_ids) == 1
            spaced = search_cases(s, "139 1111 2222", masked=False)
            assert spaced.case_ids == found.case_ids
            costs.append(cost[0])
    # PostgreSQL: postings read (seen: 9 both times); SQLite: steps, counted by the hundred.
    slack = 0 if runtime.engine.dialect.name == "postgresql" else 100
    assert costs[1] <= costs[0] + slack, costs
