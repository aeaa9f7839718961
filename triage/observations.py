"""External supervisors' observations (效能监督员, 社会监督) and the supervisors' answers.

An observer files an observation on a case or on a department; supervisors must answer each
one (an unanswered one is the `observation_open` finding of the rules engine). An observation
on a case is logged on the case ("observation_filed", "observation_answered", detail
{observation_id}); one on a department lives in its own row only, and while it waits for an
answer it is an office-level finding of that department (`department_findings`: the
supervisors' daily digest and the observations page list it; the tick stores no case
finding for it).

Who sees what (decided here, enforced by the web layer): supervisors and administrators see
every observation; an observer sees only their own and the answers to them, never another
observer's: observers are appointed one by one, and what one of them reports is between them
and the office. Observers see every text masked (triage/privacy.py): `masked_texts` gives the
masked body and answer for them.

Like every use case, these functions flush and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select, update
from sqlalchemy.orm import Session, object_session, selectinload

from triage.case_people import people_of
from triage.models import (
    N_,
    Actor,
    Case,
    Department,
    IllegalTransition,
    Observation,
    ObservationState,
    Role,
    User,
)
from triage.privacy import People

MAX_LENGTH = 4000


def may_file(user: User) -> bool:
    """Only external supervisors file observations."""
    return user.active and user.role == Role.OBSERVER


def may_answer(user: User) -> bool:
    return user.active and user.role in (Role.SUPERVISOR, Role.ADMIN)


def may_read(user: User, observation: Observation) -> bool:
    if may_answer(user):
        return True
    return may_file(user) and observation.observer_id == user.id


def _text(text: str, missing: str) -> str:
    text = (text or "").strip()
    if not text:
        raise IllegalTransition(missing)
    if len(text) > MAX_LENGTH:
        raise IllegalTransition(N_("At most %(n)s characters, please."), n=MAX_LENGTH)
    return text


def file(
    session: Session,
    observer: User,
    now: datetime,
    body: str,
    *,
    case: Case | None = None,
    department: Department | None = None,
) -> Observation:
    """An observer's observation on `case` or on `department` (exactly one of them)."""
    if not may_file(observer):
        raise IllegalTransition(N_("Only external supervisors file observations."))
    if (case is None) == (department is None):
        raise IllegalTransition(N_("An observation is on a case or on a department."))
    observation = Observation(
        observer_id=observer.id,
        observer=observer,
        case_id=case.id if case is not None else None,
        department_id=department.id if department is not None else None,
        at=now,
        body=_text(body, N_("Please write the observation.")),
        state=ObservationState.OPEN,
        answer="",
    )
    session.add(observation)
    session.flush()
    if case is not None:
        case.note_observation(observation, now)
        session.flush()
    return observation


def answer(
    session: Session, observation: Observation, actor: Actor, now: datetime, text: str
) -> None:
    """A supervisor's answer; logged on the case when the observation is on one."""
    if isinstance(actor, User) and not may_answer(actor):
        raise IllegalTransition(N_("Only supervisors answer observations."))
    text = _text(text, N_("Please write the answer."))
    # Claimed with a conditional UPDATE: of two supervisors answering at once, the second is
    # refused instead of overwriting the first answer.
    claimed: Any = session.execute(
        update(Observation)
        .where(Observation.id == observation.id, Observation.state == ObservationState.OPEN)
        .values(answered_at=now)
        .execution_options(synchronize_session=False)
    )
    if observation.state != ObservationState.OPEN or claimed.rowcount != 1:
        raise IllegalTransition(N_("This observation was already answered."))
    observation.answer = text
    observation.state = ObservationState.ANSWERED
    observation.answered_at = now
    observation.answered_by_id = actor.id if isinstance(actor, User) else None
    if observation.case_id is not None:
        target = observation.case or session.get(Case, observation.case_id)
        assert target is not None
        target.answer_observation(observation, actor, now)
    session.flush()


def _listing(query: Select[tuple[Observation]]) -> Select[tuple[Observation]]:
    # Open ones first, then the newest.
    return query.order_by(
        case((Observation.state == ObservationState.OPEN, 0), else_=1),
        Observation.at.desc(),
        Observation.id.desc(),
    ).options(
        selectinload(Observation.case),
        selectinload(Observation.department),
        selectinload(Observation.observer),
        selectinload(Observation.answered_by),
    )


def visible_to(session: Session, user: User, *, limit: int = 200) -> list[Observation]:
    """What `user` may read, open ones first: all for supervisors, their own for observers,
    nothing for anyone else."""
    query = select(Observation)
    if may_answer(user):
        pass
    elif may_file(user):
        query = query.where(Observation.observer_id == user.id)
    else:
        return []
    return list(session.scalars(_listing(query).limit(limit)))


def on_case(session: Session, user: User, case_: Case) -> list[Observation]:
    """The observations on `case_` that `user` may read."""
    query = select(Observation).where(Observation.case_id == case_.id)
    if may_answer(user):
        pass
    elif may_file(user):
        query = query.where(Observation.observer_id == user.id)
    else:
        return []
    return list(session.scalars(_listing(query)))


def open_count(session: Session) -> int:
    """How many observations wait for an answer."""
    count = session.scalar(
        select(func.count(Observation.id)).where(Observation.state == ObservationState.OPEN)
    )
    return count or 0


@dataclass(frozen=True)
class DepartmentFinding:
    """The `observation_open` finding of a department: observations filed on the department
    itself (not on one of its cases) that wait for an answer. It belongs to no case, so the
    tick stores nothing for it: it is read from the observations when shown, in the
    supervisors' daily digest and on the observations page (office-level findings).

    `open` is how many wait, `since` when the oldest was filed (UTC).
    """

    department_code: str
    department_name: str
    open: int
    since: datetime
    rule: str = "observation_open"


def department_findings(session: Session) -> list[DepartmentFinding]:
    """Departments with unanswered observations on them, the longest waiting first."""
    rows = session.execute(
        select(
            Department.code, Department.name, func.count(Observation.id), func.min(Observation.at)
        )
        .join(Observation, Observation.department_id == Department.id)
        .where(Observation.state == ObservationState.OPEN, Observation.case_id.is_(None))
        .group_by(Department.code, Department.name)
    ).all()
    found = [DepartmentFinding(code, name, n, since) for code, name, n, since in rows]
    return sorted(found, key=lambda f: (f.since, f.department_code))


def masked_texts(observation: Observation, group: People | None = None) -> tuple[str, str]:
    """(body, answer) as an observer may read them: the case's complainant's contact (and
    names given on later calls), the citizens of the cases merged with it or linked to it
    (``group``, read when None: `triage.case_people`) and anything that looks like a phone,
    ID number or email masked."""
    c = observation.case
    people = People()
    if c is not None:
        people = People.of(c.caller_names, [c.contact_phone], [c.contact_email])
        session = object_session(c)
        if group is None and session is not None and c.id is not None:
            group = people_of(session, c.id)
        people |= group or People()
    return people.mask(observation.body), people.mask(observation.answer)
