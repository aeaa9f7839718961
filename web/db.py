"""The database: engine with sane per-dialect settings, sessions, and schema upgrades."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# Statements that neither write nor need a transaction: they run as they come (a PRAGMA
# such as foreign_keys=OFF is ignored by SQLite inside a transaction; VACUUM refuses one).
_NO_BEGIN = re.compile(
    r"^\s*(?:SELECT|PRAGMA|EXPLAIN|VALUES|BEGIN|COMMIT|END|ROLLBACK|RELEASE|VACUUM|"
    r"ATTACH|DETACH)\b",
    re.IGNORECASE,
)
_WITH = re.compile(r"^\s*WITH\b", re.IGNORECASE)
_DML = re.compile(r"\b(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def sqlite_writes(statement: str) -> bool:
    """True when `statement` (SQL text) writes or opens a savepoint: INSERT, UPDATE,
    DELETE, REPLACE, SAVEPOINT, DDL, a WITH … INSERT/UPDATE/DELETE; False for reads,
    pragmas and transaction control."""
    if _WITH.match(statement):
        return bool(_DML.search(statement))
    return not _NO_BEGIN.match(statement)


def _sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy's transactions become SQLite's own, begun with BEGIN IMMEDIATE before the
    transaction's first write (or SAVEPOINT).

    pysqlite's default handling begins a transaction only before INSERT/UPDATE/DELETE: a
    SAVEPOINT issued earlier (``session.begin_nested()`` before any write) became the
    outermost transaction, its RELEASE committed, and a later rollback of the "enclosing"
    transaction left its work in place. Here the driver issues no BEGIN or COMMIT of its
    own (isolation_level None, as SQLAlchemy's pysqlite recipe does) and we begin.

    Why at the first write and IMMEDIATE, not a plain BEGIN when the transaction begins: a
    deferred transaction that has read holds a snapshot, and its first write, if another
    connection (a gunicorn worker, a background thread) committed meanwhile, fails at once
    with SQLITE_BUSY ("database is locked"; busy_timeout does not wait for it: the snapshot
    cannot be upgraded). BEGIN IMMEDIATE takes the write lock before reading anything, and
    waits for it up to busy_timeout. Beginning it when the transaction begins would make
    every read-only request hold the write lock. So reads before a transaction's first
    write see the latest committed data statement by statement (as with pysqlite's default),
    and everything from the first write to the commit is one serialised transaction.
    """

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "before_cursor_execute")
    def _begin_before_writing(conn: Connection, cursor: Any, statement: str, *_args: Any) -> None:
        dbapi_conn = cursor.connection
        if dbapi_conn.in_transaction or not conn.in_transaction():
            return
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        if dbapi_conn.isolation_level is not None:
            # Reset by SQLAlchemy after an AUTOCOMMIT connection went back to the pool.
            dbapi_conn.isolation_level = None
        if sqlite_writes(statement):
            dbapi_conn.execute("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers go on while one writer writes; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        _sqlite_transactions(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Creates or upgrades the schema; safe to run again."""
    command.upgrade(alembic_config(engine), revision)
