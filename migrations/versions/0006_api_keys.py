"""api keys: outside systems that file cases through Open311 GeoReport v2

- api_keys: one row per key given out; only the SHA-256 of the key is kept (key_hash), with
  its first characters (prefix) to tell keys apart. See triage/api_keys.py.
- cases.api_key_id: the key a case was filed through (NULL for every other channel).
- Nothing to fill: existing cases came through no key.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_api_keys_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with an inline reference in place; a batch operation would
        # copy the whole cases table to add the constraint.
        op.execute(
            "ALTER TABLE cases ADD COLUMN api_key_id INTEGER "
            "CONSTRAINT fk_cases_api_key_id_api_keys REFERENCES api_keys (id)"
        )
    else:
        op.add_column("cases", sa.Column("api_key_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_cases_api_key_id_api_keys", "cases", "api_keys", ["api_key_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        if op.get_bind().dialect.name != "sqlite":
            # SQLite does not report the name of an inline reference; the copy leaves it out.
            batch.drop_constraint("fk_cases_api_key_id_api_keys", type_="foreignkey")
        batch.drop_column("api_key_id")
    op.drop_table("api_keys")
