"""Stored similarity profiles: each case's `triage.similarity.Profile`, kept in
``similarity_profiles`` so that scoring a case as another one's candidate duplicate reads its
profile (a few microseconds) instead of computing it from its text (jieba tagging and place
parsing, 0.5-2 ms).

`triage.enrichment` stores the profile of every case it enriches, and reads the stored
profiles together with the candidates' rows (`PROFILE_COLUMNS`, one outer join). A case
without a usable one (enriched before revision 0022, registered synchronously, or stored with
another `similarity.PROFILE_VERSION`) gets it computed from its text when it is next a
candidate, and stored then (`profile_of`, `save`), or ahead of time by `backfill`. A case
that reaches a final status loses its profile with its duplicate-index rows
(`triage.duplicate_index`): it is no one's candidate any more.

A stored profile gives the very scores its computed one gives: the computed profile is
itself read back from the same bytes (`similarity.profile`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from triage import similarity
from triage.models import OPEN_STATUSES, Case, SimilarityProfile

__all__ = ["PROFILE_COLUMNS", "backfill", "profile_of", "save", "stored"]

PROFILE_COLUMNS = (SimilarityProfile.version, SimilarityProfile.data)
"""What to read of a case's stored profile, outer-joined on ``SimilarityProfile.case_id``
(both None when it has none): the arguments of `stored`."""

_ROWS_A_STATEMENT = 1000


def stored(version: int | None, data: bytes | None) -> similarity.Profile | None:
    """The stored profile of a row of `PROFILE_COLUMNS`, if there is one of this
    `similarity.PROFILE_VERSION` and it can be read; else None (compute it)."""
    if version != similarity.PROFILE_VERSION or data is None:
        return None
    try:
        return similarity.stored_profile(data)
    except ValueError:
        return None


def profile_of(
    text: str, version: int | None, data: bytes | None
) -> tuple[similarity.Profile, bool]:
    """A case's profile from its `PROFILE_COLUMNS`, else computed from its ``text``
    (``subject\\nbody``): (profile, whether it was computed and is to be `save`\\ d)."""
    found = stored(version, data)
    if found is not None:
        return found, False
    return similarity.profile(text), True


def save(session: Session, profiles: Mapping[int, similarity.Profile]) -> None:
    """Stores the profiles of cases (case id → profile), replacing what they had; in the
    caller's transaction. Written in case-id order, so that two enrichers storing the
    profile of the same candidate take their row locks in one order (no deadlock)."""
    if not profiles:
        return
    rows = [
        {"case_id": case_id, "version": similarity.PROFILE_VERSION, "data": profiles[case_id].data}
        for case_id in sorted(profiles)
    ]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(SimilarityProfile)
    upsert = insert.on_conflict_do_update(
        index_elements=[SimilarityProfile.case_id],
        set_={"version": insert.excluded.version, "data": insert.excluded.data},
    )
    for at in range(0, len(rows), _ROWS_A_STATEMENT):
        session.execute(upsert, rows[at : at + _ROWS_A_STATEMENT])


def backfill(session: Session, *, since: datetime | None = None, batch: int = 500) -> int:
    """Computes and stores the profiles of the open cases (received at or after ``since``,
    if given) that have none of this version, ``batch`` cases a statement; returns how many.
    In the caller's transaction (it may be committed between calls: a case done is not
    done again)."""
    from triage.cases import case_text

    done = 0
    last = 0
    while True:
        query = (
            select(Case.id, Case.subject, Case.body)
            .outerjoin(SimilarityProfile, SimilarityProfile.case_id == Case.id)
            .where(
                Case.id > last,
                Case.status.in_(OPEN_STATUSES),
                or_(
                    SimilarityProfile.case_id.is_(None),
                    SimilarityProfile.version != similarity.PROFILE_VERSION,
                ),
            )
            .order_by(Case.id)
            .limit(batch)
        )
        if since is not None:
            query = query.where(and_(Case.received_at >= since))
        rows = session.execute(query).all()
        if not rows:
            return done
        save(session, {r.id: similarity.profile(case_text(r.subject, r.body)) for r in rows})
        done += len(rows)
        last = rows[-1].id
