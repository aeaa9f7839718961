"""The case a request's case page shows: set by `web.board.load_case` once the user may see
it, read by the panels that other modules add to that page (supervision, observations)."""

from __future__ import annotations

from flask import g

from triage.models import Case


def remember_shown_case(case: Case) -> None:
    g.shown_case = case


def shown_case() -> Case | None:
    """The case page's case, or None on every other page (and on an error page)."""
    case: Case | None = g.get("shown_case")
    return case
