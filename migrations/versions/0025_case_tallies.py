"""case tallies: maintained counts of cases by status, department, channel, kind, urgent, risk

The board's counts per filter value and the dashboard's open / at-risk / overdue tiles were
GROUP BY queries over every case of the office: ~0.2 s of CPU per facet at 1,000,000 cases
on PostgreSQL, after any change to a case. `case_tallies` is an insert-only ledger of
(combination, n) rows kept by triggers on `cases` (triage/tallies.py: per row on SQLite, per
statement with transition tables on PostgreSQL); a combination's count is the sum of its
rows, which the supervision tick folds back into one. Backfilled here from the cases.

A later migration that rebuilds `cases` on SQLite (batch_alter_table copies the table)
drops its triggers: ``web.db.upgrade`` makes them again and recounts after the migrations
(tests/integration/test_tallies.py).

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op

from triage import tallies

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_tallies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(20)),
        sa.Column("department_id", sa.Integer()),
        sa.Column("channel", sa.String(20)),
        sa.Column("kind", sa.String(20)),
        sa.Column("urgent", sa.Boolean()),
        sa.Column("risk", sa.String(10)),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_tallies")),
    )
    conn = op.get_bind()
    tallies.create_triggers(conn)
    tallies.recount(conn)


def downgrade() -> None:
    tallies.drop_triggers(op.get_bind())
    op.drop_table("case_tallies")
