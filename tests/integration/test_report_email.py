"""The monthly report as leaders get it: built from the real figures (triage/report/figures.py)
over synthetic months of cases, queued in the outbox, sent to a real SMTP server (aiosmtpd),
and read back as a mail client would; the --output folder; the supervision tick that sends
it once on its day. Runs on SQLite and PostgreSQL (MINSHENG_TEST_DB)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from tests.conftest import make_settings
from tests.integration.test_outbox import Recorder
from tests.mailserver import free_port
from triage.models import Case, ReportSend
from triage.outbox import MailKind, OutgoingMail
from triage.report.delivery import send_report
from triage.report.email import build_report, pct, report_message, score, write_report_folder
from triage.report.figures import month_window, monthly_figures
from triage.supervision import run_tick
from web.cli_supervise import supervision_policy
from web.demo_volume import add_volume
from web.mail import OutboxSender

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
openpyxl = pytest.importorskip("openpyxl")

SENDER = "xiaonengban@example.gov.cn"
LEADERS = ["quzhang@example.gov.cn", "fuquzhang@example.gov.cn"]
# Data up to late November 2026; the report under test is October's.
DATA_UNTIL = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
MONTH = "2026-10"
RATES = ("response_rate", "resolution_rate", "satisfaction_rate", "on_time_rate")
DELAY_REASON = "施工单位材料未到，需协调供货"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, smtp_port: int) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        mail={"sender": SENDER, "port": smtp_port, "timeout_seconds": 5},
        report={"recipients": LEADERS, "send_day": 3},
        supervision={"digest_hour": 8},
    )


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[Recorder]:
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield recorder
    controller.stop()


@pytest.fixture
def months(runtime: Any) -> Any:
    """Four months of cases (about 110 a month) at realistic stages, and one department's
    own report of a delay in October."""
    with runtime.engine.begin() as conn:
        conn.execute(delete(ReportSend.__table__))  # PostgreSQL keeps rows between tests
        add_volume(conn, 440, months=4, now=DATA_UNTIL, seed=20261)
    start, end = month_window(MONTH, _policy(runtime))
    with runtime.sessions() as s, s.begin():
        case = s.scalars(
            select(Case)
            .where(Case.received_at >= start, Case.received_at < end)
            .where(Case.department_id.is_not(None))
            .order_by(Case.id)
        ).first()
        assert case is not None
        case.record("delay_reported", "handler", start + timedelta(days=10), reason=DELAY_REASON)
    return case.department_id


def _policy(runtime: Any) -> Any:
    from triage.report.figures import ReportPolicy

    return ReportPolicy.from_settings(runtime.settings)


def _figures(runtime: Any, month: str = MONTH) -> dict[str, Any]:
    with runtime.sessions() as s:
        return monthly_figures(s, month, runtime.settings)


def _parts(message: Any) -> dict[str, Any]:
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    images = {
        str(p["Content-ID"]).strip("<>"): p
        for p in message.walk()
        if p.get_content_maintype() == "image"
    }
    attachments = list(message.iter_attachments())
    return {"html": html, "text": text, "images": images, "attachments": attachments}


def test_the_sent_report_carries_the_figures_charts_and_workbook(
    runtime: Any, settings: Any, smtp: Recorder, months: Any
) -> None:
    now = DATA_UNTIL
    with runtime.sessions() as s, s.begin():
        sent = send_report(s, MONTH, settings, sender=SENDER, recipients=LEADERS[:1], now=now)
        assert sent.record.month == MONTH and sent.record.sent_by == "manual"
    OutboxSender(settings, runtime.sessions).send_due()
    figures = _figures(runtime)
    assert figures["received"] > 50 and figures["valid_visits"] > 0

    assert len(smtp.received) == 1
    _, rcpt, _ = smtp.received[0]
    assert rcpt == LEADERS[:1]
    message = smtp.messages()[0]
    assert str(message["Subject"]) == "民声月报 2026年10月"
    parts = _parts(message)

    # Every cid: of the HTML is an image part of the same multipart/related.
    html = parts["html"].get_content()
    cids = re.findall(r'src="cid:([^"]+)"', html)
    assert len(cids) == 3
    related = next(p for p in message.walk() if p.get_content_type() == "multipart/related")
    in_related = {str(p["Content-ID"]).strip("<>") for p in related.iter_parts() if p["Content-ID"]}
    for cid in cids:
        image = parts["images"][cid]
        assert image.get_content_type() == "image/png"
        assert image.get_content().startswith(b"\x89PNG\r\n\x1a\n")
        assert cid in in_related

    # The plain text carries the same numbers as the JSON figures (and so does the HTML).
    text = parts["text"].get_content()
    assert f"受理 {figures['received']} 件，有效回访 {figures['valid_visits']} 件" in text
    assert f"综合得分 {score(figures['composite'])}" in text
    for key in RATES:
        assert pct(figures[key]) in text, key
        assert pct(figures[key]) in html, key
    for key in ("overdue", "reworked", "sent_back", "extended"):
        assert f"{figures[key]} 件" in text
    ranked = [d for d in figures["departments"] if d["composite"] is not None]
    assert len(ranked) >= 2
    best, worst = ranked[0], ranked[-1]
    assert f"最好：{best['name']}，综合得分 {score(best['composite'])}" in text
    assert f"最差：{worst['name']}，综合得分 {score(worst['composite'])}" in text
    assert "★" * best["stars"] in text
    # The department that reported its delay has its own reason beside its name.
    assert DELAY_REASON in text and DELAY_REASON in html
    previous = figures["previous"]
    assert previous["month"] == "2026-09"

    # The workbook opens and its totals are the email's.
    (attachment,) = parts["attachments"]
    assert attachment.get_filename() == "minsheng-report-2026-10.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(attachment.get_content()))
    summary = {row[0]: row[1] for row in book["概况"].iter_rows(min_row=2, values_only=True)}
    assert summary["受理量（件）"] == figures["received"]
    assert summary["有效回访（件）"] == figures["valid_visits"]
    assert summary["解决率"] == pytest.approx(figures["resolution_rate"])
    # Some cases are in no department (rejected, merged, in triage): the department sheet
    # lists them on a row of their own, so that its total is the email's too.
    assert sum(figures["by_department"].values()) < figures["received"]
    for sheet in ("渠道", "类型", "部门受理"):
        rows = list(book[sheet].iter_rows(min_row=2, values_only=True))
        assert rows[-1] == ("合计", figures["received"])
        assert sum(n for _, n in rows[:-1]) == figures["received"]
    cases = list(book["工单清单"].iter_rows(min_row=2, values_only=True))
    assert len(cases) == figures["received"]
    ranking = list(book["星级排名"].iter_rows(min_row=2, values_only=True))
    assert [r[1] for r in ranking[: len(ranked)]] == [d["code"] for d in ranked]
    # Personal data is masked in the case list: no complainant's phone or name in full.
    start, end = month_window(MONTH, _policy(runtime))
    with runtime.sessions() as s:
        people = s.execute(
            select(Case.contact_phone, Case.contact_name).where(
                Case.received_at >= start, Case.received_at < end
            )
        ).all()
    cells = " ".join(str(c) for row in cases for c in row)
    for phone, name in people:
        assert not phone or phone not in cells
        assert len(name) < 2 or name not in cells


def test_the_output_folder_holds_the_email_its_pages_charts_and_workbook(
    runtime: Any, settings: Any, months: Any, tmp_path: Path
) -> None:
    with runtime.sessions() as s:
        report = build_report(s, MONTH, settings, now=DATA_UNTIL)
    message = report_message(report, sender=SENDER, to=LEADERS)
    out = tmp_path / "out"
    written = write_report_folder(report, message, out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "report.eml",
            "report.html",
            "report.txt",
            "volume.png",
            "rates.png",
            "categories.png",
            "minsheng-report-2026-10.xlsx",
        ]
    )
    assert sorted(written) == sorted(out.iterdir())
    html = (out / "report.html").read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs == ["volume.png", "rates.png", "categories.png"]
    for src in srcs:
        assert (out / src).read_bytes().startswith(b"\x89PNG")
    eml = message_from_bytes((out / "report.eml").read_bytes(), policy=policy.default)
    assert str(eml["Subject"]) == "民声月报 2026年10月"
    assert eml.get_body(("plain",)).get_content() == (out / "report.txt").read_text("utf-8")
    # The same figures draw the same charts, byte for byte (no time in the PNGs).
    with runtime.sessions() as s:
        again = build_report(s, MONTH, settings, now=DATA_UNTIL)
    assert again.charts == report.charts
    # The 12-month trend ends with the month's received count.
    assert report.trend[-1] == (MONTH, report.figures["received"])
    assert len(report.trend) == 12


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _reports(runtime: Any) -> list[OutgoingMail]:
    with runtime.sessions() as s:
        return list(s.scalars(select(OutgoingMail).where(OutgoingMail.kind == MailKind.REPORT)))


def test_the_tick_sends_the_previous_month_once_on_its_day(
    runtime: Any, settings: Any, smtp: Recorder, months: Any
) -> None:
    policy_ = supervision_policy(settings)
    # The day before, and the day itself before the digest hour: nothing.
    for moment in ("2026-12-02T09:00+08:00", "2026-12-03T07:59+08:00"):
        assert run_tick(runtime.sessions, _local(moment), policy_).report is None
    assert _reports(runtime) == []

    result = run_tick(runtime.sessions, _local("2026-12-03T08:05+08:00"), policy_)
    assert result.report == "2026-11"
    (mail,) = _reports(runtime)
    assert mail.subject == "民声月报 2026年11月"
    assert sorted(mail.recipients) == sorted(LEADERS)
    with runtime.sessions() as s:
        record = s.scalars(select(ReportSend)).one()
        assert (record.month, record.sent_by, record.message_id) == (
            "2026-11",
            "tick",
            mail.message_id,
        )

    # A re-run the same hour, another machine's tick later that day, the next day: no more.
    for moment, holder in (
        ("2026-12-03T08:06+08:00", None),
        ("2026-12-03T17:00+08:00", "other-machine:1"),
        ("2026-12-04T08:05+08:00", None),
    ):
        assert run_tick(runtime.sessions, _local(moment), policy_, holder=holder).report is None
    assert len(_reports(runtime)) == 1

    # The outbox sends what is due by the (test's) clock: the tick queued it in December.
    OutboxSender(
        settings, runtime.sessions, clock=lambda: _local("2026-12-05T00:00+08:00")
    ).send_due()
    reports = [m for m in smtp.messages() if str(m["Subject"]).startswith("民声月报")]
    assert len(reports) == 1
    figures = _figures(runtime, "2026-11")
    text = reports[0].get_body(("plain",)).get_content()
    assert f"受理 {figures['received']} 件" in text

    # Sending again takes a hand: it goes, and the month's record says so.
    with runtime.sessions() as s, s.begin():
        send_report(s, "2026-11", settings, sender=SENDER, recipients=LEADERS[:1], now=DATA_UNTIL)
    assert len(_reports(runtime)) == 2
    with runtime.sessions() as s:
        record = s.scalars(select(ReportSend)).one()
        assert record.sent_by == "manual" and record.recipients == LEADERS[:1]


def test_a_send_day_without_any_tick_is_caught_up_by_the_next(
    runtime: Any, settings: Any, months: Any
) -> None:
    policy_ = supervision_policy(settings)
    # No tick ran on the 3rd (the server was down): the first one on the 5th sends it, once.
    assert run_tick(runtime.sessions, _local("2026-12-05T10:00+08:00"), policy_).report == (
        "2026-11"
    )
    assert run_tick(runtime.sessions, _local("2026-12-06T10:00+08:00"), policy_).report is None
    (mail,) = _reports(runtime)
    assert mail.subject == "民声月报 2026年11月"


def test_no_tick_report_without_recipients_or_send_day(
    runtime: Any, tmp_path: Path, db_url: str, months: Any
) -> None:
    for report in ({"recipients": [], "send_day": 3}, {"recipients": LEADERS, "send_day": 0}):
        s = make_settings(tmp_path, db_url, report=report)
        result = run_tick(runtime.sessions, _local("2026-12-03T09:00+08:00"), supervision_policy(s))
        assert result.report is None
    assert _reports(runtime) == []


def test_a_month_without_cases_still_makes_a_readable_report(
    runtime: Any, settings: Any, months: Any
) -> None:
    with runtime.sessions() as s:
        report = build_report(s, "2025-01", settings, now=DATA_UNTIL)
    assert report.figures["received"] == 0 and report.figures["composite"] is None
    assert "受理 0 件，有效回访 0 件" in report.text
    assert "响应率 无" in report.text and "最好：" not in report.text
    assert "本月没有集中反映的问题。" in report.text
    book = openpyxl.load_workbook(io.BytesIO(report.xlsx))
    assert list(book["工单清单"].iter_rows(min_row=2, values_only=True)) == []
    assert list(book["渠道"].iter_rows(min_row=2, values_only=True)) == [("合计", 0)]
    assert all(png.startswith(b"\x89PNG") for png in report.charts.values())
    with runtime.sessions() as s, pytest.raises(ValueError, match="2025-13"):
        build_report(s, "2025-13", settings)
