"""Departments and staff accounts, kept in step with the configuration."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.models import Department, Role, User


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


def sync_departments(session: Session, specs: Iterable[DepartmentSpec]) -> list[str]:
    """Creates or updates the configured departments; ones no longer configured go inactive
    (never deleted: their cases keep pointing at them). Returns what changed."""
    existing = {d.code: d for d in session.scalars(select(Department))}
    changes: list[str] = []
    configured = set()
    for spec in specs:
        configured.add(spec.code)
        dept = existing.get(spec.code)
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
        if code not in configured and dept.active:
            dept.active = False
            changes.append(f"department {code} deactivated (no longer in the config)")
    session.flush()
    return changes


def sync_users(
    session: Session,
    specs: Iterable[UserSpec],
    new_password: Callable[[User], str | None],
) -> list[str]:
    """Creates missing configured users and updates role and department of existing ones.

    `new_password(user)` is called for each created user; it sets the password and may
    return a text to show the admin once (e.g. a generated initial password).
    """
    departments = {d.code: d for d in session.scalars(select(Department))}
    users = {u.username: u for u in session.scalars(select(User))}
    changes: list[str] = []
    for spec in specs:
        dept = departments.get(spec.department) if spec.department else None
        user = users.get(spec.username)
        if user is None:
            user = User(
                username=spec.username,
                display_name=spec.name,
                role=str(spec.role),
                department=dept,
            )
            session.add(user)
            session.flush()
            shown = new_password(user)
            changes.append(f"user {spec.username} added" + (f": {shown}" if shown else ""))
            continue
        if (user.role, user.department_id, user.display_name) != (
            str(spec.role),
            dept.id if dept else None,
            spec.name or user.display_name,
        ):
            user.role = str(spec.role)
            user.department = dept
            user.display_name = spec.name or user.display_name
            changes.append(f"user {spec.username} updated")
    session.flush()
    return changes
