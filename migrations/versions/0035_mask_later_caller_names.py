"""search: names a caller gave on later calls are masked in what observers search

The case page masks every name the caller gave (the contact's, and those given on a repeat
call or a reopen: `Case.caller_names`), but the masked text (`cases.masked_text`) and the
masked fields of the search index masked only the contact's, so an observer found a case by
a name the page hid. Re-masks and re-indexes the cases with such a name; the code keeps them
so from now on (triage/search_index.py). Downgrade leaves them masked: nothing to undo.

Revision ID: 0035
Revises: 0034
"""

from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from triage.search_index import remask_callers

    remask_callers(op.get_bind())


def downgrade() -> None:
    pass
