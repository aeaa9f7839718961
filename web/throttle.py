"""Slowing down guessing (sign-in passwords, tracking query codes) across every worker.

An attempt is recorded before it is judged: `begin()` inserts one mark per limit and commits
it in a transaction of its own, then counts the marks in each window, its own included. A
mark committed before its count means that of any number of attempts arriving at once, at
most `max_attempts` see a count within the limit and are judged; the others are refused
unjudged and their marks withdrawn. (Of a burst arriving at the same instant, fewer than
the limit may be judged, never more: the refused withdraw their marks, so later attempts get
the rest.) A failed attempt keeps its marks until they age out of the window; a successful
one withdraws only its own (`succeeded()`), never other people's.

Keys are hashes (of the secret key and the client address, username or tracking number):
the table keeps no address or username in clear.

Known browsers: a browser that has proved it holds a tracking number (it submitted the case,
or once looked it up with the right code) carries a signed HttpOnly cookie for that number
(`remember_tracking_number`). For that number it is exempt from the limits that strangers can
exhaust for it: everybody on this number, and this address on any number (a whole office
behind one NAT). Its own wrong codes still count per (address, number).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, request, url_for
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Response

from triage.models import ThrottleMark
from web.settings import TrackingSettings

# Marks older than this are useless to every limit; they are pruned as attempts come in.
KEEP = timedelta(days=1)
PRUNE_BATCH = 500


@dataclass(frozen=True)
class Limit:
    """At most `max_attempts` unsuccessful attempts of `kind` for `key` within `window`."""

    kind: str  # at most 20 characters, e.g. "track:pair"
    key: str  # a hash from `key_of`, 64 hex digits
    max_attempts: int
    window: timedelta


@dataclass
class Attempt:
    """One recorded attempt: its marks and what the limits said of it.

    `refused` is the first limit it exceeded (None: go on and judge it); `retry_at` when that
    limit lets the next attempt through; `remaining` how many more failures the tightest limit
    (`tightest`) allows after this one, should this one fail.
    """

    mark_ids: list[int]
    refused: Limit | None = None
    retry_at: datetime | None = None
    remaining: int = 0
    tightest: Limit | None = None


def client_address() -> str:
    """The client's address as a limit should see it: an IPv6 client is its /64 network,
    since one household or phone is handed a whole /64 and can pick any address in it."""
    raw = request.remote_addr or ""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def key_of(*parts: str) -> str:
    """A keyed hash of `parts` (64 hex digits): no address or username is kept in clear."""
    raw = "|".join((current_app.config["SECRET_KEY"], *parts))
    return hashlib.sha256(raw.encode()).hexdigest()


def client_key(extra: str = "") -> str:
    """The key of this client (and e.g. a username or tracking number with it)."""
    return key_of("client", client_address(), extra)


def tracking_limits(
    settings: TrackingSettings, number: str, known_browser: bool = False
) -> list[Limit]:
    """The limits of a progress lookup of `number` (canonical) by this client: this client on
    this number; unless this browser is known to hold the number (`knows_tracking_number`),
    also everybody on this number and this client on any number."""
    pair = Limit(
        "track:pair",
        client_key(f"number|{number}"),
        settings.max_failures,
        timedelta(minutes=settings.window_minutes),
    )
    if known_browser:
        return [pair]
    return [
        pair,
        Limit(
            "track:number",
            key_of("number", number),
            settings.number_max_failures,
            timedelta(minutes=settings.number_window_minutes),
        ),
        Limit(
            "track:client",
            client_key(),
            settings.client_max_failures,
            timedelta(minutes=settings.client_window_minutes),
        ),
    ]


TRACKING_COOKIE_PREFIX = "minsheng_track_"
# Browsers keep a cookie at most 400 days (Chrome caps it there); a case is looked up for
# months after it was submitted.
TRACKING_COOKIE_DAYS = 400


def _tracking_signature(number: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"tracking|{number}".encode(), hashlib.sha256).hexdigest()[:32]


def remember_tracking_number(response: Response, number: str) -> Response:
    """Marks the browser that gets `response` as holding tracking number `number`
    (canonical, e.g. `MS-2026-000038`): a signed, HttpOnly cookie of its own per number,
    sent only to /track, so that guessers elsewhere cannot lock this browser out of that
    case. Call it when the browser has proved it holds the number: on submitting the case
    (receipt) or on a lookup with the right code. One cookie per number, so two cases
    submitted at once from one browser both keep theirs."""
    response.set_cookie(
        TRACKING_COOKIE_PREFIX + number,
        _tracking_signature(number),
        max_age=int(timedelta(days=TRACKING_COOKIE_DAYS).total_seconds()),
        path=url_for("citizen.track"),
        httponly=True,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        samesite="Lax",
    )
    return response


def knows_tracking_number(number: str) -> bool:
    """True if this request's browser has proved before that it holds `number` (canonical)."""
    value = request.cookies.get(TRACKING_COOKIE_PREFIX + number, "")
    return bool(value) and hmac.compare_digest(value, _tracking_signature(number))


def begin(sessions: sessionmaker[Session], limits: Sequence[Limit], now: datetime) -> Attempt:
    """Records an attempt under every limit, then refuses it if any limit is exceeded.

    Uses sessions of its own, committed at once: call it before the request's own session has
    written anything (on SQLite that session would hold the only write lock).
    """
    with sessions() as s, s.begin():
        marks = [ThrottleMark(kind=lim.kind, key=lim.key, at=now) for lim in limits]
        s.add_all(marks)
        s.flush()
        ids = [m.id for m in marks]
    _prune(sessions, now)
    attempt = Attempt(mark_ids=ids, remaining=max(lim.max_attempts for lim in limits))
    with sessions() as s, s.begin():
        for lim in limits:
            count = _count(s, lim, now)
            if attempt.tightest is None or lim.max_attempts - count < attempt.remaining:
                attempt.tightest = lim
                attempt.remaining = max(0, lim.max_attempts - count)
            if count > lim.max_attempts and attempt.refused is None:
                attempt.refused = lim
        if attempt.refused is not None:
            # Not judged, so not a guess: it must not hold the lock any longer.
            s.execute(delete(ThrottleMark).where(ThrottleMark.id.in_(ids)))
            attempt.retry_at = _free_at(s, attempt.refused, now, exclude=ids)
            attempt.remaining = 0
    return attempt


def succeeded(session: Session, attempt: Attempt) -> None:
    """Withdraws this attempt's own marks: a right answer costs nothing (others' stay)."""
    if attempt.mark_ids:
        session.execute(delete(ThrottleMark).where(ThrottleMark.id.in_(attempt.mark_ids)))


def _count(s: Session, lim: Limit, now: datetime) -> int:
    return (
        s.scalar(
            select(func.count())
            .select_from(ThrottleMark)
            .where(
                ThrottleMark.kind == lim.kind,
                ThrottleMark.key == lim.key,
                ThrottleMark.at > now - lim.window,
            )
        )
        or 0
    )


def _free_at(s: Session, lim: Limit, now: datetime, exclude: list[int]) -> datetime:
    """When enough marks have aged out of the window for one more attempt to be judged."""
    times = s.scalars(
        select(ThrottleMark.at)
        .where(
            ThrottleMark.kind == lim.kind,
            ThrottleMark.key == lim.key,
            ThrottleMark.at > now - lim.window,
            ThrottleMark.id.not_in(exclude),
        )
        .order_by(ThrottleMark.at)
    ).all()
    # One more is judged when at most max_attempts - 1 marks remain in the window.
    expiring = len(times) - lim.max_attempts + 1
    if expiring <= 0:
        return now
    return times[expiring - 1] + lim.window


def _prune(sessions: sessionmaker[Session], now: datetime) -> None:
    """Deletes a batch of marks too old for any limit. Rows another worker is deleting at the
    same moment are skipped (PostgreSQL), so two prunes never wait for or deadlock on each
    other."""
    with sessions() as s, s.begin():
        old = select(ThrottleMark.id).where(ThrottleMark.at < now - KEEP).limit(PRUNE_BATCH)
        if s.get_bind().dialect.name == "postgresql":
            old = old.with_for_update(skip_locked=True)
        ids = s.scalars(old).all()
        if ids:
            s.execute(delete(ThrottleMark).where(ThrottleMark.id.in_(ids)))
