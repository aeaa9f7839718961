"""The admin pages as an English-speaking administrator sees them on a 1,024 px screen: no
header or status of the departments' table broken in the middle of a word, no Chinese list
punctuation in English, and the password field usable only when a password is to be set."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.test_walkthrough import sign_in

pytestmark = pytest.mark.browser

WIDTH_1024 = {"viewport": {"width": 1024, "height": 800}}

# The words of the cells of `selector` whose letters do not all stand on one line: a word
# broken across two lines ("Stat" / "e").
SPLIT_WORDS = """(selector) => {
  const split = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const words = /\\S+/g;
      let m;
      while ((m = words.exec(node.textContent))) {
        const tops = new Set();
        for (let i = m.index; i < m.index + m[0].length; i++) {
          const range = document.createRange();
          range.setStart(node, i);
          range.setEnd(node, i + 1);
          const rects = range.getClientRects();
          if (rects.length) tops.add(Math.round(rects[0].top));
        }
        if (tops.size > 1) split.push(m[0]);
      }
    }
  }
  return split;
}"""

# Cells of `selector` whose text takes more than one line.
TALL_CELLS = """(selector) => [...document.querySelectorAll(selector)].filter((cell) => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
  return tops.size > 1;
}).map((cell) => cell.textContent.trim())"""


def _english_admin(chromium: Any, live_server: str) -> Any:
    page = chromium.new_context(**WIDTH_1024, locale="en-US", base_url=live_server).new_page()
    sign_in(page, "admin")
    page.goto("/lang/en?next=/admin/departments")
    return page


def test_departments_table_breaks_no_word_at_1024_px(chromium: Any, live_server: str) -> None:
    from playwright.sync_api import expect

    page = _english_admin(chromium, live_server)
    expect(page.locator("h1")).to_have_text("Departments and commitments")
    # An inactive department: its state is the longer word.
    page.goto("/admin/departments/education")
    page.uncheck("#active")
    page.select_option("#successor", "urban")
    page.click("#department-form button[type=submit]")
    page.goto("/admin/departments")
    expect(page.locator("#departments tr[data-department='education']")).to_contain_text("Inactive")
    assert page.evaluate(SPLIT_WORDS, "#departments th, #departments td") == []
    assert page.evaluate(TALL_CELLS, "#departments th") == []
    assert page.evaluate(TALL_CELLS, "#departments td:nth-child(3)") == []
    assert page.evaluate(TALL_CELLS, "#departments td:nth-child(1)") == []
    # No Chinese enumeration comma or colon in the English page.
    text = page.inner_text("#departments")
    assert "、" not in text and "：" not in text
    assert page.evaluate("document.documentElement.scrollWidth") <= 1024


def test_password_field_only_when_a_password_is_set(chromium: Any, live_server: str) -> None:
    from playwright.sync_api import expect

    page = _english_admin(chromium, live_server)
    page.goto("/admin/users/new")
    password = page.locator("#password")
    expect(password).to_be_disabled()
    page.check("input[name=password_mode][value=set]")
    expect(password).to_be_enabled()
    page.fill("#password", "asdfghjkl;")
    page.fill("#username", "lin.tao")
    page.select_option("#role", "supervisor")
    page.click("#new-user-form button[type=submit]")
    expect(page.locator("main")).to_contain_text("run of neighbouring keys")
    page.check("input[name=password_mode][value=generate]")
    expect(password).to_be_disabled()
    expect(password).to_have_value("")
