"""admin events: the administrators' audit log is append-only, as the cases' is

Triggers refuse UPDATE and DELETE on ``admin_events`` on both SQLite and PostgreSQL, as
0001's do on ``case_events``: an administrator's actions (accounts, departments, API keys)
cannot be rewritten or erased afterwards, not even by a hand-written query. (TRUNCATE and
``session_replication_role = replica``, the tests' reset, still empty it. On SQLite a later
migration that rebuilds the table by batch copy drops these triggers: it must make them again.)

Revision ID: 0041
Revises: 0040
"""

from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION admin_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'the audit log is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER admin_events_no_change BEFORE UPDATE OR DELETE ON admin_events "
            "FOR EACH ROW EXECUTE FUNCTION admin_events_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER admin_events_no_{verb.lower()} BEFORE {verb} ON admin_events "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS admin_events_no_change ON admin_events")
        op.execute("DROP FUNCTION IF EXISTS admin_events_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS admin_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS admin_events_no_delete")
