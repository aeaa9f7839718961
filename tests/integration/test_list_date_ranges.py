"""A date range typed backwards on the case list (the two boxes mixed up, easy with a phone's
date pickers) lists the cases between the two dates and says it read them so, instead of an
empty list. Both databases."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.integration.helpers import submit_complaint


def _listed(html: str) -> list[str]:
    table = re.search(r'<table class="cases case-list">(.*?)</table>', html, re.S)
    return re.findall(r'data-case="([^"]+)"', table.group(1)) if table else []


def test_a_received_range_typed_backwards_lists_the_cases_between(
    client: Any, login_as: Any
) -> None:
    number, _ = submit_complaint(client, "明德路12号路灯不亮，晚上很黑。")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    later = (today + timedelta(days=1)).isoformat()
    earlier = (today - timedelta(days=1)).isoformat()
    supervisor = login_as("supervisor")
    right = supervisor.get(
        "/board/cases", query_string={"received_from": earlier, "received_to": later}
    ).get_data(as_text=True)
    assert _listed(right) == [number] and 'id="dates-swapped"' not in right
    html = supervisor.get(
        "/board/cases", query_string={"received_from": later, "received_to": earlier}
    ).get_data(as_text=True)
    assert _listed(html) == [number]
    assert "受理日期的起止填反了" in html
    # The form shows the range as read.
    assert f'name="received_from" value="{earlier}"' in html
    assert f'name="received_to" value="{later}"' in html


def test_a_due_range_typed_backwards_is_read_both_ways_in_english(
    client: Any, login_as: Any
) -> None:
    submit_complaint(client, "明德路12号路灯不亮，晚上很黑。")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    html = (
        login_as("supervisor")
        .get(
            "/board/cases",
            query_string={
                "due_from": (today + timedelta(days=60)).isoformat(),
                "due_to": (today - timedelta(days=60)).isoformat(),
                "lang": "en",
            },
        )
        .get_data(as_text=True)
    )
    assert "The due dates were the wrong way round" in html
    assert len(_listed(html)) == 1
