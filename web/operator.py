"""The operators' desk: logging a citizen's phone call as a case."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from intake.submission import Channel, Contact, Kind, Submission
from triage.access import Action
from triage.cases import register
from web import db, runtime
from web.auth import requires
from web.forms import PhoneCallForm

bp = Blueprint("operator", __name__, url_prefix="/board/calls")


@bp.route("/new", methods=["GET", "POST"])
@requires(Action.LOG_CALL)
def new_call() -> Response | str | tuple[str, int]:
    form = PhoneCallForm()
    if not form.validate_on_submit():
        return render_template("board/call.html", form=form), 400 if form.is_submitted() else 200
    now = datetime.now(UTC)
    call_id = (form.call_id.data or "").strip() or f"desk-{secrets.token_hex(8)}"
    submission = Submission(
        channel=Channel.PHONE,
        external_id=call_id,
        received_at=now,
        kind=Kind(form.kind.data),
        subject=form.subject.data.strip(),
        body=form.body.data.strip(),
        contact=Contact(name=form.name.data or "", phone=form.phone.data or ""),
    )
    reg = register(db(), submission, runtime().intake_policy(), now)
    if reg.created:
        flash(
            _(
                "Call logged as %(n)s. Tell the caller the number and the query code %(c)s.",
                n=reg.case.tracking_number,
                c=reg.query_code,
            ),
            "info",
        )
    else:
        flash(_("This call was already logged as %(n)s.", n=reg.case.tracking_number), "info")
    return redirect(url_for("board.case", number=reg.case.tracking_number))
