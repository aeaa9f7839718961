"""The interface speaks Chinese by default and English on request, as a user would notice.

The compiled catalogs (.mo) are not in git; this module compiles them from the .po files
itself when they are missing or older, so it does not depend on `make translations`.
"""

from __future__ import annotations

import html as html_lib
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from tests.conftest import ROOT, csrf_from
from tests.integration.helpers import submit_complaint, submit_complaint_with_receipt

TRANSLATIONS = ROOT / "web" / "translations"
ZH_PO = TRANSLATIONS / "zh" / "LC_MESSAGES" / "messages.po"
HOW_TO_FIX = "see web/translations/README.md: extract, update, translate, compile"

# What a visitor sees in the navigation and on the public pages, in both languages.
NAV_EN = ("Submit a complaint", "Track progress", "Staff sign in")
NAV_ZH = ("我要投诉", "查询进度", "工作人员登录")
BOARD_EN = ("Triage queue", "Cases", "Sign out", "Supervisor")
BOARD_ZH = ("待分派", "工单", "退出登录", "督查员")
STATUS_ZH = {"received": "受理", "triage": "待分派", "assigned": "已分派"}
STATUS_EN = {"received": "Received", "triage": "Awaiting dispatch", "assigned": "Assigned"}


def _compile_catalogs() -> None:
    """Compiles every web/translations/<locale>/LC_MESSAGES/messages.po whose .mo is stale."""
    for po in sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as f:
            catalog = read_po(f, locale=po.parent.parent.name)
        # Written next to the target and renamed, so a parallel reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=po.parent, suffix=".mo.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write_mo(f, catalog, use_fuzzy=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, mo)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


@pytest.fixture(scope="module", autouse=True)
def compiled_catalogs() -> Iterator[None]:
    _compile_catalogs()
    yield


def _text(page: str) -> str:
    """The text a reader sees: tags removed, entities decoded, whitespace collapsed."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    page = re.sub(r"<[^>]+>", " ", page)
    return re.sub(r"\s+", " ", html_lib.unescape(page)).strip()


def _get(client: Any, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, f"GET {url}: {r.status_code}\n{r.get_data(as_text=True)[:2000]}"
    return r.get_data(as_text=True)


def _assert_chinese(page: str, zh: tuple[str, ...], en: tuple[str, ...]) -> None:
    text = _text(page)
    for label in zh:
        assert label in text, f"{label!r} missing from the Chinese page"
    for label in en:
        assert label not in text, f"English {label!r} on the Chinese page"


def _assert_english(page: str, en: tuple[str, ...], zh: tuple[str, ...]) -> None:
    text = _text(page)
    for label in en:
        assert label in text, f"{label!r} missing from the English page"
    for label in zh:
        assert label not in text, f"Chinese {label!r} on the English page"


def _switch(client: Any, code: str, back_to: str = "/") -> None:
    r = client.get(f"/lang/{code}", query_string={"next": back_to})
    assert r.status_code == 302
    assert r.headers["Location"].endswith(back_to)


# -- Chinese by default ------------------------------------------------------------------


def test_home_page_is_chinese_by_default(client: Any) -> None:
    page = _get(client, "/")
    assert '<html lang="zh-CN">' in page
    _assert_chinese(page, (*NAV_ZH, "民声"), NAV_EN)
    assert "English" in _text(page), "no switch to English"


def test_complaint_form_is_chinese_by_default(client: Any) -> None:
    page = _get(client, "/complain")
    _assert_chinese(
        page,
        ("我要投诉", "诉求类型", "投诉", "建议", "咨询", "表扬", "标题", "提交", "联系方式"),
        (*NAV_EN, "Kind", "Subject", "Complaint", "Suggestion", "Submit"),
    )


def test_form_errors_are_chinese(client: Any) -> None:
    page = _get(client, "/complain")
    r = client.post("/complain", data={"csrf_token": csrf_from(page), "kind": "complaint"})
    assert r.status_code == 400
    text = _text(r.get_data(as_text=True))
    assert "请填写简要标题。" in text
    assert "请描述您反映的问题。" in text
    assert "Please give a short subject." not in text


def test_receipt_is_chinese(client: Any) -> None:
    _number, _code, url = submit_complaint_with_receipt(
        client, "小区门口的路灯坏了一个多月，晚上出行很不安全。"
    )
    page = _get(client, url)
    _assert_chinese(
        page,
        ("感谢您的反映", "受理编号", "查询码", "查询进度"),
        (*NAV_EN, "Tracking number", "Query code"),
    )


# -- switching to English and back --------------------------------------------------------


def test_switch_to_english_is_remembered(client: Any) -> None:
    _switch(client, "en", "/complain")
    page = _get(client, "/complain")
    assert '<html lang="en">' in page
    _assert_english(page, (*NAV_EN, "Kind", "Subject", "Complaint", "Submit"), NAV_ZH)
    # The next request, to another page, is still in English.
    page = _get(client, "/track")
    _assert_english(page, (*NAV_EN, "Minsheng", "Tracking number"), (*NAV_ZH, "民声"))
    assert "中文" in _text(page), "no switch back to Chinese"


def test_switch_is_remembered_by_cookie_alone(app: Any, client: Any) -> None:
    r = client.get("/lang/en")
    assert "lang=en" in r.headers.get("Set-Cookie", "")
    fresh = app.test_client()  # a new browser session that kept only the cookie
    fresh.set_cookie("lang", "en")
    _assert_english(_get(fresh, "/complain"), NAV_EN, NAV_ZH)


def test_switch_back_to_chinese(client: Any) -> None:
    _switch(client, "en", "/track")
    _assert_english(_get(client, "/track"), NAV_EN, NAV_ZH)
    _switch(client, "zh", "/complain")
    page = _get(client, "/complain")
    assert '<html lang="zh-CN">' in page
    _assert_chinese(page, (*NAV_ZH, "诉求类型"), (*NAV_EN, "Kind"))
    _assert_chinese(_get(client, "/track"), (*NAV_ZH, "受理编号"), (*NAV_EN, "Tracking number"))


def test_unknown_language_and_foreign_redirect_are_ignored(client: Any) -> None:
    r = client.get("/lang/fr", query_string={"next": "//evil.example/phish"})
    assert r.status_code == 302
    assert r.headers["Location"] in ("/", "http://localhost/")
    _assert_chinese(_get(client, "/complain"), NAV_ZH, NAV_EN)


# -- the board -----------------------------------------------------------------------------


def test_board_is_chinese_by_default(login_as: Any) -> None:
    supervisor = login_as("supervisor")
    r = supervisor.get("/board/", follow_redirects=True)
    assert r.status_code == 200
    _assert_chinese(r.get_data(as_text=True), BOARD_ZH, (*BOARD_EN, "Board", "Password"))
    page = _get(supervisor, "/board/cases")
    _assert_chinese(page, ("全部状态", "状态", "部门", "筛选"), ("All statuses", "Filter"))


def test_board_switches_to_english(login_as: Any) -> None:
    supervisor = login_as("supervisor")
    _switch(supervisor, "en", "/board/queue")
    _assert_english(_get(supervisor, "/board/queue"), BOARD_EN, BOARD_ZH)


# -- the citizen's track page ------------------------------------------------------------


def _track(client: Any, number: str, code: str) -> str:
    page = _get(client, "/track")
    r = client.post(
        "/track",
        data={"csrf_token": csrf_from(page), "tracking_number": number, "query_code": code},
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html[:2000]
    return html


def _status_badge(page: str) -> tuple[str, str]:
    m = re.search(r'<span class="badge status-([a-z_]+)">([^<]+)</span>', page)
    assert m, "the track page shows no status"
    return m.group(1), m.group(2).strip()


def _timeline(page: str) -> str:
    m = re.search(r'<ol class="timeline[^"]*">(.*?)</ol>', page, flags=re.S)
    assert m, "the track page shows no timeline"
    return _text(m.group(1))


def test_track_page_status_and_timeline_are_translated(client: Any) -> None:
    number, code = submit_complaint(client, "明德路公交站的候车亭顶棚破损，下雨天无法避雨。")

    page = _track(client, number, code)
    status, label = _status_badge(page)
    assert status in STATUS_ZH, f"unexpected status {status}"
    assert label == STATUS_ZH[status]
    assert "办理过程" in _text(page) and "Timeline" not in _text(page)
    timeline = _timeline(page)
    assert "受理" in timeline
    assert not re.search(r"[A-Za-z]", timeline), f"English in the timeline: {timeline}"

    _switch(client, "en", "/track")
    page = _track(client, number, code)
    status, label = _status_badge(page)
    assert label == STATUS_EN[status]
    assert "Timeline" in _text(page) and "办理过程" not in _text(page)
    timeline = _timeline(page)
    assert "Received" in timeline
    assert not re.search(r"[\u4e00-\u9fff]", timeline), f"Chinese in the timeline: {timeline}"


# -- the catalog is complete -------------------------------------------------------------


def _zh_catalog() -> Any:
    with ZH_PO.open("rb") as f:
        return read_po(f, locale="zh")


def test_every_msgid_has_a_chinese_translation() -> None:
    catalog = _zh_catalog()
    assert not catalog.fuzzy, f"{ZH_PO} is marked fuzzy as a whole"
    messages = [m for m in catalog if m.id]
    assert messages, f"{ZH_PO} has no messages"
    untranslated = [m.id for m in messages if not m.string or not str(m.string).strip()]
    fuzzy = [m.id for m in messages if m.fuzzy]
    assert not untranslated, f"untranslated in {ZH_PO} ({HOW_TO_FIX}): {untranslated}"
    assert not fuzzy, f"fuzzy (unchecked) translations in {ZH_PO}: {fuzzy}"


def test_translations_keep_their_placeholders() -> None:
    """Same %(name)s placeholders, and no stray % (templates always %-format their strings)."""
    placeholder = re.compile(r"%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%%")
    catalog = _zh_catalog()
    problems: list[tuple[str, object]] = [(m.id, errors) for m, errors in catalog.check()]
    for m in catalog:
        if not m.id or not m.string:
            continue
        wanted, got = placeholder.findall(m.id), placeholder.findall(m.string)
        if sorted(wanted) != sorted(got):
            problems.append((m.id, f"placeholders {wanted} became {got}"))
        if "%" in placeholder.sub("", m.string):
            problems.append((m.id, f"stray % in {m.string!r}"))
    assert not problems, f"broken translations in {ZH_PO}: {problems}"


def _source_msgids() -> set[str]:
    """The msgids in the code and templates now, found as `pybabel extract` would find them."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_string_in_the_source_is_in_the_catalog() -> None:
    translated = {m.id for m in _zh_catalog() if m.id and m.string and not m.fuzzy}
    missing = sorted(_source_msgids() - translated)
    assert not missing, f"strings in the source without Chinese ({HOW_TO_FIX}): {missing}"


def test_english_catalog_exists_for_every_msgid() -> None:
    """English shows the msgids themselves; the catalog only needs to exist and be current."""
    en_po = TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.po"
    with en_po.open("rb") as f:
        en = read_po(f, locale="en")
    assert {m.id for m in en if m.id} == {m.id for m in _zh_catalog() if m.id}
    mo = en_po.with_suffix(".mo")
    assert mo.exists()
