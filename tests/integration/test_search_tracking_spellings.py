"""The search box finds a case by its tracking number however a citizen reads it out or types
it, as /track and Open311 do (`normalise_tracking_number`); the start of a padded number is
still searched as text. Both databases."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.helpers import submit_complaint


def _found(client: Any, q: str) -> list[str]:
    r = client.get("/board/cases", query_string={"q": q})
    assert r.status_code == 200, (q, r.status_code)
    table = re.search(
        r'<table class="cases case-list">(.*?)</table>', r.get_data(as_text=True), re.S
    )
    return re.findall(r'data-case="([^"]+)"', table.group(1)) if table else []


def test_staff_find_a_case_by_its_number_as_a_citizen_spells_it(client: Any, login_as: Any) -> None:
    number, _ = submit_complaint(client, "明德路12号路灯不亮，晚上很黑。")
    other, _ = submit_complaint(client, "幸福小区门口井盖松动")
    prefix, year, serial = number.split("-")
    for role in ("supervisor", "operator"):
        staff = login_as(role)
        assert _found(staff, number) == [number]
        for spelling in (
            f"{prefix}{year}{serial}",
            f"{prefix.lower()}{year}{serial}",
            f"{prefix} {year} {serial}",
            f"{prefix}-{year}-{int(serial)}",
            f"{prefix}－{year}－{serial}",
            f"ＭＳ{year}{serial}",
        ):
            assert _found(staff, spelling) == [number], (role, spelling)
    assert other not in _found(login_as("supervisor"), f"{prefix}{year}{serial}")


def test_the_start_of_a_padded_number_still_finds_every_number_it_begins(
    client: Any, login_as: Any
) -> None:
    numbers = [submit_complaint(client, f"第{i}件：楼道灯坏了")[0] for i in range(3)]
    prefix, year, serial = numbers[0].split("-")
    start = f"{prefix}-{year}-{serial[:4]}"
    found = _found(login_as("supervisor"), start)
    assert set(numbers) <= set(found), (start, found)


def test_an_observer_finds_a_case_by_its_number_however_spelt(client: Any, login_as: Any) -> None:
    number, _ = submit_complaint(client, "明德路12号路灯不亮，晚上很黑。")
    prefix, year, serial = number.split("-")
    observer = login_as("observer")
    assert _found(observer, f"{prefix.lower()} {year} {int(serial)}") == [number]
