"""A handler's board home on a phone (390 px) and a desktop (1,024 px) in Chromium, with
dozens of their department's cases needing attention (review of issue 10): the attention
section is compact (a few cards and "show all N"), so the handler's own open cases by
deadline start within the first two screen heights; no card shows an empty subject; the
overdue marker does not squeeze its row; the page is no wider than the screen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from tests.browser.test_walkthrough import screenshot, sign_in
from triage.models import Case, Department, Status

pytestmark = pytest.mark.browser

ATTENTION = 38


@pytest.fixture
def busy_handler(app: Any) -> str:
    """The urban handler's department: 38 open cases overdue or at risk (every fourth with
    no subject), 12 open cases on time; returns the handler's username."""
    runtime = app.extensions["minsheng"]
    with runtime.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for i in range(ATTENTION + 12):
        risk = ("overdue" if i % 2 else "at_risk") if i < ATTENTION else ""
        due = now + timedelta(days=(-3 if risk == "overdue" else 1 if risk else 5), hours=i)
        rows.append(
            {
                "tracking_number": f"H-{i:06d}",
                "query_code_hash": "x",
                "channel": "phone",
                "external_id": f"h-{i}",
                "kind": "complaint",
                "status": Status.IN_PROGRESS,
                "subject": "" if i % 4 == 0 else f"第{i}件 井盖缺失",
                "body": f"第{i}件：人民路口井盖缺失，夜里有人摔倒，请尽快处理。",
                "received_at": now - timedelta(days=10, hours=i),
                "created_at": now - timedelta(days=10),
                "department_id": urban,
                "due_at": due,
                "triage_due_at": now - timedelta(days=9),
                "risk": risk,
            }
        )
    with runtime.sessions() as s, s.begin():
        s.execute(insert(Case.__table__), rows)
    return "urban"


FIRST_ROW = """() => {
  const row = document.querySelector('table.case-list tbody tr[data-case]');
  return row.getBoundingClientRect().top + scrollY;
}"""
SHOWN_ROWS = """() => [...document.querySelectorAll('#attention tr[data-case]')]
  .filter(r => r.getBoundingClientRect().height > 0).length"""
SUBJECTS = """() => [...document.querySelectorAll('#attention td.subject')]
  .map(td => td.textContent.trim())"""
# Each visible card's marker edges the card, not a cell squeezed beside it: the first cell
# has no border of its own and is as wide as the card's line allows.
MARKERS = """() => [...document.querySelectorAll('table.cases tr.risk-overdue')]
  .filter(r => r.getBoundingClientRect().height > 0)
  .map(r => [getComputedStyle(r).borderLeftWidth,
             getComputedStyle(r.cells[0]).borderLeftWidth])"""


@pytest.mark.parametrize(("width", "height", "shown"), [(390, 844, 3), (1024, 768, 8)])
def test_a_busy_handlers_home_shows_their_list_within_two_screens(
    chromium: Any, live_server: str, busy_handler: str, tmp_path: Path,
    width: int, height: int, shown: int,
) -> None:  # fmt: skip
    errors: list[str] = []
    context = chromium.new_context(
        viewport={"width": width, "height": height}, locale="zh-CN", base_url=live_server
    )
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, busy_handler)
    page.goto("/board/")
    assert page.locator("#attention h2 small").inner_text() == f"({ATTENTION})"
    assert page.evaluate(SHOWN_ROWS) == shown
    # The handler's own open cases by deadline start within the first two screens.
    assert page.evaluate(FIRST_ROW) < 2 * height, page.evaluate(FIRST_ROW)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    subjects = page.evaluate(SUBJECTS)
    assert len(subjects) == ATTENTION and all(subjects), subjects
    # A case with no subject shows the first words of its text instead.
    first_words = page.locator('#attention tr[data-case="H-000000"] td.subject').text_content()
    assert first_words.strip().startswith("第0件：人民路口井盖缺失"), first_words
    screenshot(page, tmp_path / f"handler-home-{width}.png")
    if width < 760:
        markers = page.evaluate(MARKERS)
        assert markers and all(m == ["4px", "0px"] for m in markers), markers

    page.locator("#attention a.attention-all").click()
    assert page.evaluate(SHOWN_ROWS) == ATTENTION
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert not page.locator("#attention a.attention-all").is_visible()
    page.locator("#attention a.attention-fewer").click()
    assert page.evaluate(SHOWN_ROWS) == shown
    assert page.locator("#attention a.attention-all").inner_text() == f"显示全部 {ATTENTION} 件"

    page.goto("/board/cases?lang=en")
    assert page.locator("#attention a.attention-all").inner_text() == f"Show all {ATTENTION}"
    assert "(no subject)" not in page.locator("#attention").inner_text()
    context.close()
    assert errors == [], errors


def test_on_a_phone_the_filters_fold_away_under_a_summary_of_them(
    chromium: Any, live_server: str, busy_handler: str
) -> None:
    """The case list's filters took some 400 px above the cases on a phone: folded there under
    "筛选与搜索 (N)", N the filters chosen; a tap unfolds them; a desktop always shows them."""
    for width, height in ((390, 844), (1024, 768)):
        context = chromium.new_context(
            viewport={"width": width, "height": height}, locale="zh-CN", base_url=live_server
        )
        page = context.new_page()
        sign_in(page, busy_handler)
        page.goto("/board/cases?status=open&sort=deadline&kind=complaint")
        summary = page.locator("#filters-box > summary")
        form = page.locator("form.filters")
        if width < 760:
            assert summary.inner_text() == "筛选与搜索 (2)"  # status and kind
            assert not form.is_visible()
            assert page.evaluate(FIRST_ROW) < 2 * height, page.evaluate(FIRST_ROW)
            summary.click()
            assert form.is_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.locator('form.filters input[name="overdue"]').check()
            page.locator("form.filters button[type=submit]").click()
            page.wait_for_url(lambda url: "overdue=1" in url)
            assert page.locator("#filters-box > summary").inner_text() == "筛选与搜索 (3)"
        else:
            assert not summary.is_visible() and form.is_visible()
        context.close()
