"""Benchmark: the board's pages with 100,000 cases (or more), under gunicorn with 4 workers.

Builds a database with the real schema, the config's departments and staff (demo passwords)
and N synthetic cases (`minsheng demo --volume`'s generator, web/demo_volume.py: about seven
events each, over 12 months), serves it with gunicorn (4 sync workers, as docs/production.md
runs it), signs in as a supervisor and as a handler, and requests each page ``--requests``
times in turn with a trivial page (the sign-in form) between, printing p50 and p95 of each
beside the trivial page's p95 in the same block, and the number of SQL statements the page
runs (counted in this process with a SQLAlchemy ``before_cursor_execute`` listener, one
request through the test client).

Pages: searches (Chinese 2 and 4 characters, a tracking number, a phone number), the case list
(first page, last page in each order, a typed deep page number, filtered lists with their
counts per filter value, each user's default list), the triage queue, a case page and the
dashboard (/board/dashboard, this month and ?month= the month before, when the app has it).

The queries column shows that no page runs more statements as the cases grow: run it with
``--cases 10000`` and ``--cases 100000`` (separate ``--dir``) and compare.

    .venv/bin/python bench/bench_board.py [--db sqlite|postgresql] [--cases 100000]
        [--requests 30] [--dir DIR] [--pg-url URL] [--pg-schema NAME]
        [--queries-only | --explain]

How to run it on both databases (the first run of each builds its database: 100,000 cases
take some minutes; later runs with the same --dir reuse it and only measure):

    .venv/bin/python bench/bench_board.py --db sqlite --dir /tmp/bench_board_sqlite
    createdb -h 127.0.0.1 -U postgres bench_board
    .venv/bin/python bench/bench_board.py --db postgresql --dir /tmp/bench_board_pg \
        --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_board
    # 1,000,000 cases on PostgreSQL (a database of its own: 100,000 cases take 2.1 GB), in a
    # named schema, so that later runs measure it again (no generation) whatever DIR holds;
    # --explain adds the buffers each page touches, which the machine's load does not change
    createdb -h 127.0.0.1 -U postgres bench1m
    .venv/bin/python bench/bench_board.py --db postgresql --cases 1000000 \
        --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/bench1m --pg-schema board \
        --dir /tmp/bench_board_pg_1m [--explain]

SQLite uses DIR/board.db (kept: a second run with the same --dir and --cases reuses it);
PostgreSQL (--pg-url, else MINSHENG_TEST_PG_URL, else postgres@127.0.0.1:5432/test) a schema
of its own, kept with --dir too (its name is written to DIR/pg_schema).

The table: per user and page, p50 and p95 of the page (ms, wall time seen by the client), the
p95 of the trivial page (the sign-in form) timed between its requests (what the machine gave
any request meanwhile), the gunicorn workers' CPU (ms) per page and sign-in form requested
(the form alone takes a few ms; the rest of a page's wall time waits for the database or for a
core), the SQL statements of one request, the page's size (KB), a mark where p95 is over the
150 ms target, and what the page said it shows. The load average is printed
before and after: on a shared machine compare each page with its trivial p95, not with 150.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, func, select, text  # noqa: E402

PG_URL = os.environ.get("MINSHENG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WORKERS = 4
WARM = 2 * WORKERS
"""Requests of each page not timed: a worker's first request of a page compiles its templates
and statements (about 120 ms of CPU, once per worker), which no steady-state user waits for.
They are sent `WORKERS` at a time (`_warm`): one after the other, gunicorn's sync workers took
them as they came, and a worker that got none compiled the case page during the timed requests
(at 10 requests per page, p95 is nearly the slowest: 313 ms for a page of 14 ms CPU)."""
PASSWORD = "minsheng-demo"
SECRET = "minsheng-bench-secret"
"""The app's secret in every part of the run: the caller keys generated with the cases are
those the served app computes (a caller's other cases are found on the case page)."""


def _config(directory: Path, url: str) -> Path:
    raw = (ROOT / "config.toml").read_text(encoding="utf-8")
    raw = raw.replace('url = "sqlite:///instance/minsheng.db"', f'url = "{url}"')
    raw = raw.replace('instance_dir = "instance"', f'instance_dir = "{directory / "instance"}"')
    tomllib.loads(raw)
    path = directory / "config.toml"
    path.write_text(raw, encoding="utf-8")
    return path


def _database(args: argparse.Namespace, directory: Path) -> str:
    if args.db == "sqlite":
        return f"sqlite:///{directory / 'board.db'}"
    import psycopg

    marker = directory / "pg_schema"
    if args.pg_schema:
        schema = args.pg_schema
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
            raise SystemExit(f"--pg-schema: {schema!r} is not a plain lower-case name")
        with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    elif marker.exists():
        schema = marker.read_text().strip()
    else:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        marker.write_text(schema)
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def _prepare(config: Path, cases: int) -> None:
    """Schema, staff with the demo password, and ``cases`` synthetic cases (if not there)."""
    os.environ["MINSHENG_CONFIG"] = str(config)
    os.environ["MINSHENG_SECRET_KEY"] = SECRET
    from triage import tallies
    from triage.models import Case, User
    from web.auth import hash_password
    from web.cli import _initialise
    from web.demo_volume import add_volume
    from web.runtime import Runtime
    from web.settings import load_settings

    rt = Runtime.build(load_settings())
    _initialise(rt, lambda user: None)
    with rt.sessions() as s, s.begin():
        digest = hash_password(PASSWORD)
        for user in s.scalars(select(User)):
            user.password_hash = digest
        have = s.scalar(select(func.count()).select_from(Case)) or 0
    if have < cases:
        started, cpu = time.monotonic(), time.process_time()
        with rt.engine.begin() as conn:
            add_volume(
                conn,
                cases - have,
                months=12,
                prefix=rt.settings.app.tracking_prefix,
                label_map=rt.settings.label_map,
                seed=1,
                secret=rt.secret,
                progress=lambda n: print(f"  {n} cases written", flush=True),
            )
        took = time.monotonic() - started
        print(
            f"generated {cases - have} cases in {took:.0f} s ({(cases - have) / took:.0f}/s),"
            f" {time.process_time() - cpu:.0f} s of this process's CPU, load {_load()}"
        )
    else:
        print(f"the database has {have} cases already: measuring them (none generated)")
    if rt.engine.dialect.name == "postgresql":
        # As autovacuum keeps a table in service: without a visibility map the counts per
        # filter value read every heap page of `cases` instead of an index only (4 x 130 ms).
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        if cases > have:
            tallies.shrink(rt.engine)  # as `minsheng demo --volume` does after its load
    rt.engine.dispose()


class Client:
    """One keep-alive HTTP connection with a cookie, signed in as a user."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookie = ""
        self.cookies: dict[str, str] = {}

    def get(self, path: str) -> tuple[int, str]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        self.conn.request("GET", quote(path, safe="/?=&%"), headers=headers)
        return self._read()

    def post(self, path: str, data: dict[str, str]) -> tuple[int, str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        self.conn.request("POST", path, body=urlencode(data), headers=headers)
        return self._read()

    def _read(self) -> tuple[int, str]:
        r = self.conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        for cookie in r.msg.get_all("Set-Cookie") or []:
            name, _, value = cookie.split(";", 1)[0].partition("=")
            self.cookies[name] = value
        self.cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return r.status, body

    def sign_in(self, username: str) -> None:
        _, page = self.get("/login")
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        status, _ = self.post(
            "/login", {"csrf_token": token, "username": username, "password": PASSWORD}
        )
        assert status == 302, f"sign-in of {username}: {status}"


def _gunicorn(config: Path, directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    conf = directory / "gunicorn.conf.py"
    conf.write_text("control_socket_disable = True\n", encoding="utf-8")
    log = directory / "gunicorn.log"
    env = {**os.environ, "MINSHENG_CONFIG": str(config), "MINSHENG_SECRET_KEY": SECRET}
    env.pop("MINSHENG_DATABASE_URL", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "gunicorn"),
                "-c",
                str(conf),
                "-w",
                str(WORKERS),
                "-b",
                "127.0.0.1:0",
                "--timeout",
                "120",
                "web:create_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        logged = log.read_text(errors="replace")
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{logged}")
        port = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", logged)
        if port and logged.count("Booting worker") >= WORKERS:
            return proc, int(port.group(1))
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def _pages(config: Path) -> dict[str, list[tuple[str, str]]]:
    """(label, path) per user, with a tracking number, a phone and a handler's case taken
    from the database."""
    os.environ["MINSHENG_CONFIG"] = str(config)
    from triage.models import Case, Department, Status
    from web.runtime import Runtime
    from web.settings import load_settings

    rt = Runtime.build(load_settings())
    with rt.sessions() as s:
        urban = s.scalar(select(Department.id).where(Department.code == "urban"))
        middle = s.scalar(select(func.max(Case.id))) // 2
        case = s.scalar(select(Case).where(Case.id >= middle, Case.department_id == urban).limit(1))
        open_case = s.scalar(
            select(Case.tracking_number).where(Case.status == Status.TRIAGE).limit(1)
        )
        number, phone = case.tracking_number, case.contact_phone
    rt.engine.dispose()
    from web import create_app

    os.environ["MINSHENG_SECRET_KEY"] = SECRET
    has_dashboard = any(r.rule == "/board/dashboard" for r in create_app().url_map.iter_rules())
    month_ago = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    common = [
        ("search 2 chars 噪音", "/board/cases?q=噪音"),
        ("search 2 chars 物业", "/board/cases?q=物业"),
        ("search 4 chars 噪音扰民", "/board/cases?q=噪音扰民"),
        ("search 4 chars 停车收费", "/board/cases?q=停车收费"),
        ("search tracking number", f"/board/cases?q={number}"),
        ("search phone number", f"/board/cases?q={phone}"),
        ("search phone's last six", f"/board/cases?q={phone[-6:]}"),
        ("list first page", "/board/cases?sort=received"),
        ("list last page", "/board/cases?last=1&sort=received"),
        ("list last page by deadline", "/board/cases?last=1&sort=deadline"),
        ("list last page by updated", "/board/cases?last=1&sort=updated"),
        ("list typed page 1000", "/board/cases?page=1000&sort=received"),
        ("list phone+urgent+overdue", "/board/cases?channel=phone&urgent=1&overdue=1"),
        ("list at risk", "/board/cases?at_risk=1&sort=deadline"),
        ("list received 30 days", f"/board/cases?received_from={month_ago}&sort=deadline"),
        ("case page", f"/board/cases/{number}"),
    ]
    dashboard = [("dashboard", "/board/dashboard")] if has_dashboard else []
    if has_dashboard:
        from triage.report.figures import ReportPolicy, month_of, shift_month

        # An earlier month (?month=): its figures computed by the first request, whole, and
        # then read from the stored snapshot like this month's.
        last = shift_month(month_of(datetime.now(UTC), ReportPolicy.from_settings(rt.settings)), -1)
        dashboard.append(("dashboard last month", f"/board/dashboard?month={last}"))
    return {
        "supervisor": [
            *common,
            ("list default (all, newest)", "/board/cases"),
            ("list filtered open+urban", "/board/cases?status=open&department=urban"),
            ("list open by deadline", "/board/cases?status=open&sort=deadline"),
            ("list filtered closed p.300", "/board/cases?status=closed&page=300"),
            ("list finding overdue", "/board/cases?finding=overdue"),
            ("search 噪音扰民 in environment", "/board/cases?q=噪音扰民&department=environment"),
            ("queue", "/board/queue"),
            ("case page (in triage)", f"/board/cases/{open_case}"),
            *dashboard,
        ],
        "urban": [
            *common,
            ("list default (open, deadline)", "/board/cases"),
            # Found in the handler's own department (the common searches above are mostly
            # another department's words: 噪音 finds nothing in urban's cases).
            ("search 4 chars own 坑坑洼洼", "/board/cases?q=坑坑洼洼"),
            ("search 3 chars own 物业费", "/board/cases?q=物业费"),
            ("list filtered open", "/board/cases?status=open"),
            *dashboard,
        ],
    }


def _query_counts(
    config: Path, pages: dict[str, list[tuple[str, str]]], explain: bool = False
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], tuple[int, float, str]]]:
    """SQL statements per (user, label): one request each through the test client (after
    one to warm it). With ``explain`` (PostgreSQL), also per page, requested again with the
    counts per filter value forgotten (as after any change to a case), the shared buffers its
    SELECT statements touch (hit or read, from ``EXPLAIN (ANALYZE, BUFFERS)`` of each run
    again after the request), their execution time (ms) and the statement that touched most:
    work that the machine's load does not change, to compare two sizes of database."""
    os.environ["MINSHENG_CONFIG"] = str(config)
    os.environ["MINSHENG_SECRET_KEY"] = SECRET
    from web import create_app

    app = create_app()
    engine = app.extensions["minsheng"].engine
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    counts = {}
    work: dict[tuple[str, str], tuple[int, float, str]] = {}
    for user, items in pages.items():
        c = app.test_client()
        page = c.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        c.post("/login", data={"csrf_token": token, "username": user, "password": PASSWORD})
        for label, path in items:
            c.get(path)  # warm
            seen.clear()
            r = c.get(path)
            assert r.status_code == 200, (path, r.status_code)
            counts[(user, label)] = len(seen)
            if explain and engine.dialect.name == "postgresql":
                # Explained without the counts per filter value kept from the request before
                # (in the process and in the instance folder): what a request pays after any
                # case changed, as it does all day in an office.
                _forget_counts(app)
                seen.clear()
                c.get(path)
                work[(user, label)] = _explained(engine, list(seen), record)
    engine.dispose()
    return counts, work


def _forget_counts(app: Any) -> None:
    """Empties what the app keeps in its instance folder between requests (the lists' counts
    per filter value are no longer kept: read from the tallies, or bounded)."""
    import shutil

    shutil.rmtree(app.extensions["minsheng"].settings.instance_path / "cache", ignore_errors=True)


def _explained(
    engine: Any, statements: list[tuple[str, Any]], record: Any
) -> tuple[int, float, str]:
    """(shared buffers, execution ms, the costliest statement) of ``statements``' SELECTs."""
    buffers, ms, top = 0, 0.0, (0, "")
    event.remove(engine, "before_cursor_execute", record)
    try:
        with engine.connect() as conn:
            for statement, params in statements:
                if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    continue
                plan = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params
                ).scalar()
                root = plan[0]["Plan"]
                n = int(root.get("Shared Hit Blocks", 0)) + int(root.get("Shared Read Blocks", 0))
                buffers += n
                ms += float(plan[0].get("Execution Time", 0.0))
                if n > top[0]:
                    top = (n, " ".join(statement.split())[:160])
    finally:
        event.listen(engine, "before_cursor_execute", record)
    return buffers, ms, f"{top[0]}: {top[1]}"


def _warm(client: Client, path: str) -> None:
    """Requests ``path`` `WARM` times, `WORKERS` at once on connections of their own (signed in
    as ``client``), so that each sync worker, busy with one, takes another: every worker has
    compiled the page's templates and statements before it is timed."""
    clients = []
    for _ in range(WORKERS):
        other = Client(client.conn.port)
        other.cookies = dict(client.cookies)
        other.cookie = client.cookie
        clients.append(other)
    with ThreadPoolExecutor(WORKERS) as pool:
        for _ in range(WARM // WORKERS):
            statuses = list(pool.map(lambda c: c.get(path)[0], clients))
            assert set(statuses) == {200}, (path, statuses)
    for other in clients:
        other.conn.close()


def _measure(
    get: Callable[[str], tuple[int, str]], path: str, n: int
) -> tuple[list[float], list[float], str]:
    page_ms, trivial_ms = [], []
    body = ""
    for _ in range(n):
        t = time.perf_counter()
        status, body = get(path)
        page_ms.append((time.perf_counter() - t) * 1000)
        assert status == 200, (path, status)
        t = time.perf_counter()
        get("/login")
        trivial_ms.append((time.perf_counter() - t) * 1000)
    return page_ms, trivial_ms, body


_TICK = os.sysconf("SC_CLK_TCK")


def _workers_cpu(master: int) -> float:
    """CPU seconds (user + system) the gunicorn workers of ``master`` have used so far."""
    total = 0
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return float("nan")
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


TARGET_MS = 150.0
"""Every listed page's p95 at 100,000 cases (issue 10)."""


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument(
        "--pg-url",
        default=None,
        help="PostgreSQL database to hold the bench's schema (default: MINSHENG_TEST_PG_URL).",
    )
    parser.add_argument(
        "--pg-schema",
        default=None,
        help="Schema of --pg-url to use (made if missing, kept): a database generated once "
        "and measured again later, whatever DIR holds (default: DIR/pg_schema, else a new one).",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="PostgreSQL: per page, the shared buffers its statements touch and their "
        "execution time (EXPLAIN ANALYZE), no gunicorn: work to compare between sizes "
        "whatever the machine's load.",
    )
    parser.add_argument(
        "--queries-only",
        action="store_true",
        help="Only count the SQL statements per page (to compare two sizes), no gunicorn.",
    )
    args = parser.parse_args()
    if args.pg_url:
        global PG_URL
        PG_URL = args.pg_url
    directory = (args.dir or Path(f"/tmp/bench_board_{args.db}")).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    url = _database(args, directory)
    config = _config(directory, url)
    _prepare(config, args.cases)
    pages = _pages(config)
    counts, work = _query_counts(config, pages, explain=args.explain)
    if args.queries_only or args.explain:
        print(f"\n{args.db}, {args.cases} cases: SQL statements per page")
        if work:
            print(
                f"{'user':10} {'page':32} {'queries':>8} {'buffers':>8} {'exec ms':>8}  costliest"
            )
        for (user, label), n in counts.items():
            extra = ""
            if (user, label) in work:
                buffers, ms, top = work[(user, label)]
                extra = f" {buffers:8d} {ms:8.1f}  {top}"
            print(f"{user:10} {label:32} {n:8d}{extra}")
        return
    proc, port = _gunicorn(config, directory)
    try:
        print(
            f"\n{args.db}, {args.cases} cases, gunicorn {WORKERS} workers, "
            f"{args.requests} requests per page (ms); load before: {_load()}"
        )
        print(
            f"{'user':10} {'page':32} {'p50':>7} {'p95':>7} {'trivial p95':>12}"
            f" {'cpu/pair':>8} {'queries':>8} {'KB':>6} {'>150':>4}  shown"
        )
        slow = 0
        for user, items in pages.items():
            client = Client(port)
            client.sign_in(user)
            for label, path in items:
                cpu = _workers_cpu(proc.pid)
                _warm(client, path)
                page_ms, trivial_ms, body = _measure(client.get, path, args.requests)
                # The workers' CPU per timed pair (page + sign-in form), warm-up included.
                cpu_ms = (_workers_cpu(proc.pid) - cpu) * 1000 / (args.requests + WARM)
                shown = re.search(r"<small>\(([^)]*)\)</small>", body)
                p95 = _pct(page_ms, 95)
                slow += p95 > TARGET_MS
                print(
                    f"{user:10} {label:32} {statistics.median(page_ms):7.1f} "
                    f"{p95:7.1f} {_pct(trivial_ms, 95):12.1f} {cpu_ms:8.1f} "
                    f"{counts[(user, label)]:8d} {len(body.encode()) / 1024:6.0f} "
                    f"{'SLOW' if p95 > TARGET_MS else '':>4}  {shown.group(1) if shown else ''}",
                    flush=True,
                )
        print(f"pages over {TARGET_MS:.0f} ms at p95: {slow}; load after: {_load()}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
