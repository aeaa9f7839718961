"""Migration 0030 on both databases: a department's list by last change has its own index, and
the four single-column indexes it drops (each a case written costs) leave no query that used
them without an index led by the same column."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import func, select

from tests.integration.test_list_pages_at_scale import _plan
from triage.case_list import UPDATED_KEY
from triage.models import OPEN_STATUSES, Case
from web.db import alembic_config, make_engine, upgrade

DROPPED = {"ix_cases_received_at", "ix_cases_department_id", "ix_cases_status", "ix_cases_risk"}
ADDED = "ix_cases_department_updated"


def _indexes(engine: object) -> set[str]:
    # From the catalogue: SQLite's inspector leaves expression indexes out.
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cases'"
        if engine.dialect.name == "sqlite"  # type: ignore[attr-defined]
        else "SELECT indexname FROM pg_indexes"
        " WHERE tablename = 'cases' AND schemaname = current_schema()"
    )
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return set(conn.exec_driver_sql(sql).scalars())


def test_migration_0030_indexes_and_the_queries_that_read_them(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine)
        assert ADDED in _indexes(engine)
        assert not DROPPED & _indexes(engine)
        now = datetime.now(UTC)
        # query -> the indexes (any of them) that may answer it without reading every case.
        queries = {
            # A handler's list by last change, first page and last page (read from the end).
            "department by updated": (
                select(Case.id)
                .where(Case.department_id == 1)
                .order_by(UPDATED_KEY.desc(), Case.id.desc())
                .limit(51),
                {ADDED},
            ),
            "department by updated, last page": (
                select(Case.id)
                .where(Case.department_id == 1)
                .order_by(UPDATED_KEY, Case.id)
                .limit(51),
                {ADDED},
            ),
            # What the dropped indexes answered, now read from the composite indexes.
            "received since": (
                select(func.count()).select_from(Case).where(Case.received_at >= now),
                {"ix_cases_received_id", "ix_cases_urgent", "ix_cases_overdue_received"},
            ),
            "open count": (
                select(func.count())
                .select_from(Case)
                .where(Case.status.in_([str(s) for s in OPEN_STATUSES])),
                {
                    "ix_cases_status_received",
                    "ix_cases_status_closed_at",
                    "ix_cases_status_due",
                    "ix_cases_status_triage_due",
                    "ix_cases_status_deadline",
                    "ix_cases_facets",
                    # Partial indexes holding only the open cases (0033): the smallest.
                    "ix_cases_caller_key_open",
                    "ix_cases_caller_alt_key_open",
                },
            ),
            "a department's cases": (
                select(func.count()).select_from(Case).where(Case.department_id == 1),
                {
                    "ix_cases_department_ids",
                    "ix_cases_department_received",
                    "ix_cases_department_facets",
                    "ix_cases_department_updated",
                    "ix_cases_department_deadline",
                    "ix_cases_department_status_received",
                    "ix_cases_department_status_deadline",
                    "ix_cases_department_id_status_closed_at",
                },
            ),
            # The tick's watched cases that are closed but still marked.
            "marked": (
                select(Case.id).where(Case.risk != ""),
                {"ix_cases_attention"},
            ),
        }
        with engine.connect() as conn:
            for label, (query, names) in queries.items():
                sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
                plan = _plan(conn, sql)
                assert any(name in plan for name in names), (label, plan)
                conn.rollback()
        command.downgrade(alembic_config(engine), "0029")
        assert _indexes(engine) >= DROPPED
        assert ADDED not in _indexes(engine)
        upgrade(engine)
        assert ADDED in _indexes(engine)
        assert not DROPPED & _indexes(engine)
    finally:
        engine.dispose()
