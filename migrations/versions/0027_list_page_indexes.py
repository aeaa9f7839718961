"""case lists: indexes that let a page read what it shows, whatever the number of cases

Measured with 1,000,000 cases on PostgreSQL, some list pages read most of `cases`
(triage/case_list.py, web/board.py, web/supervision_findings.py):

- ix_cases_overdue_received and ix_cases_overdue_deadline: the overdue filter read the ids of
  every overdue case (tens of thousands with old cases left open) for the count, again for
  the page and again for the counts per filter value (826,647 buffers for phone, urgent and
  overdue). These hold only the cases that may be overdue (waiting or being handled, or
  found overdue by the tick), in the lists' orders, with every column the overdue test and
  the other filters read: a page walks one in order and stops at its size, a count reads no
  table row.
- ix_cases_deadline_before_receipt and ix_cases_updated_before_receipt: the cases whose
  deadline (or last change) comes before their receipt, normally none. With them a list of
  the cases received since a day is read by deadline from that day on in the deadline's
  index, and misses none (it walked the index from its start: 910,118 buffers).
- ix_cases_queue: the waiting cases, urgent first, then by deadline: the queue reads its 50
  rows instead of every waiting case, sorted.
- ix_cases_attention: a department's open cases found at risk or overdue, in the order its
  workspace shows them (a handler's list read every open case of the department).
- ix_cases_department_status_deadline and ix_cases_department_status_received: a handler's
  open cases (their default list) read in pieces by status, each in order.
- ix_cases_received_id: the list in order of receipt from the index alone (a page typed by
  number skips its offset in index entries, not table rows).

The partial indexes' predicates are written as the queries write them (constants), so that
both databases see that a query may read them.

Revision ID: 0027
Revises: 0026
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

DEADLINE = "coalesce(due_at, triage_due_at, received_at)"
UPDATED = "coalesce(updated_at, received_at)"
OVERDUE_CANDIDATES = (
    "CASE WHEN (status IN ('received', 'triage', 'assigned', 'in_progress')"
    " OR risk = 'overdue') THEN 1 ELSE 0 END = 1"
)
OVERDUE_COLUMNS = [
    "status",
    "risk",
    "triage_due_at",
    "due_at",
    "channel",
    "urgent",
    "department_id",
    "kind",
]
NAMES = (
    "ix_cases_overdue_received",
    "ix_cases_overdue_deadline",
    "ix_cases_deadline_before_receipt",
    "ix_cases_updated_before_receipt",
    "ix_cases_queue",
    "ix_cases_attention",
    "ix_cases_department_status_deadline",
    "ix_cases_department_status_received",
    "ix_cases_received_id",
)


def _partial(name: str, columns: list[object], where: str) -> None:
    op.create_index(
        name,
        "cases",
        columns,  # type: ignore[arg-type]
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    _partial(
        "ix_cases_overdue_received",
        ["received_at", "id", *OVERDUE_COLUMNS],
        OVERDUE_CANDIDATES,
    )
    _partial(
        "ix_cases_overdue_deadline",
        [sa.text(DEADLINE), "id", "received_at", *OVERDUE_COLUMNS],
        OVERDUE_CANDIDATES,
    )
    _partial("ix_cases_deadline_before_receipt", ["received_at", "id"], f"received_at > {DEADLINE}")
    _partial("ix_cases_updated_before_receipt", ["received_at", "id"], f"received_at > {UPDATED}")
    _partial(
        "ix_cases_queue",
        [sa.text("urgent DESC"), sa.text(DEADLINE), "id"],
        "CASE WHEN status IN ('received', 'triage') THEN 1 ELSE 0 END = 1",
    )
    _partial(
        "ix_cases_attention",
        ["department_id", sa.text("risk DESC"), "due_at", "id", "status"],
        "risk != ''",
    )
    op.create_index(
        "ix_cases_department_status_deadline",
        "cases",
        ["department_id", "status", sa.text(DEADLINE), "id"],
    )
    op.create_index(
        "ix_cases_department_status_received",
        "cases",
        ["department_id", "status", "received_at", "id"],
    )
    op.create_index("ix_cases_received_id", "cases", ["received_at", "id"])


def downgrade() -> None:
    for name in reversed(NAMES):
        # IF EXISTS: on SQLite a batch copy of `cases` by another revision may drop them.
        op.execute(f"DROP INDEX IF EXISTS {name}")
