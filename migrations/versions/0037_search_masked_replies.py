"""search: observers find a case by the replies that went out, masked as its page shows them

The case page shows observers and external supervisors a case's sent replies (masked), but
what they search held only the masked subject and body: `cases.masked_text` and the masked
fields of the search index. The index gets a field bit for a sent reply masked
(`MASKED_REPLY`, 128, triage/search_index.py) and the masked text the masked sent replies
after the subject and body. Re-masks and re-indexes the cases with at least one sent reply, a
batch at a time; the code keeps them so from now on.

Downgrade: the bit is cleared from every posting (a posting of a sent reply alone is deleted)
and those cases' masked text is made again without their replies, as the code before this
revision wrote it.

Revision ID: 0037
Revises: 0036
"""

from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from triage.search_index import mask_replies

    mask_replies(op.get_bind())


def downgrade() -> None:
    from triage.search_index import MASKED_REPLY, mask_replies

    bind = op.get_bind()
    bind.exec_driver_sql(f"DELETE FROM search_grams WHERE fields = {MASKED_REPLY}")
    bind.exec_driver_sql(
        f"UPDATE search_grams SET fields = fields & {~MASKED_REPLY}"
        f" WHERE fields & {MASKED_REPLY} <> 0"
    )
    mask_replies(bind, with_replies=False)
