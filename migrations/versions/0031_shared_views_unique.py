"""saved_views: a role's shared view is unique by (role, name)

uq_saved_views_owner (user_id, role, name) holds nothing for a role's shared views (user_id
NULL): NULLs are distinct in a unique constraint, so two saves of one shared view at once
stored it twice (every user of the role saw it twice). A partial unique index on (role, name)
WHERE user_id IS NULL holds them, and `triage.case_list.save_view` upserts against it.

Duplicates already stored are removed first, keeping the newest (highest id) of each
(role, name); if more than one of them was the role's default, the one kept stays as it was.

Revision ID: 0031
Revises: 0030
"""

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM saved_views WHERE user_id IS NULL AND id NOT IN"
        " (SELECT max(id) FROM saved_views WHERE user_id IS NULL GROUP BY role, name)"
    )
    op.create_index(
        "uq_saved_views_shared",
        "saved_views",
        ["role", "name"],
        unique=True,
        sqlite_where=sa.text("user_id IS NULL"),
        postgresql_where=sa.text("user_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_saved_views_shared", table_name="saved_views")
