"""PostgreSQL races of the tallies' maintenance (red-team, issue 10): `minsheng tallies
--recount` waits for a compaction (the tick's fold) under way and for another recount
instead of keeping their new rows beside its own (every count doubled); the check
(`minsheng tallies`) reads the cases and the tallies in one snapshot, so a case registered
meanwhile is no false alarm."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import DB_KIND
from triage import tallies
from triage.models import Case
from triage.tallies import DIMENSIONS
from web.demo_volume import add_volume

pg_only = pytest.mark.skipif(DB_KIND != "postgresql", reason="PostgreSQL race")


def _grouped(conn: Any) -> Counter[tuple[Any, ...]]:
    cols = [getattr(Case, c) for c in DIMENSIONS]
    rows = conn.execute(select(*cols, func.count()).group_by(*cols))
    return Counter({tuple(r[:-1]): int(r[-1]) for r in rows})


def _tallied(conn: Any) -> Counter[tuple[Any, ...]]:
    return Counter({tuple(r[:-1]): int(r[-1]) for r in tallies.totals(conn, [], DIMENSIONS)})


@pg_only
def test_recount_during_a_compaction_keeps_the_counts_right(runtime: Any) -> None:
    with runtime.engine.begin() as conn:
        add_volume(conn, 60, months=1, seed=3, label_map=runtime.settings.label_map)
    errors: list[BaseException] = []
    compacting = runtime.engine.connect()
    tx = compacting.begin()
    assert tallies.compact(compacting)  # the tick's fold, not yet committed

    def admin_recount() -> None:
        try:
            with runtime.engine.begin() as conn:
                tallies.recount(conn)  # `minsheng tallies --recount`
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    t = threading.Thread(target=admin_recount)
    t.start()
    time.sleep(1.0)  # the recount waits on the fold's rows
    tx.commit()
    compacting.close()
    t.join(timeout=30)
    assert not t.is_alive() and errors == []
    with runtime.engine.connect() as conn:
        grouped, tallied = _grouped(conn), _tallied(conn)
    assert sum(grouped.values()) == 60
    assert tallied == grouped, f"tallied {sum(tallied.values())} cases for {sum(grouped.values())}"


@pg_only
def test_two_recounts_at_once_keep_the_counts_right(runtime: Any) -> None:
    """Two administrators (or a script retried) run `minsheng tallies --recount` at once:
    SHARE locks on `cases` do not exclude each other, so the second's DELETE waits on the
    first's rows, skips them, keeps the first's new rows and adds its own."""
    with runtime.engine.begin() as conn:
        add_volume(conn, 40, months=1, seed=4, label_map=runtime.settings.label_map)
    errors: list[BaseException] = []
    first = runtime.engine.connect()
    tx = first.begin()
    tallies.recount(first)

    def second() -> None:
        try:
            with runtime.engine.begin() as conn:
                tallies.recount(conn)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    t = threading.Thread(target=second)
    t.start()
    time.sleep(1.0)
    tx.commit()
    first.close()
    t.join(timeout=30)
    assert not t.is_alive() and errors == []
    with runtime.engine.connect() as conn:
        grouped, tallied = _grouped(conn), _tallied(conn)
    assert tallied == grouped, f"tallied {sum(tallied.values())} cases for {sum(grouped.values())}"


@pg_only
def test_the_check_reads_cases_and_tallies_in_one_snapshot(
    runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with runtime.engine.begin() as conn:
        add_volume(conn, 20, months=1, seed=6, label_map=runtime.settings.label_map)
    real = tallies.totals

    def totals_after_an_intake(*args: Any, **kwargs: Any) -> Any:
        with runtime.engine.begin() as other:  # a web form submitted meanwhile
            add_volume(other, 1, months=1, seed=7, label_map=runtime.settings.label_map)
        return real(*args, **kwargs)

    monkeypatch.setattr(tallies, "totals", totals_after_an_intake)
    with runtime.sessions() as s:
        wrong = tallies.differences(s)
    monkeypatch.setattr(tallies, "totals", real)
    with runtime.sessions() as s:
        assert tallies.differences(s) == {}  # the tallies were right all along
    assert wrong == {}, f"reported {len(wrong)} wrong combinations: {list(wrong.items())[:2]}"


def test_the_check_finds_a_wrong_tally(runtime: Any) -> None:
    """The check still reports a combination whose tally is off (both databases)."""
    with runtime.engine.begin() as conn:
        add_volume(conn, 10, months=1, seed=8, label_map=runtime.settings.label_map)
        conn.execute(
            tallies.CaseTally.__table__.insert().values(
                status="received",
                department_id=None,
                channel="web",
                kind="complaint",
                urgent=False,
                risk="",
                n=5,
            )
        )
    with runtime.sessions() as s:
        wrong = tallies.differences(s)
    key = ("received", None, "web", "complaint", False, "")
    assert key in wrong and wrong[key][0] - wrong[key][1] == 5


@pg_only
def test_recount_while_a_writer_adds_cases_loses_and_doubles_none(runtime: Any) -> None:
    """A writer's cases not yet committed when the recount starts: the recount waits for
    it (SHARE lock on cases), so its deltas are committed before the recount's DELETE and
    replaced by the count (neither lost nor counted twice); the triggers count the cases
    written after it on top."""
    with runtime.engine.begin() as conn:
        add_volume(conn, 30, months=1, seed=9, label_map=runtime.settings.label_map)
    writer = runtime.engine.connect()
    tx = writer.begin()
    add_volume(writer, 5, months=1, seed=10, label_map=runtime.settings.label_map)
    errors: list[BaseException] = []

    def admin_recount() -> None:
        try:
            with runtime.engine.begin() as conn:
                tallies.recount(conn)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    t = threading.Thread(target=admin_recount)
    t.start()
    time.sleep(1.0)  # the recount waits for the writer
    tx.commit()
    writer.close()
    t.join(timeout=30)
    with runtime.engine.begin() as conn:
        add_volume(conn, 4, months=1, seed=11, label_map=runtime.settings.label_map)
    assert not t.is_alive() and errors == []
    with runtime.engine.connect() as conn:
        grouped, tallied = _grouped(conn), _tallied(conn)
    assert sum(grouped.values()) == 39
    assert tallied == grouped
