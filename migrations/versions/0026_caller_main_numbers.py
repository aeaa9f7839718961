"""caller keys of the main number: cases with an extension or a local number are keyed again

A caller is now their main number (triage/callers.caller_number): ``010-87654321 转 123``
is the caller 010-87654321, and a local number without its area code (8765 4321) takes the
office's (``[app] area_code``). The keys of cases whose stored phone has an extension
(``01087654321-123``, ``87654321-123``) or is a local number (7 or 8 digits) were made of
the whole number; they are cleared here, and ``minsheng init`` (which runs the migrations)
computes them again with the application's secret and area code, as it does for cases
from before migration 0010 (triage/callers.backfill_caller_keys). Until then such a case's
history is read from its contact (triage/callers.case_keys). Downgrade: nothing to undo
(the keys stay as computed).

Revision ID: 0026
Revises: 0025
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    cases = sa.table(
        "cases",
        sa.column("contact_phone", sa.String),
        sa.column("caller_key", sa.String),
        sa.column("caller_alt_key", sa.String),
    )
    phone = cases.c.contact_phone
    local = sa.and_(
        sa.func.length(phone).in_((7, 8)), sa.func.substr(phone, 1, 1).not_in(("0", "1"))
    )
    op.execute(
        cases.update()
        .where(cases.c.caller_key.is_not(None), sa.or_(phone.like("%-%"), local))
        .values(caller_key=None, caller_alt_key=None)
    )


def downgrade() -> None:
    pass
