"""The satisfaction link in a real browser, on a phone screen: the citizen submits a complaint
with an address, the department replies, the reply notice reaches a real SMTP server
(aiosmtpd); the citizen opens the link from that mail, answers, sees the thanks; opening it
again says it was answered already."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_walkthrough import DESKTOP, PHONE, screenshot, sign_in
from tests.conftest import login, make_settings
from tests.integration.helpers import post_form
from tests.integration.test_outbox import Recorder
from tests.mailserver import free_port
from triage.models import Case, Status
from web.mail import OutboxSender

pytestmark = pytest.mark.browser
aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

REPLY = "已安排维修班组于本周五前更换明德路路灯灯具，并检查线路。"
CITIZEN = "zhou.qi@example.com"


@pytest.fixture
def web_port() -> int:
    return free_port()


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, web_port: int, smtp_port: int) -> Any:
    # The links in the mail point at the server the browser talks to.
    return make_settings(
        tmp_path,
        db_url,
        app={"base_url": f"http://127.0.0.1:{web_port}"},
        mail={"sender": "xiaonengban@example.gov.cn", "port": smtp_port},
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


@pytest.fixture
def site(app: Any, web_port: int) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", web_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{web_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[Recorder]:
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield recorder
    controller.stop()


def test_the_citizen_answers_from_the_mail_and_a_second_visit_says_answered(
    chromium: Any, site: str, app: Any, smtp: Recorder, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    runtime = app.extensions["minsheng"]
    phone = chromium.new_context(**PHONE, locale="zh-CN", base_url=site).new_page()
    phone.goto("/complain")
    phone.fill("#subject", "路灯不亮")
    phone.fill("#body", "明德路12号路灯坏了一个月，晚上很黑。")
    phone.fill("#email", CITIZEN)
    phone.click("main form button[type=submit]")
    phone.wait_for_url(re.compile(r"/receipt/"))
    number = phone.inner_text("#tracking-number").strip()

    with runtime.sessions() as s:
        case_id = s.query(Case.id).filter(Case.tracking_number == number).scalar()
    supervisor = login(app.test_client(), "supervisor")
    assert (
        post_form(
            supervisor,
            "/board/queue",
            f"/board/cases/{number}/assign",
            {f"c{case_id}-department": "urban"},
        ).status_code
        == 302
    )
    urban = login(app.test_client(), "urban")
    assert (
        post_form(
            urban, f"/board/cases/{number}", f"/board/cases/{number}/reply", {"reply-text": REPLY}
        ).status_code
        == 302
    )
    OutboxSender(runtime.settings, runtime.sessions, worker="test").send_due()
    mails = [message_from_bytes(raw, policy=policy.default) for _, _, raw in smtp.received]
    replied = next(m for m in mails if "已答复" in str(m["Subject"]))
    html = replied.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    link = re.search(r'href="([^"]*/satisfaction/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert link.startswith(site)

    phone.goto(link)
    expect(phone.locator("#reply-text")).to_have_text(REPLY)
    expect(phone.locator("#tracking-number")).to_have_text(number)
    # Readable on a phone: nothing wider than the screen.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.get_by_label("已解决", exact=True).check()
    phone.get_by_label("满意", exact=True).check()
    phone.fill("#comment", "修得很快，谢谢！")
    screenshot(phone, tmp_path / "satisfaction-form.png")
    phone.click("#satisfaction-form button[type=submit]")
    expect(phone.locator("#satisfaction-state")).to_have_text("感谢您的评价")
    screenshot(phone, tmp_path / "satisfaction-thanks.png")

    with runtime.sessions() as s:
        case = s.get(Case, case_id)
        assert case.status == Status.VISITED
        (visit,) = case.visits
        assert (visit.channel, visit.valid, visit.satisfaction) == ("web", True, "satisfied")

    again = chromium.new_context(**PHONE, locale="zh-CN", base_url=site).new_page()
    again.goto(link)
    expect(again.locator("#satisfaction-state")).to_have_text("您已经评价过了")
    expect(again.locator("#satisfaction-form")).to_have_count(0)

    # The office reads the visit in its own language: the citizen's words as they wrote
    # them, and that they came through the link (not a sentence stored in Chinese).
    office = chromium.new_context(**DESKTOP, base_url=site).new_page()
    sign_in(office, "supervisor")
    office.goto(f"/board/cases/{number}")
    visit = office.locator("p.visit")
    expect(visit).to_contain_text("经满意度评价链接回复")
    expect(visit).to_contain_text("修得很快，谢谢！")
    office.click("header a[href^='/lang/en']")
    visit = office.locator("p.visit")
    expect(visit).to_contain_text("answered through the satisfaction link")
    expect(visit).to_contain_text("修得很快，谢谢！")
    expect(visit).not_to_contain_text("网上回访")
    with runtime.sessions() as s:
        assert s.get(Case, case_id).visits[0].note == "修得很快，谢谢！"  # type: ignore[union-attr]
