"""caller keys, place, urge count: a caller's history and repeat calls (催办)

- cases.caller_key: the caller's pseudonymous key (triage/callers.py: an HMAC of the canonical
  phone, else of the email, keyed from the application's secret); "" for an anonymous case.
  cases.caller_alt_key: the email's key when the case has a phone too. Both indexed with
  received_at, for a caller's history newest first.
- cases.place: the place or address of the complaint ("" for existing cases).
- cases.urge_count: repeat calls about the open case (催办), 0 for existing cases.

The migration cannot know the secret: existing cases keep caller_key NULL here, and
``minsheng init`` (triage.callers.backfill_caller_keys) computes them, in batches, once.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as t:
        t.add_column(sa.Column("caller_key", sa.String(length=32), nullable=True))
        t.add_column(sa.Column("caller_alt_key", sa.String(length=32), nullable=True))
        t.add_column(sa.Column("place", sa.String(length=200), nullable=False, server_default=""))
        t.add_column(sa.Column("urge_count", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_cases_caller_key_received", "cases", ["caller_key", "received_at"])
    op.create_index("ix_cases_caller_alt_key_received", "cases", ["caller_alt_key", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_cases_caller_alt_key_received", table_name="cases")
    op.drop_index("ix_cases_caller_key_received", table_name="cases")
    with op.batch_alter_table("cases") as t:
        t.drop_column("urge_count")
        t.drop_column("place")
        t.drop_column("caller_alt_key")
        t.drop_column("caller_key")
