"""Benchmark: what writing a case costs in the indexes of `cases` (not the application).

Copies ``--rows`` existing cases of a database (a bench_board database: 100,000 cases) as new
cases in one statement (``INSERT INTO cases SELECT ...``: new id, tracking number and external
id, every other column as it was, so every index and the tallies' triggers see realistic
values), times it, and rolls it back: the rows are left as they were, but not the indexes'
pages. On PostgreSQL the rolled-back entries leave the indexes' newest end bloated (after a
dozen rounds, a list's deep page read 1,169 pages of (received_at, id) instead of 196, VACUUM
or not): ``REINDEX TABLE cases`` before measuring that database's pages again. Run it before
and after a migration that adds or drops indexes on `cases` to see what each written case
costs.

    .venv/bin/python bench/bench_case_writes.py --url sqlite:////tmp/x/board.db [--rows 10000]
    .venv/bin/python bench/bench_case_writes.py \
        --url postgresql+psycopg://postgres@127.0.0.1:5432/db --schema bench_xxx

Prints the indexes on `cases`, then the median over the rounds of the wall time and the CPU
of whoever did the work, in µs per case: this process for SQLite, the connection's server
backend for PostgreSQL (read from /proc: the server must run on this machine). On a shared
machine compare the CPU, which the load changes little.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from sqlalchemy import create_engine, inspect, text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema", default=None, help="PostgreSQL schema holding `cases`.")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    engine = create_engine(args.url)
    with engine.connect() as conn:
        if args.schema:
            conn.exec_driver_sql(f"SET search_path TO {args.schema}")
        indexes = inspect(conn).get_indexes("cases", schema=args.schema)
        columns = [c["name"] for c in inspect(conn).get_columns("cases", schema=args.schema)]
        conn.rollback()
    print(f"{len(indexes)} indexes on cases (+ primary key and unique constraints):")
    print("  " + ", ".join(sorted(i["name"] or "" for i in indexes)))
    replaced = {
        "id": "id + :offset",
        "tracking_number": "'W' || tracking_number",
        "external_id": "'w' || external_id",
    }
    # Quoted: `similar` is a keyword on PostgreSQL.
    select_list = ", ".join(replaced.get(c, f'"{c}"') for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    statement = text(
        f"INSERT INTO cases ({names}) SELECT {select_list} FROM cases"
        " WHERE id IN (SELECT id FROM cases ORDER BY id DESC LIMIT :rows)"
    )
    walls, cpus = [], []
    for _ in range(args.rounds):
        with engine.connect() as conn:
            if args.schema:
                conn.exec_driver_sql(f"SET search_path TO {args.schema}")
            offset = int(conn.scalar(text("SELECT max(id) FROM cases")) or 0)
            backend = (
                int(conn.scalar(text("SELECT pg_backend_pid()")) or 0)
                if engine.dialect.name == "postgresql"
                else None
            )
            wall, cpu = time.perf_counter(), _cpu(backend)
            conn.execute(statement, {"offset": offset, "rows": args.rows})
            walls.append((time.perf_counter() - wall) * 1e6 / args.rows)
            cpus.append((_cpu(backend) - cpu) * 1e6 / args.rows)
            conn.rollback()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    who = "server backend" if engine.dialect.name == "postgresql" else "this process"
    print(
        f"{args.rows} cases a round, {args.rounds} rounds:"
        f" wall median {statistics.median(walls):.1f} µs/case (min {min(walls):.1f}),"
        f" CPU ({who}) median {statistics.median(cpus):.1f} µs/case (min {min(cpus):.1f});"
        f" load {load}"
    )


def _cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid``, or of this process if None."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
