"""No input a user can type produces a 500: every route, every role, odd values everywhere."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask_login import login_required
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.routing import AnyConverter, IntegerConverter

from tests.conftest import csrf_from
from tests.integration.helpers import submit_complaint
from triage.access import Action, can
from triage.models import User
from web.auth import requires

ODD_TEXT = [
    "MS-2026-000001",
    "x" * 5000,
    "../../etc/passwd",
    "%",
    "'; DROP TABLE cases; --",
    "\u202e\u200b",
    "１２３",
    "😀",
    "-1",
]
ODD_INTS = [0, 1, 2**31, 2**63, 10**20]
ODD_ARGS = {
    "page": "99999999999999999999",
    "q": "%_\\",
    "status": "nonsense",
    "department": "x" * 300,
    "number": "１２３",
    "next": "//evil.example/",
    "lang": "xx",
}
ROLES = ("supervisor", "urban", "observer", "operator")
_VARIABLE = re.compile(r"<(?:[^:<>]+:)?(\w+)>")


def _routes(app: Any) -> list[tuple[str, str, list[str]]]:
    """(method, endpoint, paths) of every route but the static files': a path for each odd
    value in its variables (an `any(...)` variable takes its choices in turn), each once."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        paths: dict[str, None] = {}
        for i in range(max(len(ODD_TEXT), len(ODD_INTS)) if rule.arguments else 1):
            values = {}
            for name, converter in rule._converters.items():
                if isinstance(converter, IntegerConverter):
                    values[name] = str(ODD_INTS[i % len(ODD_INTS)])
                elif isinstance(converter, AnyConverter):
                    choices = sorted(converter.items)
                    values[name] = choices[i % len(choices)]
                else:
                    values[name] = ODD_TEXT[i % len(ODD_TEXT)]
            paths[_VARIABLE.sub(lambda m, v=values: v[m.group(1)], rule.rule)] = None
        routes += [(m, rule.endpoint, list(paths)) for m in sorted(rule.methods & {"GET", "POST"})]
    return routes


def _cells(function: Callable[..., Any]) -> dict[str, Any]:
    cells = function.__closure__ or ()
    return dict(zip(function.__code__.co_freevars, (c.cell_contents for c in cells), strict=True))


_SIGN_IN_CHECK = login_required(lambda: None).__code__
_ROLE_CHECK = _cells(requires(Action.ADMINISTER)(lambda: None))["func"].__code__


def _role_gate(view: Callable[..., Any]) -> Action | None:
    """The action `web.auth.requires` checks before the view's own code runs, or None.
    Recognised by the wrappers' code: a view wrapped any other way has no gate here."""
    if view.__code__ is not _SIGN_IN_CHECK:
        return None
    inner = _cells(view).get("func")
    if inner is None or inner.__code__ is not _ROLE_CHECK:
        return None
    return _cells(inner).get("action")


def test_every_route_with_odd_input_answers_without_a_server_error(
    app: Any, client: Any, login_as: Any, runtime: Any
) -> None:
    """Every route with every odd value, and every role on every route, the values shared
    out among the roles that reach the view's code:

    - each role asks each route with its first path (for a case number, the one case there
      is, so that the role's own code past the look-up runs);
    - the other values go to those roles in turn, shifted by one from route to route, so
      that each route meets each value and each role each value (the routes of a case share
      its look-up);
    - a role the route turns away before its code (flask_login's sign-in check, or
      `web.auth.requires` refusing the role's action: the wrappers recognised by their
      code) asks it once, with the next odd value in its turn: the refusal reads nothing
      of the path but for the page's links. Were the answer not that refusal (a redirect
      to sign in, a 403), the role counts as reaching the view;
    - a path no route takes (the not-found page, before any view) is asked by one role,
      each in turn."""
    submit_complaint(client, "明德路路灯坏了三个星期")
    clients = {"anonymous": app.test_client()}
    clients |= {role: login_as(role) for role in ROLES}
    tokens = {r: csrf_from(c.get("/complain").get_data(as_text=True)) for r, c in clients.items()}
    with runtime.sessions() as s:
        users = {u.username: u for u in s.scalars(select(User).where(User.username.in_(ROLES)))}
        s.expunge_all()
    adapter = app.url_map.bind("localhost")
    failures = []
    turned_away = dict.fromkeys(clients, 0)
    value_turn = unrouted_turn = 0

    def ask(role: str, method: str, url: str) -> Any:
        c = clients[role]
        if method == "GET":
            r = c.get(url, query_string=ODD_ARGS)
        else:
            r = c.post(
                url, data={"csrf_token": tokens[role], **ODD_ARGS}, query_string={"back": "queue"}
            )
        if r.status_code >= 500:
            failures.append((role, method, url[:80], r.status_code))
        return r

    def routed(method: str, url: str) -> bool:
        try:
            adapter.match(url, method=method)
        except HTTPException:
            return False
        return True

    def turns_away(role: str, view: Callable[..., Any], method: str, paths: list[str]) -> bool:
        if role == "anonymous":
            if view.__code__ is not _SIGN_IN_CHECK:
                return False
        else:
            gate = _role_gate(view)
            if gate is None or can(users[role], gate):
                return False
        r = ask(role, method, paths[turned_away[role] % len(paths)])
        turned_away[role] += 1
        if role == "anonymous":
            return r.status_code == 302 and "/login" in r.headers["Location"]
        return r.status_code == 403

    for method, endpoint, paths in _routes(app):
        if paths[0].startswith("/logout"):
            continue
        for url in [p for p in paths if not routed(method, p)]:
            ask(list(clients)[unrouted_turn % len(clients)], method, url)
            unrouted_turn += 1
        paths = [p for p in paths if routed(method, p)]
        if not paths:
            continue
        view = app.view_functions[endpoint]
        reaching = [r for r in clients if not turns_away(r, view, method, paths)]
        for role in reaching:
            ask(role, method, paths[0])
        for i, url in enumerate(paths[1:]):
            if reaching:
                ask(reaching[(value_turn + i) % len(reaching)], method, url)
        value_turn += 1
    # The shortcuts take what they should: each role is turned away somewhere.
    assert all(turned_away.values()) and unrouted_turn > 0, (turned_away, unrouted_turn)
    assert failures == []


def test_digit_like_characters_in_page_numbers_and_cursors_give_the_first_page(
    app: Any, login_as: Any
) -> None:
    """'²' or '¹' pass `str.isdigit` but not `int`: every page number and paging cursor of
    the lists is read by one parser of ASCII digits (red-team, issue 10), so the page
    answers as without the parameter instead of a 500."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    cases = [
        ("supervisor", "/board/cases", "page=²"),
        ("supervisor", "/board/cases", "after=²"),
        ("supervisor", "/board/cases", "before=¹"),
        ("urban", "/board/cases", "page=²&q=噪音"),
        ("admin", "/admin/log", "before=²"),
        ("admin", "/admin/outbox", "mail_before=²"),
        ("admin", "/admin/outbox", "mail_after=³"),
        ("admin", "/admin/outbox", "sms_before=²"),
        ("admin", "/admin/outbox", "sms_after=³"),
        ("supervisor", "/board/mail/spam", "before=²"),
        ("supervisor", "/board/mail/quarantine", "before=²"),
    ]
    for role, path, query in cases:
        c = login_as(role)
        r = c.get(f"{path}?{query}")
        assert r.status_code == 200, (path, query, r.status_code)
        plain = "&".join(p for p in query.split("&") if not set(p) & set("¹²³"))
        first = c.get(f"{path}?{plain}").get_data(as_text=True)
        assert r.get_data(as_text=True).count("<tr") == first.count("<tr"), (path, query)


def test_database_errors_give_the_error_pages_with_the_session_rolled_back(
    app: Any, login_as: Any
) -> None:
    """A database error left the request's transaction failed (PostgreSQL: every statement
    refused until a rollback), and the error page, which reads the signed-in user, failed in
    turn: a bare 500 instead of the page (red-team, issue 10, PendingRollbackError). A
    deadlock or serialization failure the database reports is the 409 "changed at the same
    time" page. Real errors of the database, through routes that provoke them."""
    from sqlalchemy import text

    from tests.conftest import DB_KIND
    from web import db

    @app.get("/test-only/database-error")
    def _database_error() -> str:
        db().execute(text("SELECT count(*) FROM cases"))
        db().execute(text("SELECT * FROM no_such_table"))
        return "unreachable"

    @app.get("/test-only/deadlock")
    def _deadlock() -> str:
        db().execute(text("SELECT count(*) FROM cases"))
        db().execute(text("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01'; END $$"))
        return "unreachable"

    app.config["PROPAGATE_EXCEPTIONS"] = False
    supervisor = login_as("supervisor")
    r = supervisor.get("/test-only/database-error")
    assert r.status_code == 500
    assert "请稍后再试" in r.get_data(as_text=True)  # the error page itself rendered
    assert supervisor.get("/board/cases").status_code == 200
    if DB_KIND == "postgresql":
        r = supervisor.get("/test-only/deadlock")
        assert r.status_code == 409
        assert "该工单刚被他人同时修改" in r.get_data(as_text=True)
