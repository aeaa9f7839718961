"""The email-intake pages as a supervisor, a handler, an external supervisor and an operator
see them: the quarantine and suspected-spam lists and their actions, the raw download, the
intake health panel on the triage queue, and the later messages on a case page.

Rows are made by the real `ingest` on hand-written messages (the IMAP fetch itself is tested
in test_mail_intake.py); the pages are driven through the real app and database."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_from, make_settings
from tests.integration.helpers import flashes
from triage.cases import assign_case
from triage.mail_intake import (
    IncomingMail,
    ListStatus,
    Outcome,
    ingest,
    lease_name,
    quarantine_raw,
    record_fetch,
    take_lease,
)
from triage.models import Case, Department
from web.cli_intake import mail_policy

OFFICE = "xiaonengban@example.gov.cn"
CITIZEN = "wang.xiaoming@example.com"
IMAP = {"host": "127.0.0.1", "username": "box@example.gov.cn", "password": "x"}
MAILBOX = "box@example.gov.cn@127.0.0.1/INBOX"
SPAM = (
    "代开发票，各类发票代开，六合彩内部资料，兼职日结，裸聊 高仿名表，"
    "点击 http://spam.example.cn/a http://spam.example.cn/b http://spam.example.cn/c "
    "回复TD退订"
)
# A message the parser gives up on: headers and no text at all.
GARBLED = b"From: nobody@example.com\r\nTo: " + OFFICE.encode() + b"\r\n\r\n"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        intake={"imap": IMAP},
        mail={"sender": OFFICE},
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


def b64(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def mail(
    body: str,
    *,
    subject: str = "路灯不亮",
    sender: str = f"{b64('王小明')} <{CITIZEN}>",
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    lines = [
        f"From: {sender}",
        f"To: {OFFICE}",
        f"Subject: {b64(subject)}",
        "Date: " + datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
        f"Message-ID: {message_id or f'<{uuid.uuid4().hex}@mail.example.com>'}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        *[f"{k}: {v}" for k, v in (headers or {}).items()],
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body.encode() + b"\r\n"


def take_in(runtime: Any, raw: bytes) -> Any:
    """Ingests one message as `minsheng intake mail` would, committed."""
    with runtime.sessions() as s:
        result = ingest(s, raw, mailbox=MAILBOX, policy=mail_policy(runtime), now=datetime.now(UTC))
        s.commit()
    return result


def row(runtime: Any, mail_id: int) -> IncomingMail:
    with runtime.sessions() as s:
        found = s.get(IncomingMail, mail_id)
        assert found is not None
        s.expunge(found)
        return found


def case_count(runtime: Any) -> int:
    with runtime.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Case)) or 0)


def bounce_of_unknown() -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org\r\n"
        f"To: {OFFICE}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mx.example.org>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {OFFICE}\r\nTo: x@example.org\r\nMessage-ID: <not-ours@elsewhere.example>\r\n"
        "Subject: ack\r\n\r\n--B--\r\n"
    ).encode()


# -- the quarantine list ---------------------------------------------------------------------


def test_quarantine_lists_unreadable_mail_and_unknown_bounces_and_downloads_exact_bytes(
    runtime: Any, login_as: Any
) -> None:
    garbled = take_in(runtime, GARBLED)
    bounce = take_in(runtime, bounce_of_unknown())
    assert garbled.outcome == Outcome.QUARANTINED and bounce.outcome == Outcome.BOUNCE

    sup = login_as("supervisor")
    html = sup.get("/board/mail/quarantine").get_data(as_text=True)
    listed = re.findall(r'<tr data-mail="(\d+)"', html)
    assert listed == [str(bounce.mail_id), str(garbled.mail_id)]  # newest first
    assert "nobody@example.com" in html and "mailer-daemon@mx.example.org" in html
    assert row(runtime, garbled.mail_id).reason in html  # the recorded reason, as it is
    assert "退信" in html  # the bounce is marked as one, in Chinese

    r = sup.get(f"/board/mail/{garbled.mail_id}/raw")
    assert r.status_code == 200
    assert r.get_data() == GARBLED
    assert r.headers["Content-Type"] == "message/rfc822"
    assert r.headers["Content-Disposition"] == (
        f'attachment; filename="mail-{garbled.mail_id}.eml"'
    )
    assert r.headers["Cache-Control"] == "no-store"
    assert sup.get("/board/mail/999999/raw").status_code == 404


def test_quarantine_pages_on_by_id_and_odd_cursors_are_the_first_page(
    runtime: Any, login_as: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import web.mail_lists

    monkeypatch.setattr(web.mail_lists, "PAGE_SIZE", 2)
    with runtime.sessions() as s:
        ids = [
            quarantine_raw(
                s, GARBLED + str(i).encode(), mailbox=MAILBOX, reason="test", now=datetime.now(UTC)
            ).mail_id
            for i in range(5)
        ]
        s.commit()
    sup = login_as("supervisor")
    seen: list[str] = []
    url = "/board/mail/quarantine"
    while url:
        html = sup.get(url).get_data(as_text=True)
        seen += re.findall(r'<tr data-mail="(\d+)"', html)
        more = re.search(r'<a rel="next" href="([^"]+)"', html)
        url = more.group(1).replace("&amp;", "&") if more else ""
    assert seen == [str(i) for i in reversed(ids)]
    for odd in ("abc", "-1", "9" * 30, "0"):
        r = sup.get(f"/board/mail/quarantine?before={odd}")
        assert r.status_code == 200
        assert re.findall(r'<tr data-mail="(\d+)"', r.get_data(as_text=True))[0] == str(ids[-1])


def test_make_a_case_of_a_quarantined_mail_with_the_supervisors_text(
    runtime: Any, login_as: Any
) -> None:
    # A readable message that ingest failed on (the "bug" path): its text is offered.
    raw = mail("莲花路3号门前的井盖丢了，晚上很危险。", subject="井盖丢失")
    with runtime.sessions() as s:
        q = quarantine_raw(s, raw, mailbox=MAILBOX, reason="ingest failed", now=datetime.now(UTC))
        s.commit()
    sup = login_as("supervisor")
    page = sup.get(f"/board/mail/quarantine/{q.mail_id}").get_data(as_text=True)
    assert 'value="井盖丢失"' in page  # the subject header, decoded
    assert "莲花路3号门前的井盖丢了，晚上很危险。</textarea>" in page  # best-effort body
    assert f'value="{CITIZEN}"' in page and 'value="王小明"' in page

    r = sup.post(
        f"/board/mail/quarantine/{q.mail_id}",
        data={
            "csrf_token": csrf_from(page),
            "subject": "莲花路井盖丢失",
            "body": "莲花路3号门前井盖丢失，夜间危险（据原始邮件整理）。",
            "contact_name": "王小明",
            "contact_email": CITIZEN,
        },
        follow_redirects=True,
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    number = re.search(r"MS-\d{4}-\d{6}", r.request.path).group(0)  # type: ignore[union-attr]
    assert any(number in f for f in flashes(html))
    assert "莲花路3号门前井盖丢失，夜间危险（据原始邮件整理）。" in html
    assert "据隔离邮件登记" in html  # the timeline says where the case came from
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        assert case is not None and case.subject == "莲花路井盖丢失"
        assert case.contact_email == CITIZEN
        stored = s.get(IncomingMail, q.mail_id)
        assert stored is not None and stored.case_id == case.id
        assert stored.status == ListStatus.MADE_CASE
    # The raw message stays linked: on the case page, downloadable, byte for byte.
    assert f'href="/board/mail/{q.mail_id}/raw"' in html
    assert sup.get(f"/board/mail/{q.mail_id}/raw").get_data() == raw
    # Gone from the list, shown under "made into cases" with the case's number.
    listing = sup.get("/board/mail/quarantine").get_data(as_text=True)
    assert f'<tr data-mail="{q.mail_id}"' in listing.split('id="quarantine-recent"')[1]
    assert number in listing
    # A second submission makes no second case.
    again = sup.post(
        f"/board/mail/quarantine/{q.mail_id}",
        data={"csrf_token": csrf_from(page), "body": "再来一次"},
        follow_redirects=True,
    )
    assert again.status_code == 200 and case_count(runtime) == 1


def test_make_a_case_prefill_of_nested_mime_is_its_text_without_boundaries(
    runtime: Any, login_as: Any
) -> None:
    """A quarantined multipart (mixed > alternative, base64 GBK and quoted-printable HTML,
    with a forwarded message inside a bounce) offers the text, not the MIME scaffolding."""
    text = "莲花路3号门前的井盖丢了，朱镕基路口也是，晚上很危险。"
    inner = (
        b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        b"--alt\r\nContent-Type: text/plain; charset=gb2312\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(text.encode("gbk"))
        + b"--alt\r\nContent-Type: text/html; charset=gb2312\r\n\r\n<p>"
        + text.encode("gbk")
        + b"</p>\r\n--alt--\r\n"
    )
    nested = (
        (
            f"From: {CITIZEN}\r\nTo: {OFFICE}\r\nSubject: {b64('井盖丢失')}\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n--mix\r\n'
        ).encode()
        + inner
        + b"--mix--\r\n"
    )
    bounce = (
        bounce_of_unknown()
        .replace(b"--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n", b"")
        .replace(
            b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" + f"From: {OFFICE}\r\n".encode(),
            b"--B\r\nContent-Type: message/rfc822\r\n\r\nFrom: " + OFFICE.encode() + b"\r\n"
            b'Content-Type: multipart/mixed; boundary="mix"\r\n',
        )
        .replace(
            b"Subject: ack\r\n\r\n--B--",
            b"Subject: ack\r\n\r\n--mix\r\n" + inner + b"--mix--\r\n--B--",
        )
    )
    sup = login_as("supervisor")
    for raw in (nested, bounce):
        with runtime.sessions() as s:
            q = quarantine_raw(
                s, raw, mailbox=MAILBOX, reason="ingest failed", now=datetime.now(UTC)
            )
            s.commit()
        page = sup.get(f"/board/mail/quarantine/{q.mail_id}").get_data(as_text=True)
        textarea = re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.S)
        assert textarea is not None
        assert textarea.group(1).strip() == text
        assert "--mix" not in page and "Content-Type" not in page


def test_make_a_case_needs_a_text_and_says_so(runtime: Any, login_as: Any) -> None:
    q = take_in(runtime, GARBLED)
    sup = login_as("supervisor")
    page = sup.get(f"/board/mail/quarantine/{q.mail_id}").get_data(as_text=True)
    assert "</textarea>" in page  # nothing readable: an empty text to write
    r = sup.post(
        f"/board/mail/quarantine/{q.mail_id}",
        data={"csrf_token": csrf_from(page), "subject": "x", "body": "  "},
    )
    assert r.status_code == 400
    assert "请" in r.get_data(as_text=True)
    assert case_count(runtime) == 0
    assert row(runtime, q.mail_id).status == ListStatus.PENDING


# -- the suspected spam list -----------------------------------------------------------------


def test_spam_confirm_keeps_it_and_release_makes_exactly_one_case(
    runtime: Any, login_as: Any
) -> None:
    first = take_in(runtime, mail(SPAM, subject="代开发票", sender="ad@spam.example.cn"))
    second = take_in(
        runtime, mail(SPAM + " 另一封", subject="发票代开", sender="ad2@spam.example.cn")
    )
    assert first.outcome == second.outcome == Outcome.SUSPECTED_SPAM
    sup = login_as("supervisor")
    page = sup.get("/board/mail/spam").get_data(as_text=True)
    assert re.findall(r'<tr data-mail="(\d+)"', page) == [str(second.mail_id), str(first.mail_id)]
    assert "ad@spam.example.cn" in page and "代开发票" in page
    assert row(runtime, first.mail_id).reason in page  # the spam signals

    token = csrf_from(page)
    r = sup.post(
        f"/board/mail/spam/{first.mail_id}/confirm",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert r.status_code == 200
    assert row(runtime, first.mail_id).status == ListStatus.CONFIRMED_SPAM
    assert sup.get(f"/board/mail/{first.mail_id}/raw").get_data()  # kept, never deleted

    for _ in range(2):  # a double click
        r = sup.post(f"/board/mail/spam/{second.mail_id}/release", data={"csrf_token": token})
        assert r.status_code == 302
    assert case_count(runtime) == 1
    released = row(runtime, second.mail_id)
    assert released.status == ListStatus.RELEASED and released.case_id is not None
    html = sup.get("/board/mail/spam").get_data(as_text=True)
    assert "没有" in html.split('id="spam-list"')[1].split("</table>")[0]  # nothing waits
    with runtime.sessions() as s:
        number = s.get(Case, released.case_id).tracking_number  # type: ignore[union-attr]
    assert f'href="/board/cases/{number}"' in html  # the released one links to its case
    case_page = sup.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "从疑似垃圾邮件中放行" in case_page and "另一封" in case_page


# -- who may -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["observer", "urban", "operator"])
def test_no_other_role_reaches_any_list_download_or_action(
    who: str, runtime: Any, login_as: Any, client: Any
) -> None:
    spam = take_in(runtime, mail(SPAM, subject="代开发票", sender="ad@spam.example.cn"))
    q = take_in(runtime, GARBLED)
    sup_page = login_as("supervisor").get("/board/mail/spam").get_data(as_text=True)
    other = login_as(who)
    token = csrf_from(other.get("/account/password").get_data(as_text=True))
    gets = [
        "/board/mail/quarantine",
        "/board/mail/spam",
        f"/board/mail/{q.mail_id}/raw",
        f"/board/mail/{spam.mail_id}/raw",
        f"/board/mail/quarantine/{q.mail_id}",
    ]
    posts = [
        (f"/board/mail/quarantine/{q.mail_id}", {"body": "我来立案"}),
        (f"/board/mail/spam/{spam.mail_id}/confirm", {}),
        (f"/board/mail/spam/{spam.mail_id}/release", {}),
    ]
    for url in gets:
        r = other.get(url)
        assert r.status_code in (403, 404), url
        assert b"Return-Path" not in r.get_data() and GARBLED not in r.get_data()
    for url, data in posts:
        assert other.post(url, data={"csrf_token": token, **data}).status_code in (403, 404), url
    # Not signed in: to the sign-in page.
    for url in gets:
        assert client.get(url).status_code == 302
    assert 'href="/board/mail/quarantine"' not in other.get("/board/cases").get_data(as_text=True)
    assert case_count(runtime) == 0
    assert row(runtime, spam.mail_id).status == ListStatus.PENDING
    assert "代开发票" in sup_page


def test_actions_without_a_csrf_token_are_refused(runtime: Any, login_as: Any) -> None:
    spam = take_in(runtime, mail(SPAM, subject="代开发票", sender="ad@spam.example.cn"))
    q = take_in(runtime, GARBLED)
    sup = login_as("supervisor")
    for url, data in (
        (f"/board/mail/spam/{spam.mail_id}/release", {}),
        (f"/board/mail/spam/{spam.mail_id}/confirm", {}),
        (f"/board/mail/quarantine/{q.mail_id}", {"body": "没有令牌的立案"}),
    ):
        assert sup.post(url, data=data).status_code == 400, url
    assert case_count(runtime) == 0
    assert row(runtime, spam.mail_id).status == ListStatus.PENDING
    assert row(runtime, q.mail_id).status == ListStatus.PENDING


# -- the health panel ----------------------------------------------------------------------


def test_the_queue_shows_the_intake_health_with_links_to_the_lists(
    runtime: Any, login_as: Any
) -> None:
    take_in(runtime, mail(SPAM, subject="代开发票", sender="ad@spam.example.cn"))
    take_in(runtime, GARBLED)
    take_in(runtime, bounce_of_unknown())
    take_in(runtime, mail("莲花路路灯坏了，请修理。"))  # registered: one acknowledgment queued
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        record_fetch(s, MAILBOX, now=now, waiting=3)
        assert take_lease(s, lease_name(MAILBOX), "mx1:4242", now=now, ttl=timedelta(minutes=5))
        s.commit()

    sup = login_as("supervisor")
    html = sup.get("/board/queue").get_data(as_text=True)
    panel = html.split('id="intake-health"')[1].split("</section>")[0]
    assert "邮件受理" in panel
    assert re.search(r'id="intake-waiting">3<', panel)
    assert re.search(r'id="intake-quarantined"><a href="/board/mail/quarantine">2</a>', panel)
    assert re.search(r'id="intake-spam"><a href="/board/mail/spam">1</a>', panel)
    assert re.search(r'id="intake-outbox">\S+ 1 / 0<br><span id="intake-sms">\S+ 0 / 0<', panel)
    assert "mx1:4242" in panel
    assert "从未" not in panel.split('id="intake-last-fetch"')[1].split("</td>")[0]
    assert 'href="/board/mail/quarantine"' in html.split("</nav>")[0]  # the nav link


def test_the_panel_flags_a_watcher_that_holds_the_mailbox_but_does_not_fetch(
    runtime: Any, login_as: Any
) -> None:
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        record_fetch(s, MAILBOX, now=now - timedelta(minutes=10), waiting=0)
        # Its keeper thread still renews the lease: only the fetching is stuck.
        assert take_lease(s, lease_name(MAILBOX), "mx1:4242", now=now, ttl=timedelta(seconds=60))
        s.commit()
    sup = login_as("supervisor")

    def cell() -> str:
        html = sup.get("/board/queue").get_data(as_text=True)
        return html.split('id="intake-last-fetch"')[1].split("</td>")[0]

    def ago(html: str) -> str:
        return html.split('id="intake-ago">')[1].split("</span>")[0]

    stuck = cell()
    assert re.search(r"\b10\b", ago(stuck))  # minutes since the last successful fetch
    assert 'id="intake-stale"' in stuck

    with runtime.sessions() as s:
        record_fetch(s, MAILBOX, now=datetime.now(UTC), waiting=0)  # it fetched again
        s.commit()
    working = cell()
    assert re.search(r"\b0\b", ago(working)) and 'id="intake-stale"' not in working


def test_without_a_mailbox_the_panel_says_intake_is_not_enabled(
    tmp_path: Path, db_url: str, login_as: Any
) -> None:
    from tests.conftest import login
    from web import create_app

    app = create_app(make_settings(tmp_path / "plain", db_url), TESTING=True)
    try:
        sup = login(app.test_client(), "supervisor")
        html = sup.get("/board/queue").get_data(as_text=True)
        panel = html.split('id="intake-health"')[1].split("</section>")[0]
        assert "邮件受理未启用" in panel
        assert 'id="intake-quarantined"' not in panel  # no zeros that look like news
        assert 'href="/board/mail/quarantine"' not in html.split("</nav>")[0]
        # The lists still open (mail taken in before the mailbox was switched off).
        assert sup.get("/board/mail/quarantine").status_code == 200
    finally:
        app.extensions["minsheng"].engine.dispose()


# -- the case page ---------------------------------------------------------------------------


def test_a_threaded_reply_shows_on_the_case_to_its_department_and_masked_to_observers(
    runtime: Any, login_as: Any
) -> None:
    first = mail("莲花路路灯坏了，请修理。", message_id="<first@mail.example.com>")
    registered = take_in(runtime, first)
    with runtime.sessions() as s:
        case = s.get(Case, registered.case_id)
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        assert case is not None and urban is not None
        assign_case(case, urban, "supervisor", runtime.settings.deadlines(), datetime.now(UTC))
        number = case.tracking_number
        s.commit()
    reply = mail(
        "补充：我的电话是13812345678，坏的是第三根到第五根。",
        subject="还是没修",
        headers={"In-Reply-To": "<first@mail.example.com>"},
    )
    threaded = take_in(runtime, reply)
    assert threaded.outcome == Outcome.THREADED and threaded.case_id == registered.case_id

    handler = login_as("urban").get(f"/board/cases/{number}").get_data(as_text=True)
    section = handler.split('id="case-messages"')[1].split("</section>")[0]
    assert "补充：我的电话是13812345678，坏的是第三根到第五根。" in section
    assert CITIZEN in section and "还是没修" in section
    assert "群众来信已附入本件" in handler  # the timeline's label
    assert 'id="case-raw-mail"' not in handler  # no raw mail for handlers
    assert "/raw" not in handler

    observer = login_as("observer").get(f"/board/cases/{number}").get_data(as_text=True)
    section = observer.split('id="case-messages"')[1].split("</section>")[0]
    assert "坏的是第三根到第五根" in section
    assert "13812345678" not in observer and CITIZEN not in observer
    assert "/raw" not in observer

    sup = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    raws = re.findall(r'href="/board/mail/(\d+)/raw"', sup.split('id="case-raw-mail"')[1])
    assert raws == [str(registered.mail_id), str(threaded.mail_id)]
    assert login_as("transport").get(f"/board/cases/{number}").status_code == 404
