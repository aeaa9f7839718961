"""Small helpers for driving the app like a browser would."""

from __future__ import annotations

import re
import secrets
from typing import Any

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
