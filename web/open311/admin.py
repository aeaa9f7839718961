"""The administrators' page of Open311 API keys: list, make (the key shown once, in the answer
to the form that made it), revoke.

The same as `minsheng api-key add | list | revoke` (web/cli_api_keys.py); the domain is
triage/api_keys.py. Only administrators may open it; every form carries a CSRF token (this
blueprint is not the API's, so it is not exempt).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.wrappers import Response
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length

from triage import admin_log
from triage.access import Action
from triage.api_keys import NAME_MAX, ApiKey, create_key, list_keys, revoke_key
from web import db
from web.auth import requires
from web.forms import ActionForm, Form

bp = Blueprint("api_keys", __name__, url_prefix="/admin/api-keys")
# The session's list of the key forms already used: sending one again (a reload of the answer
# that showed the key) makes no second key. The key itself never goes in the session: Flask's
# session cookie is signed, not encrypted, so anyone holding the cookie could read it.
USED_FORMS = "open311_key_forms_used"
USED_FORMS_KEPT = 20


class NewKeyForm(Form):
    name = StringField(
        _l("Who the key is for"),
        validators=[
            DataRequired(_l("Name the system or organisation that gets the key.")),
            Length(max=NAME_MAX, message=_l("At most 100 characters.")),
        ],
    )
    once = HiddenField(default=lambda: secrets.token_urlsafe(16))


def _page(
    form: NewKeyForm, status: int = 200, new_key: str = "", new_row: ApiKey | None = None
) -> Response:
    """The page: the form, every key (newest first) and, once, a key just made."""
    response = make_response(
        render_template(
            "open311/keys.html",
            form=form,
            action_form=ActionForm(),
            keys=list_keys(db()),
            new_key=new_key,
            new_row=new_row,
        ),
        status,
    )
    # The page may show a key: never kept by a cache or a shared computer's history.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("")
@requires(Action.ADMINISTER)
def index() -> Response:
    return _page(NewKeyForm())


@bp.post("")
@requires(Action.ADMINISTER)
def add() -> Response:
    form = NewKeyForm()
    if not form.validate_on_submit():
        return _page(form, 400)
    once = (form.once.data or "")[:64]
    used = [u for u in session.get(USED_FORMS, []) if isinstance(u, str)]
    if once and once in used:
        flash(
            _(
                "This form was sent already and its key was shown once; it is in the list below. "
                "Revoke it and make a new one if it was not noted down."
            ),
            "info",
        )
        return redirect(url_for("api_keys.index"))
    if once:
        session[USED_FORMS] = [*used, once][-USED_FORMS_KEPT:]
    made = create_key(
        db(), form.name.data or "", current_user.username, datetime.now(UTC), current_user.id
    )
    # The administrators' log names the key by its prefix, never the key itself.
    admin_log.record(
        db(),
        current_user._get_current_object(),
        "api_key_issued",
        f"api key {made.row.prefix}",
        made.row.created_at,
        name=made.row.name,
    )
    return _page(NewKeyForm(), new_key=made.secret, new_row=made.row)


@bp.post("/<int:key_id>/revoke")
@requires(Action.ADMINISTER)
def revoke(key_id: int) -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    key = db().get(ApiKey, key_id)
    if key is None:
        abort(404)
    if revoke_key(db(), key, datetime.now(UTC)):
        admin_log.record(
            db(),
            current_user._get_current_object(),
            "api_key_revoked",
            f"api key {key.prefix}",
            datetime.now(UTC),
            name=key.name,
        )
        flash(_("Key %(prefix)s (%(name)s) revoked.", prefix=key.prefix, name=key.name), "info")
    else:
        flash(_("Key %(prefix)s was revoked already.", prefix=key.prefix), "info")
    return redirect(url_for("api_keys.index"))
