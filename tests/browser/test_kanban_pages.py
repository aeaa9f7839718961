"""The kanban in Chromium: a card dragged onto a legal column moves there and stays after a
reload; a drop on an illegal column is refused with a message and the card stays; a drop
that needs input leads to the case page's form; on a phone the columns scroll sideways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.browser.test_case_path_pages import _submit
from tests.browser.test_extension_pages import dispatch_to_urban
from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in
from triage.models import Case, Status

pytestmark = pytest.mark.browser


def _status(app: Any, number: str) -> tuple[str, list[str]]:
    with app.extensions["minsheng"].sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        return case.status, [e.action for e in case.events]


def test_drag_a_card_to_a_legal_column_and_an_illegal_one(
    chromium: Any, live_server: str, app: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    number, _code = _submit(
        citizen, "路灯不亮", "明德路路灯不亮已经一周，晚上走路很危险。", "赵六", "13500001111"
    )
    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    dispatch_to_urban(office, number)

    urban = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(urban, "urban")
    urban.click("#nav-kanban")
    card = urban.locator(f"#card-{number}")
    expect(urban.locator("#column-assigned")).to_contain_text(number)
    expect(urban.locator("#column-assigned .count")).to_have_text("1")

    # Illegal: straight to closed. Refused with the reason; the card stays where it was.
    card.drag_to(urban.locator("#column-closed"))
    expect(urban.locator("#kanban-message")).to_have_text(
        f"{number} 不能从“已分派”移到“办结”：工单流程不允许这样流转。"
    )
    expect(urban.locator("#kanban-message")).to_have_class("flash error")
    expect(urban.locator("#column-assigned")).to_contain_text(number)
    assert _status(app, number)[0] == Status.ASSIGNED

    # Legal and needing nothing more: assigned → in progress.
    card.drag_to(urban.locator("#column-in_progress"))
    expect(urban.locator("#column-in_progress")).to_contain_text(number)
    expect(urban.locator("#column-assigned")).not_to_contain_text(number)
    expect(urban.locator("#kanban-message")).to_contain_text("您已开始办理")
    expect(urban.locator("#column-in_progress .count")).to_have_text("1")
    # The moved card carries the moves of its new status.
    expect(urban.locator(f"#card-{number} [data-move=start]")).to_have_count(0)
    status, actions = _status(app, number)
    assert status == Status.IN_PROGRESS and actions[-1] == "started"
    urban.reload()
    expect(urban.locator("#column-in_progress")).to_contain_text(number)

    # Legal but needing a text: the reply form on the case page opens.
    # The office sees the whole office, the card with its department.
    office.goto("/board/kanban")
    expect(office.locator("#column-in_progress")).to_contain_text("区住房和城乡建设局")
    screenshot(office, tmp_path / "kanban-office.png")

    urban.locator(f"#card-{number}").drag_to(urban.locator("#column-replied"))
    urban.wait_for_url(f"**/board/cases/{number}#reply-form")
    expect(urban.locator("#reply-form")).to_be_visible()
    assert _status(app, number)[0] == Status.IN_PROGRESS


def test_kanban_on_a_phone_scrolls_sideways_and_has_buttons(
    chromium: Any, live_server: str, app: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    number, _code = _submit(
        citizen, "井盖缺失", "人民路井盖缺失，夜间极易有人掉落。", "钱七", "13500002222"
    )
    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    dispatch_to_urban(office, number)

    phone = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    sign_in(phone, "urban")
    phone.goto("/board/kanban")
    page_width = phone.evaluate("document.documentElement.scrollWidth")
    assert page_width <= 390, "the page itself must not scroll sideways"
    board = phone.locator("#kanban")
    assert board.evaluate("b => b.scrollWidth > b.clientWidth"), "columns scroll inside the board"
    # Without dragging (touch), the card's button makes the same move.
    phone.locator(f"#card-{number} button[data-move=start]").click()
    expect(phone.locator("p.flash.info")).to_contain_text("您已开始办理")
    expect(phone.locator("#column-in_progress")).to_contain_text(number)
    screenshot(phone, tmp_path / "kanban-phone.png")


def test_a_drop_after_the_account_was_deactivated_says_reload(
    chromium: Any, live_server: str, app: Any
) -> None:
    """The admin deactivates a handler whose kanban is open: their next drop is not made,
    and the board says to reload (which shows the sign-in page), not that the move is
    against the life cycle."""
    from playwright.sync_api import expect

    from triage.models import User

    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    number, _code = _submit(
        citizen, "路面塌陷", "解放路路面塌陷一个大坑，车辆绕行。", "孙八", "13500003333"
    )
    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    dispatch_to_urban(office, number)

    urban = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(urban, "urban")
    urban.goto("/board/kanban")
    expect(urban.locator("#column-assigned")).to_contain_text(number)
    with app.extensions["minsheng"].sessions() as s:
        user = s.scalar(select(User).where(User.username == "urban"))
        user.active = False
        s.commit()
    urban.locator(f"#card-{number}").drag_to(urban.locator("#column-in_progress"))
    expect(urban.locator("#kanban-message")).to_have_text("移动失败，请刷新页面后重试。")
    assert _status(app, number)[0] == Status.ASSIGNED


def test_a_refused_close_shows_the_reason_and_the_card_stays(
    chromium: Any, live_server: str, app: Any
) -> None:
    """A close the case refuses, asked by the board's script (here a page left open while
    the question's answer is posted with it: `confirmed` added on the way), comes back as
    JSON with the reason: the board says why and the card stays in its column, instead of
    the generic "reload" message an HTML page gave."""
    from datetime import UTC, datetime

    from playwright.sync_api import Route, expect

    from triage.models import Department, Satisfaction

    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    number, _code = _submit(
        citizen, "噪音扰民", "和平路施工噪音扰民，深夜还在打桩。", "周九", "13500004444"
    )
    now = datetime.now(UTC)
    with app.extensions["minsheng"].sessions() as s, s.begin():
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        dept = s.scalar(select(Department).where(Department.code == "urban"))
        case.assign(dept, "supervisor", now, now)
        case.start("urban", now)
        case.reply("urban", now, "已责令施工单位夜间停工。")
        case.record_visit(
            "supervisor", now, reached=True, solved=False, satisfaction=Satisfaction.UNSATISFIED
        )

    def confirmed(route: Route) -> None:
        request = route.request
        boundary = request.headers["content-type"].split("boundary=")[1]
        body = (request.post_data or "").replace(
            f"--{boundary}--",
            f'--{boundary}\r\nContent-Disposition: form-data; name="confirmed"\r\n\r\nyes\r\n'
            f"--{boundary}--",
        )
        route.continue_(post_data=body)

    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    office.goto("/board/kanban")
    office.route("**/board/kanban/move", confirmed)
    expect(office.locator("#column-visited")).to_contain_text(number)
    office.locator(f"#card-{number}").drag_to(office.locator("#column-closed"))
    expect(office.locator("#kanban-message")).to_have_text("请填写理由。")
    expect(office.locator("#kanban-message")).to_have_class("flash error")
    expect(office.locator("#column-visited")).to_contain_text(number)
    expect(office.locator("#column-closed")).not_to_contain_text(number)
    assert office.url.endswith("/board/kanban")
    assert _status(app, number)[0] == Status.VISITED
