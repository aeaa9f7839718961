"""enrichment pending: enrichment_pending, the cases whose similar-case suggestions and
search rows are still to be computed after the commit (triage/enrichment.py)

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrichment_pending",
        sa.Column("case_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_enrichment_pending_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_enrichment_pending")),
    )


def downgrade() -> None:
    op.drop_table("enrichment_pending")
