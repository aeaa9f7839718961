"""The report's charts (triage/report/charts.py): PNGs whose bytes depend on the figures
only (no time, no software version), drawn with a Chinese font when one is installed."""

from __future__ import annotations

import struct
from pathlib import Path

from matplotlib import font_manager, ft2font

from triage.report import charts

TREND = [(f"2026-{m:02d}", m * 7) for m in range(1, 13)]
DEPARTMENTS = [
    {
        "name": "区城市管理局",
        "response_rate": 0.9,
        "resolution_rate": 0.7,
        "satisfaction_rate": 0.8,
    },
    {
        "name": "区教育体育局",
        "response_rate": 1.0,
        "resolution_rate": None,
        "satisfaction_rate": None,
    },
]


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    out, i = [], 8
    while i < len(png):
        (length,) = struct.unpack(">I", png[i : i + 4])
        kind = png[i + 4 : i + 8]
        out.append((kind, png[i + 8 : i + 8 + length]))
        i += 12 + length
    return out


def _size(png: bytes) -> tuple[int, int]:
    ihdr = dict(_chunks(png))[b"IHDR"]
    return struct.unpack(">II", ihdr[:8])


def test_charts_are_stable_pngs_without_time_or_software() -> None:
    for draw in (
        lambda: charts.volume_trend_png(TREND),
        lambda: charts.rates_by_department_png(DEPARTMENTS),
        lambda: charts.categories_png([("噪音", 5), ("物业", 9)]),
        lambda: charts.rates_by_department_png([]),
        lambda: charts.categories_png([]),
    ):
        first, second = draw(), draw()
        assert first == second
        kinds = [k for k, _ in _chunks(first)]
        assert b"tIME" not in kinds
        texts = b" ".join(v for k, v in _chunks(first) if k in (b"tEXt", b"iTXt", b"zTXt"))
        assert b"Software" not in texts and b"matplotlib" not in texts.lower()
        width, height = _size(first)
        assert width == 600 and 150 <= height <= 800


def test_different_figures_draw_different_charts() -> None:
    assert charts.volume_trend_png(TREND) != charts.volume_trend_png([*TREND[:-1], ("2026-12", 0)])


def test_a_chinese_font_is_used_when_installed() -> None:
    if not Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc").exists():
        return  # a developer machine without fonts-wqy-microhei: charts warn and still draw
    family = charts.cjk_font()
    assert family in charts.CJK_FAMILIES
    # The font matplotlib resolves for that family has the glyphs of the labels.
    path = font_manager.findfont(
        font_manager.FontProperties(family=family), fallback_to_default=False
    )
    font = ft2font.FT2Font(path)
    assert all(font.get_char_index(ord(c)) for c in "民声月报受理量各部门三率")


def test_the_categories_chart_counts_the_kinds_by_their_chinese_names() -> None:
    from triage.report.email import categories

    figures = {
        "by_kind": {"complaint": 7, "inquiry": 2, "praise": 1, "other": 1},
        "by_department": {"urban": 9},
        "departments": [{"code": "urban", "name": "区住房和城乡建设局"}],
    }
    assert categories(figures) == [("投诉", 7), ("咨询", 2), ("表扬", 1), ("other", 1)]
    assert categories(figures, {"complaint": "Complaint"})[0] == ("Complaint", 7)
    assert categories({"by_kind": {}}) == []
