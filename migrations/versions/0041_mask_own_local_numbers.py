"""privacy: a citizen's own number written without its area code is masked in stored text

A complainant whose landline is stored as 01087654321 often writes it as 8765 4321 ("白天请打
8765 4321找我"): masked views took it for someone else's short number and left it readable,
and observers found the case by it. The masking now treats a number of seven digits or more
that a group member's stored phone ends with as theirs (`triage.privacy`). Masks every case
again, a batch at a time, and re-indexes those whose masked text changed
(`triage.search_index.remask_all`); the code keeps them so from now on.

Downgrade: nothing to undo (masking more never made a search find what it should not).

Revision ID: 0041
Revises: 0040
"""

from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from triage.search_index import remask_all

    remask_all(op.get_bind())


def downgrade() -> None:
    pass
