"""The GeoReport v2 endpoints under /open311/v2/: thin views that parse, call, render.

Each endpoint answers in JSON or XML by its address's ending (`.json` / `.xml`); errors come
in the spec's error format, in the same format (see web/open311/formats.py). Every call is
counted against a limit first (web/throttle.py): per key when it carries one (the
`X-Api-Key` header, or the form field `api_key` of a POST; never the query string), else per
client address; creating a request needs a key.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Response, current_app, g, request
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wsgi import get_content_length

from intake.submission import Channel
from triage.api_keys import ApiKey, verify_key
from triage.case_people import people_by_case
from triage.models import OPEN_STATUSES, Case, CaseEvent, Department
from triage.tracking_numbers import normalise_tracking_number
from web import BUSY_RETRY_SECONDS, LOCALES, db, runtime, throttle
from web.db import is_busy, is_conflict
from web.open311 import bp
from web.open311.fields import parse_list_query, parse_new_request
from web.open311.formats import ApiError, format_of_request, render, render_error
from web.open311.openapi import openapi_document
from web.open311.public import filed_details, listed_request
from web.open311.registration import (
    FILED_ACTION,
    file_request,
    number_of_token,
    request_token,
)
from web.open311.services import Service, as_spec, service_of_department, services_of

FMT = "<any(json, xml):fmt>"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
# When this interface last changed, for discovery's changeset.
CHANGESET = "2026-11-30T00:00:00Z"
RATE_WINDOW = timedelta(minutes=1)
# A POST's body: GeoReport's form encoding (multipart too, as some form libraries send).
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_JURISDICTION = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def _english() -> bool:
    return str(get_locale() or "") == "en"


def _zone() -> ZoneInfo:
    return ZoneInfo(runtime().settings.app.timezone)


def _services() -> list[Service]:
    return services_of(runtime().settings, _english())


def _check_jurisdiction() -> None:
    given = (request.values.get("jurisdiction_id") or "").strip()
    ours = runtime().settings.open311.jurisdiction_id
    if given and not _JURISDICTION.match(given):
        raise ApiError(400, "jurisdiction_id: letters, digits, dots, dashes (at most 100)")
    if given and ours and given != ours:
        raise ApiError(404, f"jurisdiction_id: unknown here; this endpoint serves {ours!r}")


def _guard(now: datetime, need_key: bool = False) -> ApiKey | None:
    """Counts the call against its limit (429 when over it), checks the jurisdiction and
    the key: a key given must be a live one (403); `need_key`: one must be given (403)."""
    settings = runtime().settings.open311
    if not settings.enabled:
        raise ApiError(404, "this office has switched the Open311 interface off")
    if "api_key" in request.args:
        # In the address a key ends up in server logs, proxies and browser histories.
        raise ApiError(
            400,
            "api_key: not in the query string; send it in the X-Api-Key header "
            "or as the form field api_key of a POST",
        )
    presented = (request.headers.get("X-Api-Key") or request.form.get("api_key") or "").strip()
    if need_key and not presented:
        raise ApiError(403, "api_key: required to create a request; ask the office for one")
    if presented:
        limit = throttle.Limit(
            "open311:key",
            throttle.key_of("open311-key", presented),
            settings.requests_per_minute,
            RATE_WINDOW,
        )
    else:
        limit = throttle.Limit(
            "open311:client",
            throttle.client_key("open311"),
            settings.anonymous_requests_per_minute,
            RATE_WINDOW,
        )
    _count(limit, now)
    _check_jurisdiction()
    if not presented:
        return None
    key = verify_key(db(), presented, now)
    if key is None:
        # Wrong keys count per address too, so that guessing keys (each guess a limit of its
        # own) is slowed down like reading without one.
        _count(
            throttle.Limit(
                "open311:badkey",
                throttle.client_key("open311-bad-key"),
                settings.anonymous_requests_per_minute,
                RATE_WINDOW,
            ),
            now,
        )
        raise ApiError(403, "api_key: not a valid key (unknown or revoked)")
    return key


def _count(limit: throttle.Limit, now: datetime) -> None:
    """Records this call under `limit`; ApiError 429 with Retry-After when over it."""
    attempt = throttle.begin(runtime().sessions, [limit], now)
    if attempt.refused is not None:
        wait = (attempt.retry_at or now) - now
        seconds = max(1, math.ceil(wait.total_seconds()))
        raise ApiError(
            429,
            f"too many requests; try again in {seconds} seconds",
            {"Retry-After": str(seconds)},
        )


@bp.before_request
def _limit_body() -> None:
    """Refuses a body over [open311] max_body_kb (413) before anything reads it: by its
    Content-Length, or, for a body without one, when reading passes the limit."""
    limit = runtime().settings.open311.max_body_kb * 1024
    too_large = ApiError(413, f"the request body is over {limit // 1024} KiB")
    request.max_content_length = limit
    environ = request.environ
    length = get_content_length(environ)
    if length is not None and length > limit:
        raise too_large
    if length is None and environ.get("wsgi.input_terminated"):
        # A chunked body: werkzeug would cut it at the limit silently and parse the rest.
        # Read it here, at most one byte past the limit, and hand on what was read.
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise too_large
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.pop("wsgi.input_terminated", None)


@bp.before_request
def _language() -> None:
    """The client's Accept-Language chooses the language of names and notices, as ?lang
    does (which wins); other systems send no language cookie."""
    if request.args.get("lang") in LOCALES:
        return
    best = request.accept_languages.best_match(LOCALES)
    if best:
        stack = ExitStack()
        stack.enter_context(force_locale(best))
        g.open311_locale = stack


@bp.teardown_request
def _language_done(exc: BaseException | None) -> None:
    stack = g.pop("open311_locale", None)
    if stack is not None:
        stack.close()


@bp.after_request
def _cross_origin(response: Response) -> Response:
    """Reading is open to web pages of any origin (a city's map, a newspaper's tracker):
    GET and HEAD answers, and the preflight of a GET with X-Api-Key. Never a POST: creating
    requests is for servers holding a key."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        response.headers["Access-Control-Allow-Origin"] = "*"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET"
        response.headers["Access-Control-Allow-Headers"] = "X-Api-Key"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


@bp.get(f"/discovery.{FMT}")
def discovery(fmt: str) -> Response:
    _guard(datetime.now(UTC))
    settings = runtime().settings
    url = request.url_root.rstrip("/") + bp.url_prefix
    document = {
        "changeset": CHANGESET,
        "contact": settings.open311.contact or settings.app.office_name,
        "key_service": _("Ask %(office)s for an API key.", office=settings.app.office_name),
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": url,
                "changeset": CHANGESET,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }
    return render(fmt, "discovery", document)


@bp.get(f"/services.{FMT}")
def services(fmt: str) -> Response:
    _guard(datetime.now(UTC))
    return render(fmt, "services", [as_spec(s) for s in _services()])


@bp.get(f"/services/<code>.{FMT}")
def service_definition(code: str, fmt: str) -> Response:
    _guard(datetime.now(UTC))
    service = next((s for s in _services() if s.code == code), None)
    if service is None:
        raise ApiError(404, "service_code: no such service; GET services for the list")
    # No service asks for attributes (metadata is false): the definition lists none.
    return render(fmt, "service_definition", {"service_code": service.code, "attributes": []})


@bp.post(f"/requests.{FMT}")
def create_request(fmt: str) -> Response:
    now = datetime.now(UTC)
    if request.mimetype not in FORM_TYPES:
        raise ApiError(
            400,
            f"Content-Type {request.mimetype or '(none)'}: send the fields as "
            "application/x-www-form-urlencoded (as GeoReport v2 says)",
        )
    key = _guard(now, need_key=True)
    assert key is not None
    new = parse_new_request(request.form.to_dict(flat=True), _services())
    settings = runtime().settings
    window = timedelta(minutes=settings.open311.retry_window_minutes)
    secret = current_app.config["SECRET_KEY"]
    s = db()
    try:
        filed = file_request(s, new, key, runtime().intake_policy(), now, window, secret)
    except IntegrityError:
        # The same request at the same moment from another worker: that one made the case.
        s.rollback()
        filed = file_request(s, new, key, runtime().intake_policy(), now, window, secret)
    number = filed.case.tracking_number
    notice = _(
        "Tracking number %(number)s, query code %(code)s: the citizen follows the case with "
        "both at %(url)s",
        number=number,
        code=filed.query_code,
        url=request.url_root.rstrip("/") + "/track",
    )
    answer = {
        "service_request_id": number,
        "token": request_token(secret, number),
        "service_notice": notice,
        "account_id": new.account_id or None,
        "query_code": filed.query_code,
    }
    return render(fmt, "service_requests", [answer], 201 if filed.created else 200)


@bp.get(f"/requests.{FMT}")
def list_requests(fmt: str) -> Response:
    now = datetime.now(UTC)
    _guard(now)
    services_ = _services()
    settings = runtime().settings
    query = parse_list_query(
        request.args.to_dict(flat=True), services_, _zone(), now, settings.open311.page_size
    )
    s = db()
    q = select(Case).options(
        selectinload(Case.events),
        selectinload(Case.replies),
        selectinload(Case.department),
        selectinload(Case.suggested_department),
    )
    if query.numbers:
        prefix = settings.app.tracking_prefix
        numbers = [n for n in (normalise_tracking_number(x, prefix) for x in query.numbers) if n]
        q = q.where(Case.tracking_number.in_(numbers))
    else:
        if query.start is not None:
            q = q.where(Case.received_at >= query.start)
        if query.end is not None:
            q = q.where(Case.received_at <= query.end)
        if query.service_codes is not None:
            q = q.where(_listed_under(query.service_codes, services_))
        if query.status == "open":
            q = q.where(Case.status.in_(OPEN_STATUSES))
        elif query.status == "closed":
            q = q.where(Case.status.not_in(OPEN_STATUSES))
    q = q.order_by(Case.received_at.desc(), Case.id.desc())
    q = q.offset((query.page - 1) * query.page_size).limit(query.page_size)
    cases = list(s.scalars(q))
    filed = filed_details(s, [c.id for c in cases])
    zone, english = _zone(), _english()
    people = people_by_case(s, [c.id for c in cases])
    listed = [
        listed_request(s, c, services_, zone, english, filed.get(c.id), people.get(c.id))
        for c in cases
    ]
    return render(fmt, "service_requests", listed)


def _listed_under(codes: Sequence[str], services_: Sequence[Service]) -> ColumnElement[bool]:
    """Cases whose listed service (public.service_of_case) is one of `codes`: dispatched
    ones by their department's first service, api cases not yet dispatched by the caller's
    service_code, others by the suggested department's first service."""
    firsts = {s.department_code for s in services_ if s.code in codes}
    departments = [
        d for d in firsts if (first := service_of_department(services_, d)) and first.code in codes
    ]
    ids = select(Department.id).where(Department.code.in_(departments))
    hinted = select(CaseEvent.case_id).where(
        CaseEvent.action == FILED_ACTION,
        CaseEvent.detail["service_code"].as_string().in_(list(codes)),
    )
    waiting = Case.department_id.is_(None)
    return or_(
        Case.department_id.in_(ids),
        and_(waiting, Case.channel == Channel.API, Case.id.in_(hinted)),
        and_(waiting, Case.channel != Channel.API, Case.suggested_department_id.in_(ids)),
    )


@bp.get(f"/requests/<request_id>.{FMT}")
def get_request(request_id: str, fmt: str) -> Response:
    _guard(datetime.now(UTC))
    number = normalise_tracking_number(request_id, runtime().settings.app.tracking_prefix)
    case = None
    if number is not None:
        case = db().scalar(select(Case).where(Case.tracking_number == number))
    if case is None:
        raise ApiError(404, "service_request_id: no such request")
    filed = filed_details(db(), [case.id]).get(case.id)
    listed = listed_request(db(), case, _services(), _zone(), _english(), filed)
    return render(fmt, "service_requests", [listed])


@bp.get(f"/tokens/<token>.{FMT}")
def get_token(token: str, fmt: str) -> Response:
    _guard(datetime.now(UTC))
    number = number_of_token(current_app.config["SECRET_KEY"], token)
    exists = number is not None and db().scalar(
        select(Case.id).where(Case.tracking_number == number)
    )
    if not exists:
        raise ApiError(404, "token: no such token")
    return render(fmt, "service_requests", [{"service_request_id": number, "token": token}])


@bp.get("/openapi.json")
def openapi() -> Response:
    if not runtime().settings.open311.enabled:
        raise ApiError(404, "this office has switched the Open311 interface off")
    page_size = runtime().settings.open311.page_size
    document = openapi_document(
        request.url_root.rstrip("/") + bp.url_prefix, _services(), page_size
    )
    return render("json", "openapi", document)


@bp.errorhandler(ApiError)
def _api_error(e: ApiError) -> Response:
    return render_error(format_of_request(), e.status, e.description, e.headers)


@bp.errorhandler(HTTPException)
def _http_error(e: HTTPException) -> Response:
    return http_error_answer(e)


def http_error_answer(e: HTTPException) -> Response:
    """An HTTP error (404, 405, 413, a 400 of the app's own checks) in the API's format.
    Also answers addresses under /open311/v2/ that no endpoint takes (see init_app)."""
    code = e.code or 500
    descriptions = {
        400: "the request is malformed",
        404: "nothing here: see discovery.json and openapi.json for the endpoints",
        405: "this address does not take this method",
        413: "the request body is too large",
    }
    headers = {}
    if isinstance(e, MethodNotAllowed) and e.valid_methods:
        headers["Allow"] = ", ".join(e.valid_methods)
    return render_error(format_of_request(), code, descriptions.get(code, e.name.lower()), headers)


@bp.errorhandler(Exception)
def _server_error(e: Exception) -> Response:
    if is_busy(e):
        # SQLite's write lock not had in time (another process's long transaction).
        current_app.logger.warning("Open311 request: database busy: %s", e)
        return render_error(
            format_of_request(),
            503,
            "the service is busy; nothing was saved: try again later",
            {"Retry-After": str(BUSY_RETRY_SECONDS)},
        )
    if is_conflict(e):
        # PostgreSQL rolled the request back for colliding with another writer (deadlock,
        # serialization failure): nothing saved, the same request may be sent again.
        current_app.logger.warning("Open311 request: write conflict: %s", e)
        return render_error(
            format_of_request(),
            409,
            "another request changed the same data at the same time; nothing was saved: try again",
        )
    current_app.logger.exception("Open311 request failed", exc_info=e)
    return render_error(format_of_request(), 500, "internal error; the office has been told")
