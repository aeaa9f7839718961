"""The administrators' audit log (admin_events): every change an administrator makes to
accounts, departments and API keys, with who, what, on what and when.

Kept apart from the case events (a case's history is the citizen's business; an account's
is not). Never holds a secret: `record` refuses details named like a password or a key, so
a careless caller fails in the tests instead of leaking one into the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.models import AdminEvent, User

# Detail names that could carry a secret: a password (initial, reset, chosen), an API key.
SECRET_WORDS = ("password", "secret", "token", "key", "hash")


class SecretInLog(ValueError):
    """A detail named like a secret was given to `record`."""


def record(
    session: Session,
    actor: User | str,
    action: str,
    target: str,
    at: datetime,
    **details: Any,
) -> AdminEvent:
    """Appends one admin event (flushed with the change it logs; the caller commits).

    `action` is a short code ("user_added", "user_deactivated", "api_key_issued" …), `target`
    what it was done to ("user wang", "department urban", "api key ab12cd34"), `details`
    JSON-able values (what changed: {"role": ["handler", "supervisor"]}).

    Raises SecretInLog for a detail whose name contains a word of `SECRET_WORDS` (e.g.
    ``password``), so no password or key ever reaches the log.
    """
    for name in details:
        if any(word in name.lower() for word in SECRET_WORDS):
            raise SecretInLog(f"admin log detail {name!r} may hold a secret")
    event = AdminEvent(
        at=at,
        actor_id=actor.id if isinstance(actor, User) else None,
        actor_name=actor.label if isinstance(actor, User) else actor,
        action=action[:40],
        target=target[:200],
        details=details,
    )
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class LogPage:
    events: list[AdminEvent]
    # The id to pass as `before` for the next (older) page, or None at the end.
    older: int | None
    total: int


def page(session: Session, size: int = 50, before: int | None = None) -> LogPage:
    """The newest `size` events (older than id `before` when given), newest first: keyset
    paging on the primary key, so a deep page costs what the first does."""
    query = select(AdminEvent).order_by(AdminEvent.id.desc()).limit(size + 1)
    if before is not None:
        query = query.where(AdminEvent.id < before)
    rows = list(session.scalars(query))
    older = rows[size - 1].id if len(rows) > size else None
    total = int(session.scalar(select(func.count()).select_from(AdminEvent)) or 0)
    return LogPage(rows[:size], older, total)
