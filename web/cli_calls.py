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
import json
import sys
from pathlib import Path

import click

from intake.phone import FileFormatError, MissingColumns, SheetReport
from web.call_import_run import ImportReport, UnknownMapping, enrich_new_cases, run_import
from web.cli_common import config_option, settings
from web.runtime import Runtime


def _actor() -> str:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "?"
    return f"command line ({who})"


def _count_rows(path: Path) -> int | None:
    """A quick upper bound for the progress bar: lines of a CSV, rows of an XLSX file's
    visible sheets."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
            if head == b"PK\x03\x04":
                import openpyxl

                book = openpyxl.load_workbook(path, read_only=True)
                try:
                    visible = [s for s in book.worksheets if s.sheet_state == "visible"]
                    return sum(int(s.max_row or 0) for s in visible) or None
                finally:
                    book.close()
            fh.seek(0)
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except Exception:
        return None  # the bar then shows no total; the import itself reports the problem


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
    total = None if as_json else _count_rows(file)
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
