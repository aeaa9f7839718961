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
