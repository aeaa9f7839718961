"""Who may see and do what: pure functions of a user and a case, used by every view."""

from __future__ import annotations

from enum import StrEnum

from triage.models import Case, Role, User


class Action(StrEnum):
    TRIAGE = "triage"  # assign, reject, merge, transfer
    HANDLE = "handle"  # start, reply, send back
    VISIT = "visit"  # return visit, rework, close
    LOG_CALL = "log_call"
    EXPORT = "export"
    ADMINISTER = "administer"


_ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.SUPERVISOR: frozenset({Action.TRIAGE, Action.VISIT, Action.EXPORT, Action.LOG_CALL}),
    Role.OPERATOR: frozenset({Action.LOG_CALL}),
    Role.HANDLER: frozenset({Action.HANDLE}),
    Role.OBSERVER: frozenset(),
}


def sees_all_cases(user: User) -> bool:
    """Everyone but department handlers sees every case (observers only masked)."""
    return user.role in (Role.ADMIN, Role.SUPERVISOR, Role.OPERATOR, Role.OBSERVER)


def can_view(user: User, case: Case) -> bool:
    if not user.active:
        return False
    if sees_all_cases(user):
        return True
    return (
        user.role == Role.HANDLER
        and user.department_id is not None
        and case.department_id == user.department_id
    )


def can(user: User, action: Action, case: Case | None = None) -> bool:
    """May `user` do `action` (on `case`, when given)?"""
    if not user.active or action not in _ROLE_ACTIONS.get(user.role, frozenset()):
        return False
    if case is None:
        return True
    return can_view(user, case)


def sees_personal_data(user: User) -> bool:
    """External supervisors see cases with names, phones and emails masked."""
    return user.role != Role.OBSERVER
