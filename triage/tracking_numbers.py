"""Tracking numbers as people write them (MS-2026-000038, ms 2026 38, ＭＳ２０２６０００３８)."""

from __future__ import annotations

import re
import unicodedata

# What people put between the parts of a tracking number: any dash (hyphen, en and em dash,
# U+2010, minus, full-width), white space, and a few look-alikes typed on Chinese keyboards.
_NUMBER_SEPARATORS = "_./·・−一ー"
_COMPACT_NUMBER = re.compile(r"(?P<prefix>[A-Z]{1,6})(?P<year>(?:19|20|21)\d\d)(?P<serial>\d{1,9})")


def normalise_tracking_number(text: str, prefix: str | None) -> str | None:
    """The canonical tracking number (`MS-2026-000038`) of a spelling of it, or None if
    `text` cannot be one with this `prefix` (e.g. `MS-2026`, `AB-2026-000038`, `MS-2026-0`).

    Accepted: any case, full-width characters, any dash or white space between the parts or
    none (`MS‐2026‐000038`, `ms 2026 000038`, `MS2026000038`), an unpadded serial
    (`MS-2026-38`). ``prefix`` None: any prefix of letters (the search box, which knows no
    office's).
    """
    parts = tracking_number_parts(text)
    if parts is None:
        return None
    found_prefix, year, serial = parts
    if prefix is not None and found_prefix != prefix.upper():
        return None
    return f"{found_prefix}-{year}-{int(serial):06d}"


def tracking_number_parts(text: str) -> tuple[str, str, str] | None:
    """(prefix upper-cased, year, serial as written) of a spelling of a tracking number
    (`normalise_tracking_number`), or None; a serial of zeros is none."""
    compact = "".join(
        c
        for c in unicodedata.normalize("NFKC", text).upper()
        if not (c.isspace() or unicodedata.category(c) == "Pd" or c in _NUMBER_SEPARATORS)
    )
    found = _COMPACT_NUMBER.fullmatch(compact)
    if found is None or int(found["serial"]) == 0:
        return None
    return found["prefix"], found["year"], found["serial"]
