"""similarity profiles: similarity_profiles, each case's compact similarity profile, stored
when the case is enriched (triage/similarity_store.py)

Scoring a new case against its ~50 candidate duplicates computed each candidate's profile
from its text (jieba tagging and place parsing, 0.5-2 ms each) whenever it had fallen out of
the in-process cache: enrichment cost 6 ms a case with 2,000 open cases, 26-37 ms with
10,000. A stored profile is read with the candidate instead. Cases enriched before this
revision have none: their profile is computed and stored the first time they are a
candidate (or by `triage.similarity_store.backfill`).

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "similarity_profiles",
        sa.Column("case_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_similarity_profiles_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_similarity_profiles")),
    )


def downgrade() -> None:
    op.drop_table("similarity_profiles")
