"""Sends the outbox (triage/outbox.py) through Flask-Mail's SMTP connection.

Flask-Mail is the configuration and connection layer: `[mail]` of config.toml becomes its
MAIL_* settings, and its `Connection` opens the SMTP session (SSL or STARTTLS, login). The
message itself is not a `flask_mail.Message`: the outbox stores the finished RFC 5322 bytes
(so that a retry sends the same bytes and Message-ID, and the monthly report can be
multipart/related), and those go to the server through the connection's smtplib host with
`sendmail`, as `Connection.send` itself does after building its bytes. Flask-Mail 0.10 has
no timeout, so `TimedConnection` adds one; and the sender needs no Flask app, so that
`minsheng outbox send` and the supervision tick run without one.

One mail at a time: claim it (committed), send it, record the outcome (committed). Claiming
one at a time keeps the lease short (ten SMTP timeouts) so a mail held by a dead sender is
taken over within minutes, and costs nothing next to the SMTP round trips.

Usage::

    sender = OutboxSender(settings, sessions)
    result = sender.send_due()          # SendResult(sent=3, retried=1, failed=0, ...)
"""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import flask_mail
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from triage import delivery_reasons
from triage.models import utcnow
from triage.outbox import MailStatus, OutgoingMail, RetryPolicy, claim, mark_failed, mark_sent
from triage.sms import send_due as send_due_sms
from web.notices import sms_gateway, sms_retry_policy
from web.settings import MailSettings, Settings

log = logging.getLogger(__name__)

# A claim outlasts this many SMTP timeouts: connect, EHLO, STARTTLS, login, MAIL, RCPT …
LEASE_TIMEOUTS = 10


def flask_mail_config(mail: MailSettings) -> dict[str, Any]:
    """`[mail]` as Flask-Mail's MAIL_* settings (also what an app's `Mail(app)` would read).

    Sending is never suppressed, not even under TESTING: the tests send to a real server.
    Raises ConfigError if `password_env` names a variable that is not set.
    """
    return {
        "MAIL_SERVER": mail.server,
        "MAIL_PORT": mail.port,
        "MAIL_USE_TLS": mail.use_tls,
        "MAIL_USE_SSL": mail.use_ssl,
        "MAIL_USERNAME": mail.username or None,
        "MAIL_PASSWORD": mail.smtp_password() or None,
        "MAIL_DEFAULT_SENDER": mail.sender,
        "MAIL_SUPPRESS_SEND": False,
    }


def retry_policy(mail: MailSettings) -> RetryPolicy:
    return RetryPolicy(mail.max_attempts, mail.retry_base_seconds, mail.retry_max_seconds)


def claim_lease(mail: MailSettings) -> timedelta:
    return timedelta(seconds=mail.timeout_seconds * LEASE_TIMEOUTS)


class TimedConnection(flask_mail.Connection):
    """Flask-Mail's connection with a timeout on every socket operation (it has none, and
    a server that accepts the connection and then says nothing would hang the sender), and
    with the server's certificate verified (SSL or STARTTLS)."""

    def __init__(self, mail: Any, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        m = self.mail
        host: smtplib.SMTP | smtplib.SMTP_SSL
        # Certificates verified against the system's CAs (or $SSL_CERT_FILE): smtplib's own
        # default context, which Flask-Mail uses, accepts any certificate.
        context = ssl.create_default_context()
        if m.use_ssl:
            host = smtplib.SMTP_SSL(m.server, m.port, timeout=self.timeout, context=context)
        else:
            host = smtplib.SMTP(m.server, m.port, timeout=self.timeout)
        try:
            host.set_debuglevel(int(m.debug))
            if m.use_tls:
                host.starttls(context=context)
            if m.username and m.password:
                host.login(m.username, m.password)
        except BaseException:
            host.close()
            raise
        return host


@dataclass
class SendResult:
    """What one run did: mails sent, put back for a later try, marked failed for good.

    `server_error`: why the SMTP server could not be reached or refused us (the run stopped
    there; the mail it was for counts as retried); "" if it could.
    """

    sent: int = 0
    retried: int = 0
    failed: int = 0
    server_error: str = ""
    mail_ids: list[int] = field(default_factory=list)
    # Text messages (triage/sms.py) sent, retried, failed; None when no gateway is set.
    sms: dict[str, int] | None = None

    def add(self, other: SendResult) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.server_error = other.server_error or self.server_error
        self.mail_ids += other.mail_ids
        if other.sms is not None:
            mine = self.sms or dict.fromkeys(other.sms, 0)
            self.sms = {k: mine.get(k, 0) + v for k, v in other.sms.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "failed": self.failed,
            "server_error": self.server_error or None,
            **({"sms": self.sms} if self.sms is not None else {}),
        }


class NeedsSmtpUtf8(smtplib.SMTPNotSupportedError):
    """An address of the mail is not ASCII before the @ and the server does not offer
    SMTPUTF8 (RFC 6531): no retry can send it (a permanent failure). `server`: host:port;
    `addresses`: those that need it. Recorded as the coded reason `reason`."""

    def __init__(self, server: str, addresses: list[str]) -> None:
        self.server = server
        self.addresses = addresses
        super().__init__(delivery_reasons.english(self.reason))

    @property
    def reason(self) -> str:
        return delivery_reasons.coded(
            delivery_reasons.NEEDS_SMTPUTF8, server=self.server, addresses=", ".join(self.addresses)
        )


class ServerUnavailable(Exception):
    """Connecting, STARTTLS or login failed: not the mail's fault. Its text is English (the
    command line's); the mail records the coded `reason`."""

    def __init__(self, server: str, error: str) -> None:
        self.reason = delivery_reasons.coded(
            delivery_reasons.SERVER_UNAVAILABLE, server=server, error=error
        )
        super().__init__(delivery_reasons.english(self.reason))


def worker_name() -> str:
    """Host, process and a random tag: who holds a claim, in `minsheng outbox list`."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}"


def describe(error: BaseException) -> str:
    """An SMTP or network error as one line, with the server's code and answer; our own
    reasons (NeedsSmtpUtf8) as their code (triage/delivery_reasons.py)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{addr}: {code} {_text(msg)}" for addr, (code, msg) in error.recipients.items()
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, NeedsSmtpUtf8):
        return error.reason
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def is_permanent(error: BaseException) -> bool:
    """True when trying again cannot help: the server refused the message or every
    recipient with a 5xx answer, or the message cannot be said in SMTP (an address that
    needs SMTPUTF8 the server lacks). Refusals of our sender are the configuration's fault
    and are retried."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPSenderRefused):
        return False
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code >= 500
    return isinstance(error, smtplib.SMTPNotSupportedError | UnicodeError)


class OutboxSender:
    """Sends due mails of the outbox; any number of them may run at once, anywhere.

    `sessions` makes sessions on the project's database; `clock` gives the current aware
    UTC time (tests move it on to make retries due).
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        worker: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.mail = settings.mail
        self.config = flask_mail_config(settings.mail)
        self.state = flask_mail.Mail().init_mail(self.config)
        self.sessions = sessions
        self.worker = worker or worker_name()
        self.clock = clock
        self.policy = retry_policy(settings.mail)
        self.lease = claim_lease(settings.mail)
        # Text messages go out with the mail, through the `[sms]` gateway when one is set.
        self.sms_gateway = sms_gateway(settings)
        self.sms_policy = sms_retry_policy(settings)

    def connect(self) -> TimedConnection:
        """An open SMTP session (Flask-Mail's connection); raises ServerUnavailable."""
        connection = TimedConnection(self.state, self.mail.timeout_seconds)
        try:
            connection.__enter__()
        except (OSError, smtplib.SMTPException) as e:
            raise ServerUnavailable(f"{self.mail.server}:{self.mail.port}", describe(e)) from e
        return connection

    def send_due(
        self, limit: int | None = None, stop: Callable[[], bool] = lambda: False
    ) -> SendResult:
        """Sends what is due now, up to `limit` mails, until nothing is due or `stop()`.

        Stops early, with `server_error` set, when the SMTP server cannot be reached: the
        mail it was for is retried later like any failed try, the others keep their place.
        """
        result = SendResult()
        connection: TimedConnection | None = None
        try:
            while (limit is None or len(result.mail_ids) < limit) and not stop():
                mail = self._claim_one()
                if mail is None:
                    break
                result.mail_ids.append(mail.id)
                if mail.attempts > self.policy.max_attempts:
                    # Its last sender died mid-send on the final try: it may even have gone.
                    stopped = delivery_reasons.coded(delivery_reasons.SENDER_STOPPED)
                    self._fail(mail, stopped, True, result)
                    continue
                try:
                    connection, refused = self._transmit(connection, mail)
                except ServerUnavailable as e:
                    result.server_error = str(e)
                    self._fail(mail, e.reason, False, result)
                    break
                except Exception as e:  # every failure is recorded on the mail, then retried
                    log.warning(
                        "mail %s not sent: %s", mail.id, delivery_reasons.english(describe(e))
                    )
                    connection = _close(connection)
                    self._fail(mail, describe(e), is_permanent(e), result)
                    continue
                self._sent(mail, refused, result)
        finally:
            _close(connection)
        if self.sms_gateway is not None and not stop():
            sms = send_due_sms(
                self.sessions,
                self.sms_gateway,
                worker=self.worker,
                now=self.clock,
                policy=self.sms_policy,
            )
            result.sms = {"sent": sms.sent, "retried": sms.retried, "failed": sms.failed}
        return result

    def _claim_one(self) -> OutgoingMail | None:
        with self.sessions() as session:
            mails = claim(session, self.clock(), worker=self.worker, limit=1, lease=self.lease)
            session.commit()
            return mails[0] if mails else None

    def _transmit(
        self, connection: TimedConnection | None, mail: OutgoingMail
    ) -> tuple[TimedConnection, dict[str, str]]:
        """Sends over `connection` (opened if None); returns it and the refused recipients.

        A reused connection that the server has closed meanwhile (idle, or a limit of mails
        per connection: "421", or a bare disconnect) is opened again once for the same mail:
        not a failed try of the mail.
        """
        if connection is None:
            connection = self.connect()
            return connection, self._deliver(connection, mail)
        try:
            return connection, self._deliver(connection, mail)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException) as e:
            closed = isinstance(e, smtplib.SMTPServerDisconnected) or e.smtp_code == 421
            if not closed:
                raise
        _close(connection)
        fresh = self.connect()
        try:
            return fresh, self._deliver(fresh, mail)
        except BaseException:
            _close(fresh)
            raise

    def _deliver(self, connection: TimedConnection, mail: OutgoingMail) -> dict[str, str]:
        """Sends `mail`; an internationalised address (张三@example.cn) with SMTPUTF8 (and
        8BITMIME when offered: its headers are UTF-8), or NeedsSmtpUtf8 when the server
        does not offer it."""
        host = connection.host
        assert host is not None
        recipients = list(mail.recipients)
        options: list[str] = []
        wide = [r for r in [self.mail.sender, *recipients] if not r.isascii()]
        if wide:
            host.ehlo_or_helo_if_needed()
            if not host.has_extn("smtputf8"):
                raise NeedsSmtpUtf8(f"{self.mail.server}:{self.mail.port}", wide)
            options = ["SMTPUTF8", *(["BODY=8BITMIME"] if host.has_extn("8bitmime") else [])]
        refused = host.sendmail(self.mail.sender, recipients, mail.raw, mail_options=options)
        return {addr: f"{code} {_text(msg)}" for addr, (code, msg) in refused.items()}

    def _sent(self, mail: OutgoingMail, refused: dict[str, str], result: SendResult) -> None:
        # The at-least-once window: the server has the mail, the database does not know yet.
        # A few quick tries before giving up, then the lease decides (a second copy).
        for attempt in range(3):
            try:
                with self.sessions() as session:
                    session.add(mail)
                    mark_sent(session, mail, now=self.clock(), refused=refused or None)
                    session.commit()
                result.sent += 1
                return
            except SQLAlchemyError:
                if attempt == 2:
                    log.exception("mail %s was sent but not recorded as sent", mail.id)
                    raise
                time.sleep(0.5 * (attempt + 1))

    def _fail(self, mail: OutgoingMail, error: str, permanent: bool, result: SendResult) -> None:
        with self.sessions() as session:
            session.add(mail)
            status = mark_failed(
                session,
                mail,
                error,
                worker=self.worker,
                now=self.clock(),
                policy=self.policy,
                permanent=permanent,
            )
            session.commit()
        if status == MailStatus.FAILED:
            result.failed += 1
        elif status == MailStatus.QUEUED:
            result.retried += 1


def _close(connection: TimedConnection | None) -> None:
    if connection is None or connection.host is None:
        return None
    try:
        connection.host.quit()
    except (OSError, smtplib.SMTPException):
        connection.host.close()
    return None
