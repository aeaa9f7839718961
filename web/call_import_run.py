"""Running an import of a call-centre export, for the command and the upload page alike.

`run_import` reads the file (`intake.phone`), checks its header before anything is stored,
then registers the rows in batches of `[intake.calls] batch_size`, each batch one
transaction of its own together with the run's counts (`triage.call_imports`). A crash
loses at most the batch in hand; importing the file again registers the rest, and the rows
already registered count as duplicates. A dry run stores nothing at all, unless the caller
asks to keep its report (`keep_report`, the upload page: so that it can be downloaded).

The new cases' similar-case suggestions, duplicate-index and search rows are not made in the
batches but after the last one (`enrich_new_cases`, `triage.enrichment`), as the mail intake
does; a crash before leaves them pending for the next import, mail round or
``minsheng supervise tick``.

A large file (`PIPELINE_MIN_BYTES`) is imported by two processes: a helper process (spawned,
so safe in a threaded web server too) works out the next batches' routing suggestions, hazard
flags, masked texts, query codes, caller keys and deadlines (`triage.cases.prepare_rows`,
about half of a row's CPU) while this one parses the rows and inserts the batch before. The
helper has `HELPER_AHEAD` batches in hand, so that it works on while a batch is parsed here
(with one, it waited for each parse). The helper only computes: everything
stored is stored here, batch by batch as without it. Should it fail or die, the batches go on
without it (each row's values are then worked out here), and Ctrl-C stops both.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.orm import Session

from intake.phone import CallRow, ColumnMapping, parse_file
from intake.submission import Submission
from triage.call_imports import (
    COUNTS,
    CallImport,
    add_to_run,
    error_record,
    existing_keys,
    import_batch,
    start_run,
)
from triage.call_keys import main_number_rows
from triage.cases import (
    IntakePolicy,
    PlainPrep,
    PrepInput,
    Router,
    RowPrep,
    from_plain_prep,
    plain_prep,
    prep_input,
    prepare_inputs,
)
from triage.deadlines import Deadlines
from triage.models import Actor, utcnow
from triage.routing.model import RoutingModel
from triage.routing.store import ModelStore
from triage.urgency import detect_hazard
from web.cli_intake import enrich_all
from web.runtime import Runtime
from web.settings import CallMappingSettings, Settings


class _PipelineAbortedAfterError(logging.Filter):
    """Drops psycopg's "error ignored terminating <Pipeline>: pipeline aborted".

    psycopg runs ``executemany`` (the ORM's and `add_to_run`'s multi-row INSERTs) in
    pipeline mode. When a row fails there, e.g. the unique (channel, external id) that a
    concurrent import of the same export took first, the pipeline's end fails too with
    PipelineAborted, a consequence of the first error; psycopg logs it as a warning (to
    stderr when nothing configured logging: three concurrent ``minsheng intake calls
    same.csv --json`` printed it dozens of times) and raises the first error, which
    `triage.call_imports.import_batch` handles (the batch again row by row: those calls
    are duplicates). Any other error psycopg ignores there is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "error ignored terminating %r: %s" or not record.args:
            return True
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        return not (len(args) == 2 and isinstance(args[1], PipelineAborted))


try:
    from psycopg.errors import PipelineAborted
except ImportError:  # pragma: no cover - psycopg is a dependency; SQLite-only installs
    pass
else:
    logging.getLogger("psycopg").addFilter(_PipelineAbortedAfterError())

DEFAULT_MAPPING = "default"
# Files from this size on (some 2,000 calls) are imported with the helper process: its start
# (a Python with the model loaded, about a second of CPU) costs less than it saves.
PIPELINE_MIN_BYTES = 1 << 20
# Batches sent to the helper ahead of the one being inserted: with 2 it has the next one
# queued while this process parses another (with 1 it waited for each parse).
HELPER_AHEAD = 2

log = logging.getLogger(__name__)


class UnknownMapping(ValueError):
    """No mapping of that name in `[intake.calls.mappings]` (nor the built-in default)."""


def mappings(settings: Settings) -> dict[str, ColumnMapping]:
    """The configured column mappings by name, "default" first (built in unless the config
    redefines it)."""
    found: dict[str, ColumnMapping] = {DEFAULT_MAPPING: ColumnMapping()}
    for name, spec in settings.intake.calls.mappings.items():
        found[name] = _mapping(spec)
    return found


def _mapping(spec: CallMappingSettings) -> ColumnMapping:
    values = spec.model_dump(exclude={"kinds"})
    return ColumnMapping(**values, kinds={k: str(v) for k, v in spec.kinds.items()})


def mapping_named(settings: Settings, name: str | None) -> ColumnMapping:
    """The mapping called `name` (None or "": the default); UnknownMapping otherwise."""
    known = mappings(settings)
    try:
        return known[name or DEFAULT_MAPPING]
    except KeyError:
        raise UnknownMapping(
            f"no column mapping {name!r}: known are {', '.join(sorted(known))}"
        ) from None


@dataclass
class ImportReport:
    """What an import did: counts as the JSON output gives them, the bad rows, and an XLSX
    workbook's sheets, read and skipped (`intake.phone.SheetReport.as_dict`; [] for a
    CSV)."""

    file_name: str
    dry_run: bool
    run_id: int | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    errors: list[dict[str, Any]] = field(default_factory=list)
    sheets: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        keys = ("sheet", "row", "column", "message")
        return {
            **self.counts,
            "dry_run": self.dry_run,
            "import_id": self.run_id,
            "sheets": self.sheets,
            "errors": [{k: e[k] for k in keys if k in e} for e in self.errors],
        }


def _batches(rows: Iterator[CallRow], size: int) -> Iterator[list[CallRow]]:
    while batch := list(itertools.islice(rows, size)):
        yield batch


# -- the helper process ------------------------------------------------------------------

_HELPER: tuple[Router, Callable[[str, str], Any], Deadlines, bytes | None, str] | None = None


def _helper_start(
    router: tuple[str, Any],
    hazard_terms: tuple[str, ...],
    deadlines: Deadlines,
    query_code_key: bytes | None,
    area_code: str = "",
) -> None:
    """In the helper process: the import's router (a stored model, loaded here by its
    version, or another router pickled), its policy's hazard detection (that of
    `web.runtime.Runtime.intake_policy`), deadlines, query code key (the application's
    secret: caller keys and query code hashes) and the office's area code (caller keys).
    Ctrl-C is left to the importing process, which stops the helper."""
    global _HELPER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kind, spec = router
    if kind == "model":
        root, version = spec
        loaded: Router = ModelStore(root).load(version)
    else:
        loaded = pickle.loads(spec)  # our own router, pickled by the importing process
    _HELPER = (
        loaded,
        lambda subject, body: detect_hazard(subject, body, hazard_terms),
        deadlines,
        query_code_key,
        area_code,
    )


def _helper_ready() -> bool:
    return _HELPER is not None


def _helper_prepare(inputs: list[PrepInput]) -> list[PlainPrep]:
    """In the helper process: `prepare_inputs` of one batch's new submissions, as plain
    values both ways (`triage.cases.prep_input`, `plain_prep`): pickled and unpickled, the
    Submissions and RowPreps cost 0.015 to 0.03 ms of CPU a call in both processes together,
    these 0.008."""
    assert _HELPER is not None, "the helper process was not started"
    router, detect, deadlines, key, area_code = _HELPER
    return [
        plain_prep(p) for p in prepare_inputs(inputs, router, detect, deadlines, key, area_code)
    ]


class _Helper:
    """The helper process that works out batches' `RowPrep`s ahead (see the module's
    docstring): once it is `ready`, `submit` a batch's submissions and read the future's
    result when inserting the batch. Until then (its start takes a second or two) the
    batches are worked out in the importing process."""

    def __init__(
        self,
        router: tuple[str, Any],
        hazard_terms: Sequence[str],
        deadlines: Deadlines,
        query_code_key: bytes | None,
        area_code: str = "",
    ) -> None:
        self.pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_helper_start,
            initargs=(router, tuple(hazard_terms), deadlines, query_code_key, area_code),
        )
        self.started = self.pool.submit(_helper_ready)

    @classmethod
    def start(cls, rt: Runtime, policy: IntakePolicy) -> _Helper | None:
        """A helper for `policy` (None on a one-core machine, or for a router that cannot be
        sent to another process)."""
        if (os.cpu_count() or 1) < 2:
            return None
        router = policy.router
        try:
            if isinstance(router, RoutingModel):
                spec: tuple[str, Any] = ("model", (str(rt.routers.store.root), router.version))
            else:
                spec = ("pickle", pickle.dumps(router))
            pickle.dumps(policy.deadlines)  # sent to the helper as its initargs
            return cls(
                spec,
                rt.settings.classifier.hazard_terms,
                policy.deadlines,
                policy.query_code_key,
                policy.area_code,
            )
        except (pickle.PicklingError, TypeError, AttributeError, OSError) as exc:
            log.warning("call import without its helper process: %s", exc)
            return None

    def ready(self) -> bool | None:
        """True once started, False while starting, None if it could not start."""
        if not self.started.done():
            return False
        try:
            return bool(self.started.result())
        except Exception as exc:
            log.warning("call import without its helper process: %r", exc)
            return None

    def submit(self, submissions: list[Submission]) -> Future[list[PlainPrep]] | None:
        """The future RowPreps of `submissions` as plain values (`from_plain_prep` reads
        them); None when the helper has died."""
        try:
            return self.pool.submit(_helper_prepare, [prep_input(s) for s in submissions])
        except RuntimeError as exc:  # BrokenProcessPool: killed, out of memory
            log.warning("call import goes on without its helper process: %r", exc)
            return None

    def close(self, wait: bool = False) -> None:
        """Stops the helper, dropping work queued for it; with `wait`, until it has exited
        (an idle helper exits at once)."""
        self.pool.shutdown(wait=wait, cancel_futures=True)


class PreparedImport:
    """A file read and its header checked, the run stored (when kept): `run` imports it.

    Made by `prepare_import`; `run` may go on in another thread (the upload page), with
    its own sessions. `actor` is used for its id and label only.
    """

    def __init__(
        self,
        rt: Runtime,
        rows: Iterator[CallRow],
        report: ImportReport,
        actor: Actor,
        clock: Callable[[], datetime],
        *,
        helper: bool = False,
    ) -> None:
        self.rt, self.rows, self.report, self.actor, self.clock = rt, rows, report, actor, clock
        # Whether to work the batches out ahead in a helper process (a large file).
        self.helper = helper

    def run(
        self, progress: Callable[[int], None] | None = None, *, enrich: bool = True
    ) -> ImportReport:
        """Registers the rows batch by batch; `progress(n)` after each batch of n rows;
        then, with `enrich`, the new cases' suggestions and search rows (`enrich_new_cases`).
        Returns the report; database errors and interruptions propagate (the batches
        committed before stay, and the run stays unfinished)."""
        rt, report, run_id = self.rt, self.report, self.report.run_id
        policy = rt.intake_policy()
        seen: set[str] = set()
        # Started at the first batch with calls to register (a file imported again needs
        # none); None again once it has failed.
        helper: _Helper | None = None
        want_helper = self.helper and not report.dry_run
        sent: set[str] = set()  # keys looked up for the helper
        # Batches read, each with its RowPreps on their way: the helper works out the next
        # HELPER_AHEAD while one is parsed and the one before inserted.
        ahead: deque[tuple[list[CallRow], list[str], Future[list[PlainPrep]] | None]] = deque()
        batches = _batches(self.rows, rt.settings.intake.calls.batch_size)
        try:
            while True:
                try:
                    batch = next(batches, None)
                except Exception:
                    # The file cannot be read further: the batches read are registered.
                    while ahead:
                        helper = self._import(policy, seen, *ahead.popleft(), progress, helper)
                    raise
                if batch is None:
                    break
                keys: list[str] = []
                future = None
                if want_helper:
                    fresh = self._new_submissions(batch, sent)
                    if helper is None and fresh:
                        helper = _Helper.start(rt, policy)  # this batch is worked out here
                        want_helper = helper is not None
                    elif helper is not None and fresh:
                        ready = helper.ready()
                        if ready:
                            keys = [s.external_id for s in fresh]
                            future = helper.submit(fresh)
                        if ready is None or (ready and future is None):
                            helper.close()  # it could not start, or it died
                            helper, want_helper = None, False
                ahead.append((batch, keys, future))
                # With the helper, a batch waits for the next ones to be read and sent to it.
                while len(ahead) > (HELPER_AHEAD if helper is not None else 0):
                    helper = self._import(policy, seen, *ahead.popleft(), progress, helper)
                    want_helper = want_helper and helper is not None
            while ahead:
                helper = self._import(policy, seen, *ahead.popleft(), progress, helper)
        except BaseException:
            if helper is not None:
                helper.close()
            raise
        if helper is not None:
            helper.close(wait=True)
        if run_id is not None:
            with rt.sessions() as session, session.begin():
                done = self.clock()
                values: dict[str, Any] = {"finished_at": done, "updated_at": done}
                session.execute(update(CallImport).where(CallImport.id == run_id).values(values))
        if enrich and report.counts["registered"] and not report.dry_run:
            enrich_new_cases(rt, policy)
        return report

    def _new_submissions(self, batch: list[CallRow], sent: set[str]) -> list[Submission]:
        """The batch's submissions that may be new cases, for the helper: not earlier in the
        file, not stored already (one read, no transaction; `import_batch` decides)."""
        candidates = {
            row.submission.external_id: row.submission
            for row in batch
            if row.submission is not None and row.submission.external_id not in sent
        }
        with self.rt.sessions() as session:
            known = existing_keys(session, list(candidates))
        fresh = [s for key, s in candidates.items() if key not in known]
        sent.update(candidates)
        return fresh

    def _import(
        self,
        policy: IntakePolicy,
        seen: set[str],
        batch: list[CallRow],
        keys: list[str],
        future: Future[list[PlainPrep]] | None,
        progress: Callable[[int], None] | None,
        helper: _Helper | None,
    ) -> _Helper | None:
        """One batch registered and committed with the run's counts; returns the helper, or
        None once it has failed (the rest is worked out here)."""
        rt, report, run_id = self.rt, self.report, self.report.run_id
        prepared: dict[str, RowPrep] = {}
        if future is not None and helper is not None:
            try:
                prepared = dict(zip(keys, map(from_plain_prep, future.result()), strict=True))
            except Exception as exc:  # a dead helper (killed, out of memory) or its error
                log.warning("call import goes on without its helper process: %r", exc)
                helper.close()
                helper = None
        session: Session = rt.sessions()
        try:
            result = import_batch(
                session,
                batch,
                policy,
                run_id=run_id,
                file_name=report.file_name,
                actor=self.actor,
                seen=seen,
                now=self.clock(),
                dry_run=report.dry_run,
                prepared=prepared,
            )
            if run_id is not None:
                # The batch's bad rows are appended with its cases and counts: a crash
                # loses nothing that was counted, and none is written twice.
                add_to_run(session, run_id, result, now=self.clock())
            session.commit()  # a dry run's batch wrote nothing but the run's counts
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        for name in COUNTS:
            report.counts[name] += result.counts[name]
        report.errors.extend(error_record(e) for e in result.errors)
        if progress is not None:
            progress(len(batch))
        return helper


def enrich_new_cases(rt: Runtime, policy: IntakePolicy | None = None) -> int:
    """`web.cli_intake.enrich_all` with the runtime's intake policy by default: the new cases'
    suggestions and search rows; returns how many were enriched. A failure is logged and
    leaves the rest pending (the import itself is committed; the next import, mail round or
    ``minsheng supervise tick`` goes on with them)."""
    return enrich_all(rt, policy or rt.intake_policy())


def prepare_import(
    rt: Runtime,
    data: bytes,
    file_name: str,
    *,
    mapping: str | None = None,
    actor: Actor,
    dry_run: bool = False,
    keep_report: bool | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> PreparedImport:
    """Reads `data` (the bytes of a CSV or XLSX export) and checks its header.

    Raises UnknownMapping, intake.phone.FileFormatError (not a CSV/XLSX we can read) or
    intake.phone.MissingColumns (naming the required headers absent; in a workbook, when
    no sheet has them) before anything is stored. Every sheet of a workbook with the
    headers is imported; the report names the sheets read and skipped. `keep_report`
    (default: not `dry_run`) stores the run (its id in the report), whose counts and bad
    rows `run` fills in.
    """
    settings = rt.settings
    column_mapping = mapping_named(settings, mapping)
    tz = ZoneInfo(settings.app.timezone)
    parsed = parse_file(data, column_mapping, tz=tz, now=clock(), filename=file_name)
    # Without a call id, a call is keyed by the caller's main number (8765 4321 and
    # 010-8765 4321 at one time are one call).
    rows = main_number_rows(parsed.rows, settings.app.area_code)
    keep = (not dry_run) if keep_report is None else keep_report
    report = ImportReport(
        file_name=file_name, dry_run=dry_run, sheets=[s.as_dict() for s in parsed.sheets]
    )
    if keep:
        with rt.sessions() as session, session.begin():
            run = start_run(
                session,
                file_name=file_name,
                file_sha256=hashlib.sha256(data).hexdigest(),
                mapping=mapping or DEFAULT_MAPPING,
                actor=actor,
                dry_run=dry_run,
                now=clock(),
            )
            run.sheets = report.sheets or None
            report.run_id = run.id
    helper = len(data) >= PIPELINE_MIN_BYTES
    return PreparedImport(rt, rows, report, actor, clock, helper=helper)


def run_import(
    rt: Runtime,
    data: bytes,
    file_name: str,
    *,
    mapping: str | None = None,
    actor: Actor,
    dry_run: bool = False,
    keep_report: bool | None = None,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
    enrich: bool = True,
) -> ImportReport:
    """`prepare_import`, then `PreparedImport.run` in this thread: the whole import (with
    `enrich`, the new cases' enrichment too)."""
    prepared = prepare_import(
        rt,
        data,
        file_name,
        mapping=mapping,
        actor=actor,
        dry_run=dry_run,
        keep_report=keep_report,
        clock=clock,
    )
    return prepared.run(progress, enrich=enrich)
