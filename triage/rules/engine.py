"""The four combinations (DOMAIN.md) as rules: (case snapshot, now, policy) → findings and
due actions. Pure: no database, no clock of its own, no Flask.

How each rule reads the case (statuses are Status values):

==================  ===========================================================================
not_acknowledged    the citizen's receipt was not acknowledged: the mail intake recorded
                    `not_acknowledged`, or the acknowledgment mail failed (`mail_failed`)
triage_overdue      received/triage past `triage_due_at` (critical when urgent)
deadline_near       assigned/in progress, past the reminder time and not yet due → reminder,
                    once per deadline (a `reminded` event with that `due_at` says it was sent)
overdue             assigned/in progress past `due_at`; detail carries a reported delay
escalated           overdue past the escalation grace period → escalation (督办), once per
                    deadline (an `escalated` event with that `due_at` says it was sent)
extension_pending   an `extension_requested` without a grant or refusal
reply_unsigned      a reply waits for the head's sign-off (ReplyState pending_sign_off)
delay_unreported    overdue and no `delay_reported` since the deadline passed
visit_overdue       replied, no valid return visit, past the return-visit limit
rework_pending      an unsatisfied or unsolved visit awaits rework or review (warning), or the
                    case is being reworked (重办, info; its deadline is the `overdue` rule's)
review_pending      a supervisor's review was requested and the case still waits
spot_check_pending  a spot check of this case waits for its call or visit
spot_check_failed   a failed spot check reopened the case and it is not replied again
observation_open    an external supervisor's observation waits for an answer
calendar_unknown    a working-day deadline falls in a year the calendar does not know
==================  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from triage.deadlines import Commitment, Deadlines
from triage.rules.findings import (
    ActionKind,
    DueAction,
    Evaluation,
    Finding,
    Rule,
    Severity,
)
from triage.rules.snapshot import CaseSnapshot, Event

RECEIVED, TRIAGE, ASSIGNED = "received", "triage", "assigned"
IN_PROGRESS, REPLIED, VISITED = "in_progress", "replied", "visited"
WAITING_TRIAGE = frozenset({RECEIVED, TRIAGE})
WITH_DEPARTMENT = frozenset({ASSIGNED, IN_PROGRESS})
OPEN = WAITING_TRIAGE | WITH_DEPARTMENT | {REPLIED, VISITED}

EVENT_ACTIONS = frozenset(
    {
        "not_acknowledged",
        "mail_failed",
        "replied",
        "escalated",
        "reminded",
        "extension_requested",
        "extension_granted",
        "extension_refused",
        "delay_reported",
        "visited",
        "reworked",
        "review_requested",
        "review_decided",
        "spot_check_failed",
    }
)
"""The actions the rules read: the tick loads only these of each case's events."""


@dataclass(frozen=True)
class RulesPolicy:
    """The configuration the rules apply: the commitments (`deadlines`) and `[supervision]`."""

    deadlines: Deadlines
    extensions_allowed: int = 1
    reply_sign_off: bool = False
    visit_attempts_before_close: int = 3
    # Reminders and escalations of commitments in working days are not sent before this
    # local hour ([supervision] digest_hour): "1 working day before" starts at 00:00, and
    # nobody reads a reminder sent at midnight. Hour-based (urgent) ones go at once.
    send_hour: int = 0


def _sendable(now: datetime, commitment: Any, policy: RulesPolicy) -> bool:
    """Whether a reminder or escalation of `commitment` may be mailed at `now`: at once when
    it counts hours, from `policy.send_hour` local time when it counts working days."""
    if commitment.unit == "hours" or policy.send_hour <= 0:
        return True
    return policy.deadlines.calendar.local(now).hour >= policy.send_hour


def evaluate(case: CaseSnapshot, now: datetime, policy: RulesPolicy) -> Evaluation:
    """Every finding that holds for `case` at `now`, and the reminders and escalations due.

    A closed, merged or rejected case has only the findings of its spot checks and
    observations. `now` is aware.
    """
    findings: list[Finding] = []
    actions: list[DueAction] = []
    commitment = policy.deadlines.commitment(case.kind, case.urgent, case.department)
    events = case.events
    if case.status in OPEN:
        findings += _acknowledgment(case, events)
        findings += _triage(case, now)
        f, a = _handling(case, now, policy, commitment, events)
        findings += f
        actions += a
        findings += _extension(events)
        findings += _sign_off(case)
        findings += _visits(case, now, policy, commitment, events)
        findings += _calendar(case, now, policy, commitment)
    findings += _spot_checks(case, events)
    if case.open_observations:
        first = min(case.open_observations)
        count = len(case.open_observations)
        findings.append(Finding(Rule.OBSERVATION_OPEN, Severity.WARNING, first, {"count": count}))
    return Evaluation(tuple(findings), tuple(actions))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _last(events: Iterable[Event], *actions: str) -> Event | None:
    found = None
    for e in events:
        if e[0] in actions:
            found = e
    return found


def _acknowledgment(case: CaseSnapshot, events: tuple[Event, ...]) -> list[Finding]:
    for action, at, detail in events:
        if action == "not_acknowledged":
            return [Finding(Rule.NOT_ACKNOWLEDGED, Severity.INFO, at, {"why": "not_sent"})]
        if action == "mail_failed" and detail.get("kind") == "acknowledgment":
            return [Finding(Rule.NOT_ACKNOWLEDGED, Severity.WARNING, at, {"why": "mail_failed"})]
    return []


def _triage(case: CaseSnapshot, now: datetime) -> list[Finding]:
    due = case.triage_due_at
    if case.status not in WAITING_TRIAGE or due is None or now <= due:
        return []
    severity = Severity.CRITICAL if case.urgent else Severity.WARNING
    return [Finding(Rule.TRIAGE_OVERDUE, severity, due, {"due_at": _iso(due)})]


def _handling(
    case: CaseSnapshot,
    now: datetime,
    policy: RulesPolicy,
    commitment: Commitment,
    events: tuple[Event, ...],
) -> tuple[list[Finding], list[DueAction]]:
    due = case.due_at
    if case.status not in WITH_DEPARTMENT or due is None:
        return [], []
    deadlines = policy.deadlines
    findings: list[Finding] = []
    actions: list[DueAction] = []
    reworked = _last(events, "reworked", "spot_check_failed", "replied")
    if reworked is not None and reworked[0] != "replied":
        findings.append(
            Finding(
                Rule.REWORK_PENDING,
                Severity.INFO,
                reworked[1],
                {"due_at": _iso(due), "rework_count": case.rework_count},
            )
        )
    if now <= due:
        remind = deadlines.reminder_at(due, commitment)
        if remind is not None and now >= remind:
            reminded = _for_deadline(events, "reminded", due)
            near = {"due_at": _iso(due), "reminded_at": _iso(reminded[1]) if reminded else None}
            findings.append(Finding(Rule.DEADLINE_NEAR, Severity.WARNING, remind, near))
            if reminded is None and _sendable(now, commitment, policy):
                actions.append(DueAction(ActionKind.REMINDER, case.id, due, Rule.DEADLINE_NEAR))
        return findings, actions
    delay = next(
        (e for e in reversed(events) if e[0] == "delay_reported" and e[1] >= _start(case, due)),
        None,
    )
    detail: dict[str, Any] = {"due_at": _iso(due)}
    if delay is not None:
        detail["delay_reason"] = str(delay[2].get("reason", ""))
        detail["delay_reported_at"] = _iso(delay[1])
    findings.append(Finding(Rule.OVERDUE, Severity.CRITICAL, due, detail))
    if delay is None:
        findings.append(
            Finding(Rule.DELAY_UNREPORTED, Severity.WARNING, due, {"due_at": _iso(due)})
        )
    escalate_at = deadlines.escalation_at(due, commitment)
    if now >= escalate_at:
        sent = _for_deadline(events, "escalated", due)
        findings.append(
            Finding(
                Rule.ESCALATED,
                Severity.CRITICAL,
                escalate_at,
                {"due_at": _iso(due), "escalated_at": _iso(sent[1]) if sent else None},
            )
        )
        if sent is None and _sendable(now, commitment, policy):
            actions.append(DueAction(ActionKind.ESCALATION, case.id, due, Rule.ESCALATED))
    return findings, actions


def _for_deadline(events: tuple[Event, ...], action: str, due: datetime) -> Event | None:
    """The `reminded` / `escalated` event recorded for this deadline, if any."""
    iso = _iso(due)
    return next((e for e in events if e[0] == action and e[2].get("due_at") == iso), None)


def _start(case: CaseSnapshot, due: datetime) -> datetime:
    """Delays count when reported during this dispatch (a report for an earlier one does not
    excuse this one)."""
    return case.assigned_at or due


def _extension(events: tuple[Event, ...]) -> list[Finding]:
    pending: dict[Any, Event] = {}
    for e in events:
        key = e[2].get("request_id")
        if e[0] == "extension_requested":
            pending[key] = e
        elif e[0] in ("extension_granted", "extension_refused"):
            pending.pop(key, None)
    if not pending:
        return []
    first = min(pending.values(), key=lambda e: e[1])
    return [
        Finding(
            Rule.EXTENSION_PENDING,
            Severity.WARNING,
            first[1],
            {
                "request_id": first[2].get("request_id"),
                "proposed_due_at": first[2].get("proposed_due_at"),
            },
        )
    ]


def _sign_off(case: CaseSnapshot) -> list[Finding]:
    waiting = [r for r in case.replies if r.state == "pending_sign_off"]
    if not waiting:
        return []
    return [Finding(Rule.REPLY_UNSIGNED, Severity.WARNING, waiting[0].at, {"count": len(waiting)})]


def _visits(
    case: CaseSnapshot,
    now: datetime,
    policy: RulesPolicy,
    commitment: Commitment,
    events: tuple[Event, ...],
) -> list[Finding]:
    findings: list[Finding] = []
    replied = case.replied_at
    since_reply = [v for v in case.visits if replied is None or v.at >= replied]
    valid = [v for v in since_reply if v.valid]
    if case.status == REPLIED and replied is not None and not valid:
        due = policy.deadlines.after(replied, commitment.return_visit, commitment)
        if now > due:
            failed = len(since_reply)
            findings.append(
                Finding(
                    Rule.VISIT_OVERDUE,
                    Severity.WARNING,
                    due,
                    {
                        "due_at": _iso(due),
                        "failed_attempts": failed,
                        "may_close": failed >= policy.visit_attempts_before_close,
                    },
                )
            )
    if case.status == VISITED and valid:
        last = valid[-1]
        unhappy = last.satisfaction == "unsatisfied" or last.solved is False
        review = _last(events, "review_requested", "review_decided", "visited")
        if review is not None and review[0] == "review_requested" and review[1] >= last.at:
            findings.append(Finding(Rule.REVIEW_PENDING, Severity.WARNING, review[1], {}))
        elif unhappy:
            findings.append(
                Finding(
                    Rule.REWORK_PENDING,
                    Severity.WARNING,
                    last.at,
                    {"satisfaction": last.satisfaction, "solved": last.solved},
                )
            )
    return findings


def _spot_checks(case: CaseSnapshot, events: tuple[Event, ...]) -> list[Finding]:
    findings: list[Finding] = []
    if case.open_spot_checks:
        findings.append(
            Finding(
                Rule.SPOT_CHECK_PENDING,
                Severity.INFO,
                min(case.open_spot_checks),
                {"count": len(case.open_spot_checks)},
            )
        )
    failed = _last(events, "spot_check_failed", "replied")
    if failed is not None and failed[0] == "spot_check_failed" and case.status in OPEN:
        findings.append(
            Finding(
                Rule.SPOT_CHECK_FAILED,
                Severity.WARNING,
                failed[1],
                {"check_id": failed[2].get("check_id"), "method": failed[2].get("method")},
            )
        )
    return findings


def _calendar(
    case: CaseSnapshot, now: datetime, policy: RulesPolicy, commitment: Commitment
) -> list[Finding]:
    """Working-day deadlines in a year without published holidays are flagged: they were
    counted Monday to Friday and may move when the year's holidays are added."""
    if commitment.unit != "working_days":
        return []
    calendar = policy.deadlines.calendar
    clocks: Mapping[str, datetime | None] = {
        "triage_due_at": case.triage_due_at if case.status in WAITING_TRIAGE else None,
        "due_at": case.due_at if case.status in WITH_DEPARTMENT else None,
    }
    unknown = {
        name: moment
        for name, moment in clocks.items()
        if moment is not None and not calendar.knows_year(calendar.local(moment).year)
    }
    if not unknown:
        return []
    years = sorted({calendar.local(m).year for m in unknown.values()})
    since = case.assigned_at or case.received_at or now
    return [
        Finding(
            Rule.CALENDAR_UNKNOWN,
            Severity.INFO,
            since,
            {"years": years, **{k: _iso(v) for k, v in unknown.items()}},
        )
    ]
