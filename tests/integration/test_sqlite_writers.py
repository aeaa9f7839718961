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

import importlib
import itertools
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select

from intake.submission import Channel, Submission
from tests.conftest import DB_KIND, csrf_from
from triage.cases import register
from triage.enrichment import defer_enrichment, pending_count
from triage.models import Case, SavedView
from web.cli_intake import enrich_all

DB_MODULE = importlib.import_module("web.db")  # `web.db` itself is the request's session

pytestmark = pytest.mark.skipif(DB_KIND != "sqlite", reason="SQLite's one write lock")


@pytest.fixture
def quick_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers give up waiting for the lock after 0.5 s (before the app's first connection)."""
    monkeypatch.setattr(DB_MODULE, "BUSY_TIMEOUT_SECONDS", 0.5)


@pytest.fixture
def write_lock(db_url: str) -> Iterator[Any]:
    """Another process's write transaction (a raw connection): `hold()` takes the lock."""
    conn = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)

    class Lock:
        def hold(self) -> None:
            conn.execute("BEGIN IMMEDIATE")

        def release(self) -> None:
            if conn.in_transaction:
                conn.rollback()

    lock = Lock()
    yield lock
    lock.release()
    conn.close()


def _form(client: Any, subject: str) -> dict[str, str]:
    page = client.get("/complain").get_data(as_text=True)
    token = page.split('name="token" type="hidden" value="', 1)[1].split('"', 1)[0]
    return {
        "csrf_token": csrf_from(page),
        "token": token,
        "kind": "complaint",
        "subject": subject,
        "body": "小区门口的路灯坏了一个月，晚上很黑。",
        "place": "明德路12号",
    }


def _cases_with(runtime: Any, subject: str) -> int:
    with runtime.sessions() as s:
        return int(s.scalar(select(func.count()).where(Case.subject == subject)) or 0)


def test_a_form_sent_while_another_process_holds_the_lock_says_busy_and_saves_nothing(
    quick_busy_timeout: None, client: Any, runtime: Any, write_lock: Any
) -> None:
    data = _form(client, "路灯不亮（忙时提交）")
    write_lock.hold()
    answer = client.post("/complain", data=data, headers={"Accept-Language": "zh"})
    write_lock.release()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "10"
    page = answer.get_data(as_text=True)
    assert "系统繁忙" in page and "没有保存" in page
    assert _cases_with(runtime, "路灯不亮（忙时提交）") == 0
    # Sent again once the lock is free: one case.
    again = client.post("/complain", data=data)
    assert again.status_code == 302 and "/receipt/" in again.headers["Location"]
    assert _cases_with(runtime, "路灯不亮（忙时提交）") == 1


def test_the_busy_page_in_english(quick_busy_timeout: None, client: Any, write_lock: Any) -> None:
    data = _form(client, "Street light out")
    write_lock.hold()
    answer = client.post("/complain?lang=en", data=data)
    write_lock.release()
    assert answer.status_code == 503
    assert "was not saved" in answer.get_data(as_text=True)


def test_the_busy_timeout_leaves_time_before_gunicorns_worker_timeout() -> None:
    """gunicorn kills a worker after 30 s (its default, docs/production.md keeps it): a
    writer that waited as long was killed before it could answer."""
    assert 5 <= DB_MODULE.BUSY_TIMEOUT_SECONDS <= 20


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


def test_the_open311_api_says_busy_in_its_own_format(
    quick_busy_timeout: None, client: Any, write_lock: Any
) -> None:
    write_lock.hold()
    answer = client.get("/open311/v2/requests.json")
    write_lock.release()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "10"
    assert answer.is_json
    assert answer.get_json()[0]["code"] == 503


def test_a_signed_in_users_busy_page_shows_the_staff_header(
    quick_busy_timeout: None, login_as: Any, write_lock: Any
) -> None:
    """The error page's header reads the database (the user's open observations…) after the
    failed write: the session is rolled back first, or it was a 500."""
    client = login_as("supervisor")
    data = _form(client, "员工代提交（忙时）")
    write_lock.hold()
    answer = client.post("/complain", data=data)
    write_lock.release()
    assert answer.status_code == 503
    assert "/logout" in answer.get_data(as_text=True)


def test_a_change_first_written_at_the_requests_commit_says_busy_too(
    quick_busy_timeout: None, login_as: Any, runtime: Any, write_lock: Any
) -> None:
    """Saving a case view writes nothing until the request commits (after the view ran)."""
    client = login_as("supervisor")
    page = client.get("/board/cases").get_data(as_text=True)
    data = {"view-csrf_token": csrf_from(page), "view-name": "忙时保存", "view-query": ""}
    write_lock.hold()
    answer = client.post("/board/views", data=data)
    write_lock.release()
    assert answer.status_code == 503
    assert "/logout" in answer.get_data(as_text=True)
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).where(SavedView.name == "忙时保存")) == 0
