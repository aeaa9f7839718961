"""Phone calls → Submissions: the rows of a call centre's export, with per-row errors.

A call-centre export is a table, one call a row: CSV (UTF-8, UTF-8 with a byte-order mark,
or GBK/GB18030 as Excel on Chinese Windows saves it; the encoding and the delimiter are
detected) or XLSX (read with openpyxl). `read_table` turns the file's bytes into rows of
cells; `bind_columns` finds the columns a `ColumnMapping` names in the header row (raising
`MissingColumns` naming every required one that is absent); `parse_row` turns one row into a
`CallRow`: a Submission, or the list of what is wrong with the row.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from intake.normalise import PhoneError, clean_line, clean_text, nfkc, normalise_phone
from intake.submission import Channel, Contact, Kind, Submission

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
    "RowError",
    "Table",
    "bind_columns",
    "call_key",
    "parse_call_time",
    "parse_duration",
    "parse_kind",
    "parse_row",
    "parse_table",
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

    REQUIRED = ("call_id", "phone", "called_at", "duration", "body", "operator")
    OPTIONAL = ("name", "address", "kind")

    def header(self, name: str) -> str:
        return str(getattr(self, name))


@dataclass(frozen=True)
class RowError:
    """What is wrong with one row: its row number (Excel's, header = 1), the column's header
    name ("" for the row as a whole), a code, an English message and its parameters."""

    row: int
    column: str
    code: str
    message: str
    params: Mapping[str, Any] = field(default_factory=dict)

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
        _check_unpacked_size(data)
        return _read_xlsx(data)
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if data[:5] == b"%PDF-" or (b"\x00" in data[:4096] and not utf16):
        raise FileFormatError("not_table", "not a CSV or XLSX file")
    return _read_csv(data)


# An XLSX unpacks to some 5-15 times its size; a zip bomb (a few MB unpacking to many GB,
# which openpyxl would read: shared strings wholly into memory) is refused before that.
MAX_UNPACKED_RATIO = 30
MAX_UNPACKED_FLOOR = 50 * 1024 * 1024  # bytes: small files may compress better


def _check_unpacked_size(data: bytes) -> None:
    """Raises FileFormatError ``bad_xlsx`` when the zip's members would unpack to more than
    MAX_UNPACKED_RATIO times its size (at least MAX_UNPACKED_FLOOR bytes). The sizes are
    the zip's own: `zipfile` never unpacks a member beyond its stated size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileFormatError("bad_xlsx", f"not a readable XLSX file: {exc}") from exc
    if unpacked > max(MAX_UNPACKED_FLOOR, MAX_UNPACKED_RATIO * len(data)):
        raise FileFormatError(
            "bad_xlsx", f"not a readable XLSX file: it would unpack to {unpacked} bytes"
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
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    numbered = ((n, tuple(cells)) for n, cells in enumerate(reader, start=1))
    return _with_header(numbered, "csv", encoding)


def _read_xlsx(data: bytes) -> Table:
    import openpyxl  # only for XLSX: the CSV path needs nothing but the standard library

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise FileFormatError("bad_xlsx", f"not a readable XLSX file: {exc}") from exc
    # The calls are on the first sheet the user sees: exports often keep a hidden sheet of
    # codes or notes in front of it.
    visible = [s for s in book.worksheets if getattr(s, "sheet_state", "visible") == "visible"]
    sheet = (visible or book.worksheets or [None])[0]
    if sheet is None:
        raise FileFormatError("bad_xlsx", "the workbook has no sheet")

    def rows() -> Iterator[tuple[int, tuple[Any, ...]]]:
        try:
            for n, cells in enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1):
                yield n, tuple(cells)
        finally:
            book.close()

    return _with_header(rows(), "xlsx")


def _blank(cells: Iterable[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not clean_line(c)) for c in cells)


def _with_header(
    numbered: Iterator[tuple[int, tuple[Any, ...]]], kind: str, encoding: str = ""
) -> Table:
    """The first non-blank row is the header."""
    for n, cells in numbered:
        if not _blank(cells):
            header = tuple(clean_line(str(c)) if c is not None else "" for c in cells)
            return Table(header, n, numbered, kind, encoding)
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
_CHINESE_TIME = re.compile(
    r"^(\d{4})年(\d{1,2})月(\d{1,2})日\s*(\d{1,2})[:时点](\d{1,2})(?:[:分](\d{1,2})秒?)?分?$"
)
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
        raise CellError("no_time_of_day", "a date without the time of the call")
    elif isinstance(value, bool):
        raise CellError("bad_time", "not a date and time: %(value)s", value=value)
    elif isinstance(value, int | float):
        moment = _excel_serial(float(value))
    else:
        text = clean_line(str(value or ""))
        if not text:
            raise CellError("required", "empty")
        moment = _parse_time_text(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    moment = moment.astimezone(UTC)
    if moment > now + FUTURE_TOLERANCE:
        raise CellError("future_time", "in the future: %(value)s", value=_shown(value))
    if moment < EARLIEST_CALL.replace(tzinfo=UTC):
        raise CellError("bad_time", "not a date and time: %(value)s", value=_shown(value))
    return moment


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return clean_line(str(value))[:60]


def _parse_time_text(text: str) -> datetime:
    if re.fullmatch(r"\d+(?:\.\d+)?", text) and not re.fullmatch(r"\d{12}|\d{14}", text):
        return _excel_serial(float(text))
    found = _CHINESE_TIME.match(text)
    if found:
        y, mo, d, h, mi, s = found.groups()
        try:
            return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0))
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
        raise CellError("no_time_of_day", "a date without the time of the call")
    raise CellError("bad_time", "not a date and time: %(value)s", value=text[:60])


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

    Required cells: 来电号码 (a valid phone, `normalise_phone`), 来电时间, 诉求内容 (at most
    BODY_MAX characters). 工单号 may be empty (the key is then number and time); 通话时长
    may be empty. The address (地址), when the mapping reads one, is the case's place (at
    most PLACE_MAX characters).
    """
    errors: list[RowError] = []

    def cell(name: str) -> Any:
        at = columns.index.get(name)
        return cells[at] if at is not None and at < len(cells) else None

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
    if not raw_phone:
        fail("phone", CellError("required", "empty"))
    elif _lost_digits(cell("phone"), raw_phone):
        fail("phone", _shortened(raw_phone))
    else:
        try:
            phone = normalise_phone(raw_phone)
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
    name = clean_line(_text(cell("name")))
    if len(name) > 100:
        fail("name", CellError("too_long", "longer than %(max)s characters", max=100))
    operator = clean_line(_text(cell("operator")))[:100]
    address = clean_line(_text(cell("address")))
    if len(address) > PLACE_MAX:
        fail("address", CellError("too_long", "longer than %(max)s characters", max=PLACE_MAX))
    if errors or called_at is None:
        return CallRow(row, None, tuple(errors), call_id, duration, operator)
    submission = Submission(
        channel=CALL_CHANNEL,
        external_id=call_key(call_id, phone, called_at),
        received_at=called_at,
        body=body,
        subject=_subject(body),
        kind=kind,
        contact=Contact(name=name, phone=phone),
        place=address,
    )
    return CallRow(row, submission, (), call_id, duration, operator)


def parse_table(
    table: Table,
    mapping: ColumnMapping,
    *,
    tz: tzinfo,
    now: datetime,
) -> Iterator[CallRow]:
    """Every non-blank row of `table` as a CallRow, in file order (blank rows skipped).

    The header is the first non-blank row, or, when that lacks required columns, one of
    the next HEADER_SEARCH non-blank rows that has them all (exports often start with a
    title line such as ``12345热线话务记录 2026-11-30``); the rows above it are not calls.
    Raises MissingColumns (naming what the first row lacks) before any call is read when
    no such row is found."""
    try:
        columns = bind_columns(table.header, mapping)
    except MissingColumns as first_error:
        columns = _find_header(table, mapping, first_error)

    def rows() -> Iterator[CallRow]:
        for n, cells in table.rows:
            if not _blank(cells):
                yield parse_row(n, cells, columns, mapping, tz=tz, now=now)

    return rows()


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
