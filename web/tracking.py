"""What a citizen sees of a case on the tracking page, masked.

Whoever holds a tracking number and its query code sees the case's public side: status,
department, the reply, the public timeline and, for a rejected complaint, the public reason.
Free texts are masked with the case's own contact (a leaked code shows no phone number).
A merged case also shows the case it was merged into, since that is where its problem is
handled. Every text is masked with the contacts of the whole group of merged and linked
cases (`triage.case_people`): a reply that names one complainant is read by all of them,
and a merged citizen's own page shows the target's texts, which name someone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import object_session

from triage.case_people import people_of
from triage.models import Case, CaseEvent, Department, Status
from triage.privacy import People


@dataclass(frozen=True)
class PublicCase:
    """The public side of one case. Texts are already masked; `rejection_code` is looked up
    in the configured list by the template (`rejection_label`)."""

    number: str
    status: str
    subject: str
    department: Department | None
    due_at: datetime | None
    reply: str
    timeline: list[CaseEvent]
    rejection_code: str = ""
    public_reason: str = ""
    referred_to: str = ""

    @property
    def awaits_reply(self) -> bool:
        return self.due_at is not None and self.status in (Status.ASSIGNED, Status.IN_PROGRESS)


def public_case(case: Case, people: People | None = None) -> PublicCase:
    """The public side of `case`, masked with its complainant's contact and ``people``, the
    other citizens its texts may carry (default: its group's, `triage.case_people`)."""
    if people is None:
        session = object_session(case)
        people = people_of(session, case.id) if session is not None else People()
    everyone = People.of(case.caller_names, [case.contact_phone], [case.contact_email]) | people

    def masked(text: str) -> str:
        # The office's own numbers in its reply are for the citizen to call.
        return everyone.mask(text, generic=False) if text else text

    reply = case.latest_reply
    rejected = case.status == Status.REJECTED
    return PublicCase(
        number=case.tracking_number,
        status=case.status,
        subject=masked(case.subject),
        department=case.department,
        due_at=case.due_at,
        reply=masked(reply.body) if reply is not None else "",
        timeline=[e for e in case.events if e.public],
        rejection_code=case.rejection_code if rejected else "",
        public_reason=masked(case.public_reason) if rejected else "",
        referred_to=case.referred_to if rejected else "",
    )


def tracking_view(case: Case) -> dict[str, PublicCase | None]:
    """The template context of the tracking page for a case found by number and code:
    `case`, and `target`, the case it was merged into (None unless merged); both masked
    with the people of their group, which is one group."""
    target = case.merge_target if case.status == Status.MERGED else None
    return {
        "case": public_case(case),
        "target": public_case(target) if target is not None else None,
    }
