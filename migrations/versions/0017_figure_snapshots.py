"""figure snapshots: return_visits.contacted, the figures' indexes, figure_snapshots

- return_visits.contacted: the citizen's answer to "did the department contact you in
  time?" at the return visit, the response rate's source (NULL before it was asked).
- ix_return_visits_at, ix_cases_due_at: a month's visits and the cases whose deadline fell
  in it are read through an index instead of the whole table.
- figure_snapshots: a month's figures computed by the tick (or once, under a lease), read by
  the dashboard and the public page.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("return_visits") as t:
        t.add_column(sa.Column("contacted", sa.Boolean(), nullable=True))
    op.create_index("ix_return_visits_at", "return_visits", ["at"])
    op.create_index("ix_cases_due_at", "cases", ["due_at"])
    op.create_table(
        "figure_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=True),
        sa.Column("policy_key", sa.String(length=64), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_figure_snapshots")),
        sa.UniqueConstraint("scope", "month", name="uq_figure_snapshots_scope_month"),
    )


def downgrade() -> None:
    op.drop_table("figure_snapshots")
    op.execute("DROP INDEX IF EXISTS ix_cases_due_at")
    op.execute("DROP INDEX IF EXISTS ix_return_visits_at")
    with op.batch_alter_table("return_visits") as t:
        t.drop_column("contacted")
