"""search: a department's case ids in order, for a handler's search

ix_cases_department_ids (department_id, id): a handler's search reads a gram's postings
newest first (case_id descending) and keeps their department's cases. PostgreSQL hashed every
posting of the gram and every case of the department to keep the newest 2,000 (a two-character
query at 1,000,000 cases: 2,120 buffers, 242 ms); with the department's ids in order it merges
the two, newest first, and stops at the cap (42 buffers at 100,000 cases, the same at any
size). See triage/search.py.

Revision ID: 0028
Revises: 0027
"""

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_department_ids", "cases", ["department_id", "id"])


def downgrade() -> None:
    # IF EXISTS: on SQLite a batch copy of `cases` by another revision may drop it.
    op.execute("DROP INDEX IF EXISTS ix_cases_department_ids")
