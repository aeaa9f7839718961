"""The demo: cases written for the demo, walked through the life cycle by the demo users,
and a routing model trained on the demo's own training messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.submission import Channel, Contact, Kind, Submission
from triage.cases import IntakePolicy, assign_case, register, send_back_case
from triage.extensions import request_extension
from triage.models import Case, Department, Role, Satisfaction, Status, User
from triage.notifications import quiet
from triage.rejection import RejectionReason

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_CASES = DEMO_DIR / "cases.jsonl"
DEMO_TRAINING = DEMO_DIR / "training.jsonl"
DEMO_PASSWORD = "minsheng-demo"


@dataclass(frozen=True)
class DemoCase:
    external_id: str
    channel: str
    kind: str
    subject: str
    body: str
    contact_name: str
    contact_phone: str
    contact_email: str
    days_ago: int
    department: str | None
    stage: str
    reply: str
    visit: dict[str, Any] | None
    reason: str
    # For a rejected case: the code of the public reason ([[rejection_reasons]] in config).
    outcome: str = ""
    public_reason: str = ""


def load_demo_cases(path: Path = DEMO_CASES) -> list[DemoCase]:
    with path.open(encoding="utf-8") as fh:
        return [DemoCase(**json.loads(line)) for line in fh if line.strip()]


def _actors(session: Session) -> tuple[User | str, dict[int, User | str]]:
    users = session.scalars(select(User)).all()
    supervisor: User | str = next(
        (u for u in users if u.role == Role.SUPERVISOR), "demo supervisor"
    )
    handlers: dict[int, User | str] = {}
    # The department's handler writes; its head (负责人) signs off.
    for u in sorted(users, key=lambda u: (u.head, u.id)):
        if u.role == Role.HANDLER and u.department_id is not None:
            handlers.setdefault(u.department_id, u)
    return supervisor, handlers


def load_demo(session: Session, policy: IntakePolicy, now: datetime | None = None) -> int:
    """Registers the demo cases and moves each to its stage; returns how many were new.

    Idempotent: a demo case already registered is left as it is. Its citizens are told
    nothing (no mail, no SMS): the cases are history written for the demo, and their
    contacts made up; only what happens to them afterwards notifies.
    """
    with quiet(session):
        return _load_demo(session, policy, now)


def _load_demo(session: Session, policy: IntakePolicy, now: datetime | None) -> int:
    now = now or datetime.now(UTC)
    deadlines = policy.deadlines
    departments = {d.code: d for d in session.scalars(select(Department))}
    supervisor, handlers = _actors(session)
    created = 0
    new: list[Case] = []
    # Oldest first, as they would have arrived: a later complaint finds its earlier duplicate.
    for demo in sorted(load_demo_cases(), key=lambda d: -d.days_ago):
        received = now - timedelta(days=demo.days_ago, hours=3)
        submission = Submission(
            channel=Channel(demo.channel),
            external_id=f"demo:{demo.external_id}",
            received_at=received,
            kind=Kind(demo.kind),
            subject=demo.subject,
            body=demo.body,
            contact=Contact(demo.contact_name, demo.contact_phone, demo.contact_email),
        )
        # Every demo case meets the policy as configured: a case the model routes by itself
        # says so, and one that waits says truly why (switching automatic routing off for
        # some of them made their timelines claim it was off).
        reg = register(session, submission, policy, received + timedelta(minutes=2))
        if not reg.created:
            continue
        created += 1
        _advance(reg.case, demo, departments, supervisor, handlers, deadlines, received)
        session.flush()
        new.append(reg.case)
    _self_discipline(new, handlers, deadlines, now)
    session.flush()
    return created


def _self_discipline(
    cases: list[Case], handlers: dict[int, User | str], deadlines: Any, now: datetime
) -> None:
    """A pending extension request (延期) on an open case in time, and a delay report on an
    overdue one, so that the supervisors' extensions page has something to decide."""
    handling = [c for c in cases if c.status == Status.IN_PROGRESS and c.department_id is not None]
    in_time = next((c for c in handling if not c.is_overdue(now)), None)
    late = next((c for c in handling if c.is_overdue(now)), None)
    if in_time is not None and in_time.due_at is not None:
        day = deadlines.calendar.add_working_days(in_time.due_at, 3)
        request_extension(
            in_time,
            handlers.get(in_time.department_id, "demo handler"),  # type: ignore[arg-type]
            deadlines,
            1,
            now - timedelta(hours=1),
            "需协调供电公司停电配合施工，预计三个工作日内完成。",
            deadlines.calendar.local(day).date(),
        )
    if late is not None:
        late.report_delay(
            handlers.get(late.department_id, "demo handler"),  # type: ignore[arg-type]
            now - timedelta(minutes=30),
            "涉及多个部门会商，已约定本周内联合现场核查后答复。",
        )


def _advance(
    case: Case,
    demo: DemoCase,
    departments: dict[str, Department],
    supervisor: User | str,
    handlers: dict[int, User | str],
    deadlines: Any,
    received: datetime,
) -> None:
    """Moves a freshly registered demo case along the life cycle to its demo stage."""
    t = received + timedelta(hours=2)
    if demo.stage == "rejected":
        if case.department is not None and case.assigned_at is not None:
            # Routed by the model after all: the department returns it first, within the
            # window (an hour for an urgent case).
            returned_by = handlers.get(case.department.id, f"{case.department.name} handler")
            t = case.assigned_at + timedelta(minutes=30)
            send_back_case(case, returned_by, deadlines, t, "非本部门职责，疑似无效信息")
        case.reject(
            supervisor,
            t + timedelta(minutes=30),
            demo.reason or "invalid",
            outcome=RejectionReason(demo.outcome or "other", ""),
            public_reason=demo.public_reason,
        )
        return
    if demo.stage == "triage" or demo.department is None:
        return
    dept = departments[demo.department]
    if case.status in (Status.RECEIVED, Status.TRIAGE):
        assign_case(case, dept, supervisor, deadlines, t)
    elif case.department_id != dept.id:
        case.transfer(
            dept,
            supervisor,
            t,
            deadlines.handling_due(t, dept.code, case.urgent),
            "demo: transferred to the right department",
        )
    handler = handlers.get(dept.id, f"{dept.name} handler")
    if demo.stage == "returned":
        send_back_case(
            case,
            handler,
            deadlines,
            # Within the window, which is an hour for an urgent hazard.
            (case.assigned_at or t) + timedelta(minutes=40),
            demo.reason or "not our responsibility",
        )
        return
    if demo.stage == "assigned":
        return
    case.start(handler, t + timedelta(hours=4))
    if demo.stage == "in_progress":
        return
    case.reply(handler, t + timedelta(days=2), demo.reply or "已处理。")
    if demo.stage == "replied":
        return
    v = demo.visit or {"reached": True, "solved": True, "satisfaction": "satisfied", "note": ""}
    case.record_visit(
        supervisor,
        t + timedelta(days=3),
        reached=bool(v["reached"]),
        solved=v.get("solved") if v["reached"] else None,
        satisfaction=Satisfaction(v["satisfaction"]) if v["reached"] else None,
        note=v.get("note", ""),
        contacted=bool(v.get("contacted", True)) if v["reached"] else None,
    )
    if demo.stage == "visited":
        return
    unhappy = v.get("satisfaction") == "unsatisfied" or v.get("solved") is False
    case.close(
        supervisor, t + timedelta(days=4), "demo: reviewed by the supervisor" if unhappy else ""
    )
