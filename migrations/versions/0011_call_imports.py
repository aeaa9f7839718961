"""call imports: one row per import of a call-centre export (file, who, when, counts, report)

- call_imports: the file's name and SHA-256, the column mapping, whether it was a dry run,
  who ran it (a staff account, or a name such as "command line"), when it started, last
  committed a batch (updated_at) and finished (finished_at NULL: running, or interrupted
  when silent; its committed rows stay, and importing the file again completes it without
  duplicates), the counts and the bad rows (JSON list of
  {row, column, code, message, params}). See triage/call_imports.py.
- Cases registered by an import name it in their "call_imported" event; no column on cases.
- ix_cases_merged_into_id: the search index (triage/search_index.py) looks up the cases
  merged into each case it writes, at every registration; without the index that was a scan
  of all cases (20 ms a registration at 13,000 cases on SQLite, growing with the table).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("mapping", sa.String(length=40), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("registered", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_call_imports_actor_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_imports")),
    )
    op.create_index(
        op.f("ix_call_imports_started_at"), "call_imports", ["started_at"], unique=False
    )
    op.create_index(op.f("ix_cases_merged_into_id"), "cases", ["merged_into_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cases_merged_into_id"), table_name="cases")
    op.drop_index(op.f("ix_call_imports_started_at"), table_name="call_imports")
    op.drop_table("call_imports")
