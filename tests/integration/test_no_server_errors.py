"""No input a user can type produces a 500: every route, every role, odd values everywhere."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter

from tests.conftest import csrf_from
from tests.integration.helpers import submit_complaint

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


def _urls(app: Any) -> list[tuple[str, str]]:
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = sorted(m for m in rule.methods if m in ("GET", "POST"))
        variables = list(rule.arguments)
        if not variables:
            urls += [(m, rule.rule) for m in methods]
            continue
        for i in range(max(len(ODD_TEXT), len(ODD_INTS))):
            values = {}
            for name in variables:
                if isinstance(rule._converters[name], IntegerConverter):
                    values[name] = str(ODD_INTS[i % len(ODD_INTS)])
                else:
                    values[name] = ODD_TEXT[i % len(ODD_TEXT)]
            path = rule.rule
            for name, value in values.items():
                path = path.replace(f"<{name}>", value)
                path = path.replace(f"<int:{name}>", value)
            urls += [(m, path) for m in methods]
    return urls


def test_every_route_with_odd_input_answers_without_a_server_error(
    app: Any, client: Any, login_as: Any
) -> None:
    submit_complaint(client, "明德路路灯坏了三个星期")
    clients = {"anonymous": app.test_client()}
    clients |= {role: login_as(role) for role in ("supervisor", "urban", "observer", "operator")}
    failures = []
    for role, c in clients.items():
        token = csrf_from(c.get("/complain").get_data(as_text=True))
        for method, url in _urls(app):
            if url.startswith("/logout"):
                continue
            if method == "GET":
                r = c.get(url, query_string=ODD_ARGS)
            else:
                r = c.post(
                    url,
                    data={"csrf_token": token, **{k: v for k, v in ODD_ARGS.items()}},
                    query_string={"back": "queue"},
                )
            if r.status_code >= 500:
                failures.append((role, method, url[:80], r.status_code))
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
