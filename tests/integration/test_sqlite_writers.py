"""One SQLite database, several processes writing (gunicorn workers, the call import, the
supervision tick): nobody holds the write lock for long, and a request that cannot get it in
time says so instead of failing with a server error.

Found by running gunicorn with 4 workers, citizens' forms, dispatches and replies beside
`minsheng intake calls` (4,000 rows) and the tick: the import's enrichment held the lock for
5-28 s per transaction of 200 cases (load 10 on 2 cores), the web's writers waited the
whole 30 s busy timeout, got "database is locked" (a 500) as gunicorn's 30 s worker timeout
killed them: forms lost without a word.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event

from intake.submission import Channel, Submission
from tests.conftest import DB_KIND
from triage.cases import register
from triage.enrichment import defer_enrichment, pending_count
from web.cli_intake import enrich_all

pytestmark = pytest.mark.skipif(DB_KIND != "sqlite", reason="SQLite's one write lock")


def test_enrichment_commits_small_batches_so_other_writers_wait_little(runtime: Any) -> None:
    """Each transaction of `enrich_all` holds the write lock: a few cases at a time."""
    policy = runtime.intake_policy()
    now = datetime.now(UTC)
    places = ["明德路", "人民路", "建设大道", "解放街", "新华路"]
    with runtime.sessions() as s, s.begin():
        for i in range(45):
            text = f"{places[i % 5]}{i}号门口的路灯坏了，晚上很黑，请修理。"
            submission = Submission(
                channel=Channel.WEB, external_id=f"form:busy-{i}", received_at=now, body=text
            )
            defer_enrichment(s, register(s, submission, policy, now).case)
    with runtime.sessions() as s:
        waiting = [pending_count(s)]
    assert waiting[0] == 45

    def counted(_session: Any) -> None:
        with runtime.sessions() as other:
            waiting.append(pending_count(other))

    event.listen(runtime.sessions, "after_commit", counted)
    try:
        assert enrich_all(runtime, policy) == waiting[0]
    finally:
        event.remove(runtime.sessions, "after_commit", counted)
    done_per_transaction = [a - b for a, b in itertools.pairwise(waiting) if a != b]
    assert waiting[-1] == 0
    assert max(done_per_transaction) <= 25, done_per_transaction
