"""The config's `[notifications]`, `[sms]` and `[satisfaction]` as the domain takes them:
the `Notifier` every session of the app carries (triage/notifications.py) and the SMS
gateway `minsheng outbox send` and the supervision tick send through (triage/sms.py)."""

from __future__ import annotations

from email.utils import parseaddr

from sqlalchemy.orm import Session, sessionmaker

from triage import notifications
from triage.notifications import Notifier, SmsTemplates
from triage.outbox import RetryPolicy
from triage.sms import SmsGateway
from web.settings import Settings


def notifier_of(settings: Settings, secret: bytes) -> Notifier:
    """The notices' settings; SMS only when `[sms] url` is set."""
    own = {parseaddr(settings.mail.sender)[1].lower()}
    imap = settings.intake.imap
    if imap is not None:
        own |= {imap.username.lower(), *(a.lower() for a in imap.own_addresses)}
    sms = settings.sms
    templates = (
        SmsTemplates(
            received=sms.received_template,
            replied=sms.replied_template,
            closed=sms.closed_template,
            max_length=sms.max_length,
        )
        if sms.url
        else None
    )
    n = settings.notifications
    return Notifier(
        sender=settings.mail.sender,
        secret=secret,
        base_url=settings.app.base_url,
        office_name=settings.app.office_name,
        hotline=settings.tracking.hotline,
        local=settings.work_calendar().local,
        received=n.received,
        replied=n.replied,
        closed=n.closed,
        satisfaction_link=n.satisfaction_link,
        link_days=settings.satisfaction.link_days,
        own_addresses=frozenset(own),
        sms=templates,
    )


def configure_sessions(sessions: sessionmaker[Session], settings: Settings, secret: bytes) -> None:
    """Every session `sessions` makes tells citizens what the config asks."""
    notifications.configure(sessions, notifier_of(settings, secret))


def sms_gateway(settings: Settings) -> SmsGateway | None:
    """The configured gateway, None without `[sms] url`. Raises ConfigError when the token's
    environment variable is missing."""
    sms = settings.sms
    if not sms.url:
        return None
    headers = dict(sms.headers)
    token = sms.token()
    if token:
        headers[sms.token_header] = sms.token_prefix + token
    return SmsGateway(
        url=sms.url,
        method=sms.method,
        body=sms.body,
        headers=headers,
        phone_field=sms.phone_field,
        text_field=sms.text_field,
        id_field=sms.id_field,
        timeout_seconds=sms.timeout_seconds,
    )


def sms_retry_policy(settings: Settings) -> RetryPolicy:
    """The mail outbox's backoff with `[sms] max_attempts` tries."""
    return RetryPolicy(
        max_attempts=settings.sms.max_attempts,
        base_seconds=settings.mail.retry_base_seconds,
        max_seconds=settings.mail.retry_max_seconds,
    )
