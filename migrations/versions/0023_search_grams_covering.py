"""search index: the fields in the primary key's index on PostgreSQL (INCLUDE)

A search reads a gram's postings (gram, case_id) in the primary key's order and needs each
posting's fields (which of subject, body, contact, ... hold it) to keep what the user may
search; on PostgreSQL the fields were only in the heap, where each case's rows are together
and each gram's are on a page apiece: a handler's search for 物业 at 100,000 cases read
17,700 heap pages for 17,800 postings (690 ms cold). With ``INCLUDE (fields)`` the postings
are read from the index alone. SQLite's table is WITHOUT ROWID: its key's B-tree holds the
fields already (nothing to do).

Rebuilding the key reads the whole table: some 22 million rows per 100,000 cases.

Revision ID: 0023
Revises: 0022
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def _key(include: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute(
        "ALTER TABLE search_grams DROP CONSTRAINT pk_search_grams,"
        " ADD CONSTRAINT pk_search_grams PRIMARY KEY (gram, case_id)"
        + (" INCLUDE (fields)" if include else "")
    )


def upgrade() -> None:
    _key(True)


def downgrade() -> None:
    _key(False)
