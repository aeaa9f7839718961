"""search: a number is found in the text however it was spaced there

A staff member searching 13800138000 did not find a complaint whose body says
138-0013-8000 (nor 138 0013 8000, (010)8765-4321): the index held the digits of such a number
as separate runs, and the text check looked for the query as typed. The index now holds the
six-digit grams of every number written with separators, read as one run of digits
(`triage.search_index.spaced_grams`); the search checks its candidates' text with the
separators taken out. Adds those grams to the cases whose subject, body or replies have such
a number (read in batches; the others are left as they are).

Downgrade: nothing to undo. The code before this revision checks every query of six digits
or more on the text, so the added grams find nothing it would not.

Revision ID: 0038
Revises: 0037
"""

from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from triage.search_index import add_spaced_numbers

    add_spaced_numbers(op.get_bind())


def downgrade() -> None:
    pass
