"""Staff accounts and departments as an administrator changes them in the browser: the rules
(one spelling of a username, a handler belongs to a department, nobody deactivates themselves,
the office always keeps an active administrator) in one place, with no Flask in them.

Every change marks the row `admin_managed`, so that `minsheng init` (triage/directory.py)
does not reset it to config.toml afterwards. Functions flush and never commit. Passwords are
set by the caller through the password policy (web/passwords.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import false, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from triage import system_reasons
from triage.directory import BadUsername, find_user, normalise_username
from triage.models import (
    N_,
    Case,
    Department,
    IllegalTransition,
    Role,
    Status,
    User,
    new_session_token,
)

DEPARTMENT_CODE = re.compile(r"[a-z0-9_-]{2,40}")
"""A department code: 2 to 40 of a-z, digits, `_` and `-` (used in URLs and the config)."""


class StaffChangeRefused(IllegalTransition):
    """An account or department change the rules refuse; the message says why (translated
    by the web layer like any refused case change)."""


@dataclass(frozen=True)
class Account:
    """What an administrator types for an account (role one of `Role`)."""

    display_name: str
    role: str
    department: Department | None
    head: bool
    email: str


def active_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN, User.active.is_(True))
        )
        or 0
    )


def _locked_active_admins(session: Session) -> int:
    """The number of active administrators, counted under a lock held to the end of the
    transaction, so that two administrators demoting or deactivating each other at the same
    time cannot both see "another one is left" and leave the office without any.

    PostgreSQL: the active admins' rows are locked (FOR UPDATE, in id order so two callers
    cannot deadlock); a concurrent caller waits, then counts without the row just demoted.
    SQLite reads outside a transaction and ignores FOR UPDATE: a write that matches no row
    takes the database's one write lock first, so the count sees every committed change.
    """
    if session.get_bind().dialect.name == "sqlite":
        users = User.__table__
        session.execute(update(users).where(false()).values(role=users.c.role))
    locked = session.scalars(
        select(User.id)
        .where(User.role == Role.ADMIN, User.active.is_(True))
        .order_by(User.id)
        .with_for_update()
    ).all()
    return len(locked)


def _insert(session: Session, row: User | Department, taken: StaffChangeRefused) -> None:
    """Adds `row` in a savepoint. Of two administrators adding the same username or code at
    once, the second finds no row when it looks, and its insert meets the first's at the
    unique index: it gets `taken` (a refusal it can read), not a database error."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise taken from None


DEPARTMENT_ROLES = frozenset({Role.HANDLER})
"""The roles whose accounts belong to a department (and only they may head one): a handler
works its department's cases. The office's own roles (administrator, supervisor, operator)
and external supervisors (observer) see across departments and belong to none."""


def check_role_fits(role: str, department: bool, head: bool) -> None:
    """The one rule for which role may have a department and the head flag, for the admin
    pages, `minsheng user add` and the accounts of config.toml alike: a handler needs a
    department and may be its head; every other role has neither.

    Raises StaffChangeRefused naming what does not fit."""
    if role not in set(Role):
        raise StaffChangeRefused(N_("Unknown role %(role)s."), role=role)
    if role in DEPARTMENT_ROLES:
        if not department:
            raise StaffChangeRefused(N_("A handler needs a department."))
        return
    if head:
        raise StaffChangeRefused(
            N_("Only a department handler can head a department (this account's role: %(role)s)."),
            role=role,
        )
    if department:
        raise StaffChangeRefused(
            N_(
                "An account with the role %(role)s belongs to no department: leave the "
                "department empty (only department handlers have one)."
            ),
            role=role,
        )


def _check(account: Account) -> None:
    check_role_fits(account.role, account.department is not None, account.head)
    if account.department is not None and not account.department.active:
        raise StaffChangeRefused(
            N_("Department %(code)s is inactive."), code=account.department.code
        )


def add_user(session: Session, username: str, account: Account) -> User:
    """Creates an account (no password yet: the caller sets one). The username is stored in
    its normal form (`normalise_username`: `Wang.Wei` is `wang.wei`).

    Raises StaffChangeRefused for a username that cannot be one, one taken (ignoring case and
    width), a handler without a department or an unknown role.
    """
    try:
        name = normalise_username(username)
    except BadUsername:
        raise StaffChangeRefused(
            N_("%(name)s cannot be a username: use 2 to 80 letters a-z, digits, '_', '.' or '-'."),
            name=username,
        ) from None
    existing = find_user(session, name)
    if existing is not None:
        raise StaffChangeRefused(
            N_("The username %(name)s is taken (usernames ignore case)."), name=existing.username
        )
    _check(account)
    user = User(
        username=name,
        display_name=account.display_name,
        role=account.role,
        department=account.department,
        head=account.head,
        email=account.email,
        admin_managed=True,
    )
    _insert(
        session,
        user,
        StaffChangeRefused(
            N_("The username %(name)s is taken (usernames ignore case)."), name=name
        ),
    )
    return user


def change_user(session: Session, user: User, account: Account) -> dict[str, list[Any]]:
    """Sets role, department, head flag, email and display name; returns what changed as
    {field: [before, after]} (department by code), empty if nothing did.

    Raises StaffChangeRefused if the change would leave no active administrator, or breaks
    a rule of `add_user`.
    """
    _check(account)
    demoted = user.role == Role.ADMIN and account.role != Role.ADMIN and user.active
    if demoted and _locked_active_admins(session) <= 1:
        raise StaffChangeRefused(
            N_("%(name)s is the last active administrator: the role stays."),
            name=user.username,
        )
    before = {
        "display_name": user.display_name,
        "role": user.role,
        "department": user.department.code if user.department else None,
        "head": user.head,
        "email": user.email,
    }
    after = {
        "display_name": account.display_name,
        "role": account.role,
        "department": account.department.code if account.department else None,
        "head": account.head,
        "email": account.email,
    }
    changes = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if not changes:
        return {}
    if "role" in changes or "department" in changes:
        # What the account may see changes: its open sessions start again with the new rights.
        user.session_token = new_session_token()
    user.display_name = account.display_name
    user.role = account.role
    user.department = account.department
    user.department_id = account.department.id if account.department else None
    user.head = account.head
    user.email = account.email
    user.admin_managed = True
    session.flush()
    return changes


def set_active(session: Session, user: User, active: bool, by: User) -> bool:
    """Deactivates (the account cannot sign in, and every open session of it ends: a new
    session token) or reactivates an account. Returns False if it already was so.

    Raises StaffChangeRefused when `by` deactivates their own account or the last active
    administrator.
    """
    if user.active == active:
        return False
    if not active:
        if user.id == by.id:
            raise StaffChangeRefused(N_("You cannot deactivate your own account."))
        if user.role == Role.ADMIN and _locked_active_admins(session) <= 1:
            raise StaffChangeRefused(
                N_("%(name)s is the last active administrator: it stays active."),
                name=user.username,
            )
        user.session_token = new_session_token()
    elif user.department is not None and not user.department.active:
        # Its handler would sign in to a department whose cases went elsewhere.
        raise StaffChangeRefused(
            N_(
                "%(name)s belongs to department %(code)s, which is inactive: move the account "
                "to an active department first, then reactivate it."
            ),
            name=user.username,
            code=user.department.code,
        )
    user.active = active
    user.admin_managed = True
    session.flush()
    return True


def check_department_code(code: str) -> str:
    code = (code or "").strip().lower()
    if not DEPARTMENT_CODE.fullmatch(code):
        raise StaffChangeRefused(
            N_(
                "%(code)s cannot be a department code: use 2 to 40 letters a-z, digits, '_' or '-'."
            ),
            code=code,
        )
    return code


def _name_key(name: str) -> str:
    """A department name as compared for clashes: NFKC (full-width is half-width), case and
    every space ignored (`Urban Affairs`, `urban  affairs` and `ＵｒｂａｎＡｆｆａｉｒｓ` clash)."""
    return "".join(unicodedata.normalize("NFKC", name).casefold().split())


def check_department_names(
    session: Session, name: str, name_en: str, dept: Department | None = None
) -> None:
    """Raises StaffChangeRefused when `name` or `name_en` is, ignoring case, width and
    spaces, a name (Chinese or English) of another department than `dept`: two departments
    of one name could not be told apart in a dropdown, a list or the monthly ranking. The
    message names the department it clashes with."""
    wanted = [n for n in (name, name_en) if _name_key(n)]
    others = session.execute(
        select(Department.code, Department.name, Department.name_en).where(
            Department.id != (dept.id if dept is not None and dept.id is not None else -1)
        )
    ).all()
    for given in wanted:
        key = _name_key(given)
        for code, other_name, other_en in others:
            if key in (_name_key(other_name), _name_key(other_en or "")):
                raise StaffChangeRefused(
                    N_(
                        "The name %(name)s is taken by department %(code)s (%(other)s): "
                        "give each department a name of its own."
                    ),
                    name=given.strip(),
                    code=code,
                    other=other_name,
                )


def add_department(
    session: Session, code: str, name: str, name_en: str = "", email: str = ""
) -> Department:
    """A new department, managed in the browser from now on (`admin_managed`).

    Raises StaffChangeRefused for a bad or taken code, an empty name or a name that another
    department has (`check_department_names`)."""
    code = check_department_code(code)
    if session.scalar(select(Department).where(Department.code == code)) is not None:
        raise StaffChangeRefused(N_("A department with code %(code)s exists."), code=code)
    if not name.strip():
        raise StaffChangeRefused(N_("A department needs a name."))
    check_department_names(session, name, name_en)
    dept = Department(
        code=code,
        name=name.strip(),
        name_en=name_en.strip(),
        email=email.strip(),
        active=True,
        admin_managed=True,
    )
    _insert(
        session, dept, StaffChangeRefused(N_("A department with code %(code)s exists."), code=code)
    )
    return dept


def change_department(
    session: Session, dept: Department, name: str, name_en: str, email: str, active: bool
) -> dict[str, list[Any]]:
    """Renames a department, sets its address or (de)activates it; returns the changes as
    {field: [before, after]}. Its code stays: cases, deadlines and the config refer to it.

    Raises StaffChangeRefused for an empty name or a name that another department has
    (`check_department_names`)."""
    if not name.strip():
        raise StaffChangeRefused(N_("A department needs a name."))
    check_department_names(session, name, name_en, dept)
    before = {
        "name": dept.name,
        "name_en": dept.name_en,
        "email": dept.email,
        "active": dept.active,
    }
    after = {
        "name": name.strip(),
        "name_en": name_en.strip(),
        "email": email.strip(),
        "active": active,
    }
    changes = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if changes:
        dept.name, dept.name_en, dept.email, dept.active = (
            after["name"],
            after["name_en"],
            after["email"],
            after["active"],
        )
        if active:
            dept.successor_id = None  # its own again: a later deactivation names its own
        dept.admin_managed = True
        session.flush()
    return changes


# -- finding accounts ----------------------------------------------------------------------


@dataclass(frozen=True)
class UserPage:
    """One page of accounts in username order: `rows`, the cursors of the pages before and
    after it (a username, or None at either end) and `total`, the number matching."""

    rows: list[User]
    before: str | None
    after: str | None
    total: int


def _like(text: str) -> str:
    """`text` as a LIKE pattern matching it anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_text(raw: str) -> str:
    """What a search box's `raw` input searches for: NFKC (a full-width ＵＲＢＡＮ is urban),
    every run of whitespace (tabs, line breaks, the ideographic space) one space, trimmed,
    at most 100 characters. Raises StaffChangeRefused for any other control character
    (NUL: PostgreSQL refuses it in any text)."""
    text = " ".join(unicodedata.normalize("NFKC", raw or "").split())
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise StaffChangeRefused(
            N_("The search holds a control character (such as NUL): type it again.")
        )
    return text[:100]


def find_users(
    session: Session,
    *,
    text: str = "",
    role: str = "",
    department: str = "",
    active: bool | None = None,
    after: str = "",
    before: str = "",
    size: int = 50,
) -> UserPage:
    """Accounts matching every filter given, `size` at most, in username order.

    `text` (up to 100 characters; case ignored) is found in the username, the display name,
    the email, or the department's code or names; `role` one of `Role`; `department` a
    department code; `active` True/False or None for both. Keyset paging on the unique
    username: `after` gives the page following that username, `before` the one preceding
    it. A few thousand accounts are scanned in a few milliseconds, so the text search needs
    no index of its own; the paging reads only its page, however deep.
    """
    where: list[Any] = []
    text = search_text(text).lower()
    if text:
        pattern = _like(text)
        in_department = select(Department.id).where(
            func.lower(Department.code).like(pattern, escape="\\")
            | func.lower(Department.name).like(pattern, escape="\\")
            | func.lower(Department.name_en).like(pattern, escape="\\")
        )
        where.append(
            func.lower(User.username).like(pattern, escape="\\")
            | func.lower(User.display_name).like(pattern, escape="\\")
            | func.lower(User.email).like(pattern, escape="\\")
            | User.department_id.in_(in_department)
        )
    if role in set(Role):
        where.append(User.role == role)
    if department:
        where.append(
            User.department_id
            == select(Department.id).where(Department.code == department).scalar_subquery()
        )
    if active is not None:
        where.append(User.active.is_(active))
    total = int(session.scalar(select(func.count()).select_from(User).where(*where)) or 0)
    query = select(User).where(*where)
    if before and not after:
        rows = list(
            session.scalars(
                query.where(User.username < before).order_by(User.username.desc()).limit(size + 1)
            )
        )
        more_before = len(rows) > size
        rows = list(reversed(rows[:size]))
        return UserPage(
            rows=rows,
            before=rows[0].username if rows and more_before else None,
            after=rows[-1].username if rows else None,
            total=total,
        )
    if after:
        query = query.where(User.username > after)
    rows = list(session.scalars(query.order_by(User.username).limit(size + 1)))
    more_after = len(rows) > size
    rows = rows[:size]
    # `after` may precede every account (an edited or old link): no page before this one.
    earlier = (
        rows
        and after
        and session.scalar(
            select(User.username).where(*where, User.username < rows[0].username).limit(1)
        )
    )
    return UserPage(
        rows=rows,
        before=rows[0].username if earlier else None,
        after=rows[-1].username if rows and more_after else None,
        total=total,
    )


# -- deactivating a department -------------------------------------------------------------

# The cases a department has in hand: dispatched to it and not yet answered.
IN_HAND = (Status.ASSIGNED, Status.IN_PROGRESS)
# Answered, waiting for the office's return visit (or its close): the department's reply
# stays on record as its own.
AWAITING_VISIT = (Status.REPLIED, Status.VISITED)


@dataclass(frozen=True)
class DepartmentLoad:
    """What a department still carries: cases in hand (assigned or in progress), cases
    replied and waiting for the return visit, and active accounts (of which heads)."""

    in_hand: int
    awaiting_visit: int
    staff: int
    heads: int

    @property
    def empty(self) -> bool:
        return not (self.in_hand or self.awaiting_visit or self.staff)


def department_load(session: Session, dept: Department) -> DepartmentLoad:
    """Counts, in two grouped queries (served by the cases' department and status indexes)."""
    by_status = dict(
        session.execute(
            select(Case.status, func.count())
            .where(Case.department_id == dept.id, Case.status.in_(IN_HAND + AWAITING_VISIT))
            .group_by(Case.status)
        ).all()
    )
    staff, heads = session.execute(
        select(func.count(), func.count().filter(User.head.is_(True))).where(
            User.department_id == dept.id, User.active.is_(True)
        )
    ).one()
    return DepartmentLoad(
        in_hand=sum(int(by_status.get(s, 0)) for s in IN_HAND),
        awaiting_visit=sum(int(by_status.get(s, 0)) for s in AWAITING_VISIT),
        staff=int(staff or 0),
        heads=int(heads or 0),
    )


def lock_departments(session: Session, *depts: Department | None, share: bool = False) -> None:
    """Locks the rows of `depts` to the end of the transaction and reads them again (their
    `active` as committed now), as `_locked_active_admins` does for the administrators.
    `share`: a lock that others sharing it do not wait for (a dispatch checking that its
    department is still active), while a deactivation (not shared) waits for them and
    they for it.

    PostgreSQL: FOR UPDATE (or FOR SHARE) in id order (two callers cannot deadlock). SQLite
    reads outside a transaction and ignores FOR UPDATE: a write that matches no row takes the
    database's one write lock first, so what is read next sees every committed change."""
    ids = sorted({d.id for d in depts if d is not None})
    if session.get_bind().dialect.name == "sqlite":
        table = Department.__table__
        session.execute(update(table).where(false()).values(code=table.c.code))
    session.scalars(
        select(Department)
        .where(Department.id.in_(ids))
        .order_by(Department.id)
        .with_for_update(read=share)
        .execution_options(populate_existing=True)
    ).all()


def successor_of(session: Session, dept: Department) -> Department | None:
    """The active department that now does the work of the inactive `dept`: its recorded
    successor (`hand_over`), or that one's if it was deactivated in turn, and so on; None if
    the chain ends in a department with none (or loops). `dept` itself if it is active. The
    departments read are locked as `lock_departments(share=True)` does (a deactivation at
    this moment waits, or is waited for and seen)."""
    seen: set[int] = set()
    current: Department | None = dept
    while current is not None and current.id not in seen:
        seen.add(current.id)
        lock_departments(session, current, share=True)
        if current.active:
            return current
        current = (
            session.get(Department, current.successor_id)
            if current.successor_id is not None
            else None
        )
    return None


def set_successor(
    session: Session, dept: Department, successor: Department | None
) -> list[str | None] | None:
    """Records `successor` as the department that took the work of the inactive `dept`
    over (a case of `dept` sent for rework goes there; None: to the dispatch queue), after
    the deactivation, when the first choice was wrong or that department was deactivated
    in turn. Returns the change as [code before, code after] (None for none), or None when
    nothing changed. Flushes, never commits.

    Raises StaffChangeRefused when `dept` is active (it does its own work), when
    `successor` is `dept` itself or inactive, or when its chain of successors leads back to
    `dept` (a loop). Both departments are locked first (`lock_departments`)."""
    lock_departments(session, dept, successor)
    if dept.active:
        raise StaffChangeRefused(
            N_("Department %(code)s is active: it does its own work."), code=dept.code
        )
    before = session.get(Department, dept.successor_id) if dept.successor_id else None
    if (successor.id if successor else None) == dept.successor_id:
        return None
    if successor is not None:
        if successor.id == dept.id:
            raise StaffChangeRefused(
                N_("A department cannot take over its own work."), code=dept.code
            )
        if not successor.active:
            raise StaffChangeRefused(N_("Department %(code)s is inactive."), code=successor.code)
        seen: set[int] = set()
        current: Department | None = successor
        while current is not None and current.id not in seen:
            if current.id == dept.id:
                raise StaffChangeRefused(
                    N_("%(to)s already hands its work to %(code)s: that would be a loop."),
                    to=successor.code,
                    code=dept.code,
                )
            seen.add(current.id)
            current = (
                session.get(Department, current.successor_id) if current.successor_id else None
            )
    dept.successor_id = successor.id if successor is not None else None
    dept.admin_managed = True
    session.flush()
    return [before.code if before else None, successor.code if successor else None]


# Cases transferred per read and flush by `hand_over`.
HANDOVER_CHUNK = 500


@dataclass
class Handover:
    """What deactivating a department did: the tracking numbers of the cases transferred to
    `successor`, the usernames of the accounts moved there or deactivated, and of the moved
    accounts that were the department's head (the flag dropped)."""

    successor: str | None
    cases: list[str]
    moved: list[str]
    deactivated: list[str]
    heads_dropped: list[str] = field(default_factory=list)


def hand_over(
    session: Session,
    dept: Department,
    successor: Department | None,
    staff: str,
    by: User,
    now: datetime,
) -> Handover:
    """Before `dept` is deactivated: its cases in hand are transferred (转办) to `successor`
    with their deadlines kept (the citizen is owed the same date; each transfer is an event
    of the case, by `by`); its active accounts move to `successor` (`staff` = "move", the
    head flag dropped: the successor has its own head) or are deactivated (`staff` =
    "deactivate"). Replied cases awaiting the return visit keep their department: the reply
    on record is its own.

    Raises StaffChangeRefused when the department still has cases in hand or accounts and
    no active successor other than itself is given, or when deactivating an account is
    refused (`set_active`: oneself, the last administrator). Flushes, never commits.

    Both departments are locked (`lock_departments`) and read again before anything is
    counted or checked: two administrators deactivating A into B and B into A at once
    each saw the other active, and both went through, leaving every case in hand of both
    in an inactive department no handler sees. Now the second waits, then is refused.
    """
    lock_departments(session, dept, successor)
    result = Handover(successor.code if successor else None, [], [], [])
    if not dept.active:
        return result  # deactivated meanwhile by another administrator: nothing to hand
    if successor is not None and successor.id != dept.id and successor.active:
        # Its replied cases stay here; one reworked later follows this (rework_case).
        dept.successor_id = successor.id
    load = department_load(session, dept)
    if not load.in_hand and not load.staff:
        session.flush()
        return result
    if successor is None or successor.id == dept.id:
        raise StaffChangeRefused(
            N_(
                "Department %(code)s still has %(cases)s cases in hand and %(staff)s active "
                "accounts: choose the department that takes them over."
            ),
            code=dept.code,
            cases=load.in_hand,
            staff=load.staff,
        )
    if not successor.active:
        raise StaffChangeRefused(N_("Department %(code)s is inactive."), code=successor.code)
    reason = system_reasons.DEACTIVATED_HANDED_OVER  # shown in the reader's language
    ids = list(
        session.scalars(
            select(Case.id)
            .where(Case.department_id == dept.id, Case.status.in_(IN_HAND))
            .order_by(Case.id)
        )
    )
    # In chunks, each read with what a transfer touches (its replies and extension requests,
    # for the drafts and requests it withdraws, and its events, which it appends to) and
    # flushed once: case by case, each lazy load flushed the case before (3 queries and a
    # flush a case, some 10 ms; 1,000 cases took 10 s).
    for start in range(0, len(ids), HANDOVER_CHUNK):
        chunk = session.scalars(
            select(Case)
            .where(Case.id.in_(ids[start : start + HANDOVER_CHUNK]))
            .order_by(Case.id)
            .options(
                selectinload(Case.replies),
                selectinload(Case.extension_requests),
                selectinload(Case.events),
            )
        )
        with session.no_autoflush:
            for case in list(chunk):
                due = case.due_at or now
                case.transfer(successor, by, now, due, reason)
                result.cases.append(case.tracking_number)
        session.flush()
    users = session.scalars(
        select(User)
        .where(User.department_id == dept.id, User.active.is_(True))
        .order_by(User.username)
    )
    for user in list(users):
        if staff == "deactivate":
            set_active(session, user, False, by)
            result.deactivated.append(user.username)
        else:
            user.department = successor
            user.department_id = successor.id
            if user.head:
                result.heads_dropped.append(user.username)
            user.head = False
            user.session_token = new_session_token()
            user.admin_managed = True
            result.moved.append(user.username)
    session.flush()
    return result
