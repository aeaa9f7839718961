"""admin events: the administrators' own audit log; accounts and departments changed in the
browser; indexes for the kanban's closed column

- ``admin_events``: one row per administrator action (accounts, departments, API keys): who,
  what, on what, details (never a password or a key), when.
- ``users.admin_managed`` / ``departments.admin_managed``: set when an administrator changes
  the row in the browser; `minsheng init` then leaves it as it is instead of resetting it to
  config.toml (a department made in the browser is not deactivated for missing there).
- ``(status, closed_at)`` and ``(department_id, status, closed_at)`` on cases: the kanban's
  closed column shows the latest closed cases, which would otherwise sort every closed case.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column(
            "actor_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name="fk_admin_events_actor_id_users"),
            nullable=True,
        ),
        sa.Column("actor_name", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_events"),
    )
    op.create_index("ix_admin_events_at", "admin_events", ["at"])
    with op.batch_alter_table("users") as t:
        t.add_column(
            sa.Column("admin_managed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("departments") as t:
        t.add_column(
            sa.Column("admin_managed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_cases_status_closed_at", "cases", ["status", "closed_at"])
    op.create_index(
        "ix_cases_department_id_status_closed_at", "cases", ["department_id", "status", "closed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_cases_department_id_status_closed_at", table_name="cases")
    op.drop_index("ix_cases_status_closed_at", table_name="cases")
    with op.batch_alter_table("departments") as t:
        t.drop_column("admin_managed")
    with op.batch_alter_table("users") as t:
        t.drop_column("admin_managed")
    op.drop_index("ix_admin_events_at", table_name="admin_events")
    op.drop_table("admin_events")
