"""What the rules engine returns: findings (what holds now) and due actions (what to send)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Rule(StrEnum):
    """The rule names; other tools read them, so they never change. The combination each
    belongs to (DOMAIN.md's four combinations, 1-4) is in COMBINATION."""

    NOT_ACKNOWLEDGED = "not_acknowledged"
    TRIAGE_OVERDUE = "triage_overdue"
    DEADLINE_NEAR = "deadline_near"
    OVERDUE = "overdue"
    ESCALATED = "escalated"
    EXTENSION_PENDING = "extension_pending"
    REPLY_UNSIGNED = "reply_unsigned"
    DELAY_UNREPORTED = "delay_unreported"
    VISIT_OVERDUE = "visit_overdue"
    REWORK_PENDING = "rework_pending"
    SPOT_CHECK_PENDING = "spot_check_pending"
    SPOT_CHECK_FAILED = "spot_check_failed"
    OBSERVATION_OPEN = "observation_open"
    # Added: a supervisor's review after an unsatisfied visit waits; a deadline falls in a
    # year whose holidays are unknown (counted Monday to Friday).
    REVIEW_PENDING = "review_pending"
    CALENDAR_UNKNOWN = "calendar_unknown"


COMBINATION: Mapping[Rule, int] = {
    Rule.NOT_ACKNOWLEDGED: 1,
    Rule.TRIAGE_OVERDUE: 1,
    Rule.DEADLINE_NEAR: 1,
    Rule.OVERDUE: 1,
    Rule.ESCALATED: 1,
    Rule.EXTENSION_PENDING: 1,
    Rule.REPLY_UNSIGNED: 2,
    Rule.DELAY_UNREPORTED: 2,
    Rule.VISIT_OVERDUE: 1,
    Rule.REWORK_PENDING: 1,
    Rule.REVIEW_PENDING: 1,
    Rule.SPOT_CHECK_PENDING: 3,
    Rule.SPOT_CHECK_FAILED: 3,
    Rule.OBSERVATION_OPEN: 4,
    Rule.CALENDAR_UNKNOWN: 1,
}

# A case with one of these is shown as overdue (red); with any other warning or critical
# finding as at risk (amber).
OVERDUE_RULES = frozenset(
    {Rule.OVERDUE, Rule.ESCALATED, Rule.TRIAGE_OVERDUE, Rule.VISIT_OVERDUE, Rule.DELAY_UNREPORTED}
)


class Risk(StrEnum):
    """`cases.risk`: what lists show of a case's findings."""

    NONE = ""
    AT_RISK = "at_risk"
    OVERDUE = "overdue"


class ActionKind(StrEnum):
    REMINDER = "reminder"
    ESCALATION = "escalation"


@dataclass(frozen=True)
class Finding:
    """A rule that holds for the case now, since when, and what the reader needs to know
    (`detail`: JSON-able values, times as ISO strings)."""

    rule: Rule
    severity: Severity
    since: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def combination(self) -> int:
        return COMBINATION[self.rule]


@dataclass(frozen=True)
class DueAction:
    """Something to send now: a reminder before the deadline `due`, or an escalation (督办)
    after it. (kind, case, due) names it once: the tick derives the Message-ID from it."""

    kind: ActionKind
    case_id: int
    due: datetime
    rule: Rule


@dataclass(frozen=True)
class Evaluation:
    findings: tuple[Finding, ...] = ()
    actions: tuple[DueAction, ...] = ()

    @property
    def risk(self) -> Risk:
        if any(f.rule in OVERDUE_RULES for f in self.findings):
            return Risk.OVERDUE
        if any(f.severity != Severity.INFO for f in self.findings):
            return Risk.AT_RISK
        return Risk.NONE

    def rules(self) -> set[str]:
        return {str(f.rule) for f in self.findings}
