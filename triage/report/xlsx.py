"""The monthly report's XLSX attachment (openpyxl): one sheet per table of the email, and the
month's case list with personal data masked.

``report_workbook(session, figures, ranking, start, end, tz, *, now) -> bytes``:

- 概况 (summary): every top-level number of the figures, with the month before;
- 渠道 / 类型 / 部门受理: volume by channel, kind and department (with a row for the cases in
  no department), each ending in a 合计 (total) row equal to the figures' ``received``;
- 星级排名: the departments by composite score, with stars, the three rates, on-time rate
  and their own delay reasons;
- 热点问题: the hot issues (label, count, masked example);
- 工单清单: the cases received in [start, end), one row each, from triage/export.py's
  masked records (``case_record(masked=True)``), every cell spreadsheet-safe
  (``csv_cell``: a text starting with "=" is never a formula); its row count is the number
  of cases received in the period.

Rates are stored as numbers (0–1) with a percentage format, None as an empty cell. The
workbook's properties carry no creation time, so the same figures give the same content.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from triage.case_people import people_by_case
from triage.export import case_record, csv_cell
from triage.models import Case, CaseEvent

CASE_COLUMNS = (
    ("tracking_number", "工单编号"),
    ("received_at", "受理时间"),
    ("channel", "渠道"),
    ("kind", "类型"),
    ("status", "状态"),
    ("department", "承办部门"),
    ("urgent", "紧急"),
    ("due_at", "办理期限"),
    ("extended_to", "延期至"),
    ("replied_at", "答复时间"),
    ("closed_at", "办结时间"),
    ("overdue", "逾期"),
    ("sent_back_count", "退回次数"),
    ("rework_count", "重办次数"),
    ("solved", "已解决"),
    ("satisfaction", "满意度"),
    ("contact_name", "联系人（脱敏）"),
    ("contact_phone", "电话（脱敏）"),
    ("subject", "标题（脱敏）"),
)
SUMMARY_KEYS = (
    ("received", "受理量（件）"),
    ("valid_visits", "有效回访（件）"),
    ("response_rate", "响应率"),
    ("resolution_rate", "解决率"),
    ("satisfaction_rate", "满意率"),
    ("composite", "综合得分"),
    ("on_time_rate", "按时办结率"),
    ("avg_handling_working_days", "平均办理用时（工作日）"),
    ("overdue", "逾期（件）"),
    ("reworked", "重办（件）"),
    ("sent_back", "退回（件）"),
    ("extended", "延期（件）"),
    ("repeat_complainants", "重复投诉人（人）"),
)
RATES = {"response_rate", "resolution_rate", "satisfaction_rate", "composite", "on_time_rate"}
BATCH = 500


def _header(ws: Worksheet, *titles: str) -> None:
    ws.append(list(titles))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.freeze_panes = "A2"


def _rate_cell(ws: Worksheet, row: int, col: int) -> None:
    ws.cell(row=row, column=col).number_format = "0.0%"


def _counts_sheet(
    wb: Workbook,
    title: str,
    heading: str,
    counts: Mapping[str, int] | None,
    names: Mapping[str, str],
    rest: tuple[str, int] | None = None,
) -> None:
    ws = wb.create_sheet(title)
    _header(ws, heading, "受理量（件）")
    items = sorted((counts or {}).items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    for key, n in items:
        ws.append([csv_cell(names.get(str(key), str(key))), int(n)])
    total = sum(int(n) for _, n in items)
    if rest is not None and rest[1]:
        ws.append(list(rest))
        total += rest[1]
    ws.append(["合计", total])
    ws.cell(row=ws.max_row, column=1).font = Font(bold=True)
    ws.column_dimensions["A"].width = 24


def month_cases(session: Session, start: datetime, end: datetime) -> Any:
    """(case, its event count, the people its texts are masked of: `triage.case_people`)
    of the cases received in [start, end), oldest first, in batches with what
    ``case_record`` reads loaded (one query per relation and batch, never per case)."""
    last = 0
    while True:
        cases = session.scalars(
            select(Case)
            .where(Case.received_at >= start, Case.received_at < end, Case.id > last)
            .order_by(Case.id)
            .limit(BATCH)
            .options(
                selectinload(Case.department),
                selectinload(Case.suggested_department),
                selectinload(Case.visits),
                selectinload(Case.merged_into),
            )
        ).all()
        if not cases:
            return
        ids = [c.id for c in cases]
        events = dict(
            session.execute(
                select(CaseEvent.case_id, func.count())
                .where(CaseEvent.case_id.in_(ids))
                .group_by(CaseEvent.case_id)
            ).all()
        )
        people = people_by_case(session, ids)
        yield from ((c, int(events.get(c.id, 0)), people.get(c.id)) for c in cases)
        last = ids[-1]


def report_workbook(
    session: Session,
    figures: Mapping[str, Any],
    ranking: Sequence[Any],
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    *,
    now: datetime,
) -> bytes:
    """The workbook's bytes (see the module docstring); ``ranking`` is
    triage.report.email.rank_departments' list."""
    from triage.report.email import CHANNEL_NAMES, KIND_NAMES, stars

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "概况"
    _header(ws, "指标", str(figures.get("month")), "上月")
    previous = figures.get("previous") or {}
    for key, label in SUMMARY_KEYS:
        ws.append([label, figures.get(key), previous.get(key)])
        if key in RATES:
            _rate_cell(ws, ws.max_row, 2)
            _rate_cell(ws, ws.max_row, 3)
    ws.column_dimensions["A"].width = 26

    _counts_sheet(wb, "渠道", "渠道", figures.get("by_channel"), CHANNEL_NAMES)
    _counts_sheet(wb, "类型", "类型", figures.get("by_kind"), KIND_NAMES)
    names = {str(d.get("code")): str(d.get("name")) for d in figures.get("departments") or []}
    # Cases in no department (in triage, rejected, merged) are in `received` but in no
    # department: a row of their own, so that this total too is the email's.
    assigned = sum(int(n) for n in (figures.get("by_department") or {}).values())
    unassigned = int(figures.get("received") or 0) - assigned
    _counts_sheet(
        wb,
        "部门受理",
        "部门",
        figures.get("by_department"),
        names,
        rest=("未分派（待分派、无效或已合并）", unassigned),
    )

    ws = wb.create_sheet("星级排名")
    _header(
        ws,
        "名次",
        "部门代码",
        "部门",
        "星级",
        "有效回访",
        "响应率",
        "解决率",
        "满意率",
        "综合得分",
        "按时办结率",
        "自报延误原因",
    )
    for d in ranking:
        g = d.figures
        ws.append(
            [
                d.rank or None,
                d.code,
                csv_cell(d.name),
                stars(g.get("stars")),
                g.get("valid_visits"),
                g.get("response_rate"),
                g.get("resolution_rate"),
                g.get("satisfaction_rate"),
                g.get("composite"),
                g.get("on_time_rate"),
                csv_cell("；".join(f"{r}（{n}）" for r, n in d.delay_reasons)),
            ]
        )
        for col in range(6, 11):
            _rate_cell(ws, ws.max_row, col)
    ws.column_dimensions["C"].width = 20

    ws = wb.create_sheet("热点问题")
    _header(ws, "问题", "件数", "例（脱敏）")
    from triage.report.email import _hot

    for h in _hot(figures, limit=len(figures.get("hot_issues") or [])):
        ws.append([csv_cell(h["label"]), h["count"], csv_cell(h["example"])])

    ws = wb.create_sheet("工单清单")
    _header(ws, *(title for _, title in CASE_COLUMNS))
    for case, events, people in month_cases(session, start, end):
        record = case_record(case, events, tz, masked=True, now=now, people=people)
        ws.append([csv_cell(record.get(key)) for key, _ in CASE_COLUMNS])
    ws.column_dimensions["A"].width = 18
    ws.column_dimensions["B"].width = 26

    wb.properties.creator = "Minsheng"
    fixed = datetime(2000, 1, 1)
    wb.properties.created = fixed
    wb.properties.modified = fixed
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
