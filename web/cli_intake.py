"""`minsheng intake mail`: read the complaints mailbox of `[intake.imap]` and register it.

One round (`run_round`), for `--once` and for every wake-up of `--watch`: while the folder
has messages, fetch a batch, ingest it `INGEST_CHUNK` messages at a time
(`triage.mail_intake.ingest_batch`: the new cases of a chunk registered together in one
savepoint, any other message in its own), commit the batch, then move its messages with one
MOVE per folder (processed, quarantine, spam). A crash before the commit leaves the batch in the
folder and nothing in the database; a crash after it leaves messages that the next run
recognises (Message-ID + SHA-256) and only moves. A message whose ingesting fails (a bug)
is kept raw on the quarantine list and counted as an error.

The batches leave the new cases' similar-case suggestions and search rows to after their
commit (`triage.enrichment`): once the folder is empty, the round enriches them
(`enrich_all`), so ``--once`` exits with every case searchable and its suggestions shown. A
crash in between leaves them marked; the next round, ``minsheng supervise tick`` or
``minsheng search reindex`` completes them.

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
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

import click
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from intake.mailbox import FetchedMessage, Mailbox, MailboxConfig, MailboxError, watch
from triage import enrichment
from triage.cases import IntakePolicy
from triage.enrichment import enrich_pending
from triage.mail_intake import (
    COUNTS,
    Folder,
    MailIntakePolicy,
    ingest_batch,
    lease_name,
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
        ack_limit=imap.acknowledgments_per_address_per_day if imap is not None else 3,
    )


def _folders(config: MailboxConfig) -> dict[Folder, str]:
    return {
        Folder.PROCESSED: config.processed_folder,
        Folder.QUARANTINE: config.quarantine_folder,
        Folder.SPAM: config.spam_folder,
    }


def new_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


MAX_TRANSACTION_SECONDS = 2.0
"""A batch taking longer is committed and moved in parts: SQLite has one writer, and a
citizen submitting the web form waits for the intake's transaction to end."""


INGEST_CHUNK = 50
"""Messages ingested together (`ingest_batch`); the transaction's age is checked between."""


class _Part:
    """One transaction of a batch: the messages ingested in it and where they go."""

    def __init__(
        self,
        rt: Runtime,
        name: str,
        lease: tuple[str, timedelta] | None,
        clock: Callable[[], datetime],
        waiting: int,
    ) -> None:
        self.rt, self.name, self.lease, self.clock, self.waiting = rt, name, lease, clock, waiting
        self.session: Session | None = None
        self.opened = 0.0
        self.counts = dict.fromkeys(COUNTS, 0)
        self.moves: dict[Folder, list[int]] = defaultdict(list)

    def _open(self) -> Session:
        session = self.rt.sessions()
        self.session, self.opened = session, time.monotonic()
        now = self.clock()
        if self.lease is not None:
            holder, ttl = self.lease
            if not take_lease(session, lease_name(self.name), holder, now=now, ttl=ttl):
                raise LeaseLost(f"another watcher holds {self.name}")
        # A write first: it opens the transaction (SQLite's driver opens one only on a
        # write, and a savepoint opened outside one would commit on release).
        record_fetch(session, self.name, now=now, waiting=self.waiting)
        return session

    def ingest(self, messages: list[FetchedMessage], policy: MailIntakePolicy) -> None:
        """Ingests fetched messages together (`ingest_batch`: one flush for the new cases
        among them); one that fails is quarantined raw and counted as an error."""
        session = self.session or self._open()
        results = ingest_batch(
            session,
            [m.raw for m in messages],
            mailbox=self.name,
            policy=policy,
            now=self.clock(),
            defer_enrichment=True,
        )
        for message, done in zip(messages, results, strict=True):
            self.counts["seen"] += 1
            if done.error:
                log.error("intake of message UID %s failed; quarantined", message.uid)
                self.counts["errors"] += 1
            else:
                self.counts[done.result.count] += 1
            self.moves[done.result.folder].append(message.uid)

    @property
    def age(self) -> float:
        return time.monotonic() - self.opened if self.session is not None else 0.0

    def finish(self, mailbox: Mailbox, counts: dict[str, int]) -> None:
        """Commit, then move: one MOVE per folder."""
        if self.session is None:
            return
        try:
            self.session.commit()
        finally:
            self.abort()
        for key, n in self.counts.items():
            counts[key] += n
        self.waiting -= self.counts["seen"]
        self.counts = dict.fromkeys(COUNTS, 0)
        folders = _folders(mailbox.config)
        moves, self.moves = self.moves, defaultdict(list)
        for folder, done in moves.items():
            mailbox.move(done, folders[folder])

    def abort(self) -> None:
        if self.session is not None:
            self.session.rollback()
            self.session.close()
            self.session = None


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
    enrich: bool = True,
) -> None:
    """Handles batches until the folder is empty (or `stop` is set between batches), then,
    with `enrich`, enriches the new cases (`enrich_all`: suggestions and search rows, which
    the batches leave to after their commit).

    Each batch is committed, then moved, in one transaction, or in several when it takes
    longer than MAX_TRANSACTION_SECONDS. With `lease` ((holder, ttl)) each transaction
    renews the lease first and raises LeaseLost, registering nothing, when another watcher
    holds it. Adds to `counts`. Raises MailboxError when the server fails (what was
    committed stays; the rest is fetched again) and database errors as they come (nothing
    of the open transaction is kept).
    """
    while not (stop is not None and stop.is_set()):
        # The whole folder's UIDs (one SEARCH either way): the health shows how many wait.
        waiting = mailbox.pending(limit=1_000_000_000)
        if not waiting:
            break
        part = _Part(rt, name, lease, clock, len(waiting))
        try:
            chunk: list[FetchedMessage] = []
            for message in mailbox.fetch(waiting[: mailbox.config.batch_size]):
                chunk.append(message)
                if len(chunk) >= INGEST_CHUNK:
                    part.ingest(chunk, policy)
                    chunk = []
                    if part.age > MAX_TRANSACTION_SECONDS:
                        part.finish(mailbox, counts)
            if chunk:
                part.ingest(chunk, policy)
            part.finish(mailbox, counts)
        finally:
            part.abort()
    if enrich:
        enrich_all(rt, policy.intake)
    _record(rt, name, waiting=0)


SQLITE_ENRICH_BATCH = 20
"""Cases enriched per transaction on SQLite. Its transaction holds the database's one write
lock from the claim to the commit, and every other writer (the web's forms, dispatches and
replies, the import, the tick) waits meanwhile: 200 cases held it 5-28 s on a loaded machine
(load 10 on 2 cores, a 4,000-row call import), past the busy timeout; 20 hold it well under
3 s. PostgreSQL locks only the claimed rows: `enrichment.BATCH` there."""


def enrich_all(rt: Runtime, policy: IntakePolicy) -> int:
    """Runs `triage.enrichment.enrich_pending` until no case waits, one transaction per
    `enrichment.BATCH` cases (`SQLITE_ENRICH_BATCH` on SQLite); returns how many were
    enriched. A failure is logged and leaves the rest pending for the next run (the intake
    itself goes on)."""
    batch = enrichment.BATCH
    if rt.engine.dialect.name == "sqlite":
        batch = SQLITE_ENRICH_BATCH
    done = 0
    while True:
        try:
            with rt.sessions() as session, session.begin():
                n = enrich_pending(session, policy, limit=batch)
        except OperationalError as exc:
            log.warning("enrichment stopped, the rest waits for the next run: %s", exc)
            return done
        except Exception:
            log.exception("enrichment failed; the cases wait for the next run")
            return done
        done += n
        if n < batch:
            return done


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
            _report(counts, as_json, error=str(exc))
            raise click.ClickException(str(exc)) from exc
        except OperationalError as exc:
            # Nothing of the failed batch was kept or moved: the next run takes it again.
            _report(counts, as_json, error=f"database unavailable: {exc}")
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
        now = time.monotonic()
        if now - self._last >= self.beat:
            self._last = now
            return True
        return False

    def finish(self) -> None:
        self._done.set()
        self.inner.set()
        self.join(timeout=5)


def _report(counts: dict[str, int], as_json: bool, *, error: str = "") -> None:
    """Prints the counts (one JSON object with ``--json``). When the run failed as a whole
    (the server or the database), ``error`` says why: the JSON gets an ``"error"`` key
    after the counts (a script must not read ``"errors": 0`` as success) and the command
    exits non-zero; ``errors`` stays the number of messages that failed."""
    if as_json:
        report: dict[str, object] = {k: counts[k] for k in COUNTS}
        if error:
            report["error"] = error
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    click.echo(
        "seen {seen}: registered {registered}, threaded {threaded}, suspected spam "
        "{suspected_spam}, quarantined {quarantined}, duplicates {duplicates}, "
        "errors {errors}".format(**counts)
    )
