"""The monthly report as leaders read it: one HTML email in Chinese (single column, inline
CSS, readable on a phone in a minute), a plain-text part with the same numbers, the charts
inline (``cid:`` images in multipart/related) and the XLSX attachment.

Public functions:

- ``build_report(session, month, settings, *, now=None) -> MonthlyReport``: computes the
  month's figures with ``triage.report.figures.monthly_figures`` (the only source of every
  number shown), the 12-month volume trend, each department's own delay reasons, the
  charts (triage/report/charts.py) and the XLSX (triage/report/xlsx.py). ``month`` is
  ``"YYYY-MM"``; ``settings`` is the web Settings object (duck-typed: ``app.timezone``,
  ``app.office_name``, ``app.base_url`` and what ``monthly_figures`` reads). Raises
  ValueError for a month that is not ``YYYY-MM``.
- ``report_message(report, *, sender, to) -> email.message.Message``: the finished message
  (triage.outbox.build_message), for ``triage.outbox.enqueue`` or for writing to a file.
- ``write_report_folder(report, message, folder) -> list[Path]``: ``report.eml``,
  ``report.html`` (its images pointing to the PNG files beside it), ``report.txt``, the
  chart PNGs and the XLSX, in ``folder`` (created if missing); returns the paths written.
- ``subject_of(month) -> str``: ``"民声月报 2026年10月"``.

Rates are shown as per cents with one decimal (``87.5%``), a rate of None as ``无``;
changes from the month before in percentage points.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from triage.case_people import people_by_case
from triage.models import Case, CaseEvent, Department
from triage.outbox import FileAttachment, InlineImage, build_message
from triage.privacy import People, mask_text
from triage.report import charts
from triage.report.figures import (
    ReportPolicy,
    month_window,
    monthly_figures,
    parse_month,
    shift_month,
)

RATE_KEYS = ("response_rate", "resolution_rate", "satisfaction_rate", "composite", "on_time_rate")
RATE_NAMES = {
    "response_rate": "响应率",
    "resolution_rate": "解决率",
    "satisfaction_rate": "满意率",
    "composite": "综合得分",
    "on_time_rate": "按时办结率",
}
CHANNEL_NAMES = {
    "web": "网站",
    "email": "电子邮件",
    "phone": "电话",
    "call_log": "话务中心导入",
    "letter": "信件",
    "visit": "来访",
    "api": "接口",
}
KIND_NAMES = {"complaint": "投诉", "suggestion": "建议", "inquiry": "咨询", "praise": "表扬"}
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHART_FILES = ("volume.png", "rates.png", "categories.png")
DELAY_REASONS_PER_DEPARTMENT = 3


def pct(value: float | None) -> str:
    """0.875 → "87.5%"; None → "无" (nothing to divide by)."""
    return "无" if value is None else f"{value * 100:.1f}%"


def score(value: float | None) -> str:
    """The composite score as points out of 100: 0.8123 → "81.2"; None → "无"."""
    return "无" if value is None else f"{value * 100:.1f}"


def delta(now: float | None, before: float | None) -> str:
    """The change in percentage points: "+2.5 个百分点", "持平", or "无可比" """
    if now is None or before is None:
        return "无可比"
    d = round((now - before) * 100, 1)
    if d == 0:
        return "持平"
    return f"{d:+.1f} 个百分点"


def stars(n: int | None) -> str:
    n = max(0, min(5, int(n or 0)))
    return "★" * n + "☆" * (5 - n)


def subject_of(month: str) -> str:
    return f"民声月报 {month_label(month)}"


@dataclass(frozen=True)
class DepartmentLine:
    """One row of the ranking: the figures' department plus its own delay reasons."""

    rank: int
    code: str
    name: str
    figures: Mapping[str, Any]
    delay_reasons: list[tuple[str, int]] = field(default_factory=list)

    @property
    def stars(self) -> str:
        return stars(self.figures.get("stars"))


@dataclass(frozen=True)
class MonthlyReport:
    """Everything one month's report shows; ``figures`` is monthly_figures' dict as is."""

    month: str
    figures: dict[str, Any]
    ranking: list[DepartmentLine]
    trend: list[tuple[str, int]]
    subject: str
    html: str
    text: str
    charts: dict[str, bytes]
    xlsx: bytes
    office_name: str

    @property
    def xlsx_name(self) -> str:
        return f"minsheng-report-{self.month}.xlsx"

    @property
    def best(self) -> DepartmentLine | None:
        rated = [d for d in self.ranking if d.figures.get("composite") is not None]
        return rated[0] if rated else None

    @property
    def worst(self) -> DepartmentLine | None:
        rated = [d for d in self.ranking if d.figures.get("composite") is not None]
        return rated[-1] if len(rated) >= 2 else None


# -- data besides the figures -----------------------------------------------------------


def volume_trend(
    session: Session,
    month: str,
    policy: ReportPolicy,
    months: int = 12,
    until: datetime | None = None,
    department_id: int | None = None,
) -> list[tuple[str, int]]:
    """Cases received in each of the ``months`` statistical months ending with ``month``
    (the figures' ``received``: every status, by ``received_at``), oldest first:
    ``[("2025-11", 812), …]``; ``until`` cuts the last month short; ``department_id``
    counts one department's cases only (its current department). One range count per
    month, each served by the index on ``cases.received_at`` (or the department's)."""
    out: list[tuple[str, int]] = []
    for k in range(months - 1, -1, -1):
        m = shift_month(month, -k)
        start, end = month_window(m, policy)
        if until is not None:
            end = min(end, until)
        n = session.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.received_at >= start, Case.received_at < end)
            .where(Case.department_id == department_id if department_id is not None else true())
        )
        out.append((m, int(n or 0)))
    return out


def month_label(month: str) -> str:
    """``"2026-10"`` → ``"2026年10月"``."""
    year, mon = parse_month(month)
    return f"{year}年{mon}月"


def delay_reasons(
    session: Session, start: datetime, end: datetime, per_department: int = 3
) -> dict[str, list[tuple[str, int]]]:
    """Each department's own delay reports (自律: ``delay_reported`` events) written in
    [start, end), by department code: the most frequent reasons with their counts, masked
    like free text (a reason may name the complainant, or the citizen of a case merged with
    theirs: `triage.case_people`). One query, and a few for the people of their cases."""
    rows = session.execute(
        select(Department.code, CaseEvent.case_id, CaseEvent.reason)
        .select_from(CaseEvent)
        .join(Case, Case.id == CaseEvent.case_id)
        .join(Department, Department.id == Case.department_id)
        .where(CaseEvent.action == "delay_reported", CaseEvent.at >= start, CaseEvent.at < end)
    ).all()
    people = people_by_case(session, {case_id for _code, case_id, _reason in rows})
    counted: dict[str, Counter[str]] = defaultdict(Counter)
    for code, case_id, reason in rows:
        masked = people.get(case_id, People()).mask(reason or "")
        counted[code][" ".join(masked.split())[:120] or "（未写原因）"] += 1
    found = {code: list(c.items()) for code, c in counted.items()}
    return {
        code: sorted(reasons, key=lambda r: (-r[1], r[0]))[:per_department]
        for code, reasons in found.items()
    }


def rank_departments(
    figures: Mapping[str, Any], reasons: Mapping[str, list[tuple[str, int]]]
) -> list[DepartmentLine]:
    """The figures' departments by composite score, highest first (departments with no valid
    visit, composite None, last, by code); ranks 1, 2, … over the rated ones only."""
    depts = list(figures.get("departments") or [])
    rated = sorted(
        (d for d in depts if d.get("composite") is not None),
        key=lambda d: (-float(d["composite"]), str(d.get("code"))),
    )
    unrated = sorted((d for d in depts if d.get("composite") is None), key=lambda d: str(d["code"]))
    lines = []
    for i, d in enumerate([*rated, *unrated]):
        code = str(d.get("code"))
        lines.append(
            DepartmentLine(
                rank=i + 1 if d.get("composite") is not None else 0,
                code=code,
                name=str(d.get("name") or code),
                figures=d,
                delay_reasons=list(reasons.get(code, [])),
            )
        )
    return lines


def categories(
    figures: Mapping[str, Any], labels: Mapping[str, str] | None = None
) -> list[tuple[str, int]]:
    """The month's volume by kind of submission (诉求类型: 投诉 / 建议 / 咨询 / 表扬, the
    figures' ``by_kind``), named by `labels` (default: the Chinese names); a kind without a
    name keeps its code. The departments have their own chart (the three rates)."""
    names = KIND_NAMES if labels is None else labels
    return [
        (str(names.get(kind, kind)), int(n)) for kind, n in (figures.get("by_kind") or {}).items()
    ]


def report_charts(
    figures: Mapping[str, Any], ranking: Sequence[DepartmentLine], trend: Sequence[tuple[str, int]]
) -> dict[str, bytes]:
    """The three charts, by file name (``CHART_FILES``)."""
    month = str(figures.get("month"))
    return {
        "volume.png": charts.volume_trend_png(
            trend, title=f"近12个月受理量（截至{month_label(month)}）"
        ),
        "rates.png": charts.rates_by_department_png(
            [{"name": d.name, **d.figures} for d in ranking if d.figures.get("valid_visits")],
            title=f"{month_label(month)}各部门三率",
        ),
        "categories.png": charts.categories_png(
            categories(figures), title=f"{month_label(month)}受理量（按诉求类型）"
        ),
    }


# -- rendering ---------------------------------------------------------------------------

# Inline CSS only (email.html): mail clients drop <style> blocks and external sheets.
_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_ENV.filters.update(pct=pct, score=score)
_ENV.globals.update(delta=delta, RATE_NAMES=RATE_NAMES)

HTML = _ENV.get_template("email.html")


def _reasons_text(d: DepartmentLine) -> str:
    if not d.delay_reasons:
        return "；本月未报告延误。"
    return "；自报延误原因：" + "；".join(f"{r}（{n} 件）" for r, n in d.delay_reasons) + "。"


def _verdict(label: str, d: DepartmentLine) -> str:
    composite = score(d.figures.get("composite"))
    return f"{label}：{d.name}，综合得分 {composite}（{d.stars}）{_reasons_text(d)}"


def _days(value: float | None) -> str:
    return "无" if value is None else f"{value:.1f} 个工作日"


def _counts(mapping: Mapping[str, int] | None, names: Mapping[str, str]) -> str:
    items = sorted((mapping or {}).items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    return "、".join(f"{names.get(str(k), str(k))} {v}" for k, v in items) or "无"


def _period(month: str, policy: ReportPolicy, until: datetime | None = None) -> str:
    start, end = month_window(month, policy)
    if until is not None:
        end = min(end, until)
    tz = policy.timezone
    last_day = (end.astimezone(tz) - timedelta(seconds=1)).date()
    return f"统计期 {start.astimezone(tz).date().isoformat()} 至 {last_day.isoformat()}"


def render_html(
    report_figures: Mapping[str, Any],
    ranking: Sequence[DepartmentLine],
    *,
    subject: str,
    office_name: str,
    period: str,
    base_url: str = "",
    xlsx_name: str = "",
    images: Sequence[tuple[str, str]] = (),
) -> str:
    """The HTML part; ``images`` are ``(cid, alt text)`` in the order shown."""
    f = report_figures
    rated = [d for d in ranking if d.figures.get("composite") is not None]
    return HTML.render(
        subject=subject,
        office_name=office_name,
        period=period,
        f=f,
        p=f.get("previous") or {},
        rate_keys=("response_rate", "resolution_rate", "satisfaction_rate", "on_time_rate"),
        days=_days(f.get("avg_handling_working_days")),
        channels=_counts(f.get("by_channel"), CHANNEL_NAMES),
        kinds=_counts(f.get("by_kind"), KIND_NAMES),
        best=rated[0] if rated else None,
        worst=rated[-1] if len(rated) >= 2 else None,
        reasons=_reasons_text,
        ranking=ranking,
        hot=_hot(f),
        images=images,
        xlsx_name=xlsx_name,
        base_url=base_url.rstrip("/"),
    )


def _hot(f: Mapping[str, Any], limit: int = 5) -> list[dict[str, Any]]:
    """The top ``limit`` hot issues with their examples masked like free text."""
    return [
        {
            "label": str(h.get("label", "")),
            "count": int(h.get("count", 0)),
            "example": " ".join(mask_text(str(h.get("example") or "")).split())[:80],
        }
        for h in (f.get("hot_issues") or [])[:limit]
    ]


def render_text(
    report_figures: Mapping[str, Any],
    ranking: Sequence[DepartmentLine],
    *,
    subject: str,
    office_name: str,
    period: str,
    xlsx_name: str = "",
) -> str:
    """The plain-text part: the same numbers as the HTML, in the same formats."""
    f = report_figures
    p = f.get("previous") or {}
    lines = [subject, f"{office_name} · {period}", "", "【本月概况】"]
    lines.append(f"受理 {f.get('received')} 件，有效回访 {f.get('valid_visits')} 件")
    lines.append(
        f"综合得分 {score(f.get('composite'))}（{delta(f.get('composite'), p.get('composite'))}）"
    )
    for key in ("response_rate", "resolution_rate", "satisfaction_rate", "on_time_rate"):
        lines.append(f"{RATE_NAMES[key]} {pct(f.get(key))}（{delta(f.get(key), p.get(key))}）")
    lines.append(f"平均办理用时 {_days(f.get('avg_handling_working_days'))}")
    lines.append(
        f"逾期 {f.get('overdue')} 件，重办 {f.get('reworked')} 件，退回 {f.get('sent_back')} 件，"
        f"延期 {f.get('extended')} 件，重复投诉人 {f.get('repeat_complainants')} 人"
    )
    lines.append(f"渠道：{_counts(f.get('by_channel'), CHANNEL_NAMES)}")
    lines.append(f"类型：{_counts(f.get('by_kind'), KIND_NAMES)}")
    rated = [d for d in ranking if d.figures.get("composite") is not None]
    if rated:
        lines += ["", "【做得好与需改进】"]
        lines.append(_verdict("最好", rated[0]))
        if len(rated) >= 2:
            lines.append(_verdict("最差", rated[-1]))
    lines += ["", "【星级科室排名】（名次 部门 星级 综合 响应 解决 满意 按时）"]
    for d in ranking:
        g = d.figures
        lines.append(
            f"{d.rank or '—'} {d.name} {d.stars} {score(g.get('composite'))} "
            f"{pct(g.get('response_rate'))} {pct(g.get('resolution_rate'))} "
            f"{pct(g.get('satisfaction_rate'))} {pct(g.get('on_time_rate'))}"
        )
        if d.delay_reasons:
            lines.append("  自报延误：" + "；".join(f"{r}（{n} 件）" for r, n in d.delay_reasons))
    lines += ["", "【热点问题】"]
    hot = _hot(f)
    if not hot:
        lines.append("本月没有集中反映的问题。")
    for i, h in enumerate(hot, 1):
        lines.append(
            f"{i}. {h['label']}（{h['count']} 件）"
            + (f" 例：{h['example']}" if h["example"] else "")
        )
    lines += [
        "",
        f"明细见附件 {xlsx_name}（个人信息已脱敏）。",
        office_name,
        "（本邮件由民声系统自动发送）",
        "",
    ]
    return "\n".join(lines)


# -- assembling --------------------------------------------------------------------------


def build_report(
    session: Session, month: str, settings: Any, *, now: datetime | None = None
) -> MonthlyReport:
    """The month's report (see the module docstring); reads, never writes."""
    from triage.report.xlsx import report_workbook

    parse_month(month)
    now = now or datetime.now(UTC)
    policy = ReportPolicy.from_settings(settings)
    tz = policy.timezone
    figures = dict(monthly_figures(session, month, policy))
    start, end = month_window(month, policy)
    reasons = delay_reasons(session, start, end, DELAY_REASONS_PER_DEPARTMENT)
    ranking = rank_departments(figures, reasons)
    trend = volume_trend(session, month, policy, 12)
    office = str(getattr(settings.app, "office_name", ""))
    subject = subject_of(month)
    period = _period(month, policy)
    chart_png = report_charts(figures, ranking, trend)
    xlsx_name = f"minsheng-report-{month}.xlsx"
    images = [
        (_cid(month, name), alt)
        for name, alt in zip(
            CHART_FILES, ("近12个月受理量", "各部门三率", "受理量（按诉求类型）"), strict=True
        )
    ]
    html = render_html(
        figures,
        ranking,
        subject=subject,
        office_name=office,
        period=period,
        base_url=str(getattr(settings.app, "base_url", "")),
        xlsx_name=xlsx_name,
        images=images,
    )
    text = render_text(
        figures, ranking, subject=subject, office_name=office, period=period, xlsx_name=xlsx_name
    )
    xlsx = report_workbook(session, figures, ranking, start, end, tz, now=now)
    return MonthlyReport(
        month=month,
        figures=figures,
        ranking=ranking,
        trend=trend,
        subject=subject,
        html=html,
        text=text,
        charts=chart_png,
        xlsx=xlsx,
        office_name=office,
    )


def _cid(month: str, filename: str) -> str:
    return f"{filename.removesuffix('.png')}.{month}@minsheng.report"


def report_message(report: MonthlyReport, *, sender: str, to: Sequence[str]) -> Message:
    """The report as one message: multipart/mixed(alternative(text, related(html, PNGs)),
    XLSX). Raises triage.outbox.OutboxError for a bad address."""
    return build_message(
        sender=sender,
        to=list(to),
        subject=report.subject,
        text=report.text,
        html=report.html,
        inline_images=[
            InlineImage(cid=_cid(report.month, name), data=report.charts[name])
            for name in CHART_FILES
        ],
        attachments=[FileAttachment(report.xlsx_name, report.xlsx, XLSX_CONTENT_TYPE)],
    )


_CID_SRC = re.compile(r'src="cid:([^"]+)"')


def write_report_folder(report: MonthlyReport, message: Message, folder: Path) -> list[Path]:
    """Writes the report's files into ``folder`` (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_cid = {_cid(report.month, name): name for name in CHART_FILES}
    html = _CID_SRC.sub(lambda m: f'src="{by_cid.get(m.group(1), m.group(1))}"', report.html)
    written: list[Path] = []

    def put(name: str, data: bytes) -> None:
        path = folder / name
        path.write_bytes(data)
        written.append(path)

    put("report.eml", message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
    put("report.html", html.encode("utf-8"))
    put("report.txt", report.text.encode("utf-8"))
    for name in CHART_FILES:
        put(name, report.charts[name])
    put(report.xlsx_name, report.xlsx)
    return written
