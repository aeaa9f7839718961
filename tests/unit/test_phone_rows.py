"""intake/phone.py: call-centre export files → rows → Submissions, with per-row errors.

Files are written here as a call centre's software and Excel write them: GBK CSV with
Excel's date text and serial numbers, UTF-8 with a BOM, XLSX with date cells."""

from __future__ import annotations

import io
from datetime import UTC, datetime, time, timedelta
from time import process_time
from zoneinfo import ZoneInfo

import openpyxl
import openpyxl.styles
import pytest

from intake.phone import (
    CallRow,
    CellError,
    ColumnMapping,
    FileFormatError,
    MissingColumns,
    parse_call_time,
    parse_duration,
    parse_file,
    parse_kind,
    parse_table,
    read_table,
)
from intake.submission import Channel, Kind

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
HEADER = [
    "工单号",
    "来电号码",
    "来电时间",
    "通话时长",
    "诉求内容",
    "话务员",
    "姓名",
    "地址",
    "诉求类型",
]


def csv_bytes(rows: list[list[str]], encoding: str = "gbk", bom: bool = False) -> bytes:
    text = "\r\n".join(",".join(_quote(c) for c in row) for row in rows) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\n') else cell


def parse(data: bytes, mapping: ColumnMapping | None = None) -> list[CallRow]:
    return list(parse_table(read_table(data), mapping or ColumnMapping(), tz=TZ, now=NOW))


def test_gbk_csv_with_excel_dates_becomes_submissions_at_the_call_time() -> None:
    data = csv_bytes(
        [
            HEADER,
            [
                "GD001",
                "138 0013 8000",
                "2026/11/30 9:05",
                "125",
                "明德路路灯不亮",
                "王芳",
                "李四",
                "明德路12号",
                "投诉",
            ],
            [
                "GD002",
                "010-87654321",
                "46356.5",
                "2:05",
                "建议增加公交班次",
                "王芳",
                "",
                "",
                "建议",
            ],
        ]
    )
    rows = parse(data)
    assert [r.row for r in rows] == [2, 3]
    first, second = (r.submission for r in rows)
    assert first is not None and second is not None
    assert first.channel == Channel.PHONE and first.external_id == "GD001"
    assert first.received_at == datetime(2026, 11, 30, 1, 5, tzinfo=UTC)  # 09:05 Beijing
    assert first.contact.phone == "13800138000" and first.contact.name == "李四"
    assert first.kind == Kind.COMPLAINT
    assert first.body == "明德路路灯不亮" and first.place == "明德路12号"
    assert rows[0].duration_seconds == 125 and rows[0].operator == "王芳"
    # Excel's serial 46356.5 is 2026-11-30 12:00 local.
    assert second.received_at == datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
    assert second.kind == Kind.SUGGESTION and rows[1].duration_seconds == 125


def test_utf8_bom_header_is_found_and_a_line_break_in_a_cell_is_kept() -> None:
    data = csv_bytes(
        [HEADER[:6], ["A1", "13800138000", "2026-11-30 10:00:00", "60", "第一行\n第二行", "赵"]],
        encoding="utf-8",
        bom=True,
    )
    (row,) = parse(data)
    assert row.submission is not None
    assert row.submission.body == "第一行\n第二行"
    assert row.submission.subject == "第一行"


def test_row_numbers_are_excels_even_with_line_breaks_and_empty_rows() -> None:
    data = csv_bytes(
        [
            HEADER[:6],
            ["A1", "13800138000", "2026-11-30 10:00", "60", "多行\n内容\n第三行", "赵"],
            ["", "", "", "", "", ""],
            ["A2", "12345", "2026-11-30 10:00", "60", "号码不对", "赵"],
        ],
        encoding="utf-8",
    )
    rows = parse(data)
    assert [r.row for r in rows] == [2, 4]  # the empty row 3 is skipped, not an error
    bad = rows[1]
    assert bad.submission is None
    assert [(e.row, e.column, e.code) for e in bad.errors] == [(4, "来电号码", "bad_phone")]
    assert "12345" in bad.errors[0].text()


def test_every_problem_of_a_row_is_named_with_its_column() -> None:
    data = csv_bytes(
        [HEADER, ["", "abc", "明天", "-5", "", "赵", "", "", "骂人"]], encoding="utf-8"
    )
    (row,) = parse(data)
    assert row.submission is None
    assert {(e.column, e.code) for e in row.errors} == {
        ("来电号码", "bad_phone"),
        ("来电时间", "bad_time"),
        ("通话时长", "bad_duration"),
        ("诉求内容", "required"),
        ("诉求类型", "bad_kind"),
    }


def test_missing_required_columns_are_all_named_and_extra_columns_ignored() -> None:
    data = csv_bytes(
        [["工单号", "来电时间", "备注", "诉求内容"], ["1", "2026-11-30 10:00", "x", "y"]]
    )
    with pytest.raises(MissingColumns) as exc:
        parse(data)
    assert exc.value.missing == ("来电号码", "通话时长", "话务员")
    extra = csv_bytes(
        [
            ["备注", *HEADER[:6], "录音文件"],
            ["x", "A1", "13800138000", "2026-11-30 10:00", "", "漏水", "赵", "a.wav"],
        ],
        encoding="utf-8",
    )
    (row,) = parse(extra)
    assert row.submission is not None and row.duration_seconds is None


def test_without_a_call_id_the_key_is_number_and_time() -> None:
    data = csv_bytes([HEADER[:6], ["", "+86 138 0013 8000", "2026-11-30 10:00", "1", "漏水", "赵"]])
    (row,) = parse(data)
    assert row.submission is not None
    assert row.submission.external_id == "call:13800138000@2026-11-30T02:00:00Z"


def test_xlsx_with_datetime_cells_serial_numbers_and_time_durations() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(
        [
            1001,
            13800138000,
            datetime(2026, 11, 30, 9, 5),
            time(0, 2, 5),
            "井盖丢失",
            "王芳",
            None,
            None,
            "咨询",
        ]
    )
    sheet.append([])
    sheet.append(
        ["1002", "13900139000", 46356.25, 90, "噪音扰民\n晚上十点后", "王芳", "张三", "", "表扬"]
    )
    out = io.BytesIO()
    book.save(out)
    rows = parse(out.getvalue())
    assert [r.row for r in rows] == [2, 4]
    a, b = (r.submission for r in rows)
    assert a is not None and b is not None
    assert a.external_id == "1001" and a.contact.phone == "13800138000"
    assert a.received_at == datetime(2026, 11, 30, 1, 5, tzinfo=UTC)
    assert rows[0].duration_seconds == 125 and a.kind == Kind.INQUIRY
    assert b.received_at == datetime(2026, 11, 29, 22, 0, tzinfo=UTC)  # 06:00 local
    assert b.body == "噪音扰民\n晚上十点后" and b.place == "" and b.kind == Kind.PRAISE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-30 14:05", datetime(2026, 11, 30, 6, 5, tzinfo=UTC)),
        ("2026/1/5 9:05:07", datetime(2026, 1, 5, 1, 5, 7, tzinfo=UTC)),
        ("2026.11.30 14:05", datetime(2026, 11, 30, 6, 5, tzinfo=UTC)),
        ("2026年11月30日 14时05分", datetime(2026, 11, 30, 6, 5, tzinfo=UTC)),
        ("2026年11月30日 14:05:30", datetime(2026, 11, 30, 6, 5, 30, tzinfo=UTC)),
        ("20261130140500", datetime(2026, 11, 30, 6, 5, tzinfo=UTC)),
        ("2026-11-30T14:05:00+08:00", datetime(2026, 11, 30, 6, 5, tzinfo=UTC)),
        ("2026-11-30T06:05:00Z", datetime(2026, 11, 30, 6, 5, tzinfo=UTC)),
        ("46356.586805555556", datetime(2026, 11, 30, 6, 5, tzinfo=UTC)),
        (46356.586805555556, datetime(2026, 11, 30, 6, 5, tzinfo=UTC)),
        ("２０２６-11-30 14:05", datetime(2026, 11, 30, 6, 5, tzinfo=UTC)),
    ],
)
def test_call_times_as_call_centres_write_them(value: object, expected: datetime) -> None:
    assert parse_call_time(value, TZ, NOW) == expected


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "required"),
        ("2026-11-30", "no_time_of_day"),
        ("2026-02-30 10:00", "bad_time"),
        ("下午三点", "bad_time"),
        ("2027-01-01 10:00", "future_time"),
        (5, "bad_time"),
    ],
)
def test_bad_call_times_are_refused(value: object, code: str) -> None:
    with pytest.raises(CellError) as exc:
        parse_call_time(value, TZ, NOW)
    assert exc.value.code == code


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("125", 125),
        ("125.4", 125),
        ("02:05", 125),
        ("1:02:05", 3725),
        ("2分5秒", 125),
        ("1小时2分", 3720),
        ("95秒", 95),
        (time(0, 1, 30), 90),
        (timedelta(minutes=3), 180),
        ("", None),
        (None, None),
    ],
)
def test_durations(value: object, seconds: int | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["-1", "1:75", "abc", "99999999"])
def test_bad_durations(value: str) -> None:
    with pytest.raises(CellError):
        parse_duration(value)


def test_kinds_in_chinese_english_and_the_mappings_own() -> None:
    assert parse_kind("投诉") == Kind.COMPLAINT
    assert parse_kind("suggestion") == Kind.SUGGESTION
    assert parse_kind("") == Kind.COMPLAINT
    assert parse_kind("求助咨询", {"求助咨询": "inquiry"}) == Kind.INQUIRY


def test_a_mapping_reads_another_call_centres_headers() -> None:
    mapping = ColumnMapping(
        call_id="流水号",
        phone="主叫号码",
        called_at="受理时间",
        duration="",
        body="来电内容",
        operator="坐席工号",
        kind="业务类型",
        kinds={"投诉举报": "complaint"},
    )
    data = csv_bytes(
        [
            ["流水号", "主叫号码", "受理时间", "来电内容", "坐席工号", "业务类型"],
            ["L9", "13800138000", "2026-11-30 08:00", "占道", "007", "投诉举报"],
        ]
    )
    (row,) = parse(data, mapping)
    assert row.submission is not None and row.submission.external_id == "L9"
    with pytest.raises(MissingColumns):
        parse(csv_bytes([HEADER, ["1"] * 9]), mapping)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "xls"),
        (b"%PDF-1.4 ...", "not_table"),
        (b"PK\x03\x04 not really a zip", "bad_xlsx"),
        (b"\r\n,,\r\n", "no_header"),
    ],
)
def test_files_that_are_not_tables_are_refused(data: bytes, code: str) -> None:
    with pytest.raises(FileFormatError) as exc:
        read_table(data)
    assert exc.value.code == code


def test_tab_separated_utf16_as_excel_saves_unicode_text() -> None:
    text = (
        "\t".join(HEADER[:6])
        + "\r\n"
        + "\t".join(["T1", "13800138000", "2026-11-30 10:00", "30", "漏水", "赵"])
    )
    data = b"\xff\xfe" + text.encode("utf-16-le")
    (row,) = parse(data)
    assert row.submission is not None and row.submission.external_id == "T1"


def test_a_title_line_above_the_header_is_skipped_and_rows_keep_excels_numbers() -> None:
    data = csv_bytes(
        [
            ["12345热线话务记录 2026-11-30"],
            [],
            HEADER[:6],
            ["A1", "13800138000", "2026-11-30 10:00", "60", "漏水", "赵"],
        ],
        encoding="utf-8",
    )
    (row,) = parse(data)
    assert row.row == 4 and row.submission is not None


def test_no_header_among_the_first_rows_names_what_the_first_row_lacks() -> None:
    data = csv_bytes([["报表"], ["工单号", "备注"], ["1", "x"]], encoding="utf-8")
    with pytest.raises(MissingColumns) as exc:
        parse(data)
    assert "来电号码" in exc.value.missing and "工单号" in exc.value.missing


def test_an_address_longer_than_a_place_is_a_row_error() -> None:
    data = csv_bytes(
        [HEADER, ["A1", "13800138000", "2026-11-30 10:00", "60", "漏水", "赵", "", "路" * 201, ""]],
        encoding="utf-8",
    )
    (row,) = parse(data)
    assert [(e.column, e.code) for e in row.errors] == [("地址", "too_long")]


def _xlsx(book: openpyxl.Workbook) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_the_calls_are_read_from_the_first_visible_sheet_not_a_hidden_one() -> None:
    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "代码表"
    notes.append(["诉求类型代码", "说明"])
    notes.sheet_state = "hidden"
    calls = book.create_sheet("话务记录")
    calls.append(HEADER[:6])
    calls.append(["H1", "13800138000", datetime(2026, 11, 30, 9, 5), 60, "漏水", "赵"])
    book.active = 1
    (row,) = parse(_xlsx(book))
    assert row.submission is not None and row.submission.external_id == "H1"


def test_numbers_excel_shortened_are_row_errors_not_false_duplicates() -> None:
    # Saved from Excel as CSV, a 12-digit call id shows as 1.23457E+11: two calls would
    # share it and the second would pass silently as a duplicate of the first.
    data = csv_bytes(
        [
            HEADER[:6],
            ["1.23457E+11", "13800138000", "2026-11-30 10:00", "60", "漏水", "赵"],
            ["1.23457E+11", "13900139000", "2026-11-30 10:05", "60", "噪音", "赵"],
            ["A3", "1.38001E+10", "2026-11-30 10:06", "60", "井盖", "赵"],
        ]
    )
    rows = parse(data)
    assert [(r.row, [(e.column, e.code) for e in r.errors]) for r in rows] == [
        (2, [("工单号", "lost_digits")]),
        (3, [("工单号", "lost_digits")]),
        (4, [("来电号码", "lost_digits")]),
    ]
    assert "1.23457E+11" in rows[0].errors[0].text()
    book = openpyxl.Workbook()
    book.active.append(HEADER[:6])
    # An XLSX number cell keeps 15 significant digits of an 18-digit call id.
    book.active.append([1.2345678901234568e17, 13800138000, 46356.25, 60, "漏水", "赵"])
    (row,) = parse(_xlsx(book))
    assert [(e.column, e.code) for e in row.errors] == [("工单号", "lost_digits")]


def test_a_landline_whose_leading_zero_excel_dropped_is_restored() -> None:
    book = openpyxl.Workbook()
    book.active.append(HEADER[:6])
    for n, phone in enumerate([1087654321, 57187654321, 13800138000.0, "12345678901"]):
        book.active.append([f"Z{n}", phone, 46356.25, 60, "漏水", "赵"])
    rows = parse(_xlsx(book))
    phones = [r.submission.contact.phone if r.submission else None for r in rows]
    # 010-87654321 and 0571-87654321 typed into number cells; a mobile stays as it is,
    # and a mistyped mobile is not turned into a landline.
    assert phones == ["01087654321", "057187654321", "13800138000", None]
    assert [e.code for e in rows[3].errors] == ["bad_phone"]


def test_headers_in_brackets_or_with_marks_and_full_width_spaces_are_found() -> None:
    header = ["（工单号）", "来电号码　", "【来电时间】", "通话时长*", "诉求内容：", " 话务员"]
    data = csv_bytes([header, ["B1", "13800138000", "2026/11/30 9:05", "65秒", "漏水", "赵"]])
    (row,) = parse(data)
    assert row.submission is not None and row.submission.external_id == "B1"
    assert row.duration_seconds == 65


def test_a_zip_bomb_named_xlsx_is_refused_before_it_is_unpacked() -> None:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/sharedStrings.xml", b"<si><t>a</t></si>" * 4_000_000)
    assert len(out.getvalue()) < 1_000_000  # 68 MB unpacked
    with pytest.raises(FileFormatError) as exc:
        read_table(out.getvalue(), "calls.xlsx")
    assert exc.value.code == "bad_xlsx" and "unpack" in str(exc.value)


def _padded_workbook(part: str, content_type: str, xml: bytes) -> bytes:
    """A real workbook of calls whose shared strings or styles are replaced by `xml`
    (under the name `part`, declared in [Content_Types].xml), with 4 MB of incompressible
    padding so that the whole file passes the unpacked-to-packed ratio."""
    import os
    import zipfile

    book = openpyxl.Workbook()
    book.active.append(["工单号", "来电号码", "来电时间", "通话时长", "诉求内容", "话务员"])
    book.active.append(["G1", "13800138000", "2026/11/30 9:05", "60", "噪音", "王"])
    plain = io.BytesIO()
    book.save(plain)
    out = io.BytesIO()
    with (
        zipfile.ZipFile(plain) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "[Content_Types].xml":
                body = body.replace(
                    b"</Types>",
                    f'<Override PartName="/{part}" ContentType="application/'
                    f'vnd.openxmlformats-officedocument.spreadsheetml.{content_type}+xml"/>'
                    "</Types>".encode(),
                )
            if info.filename.lower() in ("xl/sharedstrings.xml", "xl/styles.xml"):
                continue
            dst.writestr(info, body)
        dst.writestr(part, xml)
        dst.writestr("xl/media/pad.bin", os.urandom(4 << 20), zipfile.ZIP_STORED)
    return out.getvalue()


@pytest.mark.parametrize(
    ("part", "content_type", "what"),
    [
        ("xl/sharedStrings.xml", "sharedStrings", "shared strings"),
        # Named as a sheet: openpyxl finds the strings by [Content_Types].xml, so do we.
        ("xl/worksheets/strings.xml", "sharedStrings", "shared strings"),
        ("xl/styles.xml", "styles", "styles"),
    ],
)
def test_a_workbook_whose_strings_or_styles_unpack_to_a_bomb_is_refused_unread(
    part: str, content_type: str, what: str
) -> None:
    """4 MB of padding beside 17 MB of repeated strings: the file's whole ratio passes
    (the red team's 4.4 MB file took 616 MB and 57 s of CPU in openpyxl); the part alone is
    refused before openpyxl reads anything, at once and naming what is too big."""
    xml = b'<sst xmlns="x">' + b"<si><t>a</t></si>" * 1_000_000 + b"</sst>"
    data = _padded_workbook(part, content_type, xml)
    assert len(data) < 6_000_000 and len(xml) > 16 << 20
    started = process_time()
    with pytest.raises(FileFormatError) as exc:
        read_table(data, "calls.xlsx")
    assert exc.value.code == "bad_xlsx" and what in str(exc.value)
    assert process_time() - started < 1.0


def test_a_workbook_with_ordinary_strings_is_still_read() -> None:
    xml = (
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        + b"<si><t>\xe5\x99\xaa\xe5\xa3\xb0</t></si>" * 10
        + b"</sst>"
    )
    data = _padded_workbook("xl/sharedStrings.xml", "sharedStrings", xml)
    table = read_table(data, "calls.xlsx")
    assert tuple(table.header[:2]) == ("工单号", "来电号码")


# -- call times as Chinese Excel and WPS write them -----------------------------------------


@pytest.mark.parametrize(
    ("value", "local"),
    [
        ("2026/11/3 下午 3:05:00", (2026, 11, 3, 15, 5, 0)),
        ("2026-11-03 上午9:05", (2026, 11, 3, 9, 5, 0)),
        ("2026年11月3日 15时05分", (2026, 11, 3, 15, 5, 0)),
        ("2026年11月3日15时5分30秒", (2026, 11, 3, 15, 5, 30)),
        ("2026年11月3日 下午3点", (2026, 11, 3, 15, 0, 0)),
        ("2026年11月3日 下午3点半", (2026, 11, 3, 15, 30, 0)),
        ("2026/11/3 上午 12:30", (2026, 11, 3, 0, 30, 0)),  # 12 上午 is just after midnight
        ("2026/11/3 下午 12:30", (2026, 11, 3, 12, 30, 0)),  # 12 下午 is noon
        ("2026/11/3 上午 12:00:00", (2026, 11, 3, 0, 0, 0)),
        ("2026/11/3 下午 15:05", (2026, 11, 3, 15, 5, 0)),  # 24-hour with the mark: as written
        ("2026-11-03 3:05 PM", (2026, 11, 3, 15, 5, 0)),
        ("2026-11-03 3:05:07 p.m.", (2026, 11, 3, 15, 5, 7)),
        ("2026-11-03 12:05 AM", (2026, 11, 3, 0, 5, 0)),
        ("2026-11-03 晚上8:00", (2026, 11, 3, 20, 0, 0)),
        ("２０２６／１１／０３　１５：０５", (2026, 11, 3, 15, 5, 0)),  # full-width
        ("２０２６年１１月３日　下午３：０５", (2026, 11, 3, 15, 5, 0)),
        ("2026-11-03 15：05", (2026, 11, 3, 15, 5, 0)),  # a Chinese colon
        ("2026.11.03 15:05", (2026, 11, 3, 15, 5, 0)),
        ("2026-11-03 15:05   ", (2026, 11, 3, 15, 5, 0)),  # trailing spaces
        ("  2026-11-03  15:05", (2026, 11, 3, 15, 5, 0)),
        ("2026-11-03T15:05", (2026, 11, 3, 15, 5, 0)),
        ("2026/11/3 15:05:07.250", (2026, 11, 3, 15, 5, 7)),
    ],
)
def test_call_times_as_chinese_excel_and_wps_write_them(value: str, local: tuple[int, ...]) -> None:
    expected = datetime(*local, tzinfo=TZ).astimezone(UTC)
    assert parse_call_time(value, TZ, NOW) == expected


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("2026/11/3 下午", "no_time_of_day"),
        ("2026年11月3日", "no_time_of_day"),
        ("2026/11/3", "no_time_of_day"),
        ("46329", "no_time_of_day"),  # an Excel date number without a fraction of a day
        (46329, "no_time_of_day"),
        ("2026/11/3 上午 15:05", "bad_time"),  # morning at 3 pm
        ("2026-11-03 下午 0:30", "bad_time"),
        ("2026-11-03 25:00", "bad_time"),
        ("2026-11-03 15:61", "bad_time"),
        ("2026-11-03 15", "bad_time"),  # an hour alone
        ("11/03/2026 15:05", "bad_time"),  # month or day first: which one is not known
        ("2026/11/31 下午 3:05", "bad_time"),
    ],
)
def test_call_times_that_cannot_be_read_for_sure_are_refused(value: object, code: str) -> None:
    with pytest.raises(CellError) as exc:
        parse_call_time(value, TZ, NOW)
    assert exc.value.code == code


def test_a_date_alone_names_its_value_and_how_to_fix_it() -> None:
    with pytest.raises(CellError) as exc:
        parse_call_time("2026/11/3", TZ, NOW)
    assert "2026/11/3" in str(exc.value) and "time_of_day" in str(exc.value)


# -- date-only cells and a separate time column ----------------------------------------------


def _date_only_book(formats: list[str]) -> openpyxl.Workbook:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER[:6])
    for i, number_format in enumerate(formats):
        sheet.append([f"D{i}", "13800138000", datetime(2026, 11, 3), 60, "路灯不亮", "赵"])
        sheet.cell(row=i + 2, column=3).number_format = number_format
    return book


def test_an_xlsx_date_cell_without_a_time_is_a_bad_row_not_midnight() -> None:
    book = _date_only_book(
        ["yyyy-mm-dd", 'yyyy"年"m"月"d"日"', "[$-804]yyyy/m/d;@", "yyyy-mm-dd hh:mm", "m/d/yy h:mm"]
    )
    rows = parse(_xlsx(book))
    assert [r.ok for r in rows] == [False, False, False, True, True]
    for bad in rows[:3]:
        (error,) = bad.errors
        assert (error.row, error.column, error.code) == (bad.row, "来电时间", "no_time_of_day")
        assert "2026-11-03" in error.text()
    # Formatted with the time, midnight is a real time: a call at 00:00.
    assert rows[3].submission is not None
    assert rows[3].submission.received_at == datetime(2026, 11, 2, 16, 0, tzinfo=UTC)


def _two_columns(date_value: object, time_value: object) -> CallRow:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["工单号", "来电号码", "来电日期", "来电时刻", "通话时长", "诉求内容", "话务员"])
    sheet.append(["T1", "13800138000", date_value, time_value, 60, "路灯不亮", "赵"])
    mapping = ColumnMapping(called_at="来电日期", time_of_day="来电时刻")
    (row,) = parse(_xlsx(book), mapping)
    return row


@pytest.mark.parametrize(
    ("date_value", "time_value"),
    [
        (datetime(2026, 11, 3), time(15, 5)),
        (datetime(2026, 11, 3), 0.6284722222222222),  # Excel's fraction of a day
        ("2026/11/3", "下午 3:05"),
        ("2026年11月3日", "15时05分"),
        ("2026-11-03", "15:05:00"),
        (46329, "3:05 PM"),
        (datetime(2026, 11, 3, 15, 5), None),  # the date column has it all
    ],
)
def test_a_separate_time_column_gives_a_date_only_call_its_time(
    date_value: object, time_value: object
) -> None:
    row = _two_columns(date_value, time_value)
    assert row.submission is not None, row.errors
    assert row.submission.received_at == datetime(2026, 11, 3, 7, 5, tzinfo=UTC)


def test_a_bad_time_of_day_names_the_time_column() -> None:
    row = _two_columns("2026/11/3", "下午茶")
    assert [(e.column, e.code) for e in row.errors] == [("来电时刻", "bad_time_of_day")]
    row = _two_columns("2026/11/3", None)  # no time anywhere
    assert [(e.column, e.code) for e in row.errors] == [("来电日期", "no_time_of_day")]


# -- workbooks of several sheets ------------------------------------------------------------


def _calls_sheet(book: openpyxl.Workbook, title: str, rows: list[list[object]]) -> None:
    sheet = book.create_sheet(title)
    sheet.append(HEADER[:6])
    for row in rows:
        sheet.append(row)


def test_every_sheet_with_the_calls_is_read_and_the_others_are_named() -> None:
    book = openpyxl.Workbook()
    book.active.title = "说明"
    book.active.append(["本表为12345热线11月话务记录"])
    _calls_sheet(book, "11月1日", [["A1", "13800138000", "2026-11-01 09:00", 60, "漏水", "赵"]])
    _calls_sheet(book, "11月2日", [["A2", "13900139000", "2026-11-02 上午", 60, "噪音", "钱"]])
    hidden = book.create_sheet("旧数据")
    hidden.append(HEADER[:6])
    hidden.sheet_state = "hidden"
    book.create_sheet("空白")
    parsed = parse_file(_xlsx(book), ColumnMapping(), tz=TZ, now=NOW)
    assert [(s.name, s.read, s.reason) for s in parsed.sheets] == [
        ("说明", False, "no_columns"),
        ("11月1日", True, ""),
        ("11月2日", True, ""),
        ("旧数据", False, "hidden"),
        ("空白", False, "empty"),
    ]
    assert "来电号码" in parsed.sheets[0].missing
    assert parsed.sheets[0].text().startswith("sheet '说明': skipped (no columns 工单号")
    rows = list(parsed.rows)
    assert [(r.row, r.ok) for r in rows] == [(2, True), (2, False)]
    # Two sheets read: a bad row says which sheet it is on.
    assert [(e.sheet, e.row, e.code) for e in rows[1].errors] == [("11月2日", 2, "no_time_of_day")]


def test_one_sheet_read_keeps_its_errors_without_a_sheet_name() -> None:
    book = openpyxl.Workbook()
    book.active.title = "汇总"
    book.active.append(["合计", 1])
    _calls_sheet(book, "话务", [["B1", "13800138000", "明天", 60, "漏水", "赵"]])
    parsed = parse_file(_xlsx(book), ColumnMapping(), tz=TZ, now=NOW)
    ((error,),) = [r.errors for r in parsed.rows]
    assert error.sheet == "" and error.code == "bad_time"
    assert [s.name for s in parsed.skipped] == ["汇总"]


def test_a_workbook_without_the_columns_on_any_sheet_names_what_the_first_lacks() -> None:
    book = openpyxl.Workbook()
    book.active.append(["工单号", "备注"])
    book.create_sheet("二").append(["编号"])
    with pytest.raises(MissingColumns) as exc:
        parse_file(_xlsx(book), ColumnMapping(), tz=TZ, now=NOW)
    assert "来电号码" in exc.value.missing


def test_a_csv_has_no_sheets() -> None:
    data = csv_bytes([HEADER[:6], ["C1", "13800138000", "2026-11-30 14:05", "60", "漏水", "赵"]])
    parsed = parse_file(data, ColumnMapping(), tz=TZ, now=NOW)
    assert parsed.sheets == () and [r.ok for r in parsed.rows] == [True]


def test_a_cell_longer_than_the_csv_module_allows_is_a_bad_row_not_a_crash() -> None:
    # Python's csv stops at 131,072 characters a field (csv.Error, mid-import); a call
    # centre's note can be that long: it is a row too long, and the next call is read.
    data = csv_bytes(
        [
            HEADER[:6],
            ["L1", "13800138000", "2026-11-30 14:05", "60", "很长" * 100_000, "赵"],
            ["L2", "13800138001", "2026-11-30 14:06", "60", "漏水", "赵"],
        ]
    )
    rows = parse(data)
    assert [(r.row, r.ok) for r in rows] == [(2, False), (3, True)]
    assert [(e.column, e.code) for e in rows[0].errors] == [("诉求内容", "too_long")]


def test_an_unclosed_quote_that_swallows_the_next_calls_is_a_bad_row() -> None:
    # A cell that opens with a quote never closed reads the next records into itself up to
    # the next quote of the file: the calls on those lines were imported as one case's
    # text, silently. The row is refused saying how many lines it swallowed.
    text = (
        "工单号,来电号码,来电时间,通话时长,诉求内容,话务员\r\n"
        'S1,13800138400,2026-11-30 10:00,5,"你们到底管不管,A\r\n'
        "S2,13800138401,2026-11-30 10:01,5,第二个来电,A\r\n"
        "S3,13800138402,2026-11-30 10:02,5,第三个来电,A\r\n"
        'S4,13800138403,2026-11-30 10:03,5,"第四个 ""引号"" 来电",A\r\n'
    )
    rows = parse(text.encode("gbk"))
    assert not any(r.ok for r in rows)
    (error,) = rows[0].errors
    assert (error.row, error.column, error.code) == (2, "诉求内容", "unclosed_quote")
    assert error.params == {"lines": 3} and "3 lines" in error.text()


def test_a_quoted_cell_with_line_breaks_and_commas_is_one_call() -> None:
    body = "噪音扰民,夜里施工\n第二行, 还有逗号\n第三行"
    data = csv_bytes([HEADER[:6], ["Q1", "13800138000", "2026-11-30 14:05", "60", body, "赵"]])
    (row,) = parse(data)
    assert row.ok and row.submission is not None and row.submission.body == body


def test_a_title_line_does_not_make_a_cell_with_commas_on_its_lines_a_swallowed_call() -> None:
    body = "噪音扰民\n第二行, 还有逗号, 又一个"
    data = csv_bytes(
        [
            ["12345热线话务记录 2026-11-30"],
            HEADER[:6],
            ["Q1", "13800138000", "2026-11-30 14:05", "60", body, "赵"],
        ]
    )
    (row,) = parse(data)
    assert row.ok and row.row == 3


def test_a_styled_cell_far_below_and_right_does_not_make_the_sheet_take_minutes() -> None:
    # A cell touched at the sheet's far corner (formatted, then emptied) makes openpyxl
    # read every row up to it as wide as it: 5 KB of XLSX was 30,000 rows x 16,384 cells
    # read one by one (the full 1,048,576 rows: hours). Rows absent from the file are
    # skipped at once; the calls and their row numbers are as Excel shows them.
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER[:6])
    sheet.append(["F1", "13800138000", datetime(2026, 11, 30, 14, 5), 60, "漏水", "赵"])
    sheet.cell(row=5, column=1, value="F2")
    for column, value in enumerate(["13800138001", "2026-11-30 14:06", 60, "路灯", "赵"], start=2):
        sheet.cell(row=5, column=column, value=value)
    sheet.cell(row=30_000, column=16_384).font = openpyxl.styles.Font(bold=True)
    data = _xlsx(book)
    started = process_time()
    rows = list(parse_file(data, ColumnMapping(), tz=TZ, now=NOW).rows)
    assert process_time() - started < 5  # seconds of CPU; it took over 20 before
    assert [(r.row, r.ok) for r in rows] == [(2, True), (5, True)]


def test_a_serial_number_written_with_its_fraction_is_a_call_at_midnight() -> None:
    # An export writing call times as serial numbers with ten decimals gives a call at
    # 00:00:00 as 46356.0000000000: a time, not a date alone (refused before). Without a
    # decimal point (46356) it stays a date without a time.
    midnight = datetime(2026, 11, 29, 16, 0, tzinfo=UTC)  # 2026-11-30 00:00 in Shanghai
    assert parse_call_time("46356.0000000000", TZ, NOW) == midnight
    assert parse_call_time("46356.0", TZ, NOW) == midnight
    with pytest.raises(CellError) as exc:
        parse_call_time("46356", TZ, NOW)
    assert exc.value.code == "no_time_of_day"


# -- kinds of the mapping's own, and numbers withheld ---------------------------------------


def test_an_unknown_kind_names_the_mappings_own_kinds() -> None:
    mapping = ColumnMapping(kinds={"投诉举报": "complaint", "求助咨询": "inquiry"})
    row = ["G1", "13800138000", "2026/11/30 9:05", "60", "噪音", "王", "", "", "表扬信"]
    (bad,) = parse(csv_bytes([HEADER, row]), mapping)
    (error,) = bad.errors
    assert error.code == "bad_kind_of" and error.text() == (
        "unknown kind 表扬信: use 投诉举报, 求助咨询"
    )
    (default,) = parse(csv_bytes([HEADER, row]))
    assert "投诉, 建议, 咨询 or 表扬" in default.errors[0].text()  # no kinds of its own


@pytest.mark.parametrize(
    ("phone", "name"),
    [("匿名", ""), ("未知", "李四"), ("Anonymous", ""), ("", "匿名")],
)
def test_a_withheld_number_with_a_call_id_is_a_case_without_a_caller(phone: str, name: str) -> None:
    row = ["G7", phone, "2026/11/30 9:05", "60", "噪音扰民", "王", name, "", ""]
    (call,) = parse(csv_bytes([HEADER, row]))
    assert call.ok and call.anonymous and call.submission is not None
    assert call.submission.contact.phone == "" and call.submission.external_id == "G7"
    assert call.submission.contact.name == ("" if name == "匿名" else name)


def test_a_withheld_number_without_a_call_id_cannot_be_told_apart() -> None:
    rows = [
        HEADER,
        ["", "匿名", "2026/11/30 9:05", "60", "噪音扰民", "王", "", "", ""],
        ["G8", "", "2026/11/30 9:05", "60", "噪音扰民", "王", "", "", ""],  # no marker
    ]
    withheld, empty = parse(csv_bytes(rows))
    assert [e.code for e in withheld.errors] == ["withheld_without_id"]
    assert "匿名" in withheld.errors[0].text()
    assert [e.code for e in empty.errors] == ["required"] and not empty.anonymous
