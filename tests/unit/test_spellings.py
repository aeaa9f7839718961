"""How tracking numbers, query codes and usernames are read, whatever the keyboard did."""

from __future__ import annotations

import pytest

from triage.cases import normalise_query_code
from triage.directory import BadUsername, normalise_username, username_key
from triage.tracking_numbers import normalise_tracking_number


@pytest.mark.parametrize(
    "typed",
    [
        "MS-2026-000038",
        "MS‐2026‐000038",  # U+2010
        "MS‑2026‑000038",  # U+2011 non-breaking hyphen
        "MS–2026—000038",  # en dash, em dash
        "MS－2026－000038",  # full-width hyphen-minus
        "MS−2026−000038",  # minus sign
        "MS2026000038",
        "MS-2026-38",
        "ms-2026-38",
        "ＭＳ２０２６０００３８",
        "MS 2026 000038",
        "MS\u30002026\u3000000038",  # ideographic space
        "MS_2026_000038",
        "MS.2026.38",
        " MS - 2026 - 0038 ",
    ],
)
def test_harmless_spellings_are_the_same_number(typed: str) -> None:
    assert normalise_tracking_number(typed, "MS") == "MS-2026-000038"


@pytest.mark.parametrize(
    "typed",
    ["", "MS", "MS-2026", "MS-2026-0", "AB-2026-000038", "2026-000038", "MS-26-38", "MS-2026-3a"],
)
def test_what_cannot_be_a_number_is_none(typed: str) -> None:
    assert normalise_tracking_number(typed, "MS") is None


def test_a_long_serial_keeps_its_digits() -> None:
    assert normalise_tracking_number("MS-2026-1234567", "MS") == "MS-2026-1234567"
    assert normalise_tracking_number("xf 2027 5", "XF") == "XF-2027-000005"


@pytest.mark.parametrize(
    "typed", ["ZGU8TP", "ZGU8-TP", "zgu8 tp", "ＺＧＵ８ＴＰ", "ZG.U8_TP", "ZGU8—TP"]
)
def test_query_codes_lose_case_width_and_punctuation(typed: str) -> None:
    assert normalise_query_code(typed) == "ZGU8TP"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("Obs", "obs"), ("ｏｂｓ２", "obs2"), (" Wang.Li ", "wang.li"), ("li_wei-2", "li_wei-2")],
)
def test_usernames_are_stored_in_one_form(typed: str, stored: str) -> None:
    assert normalise_username(typed) == stored
    assert username_key(typed) == stored


@pytest.mark.parametrize(
    "typed", ["mal\x1bicious", "ad\u200dmin", "admin\u202e", "王伟", "a", "li wei", "li@wei", ""]
)
def test_names_that_cannot_be_typed_at_sign_in_are_refused(typed: str) -> None:
    with pytest.raises(BadUsername):
        normalise_username(typed)
