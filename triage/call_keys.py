"""Every call the system has seen, by its idempotency key.

A call's key (the phone system's call id, or ``call:<number>@<UTC time>`` without one,
`intake.phone.call_key`) is either a case's own ``external_id`` (the call opened the case,
at the desk or by import) or, for a repeat call (催办) or a reopen logged at the desk with
its call id, a `CallKey` row pointing at the case and the event. `known` reads both, so
the next day's export that holds such a call creates nothing new, and the desk does not log
again a call the import (or another operator) already has.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.models import CallKey, Case, CaseEvent


def note(session: Session, case: Case, event: CaseEvent, key: str, channel: str = "phone") -> None:
    """Records that the call `key` (channel `channel`) is `event` of `case` (added to the
    session, flushed with them). A key already recorded is left to its first case."""
    key = key.strip()[:255]
    if not key or session.get(CallKey, (channel, key)) is not None:
        return
    session.add(CallKey(channel=channel, key=key, case=case, event=event))


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
