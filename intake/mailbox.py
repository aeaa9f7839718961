"""The one module that talks IMAP: read a complaints mailbox without losing a message.

`Mailbox` is one connection, used as a context manager; `watch` keeps one alive, calling a
handler on start and whenever mail arrives, reconnecting with backoff when the server goes.

    config = MailboxConfig(host="imap.example.gov.cn", username="xiaoneng", password_env="IMAP_PW",
                           starttls=True)
    with Mailbox(config) as mailbox:
        mailbox.ensure_folders()
        while uids := mailbox.pending():              # oldest first, batch_size at a time
            moves = defaultdict(list)                 # folder -> UIDs
            for message in mailbox.fetch(uids):
                folder = register(message)            # the caller's work: processed_folder,
                moves[folder].append(message.uid)     # quarantine_folder or spam_folder
            session.commit()                          # first commit ...
            for folder, done in moves.items():
                mailbox.move(done, folder)            # ... then move, one command a folder

The contract the caller must keep, so that a crash at any point loses nothing and duplicates
nothing:

1. Fetch (this module fetches with ``BODY.PEEK[]``, so the server's \\Seen flag is untouched
   and a person reading the mailbox sees what the machine has not yet handled).
2. Register the message **and commit** the database transaction.
3. Only then `move` it (to the processed, quarantine or spam folder) or `flag` it.

Every fetched message must leave the folder (processed, quarantine or spam), or `pending()`
hands it back in every round; when registering itself fails (the database is down), end the
round without moving anything.

A crash between 2 and 3 leaves the message in the watched folder: it is fetched again on the
next run, and the caller recognises it (Message-ID plus a hash of the raw bytes) and only
moves it. A crash before 2 leaves nothing in the database and the message in the folder. UIDs
are only meaningful within one `uidvalidity`; do not store them as identities.

Folder names in `MailboxConfig` may use ``/`` for hierarchy ("Minsheng/Processed"); they are
translated to the server's separator and given its personal namespace prefix where it has one
("INBOX." on Courier-style servers). The password is resolved here, at connect time
(`MailboxConfig.resolve_password`): `password` if given, else the environment variable named by
`password_env`.

Errors: everything this module raises is a `MailboxError`. `MailboxConnectError` (cannot reach
the server, TLS failed, login refused; the message names host, port and reason) and
`MailboxDisconnected` (the connection dropped: socket error, IMAP abort, BYE) are the two a
caller tells apart; `watch` retries every MailboxError (except a login refusal on its very
first connection and a MailboxConfigError, configuration errors that it raises).
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import re
import select
import socket
import ssl as ssl_lib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.imapclient import SocketTimeout

log = logging.getLogger(__name__)

DEFAULT_BACKOFF: tuple[float, ...] = (1, 2, 5, 10, 30, 60)
# RFC 2177: a client should re-issue IDLE at least every 29 minutes, or the server may drop it.
MAX_IDLE_SECONDS = 29 * 60
# How often an IDLE or a polling wait looks at the stop event.
_STOP_CHECK_SECONDS = 0.5


class MailboxError(Exception):
    """Anything that went wrong talking to the IMAP server."""


class MailboxConfigError(MailboxError):
    """The configuration cannot be used (no password, unset environment variable, ...)."""


class MailboxConnectError(MailboxError):
    """Cannot connect, start TLS, log in or select the folder; the message says where and why."""


class MailboxLoginError(MailboxConnectError):
    """The server refused the user name or password."""


class MailboxDisconnected(MailboxError):
    """The connection dropped (socket error, IMAP abort, BYE); reconnect and carry on."""


@dataclass(frozen=True)
class MailboxConfig:
    """The `[intake.imap]` table of the configuration.

    `ssl` is implicit TLS (usually port 993), the default unless `starttls` is set;
    `starttls` upgrades a plain connection (usually port 143) and fails if the server cannot;
    `ssl = false` without `starttls` is plain text, for loopback and tests only.
    `port` 0 means the usual port for the chosen mode. `ca_file` is a PEM bundle to trust
    instead of the system's (for a server with an internal certificate). Timeouts are seconds:
    `connect_timeout` for the TCP and TLS handshake, `read_timeout` for every command,
    `idle_timeout` for one IDLE (or polling) wait in `watch` (at most 29 minutes),
    `poll_interval` between checks on a server without IDLE. `batch_size` caps `pending()`.
    """

    host: str
    username: str
    port: int = 0
    ssl: bool | None = None  # None: True unless starttls
    starttls: bool = False
    password: str | None = None
    password_env: str | None = None
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    spam_folder: str = "Spam"
    ca_file: str | None = None
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    idle_timeout: float = 300.0
    poll_interval: float = 30.0
    batch_size: int = 200

    def __post_init__(self) -> None:
        if self.ssl is True and self.starttls:
            raise MailboxConfigError("[intake.imap]: choose one of ssl and starttls, not both")
        if self.batch_size < 1:
            raise MailboxConfigError("[intake.imap] batch_size must be at least 1")

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.implicit_tls else 143)

    @property
    def implicit_tls(self) -> bool:
        return self.ssl if self.ssl is not None else not self.starttls

    @property
    def where(self) -> str:
        """`user@host:port`, for messages."""
        return f"{self.username}@{self.host}:{self.effective_port}"

    def resolve_password(self) -> str:
        """`password`, else the environment variable named by `password_env`.

        Raises MailboxConfigError when neither gives one.
        """
        if self.password is not None:
            return self.password
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise MailboxConfigError(
                    f"[intake.imap] password_env names {self.password_env!r}, "
                    "but that environment variable is not set"
                )
            return value
        raise MailboxConfigError("[intake.imap] needs password or password_env")


@dataclass(frozen=True)
class FetchedMessage:
    """One message as the server holds it.

    `raw` is the whole message, byte for byte; `internal_date` is the server's arrival time
    (timezone-aware); `flags` are as the server reports them (bytes, e.g. b"\\\\Seen");
    `size` is RFC822.SIZE in bytes.
    """

    uid: int
    raw: bytes
    internal_date: datetime | None
    flags: tuple[bytes, ...]
    size: int


_BYTES_REPR = re.compile(r"""^b(['"])(.*)\1$""", re.DOTALL)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # imaplib and IMAPClient put the server's bytes in the message: show them as text.
    text = _BYTES_REPR.sub(r"\2", text)
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"timed out ({text})"
    return text


class Mailbox:
    """One connection to the mailbox, with `config.folder` selected.

    Use as a context manager: entering connects (TLS as configured), logs in and selects the
    folder; leaving logs out. Any command may raise `MailboxDisconnected` when the server goes.
    `ssl_context` overrides the one built from the config (tests pass one trusting their own
    certificate).
    """

    def __init__(
        self,
        config: MailboxConfig,
        *,
        ssl_context: ssl_lib.SSLContext | None = None,
        use_idle: bool = True,
    ) -> None:
        self.config = config
        self._ssl_context = ssl_context
        self._use_idle = use_idle
        self._client: IMAPClient | None = None
        self._separator = "."
        self._prefix = ""
        self.uidvalidity: int | None = None
        self._highest_uid = 0

    # -- connection -------------------------------------------------------------------------

    def __enter__(self) -> Mailbox:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _tls_context(self) -> ssl_lib.SSLContext:
        if self._ssl_context is not None:
            return self._ssl_context
        return ssl_lib.create_default_context(cafile=self.config.ca_file)

    def connect(self) -> None:
        """Connect, start TLS, log in, select the folder. Raises MailboxConnectError."""
        config = self.config
        where = f"{config.host}:{config.effective_port}"
        password = config.resolve_password()
        stage = "connect"
        try:
            client = IMAPClient(
                config.host,
                port=config.effective_port,
                ssl=config.implicit_tls,
                ssl_context=self._tls_context() if config.implicit_tls else None,
                timeout=SocketTimeout(config.connect_timeout, config.read_timeout),
            )
        except (OSError, IMAPClientError) as exc:
            raise MailboxConnectError(
                f"cannot connect to IMAP server {where}: {_describe(exc)}"
            ) from exc
        client.normalise_times = False  # keep the server's time zone on INTERNALDATE
        try:
            if config.starttls:
                stage = "STARTTLS"
                client.starttls(self._tls_context())
            stage = "login"
            try:
                client.login(config.username, password)
            except LoginError as exc:
                raise MailboxLoginError(
                    f"IMAP server {where} refused login for {config.username}: {_describe(exc)}"
                ) from exc
            stage = f"select folder {config.folder!r}"
            self._client = client
            self._learn_namespace()
            info = client.select_folder(self.server_folder(config.folder))
        except MailboxError:
            self._drop(client)
            self._client = None
            raise
        except (OSError, IMAPClientError) as exc:
            self._drop(client)
            self._client = None
            raise MailboxConnectError(
                f"IMAP server {where}: {stage} failed: {_describe(exc)}"
            ) from exc
        self.uidvalidity = int(info[b"UIDVALIDITY"]) if b"UIDVALIDITY" in info else None
        self._highest_uid = 0
        log.info("connected to %s, folder %s", config.where, config.folder)

    @staticmethod
    def _drop(client: IMAPClient) -> None:
        with contextlib.suppress(Exception):  # already gone: nothing more to release
            client.shutdown()

    def close(self) -> None:
        """Log out (quietly when the connection is already gone)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            self._drop(client)

    @property
    def client(self) -> IMAPClient:
        """The IMAPClient underneath, for what this class does not cover."""
        if self._client is None:
            raise MailboxDisconnected(f"not connected to {self.config.where}")
        return self._client

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one command, turning a dropped connection into MailboxDisconnected."""
        try:
            return fn()
        except imaplib.IMAP4.abort as exc:  # includes BYE and unexpected EOF
            self._lost()
            raise MailboxDisconnected(f"{self.config.where}: {what}: {_describe(exc)}") from exc
        except OSError as exc:
            self._lost()
            raise MailboxDisconnected(f"{self.config.where}: {what}: {_describe(exc)}") from exc
        except IMAPClientError as exc:
            raise MailboxError(f"{self.config.where}: {what} failed: {_describe(exc)}") from exc

    def _lost(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._drop(client)

    @property
    def capabilities(self) -> frozenset[str]:
        caps = self._call("CAPABILITY", lambda: self.client.capabilities())
        return frozenset(c.decode("ascii", "replace").upper() for c in caps)

    # -- folders ----------------------------------------------------------------------------

    def _learn_namespace(self) -> None:
        client = self.client
        if client.has_capability("NAMESPACE"):
            personal = client.namespace().personal
            if personal:
                prefix, separator = personal[0]
                self._prefix = prefix or ""
                if separator:
                    self._separator = separator
                return
        listed = client.list_folders(pattern="")  # the separator, per RFC 3501 6.3.8
        if listed and listed[0][1]:
            separator = listed[0][1]
            self._separator = separator.decode() if isinstance(separator, bytes) else str(separator)

    @property
    def separator(self) -> str:
        """The server's hierarchy separator, e.g. "." (dovecot maildir) or "/"."""
        return self._separator

    def server_folder(self, name: str) -> str:
        """The server's name for a configured folder name ("a/b" → "a.b", prefix added)."""
        if name.upper() == "INBOX":
            return "INBOX"
        server_name = name.replace("/", self._separator)
        if self._prefix and not server_name.startswith(self._prefix):
            server_name = self._prefix + server_name
        return server_name

    def ensure_folders(self) -> list[str]:
        """Create the processed, quarantine and spam folders where missing (and subscribe).

        Returns the server names of the folders created. Parents are created too.
        """
        config = self.config
        created: list[str] = []
        for name in (config.processed_folder, config.quarantine_folder, config.spam_folder):
            created.extend(self.ensure_folder(name))
        return created

    def ensure_folder(self, name: str) -> list[str]:
        """Create one folder (and its parents) when missing; return those created."""
        target = self.server_folder(name)
        created: list[str] = []
        parts = target.split(self._separator)
        for depth in range(1, len(parts) + 1):
            path = self._separator.join(parts[:depth])
            if not path or path == self._prefix.rstrip(self._separator):
                continue
            if self._call("LIST", lambda p=path: self.client.folder_exists(p)):
                continue
            try:
                self._call("CREATE", lambda p=path: self.client.create_folder(p))
            except MailboxDisconnected:
                raise
            except MailboxError:
                # Another connection may have created it meanwhile; only that is harmless.
                if not self._call("LIST", lambda p=path: self.client.folder_exists(p)):
                    raise
                continue
            try:
                self._call("SUBSCRIBE", lambda p=path: self.client.subscribe_folder(p))
            except MailboxDisconnected:
                raise
            except MailboxError:
                pass  # subscription only helps mail clients show the folder
            created.append(path)
            log.info("created IMAP folder %s", path)
        return created

    # -- messages ---------------------------------------------------------------------------

    def pending(self, limit: int | None = None) -> list[int]:
        """UIDs in the folder not marked \\Deleted, oldest first, at most `limit` (batch_size).

        Call again after handling a batch for the next one (handled messages have moved out).
        """
        limit = limit or self.config.batch_size
        uids = sorted(self._call("UID SEARCH", lambda: self.client.search(["NOT", "DELETED"])))
        if uids:
            self._highest_uid = max(self._highest_uid, uids[-1])
        return uids[:limit]

    def fetch(self, uids: Iterable[int], *, chunk: int = 25) -> Iterator[FetchedMessage]:
        """The messages with these UIDs, in the order given, fetched `chunk` at a time.

        Uses BODY.PEEK[], so \\Seen is not set. A UID that no longer exists (moved away by
        another client) is skipped.
        """
        wanted = list(uids)
        items = [b"BODY.PEEK[]", b"INTERNALDATE", b"FLAGS", b"RFC822.SIZE"]
        for start in range(0, len(wanted), chunk):
            part = wanted[start : start + chunk]
            response = self._call("UID FETCH", lambda p=part: self.client.fetch(p, items))
            for uid in part:
                data = response.get(uid)
                if not data or b"BODY[]" not in data:
                    continue
                raw = data[b"BODY[]"]
                self._highest_uid = max(self._highest_uid, uid)
                yield FetchedMessage(
                    uid=uid,
                    raw=bytes(raw) if raw is not None else b"",
                    internal_date=data.get(b"INTERNALDATE"),
                    flags=tuple(data.get(b"FLAGS", ())),
                    size=int(data.get(b"RFC822.SIZE", len(raw or b""))),
                )

    def move(self, uids: int | Sequence[int], folder: str) -> None:
        """Move messages to `folder` (a configured name; see `server_folder`).

        MOVE where the server has it; else COPY, \\Deleted and UID EXPUNGE (plain EXPUNGE if
        the server lacks UIDPLUS, which also removes other messages already marked \\Deleted).
        Only after the caller has committed what it did with them. A folder that has gone
        missing is created again. Each call is one round trip, and dovecot takes about 8 ms
        for a MOVE however many UIDs it names: move a committed batch in one call (about
        0.3 ms a message), not message by message (at most about 120 a second).
        """
        targets = [uids] if isinstance(uids, int) else list(uids)
        if not targets:
            return
        try:
            self._move(targets, self.server_folder(folder))
        except MailboxDisconnected:
            raise
        except MailboxError as exc:
            if "TRYCREATE" not in str(exc).upper():
                raise
            # The folder went missing since ensure_folders (a person deleted it): recreate.
            self.ensure_folder(folder)
            self._move(targets, self.server_folder(folder))

    def _move(self, targets: list[int], destination: str) -> None:
        client = self.client
        if client.has_capability("MOVE"):
            self._call("UID MOVE", lambda: client.move(targets, destination))
            return
        self._call("UID COPY", lambda: client.copy(targets, destination))
        self._call("UID STORE", lambda: client.add_flags(targets, [b"\\Deleted"], silent=True))
        if client.has_capability("UIDPLUS"):
            self._call("UID EXPUNGE", lambda: client.uid_expunge(targets))
        else:
            self._call("EXPUNGE", lambda: client.expunge())

    def flag(self, uids: int | Sequence[int], flag: str | bytes) -> None:
        """Add a flag (e.g. "\\\\Flagged", or a keyword such as "Minsheng-Registered")."""
        targets = [uids] if isinstance(uids, int) else list(uids)
        if targets:
            self._call("UID STORE", lambda: self.client.add_flags(targets, [flag], silent=True))

    def flags(self, uid: int) -> tuple[bytes, ...]:
        """The flags of one message now (empty if it is gone)."""
        response = self._call("UID FETCH", lambda: self.client.get_flags([uid]))
        return tuple(response.get(uid, ()))

    # -- waiting ----------------------------------------------------------------------------

    @property
    def has_idle(self) -> bool:
        return self._use_idle and self.client.has_capability("IDLE")

    def _new_since_last_look(self) -> bool:
        """Whether a UID above the highest seen so far is in the folder (one UID SEARCH)."""
        since = self._highest_uid + 1
        # NOOP first: a server shows a session new mail only when it syncs it (dovecot at
        # command ends), and SEARCH alone does not.
        self._call("NOOP", lambda: self.client.noop())
        found = self._call(
            "UID SEARCH", lambda: self.client.search(["UID", f"{since}:*", "NOT", "DELETED"])
        )
        # "n:*" always matches the highest UID, even one below n.
        return any(uid >= since for uid in found)

    def idle_wait(self, timeout: float, stop_event: threading.Event | None = None) -> bool:
        """Wait up to `timeout` seconds for new mail; True when some arrived.

        Looks first for messages that arrived since the last `pending`/`fetch` (so mail that
        came in while the caller was busy is not waited for), then waits with IDLE, or polls
        every `poll_interval` seconds where the server has no IDLE. Returns False on timeout or
        when `stop_event` is set (looked at twice a second). Raises MailboxDisconnected when the
        server says BYE or the connection drops.
        """
        timeout = max(0.0, min(timeout, MAX_IDLE_SECONDS))
        if self._new_since_last_look():
            return True
        if self.has_idle:
            return self._idle(timeout, stop_event)
        return self._poll(timeout, stop_event)

    def _poll(self, timeout: float, stop_event: threading.Event | None) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            step = min(self.config.poll_interval, left)
            if stop_event is not None:
                if stop_event.wait(step):
                    return False
            else:
                time.sleep(step)
            if self._new_since_last_look():
                return True

    def _idle(self, timeout: float, stop_event: threading.Event | None) -> bool:
        client = self.client
        self._call("IDLE", client.idle)
        arrived = False
        bye = False
        deadline = time.monotonic() + timeout
        try:
            while not arrived and not bye:
                left = deadline - time.monotonic()
                if left <= 0 or (stop_event is not None and stop_event.is_set()):
                    break
                step = min(left, _STOP_CHECK_SECONDS)
                if not self._readable(client, step):
                    continue
                responses = self._call("IDLE", lambda: client.idle_check(timeout=0))
                if not responses:
                    # Readable but not one line: the server closed the connection.
                    self._lost()
                    raise MailboxDisconnected(f"{self.config.where}: connection closed in IDLE")
                arrived, bye = self._read_idle_responses(responses)
        finally:
            if self._client is not None and not bye:
                done = self._call("IDLE DONE", client.idle_done)
                more, bye = self._read_idle_responses(done[1] if done else [])
                arrived = arrived or more
        if bye:
            self._lost()
            raise MailboxDisconnected(f"{self.config.where}: server said BYE")
        return arrived

    @staticmethod
    def _readable(client: IMAPClient, timeout: float) -> bool:
        sock = client.socket()
        if isinstance(sock, ssl_lib.SSLSocket) and sock.pending():
            return True
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except (OSError, ValueError):
            return True  # closed socket: let the read report it
        return bool(ready)

    @staticmethod
    def _read_idle_responses(responses: Iterable[Any]) -> tuple[bool, bool]:
        """(new mail, server said BYE) from parsed untagged responses."""
        arrived = bye = False
        for response in responses:
            if not isinstance(response, tuple) or len(response) < 2:
                continue
            first, second = response[0], response[1]
            if first == b"BYE":
                bye = True
            elif isinstance(first, int) and second in (b"EXISTS", b"RECENT") and first > 0:
                arrived = True
        return arrived, bye


Handler = Callable[[Mailbox], None]


def watch(
    config: MailboxConfig,
    handler: Handler,
    *,
    stop_event: threading.Event,
    backoff: Sequence[float] = DEFAULT_BACKOFF,
    on_tick: Handler | None = None,
    ssl_context: ssl_lib.SSLContext | None = None,
    use_idle: bool = True,
) -> None:
    """Call `handler(mailbox)` on connecting and whenever mail arrives, until `stop_event`.

    The handler does one round: `pending()`, `fetch`, register and commit, `move` (see the
    module's contract); call `pending()` again inside it for further batches. `on_tick(mailbox)`
    is called after every wait, mail or not (at least every `config.idle_timeout` seconds):
    the place to renew a lease or record that the mailbox was looked at.

    When the connection drops (socket error, IMAP abort, BYE) or the server refuses a
    command (any MailboxError), in the handler or while waiting, waits `backoff[i]` seconds
    (the last value repeats) and reconnects; the delay resets after a connection that
    worked. A login refused on the very first connection and a MailboxConfigError are raised
    (a configuration error, not an outage); any other exception from the handler is raised
    too, for the caller to decide (a database outage, a bug).
    """
    delays = list(backoff) or [1.0]
    failures = 0
    ever_connected = False
    while not stop_event.is_set():
        mailbox = Mailbox(config, ssl_context=ssl_context, use_idle=use_idle)
        try:
            mailbox.connect()
            ever_connected = True
            failures = 0
            handler(mailbox)
            while not stop_event.is_set():
                mailbox.idle_wait(config.idle_timeout, stop_event)
                if stop_event.is_set():
                    break
                if on_tick is not None:
                    on_tick(mailbox)
                # Handle on every wake-up, not only on news: it also retries messages a
                # previous round left in the folder.
                handler(mailbox)
        except MailboxConfigError:
            raise
        except MailboxLoginError as exc:
            if not ever_connected:
                raise
            _log_retry(config, str(exc), failures, delays)
        except MailboxError as exc:  # dropped, or a command refused (NO): start afresh
            _log_retry(config, str(exc), failures, delays)
        finally:
            mailbox.close()
        if stop_event.is_set():
            break
        stop_event.wait(delays[min(failures, len(delays) - 1)])
        failures += 1


def _log_retry(config: MailboxConfig, reason: str, failures: int, delays: list[float]) -> None:
    delay = delays[min(failures, len(delays) - 1)]
    where = "" if config.where in reason else f"{config.where}: "
    log.warning("IMAP %s%s; reconnecting in %s s", where, reason, delay)


_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")


def appended_uid(response: bytes) -> int | None:
    """The UID in an APPEND response's [APPENDUID validity uid] code, if the server gave one."""
    match = _APPENDUID.search(response or b"")
    return int(match.group(2)) if match else None
