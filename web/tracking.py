"""What a citizen sees of a case on the tracking page, masked.

Whoever holds a tracking number and its query code sees the case's public side: status,
department, the reply, the public timeline and, for a rejected complaint, the public reason.
Free texts are masked with the case's own contact (a leaked code shows no phone number).
A merged case also shows the case it was merged into, since that is where its problem is
handled; that case's texts are masked with *its* complainant's contact, who is someone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


def _masked(case: Case, text: str) -> str:
    return mask_text(
        text,
        names=[case.contact_name],
        phones=[case.contact_phone],
        emails=[case.contact_email],
    )


def public_case(case: Case) -> PublicCase:
    """The public side of `case`, masked with its own complainant's contact."""
    reply = case.latest_reply
    return PublicCase(
        number=case.tracking_number,
        status=case.status,
        subject=_masked(case, case.subject),
        department=case.department,
        due_at=case.due_at,
        reply=_masked(case, reply.body) if reply is not None else "",
        timeline=[e for e in case.events if e.public],
        rejection_code=case.rejection_code if case.status == Status.REJECTED else "",
        public_reason=_masked(case, case.public_reason) if case.status == Status.REJECTED else "",
        referred_to=case.referred_to if case.status == Status.REJECTED else "",
    )


def tracking_view(case: Case) -> dict[str, PublicCase | None]:
    """The template context of the tracking page for a case found by number and code:
    `case`, and `target`, the case it was merged into (None unless merged)."""
    target = case.merge_target if case.status == Status.MERGED else None
    return {
        "case": public_case(case),
        "target": public_case(target) if target is not None else None,
    }
