"""The smaller gaps of the board closed, in Chromium: closing from the kanban asks first and
is answered with the keyboard alone; the staff list of a city (5,000 accounts) is searched
and paged; deactivating a department says what it carries and hands it over; the outbox
page lists text messages with their retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in
from tests.conftest import login
from tests.integration.helpers import post_form, submit_complaint
from tests.integration.test_admin_scale import _many_users
from triage.models import Case, Department, Status, User

pytestmark = pytest.mark.browser


def _visited_case(app: Any) -> str:
    """A case replied by urban and given a satisfied return visit, made through the pages."""
    client = app.test_client()
    number, _code = submit_complaint(client, "和平路施工噪音扰民，深夜还在打桩。", "施工噪音")
    runtime = app.extensions["minsheng"]
    with runtime.sessions() as s:
        case_id = s.scalar(select(Case.id).where(Case.tracking_number == number))
    supervisor = login(app.test_client(), "supervisor")
    post_form(
        supervisor,
        "/board/queue",
        f"/board/cases/{number}/assign",
        {f"c{case_id}-department": "urban", "back": "queue"},
    )
    post_form(
        login(app.test_client(), "urban"),
        f"/board/cases/{number}",
        f"/board/cases/{number}/reply",
        {"reply-text": "已责令施工单位夜间停工。"},
    )
    post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/visit",
        {"visit-reached": "yes", "visit-solved": "yes", "visit-satisfaction": "satisfied"},
    )
    return number


def _status(app: Any, number: str) -> str:
    with app.extensions["minsheng"].sessions() as s:
        return str(s.scalar(select(Case.status).where(Case.tracking_number == number)))


def test_closing_from_the_kanban_asks_first_and_works_with_the_keyboard(
    chromium: Any, live_server: str, app: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    number = _visited_case(app)
    assert _status(app, number) == Status.VISITED
    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    office.goto("/board/kanban")
    card = office.locator(f"#card-{number}")
    expect(office.locator("#column-visited")).to_contain_text(number)

    # A drop on "closed" only asks; cancelling leaves the case as it was.
    card.drag_to(office.locator("#column-closed"))
    office.wait_for_url("**/board/kanban/confirm?*")
    expect(office.locator("h1")).to_contain_text(number)
    expect(office.locator("#confirm-visit")).to_contain_text("满意")
    expect(office.locator("#confirm-reply")).to_contain_text("已责令施工单位夜间停工")
    screenshot(office, tmp_path / "kanban-confirm.png")
    office.click("#confirm-cancel")
    office.wait_for_url("**/board/kanban")
    assert _status(app, number) == Status.VISITED

    # Keyboard only: the card's Close link, Enter; the question's button has the focus.
    office.locator(f"#card-{number} [data-move=close]").focus()
    office.keyboard.press("Enter")
    office.wait_for_url("**/board/kanban/confirm?*")
    expect(office.locator("#confirm-close")).to_be_focused()
    office.keyboard.press("Tab")
    expect(office.locator("#confirm-cancel")).to_be_focused()
    office.keyboard.press("Shift+Tab")
    office.keyboard.press("Enter")
    office.wait_for_url("**/board/kanban")
    expect(office.locator("p.flash.info")).to_contain_text(f"{number} 已办结")
    expect(office.locator("#column-closed")).to_contain_text(number)
    assert _status(app, number) == Status.CLOSED


def test_find_and_page_5000_accounts_and_hand_a_department_over(
    chromium: Any, live_server: str, app: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    runtime = app.extensions["minsheng"]
    _many_users(runtime, 5000)
    admin = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    sign_in(admin, "admin")
    admin.goto("/admin/users")
    expect(admin.locator("#users tbody tr")).to_have_count(50)
    expect(admin.locator("#users-total")).to_contain_text("5")
    first = admin.locator("#users tbody tr").first.get_attribute("data-user")
    admin.click("#users-next")
    expect(admin.locator("#users tbody tr")).to_have_count(50)
    assert admin.locator("#users tbody tr").first.get_attribute("data-user") > first
    admin.click("#users-prev")
    expect(admin.locator("#users tbody tr").first).to_have_attribute("data-user", first)
    # Search by a display name, with the keyboard.
    admin.fill("#user-q", "经办人04321")
    admin.keyboard.press("Enter")
    expect(admin.locator("#users tbody tr")).to_have_count(1)
    expect(admin.locator("tr[data-user='staff04321']")).to_be_visible()
    assert admin.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(admin, tmp_path / "admin-users-search.png")

    # A department with work in hand: the page says what, and asks who takes over.
    number, _code = submit_complaint(app.test_client(), "和平路井盖破损。", "井盖破损")
    with runtime.sessions() as s:
        case_id = s.scalar(select(Case.id).where(Case.tracking_number == number))
    post_form(
        login(app.test_client(), "supervisor"),
        "/board/queue",
        f"/board/cases/{number}/assign",
        {f"c{case_id}-department": "urban", "back": "queue"},
    )
    with runtime.sessions() as s, s.begin():  # the city's extra staff elsewhere
        s.execute(update(User).where(User.username.like("staff%")).values(active=False))
    desk = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(desk, "admin")
    desk.goto("/admin/departments/urban")
    expect(desk.locator("#department-load")).to_contain_text("1 件在办工单")
    expect(desk.locator("#department-load")).to_contain_text("2 个在用账号")
    desk.uncheck("#active")
    desk.click("#department-form button[type=submit]")
    expect(desk.locator("p.flash.error")).to_contain_text("请选择接手的部门")
    desk.uncheck("#active")
    desk.select_option("#successor", "environment")
    desk.click("#department-form button[type=submit]")
    expect(desk.locator("p.flash.info").last).to_contain_text("1 件在办工单已移交 environment")
    with runtime.sessions() as s:
        assert not s.scalar(select(Department.active).where(Department.code == "urban"))
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        assert case.department.code == "environment"
    desk.goto("/admin/log")
    expect(desk.locator("#admin-log tbody tr").first).to_contain_text("部门 区住房和城乡建设局")
