"""The progress lookup as citizens type it: any harmless spelling of the tracking number
and the query code finds the case; a spelling that cannot be a number is a form error that
costs no attempt; the code is never written back into the page and no answer is cached."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.helpers import flashes, submit_complaint
from tests.integration.test_throttle import WRONG, lookup


def spellings_of(number: str) -> list[str]:
    prefix, year, serial = number.split("-")
    short = str(int(serial))
    return [
        f"{prefix}\u2010{year}\u2010{serial}",  # U+2010 hyphen, as word processors write it
        f"{prefix}\u2013{year}\u2014{serial}",  # en and em dash
        f"{prefix}{year}{serial}",
        f"{prefix}-{year}-{short}",
        f"{prefix.lower()} {year} {short}",
        f"{prefix}－{year}－{serial}",  # full-width hyphen-minus
        f"{prefix}\u2212{year}\u2212{serial}",  # minus sign
        f" {prefix} - {year} - {serial} ",
    ]


def test_harmless_spellings_find_the_case_and_cost_nothing(client: Any) -> None:
    number, code = submit_complaint(client, "小区健身广场的路灯坏了，晚上看不见台阶。")
    codes = [code, f"{code[:4]}-{code[4:]}", code.lower(), f"{code[:3]} {code[3:]}"]
    for spelling in spellings_of(number):
        for typed_code in codes:
            page = lookup(client, spelling, typed_code)
            assert page.status_code == 200, (spelling, typed_code, flashes(page.text))
            assert number in page.get_data(as_text=True)
    # None of those counted: five wrong codes are still judged before the lock.
    statuses = [lookup(client, number, WRONG).status_code for _ in range(6)]
    assert statuses == [404] * 5 + [429]


@pytest.mark.parametrize(
    "typed",
    [
        "MS-2026",
        "2026-000038",
        "AB-2026-000038",
        "MS-2026-0",
        "MS-26-000038",
        "路灯",
        "MS-2026-38x",
    ],
)
def test_what_cannot_be_a_number_is_a_form_error_that_costs_no_attempt(
    client: Any, typed: str
) -> None:
    number, _code = submit_complaint(client, "地铁站出口的盲道被共享单车挡住了。")
    for _ in range(8):
        page = lookup(client, typed, WRONG)
        assert page.status_code == 400
        assert "这不是受理编号" in page.get_data(as_text=True)
        assert not flashes(page.get_data(as_text=True)), "no warning, no lock"
    # The same address may still make its five real attempts.
    assert [lookup(client, number, WRONG).status_code for _ in range(6)] == [404] * 5 + [429]


def test_the_query_code_is_never_echoed_and_no_answer_is_cached(client: Any) -> None:
    number, code = submit_complaint(client, "楼道里的电动车充电线乱拉，很危险。")
    answers = {
        "form page": client.get("/track"),
        "form page with number": client.get(f"/track?number={number}"),
        "found": lookup(client, number, code),
        "form error": lookup(client, "not a number", code),
        "wrong code": lookup(client, number, WRONG),
    }
    for _ in range(5):
        lookup(client, number, WRONG)
    answers["locked"] = lookup(client, number, code)
    assert [a.status_code for a in answers.values()] == [200, 200, 200, 400, 404, 429]
    for what, answer in answers.items():
        assert answer.headers.get("Cache-Control") == "no-store", what
        html = answer.get_data(as_text=True)
        assert code not in html, what
        field = re.search(r'<input[^>]*name="query_code"[^>]*>', html).group(0)
        assert 'value=""' in field or "value=" not in field, (what, field)
