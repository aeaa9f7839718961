"""case lists at 100,000 cases: indexes for the urgent and overdue filters

- ix_cases_urgent (received_at, id) WHERE urgent: the few urgent cases, newest first, without
  reading every case to find them (a list filtered by "urgent" read a whole channel's cases,
  35,000 at 100,000, for its count, its page and each count per filter value).
- ix_cases_status_triage_due (status, triage_due_at) and ix_cases_status_due (status, due_at):
  the overdue filter's terms (waiting past the dispatch deadline, handled past the handling
  one), each an index range, so that the filter is a union of three index reads (with
  ix_cases_risk) instead of a scan. See triage/case_list.py.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_cases_urgent",
        "cases",
        ["received_at", "id"],
        sqlite_where=sa.text("urgent = 1"),
        postgresql_where=sa.text("urgent = true"),
    )
    op.create_index("ix_cases_status_triage_due", "cases", ["status", "triage_due_at"])
    op.create_index("ix_cases_status_due", "cases", ["status", "due_at"])


def downgrade() -> None:
    for name in ("ix_cases_status_due", "ix_cases_status_triage_due", "ix_cases_urgent"):
        # IF EXISTS: on SQLite a batch copy of `cases` by another revision may drop them.
        op.execute(f"DROP INDEX IF EXISTS {name}")
