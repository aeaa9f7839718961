"""Benchmark: importing a call-centre export end to end, beside the same rows inserted by bulk
SQL.

Writes an export of N calls (default 100,000) as a call centre's system and Excel write it: a
GBK CSV with CRLF line ends and the default headers (工单号 来电号码 来电时间 通话时长 诉求内容
话务员 姓名 地址 诉求类型), call times as Excel's Chinese locale writes them
(``2026/11/20 9:05``), lengths in seconds or ``mm:ss``, numbers typed in several ways, some
rows with a name and an address. The texts are citizens' messages from
../shared/data/teddy2020c (subject and body run together, cut to what an operator types: at
most 300 characters), else the demo's own (web/demo/*.jsonl); each text comes back about
every 11,000 rows (the data has that many), with another caller and time.

Then, in one process, on SQLite (or PostgreSQL with --postgresql):

* floor: the same rows, parsed beforehand, inserted into the cases table by bulk SQL (one
  executemany of the parsed values per batch, sent as multi-row INSERTs, no COPY; one commit
  a batch): what the database takes without registration;
* import: `web.call_import_run.run_import` — what `minsheng intake calls FILE` does — with
  the keyword routing (or a trained model with --model-dir), urgency, caller keys, events
  and deadlines, one transaction per batch; a file of 1 MiB or more (2,000 calls or so)
  with the helper process that works out the next batches' suggestions, hazard flags, masked
  texts, query codes, caller keys and deadlines meanwhile (--no-helper: without it); then,
  timed apart, the enrichment that the command runs after it (similar-case suggestions,
  duplicate-index and search rows).

Prints rows per second (wall) and CPU ms a row of both (the import's: this process and its
helper, which has exited by then; on PostgreSQL also the server's backends for the
database, when the server runs on this machine), their ratio, the machine's load, and the
--json counts; the issue asks for >= 2,000 rows/s. Everything is written under a temporary
folder, removed at the end.

    .venv/bin/python bench/bench_call_import.py [--n 100000] [--model-dir DIR]
        [--postgresql URL] [--profile FILE] [--no-helper]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, make_url  # noqa: E402

TARGET = 2000.0
TEXT_MAX = 300
HEADER = [
    "工单号",
    "来电号码",
    "来电时间",
    "通话时长",
    "诉求内容",
    "话务员",
    "姓名",
    "地址",
    "诉求类型",
]
OPERATORS = ["王芳", "李娜", "张伟", "刘洋", "陈静", "杨磊", "赵敏", "黄强"]
NAMES = ["", "", "", "李先生", "王女士", "张三", "刘阿姨", "陈师傅"]
STREETS = ["明德路", "人民路", "建设大道", "解放街", "桃源居小区", "新华路", "滨江路"]
KINDS = ["投诉", "投诉", "投诉", "建议", "咨询", "表扬", ""]


def load_texts(data_dir: Path) -> tuple[list[str], str]:
    """Call summaries: the shared teddy2020c messages, else the demo's texts."""
    teddy = data_dir / "teddy2020c"
    files = [teddy / n for n in ("unlabelled.jsonl", "with_replies.jsonl", "with_votes.jsonl")]
    files.append(teddy / "train.jsonl")
    source = "teddy2020c"
    if not all(f.exists() for f in files):
        files = sorted((ROOT / "web" / "demo").glob("*.jsonl"))
        source = "web/demo (no shared data)"
    texts: list[str] = []
    seen: set[str] = set()
    for path in files:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                subject, body = (row.get("subject") or "").strip(), (row.get("body") or "").strip()
                text = f"{subject}。{body}" if subject else body
                text = text[:TEXT_MAX]
                if text and text not in seen:
                    seen.add(text)
                    texts.append(text)
    return texts, source


def phone_number(rng: random.Random) -> str:
    """A caller's number as call systems write it: mobiles mostly, some spaced, landlines."""
    n = rng.random()
    mobile = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
    if n < 0.6:
        return mobile
    if n < 0.75:
        return f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}"
    if n < 0.85:
        return f"+86 {mobile}"
    return f"0{rng.choice(['10', '21', '731', '755'])}-{rng.randrange(10**7, 10**8)}"


def write_export(path: Path, n: int, texts: list[str], now: datetime, seed: int = 9) -> None:
    """N calls over the 30 days before `now` (local time +08:00), as a GBK CSV."""
    rng = random.Random(seed)
    start = now - timedelta(days=30)
    step = timedelta(days=30) / max(n, 1)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for i in range(n):
        local = (start + step * i + timedelta(hours=8)).replace(tzinfo=None)
        seconds = rng.randrange(20, 1200)
        length = str(seconds) if rng.random() < 0.7 else f"{seconds // 60:02d}:{seconds % 60:02d}"
        has_place = rng.random() < 0.4
        place = f"{rng.choice(STREETS)}{rng.randrange(1, 300)}号" if has_place else ""
        writer.writerow(
            [
                f"GD{local:%Y%m%d}{i:07d}",
                phone_number(rng),
                f"{local.year}/{local.month}/{local.day} {local.hour}:{local.minute:02d}",
                length,
                texts[i % len(texts)],
                rng.choice(OPERATORS),
                rng.choice(NAMES),
                place,
                rng.choice(KINDS),
            ]
        )
    path.write_bytes(out.getvalue().encode("gbk", errors="replace"))


def floor_run(rt: Any, data: bytes, file_name: str, batch: int) -> tuple[int, float, float]:
    """The rows parsed, then inserted into ``cases`` by bulk SQL: one executemany per batch
    (SQLAlchemy sends it as multi-row INSERTs, no COPY), one commit per batch: (rows, wall
    seconds, CPU seconds), parsing excluded."""
    from zoneinfo import ZoneInfo

    from intake.phone import ColumnMapping, parse_table, read_table
    from triage.models import Case

    now = datetime.now(UTC)
    rows = [
        r.submission
        for r in parse_table(
            read_table(data, file_name),
            ColumnMapping(),
            tz=ZoneInfo(rt.settings.app.timezone),
            now=now,
        )
        if r.submission is not None
    ]
    values = [
        {
            "tracking_number": f"FL-{i:08d}",
            "query_code_hash": "",
            "channel": "floor",
            "external_id": s.external_id,
            "kind": str(s.kind),
            "status": "received",
            "subject": s.subject,
            "body": s.body,
            "contact_name": s.contact.name,
            "contact_phone": s.contact.phone,
            "contact_email": "",
            "received_at": s.received_at,
            "created_at": now,
        }
        for i, s in enumerate(rows)
    ]
    start, cpu = time.perf_counter(), time.process_time()
    with rt.engine.connect() as conn:
        for at in range(0, len(values), batch):
            conn.execute(insert(Case.__table__), values[at : at + batch])
            conn.commit()
    return len(values), time.perf_counter() - start, time.process_time() - cpu


def children_cpu() -> float:
    """CPU seconds of this process's children that have exited (the import's helper)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu(rt: Any) -> float | None:
    """CPU seconds so far of the PostgreSQL backends serving the runtime's database, read in
    /proc (a server on this machine, readable by this user); None on SQLite or otherwise."""
    if rt.engine.url.get_backend_name() != "postgresql":
        return None
    from sqlalchemy import text

    with rt.engine.connect() as conn:
        pids = conn.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).all()
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="route with the trained model in this folder ([classifier] model_dir; e.g. the "
        "instance/models that `minsheng demo` writes) instead of the keyword routing",
    )
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        help="run on PostgreSQL: a server URL (postgresql+psycopg://user@host:port/db) on "
        "which a scratch database is created and dropped; default SQLite",
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="rows a transaction (default: the config's)"
    )
    parser.add_argument(
        "--no-enrich", action="store_true", help="skip the enrichment after the import"
    )
    parser.add_argument("--profile", type=Path, help="write a cProfile of the import here")
    parser.add_argument("--no-floor", action="store_true", help="skip the bulk SQL floor")
    parser.add_argument(
        "--no-helper",
        action="store_true",
        help="import in this process alone, without the helper process that a large file "
        "gets (web.call_import_run.PIPELINE_MIN_BYTES)",
    )
    args = parser.parse_args()

    texts, source = load_texts(args.data_dir)
    tmp = Path(tempfile.mkdtemp(prefix="minsheng-bench-calls-"))
    try:
        from web import call_import_run
        from web.call_import_run import enrich_new_cases, run_import
        from web.cli import _initialise
        from web.runtime import Runtime
        from web.settings import settings_from_dict

        now = datetime.now(UTC).replace(microsecond=0)
        export = tmp / "calls.csv"
        write_export(export, args.n, texts, now)
        data = export.read_bytes()
        print(
            f"{args.n} calls, {len(data) / 1024 / 1024:.1f} MiB GBK CSV, "
            f"{len(texts)} distinct texts from {source}"
        )

        def runtime(name: str) -> Any:
            raw = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
            db_url = f"sqlite:///{tmp}/{name}.db"
            if args.postgresql:
                db_url = scratch_database(args.postgresql, name)
            raw["database"] = {"url": db_url}
            raw["app"] = {**raw["app"], "instance_dir": str(tmp / name), "secret_key": "b"}
            if args.batch:
                calls = {**raw["intake"]["calls"], "batch_size": args.batch}
                raw["intake"] = {**raw["intake"], "calls": calls}
            if args.model_dir:
                raw["classifier"] = {
                    **raw["classifier"],
                    "model_dir": str(args.model_dir.resolve()),
                }
            settings = settings_from_dict(raw, base_dir=ROOT, source="bench")
            rt = Runtime.build(settings)
            _initialise(rt, new_password=lambda user: None)
            return rt

        batch = 0
        rt = runtime("imp")
        batch = rt.settings.intake.calls.batch_size
        print(f"database: {rt.engine.url.get_backend_name()}; batch {batch} rows; {load()}")
        router = rt.intake_policy().router
        print(f"routing: {type(router).__name__} {getattr(router, 'version', '')}")

        if not args.no_floor:
            floor_rt = runtime("floor")
            n, floor_wall, floor_cpu = floor_run(floor_rt, data, export.name, batch)
            floor_rt.engine.dispose()
            print(
                f"floor  (bulk SQL INSERT into cases, {n} rows): {n / floor_wall:8.0f} rows/s "
                f"wall, {floor_cpu / n * 1000:.3f} ms CPU a row  ({load()})"
            )

        profiler = None
        if args.profile:
            import cProfile

            # CPU time, not wall: on a shared machine waiting for a core is not the import's.
            profiler = cProfile.Profile(time.process_time)
        if args.no_helper:
            call_import_run.PIPELINE_MIN_BYTES = sys.maxsize
        server = server_cpu(rt)
        start, cpu, helper_cpu = time.perf_counter(), time.process_time(), children_cpu()
        if profiler:
            profiler.enable()
        # What `minsheng intake calls` does: the import, then (timed apart) its enrichment.
        report = run_import(rt, data, export.name, actor="bench", enrich=False)
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        helper_cpu = children_cpu() - helper_cpu
        rows = report.counts["rows"]
        rate = rows / wall
        verdict = "ok" if rate >= TARGET else "BELOW"
        helper = "off" if len(data) < call_import_run.PIPELINE_MIN_BYTES else "on"
        print(
            f"import (read, parse, classify, urgency, register, commit; helper process "
            f"{helper}): {rate:8.0f} rows/s wall, {(cpu + helper_cpu) / rows * 1000:.3f} ms "
            f"CPU a row (this process {cpu / rows * 1000:.3f}, helper "
            f"{helper_cpu / rows * 1000:.3f})  [{verdict}: the issue asks for >= "
            f"{TARGET:.0f}/s]  ({load()})"
        )
        server_after = server_cpu(rt) if server is not None else None
        if server is not None and server_after is not None:
            # Backends that ended during the import are not counted (the pool keeps its own).
            print(
                f"  the PostgreSQL server's backends for this database: "
                f"{(server_after - server) / rows * 1000:.3f} ms CPU a row (on the same cores)"
            )
        cpu += helper_cpu
        if not args.no_floor:
            print(
                f"  ratio to the bulk SQL floor: {floor_wall / wall:.3f} of its rate "
                f"(wall), {floor_cpu / cpu:.3f} (CPU): the import takes "
                f"{wall / floor_wall:.1f}x the floor's time"
            )
        if args.no_enrich:
            print(f"enrichment after the import: skipped (--no-enrich); counts {report.counts}")
            return
        enrich_start, enrich_cpu = time.perf_counter(), time.process_time()
        enriched = enrich_new_cases(rt)
        enrich_wall = time.perf_counter() - enrich_start
        enrich_cpu = time.process_time() - enrich_cpu
        print(
            f"enrichment after the import (suggestions, duplicate and search rows): "
            f"{enriched} cases, {enrich_wall:.1f} s wall "
            f"({enriched / max(enrich_wall, 1e-9):.0f} cases/s), "
            f"{enrich_cpu / max(enriched, 1) * 1000:.2f} ms CPU a case  ({load()})"
        )
        print(
            f"import + enrichment (the whole command): {rows / (wall + enrich_wall):8.0f} "
            f"rows/s wall, {(cpu + enrich_cpu) / rows * 1000:.3f} ms CPU a row"
        )
        print(f"counts: {json.dumps(report.counts)}")
        rt.engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.postgresql:
            drop_scratch_databases(args.postgresql)


_SCRATCH = f"minsheng_bench_calls_{os.getpid()}"
_MADE: list[str] = []


def scratch_database(server_url: str, name: str) -> str:
    """A new, empty database on the server of ``server_url``; its URL."""
    url = make_url(server_url)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    database = f"{_SCRATCH}_{name}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
    engine.dispose()
    _MADE.append(database)
    return url.set(database=database).render_as_string(hide_password=False)


def drop_scratch_databases(server_url: str) -> None:
    engine = create_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for database in _MADE:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    engine.dispose()


if __name__ == "__main__":
    main()
