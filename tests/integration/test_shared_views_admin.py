"""Shared case list views, on both databases (issue 10's review): a view the admin saved for
another role (the handlers' shared default) was not listed to the admin afterwards, so it
could not be opened or deleted. The admin now sees every role's shared views and deletes
them; handlers still delete only their own; both actions are in the admin log."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from triage.models import AdminEvent, SavedView


def _token(client: Any) -> str:
    page = client.get("/board/cases?sort=received").get_data(as_text=True)
    return re.search(r'name="view-csrf_token"[^>]*value="([^"]+)"', page).group(1)


def _save(client: Any, name: str, query: str, role: str = "", default: bool = False) -> Any:
    data = {"view-csrf_token": _token(client), "view-name": name, "view-query": query}
    if role:
        data["view-role"] = role
    if default:
        data["view-default"] = "y"
    return client.post("/board/views", data=data)


def _view_id(runtime: Any, name: str) -> int:
    with runtime.sessions() as s:
        return s.scalar(select(SavedView.id).where(SavedView.name == name))


def _delete(client: Any, view_id: int, token: str | None = None) -> Any:
    data = {} if token is None else {"view-csrf_token": token}
    return client.post(f"/board/views/{view_id}/delete", data=data)


def test_admin_lists_and_deletes_every_roles_shared_views(runtime: Any, login_as: Any) -> None:
    admin, handler, supervisor = login_as("admin"), login_as("urban"), login_as("supervisor")
    assert (
        _save(admin, "经办人默认", "status=open&sort=deadline", "handler", True).status_code == 302
    )
    assert _save(admin, "督办热线", "channel=phone&sort=received", "supervisor").status_code == 302
    assert _save(admin, "管理员自用", "channel=web&sort=received", "admin").status_code == 302
    assert _save(handler, "我的来电", "channel=phone&sort=received").status_code == 302

    html = admin.get("/board/cases?sort=received").get_data(as_text=True)
    shared = re.search(r'<details class="shared-views".*?</details>', html, re.S)
    assert shared, "the admin sees no list of other roles' shared views"
    block = shared.group(0)
    assert "经办人默认" in block and "督办热线" in block
    # The admin's own role's view is in the usual bar, not listed twice; a handler's own
    # view is theirs alone.
    assert "管理员自用" not in block and "管理员自用" in html
    assert "我的来电" not in html
    handler_view = _view_id(runtime, "经办人默认")
    assert f'/board/views/{handler_view}/delete"' in block
    assert 'name="view-csrf_token"' in block

    # The handlers see their shared view but cannot delete it (no button, and a post is
    # refused); nor the other roles' sections.
    page = handler.get("/board/cases?sort=received").get_data(as_text=True)
    assert "经办人默认" in page and "shared-views" not in page and "督办热线" not in page
    assert f"/board/views/{handler_view}/delete" not in page
    assert _delete(handler, handler_view, _token(handler)).status_code == 404
    assert _delete(supervisor, handler_view, _token(supervisor)).status_code == 404
    # Without the CSRF token the admin deletes nothing either.
    assert _delete(admin, handler_view).status_code in (400, 404)
    assert _view_id(runtime, "经办人默认") == handler_view

    r = _delete(admin, handler_view, _token(admin))
    assert r.status_code == 302
    assert _view_id(runtime, "经办人默认") is None
    assert "经办人默认" not in handler.get("/board/cases?sort=received").get_data(as_text=True)
    # The handlers' list opens with their built-in default again (their open cases by
    # deadline), no longer the deleted shared one.
    assert "经办人默认" not in handler.get("/board/cases").get_data(as_text=True)

    # A handler deletes their own view.
    mine = _view_id(runtime, "我的来电")
    assert _delete(handler, mine, _token(handler)).status_code == 302
    assert _view_id(runtime, "我的来电") is None

    with runtime.sessions() as s:
        events = [
            (e.action, e.target, e.details.get("role"))
            for e in s.scalars(
                select(AdminEvent)
                .where(AdminEvent.action.in_(["view_shared", "view_unshared"]))
                .order_by(AdminEvent.id)
            )
        ]
    assert events == [
        ("view_shared", "view handler: 经办人默认", "handler"),
        ("view_shared", "view supervisor: 督办热线", "supervisor"),
        ("view_shared", "view admin: 管理员自用", "admin"),
        ("view_unshared", "view handler: 经办人默认", "handler"),
    ]
    log = admin.get("/admin/log").get_data(as_text=True)
    assert "经办人默认" in log
