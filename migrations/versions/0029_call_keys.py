"""call keys seen on events; the area code the caller keys were made with

``call_keys`` (channel, key) -> case, event: the call id of a repeat call (催办) or a reopen
logged at the desk, which is kept on its event, not as a case's ``external_id``. The call
import and the desk look a call's key up there as well as among the cases' own
(triage/call_keys.py), so such a call in the next day's export is not a new case. Filled
here from the events ("urged", "reopened") whose detail has a ``call_id``; the first event
of a call id keeps it (a call id already a case's own is left to the case).

``app_marks`` (name -> value): ``caller_keys_area_code``, the ``[app] area_code`` the
caller keys were computed with; ``minsheng init`` re-keys local-number cases when the
setting differs (triage/call_keys.rekey_for_area_code). Left empty here: the first
``minsheng init`` re-keys them once.

Revision ID: 0029
Revises: 0028
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

CHANNEL = "phone"


def upgrade() -> None:
    op.create_table(
        "call_keys",
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column(
            "case_id",
            sa.Integer,
            sa.ForeignKey("cases.id", name="fk_call_keys_case_id_cases", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "event_id",
            sa.Integer,
            sa.ForeignKey(
                "case_events.id", name="fk_call_keys_event_id_case_events", ondelete="CASCADE"
            ),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("channel", "key", name=op.f("pk_call_keys")),
    )
    op.create_index("ix_call_keys_case_id", "call_keys", ["case_id"])
    op.create_table(
        "app_marks",
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_app_marks")),
    )
    events = sa.table(
        "case_events",
        sa.column("id", sa.Integer),
        sa.column("case_id", sa.Integer),
        sa.column("action", sa.String),
        sa.column("detail", sa.Text),
    )
    cases = sa.table(
        "cases",
        sa.column("channel", sa.String),
        sa.column("external_id", sa.String),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(events.c.id, events.c.case_id, events.c.detail)
        .where(
            events.c.action.in_(("urged", "reopened")),
            sa.cast(events.c.detail, sa.Text).like('%"call_id"%'),
        )
        .order_by(events.c.id)
    )
    keys: dict[str, tuple[int, int]] = {}
    for event_id, case_id, detail in rows:
        data = json.loads(detail) if isinstance(detail, str) else (detail or {})
        call_id = str(data.get("call_id") or "").strip()[:255]
        if call_id and call_id not in keys:
            keys[call_id] = (case_id, event_id)
    if keys:
        taken = {
            k
            for (k,) in conn.execute(
                sa.select(cases.c.external_id).where(
                    cases.c.channel == CHANNEL, cases.c.external_id.in_(list(keys))
                )
            )
        }
        table = sa.table(
            "call_keys",
            sa.column("channel", sa.String),
            sa.column("key", sa.String),
            sa.column("case_id", sa.Integer),
            sa.column("event_id", sa.Integer),
        )
        new = [
            {"channel": CHANNEL, "key": k, "case_id": c, "event_id": e}
            for k, (c, e) in keys.items()
            if k not in taken
        ]
        if new:
            conn.execute(table.insert(), new)


def downgrade() -> None:
    op.drop_table("app_marks")
    op.drop_index("ix_call_keys_case_id", table_name="call_keys")
    op.drop_table("call_keys")
