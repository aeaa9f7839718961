"""call import sheets: which sheets of an XLSX workbook an import read and which it skipped

- call_imports.sheets: [{name, read, reason, missing}] in the workbook's order (reason:
  hidden, empty, no_columns with the missing headers); NULL for a CSV and for runs before
  this revision. Shown on the run's page and in its report. See intake/phone.py
  parse_file.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call_imports") as t:
        t.add_column(sa.Column("sheets", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_imports") as t:
        t.drop_column("sheets")
