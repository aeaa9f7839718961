"""search index: six digits in a row are a gram of their own

Every phone and tracking number holds digit trigrams, of which there are only a thousand: at
1,000,000 cases a phone number's rarest trigram had some 18,000 postings, and its search read
63,000 buffers (25 ms), growing with the office. Six digits in a row are now also indexed as
one gram (``1 << 61 | int(digits)``, triage/search_index.py), a million values with a handful
of postings each, and a query with six digits in a row reads those.

Adds the six-digit grams of every case (about seven per case: its phone's six, its tracking
number's one); those already there (a database indexed by this code's rebuild in migration
0008) are replaced. Downgrade removes them.

Revision ID: 0034
Revises: 0033
"""

from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

_SIX_DIGITS = f"gram >= {1 << 61} AND gram < {1 << 62}"


def upgrade() -> None:
    from triage.search_index import add_six_digit_grams

    op.execute(f"DELETE FROM search_grams WHERE {_SIX_DIGITS}")
    add_six_digit_grams(op.get_bind())


def downgrade() -> None:
    op.execute(f"DELETE FROM search_grams WHERE {_SIX_DIGITS}")
