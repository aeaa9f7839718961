"""What the timeline says: who a case came from, in both languages and for every channel, and
why a demo case waits (never "automatic routing is off" while it is on)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from intake.submission import Channel, Contact, Submission
from triage.cases import register
from triage.models import Case, CaseEvent, Status
from web.cli import main

WORDING = {
    Channel.WEB: ("Received from the citizen (web form)", "来自诉求人（网上表单）"),
    Channel.EMAIL: ("Received from the citizen (email)", "来自诉求人（电子邮件）"),
    Channel.PHONE: ("Received from the citizen (phone call)", "来自诉求人（来电）"),
    Channel.CALL_LOG: ("Received from the citizen (call centre log)", "来自诉求人（话务记录）"),
    Channel.LETTER: ("Received from the citizen (letter)", "来自诉求人（来信）"),
    Channel.VISIT: ("Received from the citizen (in person)", "来自诉求人（来访）"),
}


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _received_line(html: str) -> str:
    m = re.search(r'<li class="event-received">(.*?)</li>', html, flags=re.S)
    assert m, "the timeline has no receipt"
    return _text(m.group(1))


@pytest.mark.parametrize("channel", list(WORDING), ids=[str(c) for c in WORDING])
def test_receipt_names_the_citizen_and_the_channel(
    channel: Channel, runtime: Any, login_as: Any
) -> None:
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        case = register(
            s,
            Submission(
                channel=channel,
                external_id=f"wording-{channel}",
                received_at=now,
                subject="路灯不亮",
                body="幸福路的路灯已经坏了一周。",
                contact=Contact("赵六", "13800138000", ""),
            ),
            runtime.intake_policy(),
            now,
        ).case
        number = case.tracking_number
    supervisor = login_as("supervisor")
    english, chinese = WORDING[channel]
    zh = _received_line(supervisor.get(f"/board/cases/{number}").get_data(as_text=True))
    assert chinese in zh and "Received" not in zh
    supervisor.get("/lang/en")
    en = _received_line(supervisor.get(f"/board/cases/{number}").get_data(as_text=True))
    assert english in en, en
    assert "Received citizen" not in en


def _demo_events(db_url: str) -> tuple[list[Case], list[CaseEvent]]:
    engine = create_engine(db_url)
    with Session(engine) as s:
        cases = s.scalars(select(Case).where(Case.external_id.like("demo:%"))).all()
        events = s.scalars(select(CaseEvent)).all()
        for c in cases:
            _ = c.events
        s.expunge_all()
    engine.dispose()
    return list(cases), list(events)


def test_demo_timelines_tell_the_true_reason_for_waiting(config_file: Path, db_url: str) -> None:
    result = CliRunner().invoke(main, ["demo", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    cases, events = _demo_events(db_url)
    queued = [e for e in events if e.action == "queued"]
    assert queued, "no demo case waits in the queue"
    assert all(e.detail.get("why") != "auto_route_off" for e in queued)
    # Rejected demo complaints carry a public reason for the citizen.
    rejected = [c for c in cases if c.status == Status.REJECTED]
    assert rejected and all(c.rejection_code for c in rejected)


def test_demo_with_routing_switched_off_says_so(config_file: Path, db_url: str) -> None:
    text = config_file.read_text(encoding="utf-8")
    config_file.write_text(
        text.replace("auto_route = true", "auto_route = false"), encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["demo", "--no-model", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    cases, events = _demo_events(db_url)
    queued = [e for e in events if e.action == "queued"]
    assert len(queued) == len(cases)
    reasons = {e.detail.get("why") for e in queued}
    assert "auto_route_off" in reasons and reasons <= {"auto_route_off", "no_suggestion"}
