"""A real IMAP server for tests: dovecot on loopback in a temporary folder.

Fixtures (registered for every test through tests/conftest.py):

- `mailserver_module`: one dovecot per test module (starting takes 0.1 s, stopping 1–3 s).
- `mailserver`: the module's server, running, with every folder emptied and every folder
  but INBOX deleted: what a test normally wants.

    def test_something(mailserver):
        uid = mailserver.append("INBOX", raw_bytes)
        with Mailbox(mailserver.config()) as mailbox: ...
        assert mailserver.folder_uids("Processed") == [1]

The server has one user (`username`/`password`), plain IMAP on `port` and, when openssl is
there, STARTTLS on the same port and implicit TLS on `ssl_port`, with a self-signed
certificate for 127.0.0.1 that `ssl_context()` trusts. `stop()` and `start()` take it away
and bring it back on the same ports and mail folder. Extra dovecot settings (e.g.
`imap_capability = IMAP4rev1 UIDPLUS` to hide IDLE and MOVE) go in `MailServer(extra=...)`.

Needs dovecot (`make test` installs dovecot-imapd) and root (the mail folder is handed to the
dovecot user); without them the test is skipped on a developer machine and fails in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from intake.mailbox import MailboxConfig, appended_uid
from tests.conftest import need

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
)
OPENSSL = shutil.which("openssl")
USERNAME = "test@example.com"
PASSWORD = "secret"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config_text(root: Path, port: int, ssl_port: int, tls: bool, extra: str) -> str:
    ssl_lines = (
        f"ssl = yes\nssl_cert = <{root}/cert.pem\nssl_key = <{root}/key.pem\n"
        if tls
        else "ssl = no\n"
    )
    return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
{ssl_lines}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {ssl_port if tls else 0}
  }}
}}
# No growing delay for an address after failed logins: tests fail logins on purpose.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{extra}
"""


class MailServer:
    """One dovecot, its folder and its user; see the module docstring."""

    def __init__(self, root: Path, *, tls: bool = True, extra: str = "") -> None:
        self.root = root
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls = tls and OPENSSL is not None
        self.ssl_port = free_port() if self.tls else 0
        self.username = USERNAME
        self.password = PASSWORD
        self._process: subprocess.Popen[bytes] | None = None
        self._life = threading.RLock()  # a test may stop it from a timer thread
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # the auth process runs as the dovecot user and must read users
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(exist_ok=True)
        (root / "users").write_text(f"{USERNAME}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
        shutil.chown(root / "mail", "dovecot", "dovecot")
        if self.tls:
            self._make_certificate()
        (root / "dovecot.conf").write_text(
            _config_text(root, self.port, self.ssl_port, self.tls, extra), encoding="utf-8"
        )

    def _make_certificate(self) -> None:
        subprocess.run(
            [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(self.root / "key.pem"), "-out", str(self.root / "cert.pem")],
            check=True, capture_output=True,
        )  # fmt: skip

    # -- life -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start dovecot and wait (≤ 10 s) until it greets a connection."""
        with self._life:
            self._start()

    def _start(self) -> None:
        if self.running:
            return
        log = open(self.root / "dovecot.stderr", "ab")  # noqa: SIM115 - the child keeps it
        self._process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self._greets():
                return
            time.sleep(0.02)
        self._stop()
        raise RuntimeError(f"dovecot did not start:\n{self.log()}")

    def _greets(self) -> bool:
        """Whether the server answers a connection with its "* OK" greeting."""
        with (
            contextlib.suppress(OSError),
            socket.create_connection((self.host, self.port), 0.5) as sock,
        ):
            sock.settimeout(2)
            return sock.recv(100).startswith(b"* OK")
        return False

    def stop(self) -> None:
        """SIGTERM to dovecot's processes, wait for the master to exit (1–3 s); clients get
        BYE and the connection closes."""
        with self._life:
            self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # The whole group: the master alone leaves the imap processes serving their clients
        # (and the log process running), so nobody would notice the server going.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def log(self) -> str:
        parts = []
        for name in ("dovecot.stderr", "dovecot.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace")[-4000:])
        return "\n".join(parts)

    # -- clients ----------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and nothing else)."""
        if not self.tls:
            raise RuntimeError("this server has no TLS")
        return ssl.create_default_context(cafile=str(self.root / "cert.pem"))

    def config(self, **overrides: Any) -> MailboxConfig:
        """A MailboxConfig for this server over plain IMAP, with short timeouts."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "ssl": False,
            "starttls": False,
            "username": self.username,
            "password": self.password,
            "connect_timeout": 5.0,
            "read_timeout": 10.0,
            "idle_timeout": 30.0,
            "poll_interval": 0.2,
        }
        values.update(overrides)
        return MailboxConfig(**values)

    @contextlib.contextmanager
    def client(self) -> Iterator[IMAPClient]:
        """A separate plain connection, logged in (another mail client, as far as tests go)."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        try:
            client.login(self.username, self.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(self, folder: str, raw: bytes, flags: tuple[bytes, ...] = ()) -> int:
        """Deliver one message into `folder` (created when missing); returns its UID."""
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            response = client.append(folder, raw, flags=flags)
        uid = appended_uid(response)
        assert uid is not None, response
        return uid

    def folder_uids(self, folder: str) -> list[int]:
        """UIDs in `folder`, oldest first ([] when the folder does not exist)."""
        with self.client() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return sorted(client.search(["ALL"]))

    def messages(self, folder: str) -> dict[int, tuple[bytes, tuple[bytes, ...]]]:
        """{uid: (raw bytes, flags)} of `folder`, read without setting \\Seen."""
        with self.client() as client:
            if not client.folder_exists(folder):
                return {}
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            if not uids:
                return {}
            data = client.fetch(uids, [b"BODY.PEEK[]", b"FLAGS"])
            return {uid: (bytes(d[b"BODY[]"]), tuple(d[b"FLAGS"])) for uid, d in data.items()}

    def folders(self) -> list[str]:
        with self.client() as client:
            return sorted(name for _flags, _sep, name in client.list_folders())

    def reset(self) -> None:
        """Empty INBOX and delete every other folder."""
        with self.client() as client:
            names = [name for _flags, _sep, name in client.list_folders()]
            for name in sorted(names, key=len, reverse=True):
                if name.upper() != "INBOX":
                    client.delete_folder(name)
            client.select_folder("INBOX")
            uids = client.search(["ALL"])
            if uids:
                client.delete_messages(uids, silent=True)
                client.expunge()


def need_dovecot() -> None:
    need(DOVECOT, "dovecot is not installed (make test installs dovecot-imapd)")
    need(os.geteuid() == 0, "dovecot in tests needs root (to hand the mail folder to dovecot)")


@pytest.fixture(scope="module")
def mailserver_module() -> Iterator[MailServer]:
    need_dovecot()
    # Not under pytest's temporary folder: that sits in a 0700 folder the dovecot user
    # cannot pass through to read the users file.
    root = Path(tempfile.mkdtemp(prefix="minsheng-dovecot-"))
    server = MailServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mailserver(mailserver_module: MailServer) -> MailServer:
    mailserver_module.start()
    mailserver_module.reset()
    return mailserver_module
