"""cases: a department's list by last change from its own index; four indexes no query needs

Every case written lands in each index of `cases` (some 35 since migrations 0025-0028).

Dropped, each the leading column of a newer composite index that answers the same queries:

- ix_cases_received_at (received_at): ix_cases_received_id (received_at, id), 0027.
- ix_cases_department_id (department_id): ix_cases_department_ids (department_id, id), 0028,
  and five others led by department_id.
- ix_cases_status (status): ix_cases_status_received (status, received_at, id), 0014, and
  five others led by status.
- ix_cases_risk (risk): the lists and the tick ask ``risk != ''`` (which a B-tree on risk
  cannot seek) or ``risk = 'overdue'`` with the open statuses (the overdue partial indexes,
  0027); ix_cases_attention holds exactly the cases with a risk.

Added: ix_cases_department_updated (department_id, coalesce(updated_at, received_at), id): a
handler's list by last change (and its last page, read from the end) walks the department's
cases in order instead of the whole office's last changes, keeping the department's (837
buffers for the last page at 100,000 cases on PostgreSQL, growing with the other departments'
cases).

Revision ID: 0030
Revises: 0029
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

UPDATED = "coalesce(updated_at, received_at)"
DROPPED = {
    "ix_cases_received_at": ["received_at"],
    "ix_cases_department_id": ["department_id"],
    "ix_cases_status": ["status"],
    "ix_cases_risk": ["risk"],
}


def upgrade() -> None:
    op.create_index(
        "ix_cases_department_updated", "cases", ["department_id", sa.text(UPDATED), "id"]
    )
    for name in DROPPED:
        # IF EXISTS: on SQLite a batch copy of `cases` by an earlier revision may have dropped
        # it.
        op.execute(f"DROP INDEX IF EXISTS {name}")


def downgrade() -> None:
    for name, columns in DROPPED.items():
        op.create_index(name, "cases", columns)
    op.execute("DROP INDEX IF EXISTS ix_cases_department_updated")
