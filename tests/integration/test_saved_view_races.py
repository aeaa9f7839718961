"""Saving a view is one upsert (issue 10, red-team report 2): the same view saved twice at once
(a double click on "Save view", two tabs) is one view and no server error, for a user's own
view and for a role's shared one (user_id NULL, held by the partial unique index of migration
0031, which first removes the duplicates already stored)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, event, inspect, select, text

from triage.models import Base, SavedView, User
from web.db import alembic_config, make_engine, upgrade


def _token(client: Any) -> str:
    page = client.get("/board/cases?status=open").get_data(as_text=True)
    found = re.search(r'name="view-csrf_token"[^>]*value="([^"]+)"', page)
    assert found
    return found.group(1)


@contextmanager
def _committed_first(runtime: Any, db_url: str, row: dict[str, Any]) -> Iterator[None]:
    """Just before the request's own INSERT into saved_views, another connection commits the
    same view (what the other of two simultaneous requests did): the race made certain."""
    other = create_engine(db_url)
    done: list[bool] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SAVED_VIEWS") and not done:
            done.append(True)
            with other.begin() as c:
                c.execute(
                    text(
                        "INSERT INTO saved_views (user_id, role, name, query, is_default,"
                        " created_at) VALUES (:u, :r, :n, 'status=open', false, now())"
                    ),
                    row,
                )

    event.listen(runtime.engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(runtime.engine, "before_cursor_execute", before)
        other.dispose()
    assert done, "the request inserted no view"


def _views(runtime: Any, name: str) -> list[SavedView]:
    with runtime.sessions() as s:
        return list(s.scalars(select(SavedView).where(SavedView.name == name)))


def _postgresql_only(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite writers are serialised by BEGIN IMMEDIATE; PostgreSQL only")


def test_saving_a_view_twice_at_once_is_one_view_and_no_error(
    app: Any, runtime: Any, login_as: Any, db_url: str
) -> None:
    _postgresql_only(db_url)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    urban = login_as("urban")
    token = _token(urban)
    with runtime.sessions() as s:
        user_id = s.scalar(select(User.id).where(User.username == "urban"))
    with _committed_first(runtime, db_url, {"u": user_id, "r": "", "n": "我的待办"}):
        r = urban.post(
            "/board/views",
            data={"view-csrf_token": token, "view-name": "我的待办", "view-query": "sort=deadline"},
        )
    assert r.status_code == 302, r.status_code
    [view] = _views(runtime, "我的待办")
    assert view.query == "sort=deadline"  # the later save wins, as saving over a name does
    assert "我的待办" in urban.get("/board/cases").get_data(as_text=True)


def test_a_roles_shared_view_saved_twice_at_once_is_one_view(
    app: Any, runtime: Any, login_as: Any, db_url: str
) -> None:
    _postgresql_only(db_url)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    admin = login_as("admin")
    token = _token(admin)
    with _committed_first(runtime, db_url, {"u": None, "r": "handler", "n": "经办默认"}):
        r = admin.post(
            "/board/views",
            data={
                "view-csrf_token": token,
                "view-name": "经办默认",
                "view-query": "status=open&sort=deadline",
                "view-role": "handler",
            },
        )
    assert r.status_code == 302, r.status_code
    [view] = _views(runtime, "经办默认")
    assert (view.user_id, view.role, view.query) == (None, "handler", "status=open&sort=deadline")


def test_saving_over_a_name_replaces_the_view(runtime: Any, login_as: Any) -> None:
    """Both databases: a second save of a name (own or shared) replaces its query and
    default, and a new default unsets the previous one."""
    urban = login_as("urban")
    admin = login_as("admin")
    for client, role in ((urban, ""), (admin, "handler")):
        for query, default in (("status=open", ""), ("status=open&sort=deadline", "y")):
            r = client.post(
                "/board/views",
                data={
                    "view-csrf_token": _token(client),
                    "view-name": f"视图{role}",
                    "view-query": query,
                    "view-role": role,
                    "view-default": default,
                },
            )
            assert r.status_code == 302
        [view] = _views(runtime, f"视图{role}")
        assert (view.query, view.is_default, view.role) == ("status=open&sort=deadline", True, role)


def test_the_migration_keeps_the_newest_of_duplicate_shared_views(empty_url: str) -> None:
    engine = make_engine(empty_url)
    command.upgrade(alembic_config(engine), "0030")
    with engine.begin() as conn:
        for query in ("status=open", "status=new", "status=closed"):
            conn.execute(
                text(
                    "INSERT INTO saved_views (user_id, role, name, query, is_default, created_at)"
                    " VALUES (NULL, 'handler', '经办默认', :q, false, CURRENT_TIMESTAMP)"
                ),
                {"q": query},
            )
    upgrade(engine)

    def indexes() -> set[str]:
        with engine.connect() as conn:
            return {i["name"] for i in inspect(conn).get_indexes("saved_views")}

    with engine.connect() as conn:
        kept = conn.execute(text("SELECT query FROM saved_views")).scalars().all()
        assert kept == ["status=closed"]
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if "saved_views" in repr(d)
        ]
        assert differences == []
    assert "uq_saved_views_shared" in indexes()
    command.downgrade(alembic_config(engine), "0030")
    assert "uq_saved_views_shared" not in indexes()
    upgrade(engine)
    assert "uq_saved_views_shared" in indexes()
    engine.dispose()
