"""The whole life of a complaint in a real browser, as each person would click through it:
a citizen on a phone, the efficiency office, the department, and the citizen again."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, password_of

pytestmark = pytest.mark.browser

URBAN = "区住房和城乡建设局"
URBAN_EN = "Housing and Urban-Rural Development Bureau"
SUBJECT = "小区电梯停运一周无人维修"
BODY = "明德路12号小区3号楼的电梯已经停运一周，物业一直说在等配件，老人上下楼非常困难。"
REPLY = "已责成物业公司更换配件，电梯于今日恢复运行，并已联系投诉人确认。"
PHOTO_NAME = "电梯照片.png"
CJK = re.compile(r"[\u4e00-\u9fff]")
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
ZH_CATALOGUE = ROOT / "web" / "translations" / "zh" / "LC_MESSAGES" / "messages.mo"

# Draws two different characters on a canvas: when no font has them, both come out as the
# same empty box, so different pixels mean the Chinese glyphs really render.
GLYPHS_RENDER = """() => {
  const c = document.createElement('canvas');
  c.width = 64; c.height = 64;
  const g = c.getContext('2d');
  const draw = (t) => {
    g.clearRect(0, 0, 64, 64);
    g.font = '48px ' + getComputedStyle(document.body).fontFamily;
    g.fillText(t, 4, 52);
    return g.getImageData(0, 0, 64, 64).data.join(',');
  };
  const missing = draw('\\u{10FFFD}');
  const a = draw('民'), b = draw('声');
  return a !== b && a !== missing && b !== missing;
}"""


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def png(width: int = 24, height: int = 16) -> bytes:
    """A small valid PNG: a red-to-blue gradient."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((255 - x * 10, 40, x * 10)) for x in range(width))
        for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def sign_in(page: Any, username: str) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password_of(username))
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/board/"))
    # The header names who signed in (on a phone folded in the menu, static/menu.js).
    _expect()(page.locator("header .who")).to_be_attached()


def screenshot(page: Any, path: Path) -> Path:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} is suspiciously small"
    assert page.evaluate(GLYPHS_RENDER), "Chinese characters do not render (font missing?)"
    return path


def test_complaint_from_phone_to_closed_case(
    chromium: Any, live_server: str, tmp_path: Path
) -> None:
    expect = _expect()
    photo = png()

    # A citizen on a phone finds the form from the home page and submits with a photo.
    citizen = chromium.new_context(**PHONE, locale="zh-CN", base_url=live_server)
    phone = citizen.new_page()
    phone.goto("/")
    expect(phone.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(phone.locator("main")).to_contain_text(URBAN)
    if ZH_CATALOGUE.exists():
        assert CJK.search(phone.inner_text("header")), "Chinese catalogue compiled, header not"
    phone.click("main a[href='/complain']")
    phone.wait_for_url(re.compile(r"/complain$"))
    phone.select_option("#kind", "complaint")
    phone.fill("#subject", SUBJECT)
    phone.fill("#body", BODY)
    phone.fill("#name", "王小明")
    phone.fill("#phone", "13812345678")
    phone.set_input_files(
        "#attachments", files=[{"name": PHOTO_NAME, "mimeType": "image/png", "buffer": photo}]
    )
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the form is {overflow}px wider than the phone"
    form_shot = screenshot(phone, tmp_path / "phone-form.png")
    phone.click("main form button[type=submit]")
    phone.wait_for_url(re.compile(r"/receipt/"))
    number = phone.inner_text("#tracking-number").strip()
    code = phone.inner_text("#query-code").strip()
    assert re.fullmatch(r"MS-\d{4}-\d{6}", number), number
    assert re.fullmatch(r"[0-9A-Z]{6}", code), code

    # The efficiency office sees it in the triage queue with the suggested department.
    staff = chromium.new_context(**DESKTOP, base_url=live_server)
    office = staff.new_page()
    sign_in(office, "supervisor")
    office.goto("/board/queue")
    row = office.locator(f"tr[data-case='{number}']")
    expect(row).to_contain_text(SUBJECT)
    expect(row.locator("td.suggestion")).to_contain_text(URBAN)
    row.locator("select").select_option("urban")
    row.locator("button[type=submit]").click()
    office.wait_for_url(re.compile(r"/board/queue$"))
    expect(office.locator("p.flash.info")).to_contain_text(number)
    expect(office.locator(f"tr[data-case='{number}']")).to_have_count(0)

    # The department's handler opens it from the list, sees the photo, replies.
    urban = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(urban, "urban")
    urban.goto("/board/cases")
    urban.click(f"a:text-is('{number}')")
    urban.wait_for_url(re.compile(rf"/board/cases/{number}$"))
    case_url = urban.url
    expect(urban.locator("h1 [class*=status-]")).to_have_class(re.compile("status-assigned"))
    attachment = urban.locator("ul.attachments li")
    expect(attachment).to_contain_text(PHOTO_NAME)
    expect(attachment).to_contain_text("image/png")
    photo_url = attachment.locator("a").get_attribute("href")
    fetched = urban.request.get(photo_url)
    assert fetched.status == 200 and fetched.headers["content-type"] == "image/png"
    assert fetched.body() == photo
    urban.fill("#reply-text", REPLY)
    urban.click("#reply-form button[type=submit]")
    expect(urban.locator("h1 [class*=status-]")).to_have_class(re.compile("status-replied"))

    # A handler of another department may not see it, by list, typed URL or photo link.
    transport = chromium.new_context(**DESKTOP, base_url=live_server).new_page()
    sign_in(transport, "transport")
    assert transport.goto(case_url).status == 404
    assert transport.request.get(photo_url).status == 404
    transport.goto("/board/cases")
    expect(transport.locator("main")).not_to_contain_text(number)

    # The office calls the citizen back and closes the case.
    office.goto(case_url)
    expect(office.locator("blockquote.reply")).to_have_text(REPLY)
    office.check("#visit-form input[name='visit-reached'][value='yes']")
    office.check("#visit-form input[name='visit-solved'][value='yes']")
    office.check("#visit-form input[name='visit-satisfaction'][value='satisfied']")
    office.fill("#visit-note", "群众表示满意")
    office.click("#visit-form button[type=submit]")
    expect(office.locator("h1 [class*=status-]")).to_have_class(re.compile("status-visited"))
    office.click("#close-form button[type=submit]")
    expect(office.locator("h1 [class*=status-]")).to_have_class(re.compile("status-closed"))
    expect(office.locator("p.visit")).to_contain_text("群众表示满意")
    board_shot = screenshot(office, tmp_path / "closed-case-board.png")

    # The citizen looks the case up with the number and code from the receipt.
    phone.goto("/")
    phone.click("header a[href='/track']")
    phone.wait_for_url(re.compile(r"/track$"))
    phone.fill("#tracking_number", number)
    phone.fill("#query_code", code)
    phone.click("main form button[type=submit]")
    result = phone.locator("section.case-public")
    expect(result).to_contain_text(number)
    expect(result.locator(".badge")).to_have_class(re.compile("status-closed"))
    expect(result).to_contain_text(SUBJECT)
    expect(result).to_contain_text(URBAN)
    expect(result.locator("blockquote.reply")).to_have_text(REPLY)
    assert "王小明" not in result.inner_text() and "13812345678" not in phone.content()
    closed_shot = screenshot(phone, tmp_path / "closed-case-phone.png")

    print(f"\nscreenshots: {form_shot} {board_shot} {closed_shot}")
    for context in (citizen, staff, urban.context, transport.context):
        context.close()


def test_language_switch_is_remembered(chromium: Any, live_server: str) -> None:
    expect = _expect()
    context = chromium.new_context(**PHONE, base_url=live_server)
    page = context.new_page()
    page.goto("/complain")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    page.click("header a[href^='/lang/en']")
    page.wait_for_url(re.compile(r"/complain$"))  # back where the switch was pressed
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Submit a complaint")
    expect(page.locator("header a[href^='/lang/zh']")).to_have_text("中文")

    # Remembered on other pages, in a new tab, and after the session cookie is gone.
    page.goto("/")
    expect(page.locator("main")).to_contain_text(URBAN_EN)
    expect(page.locator("main")).not_to_contain_text(URBAN)
    other = context.new_page()
    other.goto("/track")
    expect(other.locator("html")).to_have_attribute("lang", "en")
    context.clear_cookies(name="minsheng_session")
    other.goto("/")
    expect(other.locator("html")).to_have_attribute("lang", "en")
    expect(other.locator("main")).to_contain_text(URBAN_EN)

    other.click("header a[href^='/lang/zh']")
    expect(other.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(other.locator("main")).to_contain_text(URBAN)
    context.close()
