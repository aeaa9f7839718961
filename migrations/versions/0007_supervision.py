"""supervision: findings, extensions, the head's sign-off, visit validity, spot checks, observers

- users.head: the department head (signs replies off, receives escalations and digests).
- cases.extended_to / extension_count: the deadline a granted extension (延期) moved to;
  cases.risk: the worst finding of the last tick ("" / at_risk / overdue), indexed for lists.
- case_replies.state / signed_off_by_id / signed_off_at / sign_off_note: self-check (自律).
- return_visits.channel / valid: how the citizen was asked and whether the visit counts;
  existing visits are phone visits, valid when they reached the citizen.
- outbox: ix_outbox_ack_recipient, a partial index on lower(to_display), created_at of
  acknowledgments, for the mail intake's per-address limit.
- extension_requests, case_findings, spot_check_draws, spot_checks, observations: see
  triage/models.py.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as t:
        t.add_column(sa.Column("head", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("cases") as t:
        t.add_column(sa.Column("extended_to", sa.DateTime(), nullable=True))
        t.add_column(sa.Column("extension_count", sa.Integer(), nullable=False, server_default="0"))
        t.add_column(sa.Column("risk", sa.String(length=10), nullable=False, server_default=""))
        t.create_index(op.f("ix_cases_risk"), ["risk"], unique=False)
    with op.batch_alter_table("case_replies") as t:
        t.add_column(
            sa.Column("state", sa.String(length=20), nullable=False, server_default="sent")
        )
        t.add_column(sa.Column("signed_off_by_id", sa.Integer(), nullable=True))
        t.add_column(sa.Column("signed_off_at", sa.DateTime(), nullable=True))
        t.add_column(sa.Column("sign_off_note", sa.Text(), nullable=False, server_default=""))
        t.create_foreign_key(
            op.f("fk_case_replies_signed_off_by_id_users"), "users", ["signed_off_by_id"], ["id"]
        )
    with op.batch_alter_table("return_visits") as t:
        t.add_column(
            sa.Column("channel", sa.String(length=10), nullable=False, server_default="phone")
        )
        t.add_column(sa.Column("valid", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE return_visits SET valid = reached")

    op.create_table(
        "extension_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("proposed_due_at", sa.DateTime(), nullable=False),
        sa.Column("previous_due_at", sa.DateTime(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.Column("granted_due_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_extension_requests_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_extension_requests_requested_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_extension_requests_decided_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extension_requests")),
    )
    op.create_index(
        op.f("ix_extension_requests_case_id"), "extension_requests", ["case_id"], unique=False
    )

    op.create_table(
        "case_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("combination", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_findings_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_findings")),
        sa.UniqueConstraint("case_id", "rule", name="uq_case_findings_case_rule"),
    )
    op.create_index(op.f("ix_case_findings_case_id"), "case_findings", ["case_id"], unique=False)
    op.create_index(op.f("ix_case_findings_rule"), "case_findings", ["rule"], unique=False)

    op.create_table(
        "spot_check_draws",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("drawn_at", sa.DateTime(), nullable=False),
        sa.Column("drawn_by", sa.String(length=200), nullable=False),
        sa.Column("seed", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("window_end", sa.DateTime(), nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("sample", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spot_check_draws")),
    )
    op.create_table(
        "spot_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draw_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("result", sa.String(length=10), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("checked_by_id", sa.Integer(), nullable=True),
        sa.Column("checked_at", sa.DateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["draw_id"],
            ["spot_check_draws.id"],
            name=op.f("fk_spot_checks_draw_id_spot_check_draws"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_spot_checks_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["checked_by_id"], ["users.id"], name=op.f("fk_spot_checks_checked_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spot_checks")),
        sa.UniqueConstraint("draw_id", "case_id", name="uq_spot_checks_draw_case"),
    )
    op.create_index(op.f("ix_spot_checks_draw_id"), "spot_checks", ["draw_id"], unique=False)
    op.create_index(op.f("ix_spot_checks_case_id"), "spot_checks", ["case_id"], unique=False)
    op.create_index(op.f("ix_spot_checks_result"), "spot_checks", ["result"], unique=False)

    op.create_table(
        "observations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("observer_id", sa.Integer(), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("answered_by_id", sa.Integer(), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["observer_id"], ["users.id"], name=op.f("fk_observations_observer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_observations_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_observations_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["answered_by_id"], ["users.id"], name=op.f("fk_observations_answered_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
    )
    op.create_index(op.f("ix_observations_case_id"), "observations", ["case_id"], unique=False)
    op.create_index(
        op.f("ix_observations_department_id"), "observations", ["department_id"], unique=False
    )
    op.create_index(op.f("ix_observations_state"), "observations", ["state"], unique=False)

    # The per-address acknowledgment limit of the mail intake (acknowledgments_to): only
    # acknowledgments are indexed, by their one bare address.
    op.create_index(
        "ix_outbox_ack_recipient",
        "outbox",
        [sa.text("lower(to_display)"), "created_at"],
        unique=False,
        postgresql_where=sa.text("kind = 'acknowledgment'"),
        sqlite_where=sa.text("kind = 'acknowledgment'"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_ack_recipient", table_name="outbox")
    for table in ("observations", "spot_checks", "spot_check_draws", "case_findings"):
        op.drop_table(table)
    op.drop_table("extension_requests")
    with op.batch_alter_table("return_visits") as t:
        t.drop_column("valid")
        t.drop_column("channel")
    with op.batch_alter_table("case_replies") as t:
        t.drop_constraint(op.f("fk_case_replies_signed_off_by_id_users"), type_="foreignkey")
        for column in ("sign_off_note", "signed_off_at", "signed_off_by_id", "state"):
            t.drop_column(column)
    # Not a batch: on SQLite a batch would copy and drop `cases`, which the rows of every
    # table referring to it forbid; SQLite drops an unindexed column in place.
    op.drop_index(op.f("ix_cases_risk"), table_name="cases")
    for column in ("risk", "extension_count", "extended_to"):
        op.drop_column("cases", column)
    with op.batch_alter_table("users") as t:
        t.drop_column("head")
