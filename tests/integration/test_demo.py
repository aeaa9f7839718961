"""`minsheng demo`: what a new user gets from `make run`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from triage.models import Case, Status
from web.cli import main
from web.demo import DEMO_PASSWORD, load_demo_cases

STAGE_STATUS = {
    "triage": Status.TRIAGE,
    "assigned": Status.ASSIGNED,
    "in_progress": Status.IN_PROGRESS,
    "replied": Status.REPLIED,
    "visited": Status.VISITED,
    "closed": Status.CLOSED,
    "rejected": Status.REJECTED,
    "returned": Status.TRIAGE,
}


def test_demo_loads_cases_at_every_stage_once(config_file: Path, db_url: str) -> None:
    first = CliRunner().invoke(main, ["demo", "--config", str(config_file)])
    assert first.exit_code == 0, first.output
    demo = load_demo_cases()
    assert f"{len(demo)} demo cases loaded" in first.output
    assert DEMO_PASSWORD in first.output
    for login in ("admin", "supervisor", "operator", "observer", "urban", "safety"):
        assert f"  {login} " in first.output
    assert "demo routing model" in first.output

    engine = create_engine(db_url)
    with Session(engine) as s:
        cases = s.scalars(select(Case).where(Case.external_id.like("demo:%"))).all()
        by_id = {c.external_id.removeprefix("demo:"): c for c in cases}
        wanted = Counter(STAGE_STATUS[d.stage] for d in demo)
        got = Counter(by_id[d.external_id].status for d in demo)
        # Urgent hazards and confident suggestions may move a "triage" case on by themselves.
        assert got[Status.CLOSED] == wanted[Status.CLOSED]
        assert got[Status.REJECTED] == wanted[Status.REJECTED]
        closed = [c for c in cases if c.status == Status.CLOSED]
        assert all(c.replies and c.visits and c.closed_at for c in closed)
        returned = [by_id[d.external_id] for d in demo if d.stage == "returned"]
        assert all(c.sent_back_count == 1 and c.department is None for c in returned)
        assert any(c.urgent for c in cases)
        # Something for the extensions page: a request to decide and a delay reported.
        actions = {e.action for c in cases for e in c.events}
        assert {"extension_requested", "delay_reported"} <= actions
    engine.dispose()

    again = CliRunner().invoke(main, ["demo", "--config", str(config_file)])
    assert again.exit_code == 0 and "0 demo cases loaded" in again.output


def test_demo_logins_work(config_file: Path, tmp_path: Path, db_url: str) -> None:
    from tests.conftest import csrf_from, make_settings
    from web import create_app

    assert (
        CliRunner().invoke(main, ["demo", "--no-model", "--config", str(config_file)]).exit_code
        == 0
    )
    app = create_app(make_settings(tmp_path, db_url), TESTING=True)
    client: Any = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    r = client.post(
        "/login", data={"csrf_token": token, "username": "supervisor", "password": DEMO_PASSWORD}
    )
    assert r.status_code == 302
    queue = client.get("/board/queue").get_data(as_text=True)
    assert "MS-" in queue
    app.extensions["minsheng"].engine.dispose()
