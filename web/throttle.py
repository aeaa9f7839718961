"""Slowing down guessing: failed attempts are counted per client in the database, so the
limit holds across all workers of a production run."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from flask import current_app, request
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from triage.models import ThrottleMark


def client_key(extra: str = "") -> str:
    """A hash of the client address (and e.g. the username): no addresses kept in clear."""
    raw = f"{current_app.config['SECRET_KEY']}|{request.remote_addr}|{extra}"
    return hashlib.sha256(raw.encode()).hexdigest()


def failures(session: Session, kind: str, key: str, now: datetime, window: timedelta) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(ThrottleMark)
            .where(
                ThrottleMark.kind == kind, ThrottleMark.key == key, ThrottleMark.at > now - window
            )
        )
        or 0
    )


def retry_after(session: Session, kind: str, key: str, now: datetime, window: timedelta) -> int:
    """Seconds until the oldest failure in the window expires."""
    oldest = session.scalar(
        select(func.min(ThrottleMark.at)).where(
            ThrottleMark.kind == kind, ThrottleMark.key == key, ThrottleMark.at > now - window
        )
    )
    if oldest is None:
        return 0
    return max(1, int((oldest + window - now).total_seconds()))


def mark_failure(session: Session, kind: str, key: str, now: datetime) -> None:
    session.add(ThrottleMark(kind=kind, key=key, at=now))
    # Old marks are useless; prune them as we go rather than from a cron job.
    session.execute(delete(ThrottleMark).where(ThrottleMark.at < now - timedelta(days=1)))


def clear(session: Session, kind: str, key: str) -> None:
    session.execute(delete(ThrottleMark).where(ThrottleMark.kind == kind, ThrottleMark.key == key))
