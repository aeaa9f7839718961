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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    Index,
    and_,
    bindparam,
    literal,
    or_,
    select,
    union_all,
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

OPEN_CASE = Case.status.in_([literal(str(s), literal_execute=True) for s in sorted(OPEN_STATUSES)])
"""An open case, written with constants (not bound parameters) as the predicate of the
indexes below, so that both databases see that a query with this term may read them."""
# Made by migration 0033: a caller's open cases, newest first, from indexes holding only
# open cases. Through the indexes above, a frequent caller's open cases older than the
# window were found by walking every closed case of theirs.
Index(
    "ix_cases_caller_key_open",
    Case.caller_key,
    Case.received_at,
    sqlite_where=OPEN_CASE,
    postgresql_where=OPEN_CASE,
)
Index(
    "ix_cases_caller_alt_key_open",
    Case.caller_alt_key,
    Case.received_at,
    sqlite_where=OPEN_CASE,
    postgresql_where=OPEN_CASE,
)


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
    (`earlier`). Each count is exact up to `WINDOW`; past it `total_capped` (or
    `earlier_capped`) is set and the count is `WINDOW` (shown "100+"). `keys_capped`: the
    caller has more linked keys than `LINK_KEYS`, and only that many were followed."""

    cases: list[Case]
    total: int
    earlier: int = 0
    total_capped: bool = False
    earlier_capped: bool = False
    keys_capped: bool = False

    @property
    def call_number(self) -> int:
        """Which contact of the caller the case is, counting itself: 第 N 次来电/投诉."""
        return self.earlier + 1

    @property
    def hidden(self) -> int:
        """Other cases not in `cases` (another department's, or beyond the limit); at least
        this many when `total_capped`."""
        return max(self.total - len(self.cases), 0)

    @property
    def total_label(self) -> str:
        """`total` as shown: ``"7"``, or ``"100+"`` past the count's cap."""
        return f"{self.total}+" if self.total_capped else str(self.total)

    @property
    def call_number_label(self) -> str:
        """`call_number` as shown: ``"3"``, or ``"101+"`` past the count's cap."""
        return f"{self.call_number}+" if self.earlier_capped else str(self.call_number)

    @property
    def hidden_label(self) -> str:
        """`hidden` as shown: ``"2"``, or ``"95+"`` past the count's cap."""
        return f"{self.hidden}+" if self.total_capped else str(self.hidden)


def case_keys(case: Case, secret: bytes | str, *, area_code: str = "") -> list[str]:
    """The keys `case`'s caller is found under: its stored ones, or, for a case not yet
    backfilled, those of its contact (with the office's `area_code`)."""
    if case.caller_key is None:
        return caller_keys(case.contact_phone, case.contact_email, secret, area_code=area_code)
    return [k for k in (case.caller_key, case.caller_alt_key) if k]


# The newest cases read under each key, on each side (caller_key, caller_alt_key): what the
# counts are exact up to, and what a handler's rows and the linked keys are taken from.
WINDOW = 100
# The most keys of one caller followed (their own, and those linked by a case that gave both
# a phone and an email); each key adds two bounded reads.
LINK_KEYS = 8


@dataclass(frozen=True)
class _Seen:
    """One case of the caller as the window read it (no Case loaded)."""

    id: int
    received_at: datetime
    department_id: int | None
    status: str
    caller_key: str | None
    caller_alt_key: str | None


def _newest(keys: list[str], exclude_id: int | None, *extra: ColumnElement[bool]) -> CompoundSelect:
    """One statement: for each key and each side, that key's newest `WINDOW` cases (but
    `exclude_id`) meeting `extra`, each part read backward from the side's index on
    (key, received_at) and stopped at `WINDOW` rows. Columns: `_Seen`'s, and ``part`` (which
    key and side: rows of a part that returned `WINDOW` rows may have more beyond)."""
    parts = []
    for n, (key, column) in enumerate(
        (k, c) for k in keys for c in (Case.caller_key, Case.caller_alt_key)
    ):
        where = [column == key, *extra]
        if exclude_id is not None:
            where.append(Case.id != exclude_id)
        parts.append(
            select(
                Case.id,
                Case.received_at,
                Case.department_id,
                Case.status,
                Case.caller_key,
                Case.caller_alt_key,
                literal(n).label("part"),
            )
            .where(*where)
            # received_at alone: the index on (key, received_at) gives that order as it is
            # read (with id too, PostgreSQL may walk all cases by (received_at, id) instead).
            .order_by(Case.received_at.desc())
            .limit(WINDOW)
            .subquery()
        )
    # Each part in its own subquery: SQLite allows no LIMIT on a member of a UNION.
    return union_all(*(select(*p.c) for p in parts))


def _read(
    session: Session, keys: list[str], exclude_id: int | None, *extra: ColumnElement[bool]
) -> tuple[dict[int, _Seen], bool]:
    """The cases `_newest` reads, by id, and whether any part was cut at `WINDOW`."""
    if not keys:
        return {}, False
    rows = session.execute(_newest(keys, exclude_id, *extra)).all()
    per_part = Counter(r.part for r in rows)
    seen = {
        r.id: _Seen(r.id, r.received_at, r.department_id, r.status, r.caller_key, r.caller_alt_key)
        for r in rows
    }
    return seen, any(n >= WINDOW for n in per_part.values())


def _links(seen: dict[int, _Seen]) -> set[str]:
    """The keys of the cases in `seen` that gave both a phone and an email."""
    return {
        k for s in seen.values() if s.caller_alt_key for k in (s.caller_key, s.caller_alt_key) if k
    }


def _caller_cases(
    session: Session, keys: list[str], exclude_id: int | None
) -> tuple[list[str], dict[int, _Seen], bool, bool]:
    """`keys` with those linked to them (one step, from each key's newest `WINDOW` cases; at
    most `LINK_KEYS` in all, newest links first), the newest cases read under them, whether
    a part was cut at `WINDOW` and whether keys were left unfollowed. Two statements at
    most."""
    seen, cut = _read(session, keys, exclude_id)
    linked: list[str] = []
    for s in sorted(seen.values(), key=lambda s: (s.received_at, s.id), reverse=True):
        if s.caller_alt_key:
            for k in (s.caller_key, s.caller_alt_key):
                if k and k not in keys and k not in linked:
                    linked.append(k)
    room = max(LINK_KEYS - len(keys), 0)
    keys_capped = len(linked) > room
    if linked[:room]:
        more, more_cut = _read(session, linked[:room], exclude_id)
        seen.update(more)
        cut = cut or more_cut
    return sorted({*keys, *linked[:room]}), seen, cut, keys_capped


def _linked_keys(session: Session, keys: list[str], limit: int = WINDOW) -> list[str]:
    """`keys` and the keys they are linked to by a case that gave both a phone and an email:
    the phone-only and the email-only cases of one citizen are one caller's (one step; see
    `_caller_cases` for the bounds; `limit` is kept for callers and ignored)."""
    return _caller_cases(session, sorted(set(keys)), None)[0]


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
    count_limit: int = WINDOW,
    open_first: bool = False,
) -> CallerHistory:
    """The cases stored under any of `keys` (see `caller_keys`, `case_keys`) or the keys
    linked to them but `exclude`, newest received first.

    With `open_first` (the operator's desk: a repeat call is about an open case, however
    old), the caller's open cases come first, all of them (up to `OPEN_LIMIT`), then the
    newest others up to `limit`.

    `department_id` (a handler's department) keeps only that department's cases in `cases`;
    `total` counts them all, so a handler learns that the caller has other cases without
    seeing them.

    Bounded by what it shows, whatever the number of the caller's cases: every statement
    reads each key on each side (caller_key, caller_alt_key) separately, backward from its
    index on (key, received_at), at most `WINDOW` rows each; at most `LINK_KEYS` keys. So
    the counts are exact up to `WINDOW` (then capped, "100+"), and a handler's rows and the
    links come from each key's newest `WINDOW` cases (older ones of a frequent caller are
    counted as not listed). `count_limit` is kept for callers and ignored. Statements: the
    window (1, 2 with linked keys), the earlier cases when the window was cut (1), the open
    cases when the window was cut and `open_first` (1), the listed cases (1).
    """
    keys = sorted({k for k in keys if k})
    if not keys:
        return CallerHistory([], 0)
    exclude_id = exclude.id if exclude is not None else None
    keys, seen, cut, keys_capped = _caller_cases(session, keys, exclude_id)
    total = min(len(seen), WINDOW) if cut else len(seen)
    earlier, earlier_cut = 0, False
    if exclude is not None:
        mark = (exclude.received_at, exclude.id or 0)
        if cut:
            # The window holds the newest cases: those before an older case are read apart.
            before = or_(
                Case.received_at < exclude.received_at,
                and_(Case.received_at == exclude.received_at, Case.id < (exclude.id or 0)),
            )
            older, earlier_cut = _read(session, keys, exclude_id, before)
            earlier = min(len(older), WINDOW) if earlier_cut else len(older)
        else:
            earlier = sum(
                1
                for s in seen.values()
                if (_aware(s.received_at), s.id) < (_aware(mark[0]), mark[1])
            )
    candidates = list(seen.values())
    if department_id is not None:
        candidates = [s for s in candidates if s.department_id == department_id]
    newest = sorted(candidates, key=lambda s: (_aware(s.received_at), s.id), reverse=True)
    if open_first:
        opened = [s for s in newest if s.status in OPEN_STATUSES]
        if cut:
            # A repeat call may be about an open case older than the window: read from the
            # partial indexes of open cases (migration 0033), not through the closed ones.
            more, _cut = _read(session, keys, exclude_id, OPEN_CASE)
            opened = sorted(
                {s.id: s for s in [*opened, *more.values()]}.values(),
                key=lambda s: (_aware(s.received_at), s.id),
                reverse=True,
            )
        ids = [s.id for s in opened[:OPEN_LIMIT]]
        ids += [s.id for s in newest if s.status not in OPEN_STATUSES][:limit]
    else:
        ids = [s.id for s in newest[:limit]]
    loaded = {c.id: c for c in session.scalars(select(Case).where(Case.id.in_(ids)))} if ids else {}
    return CallerHistory(
        [loaded[i] for i in ids if i in loaded],
        total,
        earlier,
        total_capped=cut,
        earlier_capped=earlier_cut,
        keys_capped=keys_capped,
    )


def _aware(moment: datetime) -> datetime:
    """`moment` with a time zone (SQLite returns naive UTC), so both databases' compare."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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
