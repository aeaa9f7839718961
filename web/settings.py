"""config.toml → one validated, typed Settings object.

Parsed once at start-up. A wrong or unknown key stops start-up with a message that names the
key and the file. Relative paths are resolved against the folder of the config file; the
environment may override the database URL (MINSHENG_DATABASE_URL) and the secret key
(MINSHENG_SECRET_KEY).
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from intake.email import AttachmentLimits
from intake.mailbox import MailboxConfig
from intake.submission import Kind
from triage.calendar import WorkCalendar
from triage.deadlines import LIMIT_NAMES, CommitmentOverride, Deadlines, TimeLimits
from triage.models import Role
from triage.rejection import RejectionReason
from triage.sms import shortest

DEFAULT_CONFIG = "config.toml"


class ConfigError(RuntimeError):
    """The config file is missing, unreadable or invalid; the message says where."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# One label of a host name (letters of any script, digits, inner hyphens), an IPv4 address.
_HOST_LABEL = re.compile(r"^[^\W_]([\w-]*[^\W_])?$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def _valid_host(host: str) -> bool:
    if ":" in host:  # an IPv6 address, given in brackets
        return bool(re.fullmatch(r"[0-9A-Fa-f:.]+", host))
    if _IPV4.match(host):
        return all(int(n) <= 255 for n in host.split("."))
    labels = host.removesuffix(".").split(".")
    return all(len(x) <= 63 and _HOST_LABEL.match(x) for x in labels)


def check_base_url(value: str) -> str:
    """`[app] base_url`: the site's public address, which links in citizens' mails and SMS
    start with (``base_url + "/track"``). Returns it unchanged; raises ValueError saying
    what is wrong: white space, no http(s) scheme, no host, a user or password, a bad port,
    a query (``?``) or a fragment (``#``), which the paths added after it would break. A
    path is allowed (the site served under a prefix: ``https://gov.example.cn/minsheng``).
    """
    if not value:
        raise ValueError(
            "is empty: give the site's public address, e.g. https://12345.example.gov.cn"
        )
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"{value!r} contains a space or another invisible character")
    if "://" not in value:
        raise ValueError(
            f"{value!r} has no scheme: write it with http:// or https:// in front "
            f"(https://{value.lstrip('/')})"
        )
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{value!r}: the scheme must be http or https, not {parts.scheme!r}")
    if "?" in value:
        raise ValueError(
            f"{value!r} has a query (?…): links are made by adding paths to it; "
            "give the site's address only"
        )
    if "#" in value:
        raise ValueError(
            f"{value!r} has a fragment (#…): links are made by adding paths to it; "
            "give the site's address only"
        )
    if "@" in parts.netloc:
        raise ValueError(f"{value!r} holds a user name or password (…@): links must not")
    host = parts.hostname or ""
    if not host or not _valid_host(host):
        raise ValueError(f"{value!r} has no valid host name after {parts.scheme}://")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        raise ValueError(f"{value!r} has a port that is not a number from 1 to 65535")
    return value


class AppSettings(Section):
    office_name: str = "机关效能建设办公室"
    office_name_en: str = "Efficiency Office"
    secret_key: str = ""
    instance_dir: str = "instance"
    timezone: str = "Asia/Shanghai"
    default_locale: Literal["zh", "en"] = "zh"
    base_url: str = "http://127.0.0.1:5000"
    session_cookie_secure: bool = False
    # How many reverse proxies (nginx …) stand in front: their X-Forwarded-* headers are
    # trusted, so rate limits see the citizen's address rather than the proxy's.
    trusted_proxies: Annotated[int, Field(ge=0, le=5)] = 0
    tracking_prefix: Annotated[str, Field(pattern=r"^[A-Z]{1,6}$")] = "MS"
    # The office's own telephone area code (010, 0571): a local number a caller gives
    # without it (8765 4321) is the same caller as with it (triage/callers.py); "" for none.
    area_code: str = ""

    @field_validator("area_code")
    @classmethod
    def _area_code(cls, v: str) -> str:
        from triage.callers import area_code_digits

        return area_code_digits(v)

    @field_validator("base_url")
    @classmethod
    def _site_address(cls, v: str) -> str:
        return check_base_url(v)


class DatabaseSettings(Section):
    url: str = "sqlite:///instance/minsheng.db"


class CalendarSettings(Section):
    extra_holidays: list[date] = []
    extra_workdays: list[date] = []


class TimeLimitSettings(Section):
    triage_working_days: Annotated[int, Field(ge=0)] = 1
    handling_working_days: Annotated[int, Field(ge=1)] = 5
    urgent_triage_hours: Annotated[int, Field(ge=1)] = 1
    urgent_handling_hours: Annotated[int, Field(ge=1)] = 2
    extension_max_working_days: Annotated[int, Field(ge=0)] = 10
    send_back_working_days: Annotated[int, Field(ge=0)] = 2
    return_visit_working_days: Annotated[int, Field(ge=1)] = 3
    rework_working_days: Annotated[int, Field(ge=1)] = 5
    # An urgent hazard's clocks run in hours; a send-back window also ends by the deadline.
    urgent_send_back_hours: Annotated[int, Field(ge=0)] = 1
    urgent_return_visit_hours: Annotated[int, Field(ge=1)] = 24
    urgent_rework_hours: Annotated[int, Field(ge=1)] = 2
    # Reminder to the department before its deadline (0: none), escalation (督办) after it.
    reminder_before_working_days: Annotated[int, Field(ge=0)] = 1
    urgent_reminder_before_hours: Annotated[int, Field(ge=0)] = 1
    escalation_grace_working_days: Annotated[int, Field(ge=0)] = 1
    urgent_escalation_grace_hours: Annotated[int, Field(ge=0)] = 1
    # Other limits for some kinds, urgencies or departments ([[time_limits.overrides]]).
    overrides: list[CommitmentOverrideSettings] = []


class CommitmentOverrideSettings(Section):
    """`[[time_limits.overrides]]`: limits for the cases that match kind, urgent and
    department (each unset matches any); the most specific match wins."""

    kind: Kind | None = None
    urgent: bool | None = None
    department: str | None = None
    triage_working_days: Annotated[int | None, Field(ge=0)] = None
    handling_working_days: Annotated[int | None, Field(ge=1)] = None
    urgent_triage_hours: Annotated[int | None, Field(ge=1)] = None
    urgent_handling_hours: Annotated[int | None, Field(ge=1)] = None
    extension_max_working_days: Annotated[int | None, Field(ge=0)] = None
    send_back_working_days: Annotated[int | None, Field(ge=0)] = None
    return_visit_working_days: Annotated[int | None, Field(ge=1)] = None
    rework_working_days: Annotated[int | None, Field(ge=1)] = None
    urgent_send_back_hours: Annotated[int | None, Field(ge=0)] = None
    urgent_return_visit_hours: Annotated[int | None, Field(ge=1)] = None
    urgent_rework_hours: Annotated[int | None, Field(ge=1)] = None
    reminder_before_working_days: Annotated[int | None, Field(ge=0)] = None
    urgent_reminder_before_hours: Annotated[int | None, Field(ge=0)] = None
    escalation_grace_working_days: Annotated[int | None, Field(ge=0)] = None
    urgent_escalation_grace_hours: Annotated[int | None, Field(ge=0)] = None

    def to_override(self) -> CommitmentOverride:
        limits = tuple(
            (name, value) for name in LIMIT_NAMES if (value := getattr(self, name)) is not None
        )
        return CommitmentOverride(
            kind=str(self.kind) if self.kind else None,
            urgent=self.urgent,
            department=self.department,
            limits=limits,
        )


class SupervisionSettings(Section):
    """`[supervision]`: how the four combinations are enforced (see triage/rules)."""

    # Self-check (自律): a department's reply goes out only after its head signs it off.
    reply_sign_off: bool = False
    # Extensions (延期) a case may be granted; each at most time_limits.extension_max_working_days.
    extensions_allowed: Annotated[int, Field(ge=0, le=10)] = 1
    # Failed return-visit attempts after which a supervisor may close with a recorded reason.
    visit_attempts_before_close: Annotated[int, Field(ge=1, le=20)] = 3
    # Unannounced spot checks (不定期抽查): every `spot_check_every_days` days the tick draws
    # `spot_check_sample` cases closed in the last `spot_check_window_days` days.
    spot_check_sample: Annotated[int, Field(ge=0, le=1000)] = 5
    spot_check_window_days: Annotated[int, Field(ge=1, le=366)] = 30
    spot_check_every_days: Annotated[int, Field(ge=1, le=366)] = 7
    # Local hour at which the tick sends the daily digest.
    digest_hour: Annotated[int, Field(ge=0, le=23)] = 8
    # The supervisors' addresses (staff accounts carry none): escalations (督办) and the
    # office's daily digest go there; a department's reminders, escalations and digest go to
    # its `email`, which its head reads.
    supervisors_email: list[str] = []

    @field_validator("supervisors_email")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            if "@" not in address or any(c.isspace() for c in address.strip()):
                raise ValueError(f"{address!r} is not a mail address")
        return [a.strip() for a in v]


class ReportSettings(Section):
    """`[report]`: the monthly figures (triage/report/figures.py, DOMAIN.md "Monthly
    figures"): the three rates' weights in the composite score, the weight of 基本满意, the
    month's cut-off day and the star thresholds (星级科室)."""

    # The statistical month ends on this day (1-28): month M runs from the day after it in
    # M-1 to this day of M, local time. 0: the calendar month.
    cutoff_day: Annotated[int, Field(ge=0, le=28)] = 0
    response_weight: Annotated[float, Field(ge=0, le=1)] = 0.1
    resolution_weight: Annotated[float, Field(ge=0, le=1)] = 0.5
    satisfaction_weight: Annotated[float, Field(ge=0, le=1)] = 0.4
    # 基本满意 counts this much of 满意 in the satisfaction rate.
    basic_satisfied_weight: Annotated[float, Field(ge=0, le=1)] = 0.9
    # Composite score (0-1) from which a department has 2, 3, 4 and 5 stars; below: 1 star.
    star_thresholds: list[Annotated[float, Field(ge=0, le=1)]] = [0.6, 0.7, 0.8, 0.9]
    # Hot issues listed, and the cases of a month clustered at most (above: a 1-in-k sample).
    hot_issues: Annotated[int, Field(ge=0, le=50)] = 5
    hot_issue_sample: Annotated[int, Field(ge=100, le=20000)] = 2000
    # Who gets the monthly report email (`minsheng report monthly --send` without --to, and
    # the supervision tick), and the local day of the month on which the tick sends the
    # previous month's report, at or after [supervision] digest_hour (0: the tick never does).
    recipients: list[str] = []
    send_day: Annotated[int, Field(ge=0, le=28)] = 3

    @field_validator("recipients")
    @classmethod
    def _recipient_addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            if "@" not in address or any(c.isspace() for c in address.strip()):
                raise ValueError(f"{address!r} is not a mail address")
        return [a.strip() for a in v]

    @field_validator("star_thresholds")
    @classmethod
    def _four_rising(cls, v: list[float]) -> list[float]:
        if len(v) != 4 or any(a >= b for a, b in pairwise(v)):
            raise ValueError("give four rising composite scores: for 2, 3, 4 and 5 stars")
        return v

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> ReportSettings:
        total = self.response_weight + self.resolution_weight + self.satisfaction_weight
        if abs(total - 1) > 1e-9:
            raise ValueError(f"the three weights must add up to 1 (they add up to {total:g})")
        return self


class AttachmentSettings(Section):
    max_files: Annotated[int, Field(ge=0, le=20)] = 5
    max_file_mb: Annotated[float, Field(gt=0, le=100)] = 10
    allowed_types: list[str] = [
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/heic",
        "application/pdf",
    ]


class TrackingSettings(Section):
    """Limits on wrong progress lookups (受理编号 + 查询码), each over a sliding window.

    Three limits, so that a guesser is stopped and a neighbour behind the same address is
    not: one address guessing one number, everybody guessing one number, one address
    guessing across numbers (generous: a household or a carrier's NAT shares an address).
    """

    # Wrong codes for one tracking number from one address.
    max_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    window_minutes: Annotated[int, Field(ge=1, le=1440)] = 15
    # Wrong codes for one tracking number from all addresses together.
    number_max_failures: Annotated[int, Field(ge=1, le=1000)] = 10
    number_window_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    # Wrong lookups from one address, whatever the number.
    client_max_failures: Annotated[int, Field(ge=1, le=10000)] = 30
    client_window_minutes: Annotated[int, Field(ge=1, le=1440)] = 15
    # Warn the citizen when this many attempts or fewer are left.
    warn_when_left: Annotated[int, Field(ge=0, le=1000)] = 3
    # Shown with the lock message: the office's hotline, e.g. "12345".
    hotline: str = "12345"
    # Every wrong lookup answers this many seconds after the request came in, longer than
    # the work it does, so its duration tells nothing about whether the number exists.
    failed_answer_seconds: Annotated[float, Field(ge=0, le=10)] = 0.3


class SignInSettings(Section):
    """Limits on wrong staff passwords, each over a sliding window (see web/auth.py)."""

    # Wrong passwords for one username from one address.
    max_failures: Annotated[int, Field(ge=1, le=1000)] = 10
    window_minutes: Annotated[int, Field(ge=1, le=1440)] = 15
    # Wrong sign-ins from one address, whatever the username (password spraying).
    client_max_failures: Annotated[int, Field(ge=1, le=10000)] = 30
    client_window_minutes: Annotated[int, Field(ge=1, le=1440)] = 15
    # Wrong passwords for one username from all addresses, except from browsers that have
    # signed in with it before.
    account_max_failures: Annotated[int, Field(ge=1, le=100000)] = 50
    account_window_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    # Every failed sign-in answers this many seconds after the request came in, longer than
    # the hash work, so its duration tells nothing about whether the username exists.
    failed_answer_seconds: Annotated[float, Field(ge=0, le=10)] = 0.5


class ClassifierSettings(Section):
    # Empty: <instance_dir>/models.
    model_dir: str = ""
    auto_route: bool = True
    # Leave unset to use the threshold the model chose for target_precision.
    auto_route_threshold: Annotated[float | None, Field(ge=0, le=1)] = None
    target_precision: Annotated[float, Field(gt=0, le=1)] = 0.97
    duplicate_window_days: Annotated[int, Field(ge=0)] = 30
    # triage.similarity.duplicate_score from which a case is listed as a possible duplicate.
    duplicate_min_score: Annotated[float, Field(gt=0, le=1)] = 0.46
    hazard_terms: list[str] = []


class MailSettings(Section):
    """The SMTP server the outbox sends through (web/mail.py), and how it retries."""

    sender: str = "minsheng@localhost"
    server: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    # STARTTLS on a plain port (587), or TLS from the start (465); not both.
    use_tls: bool = False
    use_ssl: bool = False
    username: str = ""
    password: str = ""
    # The name of an environment variable holding the password (instead of `password`).
    password_env: str = ""
    # Tries before a mail is marked failed; the n-th failed try waits
    # min(retry_max_seconds, retry_base_seconds · 2^(n-1)) before the next.
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 10
    retry_base_seconds: Annotated[float, Field(gt=0)] = 60
    retry_max_seconds: Annotated[float, Field(gt=0)] = 3600
    # Per network operation with the SMTP server. A sender's claim on a mail lasts ten times
    # this: a sender that dies mid-send holds its mail that long.
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30

    @model_validator(mode="after")
    def _consistent(self) -> MailSettings:
        if self.use_tls and self.use_ssl:
            raise ValueError("use_tls (STARTTLS) and use_ssl (TLS from the start): choose one")
        if self.password and self.password_env:
            raise ValueError("give password or password_env, not both")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("retry_max_seconds is below retry_base_seconds")
        if "@" not in self.sender:
            raise ValueError(f"sender {self.sender!r} is not a mail address")
        return self

    def smtp_password(self) -> str:
        """The password: from the environment variable `password_env` when set; raises
        ConfigError naming the variable when it is not in the environment."""
        if not self.password_env:
            return self.password
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(
                f"mail.password_env: environment variable {self.password_env} is not set"
            )
        return value


# Office files and plain text come by mail more than through the web form; `[attachments]`
# types plus these are kept from mail (checked against the content, not the name).
EMAIL_EXTRA_ATTACHMENT_TYPES = [
    "text/plain",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
]


class ImapSettings(Section):
    """`[intake.imap]`: the complaints mailbox `minsheng intake mail` reads (absent: none).

    The connection keys are `intake.mailbox.MailboxConfig`'s, with the same meaning.
    """

    host: Annotated[str, Field(min_length=1)]
    username: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    # None: TLS from the start (993) unless starttls (143) is set.
    ssl: bool | None = None
    starttls: bool = False
    password: str | None = None
    password_env: str | None = None
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    spam_folder: str = "Spam"
    ca_file: str | None = None
    connect_timeout: Annotated[float, Field(gt=0, le=600)] = 15.0
    read_timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    idle_timeout: Annotated[float, Field(gt=0, le=29 * 60)] = 300.0
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 30.0
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 200
    # The mailbox's own addresses besides `username` and `[mail] sender`: mail from them is
    # never acknowledged (no loops).
    own_addresses: list[str] = []
    # False: register mail but send no acknowledgments.
    acknowledge: bool = True
    # At most this many acknowledgments to one address in 24 hours; beyond it a case is
    # registered without one (a forged Reply-To or a naive auto-responder cannot loop us).
    acknowledgments_per_address_per_day: Annotated[int, Field(ge=0, le=1000)] = 3
    # Attachment types kept from mail besides `[attachments] allowed_types`.
    extra_attachment_types: list[str] = EMAIL_EXTRA_ATTACHMENT_TYPES
    # How long a `--watch` holds the mailbox without renewing; another machine's watcher
    # takes over this long after the holder died.
    lease_seconds: Annotated[float, Field(ge=5, le=3600)] = 60.0

    @model_validator(mode="after")
    def _consistent(self) -> ImapSettings:
        if self.ssl is True and self.starttls:
            raise ValueError("choose one of ssl and starttls, not both")
        if self.password is not None and self.password_env:
            raise ValueError("give password or password_env, not both")
        if self.password is None and not self.password_env:
            raise ValueError("give password or password_env")
        return self

    @property
    def mailbox_name(self) -> str:
        """How rows, the lease and the health panel name this mailbox: user@host/folder."""
        return f"{self.username}@{self.host}/{self.folder}"


class Open311Settings(Section):
    """`[open311]`: the Open311 GeoReport v2 interface for other systems (web/open311)."""

    enabled: bool = True
    # Names this deployment to GeoReport clients; a request naming another one is refused.
    jurisdiction_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{0,100}$")] = ""
    # Requests (reads and writes together) one API key may make per minute ...
    requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 60
    # ... and one client address without a key (reads only).
    anonymous_requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 60
    # The same request again (same key, device_id and text) within this many minutes is the
    # same case: a client retrying after a lost answer. 0: every request is a new case.
    retry_window_minutes: Annotated[int, Field(ge=0, le=1440)] = 10
    # Cases in one page of GET requests, unless the client asks for fewer (page_size).
    page_size: Annotated[int, Field(ge=1, le=1000)] = 50
    # A request body (POST requests) over this many KiB is refused (413) before it is read.
    max_body_kb: Annotated[int, Field(ge=1, le=10_240)] = 64
    contact: str = ""  # discovery's contact line, e.g. the office's address for developers


class NotificationSettings(Section):
    """`[notifications]`: what the citizen is told without asking (triage/notifications.py),
    by mail when they gave an address, else by SMS (`[sms]`) when they gave a mobile number.

    An email case's receipt is the mail intake's acknowledgment, never a second mail."""

    received: bool = True
    replied: bool = True
    closed: bool = True
    # The reply notice carries a single-use satisfaction link (`[satisfaction]`).
    satisfaction_link: bool = True


class SmsSettings(Section):
    """`[sms]`: the HTTP gateway text messages go through (triage/sms.py); off unless `url`.

    A request per message: `method` POST sends a JSON body (or a form with `body = "form"`),
    GET puts the fields in the query. Fields: `phone_field` (the number), `text_field` (the
    text), `id_field` (a deterministic id per notice, for the gateway to drop repeats).
    The token, when the gateway needs one, comes from the environment variable `token_env`
    and goes in the header `token_header` after `token_prefix`. A 2xx answer is delivered;
    408, 429 and 5xx are tried again with the mail outbox's backoff; other 4xx fail at once.
    Templates take {office} {tracking_number} {query_code} {link} {reply}; a text longer than
    `max_length` characters is shortened in {reply} first, then in {office}; the link and
    the codes are never cut, and a `max_length` too short to hold them is refused."""

    url: str = ""
    method: Literal["POST", "GET"] = "POST"
    body: Literal["json", "form"] = "json"
    headers: dict[str, str] = {}
    token_env: str = ""
    token_header: str = "Authorization"
    token_prefix: str = "Bearer "
    phone_field: str = "phone"
    text_field: str = "text"
    id_field: str = "id"
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 10
    max_length: Annotated[int, Field(ge=70, le=1000)] = 300
    received_template: str = (
        "【{office}】您的诉求已受理，受理编号{tracking_number}，查询码{query_code}。"
        "查询进度：{link}"
    )
    replied_template: str = (
        "【{office}】您的诉求（{tracking_number}）已答复：{reply} 请评价办理结果：{link}"
    )
    closed_template: str = "【{office}】您的诉求（{tracking_number}）已办结。感谢您的监督。"

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s) address")
        return v

    @field_validator("received_template", "replied_template", "closed_template")
    @classmethod
    def _known_fields(cls, v: str) -> str:
        import string

        known = {"office", "tracking_number", "query_code", "link", "reply"}
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as e:
            raise ValueError(f"not a valid template: {e}") from e
        unknown = names - known
        if unknown:
            raise ValueError(
                f"unknown field {{{sorted(unknown)[0]}}}; use {', '.join(sorted(known))}"
            )
        return v

    def token(self) -> str:
        """The gateway's token from `token_env`; "" when none is configured. Raises
        ConfigError naming the variable when it is configured and not set."""
        if not self.token_env:
            return ""
        value = os.environ.get(self.token_env)
        if value is None:
            raise ConfigError(f"sms.token_env: environment variable {self.token_env} is not set")
        return value


class SatisfactionSettings(Section):
    """`[satisfaction]`: the link in the reply notice (web/satisfaction.py): valid this
    many days, and where an unsatisfied or unsolved answer sends the case: a supervisor's
    review (`review`, who then closes it with a reason or sends it for rework) or straight
    back to the department (`rework`)."""

    link_days: Annotated[int, Field(ge=1, le=90)] = 15
    unsatisfied: Literal["review", "rework"] = "review"
    # Answers from one client address per hour (a link is single-use anyway).
    answers_per_hour: Annotated[int, Field(ge=1, le=10000)] = 20


class CallMappingSettings(Section):
    """`[intake.calls.mappings.NAME]`: the header names of one call centre's export (see
    intake/phone.py ColumnMapping, whose defaults these are). "" for call_id, duration,
    operator, name, address or kind: the export has no such column (without a call id a
    call is known by its number and time)."""

    call_id: str = "工单号"
    phone: Annotated[str, Field(min_length=1)] = "来电号码"
    called_at: Annotated[str, Field(min_length=1)] = "来电时间"
    duration: str = "通话时长"
    body: Annotated[str, Field(min_length=1)] = "诉求内容"
    operator: str = "话务员"
    name: str = "姓名"
    address: str = "地址"
    kind: str = "诉求类型"
    # The column with the call's time of day, when called_at holds only its date (WPS and
    # some call centres export 来电日期 and 来电时刻 apart); "" (default): called_at holds
    # the date and time, and a date alone is a bad row.
    time_of_day: str = ""
    # Values of the kind column besides 投诉/建议/咨询/表扬: value → complaint, suggestion,
    # inquiry or praise.
    kinds: dict[str, Kind] = {}


class CallImportSettings(Section):
    """`[intake.calls]`: importing call-centre exports (`minsheng intake calls`, the
    operators' upload page)."""

    # An uploaded file over this size is refused with a message saying so.
    max_upload_mb: Annotated[float, Field(gt=0, le=500)] = 20.0
    # Rows registered per transaction: an interrupted import keeps its committed batches,
    # and a short transaction lets the web form write meanwhile (SQLite has one writer; the
    # rows are worked out before the transaction writes: 1,000 rows hold it for about
    # 0.3 s). A commit a batch of 50 cost a fifth of an import's time in fsyncs; with the
    # cases' 35 indexes, a SQLite insert and commit cost 0.33 ms CPU a row in batches of
    # 500, 0.28 in batches of 1,000 (0.25 of 2,000).
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    # Named column mappings; "default" (the headers above) exists unless redefined.
    mappings: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")], CallMappingSettings
    ] = {}


class IntakeSettings(Section):
    web_form: bool = True
    imap: ImapSettings | None = None
    calls: CallImportSettings = CallImportSettings()


class DepartmentSettings(Section):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
    name: str
    name_en: str = ""
    email: str = ""
    labels: list[str] = []
    keywords: list[str] = []
    handling_working_days: Annotated[int | None, Field(ge=1)] = None
    # Other names it goes by (环保 of 市生态环境局民声分局): refused in passwords as its name is
    # (web/passwords.py); the usual short name (住建 of 区住房和城乡建设局) is derived anyway.
    short_names: list[Annotated[str, Field(min_length=2, max_length=40)]] = []


class RejectionReasonSettings(Section):
    """A public reason for not accepting a complaint, as the citizen reads it."""

    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    label: Annotated[str, Field(min_length=1, max_length=100)]
    label_en: Annotated[str, Field(max_length=100)] = ""
    # The supervisor must name the outside body the citizen should turn to.
    refer: bool = False


DEFAULT_REJECTION_REASONS = [
    RejectionReasonSettings(code="spam", label="广告或恶意信息", label_en="Advertising or abuse"),
    RejectionReasonSettings(
        code="duplicate", label="重复反映，已另案办理", label_en="Already handled in another case"
    ),
    RejectionReasonSettings(
        code="not_enough_information",
        label="诉求内容不清，无法办理",
        label_en="Not enough information to act on",
    ),
    RejectionReasonSettings(
        code="not_government", label="不属于政府职责范围", label_en="Not a government matter"
    ),
    RejectionReasonSettings(
        code="not_ours",
        label="不属于本办受理范围",
        label_en="Not ours to handle",
        refer=True,
    ),
    RejectionReasonSettings(code="other", label="其他原因", label_en="Other reason"),
]


class UserSettings(Section):
    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{2,80}$")]
    name: str = ""
    role: Role
    department: str | None = None
    # A department's head (负责人): signs its replies off, receives its escalations.
    head: bool = False
    # Reminders, escalations and digests to a head or a supervisor go here too.
    email: Annotated[str, Field(max_length=200, pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$")] = ""

    @model_validator(mode="after")
    def _role_fits(self) -> UserSettings:
        # The rule of the admin pages and `minsheng user add` (triage/staff.py).
        from triage.staff import StaffChangeRefused, check_role_fits

        try:
            check_role_fits(self.role, bool(self.department), self.head)
        except StaffChangeRefused as e:
            raise ValueError(f"user {self.username}: {e}") from None
        return self


class Settings(Section):
    app: AppSettings = AppSettings()
    database: DatabaseSettings = DatabaseSettings()
    calendar: CalendarSettings = CalendarSettings()
    time_limits: TimeLimitSettings = TimeLimitSettings()
    supervision: SupervisionSettings = SupervisionSettings()
    report: ReportSettings = ReportSettings()
    attachments: AttachmentSettings = AttachmentSettings()
    tracking: TrackingSettings = TrackingSettings()
    sign_in: SignInSettings = SignInSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    mail: MailSettings = MailSettings()
    intake: IntakeSettings = IntakeSettings()
    open311: Open311Settings = Open311Settings()
    notifications: NotificationSettings = NotificationSettings()
    sms: SmsSettings = SmsSettings()
    satisfaction: SatisfactionSettings = SatisfactionSettings()
    departments: list[DepartmentSettings] = []
    users: list[UserSettings] = []
    rejection_reasons: list[RejectionReasonSettings] = DEFAULT_REJECTION_REASONS
    # Where the file was read from; relative paths are resolved against its folder.
    base_dir: Path = Path(".")
    source: str = "<defaults>"

    @field_validator("departments")
    @classmethod
    def _unique_departments(cls, v: list[DepartmentSettings]) -> list[DepartmentSettings]:
        seen: dict[str, str] = {}
        for d in v:
            if d.code in seen:
                raise ValueError(f"department code {d.code!r} appears twice")
            seen[d.code] = d.code
            for label in d.labels:
                if label in seen and seen[label] != d.code:
                    raise ValueError(f"label {label!r} is mapped to two departments")
                seen[label] = d.code
        return v

    @field_validator("rejection_reasons")
    @classmethod
    def _rejection_reasons(cls, v: list[RejectionReasonSettings]) -> list[RejectionReasonSettings]:
        if not v:
            raise ValueError("give at least one public reason for rejecting a complaint")
        codes = [r.code for r in v]
        for code in codes:
            if codes.count(code) > 1:
                raise ValueError(f"rejection reason {code!r} appears twice")
        return v

    @model_validator(mode="after")
    def _users_in_known_departments(self) -> Settings:
        codes = {d.code for d in self.departments}
        for i, u in enumerate(self.users):
            if u.role == Role.HANDLER and not u.department:
                raise ValueError(f"users.{i} ({u.username}): a handler needs a department")
            if u.department and u.department not in codes:
                raise ValueError(f"users.{i} ({u.username}): unknown department {u.department!r}")
        for i, o in enumerate(self.time_limits.overrides):
            if o.department and o.department not in codes:
                raise ValueError(f"time_limits.overrides.{i}: unknown department {o.department!r}")
        return self

    @model_validator(mode="after")
    def _sms_texts_fit(self) -> Settings:
        """With SMS on, each template must fit `[sms] max_length` with its link, query code
        and tracking number whole (triage/sms.py `fit` shortens only {reply} and {office}),
        at the longest those links get (a case and a reply id of 8 digits)."""
        if not self.sms.url:
            return self
        base = self.app.base_url.rstrip("/")
        number = f"{self.app.tracking_prefix}-2026-000001"
        track = f"{base}/track?number={number}"
        satisfaction = f"{base}/satisfaction/99999999-99999999-zzzzzz.{'A' * 22}"
        links = {
            "received_template": track,
            "replied_template": max(track, satisfaction, key=len),
            "closed_template": track,
        }
        least = {
            name: shortest(
                getattr(self.sms, name),
                office=self.app.office_name,
                tracking_number=number,
                query_code="X" * 6,
                link=link,
                reply="……",
            )
            for name, link in links.items()
        }
        short = [f"sms.{name}" for name, n in least.items() if n > self.sms.max_length]
        if short:
            need = max(least.values())
            raise ValueError(
                f"sms.max_length = {self.sms.max_length} cannot hold {', '.join(short)} with "
                f"the link and codes whole: it needs at least {need} (with base_url {base}); "
                f"raise max_length to {need} or shorten the template"
            )
        return self

    # -- derived -------------------------------------------------------------------------

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def instance_path(self) -> Path:
        return self.path(self.app.instance_dir)

    @property
    def database_url(self) -> str:
        url = os.environ.get("MINSHENG_DATABASE_URL") or self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    @property
    def model_path(self) -> Path:
        if not self.classifier.model_dir:
            return self.instance_path / "models"
        return self.path(self.classifier.model_dir)

    @property
    def label_map(self) -> dict[str, str]:
        """Classifier label → department code."""
        return {label: d.code for d in self.departments for label in d.labels}

    @property
    def keyword_map(self) -> dict[str, list[str]]:
        return {d.code: list(d.keywords) for d in self.departments if d.keywords}

    def rejection_outcomes(self) -> dict[str, RejectionReason]:
        """The configured public reasons for rejecting a complaint, by code, in order."""
        return {
            r.code: RejectionReason(r.code, r.label, r.label_en, r.refer)
            for r in self.rejection_reasons
        }

    def work_calendar(self) -> WorkCalendar:
        return WorkCalendar.build(
            self.app.timezone, self.calendar.extra_holidays, self.calendar.extra_workdays
        )

    def deadlines(self) -> Deadlines:
        limits = TimeLimits(
            **self.time_limits.model_dump(exclude={"overrides"}),
            overrides=tuple(o.to_override() for o in self.time_limits.overrides),
            handling_by_department={
                d.code: d.handling_working_days for d in self.departments if d.handling_working_days
            },
        )
        return Deadlines(self.work_calendar(), limits)

    def mailbox_config(self) -> MailboxConfig | None:
        """`[intake.imap]` as the mailbox module takes it; None when no mailbox is set."""
        imap = self.intake.imap
        if imap is None:
            return None
        keys = set(MailboxConfig.__dataclass_fields__)
        values = {k: v for k, v in imap.model_dump().items() if k in keys}
        if imap.ca_file:
            values["ca_file"] = str(self.path(imap.ca_file))
        return MailboxConfig(**values)

    def email_attachment_limits(self) -> AttachmentLimits:
        """`[attachments]` for mail: as many files, as large, of its types plus
        `[intake.imap] extra_attachment_types`; together at most max_files × max_file_mb."""
        extra = self.intake.imap.extra_attachment_types if self.intake.imap else []
        max_bytes = int(self.attachments.max_file_mb * 1024 * 1024)
        return AttachmentLimits(
            max_count=self.attachments.max_files,
            max_bytes=max_bytes,
            max_total_bytes=max_bytes * max(1, self.attachments.max_files),
            allowed_types=frozenset(self.attachments.allowed_types) | frozenset(extra),
        )

    def secret_key(self) -> str:
        """From the environment or config; else generated once and kept in the instance dir."""
        key = os.environ.get("MINSHENG_SECRET_KEY") or self.app.secret_key
        if key:
            return key
        path = self.instance_path / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside, then linked into place: several workers starting at once on a
            # fresh instance folder all end up reading the one key that won.
            tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip()


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key")
        elif e["type"] == "value_error" and "error" in e.get("ctx", {}):
            lines.append(f"  {where}: {e['ctx']['error']}")  # without pydantic's "Value error, "
        else:
            lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def resolve_config_path(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("MINSHENG_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Reads and validates the config file; raises ConfigError naming the file and key."""
    config_path = resolve_config_path(path)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(
            f"{config_path}: config file not found (give --config PATH or set MINSHENG_CONFIG)"
        ) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{config_path}: not valid TOML: {e}") from e
    return settings_from_dict(raw, base_dir=config_path.resolve().parent, source=str(config_path))


def settings_from_dict(
    raw: dict[str, object], base_dir: Path = Path("."), source: str = "<dict>"
) -> Settings:
    for reserved in ("base_dir", "source"):
        if reserved in raw:
            raise ConfigError(f"{source}: {reserved}: unknown key")
    try:
        return Settings.model_validate({**raw, "base_dir": base_dir, "source": source})
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from e
