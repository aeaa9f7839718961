"""search index: each posting carries its case's department (search_grams.department_id)

A handler searches their own department's cases. Through postings keyed (gram, case_id) the
search read every matching case of the office and kept its department's: a handler's search
of 噪音扰民 touched 2,277 buffers at 100,000 cases and 29,398 at 1,000,000, growing with the
office rather than with what the handler sees. With the department in the postings and an
index (gram, department_id, case_id, fields), it reads the department's postings of its
rarest gram, newest first, and stops at the search's cap.

- search_grams.department_id: the case's department, 0 for none (NOT NULL: COPY's fixed
  binary rows and an index without NULLs); filled from the cases.
- ix_search_grams_department (gram, department_id, case_id, fields).
- the trigger search_grams_department on cases: a case's new department is copied into its
  postings, whichever writer moves it (triage/search_index.py, create_triggers).

On PostgreSQL the table is copied with the column filled (CREATE TABLE AS, then its keys and
indexes built) rather than updated in place: an UPDATE of every posting (some 22 million per
100,000 cases) would write each row twice and leave the table half dead tuples. Downgrade
drops the column, the index and the trigger.

Revision ID: 0032
Revises: 0031
"""

from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

_INDEX = "ix_search_grams_department"


def _postgresql() -> None:
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute(
        "CREATE TABLE search_grams_new (gram bigint NOT NULL, case_id integer NOT NULL,"
        " fields smallint NOT NULL, department_id integer NOT NULL DEFAULT 0)"
    )
    op.execute(
        "INSERT INTO search_grams_new (gram, case_id, fields, department_id)"
        " SELECT g.gram, g.case_id, g.fields, COALESCE(c.department_id, 0)"
        " FROM search_grams g JOIN cases c ON c.id = g.case_id"
    )
    op.execute("DROP TABLE search_grams")
    op.execute("ALTER TABLE search_grams_new RENAME TO search_grams")
    op.execute(
        "ALTER TABLE search_grams ADD CONSTRAINT pk_search_grams"
        " PRIMARY KEY (gram, case_id) INCLUDE (fields)"
    )
    op.execute(
        "ALTER TABLE search_grams ADD CONSTRAINT fk_search_grams_case_id_cases"
        " FOREIGN KEY (case_id) REFERENCES cases (id) ON DELETE CASCADE"
    )
    op.execute("CREATE INDEX ix_search_grams_case_id ON search_grams (case_id)")
    op.execute(f"CREATE INDEX {_INDEX} ON search_grams (gram, department_id, case_id, fields)")
    op.execute("ANALYZE search_grams")


def upgrade() -> None:
    from triage.search_index import create_triggers

    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        _postgresql()
    else:
        op.execute("ALTER TABLE search_grams ADD COLUMN department_id INTEGER NOT NULL DEFAULT 0")
        op.execute(
            "UPDATE search_grams SET department_id = cases.department_id FROM cases"
            " WHERE cases.id = search_grams.case_id AND cases.department_id IS NOT NULL"
        )
        op.create_index(
            _INDEX, "search_grams", ["gram", "department_id", "case_id", "fields"], unique=False
        )
    create_triggers(conn)


def downgrade() -> None:
    from triage.search_index import drop_triggers

    drop_triggers(op.get_bind())
    op.drop_index(_INDEX, table_name="search_grams")
    op.execute("ALTER TABLE search_grams DROP COLUMN department_id")
