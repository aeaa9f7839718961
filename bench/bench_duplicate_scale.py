"""Benchmark: what a public-form submission costs with 10,000 and with 1,000,000 open cases.

For each database and size, builds a fresh database with the real schema (Alembic), fills it
in bulk with synthetic open complaints (place names, problems and letter templates generated
here; nothing is read from the shared data) and their duplicate-index rows, chosen as
migration 0003 chooses them, then measures:

- ``lookup``: the duplicate-index lookup alone (`triage.duplicate_index.look_up`), and the
  index rows it read;
- ``register``: the whole `triage.cases.register` of a new submission with the real
  similarity scoring, committed, as the public form does it;
- ``planted``: reworded copies of earlier complaints spread over the database, submitted
  again: how many list their original as a possible duplicate;

beside floors measured in the same run: a bare primary-key read of one case, the bulk insert
rate of cases and of index rows, and what the old scan read (every open text of the window,
loaded once, not scored).

    .venv/bin/python bench/bench_duplicate_scale.py [--sizes 10000 1000000]
        [--db sqlite postgresql] [--registrations 40]

SQLite uses a file in a temporary folder; PostgreSQL (MINSHENG_TEST_PG_URL, default
postgres@127.0.0.1:5432/test) a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select, text  # noqa: E402

from intake.submission import Channel, Contact, Submission  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from triage import duplicate_index  # noqa: E402
from triage.cases import register  # noqa: E402
from triage.models import OPEN_STATUSES, Case, DuplicateSignature  # noqa: E402
from web.cli import _initialise  # noqa: E402
from web.runtime import Runtime  # noqa: E402

PG_URL = os.environ.get("MINSHENG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
SPAN = timedelta(days=29)  # every filler case is inside the 30-day window

# -- synthetic complaints ---------------------------------------------------------------------


def words(line: str) -> list[str]:
    return line.split()


DISTRICTS = ["东城", "西城", "南湖", "北港", "高新", "滨江", "临河", "城关", "开发", "新港"]
NAMES = words(
    "莲花 金桥 望江 梧桐 青石 柳岸 云杉 松涛 桂花 枫林 翠竹 锦绣 和平 幸福 "
    "光明 东湖 西苑 南山 北辰 紫荆 银杏 海棠 玉兰 丹桂 龙湾 凤凰 白鹭 清溪 "
    "长虹 新华 朝阳 春晖 明珠 天鹅 碧水 绿洲 红旗 建设 人民 解放"
)
KINDS = words("小区 路 街 花园 广场 公园 菜市场 小学 新村 大道 社区 家园")
OBJECTS = words(
    "路灯 电梯 水管 井盖 垃圾桶 围墙 消防通道 下水道 红绿灯 公交站台 健身器材 "
    "排水沟 门禁 楼道灯 停车场 人行道 绿化带 自来水 燃气管道 化粪池 广告牌 "
    "施工工地 烧烤摊 广场舞音响 共享单车 充电桩 护栏 桥梁 窨井 路面"
)
FAULTS = [
    "坏了",
    "不亮",
    "漏水",
    "堵塞",
    "破损",
    "被占用",
    "噪音扰民",
    "无人管理",
    "存在安全隐患",
    "长期积水",
    "散发臭味",
    "晚上施工",
    "乱收费",
    "脏乱差",
    "影响通行",
]
TEMPLATES = [
    "{subject}\n{place}的{obj}{fault}，已经{days}天了，{detail}请有关部门尽快处理。",
    "{subject}\n尊敬的领导您好！我是{place}{building}栋的业主，{obj}{fault}已有{days}天，"
    "{detail}多次找物业都没有结果，恳请帮忙解决。此致敬礼",
    "{subject}\n市长您好：反映一个问题，{place}附近{obj}{fault}，{detail}"
    "已经持续{days}天，希望政府重视。",
    "{subject}\n{place}{building}号楼旁边的{obj}{fault}，{detail}居民意见很大，盼回复。",
    "{subject}\n你好，我家住在{place}，最近{days}天{obj}一直{fault}，{detail}谢谢！",
    "{subject}\n关于{place}{obj}{fault}的问题：{detail}从{days}天前开始，至今无人处理。",
]
DETAILS = [
    "老人小孩出行很不方便，",
    "晚上一片漆黑，",
    "已经有人摔倒受伤，",
    "打了12345也没有人来，",
    "周边商户都受到影响，",
    "下雨天更加严重，",
    "严重影响休息，",
    "",
]
ENGLISH = [
    "{subject}\nDear Sir, the {obj_en} near {place_en} has been {fault_en} for {days} days. "
    "Please send someone to fix it.",
    "{subject}\nHello, I live at {place_en}, building {building}. The {obj_en} is {fault_en} "
    "and nobody has come for {days} days.",
]
OBJECTS_EN = ["street light", "lift", "water pipe", "manhole cover", "fire exit", "bus stop"]
FAULTS_EN = ["broken", "leaking", "blocked", "locked", "damaged", "flooded"]


@dataclass(frozen=True)
class Complaint:
    """The parameters of one synthetic complaint; ``text`` writes it out."""

    district: int
    name: int
    kind: int
    obj: int
    fault: int
    template: int
    detail: int
    days: int
    building: int
    english: bool

    @property
    def place(self) -> str:
        return f"{DISTRICTS[self.district]}区{NAMES[self.name]}{KINDS[self.kind]}"

    def text(self) -> tuple[str, str]:
        obj, fault = OBJECTS[self.obj], FAULTS[self.fault]
        if self.english:
            place_en = f"{NAMES[self.name]} {['Road', 'Garden', 'Square'][self.kind % 3]}"
            obj_en = OBJECTS_EN[self.obj % len(OBJECTS_EN)]
            fault_en = FAULTS_EN[self.fault % len(FAULTS_EN)]
            subject = f"{obj_en} {fault_en} at {place_en}"
            full = ENGLISH[self.template % len(ENGLISH)].format(
                subject=subject,
                obj_en=obj_en,
                place_en=place_en,
                fault_en=fault_en,
                days=self.days,
                building=self.building,
            )
        else:
            subject = f"{self.place}{obj}{fault}"
            full = TEMPLATES[self.template].format(
                subject=subject,
                place=self.place,
                obj=obj,
                fault=fault,
                days=self.days,
                building=self.building,
                detail=DETAILS[self.detail],
            )
        subject, body = full.split("\n", 1)
        return subject, body

    def reworded(self) -> Complaint:
        """The same complaint written again a few days later by someone else."""
        return Complaint(
            self.district,
            self.name,
            self.kind,
            self.obj,
            self.fault,
            self.template,
            (self.detail + 1) % len(DETAILS),
            self.days + 3,
            self.building,
            self.english,
        )


def complaints(n: int, seed: int) -> Iterator[Complaint]:
    rng = random.Random(seed)
    for _ in range(n):
        yield Complaint(
            rng.randrange(len(DISTRICTS)),
            rng.randrange(len(NAMES)),
            rng.randrange(len(KINDS)),
            rng.randrange(len(OBJECTS)),
            rng.randrange(len(FAULTS)),
            rng.randrange(len(TEMPLATES)),
            rng.randrange(len(DETAILS)),
            rng.randint(1, 30),
            rng.randint(1, 40),
            rng.random() < 0.05,
        )


# -- filling the database in bulk -----------------------------------------------------------------


def _case_columns() -> list[str]:
    return [c.name for c in Case.__table__.columns if c.name != "id"]


def _case_row(i: int, subject: str, body: str, received: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column in Case.__table__.columns:
        if column.name == "id":
            continue
        default = column.default
        if default is None or column.nullable:
            row[column.name] = None
        elif default.is_callable:
            row[column.name] = (
                "[]" if column.name in ("alternatives", "urgent_reasons", "similar") else NOW
            )
        else:
            row[column.name] = default.arg
    row.update(
        tracking_number=f"MS-2026-F{i:08d}",
        query_code_hash="bench",
        channel="web",
        external_id=f"bench-{i}",
        status=("triage", "assigned", "in_progress")[i % 3],
        subject=subject,
        body=body,
        masked_text=f"{subject}\n{body}",
        received_at=received,
        created_at=received,
    )
    return row


@dataclass
class Fill:
    cases_per_s: float = 0.0
    index_rows_per_s: float = 0.0
    signatures_s: float = 0.0
    seconds: float = 0.0
    planted: list[tuple[int, Complaint]] = field(default_factory=list)


def fill(rt: Runtime, n: int, planted: int) -> Fill:
    """n open cases received over the last 29 days, and their index rows."""
    started = time.perf_counter()
    result = Fill()
    params = list(complaints(n, seed=n))
    texts = [c.text() for c in params]
    step = SPAN / n
    received = [NOW - SPAN + step * i for i in range(n)]
    columns = _case_columns()
    quoted = ", ".join(f'"{c}"' for c in columns)  # "similar" is a keyword in PostgreSQL
    dialect = rt.engine.dialect.name

    t = time.perf_counter()
    raw = rt.engine.raw_connection()
    try:
        cur = raw.cursor()
        if dialect == "postgresql":
            with cur.copy(f"COPY cases ({quoted}) FROM STDIN") as copy:
                for i, (subject, body) in enumerate(texts):
                    row = _case_row(i, subject, body, received[i])
                    row["received_at"] = row["created_at"] = received[i].replace(tzinfo=None)
                    copy.write_row([row[c] for c in columns])
        else:
            sql = f"INSERT INTO cases ({quoted}) VALUES ({', '.join('?' for _ in columns)})"

            def rows() -> Iterator[list[Any]]:
                for i, (subject, body) in enumerate(texts):
                    row = _case_row(i, subject, body, received[i])
                    stamp = received[i].strftime("%Y-%m-%d %H:%M:%S.%f")
                    row["received_at"] = row["created_at"] = stamp
                    yield [row[c] for c in columns]

            cur.executemany(sql, rows())
        raw.commit()
        result.cases_per_s = n / (time.perf_counter() - t)
        print(f"  cases inserted: {result.cases_per_s:,.0f}/s", flush=True)

        cur.execute("SELECT min(id) FROM cases WHERE external_id = 'bench-0'")
        first_id = cur.fetchone()[0]

        t = time.perf_counter()
        builder = duplicate_index.SignatureBuilder()
        hashes, minutes, ids = array("q"), array("q"), array("q")
        for i, (subject, body) in enumerate(texts):
            minute = duplicate_index.minute_of(received[i])
            signature = builder.add(minute, f"{subject}\n{body}")
            hashes.extend(signature)
            minutes.extend([minute] * len(signature))
            ids.extend([first_id + i] * len(signature))
        result.signatures_s = time.perf_counter() - t
        print(f"  signatures chosen in {result.signatures_s:.0f} s", flush=True)
        del builder

        # In primary-key order, with the case_id index built afterwards: the way a bulk
        # load is fast on either database. Registrations then keep both up to date.
        h = np.frombuffer(hashes, dtype=np.int64)
        m = np.frombuffer(minutes, dtype=np.int64)
        c = np.frombuffer(ids, dtype=np.int64)
        del hashes, minutes, ids
        order = np.lexsort((c, m, h))
        h, m, c = h[order], m[order], c[order]
        t = time.perf_counter()
        cur.execute("DROP INDEX ix_duplicate_signatures_case_id")
        chunk = 200_000
        if dialect == "postgresql":
            with cur.copy(
                "COPY duplicate_signatures (hash, received_minute, case_id) FROM STDIN"
            ) as copy:
                for start in range(0, len(h), chunk):
                    for row in zip(
                        h[start : start + chunk].tolist(),
                        m[start : start + chunk].tolist(),
                        c[start : start + chunk].tolist(),
                        strict=True,
                    ):
                        copy.write_row(row)
        else:
            for start in range(0, len(h), chunk):
                cur.executemany(
                    "INSERT INTO duplicate_signatures (hash, received_minute, case_id) "
                    "VALUES (?, ?, ?)",
                    zip(
                        h[start : start + chunk].tolist(),
                        m[start : start + chunk].tolist(),
                        c[start : start + chunk].tolist(),
                        strict=True,
                    ),
                )
        cur.execute(
            "CREATE INDEX ix_duplicate_signatures_case_id ON duplicate_signatures (case_id)"
        )
        raw.commit()
        result.index_rows_per_s = len(h) / (time.perf_counter() - t)
        print(f"  {len(h):,} index rows inserted: {result.index_rows_per_s:,.0f}/s", flush=True)
        if dialect == "postgresql":
            driver = raw.driver_connection
            driver.autocommit = True  # VACUUM runs outside a transaction
            driver.execute("VACUUM ANALYZE cases")
            driver.execute("VACUUM ANALYZE duplicate_signatures")
            driver.autocommit = False
        else:
            cur.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()

    rng = random.Random(7)
    for k in range(planted):
        i = int(n * (k + rng.random()) / planted)
        result.planted.append((i, params[i]))
    result.seconds = time.perf_counter() - started
    return result


# -- measuring ------------------------------------------------------------------------------------


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    value = action()
    return (time.perf_counter() - t) * 1000, value


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Figures:
    db: str
    open_cases: int
    fill: Fill
    pk_read_ms: float = 0.0
    lookup_ms: list[float] = field(default_factory=list)
    rows_read: list[int] = field(default_factory=list)
    register_ms: list[float] = field(default_factory=list)
    found: int = 0
    scored: list[int] = field(default_factory=list)
    scan_load_ms: float = 0.0


def measure(rt: Runtime, db: str, n: int, registrations: int) -> Figures:
    filled = fill(rt, n, planted=registrations // 2)
    figures = Figures(db, n, filled)
    policy = rt.intake_policy()
    since = NOW - timedelta(days=policy.duplicate_window_days)
    score = policy.find_similar
    assert score is not None

    def counted(text_: str, candidates: Any) -> Any:
        figures.scored.append(len(candidates))
        return score(text_, candidates)

    policy = replace(policy, find_similar=counted)

    rng = random.Random(11)
    with rt.sessions() as s:
        first = s.scalar(select(Case.id).where(Case.external_id == "bench-0"))
        ids = [first + rng.randrange(n) for _ in range(2000)]
        pk = text("SELECT subject, body FROM cases WHERE id = :id")
        for case_id in ids[:200]:  # warm the cache the same way for both
            s.execute(pk, {"id": case_id}).one()
        reads = [timed(lambda i=i: s.execute(pk, {"id": i}).one())[0] for i in ids[200:]]
        figures.pk_read_ms = statistics.median(reads)

    fresh = list(complaints(registrations * 2, seed=n + 1))
    new_texts = [c.reworded().text() for _, c in filled.planted]
    new_texts += [c.text() for c in fresh[: registrations - len(new_texts)]]
    expected = {k: f"MS-2026-F{i:08d}" for k, (i, _) in enumerate(filled.planted)}

    with rt.sessions() as s:
        for warm in fresh[-5:]:
            duplicate_index.look_up(s, "\n".join(warm.text()), since)
        for subject, body in new_texts:
            ms, found = timed(
                lambda subject=subject, body=body: duplicate_index.look_up(
                    s, f"{subject}\n{body}", since
                )
            )
            figures.lookup_ms.append(ms)
            figures.rows_read.append(found.rows_read)

    for k, (subject, body) in enumerate(new_texts):
        submission = Submission(
            channel=Channel.WEB,
            external_id=f"new-{k}",
            received_at=NOW,
            subject=subject,
            body=body,
            contact=Contact("王小明", "13812345678", ""),
        )

        def submit(submission: Submission = submission) -> Case:
            with rt.sessions() as s, s.begin():
                return register(s, submission, policy, NOW).case

        ms, case = timed(submit)
        figures.register_ms.append(ms)
        if k in expected and expected[k] in [number for number, _ in case.similar]:
            figures.found += 1

    with rt.sessions() as s:
        figures.scan_load_ms, _ = timed(
            lambda: s.execute(
                select(Case.id, Case.tracking_number, Case.subject, Case.body).where(
                    Case.status.in_(OPEN_STATUSES), Case.received_at >= since
                )
            ).all()
        )
        assert s.scalar(select(DuplicateSignature.case_id).limit(1)) is not None
    return figures


# -- databases ------------------------------------------------------------------------------------


def run(db: str, n: int, registrations: int) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        schema = None
        if db == "postgresql":
            import psycopg

            schema = f"bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        else:
            url = f"sqlite:///{tmp}/bench.db"
        try:
            rt = Runtime.build(make_settings(Path(tmp), url))
            _initialise(rt, lambda user: None)
            try:
                return measure(rt, db, n, registrations)
            finally:
                rt.engine.dispose()
        finally:
            if schema:
                import psycopg

                with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")


def report(all_figures: list[Figures]) -> None:
    print()
    print("Figures (ms; p50 / p95 over the submissions) beside their floors from the same run")
    head = (
        f"{'db':<11}{'open cases':>11}  {'register':>15}  {'lookup':>13}  {'rows read':>10}"
        f"  {'scored':>6}  {'planted':>8}  | {'PK read':>8}  {'cases/s':>8}  {'rows/s':>9}"
        f"  {'old scan':>9}  {'fill':>6}"
    )
    print(head)
    print("-" * len(head))
    for f in all_figures:
        print(
            f"{f.db:<11}{f.open_cases:>11,}  "
            f"{statistics.median(f.register_ms):>7.1f} / {pct(f.register_ms, 95):>5.1f}  "
            f"{statistics.median(f.lookup_ms):>6.2f} / {pct(f.lookup_ms, 95):>4.1f}  "
            f"{statistics.median(f.rows_read):>5.0f}/{max(f.rows_read):>4}  "
            f"{statistics.median(f.scored):>6.0f}  {f.found:>3}/{len(f.fill.planted):<4}  | "
            f"{f.pk_read_ms:>8.3f}  {f.fill.cases_per_s:>8,.0f}  {f.fill.index_rows_per_s:>9,.0f}"
            f"  {f.scan_load_ms:>7,.0f}ms  {f.fill.seconds:>5.0f}s"
        )
    print()
    print(
        "register: the whole registration with real similarity scoring, committed; lookup: the\n"
        "duplicate-index lookup alone; rows read: index entries per lookup (median/max), bounded\n"
        f"by ({duplicate_index.QUERY_GRAMS} grams + {duplicate_index.BANDS} bands) x "
        f"{duplicate_index.ROWS_PER_GRAM + 1} rows; scored: candidates handed to the similarity\n"
        "scoring (median); planted: reworded earlier complaints that listed their original.\n"
        "Floors: PK read: one case by primary key; cases/s, rows/s: bulk insert of cases and of\n"
        "index rows (COPY / executemany); old scan: loading every open text of the window, which\n"
        "the previous registration did (and then scored) for every submission."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--registrations", type=int, default=40)
    args = parser.parse_args()
    results = []
    for db in args.db:
        for n in args.sizes:
            started = time.perf_counter()
            print(f"{db}: {n:,} open cases ...", flush=True)
            results.append(run(db, n, args.registrations))
            print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    report(results)


if __name__ == "__main__":
    main()
