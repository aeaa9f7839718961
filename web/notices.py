"""The config's `[notifications]`, `[sms]` and `[satisfaction]` as the domain takes them:
the `Notifier` every session of the app carries (triage/notifications.py) and the SMS
gateway `minsheng outbox send` and the supervision tick send through (triage/sms.py)."""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import Any

from flask import Flask, g
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage import notifications
from triage.models import CaseEvent
from triage.notifications import Notifier, SmsTemplates
from triage.outbox import OutgoingMail, RetryPolicy
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


# -- the notices on the case's timeline ----------------------------------------------------

NOTICE_LABELS = {
    "received": _l("notice “received”"),
    "replied": _l("notice “replied”"),
    "closed": _l("notice “closed”"),
    "acknowledgment": _l("acknowledgment of the mail"),
}
NOTICE_CHANNELS = {"mail": _l("by email"), "sms": _l("by text message")}
_NOTICE_ID = re.compile(r"<notice\.([a-z]+)\.")


def _mail_notices(case_id: int) -> dict[int, str]:
    """{mail id: its notice ("received", "replied", "closed") or its kind} of the case's
    mails, read once per page (one query by the outbox's case index)."""
    from web import db  # web/__init__.py imports this module through the runtime

    cache: dict[int, dict[int, str]] = g.setdefault("minsheng_mail_notices", {})
    if case_id not in cache:
        rows = db().execute(
            select(OutgoingMail.id, OutgoingMail.message_id, OutgoingMail.kind).where(
                OutgoingMail.case_id == case_id
            )
        )
        found: dict[int, str] = {}
        for mail_id, message_id, kind in rows:
            m = _NOTICE_ID.match(message_id or "")
            found[int(mail_id)] = m.group(1) if m else str(kind)
        cache[case_id] = found
    return cache[case_id]


def notice_of(event: CaseEvent) -> str:
    """Which message to the citizen a `mail_*` or `sms_*` event is about, and how it goes:
    "notice “replied” · by email" in the user's language; "" for other events and for
    mail that is no citizen's notice (reminders, digests, reports)."""
    action = event.action or ""
    detail = event.detail or {}
    if action == "notice_not_sent":
        label = NOTICE_LABELS.get(str(detail.get("notice", "")))
        return str(label) if label is not None else ""
    if action.startswith("sms_"):
        notice = str(detail.get("kind", "")).removeprefix("notice_")
        channel = "sms"
    elif action.startswith("mail_"):
        mail_id = detail.get("mail_id")
        message_id = str(detail.get("message_id", ""))
        m = _NOTICE_ID.match(message_id)
        if m:
            notice = m.group(1)
        elif isinstance(mail_id, int) and event.case_id is not None:
            notice = _mail_notices(event.case_id).get(mail_id, str(detail.get("kind", "")))
        else:
            notice = str(detail.get("kind", ""))
        channel = "mail"
    else:
        return ""
    label = NOTICE_LABELS.get(notice)
    if label is None:
        return ""
    if channel == "sms" and detail.get("instead_of_mail"):
        # The notice's mail failed for good (an address that needs SMTPUTF8): sent by SMS.
        return _("%(notice)s · by text message, instead of the mail", notice=label)
    return _("%(notice)s · %(channel)s", notice=label, channel=NOTICE_CHANNELS[channel])


def undelivered_notices(events: Any) -> list[str]:
    """The notices (as `notice_of` names them) of the case's mails and text messages that
    failed for good and were not delivered since: a failed one the admin sent again from
    the outbox (`requeue`) and that then went out no longer asks to call the citizen back.
    `events`: the case's events, in any order (a message is never sent, then failed)."""
    events = list(events)

    def message(e: CaseEvent) -> tuple[str, object]:
        channel = e.action.split("_", 1)[0]  # "mail" or "sms"
        return channel, (e.detail or {}).get(f"{channel}_id")

    delivered = {message(e) for e in events if e.action in ("mail_sent", "sms_sent")}
    # A failed notice mail whose text message went instead (triage/sms.release_held).
    delivered |= {
        ("mail", e.detail["instead_of_mail"])
        for e in events
        if e.action == "sms_queued"
        and (e.detail or {}).get("instead_of_mail")
        and ("sms", e.detail.get("sms_id")) in delivered
    }
    found = []
    for e in events:
        if e.action in ("mail_failed", "sms_failed") and message(e) not in delivered:
            notice = notice_of(e)
            if notice:
                found.append(notice)
    return found


def citizen_reach(case: Any) -> str:
    """`triage.notifications.reach` of a case (or of a template's CaseView: the unmasked
    contact, whoever looks) with the notifier of the request's sessions."""
    from web import db

    case = getattr(case, "case", case)
    return notifications.reach(db().info.get(notifications.INFO_KEY), case)


def without_contact(case: Any) -> bool:
    """`triage.notifications.without_contact` of a case or a template's CaseView (its
    unmasked contact, whoever looks): an anonymous citizen or caller."""
    return notifications.without_contact(getattr(case, "case", case))


def init_app(app: Flask) -> None:
    app.add_template_filter(without_contact, "without_contact")
    app.add_template_filter(notice_of, "notice_of")
    app.add_template_filter(citizen_reach, "citizen_reach")
    app.add_template_filter(undelivered_notices, "undelivered_notices")
