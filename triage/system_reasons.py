"""Reasons the system writes into a case's log itself (not a person's words), stored as a
neutral code and put into the reader's language when shown (web/i18n.system_reason), with
the departments named from the event's own detail at that time.

A code is the whole of an event's ``reason`` (or one of a case's urgent reasons); what it
says, per code (the event's detail keys it reads in brackets):

- `DEACTIVATED_HANDED_OVER` (transferred {previous, department}): the department was
  deactivated, its case in hand handed to the one that took its work over, deadline kept
  (triage/staff.hand_over).
- `REWORK_TO_SUCCESSOR` (transferred {previous, department}): a case put back in handling
  (rework) of a department deactivated since went to the one that took its work over
  (triage/cases.follow_inactive_department).
- `REWORK_REQUEUED` (requeued {department}): the same with no department to take over: back
  to the dispatch queue.
- `OVERDUE_ESCALATED` (escalated): past the handling time limit and its grace period
  (triage/supervision).
- `WEB_VISIT_UNSATISFIED`, `WEB_VISIT_UNSOLVED`, `WEB_VISIT_UNSATISFIED_UNSOLVED`
  (review_requested, reworked): the citizen answered through the satisfaction link that
  they are unsatisfied, that the problem is not solved, or both (triage/satisfaction).
- `MARKED_URGENT_BY_OPERATOR` (an urgent reason: `cases.urgent_reasons`, the `reasons` of
  flagged_urgent and received events): the operator marked the call urgent (web/operator).

Events written before these codes keep the Chinese text they were written with.
"""

from __future__ import annotations

DEACTIVATED_HANDED_OVER = "system:deactivated_handed_over"
REWORK_TO_SUCCESSOR = "system:rework_to_successor"
REWORK_REQUEUED = "system:rework_requeued"
OVERDUE_ESCALATED = "system:overdue_escalated"
WEB_VISIT_UNSATISFIED = "system:web_visit_unsatisfied"
WEB_VISIT_UNSOLVED = "system:web_visit_unsolved"
WEB_VISIT_UNSATISFIED_UNSOLVED = "system:web_visit_unsatisfied_unsolved"
MARKED_URGENT_BY_OPERATOR = "system:marked_urgent_by_operator"

CODES = frozenset(
    {
        DEACTIVATED_HANDED_OVER,
        REWORK_TO_SUCCESSOR,
        REWORK_REQUEUED,
        OVERDUE_ESCALATED,
        WEB_VISIT_UNSATISFIED,
        WEB_VISIT_UNSOLVED,
        WEB_VISIT_UNSATISFIED_UNSOLVED,
        MARKED_URGENT_BY_OPERATOR,
    }
)
