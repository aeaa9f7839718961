"""case lists: indexes that hold every faceted column, for the counts per filter value

The counts per filter value (status, department, channel, kind; triage/case_list.py) are
GROUP BY queries under the other filters. Grouping a department's cases by channel, or the
closed cases by channel, read each case's row from the table (no index had both columns):
8,184 pages for one department and 14,108 for the closed cases at 100,000 cases, after any
change to a case (the counts are kept only while no event is recorded). With
(status, department_id, channel, kind) and (department_id, status, channel, kind) every
such count is a read of one index range alone: 13 and 73 pages. Both databases read an
index that holds every column a query names without the table.

Revision ID: 0024
Revises: 0023
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_facets", "cases", ["status", "department_id", "channel", "kind"])
    op.create_index(
        "ix_cases_department_facets", "cases", ["department_id", "status", "channel", "kind"]
    )


def downgrade() -> None:
    for name in ("ix_cases_department_facets", "ix_cases_facets"):
        # IF EXISTS: on SQLite a batch copy of `cases` by another revision may drop them.
        op.execute(f"DROP INDEX IF EXISTS {name}")
