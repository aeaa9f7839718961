"""Whose personal data the texts of a case may carry: what masked views mask in them.

A case's free text names more people than its own complainant. A case that others were merged
into (合并) is answered once for all of them: its reply, its visit notes, the supervisor's
reason for the merge and the repeat calls (催办) of the merged cases' callers name those
citizens, and the merged case shows the target's texts to its own citizen in turn. A caller
may give another name on a later call (`Case.caller_names`), and a case opened at the desk
following up a closed one (``follows_up`` / ``follow_up_opened``) is the same matter of the
same caller, told again.

So the people of a case are those of its *group*: the case, the case it was merged into (up
the chain of merges), every case merged into that one (directly or not), and the cases
linked to any of them as a follow-up, each with the contact's name, phone and email and the
names given on later calls. Observers, exports, the search observers run and the public
pages mask all of them in every text of the case: a citizen's name never stays readable
because it was written on another citizen's case.

Core only (no ORM objects): also used by the search index inside a flush and by migrations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import JSON, Connection, Integer, column, select, table
from sqlalchemy.orm import Session

from triage.models import CALLER_NAME_ACTIONS
from triage.privacy import People

__all__ = [
    "LINK_ACTIONS",
    "caller_names",
    "for_citizen",
    "groups",
    "people_by_case",
    "people_of",
]

LINK_ACTIONS = {"follows_up": "source", "follow_up_opened": "into"}
"""Events that link a case to another at the desk, and the detail naming the other case."""

CHUNK = 2000
"""Ids per IN list."""

_MAX_DEPTH = 50
"""The longest chain of merges followed (a chain is a handful; this bounds a broken one)."""

_cases = table(
    "cases",
    column("id", Integer),
    column("tracking_number"),
    column("contact_name"),
    column("contact_phone"),
    column("contact_email"),
    column("merged_into_id", Integer),
)
_events = table(
    "case_events",
    column("id", Integer),
    column("case_id", Integer),
    column("action"),
    column("detail", JSON),
)

Conn = Connection | Session


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    found = sorted(set(ids))
    for start in range(0, len(found), CHUNK):
        yield found[start : start + CHUNK]


def caller_names(conn: Conn, case_ids: Sequence[int]) -> dict[int, list[str]]:
    """{case id: the names its caller gave on later calls, first given first} for
    ``case_ids`` (their repeat-call and reopen events' ``caller_name``; as
    `Case.caller_names`, read in one query per `CHUNK` cases)."""
    names: dict[int, list[str]] = {}
    for chunk in _chunks(case_ids):
        for case_id, detail in conn.execute(
            select(_events.c.case_id, _events.c.detail)
            .where(
                _events.c.case_id.in_(chunk),
                _events.c.action.in_(sorted(CALLER_NAME_ACTIONS)),
            )
            .order_by(_events.c.id)
        ):
            name = (detail or {}).get("caller_name") if isinstance(detail, dict) else None
            if name and str(name) not in names.get(case_id, []):
                names.setdefault(case_id, []).append(str(name))
    return names


def groups(conn: Conn, case_ids: Iterable[int]) -> dict[int, list[int]]:
    """{case id: the ids of its group of merged cases, its own among them, in id order}:
    the root of its chain of merges and every case merged into the root, directly or not.
    A few queries whatever the number of cases (two for cases that were never merged)."""
    wanted = sorted(set(case_ids))
    parent: dict[int, int | None] = {}
    todo = list(wanted)
    for _step in range(_MAX_DEPTH):
        todo = [i for i in todo if i not in parent]
        if not todo:
            break
        for chunk in _chunks(todo):
            for cid, into in conn.execute(
                select(_cases.c.id, _cases.c.merged_into_id).where(_cases.c.id.in_(chunk))
            ):
                parent[cid] = into
        todo = [p for p in (parent.get(i) for i in todo) if p is not None]

    def root(cid: int) -> int:
        seen = {cid}
        while (up := parent.get(cid)) is not None and up not in seen:
            seen.add(up)
            cid = up
        return cid

    roots = {cid: root(cid) for cid in wanted}
    members: dict[int, set[int]] = {r: {r} for r in roots.values()}
    owner = {r: r for r in members}
    frontier = sorted(members)
    for _step in range(_MAX_DEPTH):
        if not frontier:
            break
        found = []
        for chunk in _chunks(frontier):
            for cid, into in conn.execute(
                select(_cases.c.id, _cases.c.merged_into_id).where(
                    _cases.c.merged_into_id.in_(chunk)
                )
            ):
                r = owner.get(into)
                if r is not None and cid not in owner:
                    owner[cid] = r
                    members[r].add(cid)
                    found.append(cid)
        frontier = found
    return {cid: sorted(members[roots[cid]]) for cid in wanted}


def people_by_case(conn: Conn, case_ids: Iterable[int]) -> dict[int, People]:
    """{case id: the people of its group} (see the module's docstring) for ``case_ids``:
    contacts and later callers' names of every case merged with it and of every case linked
    to one of those as a follow-up. A handful of queries for any number of cases."""
    group_of = groups(conn, case_ids)
    members = sorted({m for group in group_of.values() for m in group})
    linked: dict[int, set[str]] = {}
    for chunk in _chunks(members):
        for cid, action, detail in conn.execute(
            select(_events.c.case_id, _events.c.action, _events.c.detail).where(
                _events.c.case_id.in_(chunk), _events.c.action.in_(sorted(LINK_ACTIONS))
            )
        ):
            number = (detail or {}).get(LINK_ACTIONS[action]) if isinstance(detail, dict) else None
            if number:
                linked.setdefault(cid, set()).add(str(number))
    numbers = sorted({n for ns in linked.values() for n in ns})
    contacts: dict[int, tuple[str, str, str]] = {}
    by_number: dict[str, int] = {}
    for chunk in _chunks(members):
        for r in conn.execute(select(_cases).where(_cases.c.id.in_(chunk))):
            contacts[r.id] = (r.contact_name or "", r.contact_phone or "", r.contact_email or "")
    for start in range(0, len(numbers), CHUNK):
        for r in conn.execute(
            select(_cases).where(_cases.c.tracking_number.in_(numbers[start : start + CHUNK]))
        ):
            contacts[r.id] = (r.contact_name or "", r.contact_phone or "", r.contact_email or "")
            by_number[r.tracking_number] = r.id
    later = caller_names(conn, sorted(contacts))

    def person(cid: int) -> People:
        name, phone, email = contacts.get(cid, ("", "", ""))
        return People.of([name, *later.get(cid, ())], [phone], [email])

    out: dict[int, People] = {}
    for cid, group in group_of.items():
        people = People()
        for m in group:
            people |= person(m)
            for n in sorted(linked.get(m, ())):
                if n in by_number:
                    people |= person(by_number[n])
        out[cid] = people
    return out


def people_of(conn: Conn, case_id: int) -> People:
    """The people of one case's group (`people_by_case`)."""
    return people_by_case(conn, [case_id]).get(case_id, People())


def for_citizen(conn: Conn, case_id: int, own: People, text: str) -> str:
    """``text`` of case ``case_id``'s group as that case's own citizen (``own``: their name,
    phone and email) may read it in a notice or on a page sent to them alone: the other
    citizens of the group masked, their own data and the office's numbers left."""
    if not text:
        return text
    return (people_of(conn, case_id) - own).mask(text, generic=False)
