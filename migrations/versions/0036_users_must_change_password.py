"""users.must_change_password: a password an administrator set or generated is changed at
the next sign-in

An account's password shown to an administrator (generated "one-time", or typed for the
user) stayed the account's for ever: the user went straight to the board with it. Set when
an administrator sets another account's password; cleared when the user chooses their own.
Every existing account starts without it.

Revision ID: 0036
Revises: 0035
"""

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as t:
        t.add_column(
            sa.Column(
                "must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as t:
        t.drop_column("must_change_password")
