"""departments.successor_id: the department that took a deactivated one's work over

A case of a deactivated department that comes back for rework (an unsatisfied return visit,
the satisfaction link) goes to the department recorded here (triage/cases.rework_case),
instead of staying in a department no handler sees.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("departments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("successor_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_departments_successor_id_departments", "departments", ["successor_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("departments", schema=None) as batch_op:
        batch_op.drop_constraint("fk_departments_successor_id_departments", type_="foreignkey")
        batch_op.drop_column("successor_id")
