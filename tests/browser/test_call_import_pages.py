"""The call-centre import page in Chromium: an operator uploads a GBK CSV export, sees the
counts and the bad rows by their Excel row numbers, downloads the report, and finds an
imported call as a case; a file without the required columns is refused with their names."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in
from triage.models import Case

pytestmark = pytest.mark.browser

HEADER = [
    "工单号",
    "来电号码",
    "来电时间",
    "通话时长",
    "诉求内容",
    "话务员",
    "姓名",
    "地址",
    "诉求类型",
]


def gbk_export(path: Path) -> Path:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(
        [
            HEADER,
            [
                "GD9001",
                "138 0013 8000",
                "2026/11/20 9:05",
                "125",
                "明德路路灯不亮\n已经三天",
                "王芳",
                "李四",
                "明德路12号",
                "投诉",
            ],
            ["GD9002", "1380013", "2026/11/20 9:30", "60", "号码少了几位", "王芳", "", "", "投诉"],
            ["", "", "", "", "", "", "", "", ""],
            [
                "GD9003",
                "13900139000",
                "46346.625",
                "2:05",
                "建议增加公交班次",
                "赵敏",
                "",
                "",
                "建议",
            ],
            ["GD9004", "13700137000", "下午三点", "abc", "时间写错了", "赵敏", "", "", "投诉"],
        ]
    )
    path.write_bytes(out.getvalue().encode("gbk"))
    return path


def test_operator_uploads_an_export_and_downloads_the_report(
    chromium: Any, live_server: str, app: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = chromium.new_context(
        **DESKTOP, locale="zh-CN", base_url=live_server, accept_downloads=True
    ).new_page()
    sign_in(page, "operator")
    page.get_by_role("link", name="导入话务记录").click()
    expect(page.locator("h1")).to_have_text("导入话务记录")
    page.set_input_files("input[type=file]", str(gbk_export(tmp_path / "话务导出.csv")))
    page.get_by_role("button", name="导入").click()
    page.wait_for_url("**/board/calls/import/*")
    # The import goes on in the background; the page reloads itself until it is done.
    expect(page.locator("#import-running")).to_have_count(0, timeout=60_000)
    expect(page.locator('[data-count="rows"]')).to_have_text("4")
    expect(page.locator('[data-count="registered"]')).to_have_text("2")
    expect(page.locator('[data-count="duplicates"]')).to_have_text("0")
    expect(page.locator('[data-count="rejected"]')).to_have_text("2")
    bad = page.locator("#bad-rows tbody tr")
    expect(bad.first).to_have_attribute("data-row", "3")
    expect(page.locator('#bad-rows tr[data-row="3"]')).to_contain_text("不是电话号码：1380013")
    expect(page.locator('#bad-rows tr[data-row="6"]').first).to_contain_text("来电时间")
    screenshot(page, tmp_path / "call-import.png")

    with page.expect_download() as info:
        page.click("#download-report")
    download = info.value
    report = Path(download.path()).read_bytes().decode("utf-8")
    assert report.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(report.lstrip("\ufeff"))))
    assert rows[0] == ["文件", "话务导出.csv"]
    numbered = [(r[0], r[1]) for r in rows if r and r[0].isdigit()]
    assert ("3", "来电号码") in numbered and ("6", "来电时间") in numbered

    # The same file again: every call is a duplicate, nothing new.
    page.goto("/board/calls/import")
    page.set_input_files("input[type=file]", str(tmp_path / "话务导出.csv"))
    page.get_by_role("button", name="导入").click()
    page.wait_for_url("**/board/calls/import/*")
    expect(page.locator("#import-running")).to_have_count(0, timeout=60_000)
    expect(page.locator('[data-count="registered"]')).to_have_text("0")
    expect(page.locator('[data-count="duplicates"]')).to_have_text("2")

    # The imported call is a case, with the import on its timeline.
    runtime = app.extensions["minsheng"]
    with runtime.sessions() as s:
        number = s.scalar(select(Case.tracking_number).where(Case.external_id == "GD9001"))
    page.goto(f"/board/cases/{number}")
    expect(page.locator("main")).to_contain_text("明德路路灯不亮")
    expect(page.locator("main")).to_contain_text("由话务记录导入登记")


def test_missing_columns_are_named_on_the_form_on_a_phone(
    chromium: Any, live_server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    book = openpyxl.Workbook()
    book.active.append(["工单号", "来电时间", "诉求内容"])
    book.active.append(["1", "2026-11-20 09:00", "漏水"])
    path = tmp_path / "short.xlsx"
    book.save(path)
    page = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server).new_page()
    sign_in(page, "supervisor")
    page.goto("/board/calls/import")
    page.set_input_files("input[type=file]", str(path))
    page.get_by_role("button", name="导入").click()
    problem = page.locator("#import-problem")
    expect(problem).to_contain_text("来电号码")
    expect(problem).to_contain_text("通话时长")
    expect(problem).to_contain_text("话务员")
    expect(problem).to_contain_text("未导入任何内容")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"
