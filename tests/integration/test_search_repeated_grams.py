"""A query that repeats one gram (哈哈哈, 8888, 00000000) needs the whole query in the text: the
index alone answers only a query of exactly one gram (issue 10, red-team report 2). Search
results equal a plain substring scan over generated cases (both databases)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.helpers import submit_complaint
from triage.models import Case, Status
from triage.search import _PHONE_LIKE, case_search, query_phone, search_cases, search_terms


def _numbers(client: Any, q: str) -> list[str]:
    r = client.get("/board/cases", query_string={"q": q})
    assert r.status_code == 200
    return re.findall(r'data-case="([^"]+)"', r.get_data(as_text=True))


@pytest.mark.parametrize(
    "text,query",
    [
        ("楼下邻居每天半夜哈哈大笑，吵得无法入睡，请处理。", "哈哈哈"),
        ("明德路888号门口的路灯坏了三个星期，晚上一片漆黑。", "8888"),
        ("小区物业乱收停车费，一个车位每月涨到1000元。", "00000000"),
        ("幸福里6栋666室楼上天天装修，电钻声从早到晚。", "6666"),
    ],
)
def test_a_query_of_one_repeated_gram_needs_the_whole_query(
    client: Any, login_as: Any, text: str, query: str
) -> None:
    number, _ = submit_complaint(client, text, subject="投诉")
    supervisor = login_as("supervisor")
    assert query not in text
    assert _numbers(supervisor, query) == [], f"{query!r} found {number}, whose text lacks it"
    # The shorter run that the case holds still finds it.
    shorter = query[:2] if query[0] == "哈" else query[:3]
    assert number in _numbers(supervisor, shorter)


_ALPHABET = ["哈", "嘿", "路", "8", "0", "1", "a", "b", "A", " ", "，", "-"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(4, 30)))


def _in_phone(term: str, phone: str) -> bool:
    """A term of digits (spaced as it may be) found in the contact's phone."""
    digits = query_phone(term)
    return bool(_PHONE_LIKE.fullmatch(term)) and len(digits) >= 3 and digits in phone


def test_search_equals_a_substring_scan_over_generated_cases(runtime: Any) -> None:
    """Texts and queries drawn from a few characters, so that runs repeat (哈哈哈, 8888,
    000, aaa, mixed 8哈, a query longer than any text): what the search finds is what a
    substring scan of the text (any case) finds, and what the scan in SQL finds."""
    rng = random.Random(10)
    with runtime.sessions() as s, s.begin():
        texts: dict[int, str] = {}
        phones: dict[int, str] = {}
        for i in range(120):
            case = Case(
                tracking_number=f"MS-2026-{900000 + i:06d}",
                query_code_hash="x",
                channel="web",
                external_id=f"generated-{i}",
                kind="complaint",
                status=Status.CLOSED,
                subject=_text(rng),
                body=_text(rng),
                received_at=datetime(2026, 11, 2, 1, 0, tzinfo=UTC),
                contact_phone="".join(rng.choice("0188") for _ in range(rng.randint(0, 11))),
            )
            s.add(case)
            s.flush()
            texts[case.id] = f"{case.tracking_number}\n{case.subject}\n{case.body}".lower()
            phones[case.id] = case.contact_phone
    queries = {"哈哈", "哈哈哈", "哈哈哈哈", "888", "8888", "000", "0000", "00000000", "aaa"}
    queries |= {"aaaa", "AAA", "8哈", "8哈哈", "a8a", "哈路哈", "2026", "a 哈哈", "哈哈 888"}
    queries |= {"18", "188", "881", "1881", "18 81", "888 1", "0-18"}
    # Six digits in a row and more (a gram of their own, migration 0034): slices of the
    # phones, typed spaced and dashed too, and tracking numbers' digits.
    long_phones = sorted(p for p in phones.values() if len(p) >= 8)
    for phone in long_phones[:6]:
        queries |= {
            phone,
            phone[1:7],
            phone[-6:],
            f"{phone[:3]} {phone[3:]}",
            f"{phone[:4]}-{phone[4:]}",
        }
    queries |= {"900012", "2026-900012", "ms-2026-90001", "0000000", "18818818"}
    while len(queries) < 110:
        queries.add("".join(rng.choice(_ALPHABET[:9]) for _ in range(rng.randint(2, 9))))
    with runtime.sessions() as s:
        for q in sorted(queries):
            terms = [t.lower() for t in search_terms(q)]
            expected = {
                i
                for i, text in texts.items()
                if all(t in text or _in_phone(t, phones[i]) for t in terms)
            }
            found = set(search_cases(s, q, masked=False).case_ids)
            scanned = set(
                s.scalars(select(Case.id).where(Case.id.in_(texts), case_search(q, masked=False)))
            )
            assert scanned == expected, q
            assert found == expected, (q, sorted(found - expected), sorted(expected - found))
