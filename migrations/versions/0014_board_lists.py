"""board lists: saved views, cases.updated_at and the indexes the case lists sort and count by

- saved_views (user_id, role, name, query, is_default): a user's saved case lists (their
  query strings), and with no user a role's shared default list.
- cases.updated_at: the time of the case's last event (filled here from case_events); the
  lists' "recently updated" order.
- Indexes for the lists' orders and filters, each ending in id for keyset paging:
  (status, received_at, id); the deadline (coalesce(due_at, triage_due_at, received_at), id),
  also after department_id and after status; (coalesce(updated_at, received_at), id); and
  channel and kind, read by the counts per filter value. See triage/case_list.py.
- merged_into_id is indexed by 0011 (a case page lists the cases merged into it: their citizens are called
  back with it); without an index that read every case (170 ms at 100,000 on SQLite).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

DEADLINE = "coalesce(due_at, triage_due_at, received_at)"
UPDATED = "coalesce(updated_at, received_at)"


def upgrade() -> None:
    op.create_table(
        "saved_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("query", sa.String(length=2000), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_saved_views_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_views")),
        sa.UniqueConstraint("user_id", "role", "name", name="uq_saved_views_owner"),
    )
    op.create_index(op.f("ix_saved_views_user_id"), "saved_views", ["user_id"], unique=False)
    with op.batch_alter_table("cases") as t:
        t.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))
    op.execute(
        "UPDATE cases SET updated_at = (SELECT max(e.at) FROM case_events e"
        " WHERE e.case_id = cases.id)"
    )
    op.create_index("ix_cases_status_received", "cases", ["status", "received_at", "id"])
    op.create_index("ix_cases_deadline", "cases", [sa.text(DEADLINE), "id"])
    op.create_index(
        "ix_cases_department_deadline", "cases", ["department_id", sa.text(DEADLINE), "id"]
    )
    op.create_index("ix_cases_status_deadline", "cases", ["status", sa.text(DEADLINE), "id"])
    op.create_index("ix_cases_updated", "cases", [sa.text(UPDATED), "id"])
    op.create_index("ix_cases_channel", "cases", ["channel"])
    op.create_index("ix_cases_kind", "cases", ["kind"])


def downgrade() -> None:
    for name in (
        "ix_cases_kind",
        "ix_cases_channel",
        "ix_cases_updated",
        "ix_cases_status_deadline",
        "ix_cases_department_deadline",
        "ix_cases_deadline",
        "ix_cases_status_received",
    ):
        # IF EXISTS: on SQLite a batch copy of `cases` by another revision drops expression indexes.
        op.execute(f"DROP INDEX IF EXISTS {name}")
    with op.batch_alter_table("cases") as t:
        t.drop_column("updated_at")
    op.drop_index(op.f("ix_saved_views_user_id"), table_name="saved_views")
    op.drop_table("saved_views")
