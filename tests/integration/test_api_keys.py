"""API keys of the Open311 interface on the real database: the migration that brings them to
an existing database, and making, listing, checking and revoking keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect, select

from tests.conftest import make_settings
from triage.api_keys import (
    ApiKey,
    ApiKeyError,
    create_key,
    find_key,
    hash_key,
    list_keys,
    revoke_key,
    verify_key,
)
from triage.models import Case

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

# The cases table as migration 0005 left it (Case.__table__ grows with later migrations).
OLD_CASES = sa.table(
    "cases",
    *(
        sa.column(name)
        for name in (
            "tracking_number",
            "query_code_hash",
            "channel",
            "external_id",
            "kind",
            "status",
            "subject",
            "body",
            "contact_name",
            "contact_phone",
            "contact_email",
            "received_at",
            "created_at",
            "urgent",
            "alternatives",
            "urgent_reasons",
            "similar",
            "model_version",
            "rejection_reason",
            "rejection_code",
            "public_reason",
            "referred_to",
            "masked_text",
            "sent_back_count",
            "rework_count",
            "version",
        )
    ),
)


# SQLite cannot reflect another table's expression index; only the api_keys parts are compared.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_upgrading_a_database_with_cases_adds_keys_and_leaves_the_cases_keyless(
    empty_url: str, tmp_path: Path
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from triage.models import Base
    from web.db import make_engine, upgrade
    from web.runtime import Runtime

    engine = make_engine(empty_url)
    upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(
            OLD_CASES.insert(),
            [
                {
                    "tracking_number": f"MS-2025-00000{i}",
                    "query_code_hash": "x",
                    "channel": channel,
                    "external_id": f"old-{i}",
                    "kind": "complaint",
                    "status": "triage",
                    "subject": "旧案件",
                    "body": "升级之前登记的案件",
                    "contact_name": "",
                    "contact_phone": "",
                    "contact_email": "",
                    "received_at": NOW.replace(tzinfo=None),
                    "created_at": NOW.replace(tzinfo=None),
                    "urgent": False,
                    "alternatives": "[]",
                    "urgent_reasons": "[]",
                    "similar": "[]",
                    "model_version": "",
                    "rejection_reason": "",
                    "rejection_code": "",
                    "public_reason": "",
                    "referred_to": "",
                    "masked_text": "",
                    "sent_back_count": 0,
                    "rework_count": 0,
                    "version": 1,
                }
                for i, channel in enumerate(("web", "email", "phone"), start=1)
            ],
        )
    upgrade(engine)
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if "api_key" in repr(d)
        ]
        assert differences == []
        assert "api_keys" in inspect(conn).get_table_names()
        keys = conn.execute(sa.text("SELECT api_key_id FROM cases")).scalars().all()
        assert keys == [None, None, None]
    engine.dispose()

    rt = Runtime.build(make_settings(tmp_path, empty_url))
    with rt.sessions() as s, s.begin():
        made = create_key(s, "市民App", "cli", NOW)
        old = s.scalar(select(Case).where(Case.tracking_number == "MS-2025-000002"))
        assert old is not None
        old.api_key_id = made.row.id
    with rt.sessions() as s:
        found = verify_key(s, made.secret)
        assert found is not None and found.name == "市民App"
        case = s.scalar(select(Case).where(Case.api_key_id == found.id))
        assert case is not None and case.tracking_number == "MS-2025-000002"
    with rt.sessions() as s, s.begin(), pytest.raises(sa.exc.IntegrityError):
        # The reference is a real foreign key: no case can name a key that does not exist.
        s.execute(sa.update(Case).values(api_key_id=9999))
    rt.engine.dispose()

    from alembic import command

    from web.db import alembic_config

    engine = make_engine(empty_url)
    command.downgrade(alembic_config(engine), "0005")
    with engine.connect() as conn:
        assert "api_keys" not in inspect(conn).get_table_names()
        assert "api_key_id" not in {c["name"] for c in inspect(conn).get_columns("cases")}
        assert conn.execute(sa.text("SELECT count(*) FROM cases")).scalar() == 3
    engine.dispose()


def test_a_key_is_stored_hashed_checked_and_revoked(runtime: Any) -> None:
    with runtime.sessions() as s, s.begin():
        made = create_key(s, "  邻区 热线  ", "admin", NOW)
        other = create_key(s, "FixMyStreet", "cli", NOW)
    assert made.secret.startswith("ms_") and len(made.secret) >= 40
    assert made.secret != other.secret
    with runtime.sessions() as s:
        rows = s.execute(sa.text("SELECT name, prefix, key_hash FROM api_keys")).all()
    stored = " ".join(" ".join(r) for r in rows)
    assert made.secret not in stored and other.secret not in stored
    assert hash_key(made.secret) in stored
    assert ("邻区 热线", made.secret[:9]) in [(r.name, r.prefix) for r in rows]

    with runtime.sessions() as s, s.begin():
        assert verify_key(s, made.secret, now=NOW + timedelta(hours=1)) is not None
        assert verify_key(s, made.secret[:-1] + ("y" if made.secret.endswith("x") else "x")) is None
        assert verify_key(s, "") is None
        assert verify_key(s, made.row.prefix) is None
    with runtime.sessions() as s, s.begin():
        key = find_key(s, made.row.prefix)
        assert key.last_used_at == NOW + timedelta(hours=1)
        assert revoke_key(s, key, NOW + timedelta(hours=2))
        assert not revoke_key(s, key, NOW + timedelta(hours=3))
    with runtime.sessions() as s:
        assert verify_key(s, made.secret) is None
        assert verify_key(s, other.secret) is not None
        assert [k.name for k in list_keys(s, include_revoked=False)] == ["FixMyStreet"]
        assert [k.name for k in list_keys(s)] == ["FixMyStreet", "邻区 热线"]
        assert find_key(s, str(other.row.id)).name == "FixMyStreet"
        assert find_key(s, "FixMyStreet").id == other.row.id
        with pytest.raises(ApiKeyError):
            find_key(s, "nobody")
        with pytest.raises(ApiKeyError):
            create_key(s, "   ", "cli", NOW)
        with pytest.raises(ApiKeyError):
            create_key(s, "x" * 101, "cli", NOW)
        assert s.scalar(select(sa.func.count()).select_from(ApiKey)) == 2


# -- the command and the administrators' page -----------------------------------------------------


def _run(*args: str) -> Any:
    from click.testing import CliRunner

    from web.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_command_makes_lists_and_revokes_keys_and_cases_name_theirs(
    config_file: Path, client: Any
) -> None:
    import json

    made = _run("api-key", "add", "市民App", "--json", "--config", str(config_file))
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert key["name"] == "市民App" and key["key"].startswith(key["prefix"])
    plain = _run("api-key", "add", "邻区热线", "--config", str(config_file))
    assert plain.exit_code == 0 and "not shown again" in plain.output

    r = client.post(
        "/open311/v2/requests.json",
        data={"api_key": key["key"], "service_code": "transport",
              "description": "青松路公交站的站牌被撞倒了", "address_string": "青松路公交站"},
    )  # fmt: skip
    assert r.status_code == 201, r.get_data(as_text=True)
    number = r.get_json()[0]["service_request_id"]

    listed = _run("api-key", "list", "--json", "--config", str(config_file))
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"市民App", "邻区热线"}
    assert rows["市民App"]["last_used_at"] is not None and rows["邻区热线"]["last_used_at"] is None
    assert rows["市民App"]["created_by"] == "cli" and rows["市民App"]["revoked_at"] is None
    text = _run("api-key", "list", "--config", str(config_file)).output
    assert key["prefix"] in text and key["key"] not in text

    exported = _run("export", "cases", "--format", "jsonl", "--config", str(config_file))
    (record,) = [json.loads(line) for line in exported.stdout.splitlines() if line.startswith("{")]
    assert record["tracking_number"] == number and record["channel"] == "api"

    revoked = _run("api-key", "revoke", key["prefix"], "--config", str(config_file))
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    again = _run("api-key", "revoke", "市民App", "--config", str(config_file))
    assert again.exit_code != 0  # no active key of that name is left; give its id
    again = _run("api-key", "revoke", str(key["id"]), "--config", str(config_file))
    assert "revoked already" in again.output
    active = _run("api-key", "list", "--active", "--json", "--config", str(config_file))
    assert [row["name"] for row in json.loads(active.stdout)] == ["邻区热线"]
    refused = client.get(f"/open311/v2/requests/{number}.json", headers={"X-Api-Key": key["key"]})
    assert refused.status_code == 403
    empty = _run("api-key", "add", "  ", "--config", str(config_file))
    assert empty.exit_code != 0 and "name" in empty.output


def test_only_administrators_manage_keys_on_the_page_and_see_a_new_one_once(
    login_as: Any, client: Any
) -> None:
    import re

    from tests.conftest import csrf_from

    for role in ("supervisor", "observer", "operator"):
        assert login_as(role).get("/admin/api-keys").status_code == 403
    assert client.get("/admin/api-keys").status_code in (302, 401)
    admin = login_as("admin")
    page = admin.get("/admin/api-keys")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert 'href="/admin/api-keys"' in html  # in the administrator's navigation

    assert admin.post("/admin/api-keys", data={"name": "无令牌"}).status_code == 400  # CSRF
    sent = {
        "csrf_token": csrf_from(html),
        "once": re.search(r'name="once"[^>]*value="([^"]+)"', html).group(1),
        "name": "市民App",
    }
    shown_page = admin.post("/admin/api-keys", data=sent)
    # The key is shown in the answer itself, never carried in the (readable) session cookie.
    assert shown_page.status_code == 200
    assert shown_page.headers["Cache-Control"] == "no-store"
    assert "open311" not in shown_page.headers.get("Set-Cookie", "")
    shown = shown_page.get_data(as_text=True)
    key = re.search(r'id="new-key-value">([^<]+)<', shown).group(1)
    assert key.startswith("ms_")
    assert key[3:] not in str(shown_page.headers)
    # Reloading that answer sends the same form again: no second key, and the key is not shown.
    again = admin.post("/admin/api-keys", data=sent, follow_redirects=True)
    assert again.status_code == 200 and key not in again.get_data(as_text=True)
    later = admin.get("/admin/api-keys").get_data(as_text=True)  # the list afterwards
    assert key not in later and key[:9] in later and "市民App" in later
    assert later.count("<tr data-key=") == 1

    ok = client.get("/open311/v2/services.json", headers={"X-Api-Key": key})
    assert ok.status_code == 200
    key_id = re.search(r'<tr data-key="(\d+)"', later).group(1)
    assert admin.post(f"/admin/api-keys/{key_id}/revoke").status_code == 400  # no CSRF token
    revoked = admin.post(
        f"/admin/api-keys/{key_id}/revoke",
        data={"csrf_token": csrf_from(later)},
        follow_redirects=True,
    )
    assert revoked.status_code == 200 and key[:9] in revoked.get_data(as_text=True)
    assert client.get("/open311/v2/services.json", headers={"X-Api-Key": key}).status_code == 403
    assert (
        admin.post(
            "/admin/api-keys/999999/revoke", data={"csrf_token": csrf_from(later)}
        ).status_code
        == 404
    )
