"""Cases as flat records for export (JSON Lines, CSV) and for other tools."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from intake.submission import Channel
from triage.case_people import people_by_case
from triage.mail_intake import messages_by_case
from triage.models import CALLER_NAME_ACTIONS, Case, CaseEvent, CaseFinding
from triage.privacy import People, mask_email, mask_name, mask_phone

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
    "extended_to",
    "overdue",
    "replied_at",
    "closed_at",
    "merged_into",
    "sent_back_count",
    "rework_count",
    "extension_count",
    "satisfaction",
    "solved",
    "visits",
    "findings",
    "contact_name",
    "contact_phone",
    "contact_email",
    "caller_key",
    "place",
    "urge_count",
    "subject",
    "body",
    "message_id",
    "messages",
    "events",
    "api_address",
    "api_lat",
    "api_long",
    "api_media_url",
)
# The action of the event that records what an Open311 client sent beside the description
# (web/open311/registration.py): the place and the media address.
API_FILED = "api_filed"


def _time(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat(timespec="seconds") if value else None


def _external_id(case: Case, text: Callable[[str], str]) -> str | None:
    """The id the channel gave the case, unless it is a secret: a web form's token is what
    lets its browser see the receipt, so it never leaves the database. Other ids are masked
    like free text (phone systems build call ids from the caller's number)."""
    if case.channel == Channel.WEB:
        return None
    return text(case.external_id)


_REUSED_ID = re.compile(r"#[0-9a-f]{16}$")


def _message_id(case: Case, text: Callable[[str], str]) -> str | None:
    """The Message-ID an email case came with (None for other channels and for mail that
    had none, whose id is a hash of its bytes), without the hash that tells a reused id's
    second mail apart; masked like free text (ids often carry the sender's address)."""
    if case.channel != Channel.EMAIL or case.external_id.startswith(("sha256:", "incoming:")):
        return None
    return text(_REUSED_ID.sub("", case.external_id))


def case_record(
    case: Case,
    events: int,
    tz: ZoneInfo,
    masked: bool = True,
    messages: Sequence[str] = (),
    findings: Sequence[CaseFinding] = (),
    now: datetime | None = None,
    api_filed: dict[str, Any] | None = None,
    caller_names: Sequence[str] = (),
    people: People | None = None,
) -> dict[str, Any]:
    """One case as a flat record; ``masked``: personal data masked, in free text too (the
    contact's name and ``caller_names``, the names the caller gave on later calls, and
    ``people``, the other citizens whose data its texts may carry: those of the cases merged
    with it or linked to it, `triage.case_people`).
    ``messages``: the texts of later messages on the case (threaded replies, bounces),
    oldest first. ``findings``: the case's findings of the last supervision tick, listed as
    ``{rule, combination, severity, since}``; ``overdue`` is the case's state at ``now``
    (default: the current time). ``visits`` are the return visits to the case's own
    complainant, without their notes (free text about the citizen). ``api_filed``: the
    detail of the case's ``api_filed`` event (cases filed through Open311): ``api_address``
    (the address, or else the address id, masked like free text), ``api_lat`` /
    ``api_long`` (degrees) and ``api_media_url`` (masked like free text); None otherwise."""
    visit = case.latest_visit
    now = now or datetime.now(UTC)

    everyone = People.of(
        [case.contact_name, *caller_names], [case.contact_phone], [case.contact_email]
    ) | (people or People())

    def text(value: str) -> str:
        if not masked or not value:
            return value
        return everyone.mask(value)

    return {
        "tracking_number": case.tracking_number,
        "channel": case.channel,
        "external_id": _external_id(case, text),
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
        "urgent_reasons": [text(r) for r in case.urgent_reasons],
        "received_at": _time(case.received_at, tz),
        "triage_due_at": _time(case.triage_due_at, tz),
        "assigned_at": _time(case.assigned_at, tz),
        "due_at": _time(case.due_at, tz),
        "extended_to": _time(case.extended_to, tz),
        "overdue": case.is_overdue(now),
        "replied_at": _time(case.replied_at, tz),
        "closed_at": _time(case.closed_at, tz),
        "merged_into": case.merged_into.tracking_number if case.merged_into else None,
        "sent_back_count": case.sent_back_count,
        "rework_count": case.rework_count,
        "extension_count": case.extension_count,
        "satisfaction": visit.satisfaction if visit else None,
        "solved": visit.solved if visit else None,
        "visits": [
            {
                "at": _time(v.at, tz),
                "channel": v.channel,
                "reached": v.reached,
                "solved": v.solved,
                "satisfaction": v.satisfaction,
                "valid": v.valid,
                "contacted": v.contacted,
            }
            for v in case.own_visits
        ],
        "findings": [
            {
                "rule": f.rule,
                "combination": f.combination,
                "severity": f.severity,
                "since": _time(f.since, tz),
            }
            for f in sorted(findings, key=lambda f: (f.combination, f.rule))
        ],
        "contact_name": mask_name(case.contact_name) if masked else case.contact_name,
        "contact_phone": mask_phone(case.contact_phone) if masked else case.contact_phone,
        "contact_email": mask_email(case.contact_email) if masked else case.contact_email,
        # Pseudonymous (triage/callers.py): counts repeat callers without their number.
        "caller_key": case.caller_key or None,
        "place": text(case.place),
        "urge_count": case.urge_count,
        "subject": text(case.subject),
        "body": text(case.body),
        "message_id": _message_id(case, text),
        "messages": [text(m) for m in messages],
        "events": events,
        **_api_fields(api_filed or {}, text),
    }


def _api_fields(filed: dict[str, Any], text: Callable[[str], str]) -> dict[str, Any]:
    address = str(filed.get("address_string") or filed.get("address_id") or "")
    media = str(filed.get("media_url") or "")
    return {
        "api_address": text(address) if address else None,
        "api_lat": filed.get("lat"),
        "api_long": filed.get("long"),
        "api_media_url": text(media) if media else None,
    }


def iter_records(
    session: Session,
    tz: ZoneInfo,
    masked: bool = True,
    batch: int = 500,
    now: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Every case, oldest first, in batches so a large database does not fill memory;
    ``overdue`` is as of ``now`` (default: the start of the export)."""
    now = now or datetime.now(UTC)
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
        later = messages_by_case(session, ids)
        findings: dict[int, list[CaseFinding]] = {}
        for f in session.scalars(select(CaseFinding).where(CaseFinding.case_id.in_(ids))):
            findings.setdefault(f.case_id, []).append(f)
        filed = {
            cid: dict(detail or {})
            for cid, detail in session.execute(
                select(CaseEvent.case_id, CaseEvent.detail).where(
                    CaseEvent.case_id.in_([c.id for c in cases if c.channel == Channel.API]),
                    CaseEvent.action == API_FILED,
                )
            )
        }
        names: dict[int, list[str]] = {}
        people = people_by_case(session, ids) if masked else {}
        if masked:
            for cid, detail in session.execute(
                select(CaseEvent.case_id, CaseEvent.detail).where(
                    CaseEvent.case_id.in_(ids), CaseEvent.action.in_(sorted(CALLER_NAME_ACTIONS))
                )
            ):
                if name := (detail or {}).get("caller_name"):
                    names.setdefault(cid, []).append(str(name))
        for c in cases:
            texts = [m.text for m in later.get(c.id, [])]
            yield case_record(
                c,
                n.get(c.id, 0),
                tz,
                masked,
                texts,
                findings.get(c.id, ()),
                now,
                filed.get(c.id),
                caller_names=names.get(c.id, ()),
                people=people.get(c.id),
            )
        last_id = ids[-1]
        session.expunge_all()


def write_jsonl(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for r in records:
        out.write(json.dumps(r, ensure_ascii=False) + "\n")
        n += 1
    return n


# A cell starting with one of these is a formula to Excel and LibreOffice (OWASP, "CSV
# injection"); full-width forms too, since spreadsheet apps on Chinese systems fold them.
_FORMULA_START = tuple("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that a spreadsheet shows as text and never runs.

    Lists and dicts become JSON; a string that a spreadsheet would read as a formula gets a
    leading apostrophe (``=HYPERLINK(…)`` → ``'=HYPERLINK(…)``); control characters go.
    Numbers, booleans and None stay as they are.
    """
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, str):
        return value
    value = _CONTROL.sub("", value)
    if value.lstrip(" ").startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """CSV as Excel on Chinese Windows opens it: UTF-8 with a byte-order mark, CRLF line
    ends, every cell safe (`csv_cell`). Returns the number of records written."""
    out.write("\ufeff")
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    n = 0
    for r in records:
        writer.writerow({k: csv_cell(v) for k, v in r.items()})
        n += 1
    return n
