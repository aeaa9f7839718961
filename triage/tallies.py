"""Maintained counts of cases (`case_tallies`): how many cases there are of each combination
of status, department, channel, kind, urgent flag and risk, kept by database triggers.

Why: the board's counts per filter value and the dashboard's open / at-risk / overdue tiles
were GROUP BY queries over every case of the office (0.2 s of CPU per facet at 1,000,000
cases on PostgreSQL, recounted after any change). Reading the tallies costs what their rows
cost: a few thousand combinations at most, however many cases there are.

How they stay right: triggers on `cases` (migration 0025) append a row of deltas for every
insert (+1), delete (-1) and change of a counted column (-1 for the old combination, +1 for
the new), whichever writer it is (the ORM, ``register_rows``'s executemany, the demo volume's
COPY, raw SQL, a department hand-over, any delete). The table is an insert-only
ledger: a combination's count is the sum of its rows (``n``). Writers never update a shared
row, so concurrent transactions neither wait for each other nor deadlock on a hot counter;
on PostgreSQL the triggers are per statement (transition tables), one row per combination a
statement touched (a COPY of 100,000 cases adds a few hundred rows, not 100,000).
`compact` folds the ledger back into one row per combination (the supervision tick, bulk
writers); `recount` rebuilds it from the cases (``minsheng tallies --recount``, admin repair).

Why no received day among the dimensions: the triggers would need the office's time zone
(configuration, not the database's) and the tallies would grow with the days kept (365 x the
combinations a year) where they now grow with nothing. Lists narrowed by dates are counted
from the cases, bounded (`triage.case_list.facet_counts`).

Not counted by TRUNCATE (no row triggers): `recount` after one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    String,
    func,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from triage.models import Base, Case

__all__ = [
    "DIMENSIONS",
    "CaseTally",
    "compact",
    "count",
    "create_triggers",
    "differences",
    "drop_triggers",
    "on_tallies",
    "recount",
    "tallied",
    "totals",
]

DIMENSIONS = ("status", "department_id", "channel", "kind", "urgent", "risk")
"""The columns of `cases` the tallies are kept by (same names in both tables)."""

COMPACT_AT = 20_000
"""Ledger rows beyond which a reader on PostgreSQL compacts (normally the tick does)."""


class CaseTally(Base):
    """One row of the ledger: ``n`` cases (a delta, positive or negative) of a combination."""

    __tablename__ = "case_tallies"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    status: Mapped[str | None] = mapped_column(String(20))
    department_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str | None] = mapped_column(String(20))
    kind: Mapped[str | None] = mapped_column(String(20))
    urgent: Mapped[bool | None] = mapped_column(Boolean)
    risk: Mapped[str | None] = mapped_column(String(10))
    n: Mapped[int] = mapped_column(Integer)


_COLUMNS = ", ".join(DIMENSIONS)
_TRIGGERS = ("case_tallies_insert", "case_tallies_delete", "case_tallies_update")


def _row(prefix: str) -> str:
    return ", ".join(f"{prefix}.{c}" for c in DIMENSIONS)


def create_triggers(conn: Connection) -> None:
    """The triggers that keep the ledger (both databases; on PostgreSQL also their function).
    Run by migration 0025; again by ``web.db.upgrade``, followed by `recount`, when a later
    migration dropped them (on SQLite a batch copy of `cases` drops its triggers)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"""
            CREATE OR REPLACE FUNCTION case_tallies_count() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
              IF TG_OP = 'INSERT' THEN
                INSERT INTO case_tallies ({_COLUMNS}, n)
                SELECT {_COLUMNS}, count(*) FROM new_cases GROUP BY {_COLUMNS};
              ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO case_tallies ({_COLUMNS}, n)
                SELECT {_COLUMNS}, -count(*) FROM old_cases GROUP BY {_COLUMNS};
              ELSE
                INSERT INTO case_tallies ({_COLUMNS}, n)
                SELECT {_COLUMNS}, sum(n) FROM (
                  SELECT {_COLUMNS}, -1 AS n FROM old_cases
                  UNION ALL SELECT {_COLUMNS}, 1 AS n FROM new_cases
                ) AS changed GROUP BY {_COLUMNS} HAVING sum(n) <> 0;
              END IF;
              RETURN NULL;
            END $$
            """
        )
        # Per statement, with the statement's rows as transition tables (an UPDATE trigger
        # with transition tables may not name columns: rows whose counted columns did not
        # change cancel out in the sum instead).
        for name, event, refs in (
            ("case_tallies_insert", "INSERT", "NEW TABLE AS new_cases"),
            ("case_tallies_delete", "DELETE", "OLD TABLE AS old_cases"),
            ("case_tallies_update", "UPDATE", "OLD TABLE AS old_cases NEW TABLE AS new_cases"),
        ):
            conn.exec_driver_sql(
                f"CREATE TRIGGER {name} AFTER {event} ON cases REFERENCING {refs}"
                " FOR EACH STATEMENT EXECUTE FUNCTION case_tallies_count()"
            )
        return
    insert = f"INSERT INTO case_tallies ({_COLUMNS}, n) VALUES"
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in DIMENSIONS)
    conn.exec_driver_sql(
        f"CREATE TRIGGER case_tallies_insert AFTER INSERT ON cases BEGIN"
        f" {insert} ({_row('NEW')}, 1); END"
    )
    conn.exec_driver_sql(
        f"CREATE TRIGGER case_tallies_delete AFTER DELETE ON cases BEGIN"
        f" {insert} ({_row('OLD')}, -1); END"
    )
    conn.exec_driver_sql(
        f"CREATE TRIGGER case_tallies_update AFTER UPDATE OF {_COLUMNS} ON cases"
        f" WHEN {changed} BEGIN"
        f" {insert} ({_row('OLD')}, -1); {insert} ({_row('NEW')}, 1); END"
    )


def drop_triggers(conn: Connection) -> None:
    """Removes what `create_triggers` made."""
    for name in _TRIGGERS:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON cases")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS case_tallies_count()")


def tallied(conn: Connection | Session) -> bool:
    """Whether the three triggers are there (a test at head; a later SQLite batch copy of
    `cases` would drop them silently)."""
    if _dialect(conn) == "postgresql":
        sql = (
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"
            " AND tgname LIKE 'case_tallies_%' AND tgrelid = 'cases'::regclass"
        )
    else:
        sql = (
            "SELECT count(*) FROM sqlite_master"
            " WHERE type = 'trigger' AND name LIKE 'case_tallies_%'"
        )
    return conn.execute(text(sql)).scalar() == len(_TRIGGERS)


def _dialect(conn: Connection | Session) -> str:
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    return bind.dialect.name


_LOCK = "hashtext(current_schema() || '.case_tallies')"
"""The advisory lock (transaction level) taken by `compact` and `recount` on PostgreSQL.
Keyed by the schema: advisory locks are the database's, and two offices (or test runs) in
schemas of one database have ledgers of their own to fold."""

_FOLD = f"""
    WITH moved AS (DELETE FROM case_tallies RETURNING {_COLUMNS}, n)
    INSERT INTO case_tallies ({_COLUMNS}, n)
    SELECT {_COLUMNS}, sum(n) FROM moved GROUP BY {_COLUMNS} HAVING sum(n) <> 0
"""


def compact(conn: Connection | Session) -> bool:
    """Folds the ledger into one row per combination with cases, in the caller's
    transaction; False when another transaction is compacting (PostgreSQL) and this one
    left it to it.

    PostgreSQL: one statement deletes the rows it sees and inserts their sums, so a delta
    committed meanwhile by a writer is neither lost nor counted twice; an advisory lock (the
    one `recount` waits for) keeps two compactions, or a compaction and a recount, from
    working on each other's rows. SQLite: writers are one at a time."""
    if _dialect(conn) == "postgresql":
        got = conn.execute(text(f"SELECT pg_try_advisory_xact_lock({_LOCK})"))
        if not got.scalar():
            return False
        conn.execute(text(_FOLD))
        return True
    top = conn.execute(text("SELECT max(id) FROM case_tallies")).scalar()
    if top is None:
        return True
    conn.execute(
        text(
            f"INSERT INTO case_tallies ({_COLUMNS}, n) SELECT {_COLUMNS}, sum(n)"
            f" FROM case_tallies WHERE id <= :top GROUP BY {_COLUMNS} HAVING sum(n) <> 0"
        ),
        {"top": top},
    )
    conn.execute(text("DELETE FROM case_tallies WHERE id <= :top"), {"top": top})
    return True


def shrink(engine: Engine) -> None:
    """After a bulk load (``minsheng demo --volume``, a restore): the ledger's table rewritten
    to its live rows, on PostgreSQL; nothing on SQLite. Its own autocommit connection (VACUUM
    runs outside a transaction); holds the table's exclusive lock for the rewrite, some
    milliseconds for a few thousand rows.

    Every case written adds a delta row that a fold deletes: a load of 1,000,000 cases left
    809 pages for 956 live rows, and each list page's counts read them all (6.5 MB). In
    service autovacuum frees the space between folds and the next fold reuses it; a load
    outruns it."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM FULL ANALYZE case_tallies"))


def recount(conn: Connection | Session) -> int:
    """Rebuilds the ledger from the cases (after a TRUNCATE, a restore, a doubt); returns the
    number of cases counted.

    PostgreSQL: first waits for the ledger's advisory lock, so a compaction (or another
    recount) under way commits before and this one's DELETE sees the rows it wrote (without
    the lock, the DELETE skipped the fold's new rows, which stayed beside the recount's:
    every count doubled); then writers of cases wait (SHARE lock, taken after the writers
    under way committed), so every delta is committed before the DELETE's snapshot and none
    falls between the count and the ledger's replacement. Expects READ COMMITTED (each
    statement sees what committed before it), the connection's default."""
    if _dialect(conn) == "postgresql":
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
        conn.execute(text("LOCK TABLE cases IN SHARE MODE"))
    conn.execute(text("DELETE FROM case_tallies"))
    conn.execute(
        text(
            f"INSERT INTO case_tallies ({_COLUMNS}, n)"
            f" SELECT {_COLUMNS}, count(*) FROM cases GROUP BY {_COLUMNS}"
        )
    )
    return int(conn.execute(text("SELECT coalesce(sum(n), 0) FROM case_tallies")).scalar() or 0)


def differences(
    conn: Connection | Session,
) -> dict[tuple[Any, ...], tuple[int, int]]:
    """{combination: (tallied, counted from the cases)} where the two differ; empty when the
    tallies are right. Reads every case: for a check by an admin, not for a page.

    One statement, so one snapshot: read in two (READ COMMITTED on PostgreSQL), a case
    registered between them was a false alarm ("run with --recount")."""
    both = text(
        f"SELECT {_COLUMNS}, sum(t), sum(c) FROM ("
        f" SELECT {_COLUMNS}, n AS t, 0 AS c FROM case_tallies"
        f" UNION ALL SELECT {_COLUMNS}, 0 AS t, 1 AS c FROM cases"
        f") AS both_counts GROUP BY {_COLUMNS} HAVING sum(t) <> sum(c)"
    )
    out: dict[tuple[Any, ...], tuple[int, int]] = {}
    for r in conn.execute(both):
        # Raw SQL: SQLite hands the urgent flag out as 0 / 1, the model's keys are booleans.
        key = tuple(
            bool(v) if c == "urgent" and v is not None else v
            for c, v in zip(DIMENSIONS, r[:-2], strict=True)
        )
        out[key] = (int(r[-2]), int(r[-1]))
    return out


_ON_TALLIES = {getattr(Case.__table__.c, c): getattr(CaseTally.__table__.c, c) for c in DIMENSIONS}


def on_tallies(clauses: Sequence[ColumnElement[bool]]) -> list[ColumnElement[bool]] | None:
    """``clauses`` on `Case` rewritten on `CaseTally` (the same columns by name), or None
    when one names a column of `cases` that is not a dimension (a date, the id: not
    countable from the tallies). Subqueries on other tables are kept as they are."""
    from sqlalchemy.sql.visitors import replacement_traverse

    other = False

    def swap(element: Any) -> Any:
        nonlocal other
        table = getattr(element, "table", None)
        if table is Case.__table__:
            mapped = _ON_TALLIES.get(element)
            if mapped is None:
                other = True
            return mapped
        return None

    out = [replacement_traverse(c, {}, swap) for c in clauses]
    return None if other else out


def totals(
    session: Session | Connection, where: Sequence[ColumnElement[bool]], by: Sequence[str]
) -> list[tuple[Any, ...]]:
    """[(value of each of ``by``, ..., cases)] of the cases matching ``where`` (clauses on
    `CaseTally`, see `on_tallies`), combinations of no case left out. Reads the ledger's
    rows, not the cases. On PostgreSQL, when the rows read were more than `COMPACT_AT` (no
    tick for a long while), the ledger is compacted after, in a transaction of its own."""
    columns = [getattr(CaseTally, c) for c in by]
    total = func.sum(CaseTally.n)
    query = select(*columns, total, func.count()).where(*where).group_by(*columns)
    rows = [tuple(r) for r in session.execute(query)]
    bind = session.get_bind() if isinstance(session, Session) else session
    if bind.dialect.name == "postgresql" and sum(int(r[-1]) for r in rows) > COMPACT_AT:
        with bind.engine.begin() as conn:
            compact(conn)
    return [r[:-1] for r in rows if r[-2]]


def count(session: Session | Connection, where: Sequence[ColumnElement[bool]]) -> int | None:
    """The number of cases matching ``where`` (clauses on `Case`), read from the tallies; None
    when a clause is not on a tallied dimension (see `on_tallies`): count the cases then."""
    on = on_tallies(where)
    if on is None:
        return None
    return sum(int(r[-1]) for r in totals(session, on, []))
