"""`minsheng supervise …`: the supervision tick (triage/supervision.py) from cron or a loop.

`tick` evaluates every open case, stores the findings, queues the reminders, escalations and
the daily digest that fell due, draws the spot-check sample when it is due, then sends the
outbox as `minsheng outbox send` does. `run` repeats it every `--every` seconds for
deployments without cron. Both may run on several machines: one tick at a time holds the
lease, the others skip. `--json` prints one object per tick (see TickResult.as_dict, plus
"sent", "retried", "failed", "server_error" of the outbox).
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime
from typing import Any

import click

from triage.models import utcnow
from triage.report.delivery import report_schedule
from triage.rules import RulesPolicy
from triage.supervision import SupervisionPolicy, TickResult, run_tick
from web.cli_common import config_option, settings
from web.mail import OutboxSender
from web.runtime import Runtime
from web.settings import ConfigError, Settings


@click.group()
def supervise() -> None:
    """Supervision: evaluate the rules, queue reminders, escalations and the digest."""


def supervision_policy(s: Settings) -> SupervisionPolicy:
    """`[time_limits]`, `[supervision]`, `[mail]` and `[app]` as the tick takes them."""
    sup = s.supervision
    return SupervisionPolicy(
        rules=RulesPolicy(
            s.deadlines(),
            extensions_allowed=sup.extensions_allowed,
            reply_sign_off=sup.reply_sign_off,
            visit_attempts_before_close=sup.visit_attempts_before_close,
            send_hour=sup.digest_hour,
        ),
        sender=s.mail.sender,
        office_name=s.app.office_name,
        base_url=s.app.base_url,
        digest_hour=sup.digest_hour,
        supervisors=tuple(sup.supervisors_email),
        spot_checks=sup if sup.spot_check_sample > 0 else None,
        report=report_schedule(s),
    )


def _parse_now(value: str | None) -> datetime:
    if not value:
        return utcnow()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter(f"not an ISO time: {value!r}", param_hint="--now") from e
    if moment.tzinfo is None:
        raise click.BadParameter(
            "give a time zone, e.g. 2026-12-01T09:00+08:00", param_hint="--now"
        )
    return moment.astimezone(UTC)


def _one(rt: Runtime, now: datetime, send: bool) -> dict[str, Any]:
    # Mail cases whose suggestions and search rows an intake left undone (it was stopped
    # before its enrichment ran): triage/enrichment.py.
    from web.cli_intake import enrich_all

    enriched = enrich_all(rt, rt.intake_policy())
    result: TickResult = run_tick(rt.sessions, now, supervision_policy(rt.settings))
    out = result.as_dict()
    out["enriched"] = enriched
    if out.get("ran"):
        # The stored month figures the dashboard and the public page read (snapshots.py).
        from triage.report import snapshots
        from triage.report.figures import ReportPolicy

        with rt.sessions() as session:
            out["figures"] = snapshots.refresh(
                session, ReportPolicy.from_settings(rt.settings), now
            )
    if send:
        try:
            sender = OutboxSender(rt.settings, rt.sessions)
        except ConfigError as e:
            raise click.ClickException(str(e)) from e
        out.update(sender.send_due().as_dict())
    return out


def _echo(out: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    if not out["ran"]:
        click.echo(f"{out['now']}: another tick is running; nothing done")
        return
    click.echo(
        "{now}: {evaluated} cases, {findings} findings ({overdue} overdue, {at_risk} at risk); "
        "queued {reminders} reminders, {escalations} escalations, {digests} digests "
        "({no_address} without an address); {seconds} s".format(**out)
    )
    if out.get("spot_check_draw") is not None:
        click.echo(f"spot-check draw #{out['spot_check_draw']}")
    if out.get("report"):
        click.echo(f"monthly report {out['report']} queued")
    if "sent" in out:
        click.echo(f"outbox: sent {out['sent']}, retried {out['retried']}, failed {out['failed']}")
        if out.get("server_error"):
            click.echo(f"mail waits for the server: {out['server_error']}", err=True)


@supervise.command("tick")
@config_option
@click.option("--now", "now_text", default=None, help="Evaluate at this ISO time (with zone).")
@click.option("--no-send", is_flag=True, help="Queue the mail but do not send the outbox.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def tick_command(now_text: str | None, no_send: bool, as_json: bool) -> None:
    """One tick: findings, reminders, escalations, the daily digest; then send the outbox."""
    now = _parse_now(now_text)
    rt = Runtime.build(settings())
    _echo(_one(rt, now, not no_send), as_json)


@supervise.command("run")
@config_option
@click.option(
    "--every",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds between ticks.",
)
@click.option("--no-send", is_flag=True, help="Queue the mail but do not send the outbox.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tick.")
def run_command(every: float, no_send: bool, as_json: bool) -> None:
    """Tick every --every seconds until SIGTERM or Ctrl-C (for deployments without cron)."""
    rt = Runtime.build(settings())
    stopping = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping.is_set():
            try:
                _echo(_one(rt, utcnow(), not no_send), as_json)
            except click.ClickException:
                raise
            except Exception as e:  # a database outage must not end the loop
                click.echo(f"{utcnow():%Y-%m-%d %H:%M:%S} tick failed: {e}", err=True)
            stopping.wait(every)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@supervise.command("draw")
@config_option
@click.option("--seed", default=None, help="Seed of the draw (default: random); logged.")
@click.option(
    "--redo",
    "redo_id",
    type=click.IntRange(min=1),
    default=None,
    help="Re-do the logged draw with this id instead, and say whether the sample is the same.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the draw as one JSON object.")
def draw_command(seed: str | None, redo_id: int | None, as_json: bool) -> None:
    """Draw a spot-check sample (不定期抽查) now, whatever the schedule; or re-do a draw.

    JSON: {"draw_id", "seed", "window_start", "window_end", "population", "sample"}, and with
    --redo also "redone" (the sample drawn again) and "same" (true if it matches the log).
    """
    from triage import spot_checks
    from triage.models import IllegalTransition, SpotCheckDraw
    from web.cli_common import transaction

    rt = Runtime.build(settings())
    with transaction(rt) as session:
        if redo_id is not None:
            drawn = session.get(SpotCheckDraw, redo_id)
            if drawn is None:
                raise click.ClickException(f"no spot-check draw {redo_id}")
            try:
                redone: list[str] | None = spot_checks.redo_draw(drawn, session)
            except ValueError as e:
                raise click.ClickException(str(e)) from e
        else:
            try:
                drawn = spot_checks.draw(
                    session, utcnow(), rt.settings.supervision, seed=seed, actor="minsheng cli"
                )
            except IllegalTransition as e:
                raise click.ClickException(str(e)) from e
            redone = None
        out: dict[str, Any] = {
            "draw_id": drawn.id,
            "seed": drawn.seed,
            "window_start": drawn.window_start.isoformat(),
            "window_end": drawn.window_end.isoformat(),
            "population": drawn.population,
            "sample": list(drawn.sample),
        }
        if redone is not None:
            out.update(redone=redone, same=redone == list(drawn.sample))
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    click.echo(
        f"draw #{out['draw_id']} (seed {out['seed']}): {len(out['sample'])} of "
        f"{out['population']} cases closed {out['window_start']} – {out['window_end']}"
    )
    for number in out["sample"]:
        click.echo(f"  {number}")
    if redone is not None:
        click.echo("re-done: the same sample" if out["same"] else f"re-done: DIFFERENT {redone}")
        if not out["same"]:
            raise SystemExit(1)
