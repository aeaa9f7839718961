"""A case as GeoReport's `requests` shows it to anybody: public fields only, texts masked.

Free text only for cases filed through this API (channel `api`), whose callers publish
them: the description, the public reply (`status_notes`), the address, lat/long and
`media_url`, the texts masked as observers and exports see free text (the complainant's
name, phone and email, and anything that looks like a phone, ID-card number or email
address). A case of any other channel (web form, email, phone) is listed with its status,
service, department and dates only: its citizen never agreed to publication, and /track
shows its texts only with the query code. Never a name, phone, email, account or device.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.submission import Channel
from triage.case_people import people_of
from triage.models import OPEN_STATUSES, Case, CaseEvent, Department, Status
from triage.privacy import People
from web.i18n import rejection_label
from web.open311.registration import FILED_ACTION
from web.open311.services import Service, service_of_department
from web.tracking import public_case


def w3c(value: datetime | None, zone: ZoneInfo) -> str | None:
    """A W3C date-time in the office's zone, with its offset: 2026-11-30T09:00:00+08:00."""
    if value is None:
        return None
    return value.astimezone(zone).isoformat(timespec="seconds")


def filed_details(session: Session, case_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The detail of each case's `api_filed` event, by case id (one query for a page)."""
    if not case_ids:
        return {}
    rows = session.execute(
        select(CaseEvent.case_id, CaseEvent.detail).where(
            CaseEvent.case_id.in_(case_ids), CaseEvent.action == FILED_ACTION
        )
    ).all()
    return {case_id: dict(detail or {}) for case_id, detail in rows}


def service_of_case(
    case: Case, services: Sequence[Service], filed: dict[str, Any] | None
) -> Service | None:
    """The service a case is listed under: the caller's service_code (an api case's hint)
    until a person dispatches the case; once dispatched, its department's first service;
    a case of another channel not yet dispatched, the suggested department's."""
    if case.department is not None:
        return service_of_department(services, case.department.code)
    hint = (filed or {}).get("service_code")
    if case.channel == Channel.API and hint:
        found = next((s for s in services if s.code == hint), None)
        if found is not None:
            return found
    department = case.suggested_department
    return service_of_department(services, department.code) if department else None


def _department_name(department: Department | None, english: bool) -> str | None:
    if department is None:
        return None
    return department.name_en if english and department.name_en else department.name


def listed_request(
    session: Session,
    case: Case,
    services: Sequence[Service],
    zone: ZoneInfo,
    english: bool,
    filed: dict[str, Any] | None,
    people: People | None = None,
) -> dict[str, Any]:
    """The public GeoReport fields of `case`; `filed`: the detail of its api_filed event;
    `people`: the citizens its texts may carry (`triage.case_people`; read when None)."""
    if people is None:
        people = people_of(session, case.id)
    # Names given on later calls too, and the citizens of its merged and linked cases, as
    # the case page masks them.
    everyone = People.of(case.caller_names, [case.contact_phone], [case.contact_email]) | people

    def masked(text: str) -> str:
        return everyone.mask(text)

    shown = public_case(case, people)
    filed = filed or {}
    service = service_of_case(case, services, filed)
    open_ = case.status in OPEN_STATUSES
    notes = shown.reply
    if case.status == Status.REJECTED:
        parts = (rejection_label(case.rejection_code), shown.public_reason)
        notes = " ".join(p for p in parts if p)
    elif case.status == Status.MERGED and case.merge_target is not None:
        notes = _("Merged into %(number)s", number=case.merge_target.tracking_number)
    updated = max((e.at for e in case.events), default=case.received_at)
    listed: dict[str, Any] = {
        "service_request_id": case.tracking_number,
        "status": "open" if open_ else "closed",
        "status_notes": None,
        "service_name": service.name if service else None,
        "service_code": service.code if service else None,
        "description": None,
        "agency_responsible": _department_name(case.department, english),
        "service_notice": None,
        "requested_datetime": w3c(case.received_at, zone),
        "updated_datetime": w3c(updated, zone),
        "expected_datetime": w3c(case.due_at, zone) if open_ else None,
        "address": None,
        "address_id": None,
        "zipcode": None,
        "lat": None,
        "long": None,
        "media_url": None,
    }
    if case.channel != Channel.API:
        return listed
    listed.update(
        # Anyone may read this list, not only the citizen with the query code: the reply and
        # the rejection reason are masked like the description, office numbers included.
        status_notes=masked(notes) if notes else None,
        description=masked(case.body),
        address=masked(str(filed["address_string"])) if filed.get("address_string") else None,
        address_id=masked(str(filed["address_id"])) if filed.get("address_id") else None,
        lat=filed.get("lat"),
        long=filed.get("long"),
        media_url=masked(str(filed["media_url"])) if filed.get("media_url") else None,
    )
    return listed
