"""Who called or wrote before: a caller's pseudonymous key and the cases that share it.

A caller key is a keyed hash (HMAC-SHA256 with a key derived from the application's secret)
of the caller's canonical phone number (`intake.normalise.normalise_phone`: ``138 0013 8000``,
``+86 13800138000``, ``0086-138-0013-8000`` and full-width digits are all ``13800138000``)
or, without a phone, of the e-mail address in lower case. A caller is their main number, as
12345 hotlines count them: an extension (``010-87654321 转 123``, ``… ext. 123``,
``…-123``) is kept on the case for the call back but is not part of who calls, and a local
number typed without its area code (``8765 4321``) is the office's own area's
(``[app] area_code``, e.g. ``010``: ``01087654321``; without one it stays as it is). The
same caller gets the same key on every channel and in every export, so repeat complainants
can be counted without the number; without the secret the key cannot be turned back into
the number (a table of all Chinese mobiles hashed without a key would take minutes to
build).

A case stores one key in ``cases.caller_key`` (the phone's, else the email's; ``""`` for an
anonymous case, NULL for a case registered before migration 0010 and not yet backfilled) and
the email's in ``cases.caller_alt_key`` when it has both, so a later email-only case of the
same citizen is found too. Both columns are indexed with the received time; history reads
are bounded (``LIMIT``), whatever the number of cases.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Connection,
    Index,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from intake.normalise import PhoneError, normalise_phone
from triage.models import OPEN_STATUSES, Case

__all__ = [
    "CallerHistory",
    "alt_key",
    "area_code_digits",
    "backfill_caller_keys",
    "caller_history",
    "caller_key",
    "caller_keys",
    "caller_number",
    "canonical_email",
    "canonical_phone",
    "case_keys",
    "stamp",
    "stamp_caller",
]

# The key length in hex digits: 128 bits, no collision among any number of callers.
KEY_HEX = 32
_DOMAIN = b"minsheng caller key v1"
# The longest place or address stored (cases.place).
PLACE_MAX = 200

# Made by migration 0010: a caller's cases, newest first, read from an index.
Index("ix_cases_caller_key_received", Case.caller_key, Case.received_at)
Index("ix_cases_caller_alt_key_received", Case.caller_alt_key, Case.received_at)


@functools.lru_cache(maxsize=8)  # one secret a process: derived once, not per case
def _key(secret: bytes | str) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    if not raw:
        raise ValueError("a caller key needs the application's secret")
    # A key of its own, so a caller key is never the same HMAC as anything else the secret signs.
    return hmac.new(raw, _DOMAIN, hashlib.sha256).digest()


def canonical_phone(phone: str) -> str | None:
    """The phone as one caller: `normalise_phone`'s form; for a number it refuses (typed
    oddly by a call centre), its digits if there are at least 5; else None."""
    phone = (phone or "").strip()
    if not phone:
        return None
    try:
        return normalise_phone(phone)
    except PhoneError:
        pass
    # ``0086-138-0013-8000``: the last group reads as an extension; without the separators
    # the number is plain.
    squeezed = re.sub(r"[\s\-().]", "", unicodedata.normalize("NFKC", phone))
    try:
        return normalise_phone(squeezed)
    except PhoneError:
        digits = re.sub(r"\D", "", squeezed)
        return digits if len(digits) >= 5 else None


def area_code_digits(area_code: str) -> str:
    """The office's area code as a number's leading digits (``10``, ``010`` → ``010``;
    ``571`` → ``0571``); "" for none. Raises ValueError for anything but 2 or 3 digits
    after an optional 0."""
    code = (area_code or "").strip()
    if not code:
        return ""
    if not re.fullmatch(r"0?[1-9]\d{1,2}", code):
        raise ValueError(f"not an area code: {area_code!r} (e.g. 010, 0571)")
    return code if code.startswith("0") else "0" + code


def caller_number(phone: str, area_code: str = "") -> str | None:
    """The number that says who calls: `canonical_phone` without its extension
    (``01087654321-123`` → ``01087654321``), and a local number without area code (7 or 8
    digits, not starting 0 or 1) with the office's `area_code` before it (``87654321`` →
    ``01087654321`` for ``010``). None when `phone` is not a usable number."""
    number = canonical_phone(phone)
    if number is None:
        return None
    main, dash, extension = number.partition("-")
    if dash and extension.isdigit():
        number = main
    if area_code and len(number) in (7, 8) and number.isdigit() and number[0] not in "01":
        number = area_code_digits(area_code) + number
    return number


def canonical_email(email: str) -> str | None:
    """The address NFKC-normalised, trimmed and in lower case (``Wang@Example.COM`` →
    ``wang@example.com``); None when there is no ``@`` in it."""
    email = unicodedata.normalize("NFKC", email or "").strip().lower()
    return email if "@" in email else None


def _hash(kind: str, value: str, secret: bytes | str) -> str:
    return hmac.new(_key(secret), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:KEY_HEX]


def caller_key(phone: str, email: str, secret: bytes | str, *, area_code: str = "") -> str | None:
    """The caller's pseudonymous key: 32 hex digits of HMAC-SHA256 (keyed from `secret`) of
    the caller's number (`caller_number`, with the office's `area_code`), or of the
    lower-case email when there is no usable phone; None for an anonymous caller. Raises
    ValueError for an empty secret."""
    number = caller_number(phone, area_code)
    if number is not None:
        return _hash("tel", number, secret)
    address = canonical_email(email)
    if address is not None:
        return _hash("mail", address, secret)
    return None


def alt_key(phone: str, email: str, secret: bytes | str, *, area_code: str = "") -> str | None:
    """The email's key when the caller gave a usable phone too (stored as
    ``cases.caller_alt_key``), else None."""
    address = canonical_email(email)
    if caller_number(phone, area_code) is None or address is None:
        return None
    return _hash("mail", address, secret)


def caller_keys(phone: str, email: str, secret: bytes | str, *, area_code: str = "") -> list[str]:
    """Every key under which this contact's cases may be stored: the phone's (its caller
    number with the office's `area_code`) and the email's (0 to 2 keys)."""
    keys = []
    number = caller_number(phone, area_code)
    if number is not None:
        keys.append(_hash("tel", number, secret))
    address = canonical_email(email)
    if address is not None:
        keys.append(_hash("mail", address, secret))
    return keys


def stamp(case: Case, secret: bytes | str, area_code: str = "") -> None:
    """Sets the case's caller keys from its contact (``""`` when anonymous): `caller_key`
    and `alt_key` (with the office's `area_code`), each contact read once."""
    number = caller_number(case.contact_phone, area_code)
    address = canonical_email(case.contact_email)
    mail = _hash("mail", address, secret) if address is not None else None
    if number is not None:
        case.caller_key = _hash("tel", number, secret)
        case.caller_alt_key = mail
    else:
        case.caller_key = mail or ""
        case.caller_alt_key = None


def stamp_caller(case: Case, place: str, secret: bytes | str | None, area_code: str = "") -> None:
    """At registration: the case's place (at most 200 characters) and, given the
    application's secret, its caller keys (with the office's `area_code`; without a secret
    they stay None until `backfill_caller_keys`)."""
    case.place = (place or "").strip()[:PLACE_MAX]
    if secret:
        stamp(case, secret, area_code)


@dataclass(frozen=True)
class CallerHistory:
    """Other cases of the same caller: at most `limit` of them, newest first (`cases`), how
    many there are in all (`total`) and how many came before the case in question
    (`earlier`), both counted up to `count_limit`."""

    cases: list[Case]
    total: int
    earlier: int = 0

    @property
    def call_number(self) -> int:
        """Which contact of the caller the case is, counting itself: 第 N 次来电/投诉."""
        return self.earlier + 1

    @property
    def hidden(self) -> int:
        """Other cases not in `cases` (another department's, or beyond the limit)."""
        return self.total - len(self.cases)


def _same_caller(keys: list[str]) -> ColumnElement[bool]:
    return or_(Case.caller_key.in_(keys), Case.caller_alt_key.in_(keys))


def case_keys(case: Case, secret: bytes | str, *, area_code: str = "") -> list[str]:
    """The keys `case`'s caller is found under: its stored ones, or, for a case not yet
    backfilled, those of its contact (with the office's `area_code`)."""
    if case.caller_key is None:
        return caller_keys(case.contact_phone, case.contact_email, secret, area_code=area_code)
    return [k for k in (case.caller_key, case.caller_alt_key) if k]


def _linked_keys(session: Session, keys: list[str], limit: int) -> list[str]:
    """`keys` and the keys they are linked to by a case that gave both a phone and an email:
    the phone-only and the email-only cases of one citizen are one caller's (one step; at
    most `limit` linking cases read)."""
    linking = session.execute(
        select(Case.caller_key, Case.caller_alt_key)
        .where(_same_caller(keys), Case.caller_alt_key.is_not(None))
        .limit(limit)
    ).all()
    return sorted({*keys, *(k for row in linking for k in row if k)})


def is_callers_case(session: Session, keys: Iterable[str], case: Case, limit: int = 1000) -> bool:
    """Whether `case` is one `caller_history(session, keys)` would list: stored under one of
    `keys` or of the keys linked to them (a case that gave both a phone and an email)."""
    keys = sorted({k for k in keys if k})
    stored = {k for k in (case.caller_key, case.caller_alt_key) if k}
    if not keys or not stored:
        return False
    return bool(stored & set(keys)) or bool(stored & set(_linked_keys(session, keys, limit)))


def caller_history(
    session: Session,
    keys: Iterable[str],
    *,
    exclude: Case | None = None,
    department_id: int | None = None,
    limit: int = 10,
    count_limit: int = 1000,
    open_first: bool = False,
) -> CallerHistory:
    """The cases stored under any of `keys` (see `caller_keys`, `case_keys`) but `exclude`,
    newest received first.

    With `open_first` (the operator's desk: a repeat call is about an open case, however
    old), the caller's open cases come first, all of them (up to `OPEN_LIMIT`), then the
    newest others up to `limit`.

    `department_id` (a handler's department) keeps only that department's cases in `cases`;
    `total` counts them all, so a handler learns that the caller has other cases without
    seeing them. Reads at most `limit` rows and counts at most `count_limit`, through the
    indexes on (caller_key, received_at) and (caller_alt_key, received_at): the cost grows
    with one caller's cases, never with all cases.
    """
    keys = sorted({k for k in keys if k})
    if not keys:
        return CallerHistory([], 0)
    keys = _linked_keys(session, keys, count_limit)
    where = [_same_caller(keys)]
    if exclude is not None and exclude.id is not None:
        where.append(Case.id != exclude.id)
    columns = [Case.id]
    if exclude is not None:
        before = or_(
            Case.received_at < exclude.received_at,
            and_(Case.received_at == exclude.received_at, Case.id < (exclude.id or 0)),
        )
        columns.append(case((before, 1), else_=0).label("before"))
    rows = select(*columns).where(*where).limit(count_limit).subquery()
    counted = select(
        func.count(), func.sum(rows.c.before) if exclude is not None else literal(0)
    ).select_from(rows)
    total, earlier = session.execute(counted).one()
    shown = select(Case).where(*where)
    if department_id is not None:
        shown = shown.where(Case.department_id == department_id)
    newest = (Case.received_at.desc(), Case.id.desc())
    if open_first:
        opened = session.scalars(
            shown.where(Case.status.in_(sorted(OPEN_STATUSES))).order_by(*newest).limit(OPEN_LIMIT)
        ).all()
        others = session.scalars(
            shown.where(Case.status.not_in(sorted(OPEN_STATUSES))).order_by(*newest).limit(limit)
        ).all()
        return CallerHistory([*opened, *others], int(total or 0), int(earlier or 0))
    found = session.scalars(shown.order_by(*newest).limit(limit)).all()
    return CallerHistory(list(found), int(total or 0), int(earlier or 0))


# The most open cases of one caller the desk lists (each is offered for 催办).
OPEN_LIMIT = 50


def backfill_caller_keys(
    connection: Connection | Session, secret: bytes | str, batch: int = 2000, area_code: str = ""
) -> int:
    """Computes the caller keys of the cases that have none yet (registered before migration
    0010), `batch` cases per statement round; returns how many were set. Safe to run again and
    concurrently (each run sets the same values); run by ``minsheng init``."""
    done = 0
    last_id = 0
    while True:
        rows = connection.execute(
            select(Case.id, Case.contact_phone, Case.contact_email)
            .where(Case.caller_key.is_(None), Case.id > last_id)
            .order_by(Case.id)
            .limit(batch)
        ).all()
        if not rows:
            return done
        connection.execute(
            update(Case.__table__)  # type: ignore[arg-type]
            .where(Case.__table__.c.id == bindparam("case_id"))
            .values(caller_key=bindparam("key"), caller_alt_key=bindparam("alt")),
            [
                {
                    "case_id": r.id,
                    "key": caller_key(
                        r.contact_phone or "", r.contact_email or "", secret, area_code=area_code
                    )
                    or "",
                    "alt": alt_key(
                        r.contact_phone or "", r.contact_email or "", secret, area_code=area_code
                    ),
                }
                for r in rows
            ],
        )
        done += len(rows)
        last_id = rows[-1].id
