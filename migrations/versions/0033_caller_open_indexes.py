"""cases: a caller's open cases from partial indexes on (caller_key / caller_alt_key, received_at)

The operator's desk lists a caller's open cases first, however old (a repeat call urges one:
催办). For a caller with more than the window of 100 cases (triage/callers.py) they were read
backward from ix_cases_caller_key_received (and its alt key twin), every closed case of the
caller walked and filtered out before the open ones: the read cost what the caller's history
cost. These hold only the open cases, under the same predicate the query writes (constants,
so that both databases see that it may read them): the open cases are found at once, whatever
the number of closed ones.

Revision ID: 0033
Revises: 0032
"""

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

OPEN = "status IN ('assigned', 'in_progress', 'received', 'replied', 'triage', 'visited')"
INDEXES = {
    "ix_cases_caller_key_open": ["caller_key", "received_at"],
    "ix_cases_caller_alt_key_open": ["caller_alt_key", "received_at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(
            name,
            "cases",
            columns,
            sqlite_where=sa.text(OPEN),
            postgresql_where=sa.text(OPEN),
        )


def downgrade() -> None:
    for name in INDEXES:
        # IF EXISTS: on SQLite a batch copy of `cases` by a later revision may drop them.
        op.execute(f"DROP INDEX IF EXISTS {name}")
