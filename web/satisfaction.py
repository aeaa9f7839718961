"""The satisfaction page a reply notice links to (triage/satisfaction.py): no login, one
answer per reply.

GET shows the reply and the questions; POST records the answer as a valid return visit on
the web channel. Every other state is a page of its own, never a server error: answered
already (200), no longer asked (a later reply, or the office called back first: 200),
expired (410, with the hotline), not a link of ours (404). The token is in the address, so
no answer is cached or sent on as a referrer. Answers are limited per client address and
hour (web/throttle.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, make_response, render_template
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response

from triage.models import IllegalTransition, Satisfaction
from triage.notifications import own_view
from triage.satisfaction import (
    AlreadyAnswered,
    Link,
    LinkState,
    Token,
    answer,
    look_up,
    read_token,
)
from web import db, runtime, throttle
from web.forms import SatisfactionForm
from web.supervision_findings import refresh_findings

bp = Blueprint("satisfaction", __name__, url_prefix="/satisfaction")

_STATUS = {
    LinkState.OPEN: 200,
    LinkState.ANSWERED: 200,
    LinkState.SUPERSEDED: 200,
    LinkState.EXPIRED: 410,
    LinkState.UNKNOWN: 404,
}


def _page(
    link: Link, form: SatisfactionForm | None = None, status: int | None = None, **extra: object
) -> Response:
    settings = runtime().settings
    template = (
        "citizen/satisfaction.html"
        if link.state == LinkState.OPEN and form is not None
        else "citizen/satisfaction_done.html"
    )
    response = make_response(
        render_template(
            template,
            state=str(link.state),
            case=link.case if link.state != LinkState.UNKNOWN else None,
            reply=link.reply if link.state != LinkState.UNKNOWN else None,
            # The reply may name the citizens of cases merged with this one: masked for this
            # case's citizen, as on the tracking page and in the notice.
            reply_text=own_view(db(), link.case, link.reply.body)
            if link.state != LinkState.UNKNOWN and link.reply is not None and link.case
            else "",
            response=link.response,
            form=form,
            hotline=settings.tracking.hotline,
            **extra,
        ),
        status if status is not None else _STATUS[link.state],
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _link(token_text: str) -> tuple[Link, Token | None]:
    token = read_token(runtime().secret, token_text)
    return look_up(db(), token, datetime.now(UTC)), token


@bp.get("/<token>")
def show(token: str) -> Response:
    link, _token = _link(token)
    return _page(link, SatisfactionForm() if link.state == LinkState.OPEN else None)


@bp.post("/<token>")
def submit(token: str) -> Response:
    settings = runtime().settings
    # Counted before anything is written (SQLite: the request's session would hold the lock).
    attempt = throttle.begin(
        runtime().sessions,
        [
            throttle.Limit(
                "satisfaction",
                throttle.client_key(),
                settings.satisfaction.answers_per_hour,
                timedelta(hours=1),
            )
        ],
        datetime.now(UTC),
    )
    link, parsed = _link(token)
    if link.state != LinkState.OPEN or parsed is None:
        return _page(link)
    form = SatisfactionForm()
    if attempt.refused is not None:
        return _page(
            link,
            form,
            429,
            error=_("Too many answers from your network. Please try again in an hour."),
        )
    if not form.validate_on_submit():
        return _page(link, form, 400)
    s = db()
    try:
        response = answer(
            s,
            link,
            parsed,
            solved=form.solved.data == "yes",
            satisfaction=Satisfaction(form.satisfaction.data),
            contacted={"yes": True, "no": False}.get(form.contacted.data or ""),
            comment=form.comment.data or "",
            unsatisfied=settings.satisfaction.unsatisfied,
            deadlines=settings.deadlines(),
            now=datetime.now(UTC),
        )
        # The board shows the answer's consequence (a review pending) at once, not at the tick.
        refresh_findings(response.case_id)
        s.commit()
    except AlreadyAnswered:
        s.rollback()
        return _page(look_up(s, parsed, datetime.now(UTC)))
    except (IllegalTransition, StaleDataError, IntegrityError):
        # The office acted on the case at the same moment (a visit, a rework).
        s.rollback()
        link, _parsed = _link(token)
        if link.state == LinkState.OPEN:
            link = Link(LinkState.SUPERSEDED, link.case, link.reply)
        return _page(link)
    return _page(Link(LinkState.ANSWERED, link.case, link.reply, response), thanks=True)
