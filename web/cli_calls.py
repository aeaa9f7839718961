"""`minsheng intake calls FILE`: import a call-centre export (CSV or XLSX) as cases.

Each good row becomes a case at its call time; each bad row is reported with its row number
as Excel shows it (header = row 1), its column and what is wrong; the same call again (in
this file, an earlier import, or an overlapping export) is a duplicate. A progress bar goes
to stderr (not with ``--json``). ``--json`` prints one object: rows, registered,
duplicates, rejected, dry_run, import_id and errors [{row, column, message}]. Exits 1 when
the file cannot be read or lacks required columns (nothing is imported then); bad rows do
not change the exit status. After the last batch the new cases get their similar-case
suggestions and search rows (`web.call_import_run.enrich_new_cases`) before the command
exits.
"""

from __future__ import annotations

import getpass
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import click

from intake.phone import FileFormatError, MissingColumns, SheetReport, check_unpacked_size
from web.call_import_run import ImportReport, UnknownMapping, enrich_new_cases, run_import
from web.cli_common import config_option, settings
from web.runtime import Runtime


def _actor() -> str:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "?"
    return f"command line ({who})"


_ROW_TAG = re.compile(rb"<(?:\w+:)?row[\s>/]")


def _count_rows(data: bytes) -> int | None:
    """A quick upper bound for the progress bar: lines of a CSV; of an XLSX file, the
    rows its visible sheets hold, counted in their XML (not openpyxl's ``max_row``: a
    sheet with a cell styled at its far corner gives 1,048,576). None (no total shown)
    when the file cannot be read so; the import itself reports the problem."""
    try:
        if data[:4] == b"PK\x03\x04":
            # The same check as the import's, before openpyxl reads the shared strings.
            check_unpacked_size(data)
            import openpyxl

            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
            try:
                paths = [
                    str(s._worksheet_path).lstrip("/")
                    for s in book.worksheets
                    if s.sheet_state == "visible"
                ]
            finally:
                book.close()
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return sum(_rows_in(archive, path) for path in paths) or None
        return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    except Exception:
        return None


def _rows_in(archive: zipfile.ZipFile, path: str) -> int:
    """How many row elements a sheet's XML holds, read in 1 MB pieces (a row tag cut
    between two pieces is counted once: the 4 bytes kept are shorter than a tag)."""
    count, tail = 0, b""
    with archive.open(path) as fh:
        while chunk := fh.read(1 << 20):
            buffer = tail + chunk
            count += len(_ROW_TAG.findall(buffer))
            tail = buffer[-4:]
    return count


@click.command("calls")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mapping", default=None, help="Column mapping of [intake.calls.mappings].")
@click.option("--dry-run", is_flag=True, help="Check and count; register nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def calls(file: Path, mapping: str | None, dry_run: bool, as_json: bool) -> None:
    """Import a call-centre export (CSV or XLSX) as cases, once per call."""
    rt = Runtime.build(settings())
    data = file.read_bytes()
    total = None if as_json else _count_rows(data)
    bar = click.progressbar(
        length=total or 0,
        label="rows",
        file=sys.stderr,
        show_pos=True,
        show_eta=True,
    )
    try:
        if as_json:
            report = run_import(
                rt, data, file.name, mapping=mapping, actor=_actor(), dry_run=dry_run, enrich=False
            )
        else:
            with bar:
                report = run_import(
                    rt,
                    data,
                    file.name,
                    mapping=mapping,
                    actor=_actor(),
                    dry_run=dry_run,
                    progress=bar.update,
                    enrich=False,
                )
    except UnknownMapping as exc:
        raise click.ClickException(str(exc)) from exc
    except MissingColumns as exc:
        raise click.ClickException(
            f"{file.name}: missing required columns: {', '.join(exc.missing)}; nothing imported"
        ) from exc
    except FileFormatError as exc:
        raise click.ClickException(f"{file.name}: {exc}; nothing imported") from exc
    else:
        # The cases are committed: their suggestions and search rows come next, apart (a
        # failure there leaves them pending for the next run; the import stands).
        if report.counts["registered"] and not dry_run:
            if not as_json:
                click.echo(
                    f"similar cases and search rows of {report.counts['registered']} new cases…",
                    err=True,
                )
            enrich_new_cases(rt)
    finally:
        rt.engine.dispose()
    _print(report, as_json)


def _print(report: ImportReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False))
        return
    c = report.counts
    verb = "would register" if report.dry_run else "registered"
    click.echo(
        f"{report.file_name}: {c['rows']} rows: {verb} {c['registered']}, "
        f"duplicates {c['duplicates']}, rejected {c['rejected']}"
    )
    for s in report.sheets:  # an XLSX workbook: which sheets were imported, which not
        click.echo(f"  {SheetReport(**{**s, 'missing': tuple(s['missing'])}).text()}")
    for e in report.errors:
        sheet = f"sheet {e['sheet']!r} " if e.get("sheet") else ""
        column = f" [{e['column']}]" if e["column"] else ""
        click.echo(f"  {sheet}row {e['row']}{column}: {e['message']}")
