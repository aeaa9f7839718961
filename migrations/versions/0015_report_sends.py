"""report sends: report_sends, the months whose monthly report went out

The supervision tick sends the previous month's report once on [report] send_day; the
unique month stops a re-run or a second machine's tick from sending it again.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("sent_by", sa.String(length=20), nullable=False, server_default="tick"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_sends")),
        sa.UniqueConstraint("month", name=op.f("uq_report_sends_month")),
    )


def downgrade() -> None:
    op.drop_table("report_sends")
