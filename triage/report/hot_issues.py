"""The month's hot issues (热点问题): clusters of similar complaints, with counts, places and a
masked example.

The clustering is triage.similarity.hot_issues (TF-IDF profiles of Chinese character bigrams
and English words, cosine ≥ HOT_ISSUE_SCORE, linked groups split by average linkage). Its cost
grows with the square of the texts clustered, so at most [report] hot_issue_sample cases of a
month are: all of them in a month with fewer, else every k-th by id (k = ⌈cases ÷ sample⌉),
and a cluster's count is then its size × k, an estimate.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.submission import Kind
from triage.case_people import people_by_case
from triage.models import Case, Status
from triage.privacy import People
from triage.similarity import hot_issues as cluster
from triage.similarity import shorten

if TYPE_CHECKING:
    from triage.report.figures import ReportPolicy

# Praise is no issue; a rejected case (spam, not ours) no complaint about the district.
_KINDS = (str(Kind.COMPLAINT), str(Kind.SUGGESTION), str(Kind.INQUIRY))
EXAMPLE_CHARS = 120
LABEL_CHARS = 40
MIN_SIZE = 2


def hot_issues(
    session: Session, start: datetime, end: datetime, policy: ReportPolicy
) -> list[dict[str, Any]]:
    """Up to [report] hot_issues clusters of the cases received in [start, end) (complaints,
    suggestions, inquiries; not rejected), largest first: ``{label, count, example,
    places}``. ``label``: the subject of its most central case, at most 40 characters cut
    at a word boundary (else its distinguishing words), after the cluster's most named place
    unless the subject names it; ``count``: its cases (see the module for large months);
    ``example``: the subject and text of its most central case, personal data masked, at most
    120 characters cut at a word boundary; ``places``: up to three most named places
    (``cases.place``)."""
    if policy.hot_issues <= 0:
        return []
    where = (
        Case.received_at >= start,
        Case.received_at < end,
        # An expression, not the column: SQLite would otherwise read the month's cases through
        # the kind index (nearly every case: three kinds of four) instead of received_at's.
        Case.kind.concat("").in_(_KINDS),
        Case.status != str(Status.REJECTED),
    )
    total = int(session.scalar(select(func.count()).select_from(Case).where(*where)) or 0)
    if total < MIN_SIZE:
        return []
    step = max(1, math.ceil(total / policy.hot_issue_sample))
    columns = [
        Case.id,
        Case.subject,
        Case.body,
        Case.contact_name,
        Case.contact_phone,
        Case.contact_email,
    ]
    query = select(*columns, Case.place).where(*where)
    if step > 1:
        query = query.where(Case.id % step == 0)
    rows = {
        r[0]: r for r in session.execute(query.order_by(Case.id).limit(policy.hot_issue_sample))
    }
    items = [(cid, f"{r[1]}\n{r[2]}".strip()) for cid, r in rows.items()]
    out = []
    issues = cluster(items, min_size=MIN_SIZE)[: policy.hot_issues]
    # Names given on later calls and the citizens of merged and linked cases, masked too:
    # a few queries for every issue's cases.
    groups = people_by_case(session, [c for issue in issues for c in issue.case_ids])
    for issue in issues:
        members = [rows[cid] for cid in issue.case_ids]
        people = People.of(
            [m[3] for m in members], [m[4] for m in members], [m[5] for m in members]
        )
        for cid in issue.case_ids:
            people |= groups.get(cid, People())

        def masked(text: str, people: People = people) -> str:
            return people.mask(text)

        places = Counter(" ".join(str(m[6]).split()) for m in members if (m[6] or "").strip())
        top_places = [masked(p) for p, _ in places.most_common(3)]
        central = rows.get(issue.central, members[0])
        title = shorten(masked(central[1] or ""), LABEL_CHARS)
        keywords = [masked(w) for w in issue.keywords[:3]]
        words = title or ("、" if any(not w.isascii() for w in keywords) else ", ").join(keywords)
        colon = ": " if (central[1] or "").isascii() else "："
        example = " ".join(
            masked(f"{central[1]}{colon}{central[2]}" if central[1] else central[2]).split()
        )
        place_first = top_places and top_places[0] not in words
        out.append(
            {
                "label": f"{top_places[0]}：{words}" if place_first else words,
                "count": issue.size * step,
                "example": shorten(example, EXAMPLE_CHARS),
                "places": top_places,
            }
        )
    return out
