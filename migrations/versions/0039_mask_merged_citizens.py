"""privacy: a case's masked texts mask the citizens of the cases merged with it or linked to it

A reply to a case that others were merged into names their citizens too (李四, 139…), and
so may its visit notes and the reason for the merge; a follow-up opened at the desk is the
same caller's matter. The case's masked text (`cases.masked_text`) and the masked fields of
its search postings masked only its own caller, so an observer read and found those names.
Masked views now mask the people of the whole group (`triage.case_people`). And a
complainant whose landline is stored as 01087654321 often writes it as 8765 4321 ("白天请打
8765 4321找我"): masked views took it for someone else's short number and left it readable;
a number of seven digits or more that a group member's stored phone ends with is now theirs
(`triage.privacy`). Masks every case again, a batch at a time, and re-indexes those whose
masked text changed (`triage.search_index.remask_all`: cheaper than re-indexing every case
of a group, most of which have nothing of another citizen in them); the code keeps them so
from now on.

Downgrade: nothing to undo (the code before this revision reads the stored text as it is;
masking more never made a search find what it should not).

Revision ID: 0039
Revises: 0038
"""

from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from triage.search_index import remask_all

    remask_all(op.get_bind())


def downgrade() -> None:
    pass
