"""search index: character bigrams and word trigrams of every case, for search without a scan

- search_grams (gram, case_id, fields): one row per distinct gram of a case's text (subject,
  body, replies, tracking number, contact; and the masked subject and body observers search),
  ``fields`` saying where it occurs. The primary key is the lookup order (SQLite: WITHOUT
  ROWID, so the table is that index), plus an index on case_id to rewrite one case's rows.
  See triage/search_index.py.
- Filled here for every existing case, in batches of 2,000 cases.
- ix_cases_department_received (department_id, received_at, id): a department's case list
  newest first (or oldest, for its last page) read from an index, not sorted per request.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_grams",
        sa.Column("gram", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("fields", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_search_grams_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("gram", "case_id", name=op.f("pk_search_grams")),
        sqlite_with_rowid=False,
    )
    op.create_index(op.f("ix_search_grams_case_id"), "search_grams", ["case_id"], unique=False)
    op.create_index("ix_cases_department_received", "cases", ["department_id", "received_at", "id"])

    from triage.search_index import rebuild

    rebuild(op.get_bind(), departments=False)  # the column came in 0032


def downgrade() -> None:
    op.drop_index("ix_cases_department_received", table_name="cases")
    op.drop_index(op.f("ix_search_grams_case_id"), table_name="search_grams")
    op.drop_table("search_grams")
