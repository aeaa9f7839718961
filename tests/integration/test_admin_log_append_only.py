"""The administrators' audit log (admin_events) is append-only, as the cases' is: the database
refuses to change or delete an event, on both databases (migration 0041)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import DB_KIND, _reset_by_delete
from tests.integration.helpers import post_form
from triage.models import AdminEvent
from web.db import alembic_config, make_engine, upgrade

STATEMENTS = (
    "UPDATE admin_events SET actor_name = 'nobody'",
    "UPDATE admin_events SET details = '{}' WHERE action = 'department_added'",
    "DELETE FROM admin_events",
    "DELETE FROM admin_events WHERE action = 'department_added'",
)


def _logged(runtime: Any) -> list[tuple[str, str, str]]:
    with runtime.sessions() as s:
        return [
            (e.actor_name, e.action, e.target)
            for e in s.scalars(select(AdminEvent).order_by(AdminEvent.id))
        ]


def test_an_admin_event_cannot_be_changed_or_deleted(login_as: Any, runtime: Any) -> None:
    r = post_form(
        login_as("admin"),
        "/admin/departments",
        "/admin/departments",
        {"new-code": "harbour", "new-name": "港务局", "new-name_en": "", "new-email": ""},
    )
    assert r.status_code == 302
    logged = _logged(runtime)
    assert any(action == "department_added" for _, action, _ in logged), logged
    for statement in STATEMENTS:
        with runtime.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(statement))
    assert _logged(runtime) == logged


@pytest.mark.skipif(DB_KIND != "postgresql", reason="SQLite's tests copy the template's file")
def test_the_tests_reset_still_empties_the_log(login_as: Any, runtime: Any) -> None:
    """The PostgreSQL tests empty every table between tests with triggers off."""
    post_form(
        login_as("admin"),
        "/admin/departments",
        "/admin/departments",
        {"new-code": "harbour", "new-name": "港务局", "new-name_en": "", "new-email": ""},
    )
    assert _logged(runtime)
    _reset_by_delete(runtime.engine)
    assert _logged(runtime) == []


def test_the_triggers_go_with_their_migration_and_come_back(empty_url: str) -> None:
    engine = make_engine(empty_url)
    upgrade(engine)
    insert = text(
        "INSERT INTO admin_events (at, actor_name, action, target, details) "
        "VALUES (CURRENT_TIMESTAMP, 'admin', 'user_added', 'user wang', '{}')"
    )
    with engine.begin() as conn:
        conn.execute(insert)
    with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("DELETE FROM admin_events"))
    command.downgrade(alembic_config(engine), "0040")
    with engine.begin() as conn:
        conn.execute(text("UPDATE admin_events SET actor_name = 'someone'"))
        conn.execute(text("DELETE FROM admin_events"))
        conn.execute(insert)
    upgrade(engine)
    with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("UPDATE admin_events SET actor_name = 'someone'"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor_name FROM admin_events")).scalars().all() == [
            "admin"
        ]
    engine.dispose()
