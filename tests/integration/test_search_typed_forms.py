"""Queries as people type them: a mobile number with its country code, dashes of any kind,
full-width characters, a tab or line break pasted into the box; and a language chosen by a
link staying chosen."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.helpers import submit_complaint

PHONE = "13911112222"


def _numbers(client: Any, q: str) -> list[str]:
    r = client.get("/board/cases", query_string={"q": q})
    assert r.status_code == 200, (q, r.status_code)
    return re.findall(r'data-case="([^"]+)"', r.get_data(as_text=True))


@pytest.fixture
def cases(client: Any) -> tuple[str, str]:
    mine, _ = submit_complaint(client, "楼下饭店每天深夜噪音扰民", name="张伟", phone=PHONE)
    other, _ = submit_complaint(client, "明德路路灯坏了三个星期", name="李娜", phone="13911112223")
    return mine, other


@pytest.mark.parametrize(
    "q",
    [
        "+8613911112222",
        "8613911112222",
        "008613911112222",
        "0086 139 1111 2222",
        "+86 139-1111-2222",
        "(+86) 139 1111 2222",
        "＋８６１３９１１１１２２２２",
        "１３９－１１１１－２２２２",
        "139–1111–2222",
        "139—1111—2222",
        "139‑1111‑2222",
        "139.1111.2222",
        "139\t1111\t2222",
    ],
)
def test_staff_find_a_mobile_however_it_is_written(
    cases: tuple[str, str], login_as: Any, q: str
) -> None:
    mine, _ = cases
    assert _numbers(login_as("supervisor"), q) == [mine]
    assert _numbers(login_as("observer"), q) == []


def test_a_pasted_tab_or_line_break_is_a_space(cases: tuple[str, str], login_as: Any) -> None:
    mine, other = cases
    supervisor = login_as("supervisor")
    assert _numbers(supervisor, "噪音\t扰民") == [mine]
    assert _numbers(supervisor, "路灯\r\n坏了\n") == [other]
    r = supervisor.get("/board/cases", query_string={"q": "噪音\x00"})
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert "控制字符" in page and "“q”" in page


def test_a_language_chosen_by_link_stays_until_switched(login_as: Any) -> None:
    supervisor = login_as("supervisor")
    english = supervisor.get("/board/queue?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in english
    # The page's links carry no lang: the next page is still in English.
    assert '<html lang="en">' in supervisor.get("/board/cases?status=open").get_data(as_text=True)
    # The switch to Chinese from a page whose address holds lang=en takes effect there.
    r = supervisor.get("/lang/zh", query_string={"next": "/board/cases?lang=en&status=open"})
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/board/cases?status=open")
    assert '<html lang="zh-CN">' in supervisor.get(r.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize(
    "target",
    ["/\\evil.example", "/\t/evil.example", "//evil.example", "https://evil.example/x"],
)
def test_the_language_switch_never_leads_to_another_site(client: Any, target: str) -> None:
    r = client.get("/lang/en", query_string={"next": target})
    assert r.status_code == 302 and r.headers["Location"] in ("/", "http://localhost/")


@pytest.mark.parametrize(
    "q", ['"噪音"', "“噪音”", "「噪音扰民」", "‘噪音’", '"噪音 扰民"', "'噪音'"]
)
def test_quotation_marks_round_a_phrase_find_what_its_words_find(
    cases: tuple[str, str], login_as: Any, q: str
) -> None:
    mine, _ = cases
    for user in ("supervisor", "observer"):
        assert _numbers(login_as(user), q) == [mine], (user, q)


@pytest.mark.parametrize(
    ("phone", "queries"),
    [
        ("010-8765 4321", ["+86 10 8765 4321", "0086 10 8765 4321", "(010) 8765-4321"]),
        ("+852 9123 4567", ["00852 9123 4567", "+852 9123 4567", "852 9123 4567"]),
    ],
)
def test_staff_find_a_landline_or_foreign_number_typed_in_international_form(
    client: Any, login_as: Any, phone: str, queries: list[str]
) -> None:
    number, _ = submit_complaint(client, "小区门口的路灯坏了一个月", name="赵敏", phone=phone)
    supervisor, observer = login_as("supervisor"), login_as("observer")
    for q in queries:
        assert _numbers(supervisor, q) == [number], q
        assert _numbers(observer, q) == [], q
