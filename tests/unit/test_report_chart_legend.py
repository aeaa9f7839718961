"""The rates chart's legend stays inside the picture when the series and department names are
long (English): it was centred over the axes, which long department names push right, so
"Satisfaction rate" ran off the right edge of the public page's chart."""

from __future__ import annotations

import io

from PIL import Image

from triage.report import charts

LONG = [
    {
        "name": "Emergency Management and Work Safety Bureau",
        "response_rate": 1.0,
        "resolution_rate": 0.8,
        "satisfaction_rate": 0.9,
    },
    {
        "name": "Housing and Urban-Rural Development Bureau",
        "response_rate": 0.9,
        "resolution_rate": 0.7,
        "satisfaction_rate": 0.95,
    },
]


def test_the_legend_of_long_names_is_not_cut_at_the_right_edge() -> None:
    png = charts.rates_by_department_png(
        LONG,
        title="The three rates by department, 2026-11",
        series=("Response rate", "Resolution rate", "Satisfaction rate"),
    )
    image = Image.open(io.BytesIO(png)).convert("L")
    width, height = image.size
    # The legend's band: above the axes, below the title.
    band = image.crop((width - 3, 0, width, height // 4))
    assert min(band.getdata()) > 240, "something is drawn against the right edge"
