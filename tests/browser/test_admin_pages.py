"""Administration in Chromium: the admin adds an account in the browser, reads its one-time
password once, and the new colleague signs in with it; the admin log shows the action
without the password. A supervisor finds no way in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in

pytestmark = pytest.mark.browser


def test_add_an_account_and_sign_in_as_it(chromium: Any, live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    admin = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(admin, "admin")
    admin.click("#nav-admin")
    expect(admin.locator("h1")).to_have_text("系统管理")
    admin.click("#admin-accounts >> text=添加账号")
    admin.fill("#username", "Sun.Li")
    admin.fill("#display_name", "交通局 孙丽")
    admin.select_option("#role", "handler")
    admin.select_option("#department", "transport")
    admin.fill("#email", "sunli@example.gov.cn")
    admin.click("#new-user-form button[type=submit]")
    expect(admin.locator("h1")).to_have_text("sun.li 的一次性密码")
    password = admin.inner_text("#password-value").strip()
    assert len(password) >= 10

    admin.goto("/admin/users?department=transport")
    expect(admin.locator("tr[data-user='sun.li']")).to_contain_text("交通局 孙丽")
    admin.goto("/admin/log")
    row = admin.locator("#admin-log tbody tr").first
    expect(row).to_contain_text("账号已添加")
    expect(row).to_contain_text("账号 sun.li")
    expect(admin.locator("main")).not_to_contain_text(password)

    colleague = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    colleague.goto("/login")
    colleague.fill("#username", "SUN.LI")
    colleague.fill("#password", password)
    colleague.click("main form button[type=submit]")
    # A one-time password: the colleague chooses their own before anything else.
    colleague.wait_for_url(re.compile(r"/account/password"))
    expect(colleague.locator("#must-change")).to_be_visible()
    colleague.fill("#current", password)
    colleague.fill("#new", "Lantern-river-42")
    colleague.fill("#repeat", "Lantern-river-42")
    colleague.click("main form button[type=submit]")
    colleague.wait_for_url(re.compile(r"/board/"))
    expect(colleague.locator("header .who")).to_contain_text("交通局 孙丽")
    expect(colleague.locator("header .who")).to_contain_text("区交通运输局")
    expect(colleague.locator("#nav-admin")).to_have_count(0)
    assert colleague.goto(f"{live_server}/admin/").status == 403

    # Deactivated: the colleague's open session ends at the next page.
    admin.goto("/admin/users?department=transport")
    admin.click("tr[data-user='sun.li'] a")
    admin.click("#deactivate-form button")
    expect(admin.locator("#user-state")).to_have_text("已停用")
    colleague.goto(f"{live_server}/board/cases")
    colleague.wait_for_url(re.compile(r"/login"))


def test_the_admin_pages_on_a_phone(chromium: Any, live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    sign_in(page, "admin")
    for url in ("/admin/", "/admin/users", "/admin/departments", "/admin/departments/urban"):
        page.goto(url)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{url} is {width}px wide on a 390px phone"
    expect(page.locator("#limits-source")).to_contain_text("[time_limits]")
    screenshot(page, tmp_path / "admin-department-phone.png")


def test_a_long_department_name_keeps_the_phone_pages_narrow(
    chromium: Any, live_server: str, app: Any
) -> None:
    """An English department name longer than a phone is wide (a real one, like the
    housing bureau's) must not widen the users' filter or the kanban's department picker
    past the screen."""
    from triage.staff import add_department

    with app.extensions["minsheng"].sessions() as s:
        add_department(
            s,
            "housing-long",
            "区住房和城乡建设局物业管理与房屋安全监督科",
            "District Bureau of Housing and Urban-Rural Development, Property Management Office",
        )
        s.commit()
    page = chromium.new_context(**PHONE, locale="en-US", base_url=live_server).new_page()
    sign_in(page, "admin")
    page.goto("/lang/en?next=/admin/users")
    for url in ("/admin/users", "/board/kanban"):
        page.goto(url)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{url} is {width}px wide on a 390px phone"


def test_change_who_takes_over_an_inactive_department(
    chromium: Any, live_server: str, app: Any, tmp_path: Path
) -> None:
    """Deactivate urban into environment, then, on its page, change the department that
    takes its work over to transport: the page and the admin log say so."""
    from playwright.sync_api import expect

    admin = chromium.new_context(**DESKTOP, locale="zh-CN", base_url=live_server).new_page()
    sign_in(admin, "admin")
    admin.goto("/admin/departments/urban")
    admin.uncheck("#active")
    admin.select_option("#successor", "environment")
    admin.click("#department-form button[type=submit]")
    expect(admin.locator("#department-successor")).to_contain_text("市生态环境局民声分局")
    expect(admin.locator("#successor-change #successor")).to_have_value("environment")
    admin.select_option("#successor-change #successor", "transport")
    admin.click("#department-form button[type=submit]")
    expect(admin.locator("p.flash.info").first).to_be_visible()
    expect(admin.locator("#department-successor")).to_contain_text("交通运输")
    expect(admin.locator("#successor-change #successor")).to_have_value("transport")
    admin.goto("/admin/log")
    expect(admin.locator("tr[data-action=department_changed]").first).to_contain_text(
        "接手的部门：市生态环境局民声分局 → 区交通运输局"
    )
    screenshot(admin, tmp_path / "admin-successor-change.png")
