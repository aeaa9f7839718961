"""initial schema: departments, users, cases, their events, replies, visits, attachments

The audit log (case_events) is append-only: triggers refuse UPDATE and DELETE on both
SQLite and PostgreSQL, so not even a hand-written query can rewrite history.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 00:20:37.995397
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('counters',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_counters'))
    )
    op.create_table('departments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_en', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_departments')),
    sa.UniqueConstraint('code', name=op.f('uq_departments_code'))
    )
    op.create_table('throttle_marks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_throttle_marks'))
    )
    with op.batch_alter_table('throttle_marks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_throttle_marks_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_throttle_marks_key'), ['key'], unique=False)

    op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tracking_number', sa.String(length=30), nullable=False),
    sa.Column('query_code_hash', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('contact_name', sa.String(length=100), nullable=False),
    sa.Column('contact_phone', sa.String(length=40), nullable=False),
    sa.Column('contact_email', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('suggested_department_id', sa.Integer(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('alternatives', sa.JSON(), nullable=False),
    sa.Column('model_version', sa.String(length=60), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('urgent_reasons', sa.JSON(), nullable=False),
    sa.Column('similar', sa.JSON(), nullable=False),
    sa.Column('triage_due_at', sa.DateTime(), nullable=True),
    sa.Column('due_at', sa.DateTime(), nullable=True),
    sa.Column('assigned_at', sa.DateTime(), nullable=True),
    sa.Column('replied_at', sa.DateTime(), nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('merged_into_id', sa.Integer(), nullable=True),
    sa.Column('rejection_reason', sa.Text(), nullable=False),
    sa.Column('sent_back_count', sa.Integer(), nullable=False),
    sa.Column('rework_count', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_cases_department_id_departments')),
    sa.ForeignKeyConstraint(['merged_into_id'], ['cases.id'], name=op.f('fk_cases_merged_into_id_cases')),
    sa.ForeignKeyConstraint(['suggested_department_id'], ['departments.id'], name=op.f('fk_cases_suggested_department_id_departments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('channel', 'external_id', name='uq_cases_channel_external'),
    sa.UniqueConstraint('tracking_number', name=op.f('uq_cases_tracking_number'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_department_id'), ['department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_status'), ['status'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('password_hash', sa.String(length=300), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_login_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_users_department_id_departments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_attachments_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments'))
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_case_id'), ['case_id'], unique=False)

    op.create_table('case_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sa.String(length=200), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=True),
    sa.Column('to_status', sa.String(length=20), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_case_events_actor_id_users')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_events_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_events'))
    )
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_events_case_id'), ['case_id'], unique=False)

    op.create_table('case_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_case_replies_author_id_users')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_replies_case_id_cases')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_case_replies_department_id_departments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_replies'))
    )
    with op.batch_alter_table('case_replies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_replies_case_id'), ['case_id'], unique=False)

    op.create_table('return_visits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('visitor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('reached', sa.Boolean(), nullable=False),
    sa.Column('solved', sa.Boolean(), nullable=True),
    sa.Column('satisfaction', sa.String(length=20), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_return_visits_case_id_cases')),
    sa.ForeignKeyConstraint(['visitor_id'], ['users.id'], name=op.f('fk_return_visits_visitor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_return_visits'))
    )
    with op.batch_alter_table('return_visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_return_visits_case_id'), ['case_id'], unique=False)


    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION case_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'the audit log is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER case_events_no_change BEFORE UPDATE OR DELETE ON case_events "
            "FOR EACH ROW EXECUTE FUNCTION case_events_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER case_events_no_{verb.lower()} BEFORE {verb} ON case_events "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS case_events_no_change ON case_events")
        op.execute("DROP FUNCTION IF EXISTS case_events_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS case_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS case_events_no_delete")
    with op.batch_alter_table('return_visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_return_visits_case_id'))

    op.drop_table('return_visits')
    with op.batch_alter_table('case_replies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_replies_case_id'))

    op.drop_table('case_replies')
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_events_case_id'))

    op.drop_table('case_events')
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_case_id'))

    op.drop_table('attachments')
    op.drop_table('users')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_status'))
        batch_op.drop_index(batch_op.f('ix_cases_received_at'))
        batch_op.drop_index(batch_op.f('ix_cases_department_id'))

    op.drop_table('cases')
    with op.batch_alter_table('throttle_marks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_throttle_marks_key'))
        batch_op.drop_index(batch_op.f('ix_throttle_marks_at'))

    op.drop_table('throttle_marks')
    op.drop_table('departments')
    op.drop_table('counters')
