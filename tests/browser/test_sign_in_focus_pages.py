"""Signing in with the keyboard alone in Chromium (issue #9, a red-team tester's fault): an
operator whose session ended opens the desk, lands on the sign-in page and types at once:
the username, Tab, the password, Enter, and the desk has the focus on its phone field. After
a wrong password the typing goes to the password field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.test_walkthrough import DESKTOP
from tests.conftest import password_of

pytestmark = pytest.mark.browser


def test_the_desk_is_reached_from_the_sign_in_page_with_the_keyboard_alone(
    chromium: Any, live_server: str
) -> None:
    from playwright.sync_api import expect

    page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    page.goto("/board/calls/new")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.locator("input[name=username]")).to_be_focused()
    page.keyboard.type("operator")
    page.keyboard.press("Tab")
    page.keyboard.type("not-the-password")
    page.keyboard.press("Enter")
    expect(page.locator("input[name=password]")).to_be_focused()
    expect(page.locator("input[name=username]")).to_have_value("operator")
    page.keyboard.type(password_of("operator"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/board/calls/new$"))
    expect(page.locator("input[name=phone]")).to_be_focused()
