"""The operators' desk in Chromium, with the keyboard alone: a new caller's call is logged
in a few keystrokes, and a known caller's earlier case appears as the number is typed and a
repeat call is added to it (催办) instead of opening a new case."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.browser.test_walkthrough import DESKTOP, screenshot, sign_in
from triage.models import Case

pytestmark = pytest.mark.browser


def _count(runtime: Any) -> int:
    with runtime.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Case)))


def test_a_call_is_logged_with_the_keyboard_alone(
    chromium: Any, live_server: str, runtime: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(page, "operator")
    expect(page).to_have_url(re.compile(r"/board/calls/new$"))
    started = time.monotonic()
    expect(page.locator("input[name=phone]")).to_be_focused()
    page.keyboard.type("139 0000 2222")
    page.keyboard.press("Enter")  # looks the number up, then on to the name
    expect(page.locator("input[name=name]")).to_be_focused()
    expect(page.locator("#caller-history")).to_be_hidden()
    page.keyboard.type("李女士")
    page.keyboard.press("Tab")  # kind: a complaint, as it stands
    page.keyboard.press("Tab")
    page.keyboard.type("井盖缺失")
    page.keyboard.press("Tab")
    page.keyboard.type("幸福路口的井盖丢了，晚上很危险")
    page.keyboard.press("Tab")
    page.keyboard.type("幸福路与人民路路口")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # the caller wants a call back
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/board/cases/MS-\d{4}-\d{6}$"))
    assert time.monotonic() - started < 60
    expect(page.locator("#case-place")).to_have_text("幸福路与人民路路口")
    expect(page.locator(".timeline")).to_contain_text("来电人要求回电")
    first = page.url.rsplit("/", 1)[-1]

    # The same caller again, the number typed another way: the open case shows up.
    page.goto("/board/calls/new")
    before = _count(runtime)
    page.keyboard.type("+86 139-0000-2222")
    earlier = page.locator(f"#history-cases .earlier-case[data-number='{first}']")
    expect(earlier).to_be_visible()
    expect(page.locator("#history-count")).to_contain_text("1")
    screenshot(page, tmp_path / "desk.png")
    page.keyboard.press("Enter")  # to the answers: none chosen, as the caller has an open case
    expect(page.locator("input[name=about][value=new]")).to_be_focused()
    expect(page.locator("input[name=about]:checked")).to_have_count(0)
    page.keyboard.press("ArrowDown")  # the repeat call about the open case
    expect(page.locator(f"input[name=about][value='urge:{first}']")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.locator("input[name=name]")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.type("催办井盖")
    page.keyboard.press("Tab")
    page.keyboard.type("井盖还没有补上")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(re.compile(rf"/board/cases/{first}$"))
    expect(page.locator("#urge-count")).to_contain_text("1")
    expect(page.locator(".timeline")).to_contain_text("井盖还没有补上")
    assert _count(runtime) == before


def test_the_public_form_marks_required_fields_and_takes_a_place(
    chromium: Any, live_server: str, runtime: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from tests.browser.test_walkthrough import PHONE

    page = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    page.goto("/complain")
    expect(page.locator("#required-legend")).to_contain_text("必填")
    subject_label = page.locator("label[for=subject]")
    mark = subject_label.evaluate("l => getComputedStyle(l, '::after').content")
    assert "*" in mark
    place_label = page.locator("label[for=place]")
    assert "*" not in place_label.evaluate("l => getComputedStyle(l, '::after').content")
    expect(page.locator("#subject")).to_have_attribute("aria-required", "true")
    page.fill("#subject", "井盖缺失")
    page.fill("#body", "幸福路口的井盖丢了，晚上很危险")
    page.fill("#place", "幸福路与人民路路口")
    screenshot(page, tmp_path / "complain.png")
    page.click("main form button[type=submit]")
    expect(page.locator("#tracking-number")).to_be_visible()
    number = page.locator("#tracking-number").inner_text()
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        assert case.place == "幸福路与人民路路口"


def test_a_call_logged_while_the_lookup_fails_is_asked_about_the_open_case(
    chromium: Any, live_server: str, runtime: Any
) -> None:
    from playwright.sync_api import expect

    page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(page, "operator")
    page.keyboard.type("139 0000 3333")
    page.keyboard.press("Enter")
    expect(page.locator("input[name=name]")).to_be_focused()
    for text in ("王先生", None, "路灯不亮", "人民路路灯不亮三天了"):
        if text:
            page.keyboard.type(text)
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/board/cases/MS-\d{4}-\d{6}$"))
    first = page.url.rsplit("/", 1)[-1]

    # The lookup fails (refused, or the network): the earlier case never shows, yet logging
    # the call does not open a second case but shows the open one and asks.
    page.route("**/board/calls/history*", lambda route: route.abort())
    page.goto("/board/calls/new")
    before = _count(runtime)
    page.keyboard.type("13900003333")
    page.keyboard.press("Enter")
    expect(page.locator("input[name=name]")).to_be_focused()
    expect(page.locator("#lookup-button")).to_be_visible()
    for text in ("王先生", None, "路灯还是不亮", "第二次来电，路灯还是不亮"):
        if text:
            page.keyboard.type(text)
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator(f"#history-cases .earlier-case[data-number='{first}']")).to_be_visible(
        timeout=15000
    )
    expect(page.locator("#caller-history")).to_be_enabled()
    assert _count(runtime) == before


def test_an_anonymous_call_is_logged_with_the_keyboard_alone(
    chromium: Any, live_server: str, runtime: Any, tmp_path: Path
) -> None:
    """A caller who gives no number: Tab from the number to 'anonymous caller', Space, and
    the call is logged as a new case without a number; the case page says 匿名来电, and the
    desk offered no call-back."""
    from playwright.sync_api import expect

    page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(page, "operator")
    expect(page.locator("input[name=phone]")).to_be_focused()
    before = _count(runtime)
    page.keyboard.press("Tab")
    expect(page.locator("input[name=anonymous]")).to_be_focused()
    expect(page.locator("#anonymous-choice")).to_contain_text("匿名来电")
    page.keyboard.press("Space")
    expect(page.locator("input[name=phone]")).to_be_disabled()
    expect(page.locator("input[name=callback]")).to_be_disabled()
    page.keyboard.press("Tab")
    expect(page.locator("input[name=name]")).to_be_focused()
    page.keyboard.press("Tab")  # kind: a complaint
    page.keyboard.press("Tab")
    page.keyboard.type("夜间施工噪音")
    page.keyboard.press("Tab")
    page.keyboard.type("和平路工地每晚十一点后还在打桩")
    page.keyboard.press("Tab")
    page.keyboard.type("和平路")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/board/cases/MS-\d{4}-\d{6}$"))
    assert _count(runtime) == before + 1
    expect(page.locator("#case-contact")).to_contain_text("匿名来电")
    expect(page.locator(".timeline")).to_contain_text("匿名来电")
    expect(page.locator(".timeline")).not_to_contain_text("来电人要求回电")
    screenshot(page, tmp_path / "desk-anonymous.png")


def test_the_call_time_follows_the_clock_until_the_operator_types_it(
    chromium: Any, live_server: str, runtime: Any
) -> None:
    """A desk opened long before the call: the call time it filled in moves on with the
    clock (the operator sees the time the call is logged at); typed over, it stays."""
    from playwright.sync_api import expect

    page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(page, "operator")
    page.clock.install()
    page.goto("/board/calls/new")
    called_at = page.locator("input[name=called_at]")
    filled = called_at.input_value()
    page.clock.fast_forward("02:00:00")
    page.clock.run_for(20_000)
    later = called_at.input_value()
    assert later > filled and int(later[11:13]) % 24 == (int(filled[11:13]) + 2) % 24, later
    called_at.fill("2026-01-05T08:30")
    page.clock.run_for(20_000)
    expect(called_at).to_have_value("2026-01-05T08:30")


def test_enter_on_a_known_callers_call_does_not_open_a_new_case_unasked(
    chromium: Any, live_server: str, runtime: Any
) -> None:
    """The caller has an open case and it shows as the number is typed: no answer is chosen
    for the operator, so Enter (from any field) does not register a repeat call as a new
    case; the desk asks, and the repeat call is one arrow key away."""
    from playwright.sync_api import expect

    page = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(page, "operator")
    page.keyboard.type("139 0000 4444")
    page.keyboard.press("Enter")
    expect(page.locator("input[name=name]")).to_be_focused()
    for text in ("赵先生", None, "垃圾未清运", "小区垃圾三天没有清运"):
        if text:
            page.keyboard.type(text)
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/board/cases/MS-\d{4}-\d{6}$"))
    first = page.url.rsplit("/", 1)[-1]

    page.goto("/board/calls/new")
    before = _count(runtime)
    page.keyboard.type("13900004444")
    expect(page.locator(f"#history-cases .earlier-case[data-number='{first}']")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("input[name=about]:checked")).to_have_count(0)
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(page.locator("input[name=subject]")).to_be_focused()
    page.keyboard.type("还是没有清运")
    page.keyboard.press("Tab")
    page.keyboard.type("第二次来电，垃圾还是没有清运")
    page.keyboard.press("Control+Enter")
    expect(page.locator("p.flash.warning")).to_contain_text("该来电人有未办结的工单")
    expect(page.locator(f"input[name=about][value='urge:{first}']")).to_be_visible()
    assert _count(runtime) == before
