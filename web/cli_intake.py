"""`minsheng intake mail`: read the complaints mailbox of `[intake.imap]` and register it.

One round (`run_round`), for `--once` and for every wake-up of `--watch`: while the folder
has messages, fetch a batch, ingest each message in its own savepoint
(`triage.mail_intake.ingest`), commit the batch, then move its messages with one MOVE per
folder (processed, quarantine, spam). A crash before the commit leaves the batch in the
folder and nothing in the database; a crash after it leaves messages that the next run
recognises (Message-ID + SHA-256) and only moves. A message whose ingesting fails (a bug)
is kept raw on the quarantine list and counted as an error.

`--watch` holds a lease in the database (`leases`, one per mailbox): a second watcher, on
this machine or another, waits and takes over when the holder's lease runs out (the holder
died) or is given up (the holder stopped). Every batch renews the lease in its own
transaction, so a watcher that lost it registers nothing. SIGTERM and SIGINT stop it
cleanly, giving the lease up.

`--json` prints one object: seen, registered, threaded, suspected_spam, quarantined,
duplicates, errors; each seen message is counted once more in exactly one of the others.
Auto-replies that open a case count as registered, bounces attached to their case as
threaded, bounces whose case is unknown as quarantined (see triage/mail_intake.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import signal
import socket
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from intake.mailbox import Mailbox, MailboxConfig, MailboxError, watch
from triage.mail_intake import (
    COUNTS,
    Folder,
    MailIntakePolicy,
    ingest,
    lease_name,
    quarantine_raw,
    record_fetch,
    release_lease,
    take_lease,
)
from triage.models import utcnow
from web.cli_common import config_option, settings
from web.runtime import Runtime
from web.settings import ImapSettings

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another watcher holds the mailbox now: stop registering."""


def mail_policy(rt: Runtime) -> MailIntakePolicy:
    """The policy `ingest` and the list actions need, from the settings (`[intake.imap]`,
    `[mail] sender`, `[app] base_url`/office name, `[attachments]`)."""
    s = rt.settings
    imap = s.intake.imap
    own = {parseaddr(s.mail.sender)[1].lower()}
    if imap is not None:
        own.add(imap.username.lower())
        own.update(a.strip().lower() for a in imap.own_addresses)
    return MailIntakePolicy(
        intake=rt.intake_policy(),
        sender=s.mail.sender,
        query_secret=s.secret_key(),
        track_url=s.app.base_url.rstrip("/") + "/track",
        office_name=s.app.office_name,
        own_addresses=frozenset(a for a in own if "@" in a),
        limits=s.email_attachment_limits(),
        acknowledge=imap.acknowledge if imap is not None else True,
    )


def _folders(config: MailboxConfig) -> dict[Folder, str]:
    return {
        Folder.PROCESSED: config.processed_folder,
        Folder.QUARANTINE: config.quarantine_folder,
        Folder.SPAM: config.spam_folder,
    }


def new_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


def run_round(
    mailbox: Mailbox,
    rt: Runtime,
    policy: MailIntakePolicy,
    name: str,
    counts: dict[str, int],
    *,
    lease: tuple[str, timedelta] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Handles batches until the folder is empty (or `stop` is set between batches).

    With `lease` ((holder, ttl)) each batch's transaction renews the lease first and raises
    LeaseLost, registering nothing, when another watcher holds it. Adds to `counts`.
    Raises MailboxError when the server fails (what was committed stays; the rest is
    fetched again) and database errors as they come (nothing of the batch is kept).
    """
    folders = _folders(mailbox.config)
    while not (stop is not None and stop.is_set()):
        # The whole folder's UIDs (one SEARCH either way): the health shows how many wait.
        waiting = mailbox.pending(limit=1_000_000_000)
        if not waiting:
            break
        uids = waiting[: mailbox.config.batch_size]
        moves: dict[Folder, list[int]] = defaultdict(list)
        session = rt.sessions()
        try:
            now = clock()
            if lease is not None:
                holder, ttl = lease
                if not take_lease(session, lease_name(name), holder, now=now, ttl=ttl):
                    session.rollback()
                    raise LeaseLost(f"another watcher holds {name}")
            # A write first: it opens the transaction (SQLite's driver opens one only on a
            # write, and a savepoint opened outside one would commit on release).
            record_fetch(session, name, now=now, waiting=len(waiting))
            batch = {"seen": 0}
            batch.update(dict.fromkeys(COUNTS[1:], 0))
            for message in mailbox.fetch(uids):
                batch["seen"] += 1
                try:
                    with session.begin_nested():
                        result = ingest(
                            session, message.raw, mailbox=name, policy=policy, now=clock()
                        )
                    batch[result.count] += 1
                except OperationalError:
                    raise  # the database is gone: the whole batch waits for the next run
                except Exception as exc:
                    log.exception("intake of message UID %s failed; quarantined", message.uid)
                    with session.begin_nested():
                        result = quarantine_raw(
                            session,
                            message.raw,
                            mailbox=name,
                            reason=f"intake failed: {type(exc).__name__}: {exc}",
                            now=clock(),
                        )
                    batch["errors"] += 1
                moves[result.folder].append(message.uid)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        for key, n in batch.items():
            counts[key] += n
        for folder, done in moves.items():
            mailbox.move(done, folders[folder])
    _record(rt, name, waiting=0)


def _record(rt: Runtime, name: str, *, waiting: int | None = None, error: str = "") -> None:
    try:
        with rt.sessions() as session, session.begin():
            record_fetch(session, name, now=utcnow(), waiting=waiting, error=error)
    except OperationalError as exc:
        log.warning("intake health not recorded: %s", exc)


def _imap(rt: Runtime) -> tuple[ImapSettings, MailboxConfig]:
    imap = rt.settings.intake.imap
    config = rt.settings.mailbox_config()
    if imap is None or config is None:
        raise click.ClickException(
            f"{rt.settings.source}: no [intake.imap] table: no mailbox to read "
            "(see the commented example in config.toml)"
        )
    return imap, config


@click.group()
def intake() -> None:
    """Channels that bring complaints in: the complaints mailbox."""


@intake.command("mail")
@config_option
@click.option("--once", "mode", flag_value="once", default=True, help="Read until empty (default).")
@click.option(
    "--watch", "mode", flag_value="watch", help="Keep reading (IMAP IDLE) until SIGTERM/Ctrl-C."
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def mail(mode: str, as_json: bool) -> None:
    """Register the mail in the [intake.imap] mailbox; acknowledgments go to the outbox."""
    rt = Runtime.build(settings())
    imap, config = _imap(rt)
    policy = mail_policy(rt)
    name = imap.mailbox_name
    counts = new_counts()
    if mode == "once":
        try:
            with Mailbox(config) as mailbox:
                mailbox.ensure_folders()
                run_round(mailbox, rt, policy, name, counts)
        except MailboxError as exc:
            _record(rt, name, error=str(exc))
            _report(counts, as_json)
            raise click.ClickException(str(exc)) from exc
        except OperationalError as exc:
            # Nothing of the failed batch was kept or moved: the next run takes it again.
            _report(counts, as_json)
            raise click.ClickException(f"database unavailable: {exc}") from exc
        _report(counts, as_json)
        return
    _watch(rt, imap, config, policy, counts, as_json)


class _LastWarning(logging.Handler):
    """Keeps the mailbox module's last warning (a dropped connection and its retry), for the
    health panel: `watch` retries those itself and never hands them to us."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message = ""
        self.fresh = False

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()
        self.fresh = True


def _watch(
    rt: Runtime,
    imap: ImapSettings,
    config: MailboxConfig,
    policy: MailIntakePolicy,
    counts: dict[str, int],
    as_json: bool,
) -> None:
    name = imap.mailbox_name
    ttl = timedelta(seconds=imap.lease_seconds)
    holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    # The lease is renewed at least three times in its life, while idling too.
    beat = imap.lease_seconds / 3
    config = dataclasses.replace(
        config,
        idle_timeout=min(config.idle_timeout, beat),
        poll_interval=min(config.poll_interval, beat),
    )
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    warnings = _LastWarning()
    logging.getLogger("intake.mailbox").addHandler(warnings)

    def say(text: str) -> None:
        if not as_json:
            click.echo(f"{utcnow():%Y-%m-%d %H:%M:%S} {text}", err=True)

    def renew() -> bool:
        with rt.sessions() as session, session.begin():
            return take_lease(session, lease_name(name), holder, now=utcnow(), ttl=ttl)

    prepared: set[int] = set()

    def handler(mailbox: Mailbox) -> None:
        if id(mailbox) not in prepared:  # once per connection
            mailbox.ensure_folders()
            prepared.add(id(mailbox))
        before = dict(counts)
        run_round(mailbox, rt, policy, name, counts, lease=(holder, ttl), stop=stop)
        if counts != before:
            say(" ".join(f"{k} {counts[k] - before[k]}" for k in COUNTS if counts[k] != before[k]))

    def on_tick(mailbox: Mailbox) -> None:
        if not renew():
            raise LeaseLost(f"another watcher holds {name}")

    try:
        while not stop.is_set():
            try:
                if not renew():
                    stop.wait(beat)
                    continue
            except OperationalError as exc:
                say(f"database unavailable: {exc}")
                stop.wait(beat)
                continue
            say(f"watching {name} as {holder}")
            keeper = _LeaseKeeper(renew, beat, stop, warnings, rt, name)
            keeper.start()
            try:
                watch(config, handler, stop_event=keeper.inner, on_tick=on_tick)
            except LeaseLost as exc:
                say(str(exc))
            except OperationalError as exc:
                say(f"database unavailable: {exc}")
                stop.wait(beat)
            except MailboxError as exc:  # a configuration error or a refused first login
                _record(rt, name, error=str(exc))
                raise click.ClickException(str(exc)) from exc
            finally:
                keeper.finish()
    finally:
        logging.getLogger("intake.mailbox").removeHandler(warnings)
        for sig, old in previous.items():
            signal.signal(sig, old)
        try:
            with rt.sessions() as session, session.begin():
                release_lease(session, lease_name(name), holder)
        except OperationalError:
            pass  # it runs out by itself
        _report(counts, as_json)


class _LeaseKeeper(threading.Thread):
    """Renews the lease every `beat` seconds while `watch` runs (a long batch or a long
    reconnect must not let it lapse), and records the mailbox module's warnings as the
    health's last error. Sets `inner` (which stops `watch`) on a stop or a lost lease."""

    def __init__(
        self,
        renew: Callable[[], bool],
        beat: float,
        stop: threading.Event,
        warnings: _LastWarning,
        rt: Runtime,
        name: str,
    ) -> None:
        super().__init__(daemon=True, name="intake-lease")
        self.renew = renew
        self.beat = beat
        self.stop = stop
        self.warnings = warnings
        self.rt = rt
        self.mailbox = name
        self.inner = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            if self.stop.wait(min(self.beat, 0.5)):
                self.inner.set()
                return
            if self._done.is_set():
                return
            if self.warnings.fresh:
                self.warnings.fresh = False
                _record(self.rt, self.mailbox, error=self.warnings.message)
            if not self._due():
                continue
            try:
                if not self.renew():
                    self.inner.set()
                    return
            except OperationalError as exc:
                log.warning("lease not renewed: %s", exc)

    _last = 0.0

    def _due(self) -> bool:
        import time

        now = time.monotonic()
        if now - self._last >= self.beat:
            self._last = now
            return True
        return False

    def finish(self) -> None:
        self._done.set()
        self.inner.set()
        self.join(timeout=5)


def _report(counts: dict[str, int], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({k: counts[k] for k in COUNTS}))
        return
    click.echo(
        "seen {seen}: registered {registered}, threaded {threaded}, suspected spam "
        "{suspected_spam}, quarantined {quarantined}, duplicates {duplicates}, "
        "errors {errors}".format(**counts)
    )
