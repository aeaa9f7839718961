"""Imports of call-centre exports: the run's record, and registering one batch of rows.

A run (`CallImport`) is stored when it starts and updated as each batch commits, so an
interrupted run shows as unfinished (``finished_at`` NULL) with what it did. `import_batch`
registers a batch of parsed rows (`intake.phone.CallRow`) in the caller's session: the good
rows together through `triage.cases.register_rows` at their call times (received_at and
deadlines count from the call), in a savepoint, each with a ``call_imported`` event naming
the run, the file's row, the call id, the call's length and the operator; their similar-case
suggestions and search rows come after the commit (`triage.enrichment`). The same call
again, in this file, in an earlier import or logged at the desk with its call id, is a
duplicate; so is a row another import of the same export registered at the same moment (the
unique (channel, external id) refuses the second: the batch is then registered again row by
row). A dry run reads which keys exist and registers nothing.

Everything here flushes and never commits: the caller commits each batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from intake.phone import CALL_CHANNEL, CallRow, RowError
from triage import call_keys
from triage.cases import (
    IntakePolicy,
    LaterEvent,
    RowPrep,
    prepare_rows,
    register,
    register_rows,
)
from triage.models import Actor, Base, Case, User, UTCDateTime, utcnow

COUNTS = ("rows", "registered", "duplicates", "rejected")
# A batch takes seconds; an unfinished run silent this long was interrupted (its process
# stopped) and is completed by importing the file again.
RUNNING_SILENCE = timedelta(minutes=2)


class CallImport(Base):
    """One import of a call-centre export, by a person or the command line."""

    __tablename__ = "call_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64))
    mapping: Mapped[str] = mapped_column(String(40))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # NULL: still running, or interrupted (its committed batches stay).
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its last batch committed: a run unfinished and silent for long was interrupted.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    registered: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    # An XLSX workbook's sheets, read and skipped: [{"name", "read", "reason", "missing"}]
    # (intake.phone.SheetReport); None for a CSV.
    sheets: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    def running(self, now: datetime) -> bool:
        """Still importing: unfinished, and a batch committed within RUNNING_SILENCE."""
        return self.finished_at is None and now - self.updated_at < RUNNING_SILENCE

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name) or 0) for name in COUNTS}

    def __repr__(self) -> str:
        return f"<CallImport {self.id} {self.file_name!r} {self.counts()}>"

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The bad rows stored so far, in file order (`stored_errors`); [] when detached."""
        session = Session.object_session(self)
        return stored_errors(session, self.id) if session is not None else []


class CallImportError(Base):
    """One bad row of an import, appended with the batch that read it (same transaction as
    its cases and the run's counts), so a crash at any point loses none that were counted.
    Never rewritten: a run's bad rows cost their own length, not its square."""

    __tablename__ = "call_import_errors"

    id: Mapped[int] = mapped_column(primary_key=True)  # file order within a run
    import_id: Mapped[int] = mapped_column(
        ForeignKey("call_imports.id", ondelete="CASCADE"), index=True
    )
    row: Mapped[int] = mapped_column(Integer)  # Excel's row number, header = 1
    sheet: Mapped[str] = mapped_column(String(255), default="")  # "" but for several sheets
    column: Mapped[str] = mapped_column(String(255), default="")  # "" for the whole row
    code: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)  # English, its params filled in
    params: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

    def as_dict(self) -> dict[str, Any]:
        """As `error_record` gives it ("sheet" only when there is one)."""
        record: dict[str, Any] = {
            "row": self.row,
            "column": self.column,
            "code": self.code,
            "message": self.message,
            "params": dict(self.params or {}),
        }
        if self.sheet:
            record["sheet"] = self.sheet
        return record


def stored_errors(
    session: Session, run_id: int, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """The run's bad rows as `error_record` dicts, in file order; the first `limit` only
    when given."""
    query = (
        select(CallImportError)
        .where(CallImportError.import_id == run_id)
        .order_by(CallImportError.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [e.as_dict() for e in session.scalars(query)]


def count_errors(session: Session, run_id: int) -> int:
    """How many bad rows the run has stored (one query, no rows read)."""
    query = select(func.count()).where(CallImportError.import_id == run_id)
    return int(session.scalar(query) or 0)


def error_record(error: RowError) -> dict[str, Any]:
    """A row error as stored and as the JSON output shows it ("sheet" only when the calls
    came from several sheets of a workbook)."""
    record = {
        "row": error.row,
        "column": error.column,
        "code": error.code,
        "message": error.text(),
        "params": {k: str(v) for k, v in error.params.items()},
    }
    if error.sheet:
        record["sheet"] = error.sheet
    return record


@dataclass
class BatchResult:
    """What one batch did: its counts, its row errors, and the cases it made."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    errors: list[RowError] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # tracking numbers


# SQLite's page cache for an import's connection, KiB (as the mail intake's).
SQLITE_CACHE_KIB = 65536

_EXISTING = select(Case.external_id).where(Case.channel == str(CALL_CHANNEL))


def existing_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Which of `keys` the system has seen: the external id of a phone case, or a call id
    the desk recorded on a repeat call (催办) or a reopen (`triage.call_keys.known`). The
    same lookup as `triage.cases.register_rows`, so a dry run counts what the import does.
    Two queries (one more per 500 keys)."""
    if not keys:
        return set()
    found = set(session.scalars(_EXISTING.where(Case.external_id.in_(list(keys)))).all())
    found.update(call_keys.known(session, str(CALL_CHANNEL), keys))
    return found


def start_run(
    session: Session,
    *,
    file_name: str,
    file_sha256: str,
    mapping: str,
    actor: Actor,
    dry_run: bool,
    now: datetime,
) -> CallImport:
    """A new run, added and flushed (it has its id)."""
    run = CallImport(
        file_name=file_name[:255],
        file_sha256=file_sha256,
        mapping=mapping[:40],
        dry_run=dry_run,
        actor_id=actor.id if isinstance(actor, User) else None,
        actor_name=(actor.label if isinstance(actor, User) else actor or "system")[:200],
        started_at=now,
        updated_at=now,
    )
    session.add(run)
    session.flush()
    return run


def import_batch(
    session: Session,
    rows: Iterable[CallRow],
    policy: IntakePolicy,
    *,
    run_id: int | None,
    file_name: str,
    actor: Actor,
    seen: set[str],
    now: datetime,
    dry_run: bool = False,
    one_by_one: bool = False,
    prepared: Mapping[str, RowPrep] | None = None,
) -> BatchResult:
    """Registers the good rows of one batch; counts the rest.

    `seen` holds the keys met earlier in the same file (a second row with the same call id
    is a duplicate) and is added to. The new rows are registered together
    (`triage.cases.register_rows`: one query for the known keys, one routing pass, one
    INSERT executemany or COPY per table, no ORM objects) at their call times, in one
    savepoint; their similar-case suggestions and search rows are left to
    `triage.enrichment.enrich_pending` after the commit. When that savepoint fails on a
    unique key (a concurrent import registered some of the same calls since this batch
    looked) the batch is registered again one row at a time, each in a savepoint of its own,
    so those rows are duplicates, not errors; `one_by_one` goes that way from the start.
    Every new case gets a ``call_imported`` event by `actor` at `now` with {import_id, row,
    call_id, duration_seconds, operator}; its reason is ``<file name> : <row>``; its
    ``created_at`` is `now`.

    `prepared` gives, by external id, rows' `triage.cases.RowPrep` (suggestion, hazard flag,
    masked text, query code, caller keys, deadlines) worked out ahead
    (`triage.cases.prepare_rows`); the others' are worked out here.
    """
    result = BatchResult()
    batch = list(rows)
    keys = [r.submission.external_id for r in batch if r.submission is not None]
    known = existing_keys(session, keys)
    fresh: list[CallRow] = []
    for row in batch:
        result.counts["rows"] += 1
        submission = row.submission
        if submission is None:
            result.counts["rejected"] += 1
            result.errors.extend(row.errors)
            continue
        key = submission.external_id
        if key in seen or key in known:
            result.counts["duplicates"] += 1
            seen.add(key)
            continue
        seen.add(key)
        fresh.append(row)
    if dry_run:
        result.counts["registered"] += len(fresh)
        return result
    prepared = dict(prepared or {})
    if fresh and not one_by_one:
        # Worked out before the transaction writes: on SQLite the write lock is then held
        # for the inserts only, and the web form waits that long at most.
        missing = [
            r.submission
            for r in fresh
            if r.submission is not None and r.submission.external_id not in prepared
        ]
        made = prepare_rows(
            missing,
            policy.router,
            policy.detect_hazard,
            policy.deadlines,
            policy.query_code_key,
            policy.area_code,
        )
        prepared.update((s.external_id, p) for s, p in zip(missing, made, strict=True))
    if fresh and session.get_bind().dialect.name == "sqlite":
        # A case's row lands in some 35 indexes: with SQLite's default 2 MiB page cache
        # their pages were spilled and read again within a batch (as the mail intake's
        # index rows were: the same larger cache; memory taken only as pages are read).
        session.connection().exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    if run_id is not None:
        # A write first: it opens the transaction (SQLite's driver opens one only on a
        # write, and each savepoint below would otherwise be a commit of its own).
        session.execute(
            update(CallImport).where(CallImport.id == run_id).values(rows=CallImport.rows)
        )
    context = _Context(run_id, file_name, actor, now)
    if fresh and not one_by_one:
        try:
            _register_together(session, fresh, policy, context, result, prepared)
            return result
        except IntegrityError:
            # Rolled back to the savepoint: nothing of the batch is left in the session.
            # Another import registered some of these calls since this batch looked.
            if not existing_keys(
                session, [r.submission.external_id for r in fresh if r.submission]
            ):
                raise  # any other constraint failing is a bug, not a duplicate
    for row in fresh:
        _register_one(session, row, policy, context, result)
    return result


@dataclass(frozen=True)
class _Context:
    run_id: int | None
    file_name: str
    actor: Actor
    now: datetime


def _imported(case: Case, row: CallRow, context: _Context) -> None:
    """A new case of the import: made now, by the import, with its ``call_imported`` event."""
    case.created_at = context.now
    case.record(
        "call_imported",
        context.actor,
        context.now,
        reason=f"{context.file_name} : {row.row}",
        import_id=context.run_id,
        row=row.row,
        call_id=row.call_id,
        duration_seconds=row.duration_seconds,
        operator=row.operator,
        anonymous=row.anonymous,
    )


def _later(row: CallRow, context: _Context) -> LaterEvent:
    """The ``call_imported`` event of `_imported`, as a row of `register_rows`."""
    return LaterEvent(
        "call_imported",
        context.actor,
        context.now,
        reason=f"{context.file_name} : {row.row}",
        detail={
            "import_id": context.run_id,
            "row": row.row,
            "call_id": row.call_id,
            "duration_seconds": row.duration_seconds,
            "operator": row.operator,
            "anonymous": row.anonymous,
        },
    )


def _register_together(
    session: Session,
    rows: list[CallRow],
    policy: IntakePolicy,
    context: _Context,
    result: BatchResult,
    prepared: Mapping[str, RowPrep],
) -> None:
    """The new rows of a batch registered at once, in one savepoint (see `import_batch`):
    as rows inserted together (`triage.cases.register_rows`), not ORM objects."""
    rows = [row for row in rows if row.submission is not None]
    items = [(row.submission, None) for row in rows if row.submission is not None]
    with session.begin_nested():
        # Registered at the calls' times: the triage and handling deadlines count from when
        # the citizen called, not from when the file was imported.
        registrations = register_rows(
            session,
            items,
            policy,
            context.now,
            later=[[_later(row, context)] for row in rows],
            prepared=[prepared.get(submission.external_id) for submission, _ in items],
        )
    for reg in registrations:
        if reg.created:
            result.counts["registered"] += 1
            result.created.append(reg.tracking_number)
        else:
            result.counts["duplicates"] += 1


def _register_one(
    session: Session,
    row: CallRow,
    policy: IntakePolicy,
    context: _Context,
    result: BatchResult,
) -> None:
    """One new row registered in a savepoint of its own; a unique key taken by another
    import meanwhile makes it a duplicate."""
    submission = row.submission
    assert submission is not None
    try:
        with session.begin_nested():
            reg = register(session, submission, policy, submission.received_at, flush=False)
            if reg.created:
                _imported(reg.case, row, context)
                session.flush()
    except IntegrityError:
        # Any other constraint failing is a bug, not a duplicate.
        if not existing_keys(session, [submission.external_id]):
            raise
        result.counts["duplicates"] += 1
        return
    if reg.created:
        result.counts["registered"] += 1
        result.created.append(reg.case.tracking_number)
    else:
        result.counts["duplicates"] += 1


def add_to_run(
    session: Session,
    run_id: int,
    result: BatchResult,
    *,
    now: datetime,
) -> None:
    """Adds a batch's counts to the run and marks it alive at `now` (one UPDATE), and
    appends the batch's bad rows to it (one INSERT of `CallImportError` rows, none read or
    rewritten). Committed with the batch by the caller: a run's stored bad rows always
    match its ``rejected`` count."""
    values: dict[str, Any] = {
        name: getattr(CallImport, name) + result.counts[name] for name in COUNTS
    }
    values["updated_at"] = now
    session.execute(update(CallImport).where(CallImport.id == run_id).values(**values))
    if result.errors:
        session.execute(
            insert(CallImportError),
            [
                {
                    "import_id": run_id,
                    "row": e.row,
                    "sheet": e.sheet[:255],
                    "column": e.column[:255],
                    "code": e.code[:40],
                    "message": e.text(),
                    "params": {k: str(v) for k, v in e.params.items()},
                }
                for e in result.errors
            ],
        )
