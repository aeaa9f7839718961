"""The supervision rules of the four combinations (DOMAIN.md): a pure function of a case
snapshot, the time and the policy (`evaluate`), returning findings and due actions.

    from triage.rules import CaseSnapshot, RulesPolicy, evaluate
    result = evaluate(snapshot, now, RulesPolicy(deadlines))
    result.findings   # (Finding(rule, severity, since, detail), ...) with .combination 1-4
    result.actions    # (DueAction(kind=reminder|escalation, case_id, due, rule), ...)
    result.risk       # "" / "at_risk" / "overdue", for lists
"""

from triage.rules.engine import EVENT_ACTIONS, OPEN, RulesPolicy, evaluate
from triage.rules.findings import (
    COMBINATION,
    OVERDUE_RULES,
    ActionKind,
    DueAction,
    Evaluation,
    Finding,
    Risk,
    Rule,
    Severity,
)
from triage.rules.snapshot import CaseSnapshot, Event, ReplySnapshot, VisitSnapshot

__all__ = [
    "COMBINATION",
    "EVENT_ACTIONS",
    "OPEN",
    "OVERDUE_RULES",
    "ActionKind",
    "CaseSnapshot",
    "DueAction",
    "Evaluation",
    "Event",
    "Finding",
    "ReplySnapshot",
    "Risk",
    "Rule",
    "RulesPolicy",
    "Severity",
    "VisitSnapshot",
    "evaluate",
]
