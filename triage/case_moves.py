"""The moves of a case between the columns of the kanban (看板): which status it may go to
from where, through which change of the case, with which right, and whether that change
needs something typed first (a reply, a reason, a department, a return visit's outcome).

A pure table over the life cycle of triage/models.py (`Case.assign`, `start`, `reply`,
`send_back`, `record_visit`, `rework`, `close`): the board's actions stay the only way a case
changes; this only says which of them a drop from one column onto another means.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.access import Action
from triage.models import Case, Satisfaction, Status

# The kanban's columns, in the order of the life cycle; RECEIVED shows in the TRIAGE column
# (a received case is queued or dispatched in the same transaction that registers it).
COLUMNS: tuple[Status, ...] = (
    Status.TRIAGE,
    Status.ASSIGNED,
    Status.IN_PROGRESS,
    Status.REPLIED,
    Status.VISITED,
    Status.CLOSED,
)
COLUMN_STATUSES: dict[Status, tuple[Status, ...]] = {
    Status.TRIAGE: (Status.RECEIVED, Status.TRIAGE),
    **{s: (s,) for s in COLUMNS if s != Status.TRIAGE},
}


@dataclass(frozen=True)
class Move:
    """One legal move: from any of `sources` to the column `to`, by the change `name`,
    allowed to whoever may do `action`. `form` is the id of the case page's form that
    asks for the input the change needs, or None when the move is made as it is.
    `confirm`: the change cannot be undone from the board (closing: the citizen is told the
    case is finished, and the figures count it), so a drop or a button only asks first,
    showing what the change rests on (the reply, the return visit) and taking the reason
    the change may need; the move is made when that question is answered."""

    name: str
    sources: frozenset[Status]
    to: Status
    action: Action
    form: str | None
    confirm: bool = False


MOVES: tuple[Move, ...] = (
    Move(
        "dispatch",
        frozenset({Status.RECEIVED, Status.TRIAGE}),
        Status.ASSIGNED,
        Action.TRIAGE,
        "assign-form",
    ),
    Move("start", frozenset({Status.ASSIGNED}), Status.IN_PROGRESS, Action.HANDLE, None),
    Move(
        "reply",
        frozenset({Status.ASSIGNED, Status.IN_PROGRESS}),
        Status.REPLIED,
        Action.HANDLE,
        "reply-form",
    ),
    Move(
        "send_back",
        frozenset({Status.ASSIGNED, Status.IN_PROGRESS}),
        Status.TRIAGE,
        Action.HANDLE,
        "send-back-form",
    ),
    Move("visit", frozenset({Status.REPLIED}), Status.VISITED, Action.VISIT, "visit-form"),
    Move("rework", frozenset({Status.VISITED}), Status.IN_PROGRESS, Action.VISIT, "rework-form"),
    Move("close", frozenset({Status.VISITED}), Status.CLOSED, Action.VISIT, None, confirm=True),
)


def column_of(status: str) -> Status | None:
    """The column a case of `status` shows in (None for merged and rejected cases)."""
    return next((c for c, members in COLUMN_STATUSES.items() if status in members), None)


def needs_reason_to_close(case: Case) -> bool:
    """Closing after an unsatisfied or unsolved visit needs a reason (`Case.close`)."""
    visit = case.latest_visit
    return visit is not None and (
        visit.satisfaction == Satisfaction.UNSATISFIED or visit.solved is False
    )


def form_of(move: Move, case: Case) -> str | None:
    """The case page's form the move needs for this case, or None if it is made on the
    board (as it is, or after its confirmation: `Move.confirm`, which asks for the reason a
    close may need itself)."""
    return move.form


def moves_of(case: Case) -> list[Move]:
    """The legal moves of `case` from its status now, in the order of the columns."""
    return [m for m in MOVES if case.status in m.sources]


def find_move(case: Case, to: str) -> Move | None:
    """The move that takes `case` from its status to the column `to`; None if the life
    cycle has none (e.g. triage → closed, or a move backwards)."""
    return next((m for m in moves_of(case) if m.to == to), None)
