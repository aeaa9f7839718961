"""Finding cases by what a user types in the search box, limited to what that user sees.

Users who see personal data search subject, body, tracking number and the complainant's
name, phone and email (a phone in any spacing or width: ``138 0013 8000`` finds
``13800138000``). Users who see cases masked (external supervisors) search only the masked
text they are shown, so no query can tell them a digit they cannot see. ``%`` and ``_`` are
literal characters, never wildcards.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, false, or_

from intake.normalise import clean_line
from triage.models import Case
from triage.privacy import phone_digits

__all__ = ["case_search", "like_pattern"]

_ESCAPE = "\\"


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern that matches it anywhere, with no wildcards of its own."""
    escaped = text.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%")
    return "%" + escaped.replace("_", _ESCAPE + "_") + "%"


def case_search(query: str, *, masked: bool) -> ColumnElement[bool]:
    """A WHERE clause for cases matching ``query`` (as typed; cleaned here).

    ``masked``: the user sees personal data masked, and may search only the masked text.
    An empty query matches nothing.
    """
    q = clean_line(query)
    if not q:
        return false()
    pattern = like_pattern(q)
    number = Case.tracking_number.ilike(pattern, escape=_ESCAPE)
    if masked:
        return or_(number, Case.masked_text.ilike(pattern, escape=_ESCAPE))
    clauses = [
        number,
        Case.subject.ilike(pattern, escape=_ESCAPE),
        Case.body.ilike(pattern, escape=_ESCAPE),
        Case.contact_name.ilike(pattern, escape=_ESCAPE),
        Case.contact_email.ilike(pattern, escape=_ESCAPE),
    ]
    if re.fullmatch(r"[\d\s+\-().]+", q):
        digits = phone_digits(q)
        if len(digits) >= 4:
            clauses.append(Case.contact_phone.like(like_pattern(digits), escape=_ESCAPE))
    return or_(*clauses)
