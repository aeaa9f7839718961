"""Cases as flat records for export (JSON Lines, CSV) and for other tools."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from triage.models import Case, CaseEvent
from triage.privacy import mask_email, mask_name, mask_phone

FIELDS = (
    "tracking_number",
    "channel",
    "external_id",
    "kind",
    "status",
    "department",
    "suggested_department",
    "confidence",
    "alternatives",
    "model_version",
    "urgent",
    "urgent_reasons",
    "received_at",
    "triage_due_at",
    "assigned_at",
    "due_at",
    "replied_at",
    "closed_at",
    "merged_into",
    "sent_back_count",
    "rework_count",
    "satisfaction",
    "solved",
    "contact_name",
    "contact_phone",
    "contact_email",
    "subject",
    "body",
    "events",
)


def _time(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat(timespec="seconds") if value else None


def case_record(case: Case, events: int, tz: ZoneInfo, masked: bool = True) -> dict[str, Any]:
    visit = case.latest_visit
    return {
        "tracking_number": case.tracking_number,
        "channel": case.channel,
        "external_id": case.external_id,
        "kind": case.kind,
        "status": case.status,
        "department": case.department.code if case.department else None,
        "suggested_department": (
            case.suggested_department.code if case.suggested_department else None
        ),
        "confidence": case.confidence,
        "alternatives": case.alternatives,
        "model_version": case.model_version,
        "urgent": case.urgent,
        "urgent_reasons": case.urgent_reasons,
        "received_at": _time(case.received_at, tz),
        "triage_due_at": _time(case.triage_due_at, tz),
        "assigned_at": _time(case.assigned_at, tz),
        "due_at": _time(case.due_at, tz),
        "replied_at": _time(case.replied_at, tz),
        "closed_at": _time(case.closed_at, tz),
        "merged_into": case.merged_into.tracking_number if case.merged_into else None,
        "sent_back_count": case.sent_back_count,
        "rework_count": case.rework_count,
        "satisfaction": visit.satisfaction if visit else None,
        "solved": visit.solved if visit else None,
        "contact_name": mask_name(case.contact_name) if masked else case.contact_name,
        "contact_phone": mask_phone(case.contact_phone) if masked else case.contact_phone,
        "contact_email": mask_email(case.contact_email) if masked else case.contact_email,
        "subject": case.subject,
        "body": case.body,
        "events": events,
    }


def iter_records(
    session: Session, tz: ZoneInfo, masked: bool = True, batch: int = 500
) -> Iterator[dict[str, Any]]:
    """Every case, oldest first, in batches so a large database does not fill memory."""
    counts = select(CaseEvent.case_id, func.count().label("n")).group_by(CaseEvent.case_id)
    last_id = 0
    while True:
        cases = session.scalars(
            select(Case)
            .where(Case.id > last_id)
            .order_by(Case.id)
            .limit(batch)
            .options(
                selectinload(Case.department),
                selectinload(Case.suggested_department),
                selectinload(Case.visits),
                selectinload(Case.merged_into),
            )
        ).all()
        if not cases:
            return
        ids = [c.id for c in cases]
        n = {cid: k for cid, k in session.execute(counts.where(CaseEvent.case_id.in_(ids)))}
        for c in cases:
            yield case_record(c, n.get(c.id, 0), tz, masked)
        last_id = ids[-1]
        session.expunge_all()


def write_jsonl(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for r in records:
        out.write(json.dumps(r, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_csv(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    n = 0
    for r in records:
        writer.writerow(
            {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                for k, v in r.items()
            }
        )
        n += 1
    return n
