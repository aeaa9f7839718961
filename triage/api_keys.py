"""API keys of the Open311 GeoReport v2 interface: made, listed, revoked and checked here.

A key is ``ms_`` followed by 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored (`ApiKey.key_hash`), with its first characters (`ApiKey.prefix`, e.g. ``ms_4fQx9a``)
so that people can tell keys apart in lists; the key itself is shown once, when it is made.
A plain hash suffices (no salt or slow hash): the key is random, not chosen by a person.

Cases made through a key carry it (`Case.api_key_id`) and name it in their ``registered``
event. Everything here flushes and never commits: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from triage.models import Base, UTCDateTime, utcnow

KEY_MARK = "ms_"
PREFIX_LENGTH = len(KEY_MARK) + 6
NAME_MAX = 100


class ApiKey(Base):
    """One key given to one outside system (a city app, a neighbouring hotline)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who made it: a username, or "cli" for `minsheng api-key add`.
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def __repr__(self) -> str:
        return f"<ApiKey {self.id} {self.prefix} {self.name!r}>"


class ApiKeyError(ValueError):
    """A key cannot be made or revoked as asked (empty name, unknown key, ...)."""


@dataclass(frozen=True)
class NewKey:
    """A key just made: the row, and the key itself, which is never stored nor shown again."""

    row: ApiKey
    secret: str


def hash_key(key: str) -> str:
    """SHA-256 of the key, 64 hex digits."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(
    session: Session, name: str, created_by: str, now: datetime, created_by_id: int | None = None
) -> NewKey:
    """Makes a key named `name` (1 to 100 characters after trimming; ApiKeyError otherwise)."""
    name = " ".join(name.split())
    if not name:
        raise ApiKeyError("a key needs a name")
    if len(name) > NAME_MAX:
        raise ApiKeyError(f"a key's name has at most {NAME_MAX} characters")
    secret = KEY_MARK + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        prefix=secret[:PREFIX_LENGTH],
        key_hash=hash_key(secret),
        created_at=now,
        created_by=created_by[:200],
        created_by_id=created_by_id,
    )
    session.add(row)
    session.flush()
    return NewKey(row=row, secret=secret)


def list_keys(session: Session, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, newest first; without the revoked ones if `include_revoked` is False."""
    query = select(ApiKey).order_by(ApiKey.id.desc())
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def find_key(session: Session, ref: str) -> ApiKey:
    """The key named by `ref`: its id, its prefix or its name (if one active key has it).

    Raises ApiKeyError when none or several match."""
    ref = ref.strip()
    if ref.isdigit():
        row = session.get(ApiKey, int(ref))
        if row is not None:
            return row
    matches = list(session.scalars(select(ApiKey).where(ApiKey.prefix == ref)))
    if not matches:
        matches = list(
            session.scalars(select(ApiKey).where(ApiKey.name == ref, ApiKey.revoked_at.is_(None)))
        )
    if len(matches) != 1:
        raise ApiKeyError(
            f"no key {ref!r}" if not matches else f"several keys match {ref!r}; give its id"
        )
    return matches[0]


def revoke_key(session: Session, key: ApiKey, now: datetime) -> bool:
    """Revokes `key` from `now` on; False if it was revoked already (nothing changes)."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = now
    session.flush()
    return True


# `last_used_at` is written at most this often: every call writing the key's row would make
# the calls of one busy client wait for each other's commits.
LAST_USED_PRECISION = timedelta(minutes=1)


def verify_key(session: Session, presented: str, now: datetime | None = None) -> ApiKey | None:
    """The active key whose secret is `presented`, or None. With `now`, marks it used then
    (to within `LAST_USED_PRECISION`)."""
    if not presented or not presented.startswith(KEY_MARK) or len(presented) > 200:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(presented)))
    if row is None or row.revoked_at is not None:
        return None
    if now is not None and (
        row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION
    ):
        row.last_used_at = now
    return row
