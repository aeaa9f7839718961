"""Benchmark: the monthly figures (triage/report/figures.py) of a month of 100,000 cases.

Builds a database with the real schema and the config's departments, and N synthetic cases
received in one month (`minsheng demo --volume`'s generator, web/demo_volume.py, with its
replies, return visits, closes and events), then times ``monthly_figures`` for that month
(every figure of the JSON, hot issues and the month before included; aggregated in SQL) and,
beside it, one ``SELECT count(*)`` over the same month's cases. The target is under 10 s on
SQLite and on PostgreSQL.

    .venv/bin/python bench/bench_report.py [--db sqlite|postgresql] [--cases 100000]
        [--month 2026-10] [--runs 3] [--dir DIR]

SQLite uses DIR/report.db (kept: a second run with the same --dir reuses it); PostgreSQL
(MINSHENG_TEST_PG_URL, default postgres@127.0.0.1:5432/test) a schema of its own, kept with
--dir too (its name is written to DIR/pg_schema); without --dir both go at the end.

``--pages`` measures the pages that show these figures instead: the dashboard
(/board/dashboard, as a supervisor) and the public page (/performance), served by gunicorn
with several workers (bench/bench_board.py's harness) over N cases spread over the 12
months up to now. It times the supervision tick's refresh of the stored figures
(triage/report/snapshots.py: first the current month and 12 complete months, then the
current month alone), a page's first request when no figure is stored (computed once under
the lease), and then p50/p95 of each page on fresh workers ("cold": the first requests after
gunicorn starts, nothing cached in the processes) and afterwards ("warm"). Use a --dir of its
own: its cases are spread differently.

    .venv/bin/python bench/bench_report.py --pages [--db sqlite|postgresql] [--cases 100000]
        [--requests 30] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

PG_URL = os.environ.get("MINSHENG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TARGET_SECONDS = 10.0


def _config(directory: Path, url: str) -> Path:
    raw = (ROOT / "config.toml").read_text(encoding="utf-8")
    raw = raw.replace('url = "sqlite:///instance/minsheng.db"', f'url = "{url}"')
    raw = raw.replace('instance_dir = "instance"', f'instance_dir = "{directory / "instance"}"')
    tomllib.loads(raw)
    path = directory / "config.toml"
    path.write_text(raw, encoding="utf-8")
    return path


def _database(db: str, directory: Path) -> tuple[str, str | None]:
    if db == "sqlite":
        return f"sqlite:///{directory / 'report.db'}", None
    import psycopg

    marker = directory / "pg_schema"
    if marker.exists():
        schema = marker.read_text().strip()
    else:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        marker.write_text(schema)
    return f"{PG_URL}?options=-csearch_path%3D{schema}", schema


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--pages", action="store_true", help="Time the pages (see above).")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()

    keep = args.dir is not None
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bench_report_"))
    directory.mkdir(parents=True, exist_ok=True)
    url, schema = _database(args.db, directory)
    os.environ["MINSHENG_CONFIG"] = str(_config(directory, url))
    try:
        if args.pages:
            _run_pages(args, directory)
        else:
            _run(args)
    finally:
        if not keep:
            if schema:
                _drop_schema(schema)
            shutil.rmtree(directory, ignore_errors=True)


def _run(args: argparse.Namespace) -> None:
    from triage.models import Case
    from triage.report.figures import ReportPolicy, month_window, monthly_figures
    from web.cli import _initialise
    from web.demo_volume import add_volume
    from web.runtime import Runtime
    from web.settings import load_settings

    rt = Runtime.build(load_settings())
    _initialise(rt, lambda user: None)
    policy = ReportPolicy.from_settings(rt.settings)
    start, end = month_window(args.month, policy)
    with rt.sessions() as s:
        have = s.scalar(select(func.count()).select_from(Case)) or 0
    if have < args.cases:
        began = time.monotonic()
        with rt.engine.begin() as conn:
            # The generator spreads cases over the 30 days before `now`: the month's last hour.
            add_volume(
                conn,
                args.cases - have,
                months=1,
                now=end - timedelta(hours=1),
                prefix=rt.settings.app.tracking_prefix,
                label_map=rt.settings.label_map,
                seed=1,
                progress=lambda n: print(f"  {n} cases written", flush=True),
            )
        took = time.monotonic() - began
        print(f"generated {args.cases - have} cases in {took:.0f} s")
    if rt.engine.dialect.name == "postgresql":
        with rt.engine.begin() as conn:
            conn.execute(text("ANALYZE"))

    count_times, figure_times = [], []
    figures: dict[str, object] = {}
    for _ in range(args.runs):
        with rt.sessions() as s:
            began = time.perf_counter()
            in_month = s.scalar(
                select(func.count())
                .select_from(Case)
                .where(Case.received_at >= start, Case.received_at < end)
            )
            count_times.append(time.perf_counter() - began)
        with rt.sessions() as s:
            began = time.perf_counter()
            figures = monthly_figures(s, args.month, policy, until=datetime.now(UTC))
            figure_times.append(time.perf_counter() - began)
    rt.engine.dispose()

    best = min(figure_times)
    print(
        f"{args.db}: {args.month}, {in_month} cases received in the month "
        f"({figures['valid_visits']} valid visits, {len(figures['hot_issues'])} hot issues)"
    )
    print(
        f"  monthly_figures: best {best:.2f} s, median {statistics.median(figure_times):.2f} s "
        f"over {args.runs} runs"
    )
    print(
        f"  SELECT count(*) over the month's cases: best {min(count_times) * 1000:.1f} ms "
        f"(figures = {best / max(min(count_times), 1e-9):.0f} × count)"
    )
    print("  figures:", json.dumps({k: figures[k] for k in list(figures)[:17]}, ensure_ascii=False))
    verdict = "OK" if best < TARGET_SECONDS else "TOO SLOW"
    print(f"  target < {TARGET_SECONDS:.0f} s: {verdict}")
    if best >= TARGET_SECONDS:
        raise SystemExit(1)


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def _run_pages(args: argparse.Namespace, directory: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_board  # the gunicorn harness, the demo password, the 12-month cases

    config = Path(os.environ["MINSHENG_CONFIG"])
    bench_board._prepare(config, args.cases)

    from triage.models import FigureSnapshot
    from triage.report import snapshots
    from triage.report.figures import ReportPolicy
    from web.runtime import Runtime
    from web.settings import load_settings

    rt = Runtime.build(load_settings())
    policy = ReportPolicy.from_settings(rt.settings)
    if rt.engine.dialect.name == "postgresql":
        # As autovacuum leaves a table in service: the visibility map lets the dashboard's
        # counts of open cases read their index only (the bulk load left it empty).
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE cases"))
    with rt.engine.begin() as conn:
        conn.execute(FigureSnapshot.__table__.delete())
    now = datetime.now(UTC)
    with rt.sessions() as s:
        began = time.perf_counter()
        first = snapshots.refresh(s, policy, now)
        first_s = time.perf_counter() - began
        began = time.perf_counter()
        again = snapshots.refresh(s, policy, now + snapshots.MAX_AGE + timedelta(seconds=1))
        again_s = time.perf_counter() - began
    print(f"{args.db}, {args.cases} cases over 12 months, gunicorn {bench_board.WORKERS} workers")
    print(f"  tick refresh, nothing stored ({len(first)} snapshots): {first_s:.2f} s")
    print(f"  tick refresh of the current month ({len(again)} snapshot): {again_s:.2f} s")

    proc, port = bench_board._gunicorn(config, directory)
    try:
        # A page with nothing stored: the first request computes under the lease.
        with rt.engine.begin() as conn:
            conn.execute(FigureSnapshot.__table__.delete())
        supervisor = bench_board.Client(port)
        supervisor.sign_in("supervisor")
        public = bench_board.Client(port)
        for label, client, path in (
            ("dashboard", supervisor, "/board/dashboard"),
            ("performance", public, "/performance"),
        ):
            began = time.perf_counter()
            status, _ = client.get(path)
            assert status == 200, (path, status)
            print(f"  {label}, nothing stored, first request: {time.perf_counter() - began:.2f} s")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    rt.engine.dispose()

    # Fresh workers with the figures stored (as the tick keeps them).
    proc, port = bench_board._gunicorn(config, directory)
    try:
        supervisor = bench_board.Client(port)
        supervisor.sign_in("supervisor")
        public = bench_board.Client(port)
        cold = 2 * bench_board.WORKERS
        for label, client, path in (
            ("/board/dashboard", supervisor, "/board/dashboard"),
            ("/performance", public, "/performance"),
        ):
            times = []
            for _ in range(cold + args.requests):
                began = time.perf_counter()
                status, _ = client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert status == 200, (path, status)
            c, w = times[:cold], times[cold:]
            print(
                f"  {label}: cold (first {cold} requests) p50 {statistics.median(c):.0f} ms, "
                f"p95 {_pct(c, 95):.0f} ms; warm ({len(w)}) p50 {statistics.median(w):.0f} ms, "
                f"p95 {_pct(w, 95):.0f} ms"
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
