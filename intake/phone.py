"""Phone calls → Submissions: the rows of a call centre's export, with per-row errors.

A call-centre export is a table, one call a row: CSV (UTF-8, UTF-8 with a byte-order mark,
or GBK/GB18030 as Excel on Chinese Windows saves it; the encoding and the delimiter are
detected) or XLSX (read with openpyxl). `read_table` turns the file's bytes into rows of
cells; `bind_columns` finds the columns a `ColumnMapping` names in the header row (raising
`MissingColumns` naming every required one that is absent); `parse_row` turns one row into a
`CallRow`: a Submission, or the list of what is wrong with the row. `parse_file` does it
all for a file: in a workbook, for every visible sheet that has the mapped headers, saying
which sheets it read and which it skipped (`SheetReport`).

A call time is a date with its time of day; a date alone (an XLSX date cell formatted
without the time, ``2026/11/3``, an Excel date number without a fraction) is a bad row, never
midnight: a wrong call time shifts the deadlines. A mapping whose ``time_of_day`` names a
column of its own takes the time from there.

Row numbers are those the user sees in Excel: the header is row 1, the first call row 2; a
cell holding a line break does not add a row (a CSV record counts once, however many lines).

The idempotency key (the Submission's external id, channel PHONE as the operators' desk
uses) is the call id (工单号) as the phone system gave it, so a call logged at the desk with
its call id and then found in the export is one case; a row without a call id is keyed by
the caller's number and the call time (``call:13800138000@2026-11-30T06:05:00Z``).

Messages are English with named parameters (`RowError.params`); the web layer translates
them by `RowError.code`.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, TypeVar

from intake.normalise import (
    PhoneError,
    clean_line,
    clean_text,
    nfkc,
    normalise_clean_phone,
    normalise_phone,
)
from intake.submission import Channel, Contact, Kind, Submission

_T = TypeVar("_T")

__all__ = [
    "BODY_MAX",
    "CALL_CHANNEL",
    "DEFAULT_KINDS",
    "BoundColumns",
    "CallRow",
    "CellError",
    "ColumnMapping",
    "FileFormatError",
    "MissingColumns",
    "ParsedFile",
    "RowError",
    "SheetReport",
    "Table",
    "apostrophe_text",
    "bind_columns",
    "call_key",
    "check_unpacked_size",
    "parse_call_date",
    "parse_call_time",
    "parse_duration",
    "parse_file",
    "parse_kind",
    "parse_row",
    "parse_table",
    "parse_time_of_day",
    "read_table",
]

CALL_CHANNEL = Channel.PHONE
BODY_MAX = 5000  # characters, as the operators' desk and the web form allow
SUBJECT_MAX = 40  # characters of the body's first line shown as the case's subject
PLACE_MAX = 200  # characters of the address, as the case's place column holds
# A call time this far ahead of the clock is a typo (or a wrong time zone), not a call.
FUTURE_TOLERANCE = timedelta(minutes=10)
EARLIEST_CALL = datetime(1990, 1, 1)
# Excel's day 0 (the 1900 date system, with its phantom 29 Feb 1900 folded in).
EXCEL_EPOCH = datetime(1899, 12, 30)

DEFAULT_KINDS: Mapping[str, Kind] = {
    "投诉": Kind.COMPLAINT,
    "举报": Kind.COMPLAINT,
    "建议": Kind.SUGGESTION,
    "意见建议": Kind.SUGGESTION,
    "咨询": Kind.INQUIRY,
    "求助": Kind.INQUIRY,
    "表扬": Kind.PRAISE,
    "感谢": Kind.PRAISE,
    **{k.value: k for k in Kind},
}


class FileFormatError(ValueError):
    """The file is not a table this module reads (e.g. an old .xls, a PDF, an empty file);
    ``code`` names the problem for translation: ``empty``, ``xls``, ``not_table``,
    ``bad_xlsx``, ``no_header``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class MissingColumns(ValueError):
    """Required columns are not in the header row: ``missing`` holds their header names."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__("missing required columns: " + ", ".join(missing))
        self.missing = tuple(missing)


@dataclass(frozen=True)
class ColumnMapping:
    """Which header names the export uses for each field. An optional field set to ``""``
    is not read. ``kinds`` adds values of the kind column to `DEFAULT_KINDS`."""

    call_id: str = "工单号"
    phone: str = "来电号码"
    called_at: str = "来电时间"
    duration: str = "通话时长"
    body: str = "诉求内容"
    operator: str = "话务员"
    name: str = "姓名"
    address: str = "地址"
    kind: str = "诉求类型"
    kinds: Mapping[str, str] = field(default_factory=dict)
    # The time of day, when the export gives it in a column of its own and called_at holds
    # the date only (a date column then needs no time).
    time_of_day: str = ""

    REQUIRED = ("call_id", "phone", "called_at", "duration", "body", "operator")
    OPTIONAL = ("name", "address", "kind", "time_of_day")

    def header(self, name: str) -> str:
        return str(getattr(self, name))


@dataclass(frozen=True)
class RowError:
    """What is wrong with one row: its row number (Excel's, header = 1), the column's header
    name ("" for the row as a whole), a code, an English message and its parameters; and
    the XLSX sheet's name when the calls came from more than one sheet ("" otherwise)."""

    row: int
    column: str
    code: str
    message: str
    params: Mapping[str, Any] = field(default_factory=dict)
    sheet: str = ""

    def text(self) -> str:
        return self.message % dict(self.params) if self.params else self.message


@dataclass(frozen=True)
class CallRow:
    """One row of the export read: a Submission and what goes beside it, or errors."""

    row: int
    submission: Submission | None
    errors: tuple[RowError, ...] = ()
    call_id: str = ""
    duration_seconds: int | None = None
    operator: str = ""
    # The caller withheld the number (`WITHHELD`): a case without a caller (no caller key,
    # no notices), told apart by its call id.
    anonymous: bool = False

    @property
    def ok(self) -> bool:
        return self.submission is not None


@dataclass(frozen=True)
class Table:
    """A file's header row (cells as text, cleaned) and its other rows as ``(row number,
    cells)``; the rows are read lazily for XLSX (openpyxl's read-only mode)."""

    header: tuple[str, ...]
    header_row: int
    rows: Iterator[tuple[int, tuple[Any, ...]]]
    kind: str  # "csv" or "xlsx"
    encoding: str = ""
    sheet: str = ""  # the XLSX sheet's name
    # CSV records with a quote never closed: row number → (index of the cell, how many
    # records it swallowed); filled as `rows` is read (see _csv_rows).
    runaway: dict[int, tuple[int, int]] = field(default_factory=dict)


# -- reading the file --------------------------------------------------------------------


def read_table(data: bytes, filename: str = "") -> Table:
    """The bytes of a CSV or XLSX file → a `Table`. The type is told by the content (an XLSX
    is a zip), not by the file name; raises FileFormatError for anything else."""
    if not data.strip():
        raise FileFormatError("empty", "the file is empty")
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise FileFormatError(
            "xls", "an old Excel .xls file: save it as .xlsx or .csv and import that"
        )
    if data[:4] == b"PK\x03\x04":
        check_unpacked_size(data)
        return _read_xlsx(data)
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if data[:5] == b"%PDF-" or (b"\x00" in data[:4096] and not utf16):
        raise FileFormatError("not_table", "not a CSV or XLSX file")
    return _read_csv(data)


# An XLSX unpacks to some 5-15 times its size; a zip bomb (a few MB unpacking to many GB,
# which openpyxl would read: shared strings wholly into memory) is refused before that.
MAX_UNPACKED_RATIO = 30
MAX_UNPACKED_FLOOR = 50 * 1024 * 1024  # bytes: small files may compress better


# The parts openpyxl reads whole into memory even in read-only mode (the sheets are
# streamed): the shared strings (every text cell, each a Python string: some 6 times the
# XML's size in memory) and the styles. A bomb padded with incompressible bytes passes the
# ratio above (4.4 MB unpacking to a 102 MB sharedStrings.xml took 616 MB and 57 s of CPU).
# A real export's shared strings are its distinct texts: Chinese text compresses some 3-5
# times, so a 20 MB upload's strings stay well under MAX_STRINGS_BYTES; strings that
# compress more than MAX_STRINGS_RATIO times are repeated padding once past
# MAX_STRINGS_DENSE_FLOOR.
MAX_STRINGS_BYTES = 64 * 1024 * 1024
MAX_STRINGS_DENSE_FLOOR = 16 * 1024 * 1024
MAX_STRINGS_RATIO = 12
MAX_STYLES_BYTES = 8 * 1024 * 1024
MAX_CONTENT_TYPES_BYTES = 1024 * 1024
_CONTENT_TYPE_PART = re.compile(
    rb"""<Override\b[^>]*?PartName\s*=\s*["']/?([^"']+)["'][^>]*?ContentType\s*=\s*["']"""
    rb"""[^"']*?\.(sharedStrings|styles)\+xml["']"""
    rb"""|<Override\b[^>]*?ContentType\s*=\s*["'][^"']*?\.(sharedStrings|styles)\+xml["']"""
    rb"""[^>]*?PartName\s*=\s*["']/?([^"']+)["']""",
    re.IGNORECASE,
)


def _whole_parts(archive: zipfile.ZipFile) -> dict[str, str]:
    """The members openpyxl reads whole, by name (lower case): "sharedStrings" or
    "styles", as [Content_Types].xml names them (the parts openpyxl looks up) and by their
    usual names."""
    found: dict[str, str] = {}
    for info in archive.infolist():
        base = info.filename.rsplit("/", 1)[-1].lower()
        if base == "sharedstrings.xml":
            found[info.filename.lower()] = "sharedStrings"
        elif base == "styles.xml":
            found[info.filename.lower()] = "styles"
    try:
        info = archive.getinfo("[Content_Types].xml")
    except KeyError:
        return found
    if info.file_size > MAX_CONTENT_TYPES_BYTES:
        raise FileFormatError(
            "bad_xlsx", f"not a readable XLSX file: [Content_Types].xml is {info.file_size} bytes"
        )
    for m in _CONTENT_TYPE_PART.finditer(archive.read(info)):
        name, kind = (m[1], m[2]) if m[1] else (m[4], m[3])
        kind = "sharedStrings" if kind.lower() == b"sharedstrings" else "styles"
        found[name.decode("utf-8", "replace").lower()] = kind
    return found


def check_unpacked_size(data: bytes) -> None:
    """Raises FileFormatError ``bad_xlsx`` when the zip's members would unpack to more than
    MAX_UNPACKED_RATIO times its size (at least MAX_UNPACKED_FLOOR bytes), or when the
    parts openpyxl reads whole would: shared strings over MAX_STRINGS_BYTES (or over
    MAX_STRINGS_DENSE_FLOOR and compressed more than MAX_STRINGS_RATIO times), styles over
    MAX_STYLES_BYTES. The sizes are the zip's own: `zipfile` never unpacks a member beyond
    its stated size, and nothing is unpacked here but [Content_Types].xml (at most
    MAX_CONTENT_TYPES_BYTES)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            unpacked = sum(info.file_size for info in members)
            whole = _whole_parts(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileFormatError("bad_xlsx", f"not a readable XLSX file: {exc}") from exc
    if unpacked > max(MAX_UNPACKED_FLOOR, MAX_UNPACKED_RATIO * len(data)):
        raise FileFormatError(
            "bad_xlsx", f"not a readable XLSX file: it would unpack to {unpacked} bytes"
        )
    for info in members:
        kind = whole.get(info.filename.lower())
        size = info.file_size
        if kind == "styles" and size > MAX_STYLES_BYTES:
            raise FileFormatError(
                "bad_xlsx",
                f"not a readable XLSX file: its styles ({info.filename}) would unpack to "
                f"{size} bytes, more than {MAX_STYLES_BYTES}",
            )
        dense = size > MAX_STRINGS_DENSE_FLOOR and size > MAX_STRINGS_RATIO * max(
            1, info.compress_size
        )
        if kind == "sharedStrings" and (size > MAX_STRINGS_BYTES or dense):
            raise FileFormatError(
                "bad_xlsx",
                f"not a readable XLSX file: its shared strings ({info.filename}) would unpack "
                f"to {size} bytes from {info.compress_size}"
                + (
                    ""
                    if dense and size <= MAX_STRINGS_BYTES
                    else f", more than {MAX_STRINGS_BYTES}"
                ),
            )


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # GB18030 is GBK's superset: what Excel on Chinese Windows writes as "CSV".
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), "utf-8 (with undecodable bytes)"


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv(data: bytes) -> Table:
    text, encoding = _decode(data)
    delimiter = _delimiter(text)
    # The csv module refuses a field over 131,072 characters with an error mid-file (after
    # batches were committed); a cell too long is a bad row instead (its column's limit).
    # The limit is the process's: it is only ever raised.
    if csv.field_size_limit() <= len(text):
        csv.field_size_limit(len(text) + 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    runaway: dict[int, tuple[int, int]] = {}
    rows = _csv_rows(reader, delimiter, runaway)
    if '="' in text:
        rows = ((n, tuple(map(excel_text, cells))) for n, cells in rows)
    table = _with_header(rows, "csv", encoding)
    return replace(table, runaway=runaway)


def excel_text(cell: str) -> str:
    """A cell in Excel's text formula idiom, ``="13800138000"`` (call-centre systems write
    numbers and ids so in CSV for Excel to keep them as text: leading zeros, 11+ digits) →
    its text, ``13800138000`` (``""`` inside is one quote); any other cell as it is."""
    if len(cell) >= 3 and cell[:2] == '="' and cell[-1] == '"':
        inner = cell[2:-1]
        if '"' not in inner.replace('""', ""):
            return inner.replace('""', '"')
    return cell


# The columns whose cells are ids, numbers, times and durations: there a leading apostrophe
# is Excel's text marker (`apostrophe_text`). Free text (诉求内容, 姓名, 地址) is kept as it is.
TYPED_COLUMNS = frozenset({"call_id", "phone", "called_at", "duration", "time_of_day", "operator"})


def apostrophe_text(value: Any) -> Any:
    """A cell in Excel's other text idiom, ``'13800138000`` or ``'GD0001`` (a leading
    apostrophe keeps an id or a number as text: leading zeros, 11+ digits) → its text,
    ``13800138000``; any other value as it is. For the typed columns only
    (`TYPED_COLUMNS`): in free text an apostrophe is the citizen's."""
    if isinstance(value, str) and len(value) > 1 and value[0] == "'":
        return value[1:]
    return value


def _csv_rows(
    reader: Any, delimiter: str, runaway: dict[int, tuple[int, int]]
) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """The records of a `csv.reader` as ``(row number, cells)``, noting in `runaway` each
    record spanning several lines whose cell holds lines that are records of their own
    (see _swallowed). `width`: the most cells a record had so far (a title line above the
    header has one)."""
    width = line = 0
    for n, record in enumerate(reader, start=1):
        cells = tuple(record)
        if reader.line_num - line > 1 and width:
            found = _swallowed(cells, delimiter, width)
            if found is not None:
                runaway[n] = found
        line = reader.line_num
        width = max(width, len(cells))
        yield n, cells


def _swallowed(cells: Sequence[str], delimiter: str, width: int) -> tuple[int, int] | None:
    """A cell opening with a quote that is never closed reads the next records into itself,
    up to the file's next quote: ``(index of the cell, records in it)`` when a line after
    its first has (nearly) as many fields as the header, None otherwise. A cell's own line
    breaks with a comma or two are not records."""
    least = max(3, width - 1)
    for i, cell in enumerate(cells):
        if "\n" not in cell and "\r" not in cell:
            continue
        lines = cell.splitlines()[1:]
        records = sum(1 for line in lines if len(line.split(delimiter)) >= least)
        if records:
            return i, records
    return None


def _open_workbook(data: bytes) -> Any:
    import openpyxl  # only for XLSX: the CSV path needs nothing but the standard library

    try:
        return openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise FileFormatError("bad_xlsx", f"not a readable XLSX file: {exc}") from exc


def _visible(sheet: Any) -> bool:
    return getattr(sheet, "sheet_state", "visible") == "visible"


def _read_xlsx(data: bytes) -> Table:
    """The first visible sheet (exports often keep a hidden sheet of codes or notes in
    front of the calls); `parse_file` reads every sheet that has the calls."""
    book = _open_workbook(data)
    visible = [s for s in book.worksheets if _visible(s)]
    sheet = (visible or book.worksheets or [None])[0]
    if sheet is None:
        book.close()
        raise FileFormatError("bad_xlsx", "the workbook has no sheet")

    def rows() -> Iterator[tuple[int, tuple[Any, ...]]]:
        try:
            yield from _xlsx_rows(sheet)
        finally:
            book.close()

    return _with_header(rows(), "xlsx", sheet=str(sheet.title))


# Parts of an Excel number format that are not date or time codes: quoted text, escaped
# characters, [colours], [$-804] locales, [DBNum1].
_FORMAT_LITERALS = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]')


def _shows_time(number_format: str) -> bool:
    """True when an Excel date format shows the time of day (hours, seconds, AM/PM,
    上午/下午); ``yyyy-mm-dd`` and ``yyyy"年"m"月"d"日"`` do not. ``m`` alone is taken as
    the month."""
    codes = _FORMAT_LITERALS.sub("", number_format).lower()
    return any(c in codes for c in ("h", "s", "am/pm", "a/p", "上午", "下午"))


def _xlsx_rows(sheet: Any) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """The sheet's rows as ``(row number, values)``. A date cell whose format shows no time
    of day is a `date`, not a datetime at midnight: as a call time it lacks the time (it
    is refused, or joined to the mapping's time column), and is never taken as 00:00."""
    from openpyxl.cell.read_only import EMPTY_CELL

    date_only: dict[str, bool] = {}
    absent: tuple[Any, ...] | None = None
    for n, cells in enumerate(sheet.iter_rows(min_row=1), start=1):
        # A row absent from the sheet's file is one tuple of empty cells openpyxl gives again
        # and again, as wide as the sheet: up to a cell styled at the far corner, a million
        # rows of 16,384 cells. It is skipped at once (absent rows are blank).
        if cells is absent:
            continue
        if cells and cells[0] is EMPTY_CELL and all(c is EMPTY_CELL for c in cells):
            absent = cells
            continue
        values = tuple(c.value for c in cells)
        if any(type(v) is datetime and v.time() == time() for v in values):
            values = tuple(_date_cell(c, date_only) for c in cells)
        yield n, values


def _date_cell(cell: Any, date_only: dict[str, bool]) -> Any:
    value = cell.value
    if type(value) is not datetime or value.time() != time():
        return value
    number_format = str(getattr(cell, "number_format", "") or "")
    if number_format not in date_only:
        date_only[number_format] = not _shows_time(number_format)
    return value.date() if date_only[number_format] else value


def _blank(cells: Iterable[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not clean_line(c)) for c in cells)


def _with_header(
    numbered: Iterator[tuple[int, tuple[Any, ...]]],
    kind: str,
    encoding: str = "",
    sheet: str = "",
) -> Table:
    """The first non-blank row is the header."""
    for n, cells in numbered:
        if not _blank(cells):
            header = tuple(clean_line(str(c)) if c is not None else "" for c in cells)
            return Table(header, n, numbered, kind, encoding, sheet)
    raise FileFormatError("no_header", "no header row: the file has no non-empty row")


# -- columns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoundColumns:
    """Field name → index of its column in the header (absent optional fields left out)."""

    index: Mapping[str, int]
    headers: Mapping[str, str]


# Around a header's name, not part of it: （工单号）, 【来电号码】, 来电时间*, 话务员：
_HEADER_DECORATION = "()（）[]{}<>《》【】〔〕「」『』*＊:："


def _header_key(name: str) -> str:
    return "".join(nfkc(name).split()).strip(_HEADER_DECORATION).casefold()


def bind_columns(header: Sequence[str], mapping: ColumnMapping) -> BoundColumns:
    """Finds the mapping's columns in `header` (white space, full-width forms and case do
    not matter); raises MissingColumns listing every required header not found. Other
    columns are ignored."""
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        positions.setdefault(_header_key(name), i)
    index: dict[str, int] = {}
    missing: list[str] = []
    for name in ColumnMapping.REQUIRED + ColumnMapping.OPTIONAL:
        wanted = mapping.header(name)
        if not wanted:
            continue
        at = positions.get(_header_key(wanted))
        if at is not None:
            index[name] = at
        elif name in ColumnMapping.REQUIRED:
            missing.append(wanted)
    if missing:
        raise MissingColumns(missing)
    return BoundColumns(index, {n: mapping.header(n) for n in index})


# -- cells ---------------------------------------------------------------------------------


class CellError(ValueError):
    """One cell's problem: a code for translation, an English message and its parameters."""

    def __init__(self, code: str, message: str, **params: Any) -> None:
        super().__init__(message % params if params else message)
        self.code, self.message, self.params = code, message, params


_TEXT_TIMES = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d %H:%M",
    "%Y%m%d %H:%M:%S",
    "%Y%m%d%H%M%S",
    "%Y%m%d%H%M",
)
# A date as Excel, WPS and call centres write it: 2026-11-03, 2026/11/3, 2026.11.03,
# 2026年11月3日; then, after a space, "T", or nothing (年月日 forms), the time of day.
_DATE_PART = re.compile(
    r"^(\d{4})\s*(?:[-/.]|年)\s*(\d{1,2})\s*(?:[-/.]|月)\s*(\d{1,2})\s*日?(?:\s*T\s*|\s*,\s*|\s*)"
)
# A time of day: 15:05, 15:05:07(.123), 3:05 PM, 下午 3:05:00, 上午9:05, 15时05分(30秒),
# 下午3点, 3点半; Chinese (上午/下午 …) or English (AM/PM) half-day marks before or after.
_HALF_DAY = r"上午|下午|凌晨|早上|早晨|中午|晚上|傍晚|[AP]\.?M\.?"
_TIME_PART = re.compile(
    rf"^(?P<before>{_HALF_DAY})?\s*(?P<h>\d{{1,2}})\s*"
    r"(?:[:：]\s*(?P<m>\d{1,2})(?:\s*[:：]\s*(?P<s>\d{1,2})(?:[.,]\d+)?)?"
    r"|[时點点]\s*(?:(?P<half>半)|(?P<cm>\d{1,2})\s*分?(?:\s*(?P<cs>\d{1,2})\s*秒)?)?)"
    rf"\s*(?P<after>{_HALF_DAY})?$",
    re.IGNORECASE,
)
_MORNING = ("上午", "凌晨", "早上", "早晨", "AM", "A.M.", "A.M", "AM.")
_FRACTION = re.compile(r"^(.*\d:\d\d:\d\d)[.,]\d+$")


def _excel_serial(value: float) -> datetime:
    if not 1 <= value < 2958466:  # 1900-01-01 … 9999-12-31
        raise CellError("bad_time", "not a date and time: %(value)s", value=value)
    moment = EXCEL_EPOCH + timedelta(days=value)
    # Excel stores times as fractions of a day: round away the binary noise to the second.
    return (moment + timedelta(microseconds=500_000)).replace(microsecond=0)


def parse_call_time(value: Any, tz: tzinfo, now: datetime) -> datetime:
    """A call-time cell → an aware UTC datetime. Raises CellError.

    Accepts a datetime (XLSX date cells; naive ones are local time in `tz`), an Excel date
    serial number (``46356.25`` = 2026-11-30 06:00, as a number or its text), ISO 8601 with
    or without an offset (``2026-11-30T14:05:00+08:00``), and the text Excel and call
    centres write: ``2026-11-30 14:05[:07]``, ``2026/11/30 9:05``, ``2026.11.30 14:05``,
    ``20261130140507``, ``2026年11月30日 14:05`` or ``14时05分``. A time more than
    FUTURE_TOLERANCE after `now`, or before 1990, is refused; so is a date without a time.
    """
    moment: datetime
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        raise _no_time_of_day(value)
    elif isinstance(value, bool):
        raise CellError("bad_time", "not a date and time: %(value)s", value=value)
    elif isinstance(value, int | float):
        moment = _excel_serial(float(value))
        if float(value).is_integer() and moment >= EARLIEST_CALL:
            raise _no_time_of_day(moment.date())  # a date cell Excel's format hid from us
    else:
        text = clean_line(str(value or ""))
        if not text:
            raise CellError("required", "empty")
        moment = _parse_time_text(text)
    return _checked(moment, value, tz, now)


def _checked(moment: datetime, value: Any, tz: tzinfo, now: datetime) -> datetime:
    """`moment` (naive: local time in `tz`) in UTC; CellError when in the future or before
    EARLIEST_CALL, naming `value`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    moment = moment.astimezone(UTC)
    if moment > now + FUTURE_TOLERANCE:
        raise CellError("future_time", "in the future: %(value)s", value=_shown(value))
    if moment < EARLIEST_CALL.replace(tzinfo=UTC):
        raise CellError("bad_time", "not a date and time: %(value)s", value=_shown(value))
    return moment


def parse_call_date(value: Any) -> date:
    """The date of a call whose time of day is in a column of its own → a date. Accepts a
    date or datetime cell (its date), an Excel serial number, and text as
    `parse_call_time` reads it, with or without a time (``2026/11/3``, ``2026年11月3日``).
    Raises CellError."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, bool):
        raise CellError("bad_time", "not a date and time: %(value)s", value=value)
    if isinstance(value, int | float):
        return _excel_serial(float(value)).date()
    text = clean_line(str(value or ""))
    if not text:
        raise CellError("required", "empty")
    found = _DATE_PART.match(text)
    if found and not text[found.end() :].strip():
        y, mo, d = (int(g) for g in found.groups())
        try:
            return date(y, mo, d)
        except ValueError as exc:
            raise CellError("bad_time", "not a date and time: %(value)s", value=text) from exc
    try:
        return _parse_time_text(text).date()
    except CellError as exc:
        if exc.code == "no_time_of_day":  # an integral serial number as text
            return _excel_serial(float(text)).date()
        raise


def parse_time_of_day(value: Any) -> time:
    """A time-of-day cell → a time. Accepts a time cell, a fraction of a day (Excel's
    0.628472 = 15:05), a datetime's or timedelta's time, and text: ``15:05[:07]``,
    ``下午 3:05``, ``3:05 PM``, ``15时05分``. Raises CellError (code ``bad_time_of_day``)."""
    if isinstance(value, datetime):
        return value.time().replace(microsecond=0)
    if isinstance(value, time):
        return value.replace(microsecond=0)
    if isinstance(value, timedelta) and timedelta(0) <= value < timedelta(days=1):
        return (datetime.min + value).time().replace(microsecond=0)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1:
        seconds = round(float(value) * 86400)
        return time(*divmod(seconds // 60, 60), seconds % 60) if seconds < 86400 else time()
    text = clean_line(str(value)) if value is not None else ""
    if not text:
        raise CellError("required", "empty")
    clock = _TIME_PART.match(text)
    if clock is not None:
        try:
            return time(*_time_of_day(clock, text))
        except CellError:
            pass
    raise CellError("bad_time_of_day", "not a time of day: %(value)s", value=text[:60])


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return clean_line(str(value))[:60]


def _no_time_of_day(value: Any) -> CellError:
    return CellError(
        "no_time_of_day",
        "%(value)s is a date without the time of the call: export the call time with its"
        " hour and minute (or map the column that holds the time as time_of_day)",
        value=_shown(value),
    )


def _parse_time_text(text: str) -> datetime:
    if re.fullmatch(r"\d+(?:\.\d+)?", text) and not re.fullmatch(r"\d{12}|\d{14}", text):
        moment = _excel_serial(float(text))
        # 46356 is a date alone; 46356.0000000000, written with its fraction, is midnight.
        if "." not in text and moment >= EARLIEST_CALL:
            raise _no_time_of_day(moment.date())
        return moment
    found = _DATE_PART.match(text)
    if found:
        rest = text[found.end() :].strip()
        clock = _TIME_PART.match(rest) if rest else None
        if not rest or re.fullmatch(_HALF_DAY, rest, re.IGNORECASE):
            raise _no_time_of_day(text)
        if clock is None and ":" not in rest:  # 2026-11-03 15: an hour alone is no time
            raise CellError("bad_time", "not a date and time: %(value)s", value=text[:60])
        if clock is not None:
            y, mo, d = (int(g) for g in found.groups())
            try:
                return datetime(y, mo, d, *_time_of_day(clock, text))
            except ValueError as exc:
                raise CellError("bad_time", "not a date and time: %(value)s", value=text) from exc
    plain = _FRACTION.sub(r"\1", text)
    for pattern in _TEXT_TIMES:
        try:
            return datetime.strptime(plain, pattern)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is not None and ("T" in text or " " in text):
        return moment
    if moment is not None or re.fullmatch(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}", text):
        raise _no_time_of_day(text)
    raise CellError("bad_time", "not a date and time: %(value)s", value=text[:60])


def _time_of_day(clock: re.Match[str], text: str) -> tuple[int, int, int]:
    """A `_TIME_PART` match → (hour 0-23, minute, second). 12 上午 / 12 AM is 0h, 12 下午 /
    12 PM is 12h; 下午 15:05 is taken as written; 上午 15:05 is refused (CellError)."""
    hour = int(clock["h"])
    minute = int(clock["m"] or clock["cm"] or (30 if clock["half"] else 0))
    second = int(clock["s"] or clock["cs"] or 0)
    mark = (clock["before"] or clock["after"] or "").upper()
    if clock["before"] and clock["after"]:
        raise CellError("bad_time", "not a date and time: %(value)s", value=text[:60])
    if mark:
        morning = mark in _MORNING
        noon = mark == "中午"
        if hour > 12 and (morning or hour > 23):
            raise CellError("bad_time", "not a date and time: %(value)s", value=text[:60])
        if hour == 12:
            hour = 0 if morning else 12
        elif not morning and hour < 12 and not (noon and hour >= 10) and hour > 0:
            hour += 12  # 下午 3:05 → 15:05; 中午 11:30 stays 11:30
        elif hour == 0 and not morning:
            raise CellError("bad_time", "not a date and time: %(value)s", value=text[:60])
    if hour > 23 or minute > 59 or second > 59:
        raise CellError("bad_time", "not a date and time: %(value)s", value=text[:60])
    return hour, minute, second


_DURATION_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,3}):(\d{1,2})$")
_DURATION_WORDS = re.compile(
    r"^(?:(\d+)\s*(?:小时|时|h))?\s*(?:(\d+)\s*(?:分钟|分|m|min))?\s*(?:(\d+)\s*(?:秒钟|秒|s|sec))?$",
    re.IGNORECASE,
)
MAX_CALL_SECONDS = 24 * 3600


def parse_duration(value: Any) -> int | None:
    """A call-length cell → whole seconds, or None when empty. Raises CellError.

    Accepts seconds (``125``, ``125.0``, ``125秒``), ``mm:ss`` (``2:05``), ``hh:mm:ss``
    (``0:02:05``), ``2分5秒`` / ``1小时2分``, and XLSX time or timedelta cells. Negative or
    over a day is refused.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, time):
        seconds = value.hour * 3600 + value.minute * 60 + value.second
    elif isinstance(value, datetime):
        raise CellError("bad_duration", "not a call length: %(value)s", value=_shown(value))
    elif isinstance(value, bool):
        raise CellError("bad_duration", "not a call length: %(value)s", value=value)
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        text = clean_line(str(value))
        if not text:
            return None
        clock = _DURATION_CLOCK.match(text)
        words = _DURATION_WORDS.match(text) if not clock else None
        if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif clock:
            h, m, s = clock.groups()
            if int(s) >= 60 or (h is not None and int(m) >= 60):
                raise CellError("bad_duration", "not a call length: %(value)s", value=text)
            seconds = int(h or 0) * 3600 + int(m) * 60 + int(s)
        elif words and any(words.groups()):
            h, m, s = (int(g or 0) for g in words.groups())
            seconds = h * 3600 + m * 60 + s
        else:
            raise CellError("bad_duration", "not a call length: %(value)s", value=text[:60])
    if seconds < 0 or seconds > MAX_CALL_SECONDS:
        raise CellError("bad_duration", "not a call length: %(value)s", value=_shown(value))
    return round(seconds)


def parse_kind(value: Any, extra: Mapping[str, str] | None = None) -> Kind:
    """A kind cell (投诉/建议/咨询/表扬, the English values, or the mapping's own) → Kind;
    empty → complaint. Raises CellError for anything else."""
    text = clean_line(str(value)) if value is not None else ""
    if not text:
        return Kind.COMPLAINT
    known = {**DEFAULT_KINDS, **{k: Kind(v) for k, v in (extra or {}).items()}}
    kind = known.get(text) or known.get(text.casefold())
    if kind is None and extra:
        # The call centre's own words, as its mapping lists them (投诉/建议/… still pass).
        raise CellError(
            "bad_kind_of",
            "unknown kind %(value)s: use %(kinds)s",
            value=text[:40],
            kinds=", ".join(extra),
        )
    if kind is None:
        raise CellError(
            "bad_kind", "unknown kind %(value)s: use 投诉, 建议, 咨询 or 表扬", value=text[:40]
        )
    return kind


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a call id or number Excel stored as a number
    return str(value)


# Excel shows a long number as 1.23457E+11 and a CSV saved from it keeps only that; an
# XLSX number cell keeps 15 significant digits. Either way the digits are gone.
_SCIENTIFIC = re.compile(r"^[+-]?\d(?:\.\d+)?E\+?\d+$", re.IGNORECASE)
EXACT_DIGITS = 15


def _lost_digits(value: Any, text: str) -> bool:
    """True when `value` is a number whose digits Excel has cut short (see _SCIENTIFIC)."""
    if isinstance(value, float) and abs(value) >= 10**EXACT_DIGITS:
        return True
    return bool(_SCIENTIFIC.match(text))


def _lost_zero(digits: str) -> str | None:
    """A landline whose leading 0 Excel dropped (a number cell: 010-87654321 read as
    1087654321) → the number with it, when that is a valid one; else None. A mobile-like
    number (1 then 3-9) is never changed."""
    if not digits.isdigit() or not 9 <= len(digits) <= 11 or digits[0] == "0":
        return None
    if digits[0] == "1" and not (digits.startswith("10") and len(digits) == 10):
        return None
    try:
        return normalise_phone("0" + digits)
    except PhoneError:
        return None


def _shortened(value: str) -> CellError:
    return CellError(
        "lost_digits",
        "Excel shortened this number to %(value)s: format the column as text and export again",
        value=value[:40],
    )


# What call centres write for a number the caller withheld (compared case-folded). An
# empty number cell is one too when the name cell says so (姓名 匿名); empty alone is a
# required cell left empty.
WITHHELD = frozenset(
    {
        "匿名",
        "匿名来电",
        "未知",
        "未知号码",
        "隐藏号码",
        "号码隐藏",
        "无主叫号码",
        "私人号码",
        "anonymous",
        "unknown",
        "withheld",
        "private",
        "restricted",
    }
)


def call_key(call_id: str, phone: str, called_at: datetime) -> str:
    """The idempotency key: the call id, or ``call:<number>@<UTC time>`` without one."""
    if call_id:
        return call_id
    return f"call:{phone}@{called_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _subject(body: str) -> str:
    first = body.split("\n", 1)[0].strip()
    return first if len(first) <= SUBJECT_MAX else first[: SUBJECT_MAX - 1] + "…"


# -- rows ----------------------------------------------------------------------------------


def parse_row(
    row: int,
    cells: Sequence[Any],
    columns: BoundColumns,
    mapping: ColumnMapping,
    *,
    tz: tzinfo,
    now: datetime,
) -> CallRow:
    """One row of the export → a CallRow with its Submission, or with every error found.

    Required cells: 来电号码 (a valid phone, `normalise_phone`; or a number withheld,
    `WITHHELD`, when the row has its 工单号: the call is then a case without a caller and
    its CallRow says ``anonymous``), 来电时间, 诉求内容 (at most BODY_MAX characters).
    工单号 may be empty (the key is then number and time); 通话时长 may be empty. The
    address (地址), when the mapping reads one, is the case's place (at most PLACE_MAX
    characters).
    """
    errors: list[RowError] = []

    def cell(name: str) -> Any:
        at = columns.index.get(name)
        value = cells[at] if at is not None and at < len(cells) else None
        return apostrophe_text(value) if name in TYPED_COLUMNS else value

    def fail(name: str, exc: CellError) -> None:
        errors.append(
            RowError(row, columns.headers.get(name, ""), exc.code, exc.message, exc.params)
        )

    call_id = clean_line(_text(cell("call_id")))[:255]
    if call_id and _lost_digits(cell("call_id"), call_id):
        # Two calls would share the shortened id: the second would pass as a duplicate.
        fail("call_id", _shortened(call_id))
    phone = ""
    raw_phone = clean_line(_text(cell("phone")))
    name = clean_line(_text(cell("name")))
    marker = raw_phone if raw_phone else name
    anonymous = marker.casefold() in WITHHELD
    if anonymous:
        if name.casefold() in WITHHELD:
            name = ""  # 姓名 匿名 is no name
        if not call_id:
            fail(
                "phone",
                CellError(
                    "withheld_without_id",
                    "number withheld (%(value)s) and no call id: the call cannot be told apart",
                    value=marker[:40],
                ),
            )
    elif not raw_phone:
        fail("phone", CellError("required", "empty"))
    elif _lost_digits(cell("phone"), raw_phone):
        fail("phone", _shortened(raw_phone))
    else:
        try:
            phone = normalise_clean_phone(raw_phone)  # (cleaned above)
        except PhoneError:
            restored = _lost_zero(raw_phone)
            if restored is not None:
                phone = restored
            else:
                fail(
                    "phone",
                    CellError("bad_phone", "not a phone number: %(value)s", value=raw_phone[:40]),
                )
    called_at: datetime | None = None
    if "time_of_day" in columns.index:
        called_at = _date_and_time(cell("called_at"), cell("time_of_day"), tz, now, fail)
    else:
        try:
            called_at = parse_call_time(cell("called_at"), tz, now)
        except CellError as exc:
            fail("called_at", exc)
    duration: int | None = None
    try:
        duration = parse_duration(cell("duration"))
    except CellError as exc:
        fail("duration", exc)
    body = clean_text(_text(cell("body")))
    if not body:
        fail("body", CellError("required", "empty"))
    elif len(body) > BODY_MAX:
        fail("body", CellError("too_long", "longer than %(max)s characters", max=BODY_MAX))
    kind = Kind.COMPLAINT
    if "kind" in columns.index:
        try:
            kind = parse_kind(cell("kind"), mapping.kinds)
        except CellError as exc:
            fail("kind", exc)
    if len(name) > 100:
        fail("name", CellError("too_long", "longer than %(max)s characters", max=100))
    operator = clean_line(_text(cell("operator")))[:100]
    address = clean_line(_text(cell("address")))
    if len(address) > PLACE_MAX:
        fail("address", CellError("too_long", "longer than %(max)s characters", max=PLACE_MAX))
    if errors or called_at is None:
        return CallRow(row, None, tuple(errors), call_id, duration, operator, anonymous)
    key = call_key(call_id, phone, called_at)
    submission = _cleaned_submission(
        external_id=key if len(call_id) < 255 else clean_line(key),  # (cut: a space at its end)
        received_at=called_at,
        body=body,
        subject=clean_line(_subject(body)),
        kind=kind,
        contact=_cleaned(Contact, name=name, phone=phone, email=""),
        place=address,
    )
    return CallRow(row, submission, (), call_id, duration, operator, anonymous)


def _cleaned(cls: type[_T], **values: Any) -> _T:
    """``cls(**values)`` (a frozen dataclass: `Contact`, `Submission`) for values that are
    what its ``__post_init__`` makes of them already (outputs of `clean_line` and
    `clean_text`, which give the same again: `parse_row` cleans each cell once, and the
    Submission would clean them all a second time), without that second cleaning. Every
    field is given."""
    made = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(made, name, value)
    return made


_SUBMISSION_FIELDS = frozenset(f.name for f in fields(Submission))


def _cleaned_submission(**values: Any) -> Submission:
    """A phone Submission of `parse_row`'s cleaned values (see `_cleaned`), with its checks:
    the row has its key and body and an aware call time (else Submission's own error)."""
    values = {"channel": CALL_CHANNEL, "attachments": (), **values}
    if (
        set(values) != _SUBMISSION_FIELDS
        or not values["external_id"]
        or not values["body"].strip()
        or values["received_at"].tzinfo is None
    ):
        return Submission(**values)  # a field this does not know, or an error to raise
    return _cleaned(Submission, **values)


def _date_and_time(
    day: Any, clock: Any, tz: tzinfo, now: datetime, fail: Callable[[str, CellError], None]
) -> datetime | None:
    """The call time from the date column and the time-of-day column; a full date and time
    in the date column with the time column empty is taken as it is."""
    if clock is None or (isinstance(clock, str) and not clean_line(clock)):
        try:
            return parse_call_time(day, tz, now)
        except CellError as exc:
            fail("called_at", exc)
            return None
    found: date | None = None
    try:
        found = parse_call_date(day)
    except CellError as exc:
        fail("called_at", exc)
    try:
        at = parse_time_of_day(clock)
    except CellError as exc:
        fail("time_of_day", exc)
        return None
    if found is None:
        return None
    try:
        return _checked(datetime.combine(found, at), f"{found} {at}", tz, now)
    except CellError as exc:
        fail("called_at", exc)
        return None


def parse_table(
    table: Table,
    mapping: ColumnMapping,
    *,
    tz: tzinfo,
    now: datetime,
    sheet: str = "",
) -> Iterator[CallRow]:
    """Every non-blank row of `table` as a CallRow, in file order (blank rows skipped).

    The header is the first non-blank row, or, when that lacks required columns, one of
    the next HEADER_SEARCH non-blank rows that has them all (exports often start with a
    title line such as ``12345热线话务记录 2026-11-30``); the rows above it are not calls.
    Raises MissingColumns (naming what the first row lacks) before any call is read when
    no such row is found. `sheet`: the name the rows' errors carry (see RowError)."""
    try:
        columns = bind_columns(table.header, mapping)
    except MissingColumns as first_error:
        columns = _find_header(table, mapping, first_error)

    def rows() -> Iterator[CallRow]:
        for n, cells in table.rows:
            if not _blank(cells):
                row = parse_row(n, cells, columns, mapping, tz=tz, now=now)
                yield _unclosed(row, table.runaway[n], columns) if n in table.runaway else row

    if sheet:
        return (_in_sheet(r, sheet) for r in rows())
    return rows()


def _unclosed(row: CallRow, found: tuple[int, int], columns: BoundColumns) -> CallRow:
    """`row` refused: its cell `found[0]` swallowed `found[1]` records (their calls are not
    read; once the quote is mended, importing the file again adds them)."""
    at, records = found
    name = next((n for n, i in columns.index.items() if i == at), "")
    error = RowError(
        row.row,
        columns.headers.get(name, ""),
        "unclosed_quote",
        "a quotation mark in this cell is not closed: the next %(lines)s lines, calls of"
        " their own, were read into it; close or remove the quote and import the file again",
        {"lines": records},
    )
    return replace(row, submission=None, errors=(*row.errors, error))


def _in_sheet(row: CallRow, sheet: str) -> CallRow:
    if not row.errors:
        return row
    return replace(row, errors=tuple(replace(e, sheet=sheet) for e in row.errors))


@dataclass(frozen=True)
class SheetReport:
    """One sheet of an XLSX workbook: read (its calls imported) or skipped, and why:
    ``hidden``, ``empty`` (no non-blank row), ``no_columns`` (`missing` names the mapped
    required headers it lacks)."""

    name: str
    read: bool
    reason: str = ""
    missing: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "read": self.read,
            "reason": self.reason,
            "missing": list(self.missing),
        }

    def text(self) -> str:
        """In English, for the command's output."""
        if self.read:
            return f"sheet {self.name!r}: read"
        why = {
            "hidden": "hidden",
            "empty": "empty",
            "no_columns": "no columns " + ", ".join(self.missing),
        }.get(self.reason, self.reason)
        return f"sheet {self.name!r}: skipped ({why})"


@dataclass
class ParsedFile:
    """A file's calls: `rows` (lazy, sheet after sheet), and for an XLSX workbook its
    sheets, read and skipped, in the workbook's order (empty for a CSV)."""

    rows: Iterator[CallRow]
    kind: str
    sheets: tuple[SheetReport, ...] = ()

    @property
    def skipped(self) -> tuple[SheetReport, ...]:
        return tuple(s for s in self.sheets if not s.read)


def parse_file(
    data: bytes,
    mapping: ColumnMapping,
    *,
    tz: tzinfo,
    now: datetime,
    filename: str = "",
) -> ParsedFile:
    """The bytes of a CSV or XLSX export → its calls.

    A workbook's calls are read from every visible sheet that has the mapping's required
    headers (a call centre splits a month into a sheet a day, or a long export into sheets
    of 65,536 rows), one sheet after the other, with each sheet's own Excel row numbers; the
    errors of their rows name their sheet when more than one is read. Hidden sheets, empty
    ones and ones without those headers (notes, codes, a summary) are skipped, and
    `ParsedFile.sheets` says which and why, so that nobody believes a sheet was imported
    that was not. Raises FileFormatError as `read_table`, and MissingColumns (naming what
    the first visible sheet lacks) when no sheet has the headers."""
    if data[:4] != b"PK\x03\x04":
        table = read_table(data, filename)
        return ParsedFile(parse_table(table, mapping, tz=tz, now=now), table.kind)
    check_unpacked_size(data)
    book = _open_workbook(data)
    reports: list[SheetReport] = []
    found: list[Table] = []
    first_missing: MissingColumns | None = None
    try:
        for sheet in book.worksheets:
            name = str(sheet.title)
            if not _visible(sheet):
                reports.append(SheetReport(name, False, "hidden"))
                continue
            try:
                table = _with_header(_xlsx_rows(sheet), "xlsx", sheet=name)
                parse_table(table, mapping, tz=tz, now=now)  # binds the header, or raises
            except FileFormatError:
                reports.append(SheetReport(name, False, "empty"))
                continue
            except MissingColumns as exc:
                first_missing = first_missing or exc
                reports.append(SheetReport(name, False, "no_columns", exc.missing))
                continue
            reports.append(SheetReport(name, True))
            found.append(table)
    except BaseException:
        book.close()
        raise
    if not found:
        book.close()
        if first_missing is not None:
            raise first_missing
        raise FileFormatError("no_header", "no header row: the file has no non-empty row")
    several = len(found) > 1

    def rows() -> Iterator[CallRow]:
        try:
            for report in reports:
                if not report.read:
                    continue
                # Read afresh: binding the header above consumed the first rows.
                table = _with_header(_xlsx_rows(book[report.name]), "xlsx", sheet=report.name)
                yield from parse_table(
                    table, mapping, tz=tz, now=now, sheet=report.name if several else ""
                )
        finally:
            book.close()

    return ParsedFile(rows(), "xlsx", tuple(reports))


HEADER_SEARCH = 10


def _find_header(table: Table, mapping: ColumnMapping, error: MissingColumns) -> BoundColumns:
    tried = 0
    for _n, cells in table.rows:
        if _blank(cells):
            continue
        tried += 1
        header = tuple(clean_line(str(c)) if c is not None else "" for c in cells)
        try:
            return bind_columns(header, mapping)
        except MissingColumns:
            if tried >= HEADER_SEARCH:
                break
    raise error


# -- the operators' desk -------------------------------------------------------------------


def operator_submission(
    *,
    call_id: str,
    form_token: str,
    phone: str,
    name: str,
    called_at: datetime,
    kind: str,
    subject: str,
    body: str,
    place: str = "",
) -> Submission:
    """A call an operator logged at the desk → a Submission (channel PHONE).

    The external id is the phone system's call id when the operator gave one (the same key
    as the call's row in the export, so the import finds it logged), else
    ``desk:<form token>``: the token is made when the desk's form is shown, so a form sent
    twice is one case while two calls of one number in the same minute are two. The subject
    is the summary's first line (at most `SUBJECT_MAX` characters) when none is given.
    `called_at` must be timezone-aware. Raises ValueError (English, naming the field) for
    an unknown kind, a missing summary or a missing key.
    """
    call_id, form_token = clean_line(call_id), clean_line(form_token)
    if not call_id and not form_token:
        raise ValueError("call_id: a call id or the form's token is needed")
    try:
        call_kind = Kind(kind)
    except ValueError as e:
        raise ValueError(f"kind: not one of {', '.join(k.value for k in Kind)}") from e
    text = clean_text(body)
    if not text:
        raise ValueError("body: the summary of the call is empty")
    return Submission(
        channel=CALL_CHANNEL,
        external_id=call_id or f"desk:{form_token}",
        received_at=called_at,
        kind=call_kind,
        subject=clean_line(subject) or _subject(text),
        body=text,
        contact=Contact(name=name, phone=phone),
        place=place,
    )
