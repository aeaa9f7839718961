"""`minsheng report monthly`: the month's figures (triage/report/figures.py) as JSON or a
summary, the report email sent or written to a folder (triage/report/email.py).

    minsheng report monthly [--month YYYY-MM] [--json] [--send] [--to ADDR ...] [--output DIR]

The month defaults to the previous one (local time, [report] cutoff_day). ``--json`` prints
the figures as one JSON object (the keys of issue 11). ``--send`` queues one email in the
outbox to ``--to`` or else the configured recipients and sends the outbox; ``--output`` writes
``report.eml``, its HTML, text, charts and XLSX into DIR. Nothing else changes the database.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from triage.report.figures import (
    ReportPolicy,
    month_of,
    month_window,
    parse_month,
    shift_month,
)
from web.cli_common import config_option, settings, transaction
from web.runtime import Runtime
from web.settings import ConfigError, Settings


@click.group()
def report() -> None:
    """The monthly report: figures, email, spreadsheet."""


def _month(value: str | None, policy: ReportPolicy) -> str:
    now = datetime.now(UTC)
    if value is None:
        return shift_month(month_of(now, policy), -1)
    try:
        parse_month(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--month") from e
    try:
        # The month before is in the report, so it too must be a month the calendar has.
        start, _ = month_window(value, policy)
        month_window(shift_month(value, -1), policy)
    except (ValueError, OverflowError) as e:
        raise click.BadParameter(f"month {value!r} is out of range", param_hint="--month") from e
    if start > now:
        raise click.BadParameter(f"month {value.strip()} has not begun yet", param_hint="--month")
    return value.strip()


def _pct(value: float | None) -> str:
    return "无" if value is None else f"{value * 100:.1f}%"


def _summary(f: dict[str, Any]) -> str:
    lines = [
        f"{f['month']}: 受理 {f['received']} 件，有效回访 {f['valid_visits']} 件",
        f"响应率 {_pct(f['response_rate'])}，解决率 {_pct(f['resolution_rate'])}，"
        f"满意率 {_pct(f['satisfaction_rate'])}，综合得分 "
        + ("无" if f["composite"] is None else f"{f['composite'] * 100:.1f}"),
        f"按时办结率 {_pct(f['on_time_rate'])}，平均办理 "
        + (
            "无"
            if f["avg_handling_working_days"] is None
            else f"{f['avg_handling_working_days']:.1f} 个工作日"
        ),
        f"超期 {f['overdue']}，重办 {f['reworked']}，退回 {f['sent_back']}，"
        f"延期 {f['extended']}，重复投诉人 "
        + ("无数据" if f["repeat_complainants"] is None else str(f["repeat_complainants"])),
    ]
    for i, d in enumerate(f["departments"], 1):
        stars = "★" * d["stars"] if d["stars"] else "-"
        lines.append(
            f"  {i}. {d['name']} ({d['code']}) {stars} 综合 "
            + ("无" if d["composite"] is None else f"{d['composite'] * 100:.1f}")
            + f"，有效回访 {d['valid_visits']}"
        )
    for h in f["hot_issues"]:
        lines.append(f"  热点: {h['label']} ({h['count']} 件)")
    return "\n".join(lines)


def _recipients(s: Settings, to: tuple[str, ...]) -> list[str]:
    found = [a.strip() for a in to if a.strip()] or list(
        getattr(getattr(s, "report", None), "recipients", []) or []
    )
    for address in found:
        if not _ADDRESS.match(address):
            raise click.BadParameter(f"{address!r} is not a mail address", param_hint="--to")
    return found


# One bare address: a list ("a@x, b@y") or a display name would hide other recipients.
_ADDRESS = re.compile(r"^[^@\s,;<>\"()\[\]]+@[^@\s,;<>\"()\[\]]+$")


@report.command("monthly")
@config_option
@click.option("--month", "month_text", default=None, help="YYYY-MM (default: the previous month).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--send", is_flag=True, help="Send the report email.")
@click.option("--to", "to", multiple=True, help="A recipient instead of the configured ones.")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write report.eml, its HTML, charts and XLSX into this folder.",
)
def monthly_command(
    month_text: str | None, as_json: bool, send: bool, to: tuple[str, ...], output: Path | None
) -> None:
    """Compute the month's figures; print, send or write the report."""
    s = settings()
    policy = ReportPolicy.from_settings(s)
    month = _month(month_text, policy)
    if to and not send:
        raise click.UsageError("--to names the recipients of --send: add --send")
    recipients = _recipients(s, to) if send else []
    if send and not recipients:
        raise click.UsageError("no recipient: give --to ADDR or set [report] recipients")
    rt = Runtime.build(s)
    computed_at = datetime.now(UTC)
    with transaction(rt) as session:
        if not (send or output):
            figures = _figures(session, month, policy)
        else:
            figures = _deliver(rt, session, month, recipients, output)
    _store_snapshot(rt, month, figures, policy, computed_at)
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
    elif not (send or output):
        click.echo(_summary(figures))
    if send:
        _send_outbox(rt)


def _store_snapshot(
    rt: Runtime, month: str, figures: dict[str, Any], policy: ReportPolicy, computed_at: datetime
) -> None:
    """Keeps the figures for the dashboard and the public page (triage/report/snapshots.py):
    a superset of what they read. After the report's transaction: on SQLite a second
    connection cannot write while it holds the write lock."""
    from triage.report import snapshots

    snapshots.store(rt.engine, snapshots.FULL, month, figures, policy, computed_at)


def _figures(session: Any, month: str, policy: ReportPolicy) -> dict[str, Any]:
    from triage.report.figures import monthly_figures

    return monthly_figures(session, month, policy)


def _deliver(
    rt: Runtime, session: Any, month: str, recipients: list[str], output: Path | None
) -> dict[str, Any]:
    """Builds the report email once; queues it for `recipients` (recorded in report_sends,
    triage/report/delivery.py) and/or writes it into `output`. Returns its figures."""
    from triage.outbox import OutboxError
    from triage.report.delivery import send_report
    from triage.report.email import build_report, report_message, write_report_folder

    now = datetime.now(UTC)
    report_ = build_report(session, month, rt.settings, now=now)
    sender = rt.settings.mail.sender
    try:
        if output is not None:
            message = report_message(report_, sender=sender, to=recipients or [sender])
            try:
                written = write_report_folder(report_, message, output)
            except OSError as e:
                raise click.ClickException(
                    f"cannot write the report into {output}: {e.strerror or e}"
                ) from e
            click.echo(f"wrote {len(written)} files to {output}", err=True)
        if recipients:
            send_report(
                session,
                month,
                rt.settings,
                sender=sender,
                recipients=recipients,
                now=now,
                by="manual",
                report=report_,
            )
            click.echo(f"queued {report_.subject} to {', '.join(recipients)}", err=True)
    except OutboxError as e:
        raise click.ClickException(str(e)) from e
    return dict(report_.figures)


def _send_outbox(rt: Runtime) -> None:
    from web.mail import OutboxSender

    try:
        result = OutboxSender(rt.settings, rt.sessions).send_due()
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    out = result.as_dict()
    click.echo(
        f"outbox: sent {out.get('sent', 0)}, retried {out.get('retried', 0)}, "
        f"failed {out.get('failed', 0)}",
        err=True,
    )
    if out.get("server_error"):
        raise click.ClickException(f"the report waits in the outbox: {out['server_error']}")
