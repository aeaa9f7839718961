"""The operators' upload page for call-centre exports (/board/calls/import).

An operator (or a supervisor, an administrator) uploads a CSV or XLSX export, picks the
column mapping and may tick "dry run"; the import runs in the request (`run_import`, batch
by batch, each committed on its own) and the browser is sent to the run's page: counts, the
bad rows with their row numbers and reasons, and the report as a CSV download (UTF-8 with a
BOM for Excel, cells made formula-safe as the case export does). A file that cannot be
read, lacks required columns or is too large is refused on the form, with nothing stored.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf.file import FileField
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import BooleanField, SelectField

from intake.normalise import clean_filename
from intake.phone import FileFormatError, MissingColumns
from triage.access import Action
from triage.call_imports import CallImport, count_errors, stored_errors
from triage.export import csv_cell
from triage.models import utcnow
from web import db, runtime
from web.auth import requires
from web.call_import_run import DEFAULT_MAPPING, PreparedImport, mappings, prepare_import
from web.forms import Form
from web.i18n import join_list

bp = Blueprint("call_imports", __name__, url_prefix="/board/calls/import")
log = logging.getLogger(__name__)

RECENT = 20  # runs listed under the form
SHOWN_ERRORS = 500  # bad rows listed on the page; the download has them all

# intake.phone's error codes in the user's language (its messages are English).
ROW_MESSAGES = {
    "required": _l("Empty: this column is required."),
    "bad_phone": _l("Not a phone number: %(value)s"),
    "bad_time": _l("Not a date and time: %(value)s"),
    "no_time_of_day": _l(
        "%(value)s is a date without the time of the call: export the call time with its hour"
        " and minute, or map the column that holds the time (time_of_day)."
    ),
    "bad_time_of_day": _l("Not a time of day: %(value)s"),
    "future_time": _l("A call time in the future: %(value)s"),
    "bad_duration": _l("Not a call length (seconds, mm:ss or hh:mm:ss): %(value)s"),
    "bad_kind": _l("Unknown kind %(value)s: use 投诉, 建议, 咨询 or 表扬."),
    "bad_kind_of": _l("Unknown kind %(value)s: use %(kinds)s."),
    "withheld_without_id": _l(
        "Number withheld (%(value)s) and no call id: the call cannot be told apart from others."
    ),
    "too_long": _l("Longer than %(max)s characters."),
    "lost_digits": _l(
        "Excel shortened this number to %(value)s: format the column as text and export again."
    ),
    "unclosed_quote": _l(
        "A quotation mark in this cell is not closed: the next %(lines)s lines, calls of their"
        " own, were read into it. Close or remove the quote and import the file again."
    ),
}
FILE_MESSAGES = {
    "empty": _l("The file is empty."),
    "xls": _l("An old Excel .xls file: save it as .xlsx or .csv and upload that."),
    "not_table": _l("Not a CSV or XLSX file."),
    "bad_xlsx": _l("The XLSX file cannot be read; save it again from Excel and retry."),
    "no_header": _l("The file has no header row."),
}
ALLOWED_SUFFIXES = (".csv", ".xlsx", ".txt")
# Why a sheet of a workbook was not imported (intake.phone.SheetReport.reason).
SHEET_REASONS = {
    "hidden": _l("hidden sheet"),
    "empty": _l("empty sheet"),
    "no_columns": _l("no columns %(columns)s"),
}


def sheet_lines(run: CallImport) -> list[dict[str, Any]]:
    """A workbook's sheets as the run's page and report show them: name, read, and why a
    skipped one was skipped, in the user's language ([] for a CSV)."""
    lines = []
    for sheet in run.sheets or []:
        why = ""
        if not sheet.get("read"):
            reason = str(sheet.get("reason", ""))
            template = SHEET_REASONS.get(reason)
            missing = join_list(sheet.get("missing") or [])
            why = str(template) % {"columns": missing} if template else reason
        lines.append(
            {"name": str(sheet.get("name", "")), "read": bool(sheet.get("read")), "why": why}
        )
    return lines


class CallImportForm(Form):
    """The upload form; the mapping choices are the configured ones."""

    file = FileField(_l("Call-centre export (CSV or XLSX)"))
    mapping = SelectField(_l("Column mapping"), default=DEFAULT_MAPPING)
    dry_run = BooleanField(_l("Dry run: check and count, register nothing"))


def row_message(error: dict[str, Any]) -> str:
    """A stored row error in the user's language (its English message for unknown codes)."""
    template = ROW_MESSAGES.get(str(error.get("code")))
    if template is None:
        return str(error.get("message", ""))
    try:
        return str(template) % dict(error.get("params") or {})
    except (KeyError, TypeError, ValueError):
        return str(error.get("message", ""))


def _limit_bytes() -> int:
    return int(runtime().settings.intake.calls.max_upload_mb * 1024 * 1024)


def _form() -> CallImportForm:
    form = CallImportForm()
    names = list(mappings(runtime().settings))
    form.mapping.choices = [
        (n, _("Default (工单号, 来电号码, 来电时间 …)") if n == DEFAULT_MAPPING else n)
        for n in names
    ]
    return form


def _recent() -> list[CallImport]:
    # Not their bad rows: a run's list of them may be megabytes, and only counts are shown.
    query = select(CallImport)
    return list(db().scalars(query.order_by(CallImport.id.desc()).limit(RECENT)).all())


def _page(form: CallImportForm, problem: str = "", status: int = 200) -> tuple[str, int]:
    return render_template(
        "board/call_import.html",
        form=form,
        problem=problem,
        recent=_recent(),
        limit_mb=runtime().settings.intake.calls.max_upload_mb,
        run=None,
        now=utcnow(),
    ), status


@bp.route("", methods=["GET", "POST"])
@requires(Action.LOG_CALL)
def upload() -> Any:
    limit = _limit_bytes()
    # The form's fields and the file's multipart overhead on top of the file itself.
    request.max_content_length = limit + 256 * 1024
    too_large = _too_large_message()
    try:
        form = _form()
        submitted = form.validate_on_submit()
    except RequestEntityTooLarge:
        return _page(_form_without_data(), too_large, 413)
    if not submitted:
        return _page(form, status=400 if form.is_submitted() else 200)
    upload = form.file.data
    if upload is None or not getattr(upload, "filename", ""):
        return _page(form, _("Choose a file to import."), 400)
    name = clean_filename(upload.filename, "calls.csv")  # no folders or control characters
    if not name.lower().endswith(ALLOWED_SUFFIXES):
        message = _("Only CSV and XLSX files can be imported (not %(name)s).", name=name)
        return _page(form, message, 400)
    data = upload.read(limit + 1)
    if len(data) > limit:
        return _page(form, too_large, 413)
    user = current_user._get_current_object()  # its id and label, loaded with it
    try:
        prepared = prepare_import(
            runtime(),
            data,
            name,
            mapping=form.mapping.data,
            actor=user,
            dry_run=bool(form.dry_run.data),
            keep_report=True,
        )
    except MissingColumns as exc:
        return _page(
            form,
            _(
                "Required columns are missing: %(columns)s. Nothing was imported.",
                columns=join_list(exc.missing),
            ),
            400,
        )
    except FileFormatError as exc:
        return _page(form, str(FILE_MESSAGES.get(exc.code, _("The file cannot be read."))), 400)
    report = prepared.report
    # A large export takes minutes, longer than a web worker may hold a request: it goes
    # on in a thread, batch by batch, and the run's page follows it.
    threading.Thread(
        target=_run_logged, args=(prepared,), name=f"call-import-{report.run_id}", daemon=True
    ).start()
    return redirect(url_for("call_imports.show", import_id=report.run_id))


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> tuple[str, int]:
    """Refused before the view (the CSRF check reads the form first): the same message."""
    return _page(_form_without_data(), _too_large_message(), 413)


def _too_large_message() -> str:
    mb = f"{runtime().settings.intake.calls.max_upload_mb:g}"
    return _("The file is larger than %(mb)s MB: split the export and upload the parts.", mb=mb)


def _run_logged(prepared: PreparedImport) -> None:
    try:
        prepared.run()
    except Exception:
        # The committed batches stay; the run shows as interrupted once silent.
        log.exception("call import %s failed", prepared.report.run_id)


def _form_without_data() -> CallImportForm:
    # The request body was refused: build the form from nothing, not from it.
    form = CallImportForm(formdata=None)
    form.mapping.choices = [(n, n) for n in mappings(runtime().settings)]
    return form


def _run(import_id: int) -> CallImport:
    run = db().get(CallImport, import_id)
    if run is None:
        abort(404)
    return run


@bp.route("/<int:import_id>")
@requires(Action.LOG_CALL)
def show(import_id: int) -> str:
    run = _run(import_id)
    shown = stored_errors(db(), run.id, limit=SHOWN_ERRORS)
    errors = [{**e, "text": row_message(e)} for e in shown]
    return render_template(
        "board/call_import.html",
        run=run,
        sheets=sheet_lines(run),
        by_sheet=any(e.get("sheet") for e in errors),
        running=run.running(utcnow()),
        errors=errors,
        more_errors=max(0, count_errors(db(), run.id) - SHOWN_ERRORS),
        form=None,
        recent=[],
        problem="",
    )


@bp.route("/<int:import_id>/report.csv")
@requires(Action.LOG_CALL)
def report(import_id: int) -> Response:
    """The bad rows as CSV (row, column, problem), with the counts above them."""
    run = _run(import_id)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_cell(_("File")), csv_cell(run.file_name)])
    for label, value in (
        (_("Rows"), run.rows),
        (_("Registered"), run.registered),
        (_("Duplicates"), run.duplicates),
        (_("Rejected"), run.rejected),
    ):
        writer.writerow([csv_cell(label), value])
    for sheet in sheet_lines(run):
        state = _("imported") if sheet["read"] else _("not imported: %(why)s", why=sheet["why"])
        writer.writerow([csv_cell(_("Sheet")), csv_cell(sheet["name"]), csv_cell(state)])
    writer.writerow([])
    errors = stored_errors(db(), run.id)
    by_sheet = any(e.get("sheet") for e in errors)
    writer.writerow([*([_("Sheet")] if by_sheet else []), _("Row"), _("Column"), _("Problem")])
    for e in errors:
        where = [csv_cell(e.get("sheet", ""))] if by_sheet else []
        writer.writerow(
            [*where, e.get("row"), csv_cell(e.get("column", "")), csv_cell(row_message(e))]
        )
    filename = f"call-import-{run.id}-report.csv"
    return Response(
        out.getvalue().encode("utf-8"),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
