"""Migration 0008 (search index): a database with cases and replies from before it upgrades,
its cases are found by search at once, and the schema matches the models, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.integration.helpers import insert_case_row
from triage.models import Base
from triage.search import search_cases
from triage.search_index import SearchGram
from web.db import make_engine, upgrade


def test_upgrading_indexes_the_existing_cases(empty_url: str) -> None:
    engine = make_engine(empty_url)
    upgrade(engine, "0007")
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with engine.begin() as conn:
        for n, (subject, body, phone) in enumerate(
            (
                ("路灯", "明德路路灯坏了三个星期", "13800138000"),
                ("噪音", "饭店深夜噪音扰民", "13900139000"),
            ),
            start=1,
        ):
            conn.execute(
                text(
                    "INSERT INTO cases (tracking_number, query_code_hash, channel, external_id,"
                    " kind, status, subject, body, contact_name, contact_phone, contact_email,"
                    " received_at, created_at, alternatives, model_version, urgent,"
                    ' urgent_reasons, "similar", rejection_reason, rejection_code,'
                    " public_reason, referred_to, masked_text, sent_back_count, rework_count,"
                    " extension_count, risk, version)"
                    " VALUES (:number, 'x', 'web', :ext, 'complaint', 'replied', :subject,"
                    " :body, '王小明', :phone, '', :at, :at, '[]', '', :f, '[]', '[]', '', '',"
                    " '', '', :masked, 0, 0, 0, '', 1)"
                ),
                {
                    "number": f"MS-2026-00000{n}",
                    "ext": f"w-{n}",
                    "subject": subject,
                    "body": body,
                    "phone": phone,
                    "masked": f"{subject}\n{body}",
                    "at": now - timedelta(days=n),
                    "f": False,
                },
            )
        conn.execute(
            text("INSERT INTO case_replies (case_id, at, body) VALUES (1, :at, '已更换灯泡。')"),
            {"at": now},
        )
    upgrade(engine)
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if "search_grams" in repr(d) or "ix_cases_department_received" in repr(d)
        ]
        assert differences == []
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(SearchGram)) > 20

        def found(q: str, masked: bool = False) -> list[int]:
            return search_cases(s, q, masked=masked).case_ids

        assert found("路灯") == [1]
        assert found("噪音扰民") == [2]
        assert found("灯泡") == [1]  # the reply
        assert found("13900139000") == [2]
        assert found("13900139000", masked=True) == []
        assert found("MS-2026-000002", masked=True) == [2]
    engine.dispose()


def test_postings_are_read_from_the_key_alone(empty_url: str) -> None:
    """Migration 0023: on PostgreSQL the primary key's index holds each posting's fields
    (INCLUDE), so a search reads no row of the table; down and up again, both databases."""
    engine = make_engine(empty_url)
    upgrade(engine)

    def included() -> list[str]:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                return []
            return list(
                conn.scalars(
                    text(
                        "SELECT a.attname FROM pg_index i"
                        " JOIN pg_class c ON c.oid = i.indexrelid"
                        " JOIN pg_attribute a ON a.attrelid = i.indrelid"
                        " AND a.attnum = ANY(i.indkey[i.indnkeyatts:])"
                        " WHERE c.relname = 'pk_search_grams'"
                        " AND c.relnamespace = current_schema()::regnamespace"
                    )
                )
            )

    postgresql = engine.dialect.name == "postgresql"
    assert included() == (["fields"] if postgresql else [])
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if "search_grams" in repr(d)
        ]
        assert differences == []
    from alembic import command

    from web.db import alembic_config

    command.downgrade(alembic_config(engine), "0022")
    assert included() == []
    upgrade(engine)
    assert included() == (["fields"] if postgresql else [])
    engine.dispose()


def test_six_digit_grams_are_added_and_removed(empty_url: str) -> None:
    """Migration 0034: a database indexed before it (no six-digit grams) upgrades to the index
    a rebuild writes, and a phone typed whole or in part is found from those grams; downgrade
    removes them (the code of 0033 reads a phone's trigrams)."""
    from alembic import command

    from triage.search_index import rebuild
    from web.db import alembic_config

    six = f"gram >= {1 << 61} AND gram < {1 << 62}"
    engine = make_engine(empty_url)
    upgrade(engine)
    with Session(engine) as s, s.begin():
        insert_case_row(s)
    with Session(engine) as s, s.begin():
        rebuild(s)
        written = set(
            s.execute(text(f"SELECT gram, case_id, fields FROM search_grams WHERE {six}"))
        )
        # The phone's six windows, the tracking number's one and four more of its digits
        # read as one run (MS-2026-123456: 2026123456, migration 0038).
        assert len(written) == 11, written
    command.downgrade(alembic_config(engine), "0033")
    with Session(engine) as s:
        assert s.scalar(text(f"SELECT count(*) FROM search_grams WHERE {six}")) == 0
    upgrade(engine)
    with Session(engine) as s:
        again = set(s.execute(text(f"SELECT gram, case_id, fields FROM search_grams WHERE {six}")))
        assert again == written
        for q in ("13911112222", "911112", "139-1111-2222", "123456"):
            assert search_cases(s, q, masked=False).case_ids == [1], q
        assert search_cases(s, "911113", masked=False).case_ids == []
        assert search_cases(s, "13911112222", masked=True).case_ids == []
    engine.dispose()
