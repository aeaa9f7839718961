"""Migration 0007 (supervision): a database with cases, replies and visits from before it
upgrades, keeps its data, and matches the models on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from triage.models import Base, Case, User
from web.db import make_engine, upgrade

NEW_TABLES = (
    "extension_requests",
    "case_findings",
    "spot_check_draws",
    "spot_checks",
    "observations",
)


def test_upgrading_keeps_visits_and_replies_and_matches_the_models(empty_url: str) -> None:
    engine = make_engine(empty_url)
    upgrade(engine, "0006")
    # Plain SQL: the models already have the columns this upgrade adds.
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (username, display_name, role, password_hash, active,"
                " created_at, session_token) VALUES ('visitor', '', 'supervisor', '', :t, :now,"
                " 't')"
            ),
            {"t": True, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO cases (tracking_number, query_code_hash, channel, external_id, kind,"
                " status, subject, body, contact_name, contact_phone, contact_email,"
                " received_at, created_at, replied_at, alternatives, model_version, urgent,"
                ' urgent_reasons, "similar", rejection_reason, rejection_code, public_reason,'
                " referred_to, masked_text, sent_back_count, rework_count, version)"
                " VALUES ('MS-2026-000001', 'x', 'web', 'w-1', 'complaint', 'visited', '路灯',"
                " '路灯不亮', '', '', '', :received, :received, :replied, '[]', '', :f, '[]',"
                " '[]', '', '', '', '', '', 0, 0, 1)"
            ),
            {"received": now - timedelta(days=9), "replied": now - timedelta(days=2), "f": False},
        )
        conn.execute(
            text("INSERT INTO case_replies (case_id, at, body) VALUES (1, :at, '已修复。')"),
            {"at": now - timedelta(days=2)},
        )
        conn.execute(
            text(
                "INSERT INTO return_visits (case_id, at, reached, solved, satisfaction, note)"
                " VALUES (1, :a, :f, NULL, NULL, ''), (1, :b, :t, :t, 'satisfied', '')"
            ),
            {"a": now - timedelta(days=1), "b": now, "t": True, "f": False},
        )
    upgrade(engine)
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if any(
                t in repr(d)
                for t in (
                    *NEW_TABLES,
                    "'head'",
                    "'risk'",
                    "extended_to",
                    "extension_count",
                    "signed_off",
                    "'valid'",
                )
            )
        ]
        assert differences == []
        assert set(NEW_TABLES) <= set(inspect(conn).get_table_names())
    with Session(engine) as s:
        case = s.scalars(select(Case)).one()
        assert (case.risk, case.extension_count, case.extended_to) == ("", 0, None)
        assert [(v.reached, v.valid, v.channel) for v in case.visits] == [
            (False, False, "phone"),
            (True, True, "phone"),
        ]
        (reply,) = case.replies
        assert (reply.state, reply.signed_off_by_id) == ("sent", None)
        assert s.scalars(select(User)).one().head is False
    engine.dispose()


def test_upgrading_gives_staff_an_empty_email(empty_url: str) -> None:
    engine = make_engine(empty_url)
    upgrade(engine, "0008")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (username, display_name, role, password_hash, active,"
                " created_at, session_token, head) VALUES ('head', '', 'handler', '', :t, :now,"
                " 't', :t)"
            ),
            {"t": True, "now": datetime.now(UTC).replace(tzinfo=None)},
        )
    upgrade(engine)
    with engine.connect() as conn:
        differences = [
            d
            for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if "users" in repr(d)
        ]
        assert differences == []
    with Session(engine) as s:
        assert s.scalars(select(User)).one().email == ""
    engine.dispose()
