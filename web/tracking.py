"""What a citizen sees of a case on the tracking page, masked.

Whoever holds a tracking number and its query code sees the case's public side: status,
department, the reply, the public timeline and, for a rejected complaint, the public reason.
Free texts are masked with the case's own contact (a leaked code shows no phone number).
A merged case also shows the case it was merged into, since that is where its problem is
handled; that case's texts are masked with *its* complainant's contact, who is someone else.
Texts of a case that others were merged into are also masked with the merged cases'
contacts: a reply that names one complainant is read by all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import object_session

from triage.cases import citizens_to_call
from triage.models import Case, CaseEvent, Department, Status
from triage.privacy import mask_text


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


def public_case(case: Case, merged: Sequence[Case] = ()) -> PublicCase:
    """The public side of `case`, masked with its complainant's contact and those of the
    cases `merged` into it."""
    people = [case, *merged]

    def masked(text: str) -> str:
        return mask_text(
            text,
            names=[n for c in people for n in c.caller_names],
            phones=[c.contact_phone for c in people],
            emails=[c.contact_email for c in people],
            # The office's own numbers in its reply are for the citizen to call.
            generic=False,
        )

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
    `case`, and `target`, the case it was merged into (None unless merged)."""
    session = object_session(case)

    def merged_into(c: Case) -> list[Case]:
        return citizens_to_call(session, c) if session is not None else []

    target = case.merge_target if case.status == Status.MERGED else None
    return {
        "case": public_case(case, merged_into(case)),
        "target": public_case(target, merged_into(target)) if target is not None else None,
    }
