"""Benchmark: what enriching a new case costs with N open cases in its duplicate window.

Enrichment (`triage.enrichment.enrich_pending`, run by `web.cli_intake.enrich_all` after the
mail intake and the call import) gives each new case its similar-case suggestions, its
duplicate-index rows and its search rows. The rule: no request may cost more as the number
of cases grows. The worst case is every case recent and open (a call import of 100,000 rows
puts them all in the 30-day window), so the cases here are:

* N cases over the last 30 days (`web.demo_volume.add_volume` with one month), their texts
  the shared teddy2020c messages (some 11,000 distinct, else the demo's few hundred), about
  two thirds of them open, with their duplicate-index and search rows;
* then M new cases (default 300), other messages of the same data, registered as the mail
  intake registers them (`register_batch(..., defer_enrichment=True)`) and enriched, timed:
  CPU ms a case (time.process_time) and wall, with the in-process profile cache emptied
  first (a fresh process, or a window larger than the cache);

twice: first with no stored similarity profiles (the first enrichment after the upgrade to
0022: the candidates' profiles are computed from their texts, then stored), then, after a
backfill of the open cases' profiles, with new cases again (the steady state: every
candidate's profile stored). Beside them a floor: one statement a case reading 50 candidate
rows by id (the columns enrichment reads), the least a per-case read of candidates costs.

    .venv/bin/python bench/bench_enrichment.py [--n 10000] [--m 300] [--postgresql URL]
"""

from __future__ import annotations

import argparse
import os
import random
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
sys.path.insert(0, str(ROOT / "bench"))

from bench_call_import import (  # noqa: E402
    drop_scratch_databases,
    load,
    load_texts,
    scratch_database,
)
from sqlalchemy import bindparam, func, select, text  # noqa: E402


def fill(rt: Any, n: int, texts: list[str], now: datetime) -> int:
    """N cases over the 30 days before ``now`` with the given texts."""
    from web import demo_volume

    real = demo_volume._templates

    def templates(label_map: dict[str, str]) -> tuple[list[Any], list[str]]:
        own, replies = real(label_map)
        departments = [t.department for t in own if t.department]
        rng = random.Random(5)
        return [
            demo_volume._Template("", body, "complaint", rng.choice(departments), "")
            for body in texts
        ], replies

    demo_volume._templates = templates  # type: ignore[assignment]
    try:
        with rt.engine.begin() as conn:
            return demo_volume.add_volume(
                conn,
                n,
                months=1,
                now=now - timedelta(hours=1),
                prefix=rt.settings.app.tracking_prefix,
                label_map=rt.settings.label_map,
                seed=n,
            )
    finally:
        demo_volume._templates = real  # type: ignore[assignment]


def register_new(rt: Any, texts: list[str], now: datetime, tag: str) -> list[int]:
    """New cases registered as the mail intake does (enrichment deferred); their ids."""
    from intake.submission import Channel, Submission
    from triage.cases import register_batch

    policy = rt.intake_policy()
    items = [
        (
            Submission(
                channel=Channel.EMAIL,
                external_id=f"bench-{tag}-{k}",
                received_at=now + timedelta(seconds=k),
                body=body,
            ),
            None,
        )
        for k, body in enumerate(texts)
    ]
    with rt.sessions() as session, session.begin():
        session.execute(text("UPDATE counters SET value = value"))  # the batch must write first
        made = register_batch(session, items, policy, now, defer_enrichment=True)
        session.flush()
        return [r.case.id for r in made]


def enrich(rt: Any) -> tuple[int, float, float]:
    """`enrich_all` timed from an empty profile cache: (cases, wall s, CPU s)."""
    from triage import similarity
    from web.cli_intake import enrich_all

    similarity._profile.cache_clear()
    policy = rt.intake_policy()
    start, cpu = time.perf_counter(), time.process_time()
    done = enrich_all(rt, policy)
    return done, time.perf_counter() - start, time.process_time() - cpu


def floor(rt: Any, cases: int, per_case: int = 50) -> tuple[float, float]:
    """One statement a case reading ``per_case`` open cases by id: (wall ms, CPU ms) a case."""
    from triage.models import OPEN_STATUSES, Case

    with rt.sessions() as session:
        ids = list(session.scalars(select(Case.id).where(Case.status.in_(OPEN_STATUSES))))
        columns = [Case.id, Case.tracking_number, Case.subject, Case.body, Case.received_at]
        joined = None
        try:
            from triage.models import SimilarityProfile

            joined = SimilarityProfile
        except ImportError:
            pass
        query = select(*columns).where(Case.id.in_(bindparam("ids", expanding=True)))
        if joined is not None:
            query = (
                select(*columns, joined.version, joined.data)
                .outerjoin(joined, joined.case_id == Case.id)
                .where(Case.id.in_(bindparam("ids", expanding=True)))
            )
        rng = random.Random(3)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(cases):
            session.execute(query, {"ids": rng.sample(ids, min(per_case, len(ids)))}).all()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall / cases * 1000, cpu / cases * 1000


def report(label: str, done: int, wall: float, cpu: float) -> None:
    print(
        f"  {label}: {done} cases, {cpu / max(done, 1) * 1000:6.2f} ms CPU a case, "
        f"{wall / max(done, 1) * 1000:6.2f} ms wall  ({load()})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="cases in the window")
    parser.add_argument("--m", type=int, default=300, help="new cases enriched, per phase")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        help="run on PostgreSQL: a server URL on which a scratch database is created and "
        "dropped; default SQLite",
    )
    parser.add_argument(
        "--profile", type=Path, help="write a CPU cProfile of a steady-state enrichment here"
    )
    args = parser.parse_args()

    texts, source = load_texts(args.data_dir)
    rng = random.Random(1)
    rng.shuffle(texts)
    # New cases: texts the fill does not start with, and some it repeats (a second report).
    fresh = texts[-2 * args.m :]
    base = texts[: -2 * args.m] or texts
    tmp = Path(tempfile.mkdtemp(prefix="minsheng-bench-enrich-"))
    try:
        from web.cli import _initialise
        from web.runtime import Runtime
        from web.settings import settings_from_dict

        raw = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
        db_url = f"sqlite:///{tmp}/enrich.db"
        if args.postgresql:
            db_url = scratch_database(args.postgresql, "enrich")
        raw["database"] = {"url": db_url}
        raw["app"] = {**raw["app"], "instance_dir": str(tmp / "instance"), "secret_key": "b"}
        settings = settings_from_dict(raw, base_dir=ROOT, source="bench")
        rt = Runtime.build(settings)
        _initialise(rt, new_password=lambda user: None)
        now = datetime.now(UTC).replace(microsecond=0)

        start, cpu = time.perf_counter(), time.process_time()
        added = fill(rt, args.n, base, now)
        from triage.models import OPEN_STATUSES, Case

        with rt.sessions() as session:
            open_ = session.scalar(
                select(func.count()).select_from(Case).where(Case.status.in_(OPEN_STATUSES))
            )
        print(
            f"{rt.engine.url.get_backend_name()}: {added} cases over 30 days ({open_} open), "
            f"{len(texts)} distinct texts from {source}; filled in "
            f"{time.perf_counter() - start:.0f} s ({time.process_time() - cpu:.0f} s CPU)",
            flush=True,
        )

        def mixed(part: list[str], seed: int) -> list[str]:
            pick = random.Random(seed)
            return [t if pick.random() < 0.7 else pick.choice(base) for t in part]

        register_new(rt, mixed(fresh[: args.m], 7), now, "a")
        done, wall, cpu_s = enrich(rt)
        report("no stored profiles (first run after the upgrade)", done, wall, cpu_s)

        try:
            from triage.similarity_store import backfill
        except ImportError:
            backfill = None
        if backfill is None:
            print("  (no triage.similarity_store.backfill: steady state not measured)")
        else:
            start, cpu = time.perf_counter(), time.process_time()
            with rt.sessions() as session, session.begin():
                stored = backfill(session)
            print(
                f"  backfill: {stored} profiles in {time.perf_counter() - start:.1f} s "
                f"({time.process_time() - cpu:.1f} s CPU)",
                flush=True,
            )
            register_new(rt, mixed(fresh[args.m :], 8), now + timedelta(hours=1), "b")
            done, wall, cpu_s = enrich(rt)
            report("every candidate's profile stored (steady state)", done, wall, cpu_s)
            if args.profile:
                import cProfile

                # Once more, profiled apart (the profiler's own cost would distort the figure).
                register_new(rt, mixed(base[-args.m :], 9), now + timedelta(hours=2), "c")
                profiler = cProfile.Profile(time.process_time)
                profiler.enable()
                enrich(rt)
                profiler.disable()
                profiler.dump_stats(str(args.profile))
        fwall, fcpu = floor(rt, args.m)
        print(
            f"  floor (one statement a case reading 50 open cases by id): {fcpu:.2f} ms CPU, "
            f"{fwall:.2f} ms wall a case"
        )
        rt.engine.dispose()
    finally:
        if args.postgresql:
            drop_scratch_databases(args.postgresql)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("MINSHENG_SECRET_KEY", "bench")
    main()
