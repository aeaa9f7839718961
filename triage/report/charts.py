"""The monthly report's charts as PNG bytes: drawn by matplotlib (Agg, no display), with a
CJK font so Chinese labels render, and byte-for-byte the same for the same figures (no
timestamp or software name in the PNG's metadata).

Used by the report email (inline `cid:` images), its `--output` folder, the board's
dashboard and the public performance page. Functions (each returns PNG bytes, about
600 px wide, for a phone's screen and an email's single column):

- ``volume_trend_png(months, *, title=..., ylabel=...)``: ``months`` is a sequence of
  ``(label, count)`` oldest first (e.g. the last 12 months' received counts);
- ``rates_by_department_png(departments, *, title=..., series=...)``: ``departments`` is the
  figures' ``departments`` list (``name``, ``response_rate``, ``resolution_rate``,
  ``satisfaction_rate`` as 0–1 or None); None draws no bar; no department: the ``empty``
  text;
- ``categories_png(counts, *, title=...)``: ``counts`` is a sequence of ``(label, count)``,
  drawn largest first (the month's volume by category); none: the ``empty`` text;
- ``cjk_font()``: the font family used, or None (then a warning was logged once and Chinese
  shows as boxes: a developer machine without fonts-wqy-microhei).

Matplotlib's figure objects are used directly (not pyplot, whose global state is not safe
across threads); rendering is serialised by a lock because the font cache is shared.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
# Fonts that carry Chinese, most wanted first; fonts-wqy-microhei is what `make test` installs.
CJK_FAMILIES = (
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Microsoft YaHei",
    "PingFang SC",
    "SimHei",
)
_FONT_FILES = ("wqy-microhei.ttc", "wqy-zenhei.ttc", "NotoSansCJK-Regular.ttc")
WIDTH_IN = 6.0
DPI = 100
COLOURS = ("#2b6cb0", "#38a169", "#d69e2e", "#c53030")


@cache
def cjk_font() -> str | None:
    """The family name of an installed font with Chinese glyphs, or None (warned once)."""
    known = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in known:
            return family
    # A font installed after matplotlib built its cache: add it by file.
    for path in font_manager.findSystemFonts():
        if path.rsplit("/", 1)[-1] in _FONT_FILES:
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError):  # pragma: no cover - a broken font file
                continue
            return str(font_manager.FontProperties(fname=path).get_name())
    log.warning(
        "no CJK font found (install fonts-wqy-microhei): Chinese chart labels show as boxes"
    )
    return None


def _figure(height_in: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=9)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # metadata: no "Software" (matplotlib's version) and no time, so equal figures give
    # equal bytes (cache validators, tests).
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _empty(ax: Any, text: str) -> None:
    """A chart with nothing to draw says so instead of showing bare axes."""
    ax.set_axis_off()
    ax.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        fontsize=12,
        color="#718096",
        transform=ax.transAxes,
    )


def _rc() -> dict[str, Any]:
    family = cjk_font()
    rc: dict[str, Any] = {"axes.unicode_minus": False, "svg.hashsalt": "minsheng"}
    if family:
        rc["font.family"] = [family, "DejaVu Sans"]
    return rc


def volume_trend_png(
    months: Sequence[tuple[str, int]],
    *,
    title: str = "近12个月受理量",
    ylabel: str = "件",
) -> bytes:
    """A line of counts per month, each point labelled with its count."""
    with _LOCK, matplotlib.rc_context(_rc()):
        fig = _figure(3.0)
        ax = fig.add_subplot()
        labels = [m for m, _ in months]
        values = [int(n) for _, n in months]
        xs = list(range(len(values)))
        ax.plot(xs, values, marker="o", color=COLOURS[0], linewidth=2)
        for x, v in zip(xs, values, strict=True):
            ax.annotate(
                str(v), (x, v), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8
            )
        ax.set_xticks(xs, [m[-5:] if len(m) > 5 else m for m in labels], rotation=45)
        ax.set_ylim(bottom=0, top=max([*values, 1]) * 1.2)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=11)
        _style(ax)
        fig.tight_layout()
        return _png(fig)


def rates_by_department_png(
    departments: Sequence[Mapping[str, Any]],
    *,
    title: str = "各部门三率",
    series: Sequence[str] = ("响应率", "解决率", "满意率"),
    empty: str = "暂无有效回访",
) -> bytes:
    """Grouped horizontal bars, one group per department (top to bottom as given), the
    three rates in per cent; a rate of None (no valid visit) draws no bar."""
    keys = ("response_rate", "resolution_rate", "satisfaction_rate")
    rows = list(departments)
    with _LOCK, matplotlib.rc_context(_rc()):
        fig = _figure(max(2.2, 0.9 + 0.55 * len(rows)))
        ax = fig.add_subplot()
        if not rows:
            fig.suptitle(title, fontsize=11)
            _empty(ax, empty)
            return _png(fig)
        height = 0.26
        for i, key in enumerate(keys):
            shown = [(j, float(r[key])) for j, r in enumerate(rows) if r.get(key) is not None]
            ys = [len(rows) - 1 - j + (1 - i) * height for j, _ in shown]
            ax.barh(
                ys, [v * 100 for _, v in shown], height=height, color=COLOURS[i], label=series[i]
            )
        ax.set_yticks(
            [len(rows) - 1 - j for j in range(len(rows))], [str(r.get("name", "")) for r in rows]
        )
        ax.set_xlim(0, 100)
        ax.set_xlabel("%")
        ax.set_ylim(-0.6, len(rows) - 0.4)
        fig.suptitle(title, fontsize=11)
        # Right-aligned with the axes: centred, long names (English) push it past the edge.
        ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=3, frameon=False)
        _style(ax)
        fig.tight_layout()
        return _png(fig)


def categories_png(
    counts: Sequence[tuple[str, int]],
    *,
    title: str = "受理量（按诉求类型）",
    limit: int = 12,
    empty: str = "暂无数据",
) -> bytes:
    """Horizontal bars of counts, largest at the top; at most ``limit`` bars."""
    rows = sorted(((str(k), int(v)) for k, v in counts), key=lambda kv: (-kv[1], kv[0]))[:limit]
    with _LOCK, matplotlib.rc_context(_rc()):
        fig = _figure(max(2.0, 0.8 + 0.35 * len(rows)))
        ax = fig.add_subplot()
        if not rows:
            ax.set_title(title, fontsize=11)
            _empty(ax, empty)
            return _png(fig)
        ys = list(range(len(rows)))[::-1]
        bars = ax.barh(ys, [v for _, v in rows], color=COLOURS[0])
        for bar, (_, v) in zip(bars, rows, strict=True):
            ax.annotate(
                str(v),
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                textcoords="offset points",
                xytext=(3, 0),
                va="center",
                fontsize=8,
            )
        ax.set_yticks(ys, [k for k, _ in rows])
        ax.set_xlim(0, max([v for _, v in rows] + [1]) * 1.15)
        ax.set_title(title, fontsize=11)
        _style(ax)
        fig.tight_layout()
        return _png(fig)
