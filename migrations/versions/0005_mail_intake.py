"""mail intake: every message seen in the mailbox, later messages on cases, leases, health

- incoming_mail: one row per message seen (unique Message-ID + SHA-256 of the raw bytes, so
  a re-run after a crash finds it), its outcome, the list status (pending / confirmed_spam /
  released / made_case / done), its case, and the raw message (zlib). See
  triage/mail_intake.py.
- case_messages: threaded replies and bounces on a case.
- leases: one `minsheng intake mail --watch` per mailbox across machines.
- intake_health: the last fetch, error and messages waiting, per mailbox.
- Nothing to fill: existing cases have no stored mail.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incoming_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("raw_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("defects", sa.JSON(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw_message", sa.LargeBinary(), nullable=False),
        sa.Column("handled_by", sa.String(length=200), nullable=True),
        sa.Column("handled_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_incoming_mail_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incoming_mail")),
        sa.UniqueConstraint("message_id", "raw_sha256", name="uq_incoming_mail_message_id"),
    )
    op.create_index(op.f("ix_incoming_mail_case_id"), "incoming_mail", ["case_id"], unique=False)
    op.create_index(
        "ix_incoming_mail_status_outcome", "incoming_mail", ["status", "outcome"], unique=False
    )
    op.create_table(
        "case_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("incoming_mail_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_messages_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["incoming_mail_id"],
            ["incoming_mail.id"],
            name=op.f("fk_case_messages_incoming_mail_id_incoming_mail"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_messages")),
    )
    op.create_index(op.f("ix_case_messages_case_id"), "case_messages", ["case_id"], unique=False)
    op.create_index(
        op.f("ix_case_messages_incoming_mail_id"),
        "case_messages",
        ["incoming_mail_id"],
        unique=False,
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "intake_health",
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("last_success_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_error_at", sa.DateTime(), nullable=True),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_intake_health")),
    )


def downgrade() -> None:
    op.drop_table("intake_health")
    op.drop_table("leases")
    op.drop_index(op.f("ix_case_messages_incoming_mail_id"), table_name="case_messages")
    op.drop_index(op.f("ix_case_messages_case_id"), table_name="case_messages")
    op.drop_table("case_messages")
    op.drop_index("ix_incoming_mail_status_outcome", table_name="incoming_mail")
    op.drop_index(op.f("ix_incoming_mail_case_id"), table_name="incoming_mail")
    op.drop_table("incoming_mail")
