"""call_import_errors: an import's bad rows as rows of their own, appended per batch

Before, a run's bad rows were one JSON value (call_imports.errors) rewritten whole, and so
written only every few hundred bad rows: a crash lost those not yet written, and a
running import's page showed "rejected 1" beside an empty list. Each batch now appends its
bad rows in the transaction of its cases and counts (triage/call_imports.add_to_run).
The stored lists move into the table (in their order) and the column goes; the downgrade
puts them back.

Revision ID: 0021
Revises: 0020
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def _errors_table() -> sa.Table:
    return sa.table(
        "call_import_errors",
        sa.column("id", sa.Integer),
        sa.column("import_id", sa.Integer),
        sa.column("row", sa.Integer),
        sa.column("sheet", sa.String),
        sa.column("column", sa.String),
        sa.column("code", sa.String),
        sa.column("message", sa.Text),
        sa.column("params", sa.JSON),
    )


def upgrade() -> None:
    op.create_table(
        "call_import_errors",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "import_id",
            sa.Integer(),
            sa.ForeignKey("call_imports.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("sheet", sa.String(255), nullable=False, server_default=""),
        sa.Column("column", sa.String(255), nullable=False, server_default=""),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
    )
    op.create_index("ix_call_import_errors_import_id", "call_import_errors", ["import_id"])
    bind = op.get_bind()
    table = _errors_table()
    runs = bind.execute(sa.text("SELECT id, errors FROM call_imports ORDER BY id"))
    for run_id, stored in runs.all():
        errors = json.loads(stored) if isinstance(stored, str) else stored
        if not errors:
            continue
        bind.execute(
            table.insert(),
            [
                {
                    "import_id": run_id,
                    "row": int(e.get("row") or 0),
                    "sheet": str(e.get("sheet") or "")[:255],
                    "column": str(e.get("column") or "")[:255],
                    "code": str(e.get("code") or "")[:40],
                    "message": str(e.get("message") or ""),
                    "params": {k: str(v) for k, v in (e.get("params") or {}).items()},
                }
                for e in errors
            ],
        )
    with op.batch_alter_table("call_imports") as t:
        t.drop_column("errors")


def downgrade() -> None:
    with op.batch_alter_table("call_imports") as t:
        t.add_column(sa.Column("errors", sa.JSON(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            'SELECT import_id, "row", sheet, "column", code, message, params '
            "FROM call_import_errors ORDER BY import_id, id"
        )
    ).all()
    by_run: dict[int, list[dict[str, object]]] = {}
    for import_id, row, sheet, column, code, message, params in rows:
        record: dict[str, object] = {
            "row": row,
            "column": column,
            "code": code,
            "message": message,
            "params": json.loads(params) if isinstance(params, str) else params,
        }
        if sheet:
            record["sheet"] = sheet
        by_run.setdefault(import_id, []).append(record)
    calls = sa.table("call_imports", sa.column("id", sa.Integer), sa.column("errors", sa.JSON))
    bind.execute(calls.update().values(errors=[]))
    for import_id, errors in by_run.items():
        bind.execute(calls.update().where(calls.c.id == import_id).values(errors=errors))
    op.drop_index("ix_call_import_errors_import_id", "call_import_errors")
    op.drop_table("call_import_errors")
