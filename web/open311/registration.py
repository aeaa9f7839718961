"""A new GeoReport request → a case on the channel `api`, through the registration every
channel uses (triage.cases.register): classified, routed and deadlined the same way.

Retries: a client that lost the answer sends the same request again. The same key, the same
`device_id` (or, without one, `account_id`) and the same service, description and contact
(name, phone, email) within `window` give the case made the first time, with the same query
code. The external id is ``api:<key id>:<24 hex of the request's hash>:<window number>``,
so two such requests at the same moment collide on the (channel, external id) constraint and
make one case; the earlier one is also found across the edge of a window. Without device_id
and account_id nothing tells a retry from a second report: each request is a case of its own.

The key and what the client said beyond the description are recorded on the case: its
`api_key_id`, and an ``api_filed`` event whose detail holds the key (id, prefix, name),
the caller's service code as a hint beside the classifier's suggestion, the place
(lat/long, address) and the other fields. Flask-free: it takes the session and flushes.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.submission import Channel, Contact, Submission
from triage.api_keys import ApiKey
from triage.cases import IntakePolicy, derived_query_code, register
from triage.models import Case
from web.open311.fields import NewRequest

SUBJECT_CHARACTERS = 40
FILED_ACTION = "api_filed"


@dataclass(frozen=True)
class Filed:
    """The case of a request; `created` False for a retry; `query_code` for the citizen."""

    case: Case
    created: bool
    query_code: str


def subject_of(description: str) -> str:
    """The case's subject: the description's first line, shortened (GeoReport has none)."""
    line = description.strip().split("\n", 1)[0].strip()
    if len(line) <= SUBJECT_CHARACTERS:
        return line
    # Three dots, not "…": the submission's cleaning (NFKC) would make it three dots anyway.
    return line[: SUBJECT_CHARACTERS - 3] + "..."


def _digest(key: ApiKey, new: NewRequest) -> str | None:
    who = new.device_id or new.account_id
    if not who:
        return None
    # The contact too: the same words from a differing phone, email or name are another
    # citizen's report (a shared device at a service counter), never a retry.
    text = "\n".join((who, new.service.code, new.description, new.name, new.phone, new.email))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def external_id_of(key: ApiKey, new: NewRequest, now: datetime, window: timedelta) -> str:
    """The request's external id (see the module's docstring)."""
    digest = _digest(key, new)
    if digest is None or window <= timedelta(0):
        return f"api:{key.id}:{uuid.uuid4().hex}"
    number = int(now.timestamp() // window.total_seconds())
    return f"api:{key.id}:{digest}:{number}"


def earlier_case(
    session: Session, key: ApiKey, new: NewRequest, now: datetime, window: timedelta
) -> Case | None:
    """The case of the same request by the same client within `window`, if any."""
    digest = _digest(key, new)
    if digest is None or window <= timedelta(0):
        return None
    return session.scalar(
        select(Case)
        .where(
            Case.channel == Channel.API,
            Case.api_key_id == key.id,
            Case.external_id.startswith(f"api:{key.id}:{digest}:"),
            Case.received_at >= now - window,
        )
        .order_by(Case.id.desc())
        .limit(1)
    )


def file_request(
    session: Session,
    new: NewRequest,
    key: ApiKey,
    policy: IntakePolicy,
    now: datetime,
    window: timedelta,
    secret: str,
) -> Filed:
    """Registers `new` as a case filed through `key` (or finds the case of its retry).

    Raises sqlalchemy's IntegrityError when the same request is registered at the same
    moment by another worker: roll back and call again, which then finds that case."""
    earlier = earlier_case(session, key, new, now, window)
    if earlier is not None:
        return Filed(earlier, False, derived_query_code(secret, earlier.external_id))
    external_id = external_id_of(key, new, now, window)
    code = derived_query_code(secret, external_id)
    submission = Submission(
        channel=Channel.API,
        external_id=external_id,
        received_at=now,
        subject=subject_of(new.description),
        body=new.description,
        contact=Contact(name=new.name, phone=new.phone, email=new.email),
        # Open311's address_string is the case's place (cut to cases.place's 200 characters).
        place=new.address_string[:200],
    )
    registration = register(session, submission, policy, now, code)
    case = registration.case
    if not registration.created:
        return Filed(case, False, code)
    case.api_key_id = key.id
    suggested = case.suggested_department.code if case.suggested_department else None
    case.record(
        FILED_ACTION,
        # Not the key's prefix: the timeline is shown to observers too; the case page's
        # Open311 panel shows the key to staff who see personal data.
        "Open311 API",
        now,
        api_key_id=key.id,
        api_key=key.prefix,
        api_key_name=key.name,
        service_code=new.service.code,
        # The caller's service as a department: the case page shows it on this event, as it
        # shows the model's on "suggested".
        department=new.service.department_code,
        suggested_department=suggested,
        hint_agrees=suggested == new.service.department_code,
        **new.location(),
        device_id=new.device_id,
        account_id=new.account_id,
        media_url=new.media_url,
        attributes=new.attributes,
    )
    session.flush()
    return Filed(case, True, code)


def request_token(secret: str, tracking_number: str) -> str:
    """The token GeoReport's tokens/{token} resolves: the number and a keyed signature of it
    (20 hex digits), so that nothing needs storing and no token can be made up."""
    return f"{tracking_number}_{_token_signature(secret, tracking_number)}"


def number_of_token(secret: str, token: str) -> str | None:
    """The tracking number a token of `request_token` names, or None for any other text."""
    number, sep, signature = token.rpartition("_")
    if not sep or not number or len(number) > 30:
        return None
    expected = _token_signature(secret, number)
    return number if hmac.compare_digest(signature.encode(), expected.encode()) else None


def _token_signature(secret: str, tracking_number: str) -> str:
    message = f"open311-token|{tracking_number}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:20]
