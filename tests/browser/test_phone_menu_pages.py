"""The staff menu on a 360 px phone, in Chromium, in Chinese and English: folded behind a
"Menu" button to one line above the content (it took five lines: 174 px), unfolded
with the keyboard or a tap to every link, closed again with Escape; whole without
JavaScript; unchanged on a 1280 px desktop, where the button is not shown; a citizen's
short menu is not folded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import screenshot, sign_in

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
HEADER_HEIGHT = "document.querySelector('header.top').getBoundingClientRect().height"
CONTENT_TOP = "document.querySelector('main h1').getBoundingClientRect().top"


def test_the_staff_menu_folds_on_a_phone(chromium: Any, live_server: str, tmp_path: Path) -> None:
    errors: list[str] = []
    for lang, label in (("zh", "菜单"), ("en", "Menu")):
        page = chromium.new_context(**PHONE, base_url=live_server).new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        sign_in(page, "supervisor")
        page.goto(f"/board/cases?lang={lang}")
        button = page.locator("#menu-toggle")
        assert button.is_visible() and button.inner_text().strip() == label
        assert button.get_attribute("aria-expanded") == "false"
        # Folded: one line of header, the page's heading right under it.
        folded = page.evaluate(HEADER_HEIGHT)
        assert folded <= 56, folded
        assert page.evaluate(CONTENT_TOP) <= 90, page.evaluate(CONTENT_TOP)
        assert not page.locator("#nav-dashboard").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 360

        # Opened from the keyboard: every link shows, the button says so.
        button.focus()
        page.keyboard.press("Enter")
        assert button.get_attribute("aria-expanded") == "true"
        opened = page.evaluate(HEADER_HEIGHT)
        assert opened > folded + 150, (folded, opened)
        for selector in ("#nav-dashboard", "#nav-kanban", "header .who", "header .lang a"):
            assert page.locator(selector).is_visible(), selector
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        # Tab goes from the button into the menu's links.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('nav') !== null")
        if lang == "zh":
            screenshot(page, tmp_path / "menu-open.png")
        # Escape folds it again and gives the focus back to the button.
        page.keyboard.press("Escape")
        assert button.get_attribute("aria-expanded") == "false"
        assert page.evaluate("document.activeElement.id") == "menu-toggle"
        assert page.evaluate(HEADER_HEIGHT) == folded

        # A tap opens it; a link in it goes where it says.
        button.click()
        page.click("#nav-dashboard")
        page.wait_for_url(re.compile(r"/board/dashboard$"))
        assert page.locator("#menu-toggle").get_attribute("aria-expanded") == "false"
        # Signed out, the citizen's menu (three links) is not folded.
        page.click("#menu-toggle")
        page.click("header form button.link")
        page.wait_for_url(re.compile(r"/$|/login"))
        page.goto("/")
        assert page.locator("#menu-toggle").count() == 0
        assert page.locator("header a[href='/track']").is_visible()
        page.context.close()
    assert errors == [], errors


def test_without_javascript_the_phone_shows_the_whole_menu(chromium: Any, live_server: str) -> None:
    page = chromium.new_context(**PHONE, java_script_enabled=False, base_url=live_server).new_page()
    sign_in(page, "supervisor")
    page.goto("/board/cases")
    # The button is there but not shown: it would do nothing without the script.
    assert page.locator("#menu-toggle").count() == 1
    assert not page.locator("#menu-toggle").is_visible()
    for selector in ("#nav-dashboard", "#nav-kanban", "header .lang a"):
        assert page.locator(selector).is_visible(), selector
    page.context.close()


def test_the_desktop_menu_is_unchanged(chromium: Any, live_server: str) -> None:
    """At 1280 px the header is the same with the script as without it: no button, every
    link on show."""
    heights = []
    for scripts in (True, False):
        page = chromium.new_context(
            **DESKTOP, java_script_enabled=scripts, base_url=live_server
        ).new_page()
        sign_in(page, "supervisor")
        page.goto("/board/cases")
        assert page.locator("#menu-toggle").count() == 1
        assert not page.locator("#menu-toggle").is_visible()
        assert page.locator("#nav-dashboard").is_visible()
        assert page.locator("header .who").is_visible()
        heights.append(page.evaluate(HEADER_HEIGHT))
        page.context.close()
    assert heights[0] == heights[1], heights
