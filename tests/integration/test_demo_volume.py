"""`minsheng demo --volume`: synthetic cases in bulk that the board treats like real ones."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from tests.conftest import csrf_from
from tests.integration.helpers import submit_complaint
from triage.models import (
    OPEN_STATUSES,
    Case,
    CaseEvent,
    CaseReply,
    DuplicateSignature,
    ReturnVisit,
    Status,
)
from triage.search import search_cases
from triage.search_index import SearchGram, rebuild
from web import demo_volume
from web.cli import main
from web.demo import DEMO_PASSWORD
from web.demo_volume import add_volume


def test_volume_cases_have_stages_events_numbers_and_index_rows(
    runtime: Any, client: Any, login_as: Any
) -> None:
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        assert add_volume(conn, 250, months=6, now=now, seed=3) == 250
    with runtime.sessions() as s:
        cases = s.scalars(select(Case)).all()
        assert len(cases) == 250
        assert all(now - timedelta(days=181) <= c.received_at <= now for c in cases)
        statuses = Counter(c.status for c in cases)
        assert statuses[Status.CLOSED] > 90 and len(statuses) >= 6, statuses
        events = s.scalar(select(func.count()).select_from(CaseEvent))
        assert 5 <= events / 250 <= 9
        # Every status change is an event, and the last one says where the case is now.
        last = dict(
            s.execute(
                select(CaseEvent.case_id, CaseEvent.to_status).where(
                    CaseEvent.id.in_(select(func.max(CaseEvent.id)).group_by(CaseEvent.case_id))
                )
            ).all()
        )
        assert all(last[c.id] == c.status for c in cases)
        assert len({c.tracking_number for c in cases}) == 250
        open_ids = {c.id for c in cases if c.status in OPEN_STATUSES}
        signed = set(s.scalars(select(DuplicateSignature.case_id).distinct()))
        assert signed == open_ids
        indexed = s.scalar(select(func.count(func.distinct(SearchGram.case_id))))
        assert indexed == 250
        some = cases[123]
        assert search_cases(s, some.contact_phone, masked=False).case_ids == [some.id]
        assert search_cases(s, some.contact_phone, masked=True).case_ids == []
    # Real cases keep coming after them: the next number and id are free.
    number, _ = submit_complaint(client, "明德路路灯坏了三个星期了")
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 251
    page = login_as("supervisor").get(f"/board/cases/{number}")
    assert page.status_code == 200


def test_the_demo_command_takes_a_volume(config_file: Path, runtime: Any) -> None:
    result = CliRunner().invoke(
        main,
        ["demo", "--config", str(config_file), "--no-model", "--volume", "50", "--months", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "50 synthetic cases added over 2 months" in result.output
    with runtime.sessions() as s:
        synthetic = s.scalar(select(func.count()).where(Case.external_id.like("volume:%")))
        assert synthetic == 50


def test_volume_index_is_what_a_reindex_writes(runtime: Any, monkeypatch: Any) -> None:
    """The generator works the index rows out per template and writes them in bulk (keys
    dropped and made again on PostgreSQL): the rows are those `minsheng search reindex`
    writes, and the index's keys are back (a case's rows cannot be written twice)."""
    monkeypatch.setattr(demo_volume, "_BULK", 1)  # the bulk path at a test's size
    with runtime.engine.begin() as conn:
        add_volume(conn, 300, months=3, seed=5)
    rows = select(SearchGram.gram, SearchGram.case_id, SearchGram.fields)
    with runtime.engine.connect() as conn:
        written = set(conn.execute(rows).all())
    with runtime.engine.begin() as conn:
        rebuild(conn)
    with runtime.engine.connect() as conn:
        assert set(conn.execute(rows).all()) == written
        assert len({case_id for _, case_id, _ in written}) == 300
        gram, case_id, fields = next(iter(written))
        with pytest.raises(IntegrityError):
            conn.execute(
                insert(SearchGram.__table__).values(gram=gram, case_id=case_id, fields=fields)
            )


def test_volume_writes_nothing_after_now(runtime: Any) -> None:
    """Cases received in the last hours are not replied to or closed "tomorrow": no event,
    reply or visit comes after the time the cases were generated at."""
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        add_volume(conn, 400, months=1, now=now, seed=11)
    with runtime.sessions() as s:
        latest = [
            s.scalar(select(func.max(CaseEvent.at))),
            s.scalar(select(func.max(CaseReply.at))),
            s.scalar(select(func.max(ReturnVisit.at))),
            s.scalar(select(func.max(Case.created_at))),
            s.scalar(select(func.max(Case.updated_at))),
            s.scalar(select(func.max(Case.replied_at))),
            s.scalar(select(func.max(Case.closed_at))),
        ]
        assert all(at is None or at <= now for at in latest), (now, latest)
        # Cases of the last day are still at their early stages, some waiting in the queue.
        recent = s.scalars(select(Case.status).where(Case.received_at > now - timedelta(hours=6)))
        assert set(recent) <= {Status.RECEIVED, Status.TRIAGE, Status.ASSIGNED}


def test_demo_volume_leaves_signed_in_users_signed_in(
    config_file: Path, runtime: Any, client: Any
) -> None:
    """Adding a volume to a demo already loaded changes no password: whoever is signed in
    stays signed in (every run used to sign everybody out)."""
    args = ["demo", "--config", str(config_file), "--no-model"]
    assert CliRunner().invoke(main, args).exit_code == 0
    page = client.get("/login").get_data(as_text=True)
    signed_in = client.post(
        "/login",
        data={"csrf_token": csrf_from(page), "username": "supervisor", "password": DEMO_PASSWORD},
    )
    assert signed_in.status_code == 302
    assert client.get("/board/cases").status_code == 200
    result = CliRunner().invoke(main, [*args, "--volume", "20", "--months", "1"])
    assert result.exit_code == 0, result.output
    page = client.get("/board/cases")
    assert page.status_code == 200, page.headers.get("Location")


def test_volume_cases_read_like_registered_ones(runtime: Any, monkeypatch: Any) -> None:
    """What registration gives a case, the generator gives it too (the bulk path, keys
    dropped and made again): the masked text observers search, the caller keys the case page
    looks a caller's other cases up by, the urgent flag of its text with its event, and (PostgreSQL)
    the planner's statistics."""
    from triage.callers import alt_key, caller_key
    from triage.case_people import people_by_case
    from triage.privacy import masked_case_text
    from triage.urgency import detect_hazard

    monkeypatch.setattr(demo_volume, "_BULK", 1)
    with runtime.engine.begin() as conn:
        add_volume(conn, 300, months=3, seed=9, secret=runtime.secret)
    with runtime.sessions() as s:
        cases = s.scalars(select(Case)).all()
        sent = {c.id: [r.body for r in c.sent_replies] for c in cases}
        # A merged case's texts mask the citizens of its whole group, as the app's merge does.
        people = people_by_case(s, [c.id for c in cases])
        flagged = set(
            s.scalars(select(CaseEvent.case_id).where(CaseEvent.action == "flagged_urgent"))
        )
    for c in cases:
        assert c.masked_text == masked_case_text(
            c.subject,
            c.body,
            c.contact_name,
            c.contact_phone,
            c.contact_email,
            replies=sent[c.id],
            people=people[c.id],
        )
        assert c.caller_key == caller_key(c.contact_phone, c.contact_email, runtime.secret)
        assert c.caller_alt_key == alt_key(c.contact_phone, c.contact_email, runtime.secret)
        hazard = detect_hazard(c.subject, c.body)
        assert (c.urgent, c.urgent_reasons) == (hazard.urgent, list(hazard.reasons))
        assert (c.id in flagged) == c.urgent
    assert 0 < sum(c.urgent for c in cases) < 150
    assert sum(bool(replies) for replies in sent.values()) > 30  # replies in masked texts
    with runtime.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            analysed = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stats WHERE tablename = 'cases'"
                " AND schemaname = current_schema()"
            ).scalar()
            assert analysed
        # Nothing left for `minsheng init` to backfill.
        from triage.callers import backfill_caller_keys

        assert backfill_caller_keys(conn, runtime.secret) == 0
