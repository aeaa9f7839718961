"""Small helpers for driving the app like a browser would."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.conftest import csrf_from

TRACKING = re.compile(r"MS-\d{4}-\d{6}")


def submit_complaint(
    client: Any, body: str, subject: str = "楼道堵塞", **extra: Any
) -> tuple[str, str]:
    """Submits the public form; returns (tracking number, query code) from the receipt."""
    number, code, _url = submit_complaint_with_receipt(client, body, subject, **extra)
    return number, code


def submit_complaint_with_receipt(
    client: Any, body: str, subject: str = "楼道堵塞", **extra: Any
) -> tuple[str, str, str]:
    """Submits the public form; returns tracking number, query code and the receipt's URL."""
    page = client.get("/complain").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page)
    data = {
        "csrf_token": csrf_from(page),
        "token": token.group(1) if token else secrets.token_urlsafe(8),
        "kind": "complaint",
        "subject": subject,
        "body": body,
        "name": "王小明",
        "phone": "13812345678",
        "email": "",
        **extra,
    }
    r = client.post(
        "/complain", data=data, follow_redirects=True, content_type="multipart/form-data"
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html[:2000]
    number = re.search(r'id="tracking-number">([^<]+)<', html).group(1)
    code = re.search(r'id="query-code">([^<]+)<', html).group(1)
    return number, code, r.request.path


def post_form(client: Any, page_url: str, action_url: str, data: dict[str, Any]) -> Any:
    """Posts to `action_url` with the CSRF token of `page_url`, as the page's form would."""
    page = client.get(page_url)
    assert page.status_code == 200, f"{page_url}: {page.status_code}"
    return client.post(
        action_url, data={"csrf_token": csrf_from(page.get_data(as_text=True)), **data}
    )


def flashes(html: str) -> list[str]:
    return re.findall(r'<p class="flash [a-z]+"[^>]*>([^<]*)</p>', html)


def table_as_of(conn: Any, table: Any) -> Any:
    """`table` (a model's Table) cut to the columns the connected database has: for filling
    a database upgraded only to an older revision, where the model's newer columns (and
    their Python defaults) do not exist yet."""
    from sqlalchemy import MetaData, Table, inspect

    present = {c["name"] for c in inspect(conn).get_columns(table.name)}
    return Table(table.name, MetaData(), *(c._copy() for c in table.columns if c.name in present))


def _grams_read(node: dict[str, Any]) -> int:
    """Rows a PostgreSQL plan (EXPLAIN's JSON) read from search_grams: kept and filtered out,
    over all loops (EXPLAIN gives both per loop)."""
    rows = 0
    if node.get("Relation Name") == "search_grams":
        kept = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        rows = round(kept * node.get("Actual Loops", 1))
    return rows + sum(_grams_read(child) for child in node.get("Plans", []))


@contextmanager
def work_of(s: Session) -> Iterator[list[int]]:
    """The work of the statements run inside, for comparing one search's cost as the data
    grows. PostgreSQL: the rows its plans read from `search_grams` (each statement run again
    under EXPLAIN ANALYZE), not buffers, which vary with what VACUUM has marked all-visible
    (an index-only scan's probe read 1,353 buffers before, 70 after). SQLite: its virtual
    machine's steps."""
    total = [0]
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        statements: list[tuple[str, Any]] = []

        def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
            statements.append((statement, params))

        event.listen(conn, "before_cursor_execute", capture)
        try:
            yield total
        finally:
            event.remove(conn, "before_cursor_execute", capture)
        raw = conn.connection.driver_connection
        for statement, params in statements:
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                total[0] += _grams_read(cur.fetchone()[0][0]["Plan"])
        return
    raw = conn.connection.driver_connection
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    raw.set_progress_handler(count, 100)
    try:
        yield total
    finally:
        raw.set_progress_handler(None, 0)
    total[0] = steps[0] * 100


def insert_case_row(
    session: Session,
    *,
    number: str = "MS-2026-123456",
    status: str = "received",
    body: str = "楼道灯坏了",
    phone: str = "13911112222",
    masked_text: str = "来电",
) -> None:
    """One phone case (subject 来电, contact 王小明) written by plain SQL, none of the ORM's
    flush listeners: a case as an earlier revision's code left it, for migration tests."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    session.execute(
        text(
            "INSERT INTO cases (tracking_number, query_code_hash, channel, external_id,"
            " kind, status, subject, body, contact_name, contact_phone, contact_email,"
            " received_at, created_at, alternatives, model_version, urgent,"
            ' urgent_reasons, "similar", rejection_reason, rejection_code,'
            " public_reason, referred_to, masked_text, sent_back_count, rework_count,"
            " extension_count, risk, version)"
            " VALUES (:number, 'x', 'phone', :ext, 'complaint', :status, '来电', :body,"
            " '王小明', :phone, '', :at, :at, '[]', '', :f, '[]', '[]', '', '', '', '',"
            " :masked, 0, 0, 0, '', 1)"
        ),
        {
            "number": number,
            "ext": f"p-{number}",
            "status": status,
            "body": body,
            "phone": phone,
            "masked": masked_text,
            "at": datetime.now(UTC).replace(tzinfo=None),
            "f": False,
        },
    )


def close_case(runtime: Any, number: str, department: str = "urban") -> None:
    """Takes case ``number`` from the queue to closed through ``department``: dispatched,
    started, replied to, a satisfied return visit, closed (the domain's own transitions)."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from triage.models import Case, Department, Satisfaction

    with runtime.sessions() as s, s.begin():
        now = datetime.now(UTC)
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        dept = s.scalar(select(Department).where(Department.code == department))
        due = runtime.settings.deadlines().handling_due(now, department, False)
        case.assign(dept, "supervisor", now, due)
        case.start(department, now)
        case.reply(department, now, "已修复。")
        case.record_visit(
            "supervisor", now, reached=True, solved=True, satisfaction=Satisfaction.SATISFIED
        )
        case.close("supervisor", now)
