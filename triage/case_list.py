"""Pages of a case list, newest first, that cost the same on the last page as on the first.

A list is ordered by (received_at, id), newest first. The next and previous pages are found
from the last or first case shown (keyset pagination: an index seek, not ``OFFSET``), the last
page by reading the list from its end, and a page typed by number from whichever end is
nearer. The count reads at most `COUNT_CAP` + 1 index entries: past that, the list says
"10,000+" and the pages are not numbered to the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from triage.models import Case

__all__ = ["COUNT_CAP", "CasePage", "count_cases", "list_page"]

COUNT_CAP = 10_000


@dataclass(frozen=True)
class CasePage:
    """One page: the case ids shown, in order; the page's number (1 = newest; 0 = the last
    page of a list too long to count); the number
    of cases counted (``capped``: more than `COUNT_CAP`); whether pages come before and after."""

    case_ids: list[int]
    number: int
    total: int
    capped: bool
    has_previous: bool
    has_next: bool
    size: int

    @property
    def pages(self) -> int | None:
        """How many pages there are; None when the count was capped."""
        if self.capped:
            return None
        return max(1, -(-self.total // self.size))


def count_cases(
    session: Session, where: Sequence[ColumnElement[bool]], cap: int = COUNT_CAP
) -> tuple[int, bool]:
    """(cases satisfying ``where``, up to ``cap``; whether there are more)."""
    n = session.scalar(
        select(func.count()).select_from(select(Case.id).where(*where).limit(cap + 1).subquery())
    )
    n = n or 0
    return min(n, cap), n > cap


def _ids(session: Session, query: Select[tuple[int]]) -> list[int]:
    return list(session.scalars(query))


def list_page(
    session: Session,
    where: Sequence[ColumnElement[bool]],
    *,
    size: int,
    page: int = 1,
    after: int | None = None,
    before: int | None = None,
    last: bool = False,
) -> CasePage:
    """The page of cases satisfying ``where`` that the request asks for: the one after case
    id ``after`` or before ``before`` (``page`` is then only its shown number, 0 if not
    known), the ``last`` one, or page number ``page``. A cursor naming no case gives the
    first page."""
    total, capped = count_cases(session, where)
    pages = None if capped else max(1, -(-total // size))
    base = select(Case.id).where(*where)
    newest = (Case.received_at.desc(), Case.id.desc())
    oldest = (Case.received_at.asc(), Case.id.asc())
    if after is not None or before is not None:
        cursor = after if after is not None else before
        at = select(Case.received_at).where(Case.id == cursor).scalar_subquery()
        if after is not None:
            seek = and_(Case.received_at <= at, or_(Case.received_at < at, Case.id < after))
            ids = _ids(session, base.where(seek).order_by(*newest).limit(size + 1))
            if ids:
                return CasePage(ids[:size], page, total, capped, True, len(ids) > size, size)
        else:
            seek = and_(Case.received_at >= at, or_(Case.received_at > at, Case.id > before))
            ids = _ids(session, base.where(seek).order_by(*oldest).limit(size + 1))
            if ids:
                more = len(ids) > size
                number = page if more else 1
                return CasePage(ids[:size][::-1], number, total, capped, more, True, size)
        page = 1
    page = max(1, page)
    if last:
        if pages is None:
            ids = _ids(session, base.order_by(*oldest).limit(size))[::-1]
            return CasePage(ids, 0, total, capped, True, False, size)
        page = pages
    if pages is not None:
        page = min(page, pages)
        if page > (pages + 1) // 2:
            # Nearer the end: read from there.
            offset = max(0, total - page * size)
            count = total - (page - 1) * size - offset
            ids = _ids(session, base.order_by(*oldest).offset(offset).limit(count))[::-1]
            return CasePage(ids, page, total, capped, page > 1, page < pages, size)
    ids = _ids(session, base.order_by(*newest).offset((page - 1) * size).limit(size + 1))
    if not ids and page > 1:
        return list_page(session, where, size=size, last=True)
    return CasePage(ids[:size], page, total, capped, page > 1, len(ids) > size, size)
