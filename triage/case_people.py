"""Whose personal data the texts of a case may carry: what masked views mask in them.

A case's free text names more people than its own complainant. A case that others were merged
into (合并) is answered once for all of them: its reply, its visit notes, the supervisor's
reason for the merge and the repeat calls (催办) of the merged cases' callers name those
citizens, and the merged case shows the target's texts to its own citizen in turn. A caller
may give another name on a later call (`Case.caller_names`), and a case opened at the desk
following up a closed one (``follows_up`` / ``follow_up_opened``) is the same matter of the
same caller, told again.

So the people of a case are those of its *group*: every case reached from it through merges
(the case it was merged into, those merged into it) and follow-up links (the case a
follow-up follows, the follow-ups of a case), either kind after the other as often as they
come (a follow-up of a case others were merged into holds their citizens too), each with
the contact's name, phone and email and the names given on later calls. Observers,
exports, the search observers run and the public pages mask all of them in every text of
the case: a citizen's name never stays readable because it was written on another
citizen's case.

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
"""The longest path of links followed from a case (merges and follow-ups: a handful; this
bounds a broken chain and a caller's very long run of follow-ups)."""

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


def _links(conn: Conn, ids: list[int]) -> dict[int, set[int]]:
    """{case id: the cases it is linked to} for ``ids``: the case it was merged into, those
    merged into it, and those its desk links name (`LINK_ACTIONS`, both ways). Four queries
    per `CHUNK` cases."""
    out: dict[int, set[int]] = {i: set() for i in ids}
    numbers: dict[int, set[str]] = {}
    for chunk in _chunks(ids):
        for cid, into in conn.execute(
            select(_cases.c.id, _cases.c.merged_into_id).where(_cases.c.id.in_(chunk))
        ):
            if into is not None:
                out[cid].add(into)
        for cid, into in conn.execute(
            select(_cases.c.id, _cases.c.merged_into_id).where(_cases.c.merged_into_id.in_(chunk))
        ):
            out[into].add(cid)
        for cid, action, detail in conn.execute(
            select(_events.c.case_id, _events.c.action, _events.c.detail).where(
                _events.c.case_id.in_(chunk), _events.c.action.in_(sorted(LINK_ACTIONS))
            )
        ):
            number = (detail or {}).get(LINK_ACTIONS[action]) if isinstance(detail, dict) else None
            if number:
                numbers.setdefault(cid, set()).add(str(number))
    wanted = sorted({n for ns in numbers.values() for n in ns})
    by_number: dict[str, int] = {}
    for start in range(0, len(wanted), CHUNK):
        for number, cid in conn.execute(
            select(_cases.c.tracking_number, _cases.c.id).where(
                _cases.c.tracking_number.in_(wanted[start : start + CHUNK])
            )
        ):
            by_number[number] = cid
    for cid, ns in numbers.items():
        out[cid].update(by_number[n] for n in ns if n in by_number)
    return out


def groups(conn: Conn, case_ids: Iterable[int]) -> dict[int, list[int]]:
    """{case id: the ids of its group, its own among them, in id order}: every case reached
    from it through merges (either way) and desk links (a follow-up and the case it follows,
    either way), in any order: a follow-up of a case others were merged into, a follow-up of
    a follow-up, a case merged into a follow-up. Paths of at most `_MAX_DEPTH` links are
    followed (a broken chain stops there). All the cases are walked together, a step at a
    time: four queries a step whatever their number (per `CHUNK` cases reached), and one
    step for cases never merged nor linked."""
    wanted = sorted(set(case_ids))
    links: dict[int, set[int]] = {}
    frontier = wanted
    for _step in range(_MAX_DEPTH):
        if not frontier:
            break
        found = _links(conn, frontier)
        links.update(found)
        frontier = sorted({o for others in found.values() for o in others} - links.keys())
    # Union of the reached cases, each with those it links to (a link both ways once read).
    parent: dict[int, int] = {}

    def root(cid: int) -> int:
        parent.setdefault(cid, cid)
        while parent[cid] != cid:
            parent[cid] = parent[parent[cid]]
            cid = parent[cid]
        return cid

    for cid, others in links.items():
        for other in others:
            a, b = root(cid), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for cid in sorted(parent.keys() | set(wanted)):
        members.setdefault(root(cid), []).append(cid)
    return {cid: members[root(cid)] for cid in wanted}


def people_by_case(conn: Conn, case_ids: Iterable[int]) -> dict[int, People]:
    """{case id: the people of its group} (see the module's docstring) for ``case_ids``:
    contacts and later callers' names of every case of its group (`groups`). A handful of
    queries a step of `groups`, and three more, for any number of cases."""
    group_of = groups(conn, case_ids)
    members = sorted({m for group in group_of.values() for m in group})
    contacts: dict[int, tuple[str, str, str]] = {}
    for chunk in _chunks(members):
        for r in conn.execute(select(_cases).where(_cases.c.id.in_(chunk))):
            contacts[r.id] = (r.contact_name or "", r.contact_phone or "", r.contact_email or "")
    later = caller_names(conn, members)

    def person(cid: int) -> People:
        name, phone, email = contacts.get(cid, ("", "", ""))
        return People.of([name, *later.get(cid, ())], [phone], [email])

    people = {m: person(m) for m in members}
    out: dict[int, People] = {}
    by_group: dict[tuple[int, ...], People] = {}
    for cid, group in group_of.items():
        key = tuple(group)
        if key not in by_group:
            joined = People()
            for m in group:
                joined |= people[m]
            by_group[key] = joined
        out[cid] = by_group[key]
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
