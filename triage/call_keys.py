"""Every call the system has seen, by its idempotency key.

A call's key (the phone system's call id, or ``call:<number>@<UTC time>`` without one,
`intake.phone.call_key`) is either a case's own ``external_id`` (the call opened the case,
at the desk or by import) or, for a repeat call (催办) or a reopen logged at the desk with
its call id, a `CallKey` row pointing at the case and the event. `known` reads both, so
the next day's export that holds such a call creates nothing new, and the desk does not log
again a call the import (or another operator) already has.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from intake.phone import CallRow, call_key
from triage.callers import backfill_caller_keys, caller_number
from triage.models import AppMark, CallKey, Case, CaseEvent


def note(session: Session, case: Case, event: CaseEvent, key: str, channel: str = "phone") -> None:
    """Records that the call `key` (channel `channel`) is `event` of `case`: flushed with
    them, in a savepoint. A key already recorded (also by a concurrent request) is left to
    its first case. Raises what flushing the case raises (StaleDataError: the case changed
    meanwhile)."""
    key = key.strip()[:255]
    if not key or session.get(CallKey, (channel, key)) is not None:
        return
    session.flush()  # the case's own changes outside the savepoint: their errors are theirs
    try:
        with session.begin_nested():
            session.add(CallKey(channel=channel, key=key, case=case, event=event))
    except IntegrityError:
        pass  # recorded at the same time by another request: the first keeps it


def known(session: Session, channel: str, keys: Iterable[str]) -> dict[str, tuple[int, str]]:
    """The keys of ``keys`` recorded on an event (not a case's own external id) → (case id,
    tracking number) of their case. One SELECT per 500 keys."""
    wanted = sorted({k for k in keys if k})
    out: dict[str, tuple[int, str]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for key, case_id, number in session.execute(
            select(CallKey.key, Case.id, Case.tracking_number)
            .join(Case, Case.id == CallKey.case_id)
            .where(CallKey.channel == str(channel), CallKey.key.in_(chunk))
        ):
            out[key] = (case_id, number)
    return out


def case_of(session: Session, channel: str, key: str) -> Case | None:
    """The case whose event holds the call `key`, or None."""
    return session.scalar(
        select(Case)
        .join(CallKey, CallKey.case_id == Case.id)
        .where(CallKey.channel == str(channel), CallKey.key == key)
    )


# -- keys of the caller's main number -------------------------------------------------------

AREA_CODE_MARK = "caller_keys_area_code"


def main_number_key(call_id: str, phone: str, called_at: datetime, area_code: str) -> str:
    """`intake.phone.call_key` of the caller's main number (`triage.callers.caller_number`:
    without an extension; a local number with the office's `area_code`), so that ``8765
    4321`` and ``010-8765 4321`` at the same time are one call. A call id is the key as is."""
    if call_id:
        return call_key(call_id, phone, called_at)
    return call_key("", caller_number(phone, area_code) or phone, called_at)


def main_number_rows(rows: Iterable[CallRow], area_code: str) -> Iterator[CallRow]:
    """The call rows of an export with the key of each good row without a call id made of the
    caller's main number (`main_number_key`); other rows as they are."""
    for row in rows:
        sub = row.submission
        if sub is not None and not row.call_id and sub.contact.phone:
            key = main_number_key("", sub.contact.phone, sub.received_at, area_code)
            if key != sub.external_id:
                row = replace(row, submission=replace(sub, external_id=key))
        yield row


def _depends_on_area(phone: str) -> ColumnElement[bool]:
    # A local number (no area code: 2-9 first) or one with an extension: the caller's main
    # number differs from the number as stored.
    return or_(func.substr(phone, 1, 1).in_(list("23456789")), phone.like("%-%"))


def rekey_for_area_code(
    session: Session, secret: bytes | str, area_code: str, batch: int = 2000
) -> int | None:
    """Makes the stored keys agree with the office's `area_code` (``[app] area_code``) when
    they were made with another one (or before this was recorded, `AREA_CODE_MARK`): the
    caller keys of the cases with a local number or an extension, and the idempotency key
    (``external_id``) of their calls imported without a call id (`main_number_key`; a key
    another case holds already is left as it was). Returns how many cases were looked at,
    None when the keys already agree. Run by ``minsheng init``."""
    mark = session.get(AppMark, AREA_CODE_MARK)
    if mark is not None and mark.value == area_code:
        return None
    cases = Case.__table__
    seen = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(Case.id, Case.channel, Case.external_id, Case.contact_phone)
            .where(Case.id > last_id, _depends_on_area(Case.contact_phone))
            .order_by(Case.id)
            .limit(batch)
        ).all()
        if not rows:
            break
        last_id = rows[-1].id
        seen += len(rows)
        ids: list[dict[str, Any]] = []
        for r in rows:
            phone = r.contact_phone or ""
            old = r.external_id or ""
            if str(r.channel) == "phone" and old.startswith("call:") and "@" in old:
                at = old.rsplit("@", 1)[1]
                new = f"call:{caller_number(phone, area_code) or phone}@{at}"
                if new != old:
                    ids.append({"case_id": r.id, "new": new})
        # Keys cleared here are made again, with the area code, by the backfill below.
        session.execute(
            update(cases)
            .where(cases.c.id.in_([r.id for r in rows]))
            .values(caller_key=None, caller_alt_key=None)
        )
        if ids:
            taken = set(
                session.scalars(
                    select(Case.external_id).where(
                        Case.channel == "phone", Case.external_id.in_([i["new"] for i in ids])
                    )
                )
            )
            free: list[dict[str, Any]] = []
            for i in ids:
                if i["new"] not in taken:
                    taken.add(i["new"])
                    free.append(i)
            if free:
                session.execute(
                    update(cases)
                    .where(cases.c.id == bindparam("case_id"))
                    .values(external_id=bindparam("new")),
                    free,
                )
    backfill_caller_keys(session, secret, batch=batch, area_code=area_code)
    if mark is None:
        session.add(AppMark(name=AREA_CODE_MARK, value=area_code))
    else:
        mark.value = area_code
    session.flush()
    return seen
