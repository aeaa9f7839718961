"""At a phone's 360 px, in Chinese and in English, the board's pages are no wider than the
screen (red-team, issue 10): English department names are long and the selects that list
them (the case list's department filter, each queue row's dispatch select) widened the
page to 379 and 413 px, cutting off the queue's confidence and dispatch select."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import password_of
from tests.integration.helpers import submit_complaint

WIDE = """() => [...document.querySelectorAll('main *, body > *')]
  .filter(e => e.getBoundingClientRect().width > 0
    && e.getBoundingClientRect().right > innerWidth + 1)
  .slice(-10).map(e => e.tagName + (e.name ? '[' + e.name + ']' : '')
    + (e.className ? '.' + e.className : '')
    + ' right=' + Math.round(e.getBoundingClientRect().right))"""


def _log_in(page: Any, live_server: str, user: str, lang: str) -> None:
    page.goto(f"{live_server}/login?lang={lang}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password_of(user))
    page.click("button[type=submit]:not(.link)")


def test_board_pages_fit_a_phone_in_both_languages(
    chromium: Any, live_server: str, client: Any
) -> None:
    numbers = [
        submit_complaint(client, body)[0]
        for body in (
            "小区物业不作为，电梯坏了一个月没人修",
            "楼下饭店油烟噪音扰民，晚上十一点还在营业",
        )
    ]
    paths = {
        "supervisor": [
            "/board/cases",
            "/board/cases?sort=deadline&status=open",
            "/board/queue",
            f"/board/cases/{numbers[0]}",
            "/board/kanban",
            "/board/dashboard",
        ],
        "admin": ["/admin/users", "/admin/departments", "/admin/log", "/admin/outbox"],
    }
    wide: list[str] = []
    for lang in ("zh", "en"):
        for user, pages in paths.items():
            ctx = chromium.new_context(viewport={"width": 360, "height": 740})
            page = ctx.new_page()
            _log_in(page, live_server, user, lang)
            for path in pages:
                sep = "&" if "?" in path else "?"
                response = page.goto(f"{live_server}{path}{sep}lang={lang}")
                assert response is not None and response.status < 400, (lang, path)
                assert not re.search(r"/login\b", page.url), (lang, path)
                assert page.evaluate("document.documentElement.lang").startswith(lang)
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > 360:
                    wide.append(f"{lang} {path}: {width} px: {page.evaluate(WIDE)}")
            ctx.close()
    assert wide == [], "\n".join(wide)
