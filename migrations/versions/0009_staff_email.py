"""staff email: users.email, where the supervision tick writes to a head or a supervisor

Reminders, escalations (督办) and digests went only to departments.email and the config's
[supervision] supervisors_email; the issue sends escalations and digests to the department
head and the supervisors themselves. Existing accounts get "" (no address).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as t:
        t.add_column(sa.Column("email", sa.String(length=200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("users") as t:
        t.drop_column("email")
