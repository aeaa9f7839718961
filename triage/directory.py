"""Departments and staff accounts, kept in step with the configuration, and the one rule for
usernames that every way of making or naming an account goes through."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.models import Department, Role, User

USERNAME = re.compile(r"[a-z0-9_.-]{2,80}")
"""A username as stored: 2 to 80 ASCII letters, digits, `_`, `.` or `-`, lower-case."""


class BadUsername(ValueError):
    """A name that cannot be a username; str() says why (English: the CLI and the config)."""


def username_key(text: str) -> str:
    """The form in which usernames are compared: NFKC (full-width is half-width), control
    and format characters dropped, outer white space stripped, lower-case. For a name typed
    at sign-in, which may be anything; `normalise_username` for a name to store."""
    kept = "".join(c for c in unicodedata.normalize("NFKC", text) if not _control(c))
    return kept.strip().lower()


def normalise_username(text: str) -> str:
    """The username to store for `text` (as typed on the command line or in the config):
    its `username_key`, provided `text` has no control characters and the key is 2 to 80 of
    `a-z 0-9 _ . -`. `Obs`, `OBS` and `ｏｂｓ` are all `obs`.

    Raises BadUsername otherwise, e.g. for `mal\x1bicious` or `王伟`.
    """
    if any(_control(c) for c in text):
        raise BadUsername("a username may not contain control characters")
    key = username_key(text)
    if not USERNAME.fullmatch(key):
        raise BadUsername(
            f"{key!r} is not a username: use 2 to 80 letters a-z, digits, '_', '.' or '-'"
        )
    return key


def find_user(session: Session, text: str) -> User | None:
    """The account a typed username names, compared as `username_key` (so `Admin` is
    `admin`). Of accounts that differ only in case (made before this rule), the one spelt
    exactly as typed, else the oldest."""
    key = username_key(text)
    if not key:
        return None
    found = session.scalars(
        select(User).where(func.lower(User.username) == key).order_by(User.id)
    ).all()
    typed = unicodedata.normalize("NFKC", text).strip()
    return next((u for u in found if u.username == typed), found[0] if found else None)


def _control(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cf")


@dataclass(frozen=True)
class DepartmentSpec:
    code: str
    name: str
    name_en: str = ""
    email: str = ""


@dataclass(frozen=True)
class UserSpec:
    username: str
    role: Role
    name: str = ""
    department: str | None = None
    head: bool = False
    email: str = ""


def sync_departments(session: Session, specs: Iterable[DepartmentSpec]) -> list[str]:
    """Creates or updates the configured departments; ones no longer configured go inactive
    (never deleted: their cases keep pointing at them). A department an administrator added
    or changed in the browser (`admin_managed`) is left as it is. Returns what changed."""
    existing = {d.code: d for d in session.scalars(select(Department))}
    changes: list[str] = []
    configured = set()
    for spec in specs:
        configured.add(spec.code)
        dept = existing.get(spec.code)
        if dept is not None and dept.admin_managed:
            # Changed by an administrator in the browser: that change stands (README).
            changes.append(f"department {spec.code} kept as managed in the admin pages")
            continue
        if dept is None:
            session.add(
                Department(code=spec.code, name=spec.name, name_en=spec.name_en, email=spec.email)
            )
            changes.append(f"department {spec.code} added")
            continue
        new = (spec.name, spec.name_en, spec.email, True)
        if (dept.name, dept.name_en, dept.email, dept.active) != new:
            dept.name, dept.name_en, dept.email, dept.active = new
            changes.append(f"department {spec.code} updated")
    for code, dept in existing.items():
        if code not in configured and dept.active and not dept.admin_managed:
            dept.active = False
            changes.append(f"department {code} deactivated (no longer in the config)")
    session.flush()
    return changes


def sync_users(
    session: Session,
    specs: Iterable[UserSpec],
    new_password: Callable[[User], str | None],
) -> list[str]:
    """Creates missing configured users and updates role and department of existing ones,
    except accounts an administrator changed in the browser (`admin_managed`).
    Usernames are matched ignoring case (`normalise_username`); a new one is stored in its
    normal form. A configured name equal to an earlier one ignoring case is skipped, and
    said so in the changes.

    `new_password(user)` is called for each created user; it sets the password and may
    return a text to show the admin once (e.g. a generated initial password).

    Raises BadUsername for a configured name that cannot be a username.
    """
    departments = {d.code: d for d in session.scalars(select(Department))}
    users: dict[str, User] = {}
    for existing in session.scalars(select(User).order_by(User.id)):
        users.setdefault(username_key(existing.username), existing)
    changes: list[str] = []
    configured: dict[str, str] = {}
    for spec in specs:
        name = normalise_username(spec.username)
        if name in configured:
            changes.append(
                f"user {spec.username} skipped: the same username as {configured[name]}"
                " (usernames ignore case)"
            )
            continue
        configured[name] = spec.username
        dept = departments.get(spec.department) if spec.department else None
        user = users.get(name)
        if user is None:
            user = User(
                username=name,
                display_name=spec.name,
                role=str(spec.role),
                department=dept,
                head=spec.head,
                email=spec.email,
            )
            session.add(user)
            session.flush()
            shown = new_password(user)
            changes.append(f"user {spec.username} added" + (f": {shown}" if shown else ""))
            continue
        if user.admin_managed:
            # Changed by an administrator in the browser: that change stands (README).
            continue
        if (user.role, user.department_id, user.display_name, user.head, user.email) != (
            str(spec.role),
            dept.id if dept else None,
            spec.name or user.display_name,
            spec.head,
            spec.email,
        ):
            user.role = str(spec.role)
            user.department = dept
            user.display_name = spec.name or user.display_name
            user.head = spec.head
            user.email = spec.email
            changes.append(f"user {spec.username} updated")
    session.flush()
    return changes
