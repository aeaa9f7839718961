"""The case path's side paths in a real browser: a merged complaint's citizen follows the case
it was merged into and is called back with it; a send-back is explained in the queue."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in

pytestmark = pytest.mark.browser


def _submit(page: Any, subject: str, body: str, name: str, phone: str) -> tuple[str, str]:
    page.goto("/complain")
    page.fill("#subject", subject)
    page.fill("#body", body)
    page.fill("#name", name)
    page.fill("#phone", phone)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/receipt/"))
    return page.inner_text("#tracking-number").strip(), page.inner_text("#query-code").strip()


def _track(page: Any, number: str, code: str) -> None:
    page.goto("/track")
    page.fill("#tracking_number", number)
    page.fill("#query_code", code)
    page.click("main form button[type=submit]")


def test_merged_citizen_follows_and_is_called_back(
    chromium: Any, live_server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    citizens = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server)
    phone = citizens.new_page()
    y, _ = _submit(
        phone, "小区电梯停运", "明德路12号3号楼电梯停运一周无人修。", "王小明", "13812345678"
    )
    x, x_code = _submit(
        phone, "3号楼电梯坏了", "明德路12号3号楼的电梯坏了好几天了。", "李秀英", "13900001111"
    )

    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    office.goto(f"/board/cases/{x}")
    office.fill("#merge-target", y)
    office.click("#merge-form button[type=submit]")
    expect(office.locator("h1 [class*=status-]")).to_have_class(re.compile("status-merged"))
    office.goto("/board/queue")
    row = office.locator(f"tr[data-case='{y}']")
    row.locator("select").select_option("urban")
    row.locator("button[type=submit]").click()

    urban = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(urban, "urban")
    urban.goto(f"/board/cases/{y}")
    urban.fill("#reply-text", "已督促物业更换电梯配件，电梯今日恢复运行。回访电话 13812345678。")
    urban.click("#reply-form button[type=submit]")
    expect(urban.locator("h1 [class*=status-]")).to_have_class(re.compile("status-replied"))

    # X's citizen sees Y's progress and reply, with Y's complainant's phone masked.
    _track(phone, x, x_code)
    merged = phone.locator("#merged-into")
    expect(merged).to_contain_text(y)
    expect(merged.locator(".badge")).to_have_class(re.compile("status-replied"))
    expect(merged.locator("blockquote.reply")).to_contain_text("电梯今日恢复运行")
    expect(merged.locator("blockquote.reply")).to_contain_text("138****5678")
    assert "13812345678" not in phone.content()
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the tracking page is {overflow}px wider than the phone"
    track_shot = screenshot(phone, tmp_path / "merged-track-phone.png")

    # The office calls both citizens back from Y's page.
    office.goto(f"/board/cases/{y}")
    callers = office.locator("#citizens-to-call")
    expect(callers.locator("li")).to_have_count(2)
    expect(callers).to_contain_text("李秀英")
    office.select_option("#visit-citizen", x)
    office.check("#visit-form input[name='visit-reached'][value='yes']")
    office.check("#visit-form input[name='visit-solved'][value='yes']")
    office.check("#visit-form input[name='visit-satisfaction'][value='satisfied']")
    office.click("#visit-form button[type=submit]")
    expect(office.locator("p.flash.info")).to_contain_text(x)
    expect(office.locator("h1 [class*=status-]")).to_have_class(re.compile("status-replied"))
    expect(callers.locator(f"li[data-citizen='{x}']")).to_contain_text("满意")
    board_shot = screenshot(office, tmp_path / "merged-case-board.png")

    _track(phone, x, x_code)
    expect(phone.locator("#your-case ol.timeline")).to_contain_text("已回访")
    print(f"\nscreenshots: {track_shot} {board_shot}")
    citizens.close()


def test_queue_explains_a_send_back(chromium: Any, live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    number, _ = _submit(
        citizen, "公交站台顶棚破损", "明德路公交站台顶棚破了，下雨没法等车。", "赵六", "13700001111"
    )
    office = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(office, "supervisor")
    office.goto("/board/queue")
    row = office.locator(f"tr[data-case='{number}']")
    row.locator("select").select_option("urban")
    row.locator("button[type=submit]").click()

    urban = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(urban, "urban")
    urban.goto(f"/board/cases/{number}")
    urban.fill("#sendback-reason", "公交站台由交通局管理，不属住建。")
    urban.click("#send-back-form button[type=submit]")

    office.goto("/board/queue")
    row = office.locator(f"tr[data-case='{number}']")
    expect(row.locator(".sent-back-reason")).to_contain_text("公交站台由交通局管理")
    expect(row.locator(".sent-back-reason")).to_contain_text("区住房和城乡建设局")
    # The keyword suggestion (transport) did not return it: still chosen for one click.
    assert row.locator("select").input_value() == "transport"
    # The department that sent it back is marked in the row's choice.
    expect(row.locator("select option[value=urban]")).to_contain_text("曾退回")
    queue_shot = screenshot(office, tmp_path / "queue-sent-back.png")

    # Sent to urban again without a reason: refused, it stays in the queue.
    row.locator("select").select_option("urban")
    row.locator("button[type=submit]").click()
    office.wait_for_url(re.compile(r"/board/queue$"))
    expect(office.locator("p.flash.error")).to_contain_text("退回")
    row = office.locator(f"tr[data-case='{number}']")
    row.locator("select").select_option("urban")
    office.locator("#bulk input[name=bulk-reason]").fill("经核实站台在小区内，仍由住建督办")
    row.locator("button[type=submit]").click()
    expect(office.locator(f"tr[data-case='{number}']")).to_have_count(0)
    print(f"\nscreenshot: {queue_shot}")
