"""The supervision tick on the real database with a real SMTP server (aiosmtpd) catching the
mail: ticks at chosen times send a reminder once, an escalation once, a digest a day and
nothing twice; two ticks started at once queue nothing twice; the findings show on the board."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select

from intake.submission import Channel, Contact, Kind, Submission
from tests.conftest import make_settings
from tests.mailserver import free_port
from triage.cases import assign_case, register
from triage.export import iter_records
from triage.models import (
    Case,
    CaseEvent,
    CaseFinding,
    Department,
    Satisfaction,
    SpotCheckDraw,
    User,
)
from triage.outbox import OutgoingMail
from triage.supervision import run_tick
from web.cli import main
from web.cli_supervise import supervision_policy
from web.mail import OutboxSender

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

BJ = ZoneInfo("Asia/Shanghai")
SUPERVISORS = "dubanshi@example.gov.cn"
URBAN = "zhujian@example.gov.cn"


def bj(*args: int) -> datetime:
    return datetime(*args, tzinfo=BJ).astimezone(UTC)  # type: ignore[misc]


class Recorder:
    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def mails(self) -> list[tuple[list[str], Any]]:
        return [(to, message_from_bytes(raw, policy=policy.default)) for to, raw in self.received]

    def kinds(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]).strip("<").split(".", 1)[0] for _, m in self.mails())

    def clear(self) -> None:
        self.received.clear()


@pytest.fixture
def smtp_port() -> int:
    return free_port()


SUPERVISION = {
    "supervisors_email": [SUPERVISORS],
    "digest_hour": 8,
    "spot_check_sample": 0,
}


@pytest.fixture
def settings(tmp_path: Path, db_url: str, smtp_port: int) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        mail={"sender": "xiaonengban@example.gov.cn", "port": smtp_port, "timeout_seconds": 5},
        supervision=SUPERVISION,
    )


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[Recorder]:
    recorder = Recorder()
    controller = aiosmtpd_controller.Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield recorder
    controller.stop()


def dispatched_case(runtime: Any, received: datetime, department: str = "urban") -> int:
    """A web complaint received at `received`, dispatched an hour later by the supervisor."""
    submission = Submission(
        channel=Channel.WEB,
        external_id=f"form-{uuid.uuid4().hex}",
        received_at=received,
        subject="莲花路路灯不亮",
        body="莲花路与金桥街交叉口的路灯坏了两个星期，晚上一片漆黑，请尽快维修。",
        contact=Contact("王小明", "13812345678", ""),
        kind=Kind.COMPLAINT,
    )
    with runtime.sessions() as s, s.begin():
        case = register(s, submission, runtime.intake_policy(), received).case
        supervisor = s.scalar(select(User).where(User.username == "supervisor"))
        dept = s.scalar(select(Department).where(Department.code == department))
        at = received.replace(hour=received.hour + 1)
        if case.department_id is None:
            assign_case(case, dept, supervisor, runtime.settings.deadlines(), at)
        return case.id


def tick(runtime: Any, now: datetime) -> dict[str, Any]:
    result = run_tick(runtime.sessions, now, supervision_policy(runtime.settings))
    sent = OutboxSender(runtime.settings, runtime.sessions).send_due()
    return {**result.as_dict(), **sent.as_dict()}


def findings_of(runtime: Any, case_id: int) -> dict[str, str]:
    with runtime.sessions() as s:
        return dict(
            s.execute(
                select(CaseFinding.rule, CaseFinding.severity).where(CaseFinding.case_id == case_id)
            ).all()
        )


def risk_of(runtime: Any, case_id: int) -> str:
    with runtime.sessions() as s:
        return s.get(Case, case_id).risk


def test_reminder_once_escalation_once_digest_a_day(runtime: Any, smtp: Recorder) -> None:
    # Monday 23 Nov 2026, dispatched 10:00: due Monday 30 Nov, 23:59:59 (5 working days).
    case_id = dispatched_case(runtime, bj(2026, 11, 23, 9))
    with runtime.sessions() as s:
        case = s.get(Case, case_id)
        assert case.due_at == bj(2026, 11, 30, 23, 59, 59)
        number = case.tracking_number

    assert tick(runtime, bj(2026, 11, 24, 7))["reminders"] == 0
    assert smtp.received == [] and findings_of(runtime, case_id) == {}

    # The morning of the last day, before the digest hour: the deadline is near, but a
    # working-day reminder waits for the digest hour (nobody reads mail sent at 07:00).
    out = tick(runtime, bj(2026, 11, 30, 7))
    assert (out["reminders"], out["digests"], out["sent"]) == (0, 0, 0)
    assert findings_of(runtime, case_id) == {"deadline_near": "warning"}
    assert risk_of(runtime, case_id) == "at_risk"

    # After the digest hour: the reminder to the department, and one digest to the
    # supervisors and one to the department.
    out = tick(runtime, bj(2026, 11, 30, 9))
    assert (out["reminders"], out["digests"]) == (1, 2)
    reminders = [(to, m) for to, m in smtp.mails() if "临期提醒" in str(m["Subject"])]
    ((to, reminder),) = reminders
    assert to == [URBAN] and number in str(reminder["Subject"])
    assert "2026-11-30 23:59" in reminder.get_content()
    # The system takes extension requests after the deadline too: no "before the deadline".
    assert "到期前提出延期" not in reminder.get_content()
    with runtime.sessions() as s:
        near = s.scalar(select(CaseFinding).where(CaseFinding.case_id == case_id))
        # Set by the tick that sent the reminder, not one tick later.
        assert near.detail["reminded_at"] == bj(2026, 11, 30, 9).isoformat()
    digests = {tuple(to): m for to, m in smtp.mails() if m not in [r for _t, r in reminders]}
    assert set(digests) == {(SUPERVISORS,), (URBAN,)}
    assert number in digests[(SUPERVISORS,)].get_content()
    assert "风险 1 件" in str(digests[(URBAN,)]["Subject"])
    assert tick(runtime, bj(2026, 11, 30, 9, 30))["reminders"] == 0
    assert tick(runtime, bj(2026, 11, 30, 18))["digests"] == 0

    # Overdue on Tuesday: the next day's digest, no escalation within the grace period.
    smtp.clear()
    out = tick(runtime, bj(2026, 12, 1, 9))
    assert (out["escalations"], out["digests"]) == (0, 2)
    assert findings_of(runtime, case_id) == {"overdue": "critical", "delay_unreported": "warning"}
    assert risk_of(runtime, case_id) == "overdue"

    # Past the grace period at night: escalated, but the 督办 mail waits for the morning.
    smtp.clear()
    out = tick(runtime, bj(2026, 12, 2, 0, 30))
    assert (out["escalations"], out["digests"], out["sent"]) == (0, 0, 0)
    assert findings_of(runtime, case_id)["escalated"] == "critical"
    out = tick(runtime, bj(2026, 12, 2, 10))
    assert (out["escalations"], out["digests"]) == (1, 2)
    escalations = [(to, m) for to, m in smtp.mails() if "督办】" in str(m["Subject"])]
    ((to, _escalation),) = escalations
    assert sorted(to) == sorted([URBAN, SUPERVISORS])
    with runtime.sessions() as s:
        actions = s.scalars(
            select(CaseEvent.action).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
        ).all()
    assert actions.count("escalated") == 1

    smtp.clear()
    assert tick(runtime, bj(2026, 12, 2, 11))["escalations"] == 0
    assert tick(runtime, bj(2026, 12, 2, 12))["digests"] == 0
    assert smtp.kinds() == Counter()
    with runtime.sessions() as s:
        ids = s.scalars(select(OutgoingMail.message_id)).all()
    assert len(ids) == len(set(ids)) == 1 + 2 + 2 + 1 + 2

    # The export reads the findings back, masked as ever.
    with runtime.sessions() as s:
        (record,) = list(iter_records(s, BJ, masked=True, now=bj(2026, 12, 2, 10)))
    assert record["overdue"] is True and record["extended_to"] is None
    assert {f["rule"] for f in record["findings"]} == {"overdue", "delay_unreported", "escalated"}
    escalated = next(f for f in record["findings"] if f["rule"] == "escalated")
    assert escalated == {
        "rule": "escalated",
        "combination": 1,
        "severity": "critical",
        "since": "2026-12-01T23:59:59+08:00",
    }
    assert record["contact_phone"] != "13812345678" and "王小明" not in json.dumps(record)


def test_two_ticks_at_once_queue_nothing_twice(runtime: Any, smtp: Recorder) -> None:
    cases = [dispatched_case(runtime, bj(2026, 11, 23, 9)) for _ in range(20)]
    now = bj(2026, 12, 2, 9)
    policy = supervision_policy(runtime.settings)
    barrier = threading.Barrier(2)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            barrier.wait()
            results.append(run_tick(runtime.sessions, now, policy, holder=name))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(f"tick-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(r.escalations for r in results) == 20
    assert sum(r.digests for r in results) == 2
    # Once more afterwards, as cron would: nothing new.
    again = run_tick(runtime.sessions, now, policy)
    assert (again.ran, again.escalations, again.digests) == (True, 0, 0)
    with runtime.sessions() as s:
        ids = s.scalars(select(OutgoingMail.message_id)).all()
        escalated = s.scalars(
            select(CaseEvent.case_id).where(CaseEvent.action == "escalated")
        ).all()
    # One 督办 mail lists the department's 20 cases; one digest each to the office and it.
    assert len(ids) == len(set(ids)) == 3
    assert sorted(escalated) == sorted(cases)


def test_the_command_ticks_at_a_chosen_time_and_prints_json(
    runtime: Any, smtp: Recorder, tmp_path: Path, db_url: str, smtp_port: int
) -> None:
    case_id = dispatched_case(runtime, bj(2026, 11, 23, 9))
    config = tmp_path / "supervise.toml"
    # What the tick reads; departments and staff are in the database already.
    text = (
        f'[app]\ninstance_dir = "{tmp_path / "inst"}"\nsecret_key = "test-key"\n'
        f'[database]\nurl = "{db_url}"\n'
        f'[mail]\nsender = "xiaonengban@example.gov.cn"\nport = {smtp_port}\n'
        f'[supervision]\nsupervisors_email = ["{SUPERVISORS}"]\nspot_check_sample = 0\n'
    )
    config.write_text(text, encoding="utf-8")
    runner = CliRunner()
    early = ["supervise", "tick", "--config", str(config), "--now", "2026-11-30T07:00+08:00"]
    r = runner.invoke(main, [*early, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    # Before the digest hour (8 by default) the working-day reminder waits.
    assert (out["ran"], out["reminders"], out["sent"]) == (True, 0, 0)
    args = ["supervise", "tick", "--config", str(config), "--now", "2026-11-30T09:00+08:00"]
    r = runner.invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert (out["ran"], out["reminders"], out["digests"], out["sent"]) == (True, 1, 2, 3)
    assert smtp.kinds() == Counter({"reminder": 1, "digest": 2})
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "queued 0 reminders" in r.output
    bad = runner.invoke(main, ["supervise", "tick", "--config", str(config), "--now", "09:00"])
    assert bad.exit_code == 2 and "--now" in bad.output
    assert risk_of(runtime, case_id) == "at_risk"


def closed_case(runtime: Any, received: datetime) -> str:
    """A case dispatched, replied, visited (satisfied) and closed within its first day."""
    case_id = dispatched_case(runtime, received)
    with runtime.sessions() as s, s.begin():
        case = s.get(Case, case_id)
        handler = s.scalar(select(User).where(User.username == "urban"))
        supervisor = s.scalar(select(User).where(User.username == "supervisor"))
        at = received.replace(hour=received.hour + 2)
        case.start(handler, at)
        case.reply(handler, at, "路灯已修复。")
        case.record_visit(
            supervisor, at, reached=True, solved=True, satisfaction=Satisfaction.SATISFIED
        )
        case.close(supervisor, at)
        return case.tracking_number


def test_the_tick_draws_the_spot_check_sample_when_due(
    runtime: Any, smtp: Recorder, tmp_path: Path, db_url: str, smtp_port: int
) -> None:
    with runtime.sessions() as s, s.begin():
        # On PostgreSQL the draws of earlier tests survive (they reference no case).
        s.execute(delete(SpotCheckDraw))
    numbers = {closed_case(runtime, bj(2026, 11, 16 + i, 9)) for i in range(3)}
    settings = make_settings(
        tmp_path,
        db_url,
        mail={"sender": "xiaonengban@example.gov.cn", "port": smtp_port},
        supervision={**SUPERVISION, "spot_check_sample": 2, "spot_check_every_days": 7},
    )
    policy = supervision_policy(settings)
    first = run_tick(runtime.sessions, bj(2026, 11, 30, 9), policy)
    assert first.spot_check_draw is not None
    with runtime.sessions() as s:
        drawn = s.get(SpotCheckDraw, first.spot_check_draw)
        assert drawn.population == 3 and set(drawn.sample) <= numbers and len(drawn.sample) == 2
        pending = s.scalars(
            select(Case.tracking_number)
            .join(CaseFinding, CaseFinding.case_id == Case.id)
            .where(CaseFinding.rule == "spot_check_pending")
        ).all()
    # The drawn closed cases carry the pending check as a finding; not drawn again in a week.
    assert sorted(pending) == sorted(drawn.sample)
    assert run_tick(runtime.sessions, bj(2026, 12, 3, 9), policy).spot_check_draw is None
    assert run_tick(runtime.sessions, bj(2026, 12, 7, 9), policy).spot_check_draw is not None


def test_supervise_run_ticks_until_stopped(tmp_path: Path, db_url: str, smtp_port: int) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        f'[app]\ninstance_dir = "{tmp_path / "inst"}"\nsecret_key = "test-key"\n'
        f'[database]\nurl = "{db_url}"\n'
        f'[mail]\nsender = "xiaonengban@example.gov.cn"\nport = {smtp_port}\n'
        f"[supervision]\nspot_check_sample = 0\n",
        encoding="utf-8",
    )
    command = str(Path(sys.executable).with_name("minsheng"))
    proc = subprocess.Popen(
        [command, "supervise", "run", "--every", "1", "--no-send", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MINSHENG_CONFIG": str(config)},
    )
    try:
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while len(lines) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if line:
                lines.append(line)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    ticks = [json.loads(line) for line in lines]
    assert len(ticks) == 2 and all(t["ran"] for t in ticks)


def test_an_unanswered_observation_on_a_department_is_an_office_finding(
    runtime: Any, smtp: Recorder, login_as: Any
) -> None:
    """It has no case: the supervisors' digest lists it after the cases, and the observations
    page shows the department with how many wait and since when; answered, it is gone."""
    from triage import observations

    with runtime.sessions() as s, s.begin():
        observer = s.scalar(select(User).where(User.role == "observer"))
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        filed = observations.file(
            s, observer, bj(2026, 11, 27, 15), "住建局热线长期无人接听", department=urban
        )
        filed_id, urban_name = filed.id, urban.name
    assert tick(runtime, bj(2026, 11, 30, 9))["digests"] == 1
    ((to, digest),) = smtp.mails()
    assert to == [SUPERVISORS]
    text = digest.get_content()
    assert "对部门的监督意见待答复（1 条）" in text
    assert f"- {urban_name}：1 条，最早提出于 2026-11-27 15:00" in text
    page = login_as("supervisor").get("/board/observations/").get_data(as_text=True)
    assert 'id="department-findings"' in page and 'data-department="urban"' in page
    with runtime.sessions() as s, s.begin():
        supervisor = s.scalar(select(User).where(User.username == "supervisor"))
        observations.answer(
            s, s.get(observations.Observation, filed_id), supervisor, bj(2026, 11, 30, 10), "已约谈"
        )
    page = login_as("supervisor").get("/board/observations/").get_data(as_text=True)
    assert 'id="department-findings"' not in page


def test_escalations_and_digests_reach_the_head_and_the_supervisors_themselves(
    runtime: Any, smtp: Recorder
) -> None:
    head, supervisor = "head@urban.example.gov.cn", "zhang.jian@xiaoneng.example.gov.cn"
    with runtime.sessions() as s, s.begin():
        s.scalar(select(User).where(User.username == "urban-head")).email = head
        s.scalar(select(User).where(User.username == "supervisor")).email = supervisor
    case_id = dispatched_case(runtime, bj(2026, 11, 23, 9))
    tick(runtime, bj(2026, 11, 30, 9))
    digests = {m["Subject"]: sorted(to) for to, m in smtp.mails() if "简报" in str(m["Subject"])}
    assert sorted(digests.values()) == sorted([[SUPERVISORS, supervisor], sorted([URBAN, head])])
    smtp.clear()
    tick(runtime, bj(2026, 12, 2, 10))
    ((to, _m),) = [(to, m) for to, m in smtp.mails() if "督办】" in str(m["Subject"])]
    assert sorted(to) == sorted([URBAN, head, SUPERVISORS, supervisor])
    # A deactivated head is written to no more.
    with runtime.sessions() as s, s.begin():
        s.scalar(select(User).where(User.username == "urban-head")).active = False
        assert s.get(Case, case_id) is not None
    from triage.supervision import staff_addresses

    with runtime.sessions() as s:
        assert staff_addresses(s).department(URBAN, "urban") == [URBAN]
