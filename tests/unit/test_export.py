"""CSV that opens right in Excel on Chinese Windows and cannot run anything there."""

from __future__ import annotations

import csv
import io

from triage.export import FIELDS, csv_cell, write_csv


def test_formula_cells_are_neutralised() -> None:
    for dangerous in (
        '=HYPERLINK("http://evil.example","点我")',
        "+1+1",
        "-2+3",
        "@SUM(A1:A2)",
        "\t=1+1",
        " =1+1",
        "＝1+1",
        "＋１",
    ):
        assert csv_cell(dangerous).startswith("'"), dangerous
    assert csv_cell("路灯不亮") == "路灯不亮"
    assert csv_cell(-0.5) == -0.5 and csv_cell(None) is None and csv_cell(True) is True
    assert csv_cell(["a", 1]) == '["a", 1]'
    assert csv_cell("a\x00b\x1bc") == "abc"


def test_csv_has_a_byte_order_mark_and_reads_back() -> None:
    out = io.StringIO()
    n = write_csv(
        [{f: "" for f in FIELDS} | {"subject": "=cmd|' /C calc'!A0", "body": "噪音"}], out
    )
    data = out.getvalue().encode("utf-8")
    assert n == 1 and data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0]["subject"] == "'=cmd|' /C calc'!A0" and rows[0]["body"] == "噪音"
