"""Long department names in the dropdowns at a 1,024 px desktop (issue 10's review): each
queue row's dispatch selector grew as wide as the longest name, and the page scrolled
sideways (1,206 px; 1,426 px with names such as "Bureau of Housing and Urban-Rural
Development, Municipal Administration Division"). The selectors are capped now and a name
that does not fit is cut with an ellipsis, but it stays readable in full: the selector's
title is the name chosen (kept up to date as another is chosen) and each option's title its
own name. Checked on the queue, the case list's filters and the case page's dispatch form,
in English and in Chinese."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.browser.test_walkthrough import screenshot, sign_in
from triage.models import Case, Department, Status
from web.demo_volume import add_volume

pytestmark = pytest.mark.browser

LAPTOP = {"viewport": {"width": 1024, "height": 768}}

LONG_EN = [
    "Bureau of Housing and Urban-Rural Development, Municipal Administration Division",
    "Human Resources and Social Security Bureau, Labour Inspection and Arbitration Office",
    "Market Supervision and Administration Bureau, Food Safety Coordination Section",
    "Ecology and Environment Bureau, Pollution Prevention and Control Supervision Team",
    "Transport Bureau, Urban Public Passenger Transport and Taxi Management Division",
]
LONG_ZH = [
    "区住房和城乡建设局市政公用事业管理处城市道路桥梁设施养护管理科",
    "区人力资源和社会保障局劳动保障监察大队劳动人事争议仲裁院办公室",
    "区市场监督管理局食品安全协调处餐饮服务食品安全监督管理科",
]

# Each select whose chosen name, or any option's name, is not readable in full: the text
# wider than the box must be the select's (or the option's) title.
UNREADABLE = """() => [...document.querySelectorAll('main select')].flatMap(s => {
  const c = document.createElement('canvas').getContext('2d');
  c.font = getComputedStyle(s).font;
  const chosen = s.options[s.selectedIndex];
  const bad = [];
  if (chosen && c.measureText(chosen.text).width > s.clientWidth - 24 && s.title !== chosen.text)
    bad.push('select ' + (s.name || s.id) + ': ' + chosen.text + ' / title ' + s.title);
  for (const o of s.options)
    if (o.title !== o.text && c.measureText(o.text).width > s.clientWidth - 24)
      bad.push('option ' + o.text);
  return bad;
})"""


def _long_names(runtime: Any) -> None:
    with runtime.sessions() as s, s.begin():
        for i, d in enumerate(s.scalars(select(Department).order_by(Department.id))):
            d.name_en = f"{LONG_EN[i % len(LONG_EN)]} {i}"
            d.name = f"{LONG_ZH[i % len(LONG_ZH)]}{i}"


def _waiting(runtime: Any) -> str:
    with runtime.sessions() as s:
        return s.scalars(
            select(Case.tracking_number)
            .where(Case.status.in_([Status.RECEIVED, Status.TRIAGE]))
            .order_by(Case.id)
        ).first()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_long_department_names_fit_a_1024_px_screen_and_read_in_full(
    chromium: Any, live_server: str, runtime: Any, tmp_path: Path, lang: str
) -> None:
    from playwright.sync_api import expect

    with runtime.engine.begin() as conn:
        add_volume(conn, 60, months=1, seed=5, label_map=runtime.settings.label_map)
    _long_names(runtime)
    number = _waiting(runtime)
    page = chromium.new_context(**LAPTOP, base_url=live_server).new_page()
    sign_in(page, "supervisor")
    for path in (
        f"/board/queue?lang={lang}",
        "/board/cases?sort=received",
        "/board/cases?department=urban&sort=deadline",
        f"/board/cases/{number}",
    ):
        page.goto(path)
        expect(page.locator("main select").first).to_be_visible()
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 1024, (path, width)
        assert page.evaluate(UNREADABLE) == [], path
        screenshot(page, tmp_path / f"{lang}-{path.strip('/').split('?')[0].replace('/', '-')}.png")
    # A row's selector: its title follows the department chosen, whole.
    page.goto("/board/queue")
    row = page.locator("table.queue tbody tr[data-case]").first.locator("td.dispatch select")
    box = row.bounding_box()
    assert box is not None and box["width"] <= 260, box
    options = row.locator("option")
    last = options.nth(options.count() - 1)
    name = last.text_content() or ""
    row.select_option(last.get_attribute("value"))
    expect(row).to_have_attribute("title", name)
    assert (LONG_EN[0][:20] if lang == "en" else LONG_ZH[0][:6]) in row.evaluate(
        "s => [...s.options].map(o => o.title).join('|')"
    )
