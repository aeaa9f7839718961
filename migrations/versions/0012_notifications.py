"""notifications: SMS to send, and the citizens' answers to the satisfaction link

- sms_outbox: one text message to a citizen who gave only a phone (triage/sms.py), queued
  with the change that caused it and sent through the configured HTTP gateway by
  `minsheng outbox send` and the supervision tick, like the mail outbox: status queued /
  sending / sent / failed, attempts, next_attempt_at, the claim (claimed_by,
  claim_expires_at), last_error. `sms_id` is deterministic per notice (unique), so a re-run
  never queues one twice; the gateway is given it too.
- satisfaction_responses: the answer given through a reply's satisfaction link
  (triage/satisfaction.py). One answer per (case, reply): the unique constraint makes the
  link single-use across processes; the token's digest is kept unique too.
- Nothing to fill: existing cases have neither.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sms_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_sms_outbox_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_outbox")),
        sa.UniqueConstraint("sms_id", name=op.f("uq_sms_outbox_sms_id")),
    )
    op.create_index(op.f("ix_sms_outbox_case_id"), "sms_outbox", ["case_id"], unique=False)
    op.create_index(
        "ix_sms_outbox_status_next_attempt_at",
        "sms_outbox",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "satisfaction_responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("reply_id", sa.Integer(), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("solved", sa.Boolean(), nullable=False),
        sa.Column("satisfaction", sa.String(length=20), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_satisfaction_responses_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["reply_id"],
            ["case_replies.id"],
            name=op.f("fk_satisfaction_responses_reply_id_case_replies"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["return_visits.id"],
            name=op.f("fk_satisfaction_responses_visit_id_return_visits"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_satisfaction_responses")),
        sa.UniqueConstraint("case_id", "reply_id", name=op.f("uq_satisfaction_responses_case_id")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_satisfaction_responses_token_digest")),
    )


def downgrade() -> None:
    op.drop_table("satisfaction_responses")
    op.drop_index("ix_sms_outbox_status_next_attempt_at", table_name="sms_outbox")
    op.drop_index(op.f("ix_sms_outbox_case_id"), table_name="sms_outbox")
    op.drop_table("sms_outbox")
