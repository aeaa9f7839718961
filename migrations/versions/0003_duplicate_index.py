"""duplicate index: a few hashed grams per open case, to find near-duplicates without a scan

- duplicate_signatures (hash, received_minute, case_id): at most 32 rows per open case, the
  primary key in lookup order (SQLite: WITHOUT ROWID, so the table is that index), plus an
  index on case_id for removing a case's rows when it closes. See triage/duplicate_index.py.
- Filled here for the cases open now, in batches, choosing each signature as registration
  would have (rarest grams among the earlier open cases of a 30-day window).

Revision ID: 0003
Revises: 0002
"""

from datetime import UTC

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = ("received", "triage", "assigned", "in_progress", "replied", "visited")
BATCH = 2000


def upgrade() -> None:
    op.create_table(
        "duplicate_signatures",
        sa.Column("hash", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("received_minute", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_duplicate_signatures_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "hash", "received_minute", "case_id", name=op.f("pk_duplicate_signatures")
        ),
        sqlite_with_rowid=False,
    )
    op.create_index(
        op.f("ix_duplicate_signatures_case_id"), "duplicate_signatures", ["case_id"], unique=False
    )

    from triage.duplicate_index import SignatureBuilder, signature_rows

    bind = op.get_bind()
    cases = sa.table(
        "cases",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("received_at", sa.DateTime),
        sa.column("subject", sa.String),
        sa.column("body", sa.Text),
    )
    signatures = sa.table(
        "duplicate_signatures",
        sa.column("hash", sa.Integer),
        sa.column("received_minute", sa.Integer),
        sa.column("case_id", sa.Integer),
    )
    builder = SignatureBuilder()
    last = 0
    # In id order, which is nearly the order of receipt the signatures were meant to follow.
    while True:
        batch = bind.execute(
            sa.select(cases.c.id, cases.c.received_at, cases.c.subject, cases.c.body)
            .where(cases.c.id > last, cases.c.status.in_(OPEN))
            .order_by(cases.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        rows = signature_rows(
            builder,
            (
                (r.id, r.received_at.replace(tzinfo=UTC), f"{r.subject or ''}\n{r.body or ''}")
                for r in batch
            ),
        )
        if rows:
            bind.execute(signatures.insert(), rows)
        last = batch[-1].id


def downgrade() -> None:
    op.drop_index(op.f("ix_duplicate_signatures_case_id"), table_name="duplicate_signatures")
    op.drop_table("duplicate_signatures")
