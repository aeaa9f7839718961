"""The database: engine with sane per-dialect settings, sessions, and schema upgrades."""

from __future__ import annotations

import re
import sqlite3
import time
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


LOCK_POLL_SECONDS = 0.005
"""How often a writer waiting for the write lock tries again (`begin_immediate`)."""


def begin_immediate(dbapi_conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE on `dbapi_conn` (autocommit, no transaction open), tried again every
    `LOCK_POLL_SECONDS` while another connection holds the write lock, for up to
    `BUSY_TIMEOUT_SECONDS`; then SQLAlchemy's OperationalError "database is locked".

    Not SQLite's own busy handler: it sleeps up to 100 ms between tries, and a batch job
    (the call import, enrichment, the tick) that commits transaction after transaction
    leaves gaps of a few ms: waiters missed them for ten transactions and more (15-21 s
    under load while none held the lock over 4.5 s). A stale read snapshot
    (SQLITE_BUSY_SNAPSHOT: a read statement of this connection left open while another
    committed) never clears by waiting: it fails at once, as before."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(LOCK_POLL_SECONDS)
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")


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
            begin_immediate(dbapi_conn)


BUSY_TIMEOUT_SECONDS = 20.0
"""How long an SQLite writer waits for the write lock (another process's transaction) before
"database is locked". Below gunicorn's worker timeout (30 s by default, as docs/production.md
runs it): a request that waited 30 s was killed with its worker, the citizen's form lost
without an answer; at 20 s it answers 503 "busy, not saved, send it again" (web/__init__.py)
with time to spare. Long enough for any one transaction: each writer commits in steps
(a call import per `[intake.calls] batch_size` rows, enrichment `web.cli_intake.
SQLITE_ENRICH_BATCH` cases), measured under load at a few seconds at most."""


def is_busy(exc: BaseException) -> bool:
    """True when `exc` (a SQLAlchemy error or the driver's) is SQLite's "database is locked"
    (SQLITE_BUSY: another connection held the write lock past the busy timeout)."""
    orig = getattr(exc, "orig", exc)
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_BUSY)
    return "database is locked" in str(orig)


CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
"""PostgreSQL's deadlock_detected and serialization_failure: two transactions changed the
same rows at once and the database rolled one back (nothing of it was saved)."""


def is_conflict(exc: BaseException) -> bool:
    """True when `exc` (a SQLAlchemy error or the driver's) is PostgreSQL rolling back a
    transaction that collided with another (`CONFLICT_SQLSTATES`): for the user, as a stale
    version, "someone else changed this at the same time", not a server error."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) in CONFLICT_SQLSTATES


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers go on while one writer writes; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
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
    """Creates or upgrades the schema; safe to run again.

    Then puts back the case tallies' triggers if a migration dropped them (on SQLite a
    migration that rebuilds `cases` by batch copy drops its triggers: the board's counts
    would silently stop following the cases), and recounts the tallies then; likewise the
    search postings' department trigger, and their departments then."""
    command.upgrade(alembic_config(engine), revision)
    from sqlalchemy import inspect

    from triage import search_index, tallies

    with engine.begin() as conn:
        tables = inspect(conn)
        names = tables.get_table_names()
        if "case_tallies" in names and not tallies.tallied(conn):
            tallies.drop_triggers(conn)  # any left of the three
            tallies.create_triggers(conn)
            tallies.recount(conn)
        if (
            "search_grams" in names
            and "department_id" in {c["name"] for c in tables.get_columns("search_grams")}
            and not search_index.triggered(conn)
        ):
            search_index.create_triggers(conn)
            search_index.sync_departments(conn)
