"""The first status of a case's history reads naturally (review of issue 10): an event with
no from-status (as the volume demo once wrote, or an import) shows "受理", never
"None → 受理", on the case page, the citizens' tracking page and the admin log; and the
volume demo's suggestions name the deployed routing model, or none, never a made-up one."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import insert, select

from tests.conftest import csrf_from
from triage import admin_log
from triage.cases import hash_query_code
from triage.models import Case, CaseEvent, Status
from web.cli import main
from web.demo_volume import add_volume

TRANSITION = re.compile(r'<span class="transition">(.*?)</span>', re.S)


def _transitions(html: str) -> list[str]:
    return [" ".join(t.split()) for t in TRANSITION.findall(html)]


def test_an_event_without_a_from_status_shows_its_status_alone(
    client: Any, login_as: Any, runtime: Any
) -> None:
    # A case written as plain rows, its first event with no from-status, as the volume
    # demo once wrote them (the audit log is append-only: it is not edited afterwards).
    now = datetime.now(UTC)
    number, code = "MS-2020-000777", "ABCD-2345"
    with runtime.engine.begin() as conn:
        case_id = conn.execute(
            insert(Case.__table__).values(
                tracking_number=number,
                query_code_hash=hash_query_code(code),
                channel="web",
                external_id="plain:777",
                kind="complaint",
                status=Status.TRIAGE,
                subject="路灯坏了",
                body="小区门口的路灯坏了一个月，晚上很黑。",
                received_at=now - timedelta(hours=2),
                created_at=now - timedelta(hours=2),
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(CaseEvent.__table__),
            [
                {"case_id": case_id, "at": now - timedelta(hours=2), "action": "received",
                 "actor_name": "citizen (web)", "from_status": None, "to_status": "received",
                 "detail": {"channel": "web"}, "public": True},
                {"case_id": case_id, "at": now - timedelta(hours=1), "action": "queued",
                 "actor_name": "system", "from_status": "received", "to_status": "triage",
                 "detail": {}, "public": False},
            ],
        )  # fmt: skip
    page = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    assert "None" not in page
    shown = _transitions(page)
    assert shown == ["受理", "受理 → 待分派"], shown

    tracking = client.get("/track")
    r = client.post(
        "/track",
        data={
            "csrf_token": csrf_from(tracking.get_data(as_text=True)),
            "tracking_number": number,
            "query_code": code,
        },
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "路灯坏了" in html, html[-3000:]
    assert "None" not in html


def test_the_admin_log_shows_a_value_set_from_nothing_as_a_change(
    login_as: Any, runtime: Any
) -> None:
    with runtime.sessions() as s, s.begin():
        admin_log.record(
            s, "admin", "user_changed", "user zhao", datetime.now(UTC),
            department=[None, "urban"], role=["handler", "supervisor"],
        )  # fmt: skip
    log = login_as("admin").get("/admin/log").get_data(as_text=True)
    row = log[log.index('data-action="user_changed"') :]
    row = row[: row.index("</tr>")]
    assert "None" not in row
    details = " ".join(re.sub(r"<[^>]+>", " ", row[row.index('class="details"') :]).split())
    # Set from nothing: said so in words (a dash read oddly: "— → 区住房和城乡建设局"; the new
    # value alone hid that it was a change).
    assert "部门： （无） → 区住房和城乡建设局 ;" in details and "—" not in details, details
    assert "角色：部门经办人 → 督查员" in details, details  # a change still shows both


def _volume_cases(runtime: Any, **kwargs: Any) -> tuple[list[Case], list[CaseEvent]]:
    with runtime.engine.begin() as conn:
        add_volume(conn, 40, months=1, seed=3, now=datetime.now(UTC) - timedelta(hours=1),
                   **kwargs)  # fmt: skip
    with runtime.sessions() as s:
        cases = list(s.scalars(select(Case).where(Case.external_id.like("volume:%"))))
        events = list(
            s.scalars(select(CaseEvent).where(CaseEvent.case_id.in_([c.id for c in cases])))
        )
        s.expunge_all()
    return cases, events


def test_volume_cases_name_no_model_when_none_is_deployed(login_as: Any, runtime: Any) -> None:
    cases, events = _volume_cases(runtime)
    assert {c.model_version for c in cases} == {""}
    received = [e for e in events if e.action == "received"]
    assert len(received) == len(cases)
    assert all(e.from_status == Status.RECEIVED for e in received)
    model_made = [e for e in events if e.action in ("suggested", "auto_assigned")]
    assert model_made and {e.actor_name for e in model_made} == {"system"}
    supervisor = login_as("supervisor")
    for case in cases[:5]:
        page = supervisor.get(f"/board/cases/{case.tracking_number}").get_data(as_text=True)
        assert "None" not in page and "volume" not in page
        assert _transitions(page)[0] != "", page


def test_volume_cases_name_the_deployed_model(login_as: Any, runtime: Any) -> None:
    cases, events = _volume_cases(runtime, model_version="20260301-0a1b2c")
    assert {c.model_version for c in cases} == {"20260301-0a1b2c"}
    suggested = [e for e in events if e.action == "suggested"]
    assert {e.actor_name for e in suggested} == {"model 20260301-0a1b2c"}
    page = login_as("supervisor").get(f"/board/cases/{cases[0].tracking_number}")
    html = page.get_data(as_text=True)
    assert "20260301-0a1b2c" in html and "model volume" not in html


def test_the_demo_command_names_its_trained_model_on_volume_cases(
    config_file: Path, runtime: Any
) -> None:
    result = CliRunner().invoke(
        main, ["demo", "--config", str(config_file), "--volume", "30", "--months", "1"]
    )
    assert result.exit_code == 0, result.output
    version = re.search(r"demo routing model (\S+) trained and deployed", result.output)
    assert version, result.output
    with runtime.sessions() as s:
        versions = set(
            s.scalars(select(Case.model_version).where(Case.external_id.like("volume:%")))
        )
        # The demo's own cases were registered through the same model.
        registered = set(
            s.scalars(select(Case.model_version).where(~Case.external_id.like("volume:%")))
        )
    assert versions == {version.group(1)}, versions
    assert registered == {version.group(1)}, registered
