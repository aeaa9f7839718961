"""What a GeoReport v2 client sends, checked: the fields of a new request (POST requests)
and the filters of a list (GET requests). Anything wrong is an `ApiError` (400) that names
the field, never an exception further in.

Rules beyond the spec's: no control characters in any field (NUL is refused by PostgreSQL
and means a broken client); `description` 4 to 4,000 characters after cleaning (the spec's
4,000; the public form's minimum); a phone and an email as the public form accepts them;
`media_url` an http(s) address, kept and shown to staff, never fetched. A phone the public
form would refuse is kept as sent when it has five digits or more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email

from intake.normalise import PhoneError, clean_line, clean_text, normalise_phone
from web.open311.formats import ApiError
from web.open311.services import Service

DESCRIPTION_MIN = 4
DESCRIPTION_MAX = 4000
LINE_MAX = 200
ATTRIBUTES_MAX = 20
ATTRIBUTE_VALUE_MAX = 500
MEDIA_URL_MAX = 1000
# GET requests: the spec's default window, and how many ids one call may name.
DEFAULT_WINDOW = timedelta(days=90)
IDS_MAX = 100
PAGE_MAX = 100_000

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Invisible characters that hide or reorder text (as intake.normalise drops from text).
_HIDDEN = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_COORDINATE = re.compile(r"^[+-]?(?:\d{1,20}(?:\.\d{0,20})?|\.\d{1,20})(?:[eE][+-]?\d{1,3})?$")
_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]\x00-\x1f\x7f-\x9f]{1,100})\](?:\[\])?$")
_PAGE = re.compile(r"^\d{1,9}$")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
_W3C = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,30}))?)?([Zz]|[+\- ]\d{2}:?\d{2})?)?$"
)


def bad(field_name: str, why: str) -> ApiError:
    return ApiError(400, f"{field_name}: {why}")


def _value(form: Mapping[str, str], name: str, limit: int = LINE_MAX) -> str:
    """One single-line field, cleaned; "" when absent."""
    raw = form.get(name, "") or ""
    if _CONTROL.search(raw) or "\n" in raw or "\r" in raw:
        raise bad(name, "control characters and line breaks are not allowed")
    value = clean_line(raw)
    if len(value) > limit:
        raise bad(name, f"at most {limit} characters")
    return value


def _given(args: Mapping[str, str], name: str, limit: int) -> str | None:
    """A typed parameter: None when absent; ApiError when given empty (no value is not a
    date, a number or a status)."""
    if name not in args:
        return None
    value = _value(args, name, limit)
    if not value:
        raise bad(name, "empty; leave the parameter out instead")
    return value


def _coordinate(form: Mapping[str, str], name: str, bound: float) -> float | None:
    raw = (form.get(name, "") or "").strip()
    if not raw:
        return None
    if not _COORDINATE.match(raw):
        raise bad(name, "a decimal number of degrees, e.g. 31.2304")
    value = float(raw)
    if not math.isfinite(value) or abs(value) > bound:
        raise bad(name, f"between -{int(bound)} and {int(bound)}")
    return value


@dataclass(frozen=True)
class NewRequest:
    """A new service request as the client sent it, checked and cleaned."""

    service: Service
    description: str
    lat: float | None = None
    long: float | None = None
    address_string: str = ""
    address_id: str = ""
    email: str = ""
    phone: str = ""
    name: str = ""
    device_id: str = ""
    account_id: str = ""
    media_url: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def location(self) -> dict[str, Any]:
        """What is kept of the place: only the fields given."""
        found: dict[str, Any] = {}
        if self.lat is not None and self.long is not None:
            found["lat"] = self.lat
            found["long"] = self.long
        if self.address_string:
            found["address_string"] = self.address_string
        if self.address_id:
            found["address_id"] = self.address_id
        return found


def _name(first: str, last: str) -> str:
    """The citizen's name as written at home: 王 + 小明 → 王小明, John + Smith → John Smith."""
    if not first or not last:
        return first or last
    cjk = all("\u2e80" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in first + last)
    return f"{last}{first}" if cjk else f"{first} {last}"


def parse_new_request(form: Mapping[str, str], services: Sequence[Service]) -> NewRequest:
    """The fields of POST requests → a NewRequest, or ApiError (400) naming the first
    wrong field. `form` maps each field to its (first) value; attribute[CODE] fields are
    read from it too."""
    code = _value(form, "service_code", 100)
    if not code:
        raise bad("service_code", "required")
    service = next((s for s in services if s.code == code), None)
    if service is None:
        raise bad("service_code", "no such service; GET services for the list")

    raw_description = form.get("description", "") or ""
    if "\x00" in raw_description:
        raise bad("description", "control characters are not allowed")
    # As sent, too: the OpenAPI description's maxLength counts what the client sends, and
    # cleaning (NFKC, control characters) can shorten a text that is over it.
    if len(raw_description) > DESCRIPTION_MAX:
        raise bad("description", f"at most {DESCRIPTION_MAX} characters")
    description = clean_text(raw_description)
    if not description:
        raise bad("description", "required: what happened, where")
    if len(description) < DESCRIPTION_MIN:
        raise bad("description", f"at least {DESCRIPTION_MIN} characters")
    if len(description) > DESCRIPTION_MAX:
        raise bad("description", f"at most {DESCRIPTION_MAX} characters")

    lat = _coordinate(form, "lat", 90)
    long = _coordinate(form, "long", 180)
    if (lat is None) != (long is None):
        raise bad("lat/long", "give both or neither")
    address_string = _value(form, "address_string", 500)
    address_id = _value(form, "address_id", 100)
    if lat is None and not address_string and not address_id:
        raise bad("location", "required: lat and long, address_string or address_id")

    email = _value(form, "email")
    if email:
        try:
            email = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError as e:
            raise bad("email", "not an email address") from e
    phone = _value(form, "phone", 40)
    if phone:
        try:
            phone = normalise_phone(phone)
        except PhoneError as e:
            # Another system's numbers may follow other rules than the public form's: one
            # with enough digits is kept as sent, for a person to read and call.
            if sum(c.isdigit() for c in phone) < 5:
                raise bad("phone", "not a phone number") from e
    name = _name(_value(form, "first_name", 50), _value(form, "last_name", 50))

    media_url = _media_url(form)

    attributes: dict[str, str] = {}
    for key in form:
        found = _ATTRIBUTE.match(key)
        if found is None:
            continue
        if len(attributes) >= ATTRIBUTES_MAX:
            raise bad("attribute", f"at most {ATTRIBUTES_MAX} attributes")
        attributes[clean_line(found.group(1))] = _value(form, key, ATTRIBUTE_VALUE_MAX)

    return NewRequest(
        service=service,
        description=description,
        lat=lat,
        long=long,
        address_string=address_string,
        address_id=address_id,
        email=email,
        phone=phone,
        name=name,
        device_id=_value(form, "device_id", 100),
        account_id=_value(form, "account_id", 100),
        media_url=media_url,
        attributes=attributes,
    )


def _media_url(form: Mapping[str, str]) -> str:
    """The media address as sent (outer white space gone): not NFKC-normalised like text,
    which would change the address (``¨`` becomes a space and a diaeresis); characters that
    hide or reorder text (bidi, zero-width) are refused, since staff open it."""
    raw = (form.get("media_url", "") or "").strip()
    if _CONTROL.search(raw) or "\n" in raw or "\r" in raw:
        raise bad("media_url", "control characters and line breaks are not allowed")
    if len(raw) > MEDIA_URL_MAX:
        raise bad("media_url", f"at most {MEDIA_URL_MAX} characters")
    if raw and (not _URL.match(raw) or _HIDDEN.search(raw)):
        raise bad("media_url", "an http or https address")
    return raw


@dataclass(frozen=True)
class ListQuery:
    """GET requests: either `numbers` (service_request_id; then the rest is ignored, as the
    spec says) or the window [`start`, `end`] with optional services and status."""

    numbers: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    service_codes: tuple[str, ...] | None = None
    status: str | None = None  # "open" / "closed" / None (both)
    page: int = 1
    page_size: int = 50


def parse_datetime(raw: str, name: str, zone: ZoneInfo, end_of_day: bool = False) -> datetime:
    """A W3C / RFC 3339 date-time (``2026-11-30T09:00:00+08:00``, ``…Z``, any fraction of a
    second, a leap second read as :59; ``T10:00:00 08:00`` as +08:00, a "+" that came
    unencoded in a query string) or a date (the start of that local day; with
    `end_of_day`, its end), as aware UTC. Without an offset: local time of `zone`. A time
    beyond what a datetime holds in UTC (year 1 east of Greenwich) is the earliest or the
    latest datetime; a filter with it simply takes everything before or after."""
    found = _W3C.match(raw.strip())
    if found is None:
        raise bad(name, "a date-time such as 2026-11-30T09:00:00+08:00")
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    try:
        if hour is None:
            day_ = datetime(int(year), int(month), int(day)).date()
            local = datetime.combine(day_, time.max if end_of_day else time.min)
        else:
            local = datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute),
                min(int(second or 0), 59),
                int((fraction or "0")[:6].ljust(6, "0")),
            )
        if offset is None:
            value = local.replace(tzinfo=zone)
        elif offset in ("Z", "z"):
            value = local.replace(tzinfo=UTC)
        else:
            hours, minutes = int(offset[1:3]), int(offset[-2:])
            if hours > 23 or minutes > 59:
                raise ValueError(offset)
            delta = timedelta(hours=hours, minutes=minutes)
            # A space: a "+" of the query string that arrived unencoded (+ means space).
            value = local.replace(tzinfo=timezone(-delta if offset[0] == "-" else delta))
    except ValueError as e:
        raise bad(name, "a date-time such as 2026-11-30T09:00:00+08:00") from e
    try:
        return value.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if value.year < 2000 else datetime.max
        return edge.replace(tzinfo=UTC)


def parse_list_query(
    args: Mapping[str, str],
    services: Sequence[Service],
    zone: ZoneInfo,
    now: datetime,
    page_limit: int,
) -> ListQuery:
    """The query string of GET requests → a ListQuery, or ApiError (400)."""
    page = _page_number(args, "page", 1, PAGE_MAX)
    page_size = _page_number(args, "page_size", page_limit, page_limit)
    ids = _value(args, "service_request_id", 4000)
    if ids:
        numbers = tuple(dict.fromkeys(p.strip() for p in ids.split(",") if p.strip()))
        if len(numbers) > IDS_MAX:
            raise bad("service_request_id", f"at most {IDS_MAX} at once")
        return ListQuery(numbers=numbers, page=page, page_size=page_size)

    service_codes: tuple[str, ...] | None = None
    codes = _value(args, "service_code", 1000)
    if codes:
        known = {s.code for s in services}
        wanted = [c.strip() for c in codes.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise bad("service_code", f"no such service: {unknown[0][:100]}")
        service_codes = tuple(dict.fromkeys(wanted))

    status = _given(args, "status", 20)
    if status is not None:
        status = status.lower()
        states = {p.strip() for p in status.split(",") if p.strip()}
        if not states <= {"open", "closed"}:
            raise bad("status", "open or closed")
        status = None if len(states) != 1 else states.pop()

    start_raw, end_raw = _given(args, "start_date", 50), _given(args, "end_date", 50)
    end = parse_datetime(end_raw, "end_date", zone, end_of_day=True) if end_raw else None
    start = parse_datetime(start_raw, "start_date", zone) if start_raw else None
    if start is None and end is None:
        end = now
    if start is None:
        start = (end or now) - DEFAULT_WINDOW
    return ListQuery(
        start=start,
        end=end,
        service_codes=service_codes,
        status=status,
        page=page,
        page_size=page_size,
    )


def _page_number(args: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = _given(args, name, 20)
    if raw is None:
        return default
    if not _PAGE.match(raw) or not 1 <= int(raw) <= maximum:
        raise bad(name, f"a whole number from 1 to {maximum}")
    return int(raw)
