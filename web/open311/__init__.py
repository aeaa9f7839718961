"""Open311 GeoReport v2: other systems (a city's app, a WeChat mini-program, a neighbouring
district's hotline) file complaints into Minsheng and follow them.

- web/open311/views.py: the endpoints under /open311/v2/ (discovery, services,
  services/{code}, requests GET and POST, requests/{id}, tokens/{token}, openapi.json);
- web/open311/fields.py: what a client sends, checked; formats.py: JSON, XML and errors;
- web/open311/services.py: the configured categories as services;
- web/open311/registration.py: a request → a case through the common registration;
- web/open311/public.py: a case as anybody may read it;
- web/open311/admin.py: the administrators' page of API keys (triage/api_keys.py).

The API authenticates by key, not by cookie, so its blueprint alone is exempt from CSRF.
"""

from __future__ import annotations

from flask import Blueprint, Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

bp = Blueprint("open311", __name__, url_prefix="/open311/v2")


def init_app(app: Flask) -> None:
    """Registers the API (exempt from CSRF) and the key administration page."""
    from web import csrf
    from web.open311 import admin, views

    csrf.exempt(bp)
    app.register_blueprint(bp)
    app.register_blueprint(admin.bp)

    def _unrouted(e: HTTPException) -> Response | tuple[str, int]:
        # An address under the API's prefix that no rule takes (e.g. with a line break in
        # it) still answers in the API's format; every other one gets the usual page.
        pages = app.error_handler_spec[None][None].get(HTTPException)
        if request.path.startswith(bp.url_prefix or "/open311/v2") or pages is None:
            return views.http_error_answer(e)
        return pages(e)

    # By code, so that they come before the app's page for every HTTP error; the app's own
    # checks before routing (a control character in the address: 400) answer so too.
    for code in (400, 404, 405, 413, 429):
        app.register_error_handler(code, _unrouted)
