"""What the rules engine reads of a case: a frozen snapshot, built from the database by the
supervision tick (triage/supervision.py) or by hand in a test. No ORM objects, no session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Event = tuple[str, datetime, Mapping[str, Any]]
"""One line of the case's audit log as the rules see it: (action, at, detail)."""


@dataclass(frozen=True)
class ReplySnapshot:
    """A department reply: when, and its ReplyState (pending_sign_off / sent / returned)."""

    at: datetime
    state: str = "sent"


@dataclass(frozen=True)
class VisitSnapshot:
    """A return visit (回访) to the case's own complainant."""

    at: datetime
    reached: bool
    solved: bool | None = None
    satisfaction: str | None = None
    valid: bool = True
    channel: str = "phone"


@dataclass(frozen=True)
class CaseSnapshot:
    """One case as of the tick. Times are aware; `department` is a department code.

    `events` holds at least the actions the rules read (see engine.EVENT_ACTIONS), oldest
    first. `open_spot_checks` are the draw times of this case's pending spot checks,
    `open_observations` the filing times of its unanswered observations.
    """

    id: int
    tracking_number: str
    status: str
    kind: str = "complaint"
    urgent: bool = False
    department: str | None = None
    received_at: datetime | None = None
    triage_due_at: datetime | None = None
    assigned_at: datetime | None = None
    due_at: datetime | None = None
    extended_to: datetime | None = None
    replied_at: datetime | None = None
    closed_at: datetime | None = None
    rework_count: int = 0
    extension_count: int = 0
    replies: tuple[ReplySnapshot, ...] = ()
    visits: tuple[VisitSnapshot, ...] = ()
    events: tuple[Event, ...] = ()
    open_spot_checks: tuple[datetime, ...] = ()
    open_observations: tuple[datetime, ...] = ()
