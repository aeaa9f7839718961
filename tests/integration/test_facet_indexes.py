"""Migration 0024: the counts per filter value are read from an index alone (both databases:
the indexes are made, match the models, go on downgrade and come back)."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from triage.models import Base
from web.db import alembic_config, make_engine, upgrade

NAMES = {"ix_cases_facets", "ix_cases_department_facets"}


def test_facet_indexes_come_and_go_with_their_migration(empty_url: str) -> None:
    engine = make_engine(empty_url)
    upgrade(engine)

    def present() -> set[str]:
        with engine.connect() as conn:
            return NAMES & {i["name"] for i in inspect(conn).get_indexes("cases")}

    assert present() == NAMES
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if "_facets" in repr(d)
        ]
        assert differences == []
        if conn.dialect.name == "sqlite":
            # A department's cases by channel: the index alone, not the table.
            plan = " ".join(
                str(row[-1])
                for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT channel, count(*) FROM cases"
                    " WHERE department_id = 1 GROUP BY channel"
                )
            )
            assert "COVERING INDEX ix_cases_department_facets" in plan, plan
    command.downgrade(alembic_config(engine), "0023")
    assert present() == set()
    upgrade(engine)
    assert present() == NAMES
    engine.dispose()
