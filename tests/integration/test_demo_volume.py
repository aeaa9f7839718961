"""`minsheng demo --volume`: synthetic cases in bulk that the board treats like real ones."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select

from tests.integration.helpers import submit_complaint
from triage.models import OPEN_STATUSES, Case, CaseEvent, DuplicateSignature, Status
from triage.search import search_cases
from triage.search_index import SearchGram
from web.cli import main
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
