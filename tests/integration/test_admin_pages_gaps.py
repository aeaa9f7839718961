"""The admin pages' gaps a red team found, on SQLite and PostgreSQL: the outbox pages
through every mail and text (keyset, with the state filter), not only the newest 50; the
staff search takes full-width letters and pasted tabs; an address in Chinese reads in
Chinese on the outbox page and the timeline; the staff list's Previous link leads to
accounts."""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from tests.integration.helpers import flashes, submit_complaint
from triage.models import User
from triage.outbox import OutgoingMail
from triage.sms import TextMessage

MAIL_ROWS = re.compile(r'<tr data-mail="(\d+)"')
SMS_ROWS = re.compile(r'<tr data-sms="(\d+)"')
USERS = re.compile(r'data-user="([^"]+)"')


def _fill_outbox(runtime: Any, n: int) -> None:
    """`n` mails and `n` texts; every third failed, the others sent."""
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        s.execute(
            insert(OutgoingMail),
            [
                {
                    "kind": "notice",
                    "recipients": [f"c{i}@example.com"],
                    "to_display": f"c{i}@example.com",
                    "subject": f"通知 {i}",
                    "message_id": f"<page-{i}@example.gov.cn>",
                    "message": zlib.compress(b"x"),
                    "size": 1,
                    "status": "failed" if i % 3 == 0 else "sent",
                    "next_attempt_at": now,
                }
                for i in range(n)
            ],
        )
        s.execute(
            insert(TextMessage),
            [
                {
                    "kind": "notice_received",
                    "phone": f"138{i:08d}",
                    "text": "已受理",
                    "sms_id": f"page-{i}",
                    "status": "failed" if i % 3 == 0 else "sent",
                    "next_attempt_at": now,
                }
                for i in range(n)
            ],
        )
        s.commit()


def _link(html: str, link_id: str) -> str | None:
    found = re.search(rf'id="{link_id}" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def _walk(client: Any, url: str, rows: re.Pattern[str], older: str) -> list[list[int]]:
    pages = []
    while url:
        html = client.get(url).get_data(as_text=True)
        pages.append([int(i) for i in rows.findall(html)])
        url = _link(html, older)
    return pages


def test_the_outbox_pages_through_every_mail_and_text_with_the_filter(
    login_as: Any, runtime: Any
) -> None:
    _fill_outbox(runtime, 130)
    admin = login_as("admin")
    with runtime.sessions() as s:
        mail_ids = sorted(s.scalars(select(OutgoingMail.id)), reverse=True)
        failed = sorted(
            s.scalars(select(OutgoingMail.id).where(OutgoingMail.status == "failed")),
            reverse=True,
        )
        sms_ids = sorted(s.scalars(select(TextMessage.id)), reverse=True)
    pages = _walk(admin, "/admin/outbox", MAIL_ROWS, "mail-older")
    assert [len(p) for p in pages] == [50, 50, len(mail_ids) - 100]
    assert [i for p in pages for i in p] == mail_ids  # every mail once, newest first
    texts = _walk(admin, "/admin/outbox", SMS_ROWS, "sms-older")
    assert [i for p in texts for i in p] == sms_ids
    # With the state filter: only failed ones, paged, the filter kept by the links.
    pages = _walk(admin, "/admin/outbox?status=failed", MAIL_ROWS, "mail-older")
    assert [i for p in pages for i in p] == failed and len(pages) == 1 + (len(failed) - 1) // 50
    # Back from the second page: "Newer" gives the first again; the first has no Newer.
    first = admin.get("/admin/outbox").get_data(as_text=True)
    assert _link(first, "mail-newer") is None and _link(first, "mail-newest") is None
    second = admin.get(_link(first, "mail-older")).get_data(as_text=True)
    assert [int(i) for i in MAIL_ROWS.findall(second)] == mail_ids[50:100]
    # The text list stays where it was while the mail list moves.
    assert [int(i) for i in SMS_ROWS.findall(second)] == sms_ids[:50]
    back = admin.get(_link(second, "mail-newer")).get_data(as_text=True)
    assert [int(i) for i in MAIL_ROWS.findall(back)] == mail_ids[:50]
    assert _link(second, "mail-newest") is not None
    # A cursor that is no number is the first page, not an error.
    assert admin.get("/admin/outbox?mail_before=abc&sms_after=-1").status_code == 200


def test_the_outbox_and_timeline_show_a_chinese_domain_in_chinese(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _code = submit_complaint(client, "路灯不亮。", email="张三@例子.中国", phone="")
    with runtime.sessions() as s:
        wire = s.scalar(select(OutgoingMail.to_display))
    assert wire == "张三@xn--fsqu00a.xn--fiqs8s"  # the wire keeps the IDNA form
    outbox = login_as("admin").get("/admin/outbox").get_data(as_text=True)
    assert "张三@例子.中国" in outbox and "xn--" not in outbox
    case = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    assert "张三@例子.中国" in case and "xn--" not in case


def test_the_staff_search_takes_full_width_letters_and_tabs(login_as: Any) -> None:
    admin = login_as("admin")
    wide = admin.get("/admin/users?q=ＵＲＢＡＮ")
    assert wide.status_code == 200
    assert "urban" in USERS.findall(wide.get_data(as_text=True))
    tab = admin.get("/admin/users?q=urban%09head")
    # A pasted tab is a space: "urban head" finds the head's display name or none, no 400.
    assert tab.status_code == 200
    tab2 = admin.get("/admin/users?q=%09urban-head%0D%0A")
    assert tab2.status_code == 200
    assert USERS.findall(tab2.get_data(as_text=True)) == ["urban-head"]
    nul = admin.get("/admin/users?q=urb%00an")
    assert nul.status_code == 400
    assert any("控制字符" in f for f in flashes(nul.get_data(as_text=True)))
    # Elsewhere a tab is white space too, and any other control character is refused with
    # a page naming the parameter.
    assert admin.get("/admin/log?before=%09").status_code == 200
    refused = admin.get("/admin/log?before=%01")
    assert refused.status_code == 400 and "“before”" in refused.get_data(as_text=True)


def test_no_previous_link_before_the_first_account(login_as: Any, runtime: Any) -> None:
    admin = login_as("admin")
    with runtime.sessions() as s:
        first = s.scalar(select(User.username).order_by(User.username).limit(1))
        second = s.scalars(select(User.username).order_by(User.username).limit(2)).all()[1]
    html = admin.get("/admin/users?after=0").get_data(as_text=True)
    assert USERS.findall(html)[0] == first
    assert 'id="users-prev"' not in html
    # After the first account there is one before: the link is there and leads to it.
    html = admin.get(f"/admin/users?after={first}").get_data(as_text=True)
    assert USERS.findall(html)[0] == second
    prev = re.search(r'id="users-prev" href="([^"]+)"', html)
    assert prev
    back = admin.get(prev.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert USERS.findall(back) == [first]
