"""The supervision tick: every open case through the rules engine (triage/rules), its findings
stored, and what fell due queued in the outbox.

One tick, at `now`:

1. draws the scheduled spot-check sample when one is due (triage/spot_checks.py);
2. loads every case that is open or still carries a finding, a risk, a pending spot check or
   an open observation, with the events, replies, visits, checks and observations the rules
   read: one query each, never one per case;
3. evaluates each (`triage.rules.evaluate`);
4. queues the due reminders (to the department's address, before its deadline) and
   escalations (督办: to the department, whose head reads it, and to the supervisors), one
   mail per department listing its cases, with a `reminded` / `escalated` event on each
   case; then the daily digest at or after `digest_hour` local time (to the supervisors:
   every at-risk and overdue case; to each department: its own);
5. replaces the findings of each evaluated case (`case_findings`) and sets `cases.risk`.

Nothing is queued twice: a case's `reminded` / `escalated` event for its deadline stops the
rules from asking again, and every mail's Message-ID is derived from what it is about
(``reminder.<department>.<hash of its cases and deadlines>@domain``, ``escalation.…``,
``digest.<local date>.<office or department>@…``): ids already in the outbox are skipped, and
the outbox's unique Message-ID refuses the rest.
Two ticks at once are safe: `run_tick` holds the ``supervise-tick`` lease (the leases table
of the mail intake) for the whole tick; a second tick finds it held and does nothing.

Functions here flush and never commit, except `run_tick`, which owns its transactions.
Sending the outbox is the caller's (web/cli_supervise.py), as it needs the mail settings.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time as clock
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    bindparam,
    delete,
    insert,
    literal,
    select,
    union,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from triage import system_reasons, tallies
from triage.mail_intake import release_lease, take_lease
from triage.models import (
    OPEN_STATUSES,
    Case,
    CaseEvent,
    CaseFinding,
    CaseReply,
    Department,
    Observation,
    ObservationState,
    ReturnVisit,
    Role,
    SpotCheck,
    SpotCheckDraw,
    SpotCheckResult,
    User,
    utcnow,
)
from triage.observations import DepartmentFinding, department_findings
from triage.outbox import MailKind, OutgoingMail, build_message, enqueue
from triage.rules import (
    EVENT_ACTIONS,
    ActionKind,
    CaseSnapshot,
    DueAction,
    Evaluation,
    ReplySnapshot,
    Risk,
    Rule,
    RulesPolicy,
    VisitSnapshot,
    evaluate,
)

log = logging.getLogger(__name__)

LEASE = "supervise-tick"
# Detail keys the tick's mail sets on a finding (`_act`), kept while the finding lasts.
MAIL_STAMPS = ("reminded_at", "escalated_at")
ACTOR = "system"
CHUNK = 500
DIGEST_LINES = 200


@dataclass(frozen=True)
class SupervisionPolicy:
    """What a tick needs besides the database.

    `supervisors`: the supervisors' addresses (escalations, the office's digest);
    `spot_checks`: the draw schedule, or None to draw nothing; `base_url`: links in mail.
    """

    rules: RulesPolicy
    sender: str
    office_name: str = "机关效能建设办公室"
    base_url: str = "http://127.0.0.1:5000"
    digest_hour: int = 8
    supervisors: tuple[str, ...] = ()
    # A triage.spot_checks.SpotCheckPolicy (web.settings.SupervisionSettings is one).
    spot_checks: Any = None
    # A triage.report.delivery.ReportSchedule: the monthly report on its day; None: never.
    report: Any = None

    @property
    def domain(self) -> str:
        return self.sender.rsplit("@", 1)[-1]


@dataclass
class TickResult:
    """What one tick did; `ran` is False when another tick held the lease."""

    now: datetime
    ran: bool = True
    evaluated: int = 0
    findings: int = 0
    at_risk: int = 0
    overdue: int = 0
    reminders: int = 0
    escalations: int = 0
    digests: int = 0
    no_address: int = 0
    spot_check_draw: int | None = None
    # The month whose report this tick queued (triage/report/delivery.py), if any.
    report: str | None = None
    seconds: float = 0.0
    holder: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "ran": self.ran,
            "evaluated": self.evaluated,
            "findings": self.findings,
            "at_risk": self.at_risk,
            "overdue": self.overdue,
            "reminders": self.reminders,
            "escalations": self.escalations,
            "digests": self.digests,
            "no_address": self.no_address,
            "spot_check_draw": self.spot_check_draw,
            "report": self.report,
            "seconds": round(self.seconds, 3),
        }


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_tick(
    sessions: sessionmaker[Session],
    now: datetime,
    policy: SupervisionPolicy,
    *,
    holder: str | None = None,
    lease_ttl: timedelta = timedelta(minutes=10),
) -> TickResult:
    """One tick in its own transaction, under the tick lease. The lease is counted on the
    wall clock, not on `now` (a tick at a chosen time must not hold it until then)."""
    holder = holder or holder_name()
    started = clock.perf_counter()
    session = sessions()
    try:
        if not take_lease(session, LEASE, holder, now=utcnow(), ttl=lease_ttl):
            session.commit()
            return TickResult(now=now, ran=False, holder=holder)
        session.commit()
        try:
            result = tick(session, now, policy)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            release_lease(session, LEASE, holder)
            session.commit()
    finally:
        session.close()
    result.seconds = clock.perf_counter() - started
    result.holder = holder
    return result


def tick(session: Session, now: datetime, policy: SupervisionPolicy) -> TickResult:
    """Evaluates, queues and stores (see the module docstring); flushes, never commits."""
    result = TickResult(now=now)
    if policy.spot_checks is not None:
        result.spot_check_draw = _draw_spot_checks(session, now, policy.spot_checks)
    snapshots, rows = load_snapshots(session)
    evaluations = {s.id: evaluate(s, now, policy.rules) for s in snapshots}
    result.evaluated = len(snapshots)
    sent = _act(session, now, policy, evaluations, rows, result)
    _store(session, now, evaluations, rows, sent, result)
    _digest(session, now, policy, evaluations, rows, result)
    if policy.report is not None:
        from triage.report.delivery import send_due_report

        result.report = send_due_report(session, now, policy.report)
    session.flush()
    # The ledger of case tallies (triage/tallies.py) folded into one row per combination:
    # what the triggers appended since the last tick.
    tallies.compact(session)
    return result


def _draw_spot_checks(session: Session, now: datetime, schedule: Any) -> int | None:
    """The scheduled spot-check draw (不定期抽查) when one is due; its id, or None."""
    from triage.spot_checks import draw, due_draw

    if not due_draw(session, now, schedule):
        return None
    return draw(session, now, schedule).id


# -- loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseRow:
    """What the tick keeps of a case besides its snapshot: for mail and `cases.risk`."""

    id: int
    tracking_number: str
    status: str
    risk: str
    department: str | None
    department_name: str
    department_email: str


@dataclass(frozen=True)
class StaffAddresses:
    """The active staff with an address: heads by department code, and supervisors."""

    heads: Mapping[str, tuple[str, ...]]
    supervisors: tuple[str, ...]

    def department(self, email: str, code: str | None) -> list[str]:
        """A department's mail: its own address and its heads'."""
        return _unique([email, *self.heads.get(code or "", ())])

    def office(self, policy: SupervisionPolicy) -> list[str]:
        """The office's mail: the configured addresses and the supervisors'."""
        return _unique([*policy.supervisors, *self.supervisors])


def _unique(addresses: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for a in addresses:
        if a and a.lower() not in seen:
            seen[a.lower()] = a
    return list(seen.values())


def staff_addresses(session: Session) -> StaffAddresses:
    """One query: active heads (by department) and supervisors that have an email."""
    heads: dict[str, list[str]] = defaultdict(list)
    supervisors: list[str] = []
    rows = session.execute(
        select(User.role, User.head, User.email, Department.code)
        .outerjoin(Department, Department.id == User.department_id)
        .where(User.active.is_(True), User.email != "")
    )
    for role, head, email, code in rows:
        if role == Role.SUPERVISOR:
            supervisors.append(email)
        elif head and code:
            heads[code].append(email)
    return StaffAddresses({k: tuple(v) for k, v in heads.items()}, tuple(supervisors))


_OPEN = [str(s) for s in sorted(OPEN_STATUSES)]
_NO_RISK = literal("", literal_execute=True)


def _watched(only: int | None = None) -> CompoundSelect:
    """The ids of the cases a tick looks at: open ones, and closed ones that still carry
    something (a risk, a finding, a pending spot check, an open observation); with `only`,
    that case's id if it is one of them.

    A UNION of five selects of ids, each read from an index holding only what it selects:
    the open statuses from an index led by status (ix_cases_facets, ix_cases_status_received),
    the risk from ix_cases_attention (partial: ``risk != ''``, written as its predicate, a
    constant, so that both databases see that it holds them), the side tables by theirs. As
    one OR of those tests on `cases`, both databases read every case, closed ones included,
    at every tick: at 100,000 cases (2% open) on PostgreSQL the read of the cases' rows went
    through all 100,000 (20,282 buffers); it reads 4,493 (the 2,392 watched, and their ids
    first), 9,298 buffers, whatever the number of closed cases."""

    def ids(column: Any, *where: Any) -> Any:
        query = select(column.label("id")).where(*where)
        return query if only is None else query.where(column == only)

    return union(
        ids(Case.id, Case.status.in_(_OPEN)),
        ids(Case.id, Case.risk != _NO_RISK),
        ids(CaseFinding.case_id),
        ids(SpotCheck.case_id, SpotCheck.result == SpotCheckResult.PENDING),
        ids(
            Observation.case_id,
            Observation.state == ObservationState.OPEN,
            Observation.case_id.is_not(None),
        ),
    )


def load_snapshots(
    session: Session, only: int | None = None
) -> tuple[list[CaseSnapshot], dict[int, CaseRow]]:
    """Every watched case as a rules snapshot, in six queries whatever their number; with
    `only` (a case id), that case alone if it is watched."""
    ids = _watched(only)
    events: dict[int, list[tuple[str, datetime, Mapping[str, Any]]]] = defaultdict(list)
    for case_id, action, at, detail, reason in session.execute(
        select(
            CaseEvent.case_id, CaseEvent.action, CaseEvent.at, CaseEvent.detail, CaseEvent.reason
        )
        .where(CaseEvent.case_id.in_(ids), CaseEvent.action.in_(EVENT_ACTIONS))
        .order_by(CaseEvent.id)
    ):
        detail = dict(detail or {})
        if reason and "reason" not in detail:
            detail["reason"] = reason
        events[case_id].append((action, at, detail))
    replies: dict[int, list[ReplySnapshot]] = defaultdict(list)
    for case_id, at, state in session.execute(
        select(CaseReply.case_id, CaseReply.at, CaseReply.state)
        .where(CaseReply.case_id.in_(ids))
        .order_by(CaseReply.id)
    ):
        replies[case_id].append(ReplySnapshot(at, state or "sent"))
    visits: dict[int, list[VisitSnapshot]] = defaultdict(list)
    for case_id, at, reached, solved, satisfaction, valid, channel in session.execute(
        select(
            ReturnVisit.case_id,
            ReturnVisit.at,
            ReturnVisit.reached,
            ReturnVisit.solved,
            ReturnVisit.satisfaction,
            ReturnVisit.valid,
            ReturnVisit.channel,
        )
        .where(ReturnVisit.case_id.in_(ids), ReturnVisit.citizen_case_id.is_(None))
        .order_by(ReturnVisit.id)
    ):
        visits[case_id].append(
            VisitSnapshot(at, bool(reached), solved, satisfaction, bool(valid), channel or "")
        )
    checks: dict[int, list[datetime]] = defaultdict(list)
    for case_id, drawn_at in session.execute(
        select(SpotCheck.case_id, SpotCheckDraw.drawn_at)
        .join(SpotCheckDraw, SpotCheck.draw_id == SpotCheckDraw.id)
        .where(SpotCheck.result == SpotCheckResult.PENDING, SpotCheck.case_id.in_(ids))
    ):
        checks[case_id].append(drawn_at)
    observations: dict[int, list[datetime]] = defaultdict(list)
    for case_id, at in session.execute(
        select(Observation.case_id, Observation.at).where(
            Observation.state == ObservationState.OPEN, Observation.case_id.in_(ids)
        )
    ):
        observations[case_id].append(at)

    snapshots: list[CaseSnapshot] = []
    rows: dict[int, CaseRow] = {}
    for r in session.execute(
        select(
            Case.id,
            Case.tracking_number,
            Case.status,
            Case.kind,
            Case.urgent,
            Case.received_at,
            Case.triage_due_at,
            Case.assigned_at,
            Case.due_at,
            Case.extended_to,
            Case.replied_at,
            Case.closed_at,
            Case.rework_count,
            Case.extension_count,
            Case.risk,
            Department.code,
            Department.name,
            Department.email,
        )
        .outerjoin(Department, Case.department_id == Department.id)
        .where(Case.id.in_(ids))
        .order_by(Case.id)
    ):
        snapshots.append(
            CaseSnapshot(
                id=r.id,
                tracking_number=r.tracking_number,
                status=r.status,
                kind=r.kind,
                urgent=bool(r.urgent),
                department=r.code,
                received_at=r.received_at,
                triage_due_at=r.triage_due_at,
                assigned_at=r.assigned_at,
                due_at=r.due_at,
                extended_to=r.extended_to,
                replied_at=r.replied_at,
                closed_at=r.closed_at,
                rework_count=r.rework_count or 0,
                extension_count=r.extension_count or 0,
                replies=tuple(replies.get(r.id, ())),
                visits=tuple(visits.get(r.id, ())),
                events=tuple(events.get(r.id, ())),
                open_spot_checks=tuple(checks.get(r.id, ())),
                open_observations=tuple(observations.get(r.id, ())),
            )
        )
        rows[r.id] = CaseRow(
            r.id, r.tracking_number, r.status, r.risk or "", r.code, r.name or "", r.email or ""
        )
    return snapshots, rows


# -- storing -------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _store(
    session: Session,
    now: datetime,
    evaluations: Mapping[int, Evaluation],
    rows: Mapping[int, CaseRow],
    sent: Mapping[tuple[int, str], datetime],
    result: TickResult,
    *,
    only: int | None = None,
) -> None:
    """Replaces each evaluated case's findings (only the rows that changed are written) and
    sets `cases.risk` where it changed. Without `only` every stored finding of a case not
    evaluated is removed (the case is no longer watched); with `only`, that case's alone.

    When a mail was sent for a finding (a reminder, an escalation) its time stays in the
    finding's detail (`reminded_at`, `escalated_at`) while the finding lasts."""
    existing: dict[tuple[int, str], tuple[int, str, datetime, dict[str, Any]]] = {}
    stored = select(
        CaseFinding.id,
        CaseFinding.case_id,
        CaseFinding.rule,
        CaseFinding.severity,
        CaseFinding.since,
        CaseFinding.detail,
    )
    if only is not None:
        stored = stored.where(CaseFinding.case_id == only)
    for fid, case_id, rule, severity, since, detail in session.execute(stored):
        existing[(case_id, rule)] = (fid, severity, since, dict(detail or {}))
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    keep: set[tuple[int, str]] = set()
    risks: list[dict[str, Any]] = []
    for case_id, evaluation in evaluations.items():
        for f in evaluation.findings:
            detail = dict(f.detail)
            stamp = {Rule.ESCALATED: "escalated_at", Rule.DEADLINE_NEAR: "reminded_at"}.get(f.rule)
            if stamp is not None and (case_id, stamp) in sent:
                # The mail went in this very tick, after the rules looked at the events.
                detail[stamp] = sent[(case_id, stamp)].isoformat()
            key = (case_id, str(f.rule))
            keep.add(key)
            old = existing.get(key)
            for name in MAIL_STAMPS:
                if old is not None and name in old[3] and name not in detail:
                    detail[name] = old[3][name]
            values = {
                "severity": str(f.severity),
                "since": f.since,
                "detail": detail,
                "combination": f.combination,
                "evaluated_at": now,
            }
            if old is None:
                inserts.append({"case_id": case_id, "rule": str(f.rule), **values})
            elif (old[1], old[2], old[3]) != (values["severity"], f.since, detail):
                updates.append({"id": old[0], **values})
        result.findings += len(evaluation.findings)
        risk = evaluation.risk
        result.at_risk += risk == Risk.AT_RISK
        result.overdue += risk == Risk.OVERDUE
        if rows[case_id].risk != risk:
            risks.append({"b_id": case_id, "b_risk": str(risk)})
    gone = [fid for key, (fid, *_rest) in existing.items() if key not in keep]
    for chunk in _chunks(gone):
        session.execute(delete(CaseFinding).where(CaseFinding.id.in_(chunk)))
    if inserts:
        session.execute(insert(CaseFinding.__table__), inserts)
    if updates:
        session.execute(update(CaseFinding), updates)
    # Every finding left was found now, changed or not: the board shows when it was evaluated.
    stamp = CaseFinding.__table__.update().values(evaluated_at=now)  # type: ignore[attr-defined]
    if only is not None:
        stamp = stamp.where(CaseFinding.__table__.c.case_id == only)  # type: ignore[attr-defined]
    session.execute(stamp)
    table = Case.__table__
    if risks:
        # Core, not the ORM: a risk is the tick's note and must not bump the case's version
        # (a supervisor saving the case at the same moment would fail for nothing).
        session.execute(
            table.update()  # type: ignore[attr-defined]
            .where(table.c.id == bindparam("b_id"))  # type: ignore[attr-defined]
            .values(risk=bindparam("b_risk")),
            risks,
        )


def evaluate_case(
    session: Session, case_id: int, now: datetime, rules: RulesPolicy
) -> Evaluation | None:
    """Evaluates one case now, with the tick's rules, and stores its findings and risk as the
    tick would (sending nothing): for the board, right after an action changed the case, so
    that its findings are not those of the last tick. Flushes first (the action's rows are
    read back). None, and no findings, when the case is no longer watched (closed with
    nothing pending). `cases.risk` is written without bumping the case's version."""
    session.flush()
    snapshots, rows = load_snapshots(session, only=case_id)
    evaluations = {snap.id: evaluate(snap, now, rules) for snap in snapshots}
    result = TickResult(now=now)
    if case_id in rows:
        _store(session, now, evaluations, rows, {}, result, only=case_id)
        return evaluations[case_id]
    session.execute(delete(CaseFinding).where(CaseFinding.case_id == case_id))
    table = Case.__table__
    session.execute(
        table.update()  # type: ignore[attr-defined]
        .where(table.c.id == case_id, table.c.risk != "")  # type: ignore[attr-defined]
        .values(risk="")
    )
    return None


# -- mail ----------------------------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def message_id(kind: str, key: str, domain: str) -> str:
    """The Message-ID of a supervision mail: what it is about decides it, so the same mail
    can never be queued twice (the outbox's message ids are unique)."""
    return f"<{kind}.{key}@{domain}>"


def _already_queued(session: Session, ids: Iterable[str]) -> set[str]:
    found: set[str] = set()
    wanted = list(dict.fromkeys(ids))
    for chunk in _chunks(wanted):
        found.update(
            session.scalars(
                select(OutgoingMail.message_id).where(OutgoingMail.message_id.in_(chunk))
            )
        )
    return found


def _local(policy: SupervisionPolicy, moment: datetime) -> str:
    return policy.rules.deadlines.calendar.local(moment).strftime("%Y-%m-%d %H:%M")


def _link(policy: SupervisionPolicy, number: str) -> str:
    return f"{policy.base_url.rstrip('/')}/board/cases/{number}"


def _act(
    session: Session,
    now: datetime,
    policy: SupervisionPolicy,
    evaluations: Mapping[int, Evaluation],
    rows: Mapping[int, CaseRow],
    result: TickResult,
) -> dict[int, datetime]:
    """Queues the due reminders and escalations, one mail per department and kind listing
    its cases (a backlog of overdue cases makes one 督办 mail, not hundreds), and records on
    each case `reminded` or `escalated` {due_at, message_id}: the rules read these, so a case
    is reminded and escalated once per deadline. Returns {(case id, "reminded_at" or
    "escalated_at"): now} for the findings' detail."""
    due = [a for e in evaluations.values() for a in e.actions]
    if not due:
        return {}
    groups: dict[tuple[str, str], list[DueAction]] = defaultdict(list)
    for action in due:
        groups[(str(action.kind), rows[action.case_id].department or "")].append(action)
    ids = {key: _group_id(key, actions, policy) for key, actions in groups.items()}
    queued = _already_queued(session, ids.values())
    todo = {key: actions for key, actions in groups.items() if ids[key] not in queued}
    titles = _titles(session, sorted({a.case_id for acts in todo.values() for a in acts}))
    staff = staff_addresses(session)
    events: list[dict[str, Any]] = []
    sent: dict[tuple[int, str], datetime] = {}
    for (kind, code), actions in sorted(todo.items()):
        actions.sort(key=lambda a: (a.due, a.case_id))
        mid = ids[(kind, code)]
        first = rows[actions[0].case_id]
        listed = [Listed(rows[a.case_id].tracking_number, titles[a.case_id], a) for a in actions]
        if kind == ActionKind.REMINDER:
            to = staff.department(first.department_email, code)
            if not to:
                result.no_address += len(actions)
                continue
            subject, text = reminder_text(first, listed, policy)
            _send(session, mid, to, subject, text, MailKind.REMINDER, policy, now)
            for a in actions:
                due_at = a.due.isoformat()
                events.append(
                    _event(rows[a.case_id], "reminded", now, due_at=due_at, message_id=mid)
                )
                sent[(a.case_id, "reminded_at")] = now
            result.reminders += len(actions)
            continue
        to = _unique([*staff.department(first.department_email, code), *staff.office(policy)])
        for a in actions:
            events.append(
                _event(
                    rows[a.case_id],
                    "escalated",
                    now,
                    reason=system_reasons.OVERDUE_ESCALATED,
                    due_at=a.due.isoformat(),
                    department=code,
                    message_id=mid if to else None,
                )
            )
            sent[(a.case_id, "escalated_at")] = now
        result.escalations += len(actions)
        if not to:
            result.no_address += len(actions)
            continue
        subject, text = escalation_text(first, listed, policy, now)
        _send(session, mid, to, subject, text, "escalation", policy, now)
    for chunk in _chunks(events, 2000):
        session.execute(insert(CaseEvent.__table__), chunk)
    return sent


@dataclass(frozen=True)
class Listed:
    """A case as a reminder or escalation lists it."""

    tracking_number: str
    title: str
    action: DueAction


def _titles(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """The cases' subjects as masked views show them (mail may be forwarded), by id."""
    titles: dict[int, str] = {}
    for chunk in _chunks(ids):
        for cid, masked in session.execute(
            select(Case.id, Case.masked_text).where(Case.id.in_(chunk))
        ):
            titles[cid] = (masked or "").split("\n", 1)[0].strip()[:60] or "（无标题）"
    return titles


def _event(
    row: CaseRow, action: str, at: datetime, reason: str = "", **detail: Any
) -> dict[str, Any]:
    """One line of a case's audit log, as `Case.record` writes it for an event that changes
    nothing else of the case. Written in one INSERT for all the cases of a tick (a first
    tick over a backlog escalates thousands) instead of loading each case to append it."""
    return {
        "case_id": row.id,
        "at": at,
        "action": action,
        "actor_id": None,
        "actor_name": ACTOR,
        "from_status": row.status,
        "to_status": row.status,
        "reason": reason,
        "detail": detail,
        "public": False,
    }


def _group_id(key: tuple[str, str], actions: Sequence[DueAction], policy: SupervisionPolicy) -> str:
    """``<kind>.<department>.<digest of the cases and deadlines>@domain``: the same mail
    about the same cases and deadlines has the same id, so it cannot be queued twice."""
    kind, code = key
    listed = ",".join(sorted(f"{a.case_id}:{_stamp(a.due)}" for a in actions))
    digest = hashlib.sha256(listed.encode()).hexdigest()[:20]
    return message_id(kind, f"{code or 'none'}.{digest}", policy.domain)


def _send(
    session: Session,
    mid: str,
    to: Sequence[str],
    subject: str,
    text: str,
    kind: str,
    policy: SupervisionPolicy,
    now: datetime,
) -> None:
    message = build_message(
        sender=policy.sender, to=list(dict.fromkeys(to)), subject=subject, text=text
    )
    message["Message-ID"] = mid
    # Queued on the wall clock, not at the tick's `now`: a tick run for a chosen time (a
    # missed night, a demonstration) sends its mail now, not when that time comes.
    enqueue(session, message, kind=kind, now=min(now, utcnow()))


def _case_lines(listed: Sequence[Listed], policy: SupervisionPolicy) -> list[str]:
    lines: list[str] = []
    for item in listed[:DIGEST_LINES]:
        due = _local(policy, item.action.due)
        lines.append(f"- {item.tracking_number}（{item.title}），办理时限 {due}")
        lines.append(f"  {_link(policy, item.tracking_number)}")
    if len(listed) > DIGEST_LINES:
        lines.append(f"……另有 {len(listed) - DIGEST_LINES} 件，请登录系统查看。")
    return lines


def reminder_text(
    row: CaseRow, listed: Sequence[Listed], policy: SupervisionPolicy
) -> tuple[str, str]:
    """(subject, text) of the reminder to a department before its deadlines (临期提醒)."""
    first = listed[0].action
    number = listed[0].tracking_number
    if len(listed) == 1:
        subject = f"【临期提醒】{number} 将于 {_local(policy, first.due)} 到期"
    else:
        subject = f"【临期提醒】{len(listed)} 件工单即将到期"
    lines = [
        f"{row.department_name or '各位'}：",
        "",
        f"您部门承办的以下 {len(listed)} 件工单即将到期。请在时限内答复群众；"
        "确需延期的，请尽早在系统中提出延期申请并说明理由。",
        "",
        *_case_lines(listed, policy),
        "",
        policy.office_name,
        "（本邮件由民声系统自动发送）",
        "",
    ]
    return subject, "\n".join(lines)


def escalation_text(
    row: CaseRow,
    listed: Sequence[Listed],
    policy: SupervisionPolicy,
    now: datetime,
) -> tuple[str, str]:
    """(subject, text) of the escalation (督办) to the department head and the supervisors."""
    first = listed[0].action
    number = listed[0].tracking_number
    name = row.department_name or "有关部门"
    if len(listed) == 1:
        due = _local(policy, first.due)
        subject = f"【督办】{name} {number} 已超期（时限 {due}）"
    else:
        subject = f"【督办】{name} {len(listed)} 件工单已超期"
    lines = [
        f"{name}负责人：",
        "",
        f"至 {_local(policy, now)}，以下 {len(listed)} 件工单已超过办理时限及宽限期，仍未答复。"
        "现予督办：请部门负责人督促尽快办理并答复群众，并在系统中报告延误原因。",
        "",
        *_case_lines(listed, policy),
        "",
        policy.office_name,
        "（本邮件由民声系统自动发送）",
        "",
    ]
    return subject, "\n".join(lines)


# -- the daily digest ----------------------------------------------------------------------


def _digest(
    session: Session,
    now: datetime,
    policy: SupervisionPolicy,
    evaluations: Mapping[int, Evaluation],
    rows: Mapping[int, CaseRow],
    result: TickResult,
) -> None:
    """Once a day, at or after `digest_hour` local time: the at-risk and overdue cases to the
    supervisors, and each department's own to that department."""
    local = policy.rules.deadlines.calendar.local(now)
    if local.hour < policy.digest_hour:
        return
    day = local.date().isoformat()
    flagged = {cid: e for cid, e in evaluations.items() if e.risk != Risk.NONE}
    staff = staff_addresses(session)
    by_department: dict[str, list[int]] = defaultdict(list)
    for cid in flagged:
        if rows[cid].department:
            by_department[rows[cid].department or ""].append(cid)
    wanted: dict[str, tuple[list[str], list[int], str]] = {}
    office = staff.office(policy)
    if office:
        wanted[message_id("digest", f"{day}.office", policy.domain)] = (office, sorted(flagged), "")
    for code, ids in by_department.items():
        to = staff.department(rows[ids[0]].department_email, code)
        if to:
            wanted[message_id("digest", f"{day}.{code}", policy.domain)] = (to, sorted(ids), code)
    if not wanted:
        return
    queued = _already_queued(session, wanted)
    todo = {mid: w for mid, w in wanted.items() if mid not in queued}
    if not todo:
        return
    shown = sorted({cid for _, ids, _ in todo.values() for cid in ids[:DIGEST_LINES]})
    titles: dict[int, str] = {}
    for chunk in _chunks(shown):
        for cid, masked in session.execute(
            select(Case.id, Case.masked_text).where(Case.id.in_(chunk))
        ):
            titles[cid] = ((masked or "").split("\n", 1)[0].strip()[:40]) or "（无标题）"
    # Unanswered observations on departments are findings without a case: the office's
    # digest lists them after the cases.
    on_departments = department_findings(session)
    for mid, (to, ids, code) in todo.items():
        subject, text = digest_text(
            day,
            ids,
            code,
            evaluations,
            rows,
            titles,
            policy,
            on_departments=() if code else on_departments,
        )
        _send(session, mid, to, subject, text, MailKind.DIGEST, policy, now)
        result.digests += 1


def digest_text(
    day: str,
    ids: Sequence[int],
    department: str,
    evaluations: Mapping[int, Evaluation],
    rows: Mapping[int, CaseRow],
    titles: Mapping[int, str],
    policy: SupervisionPolicy,
    *,
    on_departments: Sequence[DepartmentFinding] = (),
) -> tuple[str, str]:
    """(subject, text) of one day's digest (每日督查简报), for the office or one department;
    `on_departments`: the departments' unanswered observations (office digest only)."""
    overdue = [cid for cid in ids if evaluations[cid].risk == Risk.OVERDUE]
    at_risk = [cid for cid in ids if evaluations[cid].risk == Risk.AT_RISK]
    name = rows[ids[0]].department_name if department and ids else ""
    subject = f"【每日督查简报】{day} {name}逾期 {len(overdue)} 件，风险 {len(at_risk)} 件"
    lines = [f"{name or '各位督查人员'}：", "", f"截至 {day}，{name or '全区'}在办工单中："]
    if not ids:
        lines.append("没有逾期或有风险的工单。")
    for label, group in (("逾期", overdue), ("临期或有风险", at_risk)):
        if not group:
            continue
        lines += ["", f"{label}（{len(group)} 件）："]
        for cid in group[:DIGEST_LINES]:
            row = rows[cid]
            rules = "、".join(
                RULE_LABELS.get(str(f.rule), str(f.rule)) for f in evaluations[cid].findings
            )
            dept = "" if department else f"[{row.department_name or '待分派'}] "
            lines.append(f"- {row.tracking_number} {dept}{titles.get(cid, '')}：{rules}")
            lines.append(f"  {_link(policy, row.tracking_number)}")
        if len(group) > DIGEST_LINES:
            lines.append(f"……另有 {len(group) - DIGEST_LINES} 件，请登录系统查看。")
    if on_departments:
        waiting = sum(f.open for f in on_departments)
        lines += ["", f"对部门的监督意见待答复（{waiting} 条）："]
        for f in on_departments:
            lines.append(
                f"- {f.department_name}：{f.open} 条，最早提出于 {_local(policy, f.since)}"
            )
        lines.append(f"  {policy.base_url.rstrip('/')}/board/observations/")
    lines += ["", policy.office_name, "（本邮件由民声系统自动发送）", ""]
    return subject, "\n".join(lines)


RULE_LABELS: Mapping[str, str] = {
    "not_acknowledged": "未告知受理",
    "triage_overdue": "分派超时",
    "deadline_near": "即将到期",
    "overdue": "已超期",
    "escalated": "已督办",
    "extension_pending": "延期待审批",
    "reply_unsigned": "答复待负责人签发",
    "delay_unreported": "未报告延误原因",
    "visit_overdue": "回访超时",
    "rework_pending": "待重办",
    "review_pending": "待督查复核",
    "spot_check_pending": "待抽查核实",
    "spot_check_failed": "抽查不合格",
    "observation_open": "监督意见待答复",
    "calendar_unknown": "节假日未公布",
}
"""The rules in Chinese, for mail (the board translates them through the UI catalogue)."""
