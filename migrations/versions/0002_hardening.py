"""hardening: revocable sessions, public rejection reasons, merged citizens' visits, masked text

- users.session_token: part of every session and remember cookie; renewed on sign-out and
  password change, which revokes every copy of the old cookies.
- cases.rejection_code / public_reason / referred_to: what the citizen is told of a
  rejection, and the outside body a complaint belongs to (转外单位).
- cases.masked_text: subject and body as masked views show them, which is all that users
  who see masked data may search. Filled here for existing cases, whose phones are also
  brought to the canonical form the forms now store (so that a search by phone finds them).
- return_visits.citizen_case_id: a return visit to the complainant of a merged case.

Revision ID: 0002
Revises: 0001
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("session_token", sa.String(64), nullable=False, server_default="")
        )
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("rejection_code", sa.String(40), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("public_reason", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("referred_to", sa.String(200), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("masked_text", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("return_visits") as batch:
        batch.add_column(sa.Column("citizen_case_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_return_visits_citizen_case_id_cases", "cases", ["citizen_case_id"], ["id"]
        )

    bind = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("session_token", sa.String))
    for (user_id,) in bind.execute(sa.select(users.c.id)).all():
        bind.execute(
            users.update().where(users.c.id == user_id).values(session_token=secrets.token_hex(16))
        )

    from intake.normalise import PhoneError, normalise_phone
    from triage.privacy import masked_case_text

    cases = sa.table(
        "cases",
        sa.column("id", sa.Integer),
        sa.column("subject", sa.String),
        sa.column("body", sa.Text),
        sa.column("contact_name", sa.String),
        sa.column("contact_phone", sa.String),
        sa.column("contact_email", sa.String),
        sa.column("masked_text", sa.Text),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(cases).where(cases.c.id > last).order_by(cases.c.id).limit(1000)
        ).all()
        if not rows:
            break
        for r in rows:
            try:
                phone = normalise_phone(r.contact_phone) if r.contact_phone else ""
            except PhoneError:
                phone = r.contact_phone  # kept as typed: a person can still read it
            bind.execute(
                cases.update()
                .where(cases.c.id == r.id)
                .values(
                    contact_phone=phone,
                    masked_text=masked_case_text(
                        r.subject, r.body, r.contact_name, r.contact_phone, r.contact_email
                    ),
                )
            )
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("return_visits") as batch:
        batch.drop_constraint("fk_return_visits_citizen_case_id_cases", type_="foreignkey")
        batch.drop_column("citizen_case_id")
    with op.batch_alter_table("cases") as batch:
        for column in ("masked_text", "referred_to", "public_reason", "rejection_code"):
            batch.drop_column(column)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_token")
