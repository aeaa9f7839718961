"""Who calls, as a 12345 hotline counts callers: the main number. An extension is part of
how to call back, not of who calls; a local number typed without its area code is the
office's own area's (``[app] area_code``)."""

from __future__ import annotations

import pytest

from intake.normalise import normalise_phone
from triage.callers import area_code_digits, caller_key, caller_keys, caller_number

SECRET = b"test secret"

# One caller in Beijing (area code 010), as operators, forms and call logs write them.
BEIJING_MAIN = [
    "010-87654321",
    "010-8765 4321",
    "(010) 8765-4321",
    "（010）87654321",
    "+86 10 8765 4321",
    "0086-10-87654321",
    "８７６５４３２１",
    "8765 4321",
    "8765-4321",
    "87654321",
    "010-87654321 转 123",
    "010-87654321转8021",
    "010-87654321 分机 123",
    "010-87654321 ext. 123",
    "010-87654321 EXT 7",
    "010-87654321 x123",
    "010-87654321#123",
    "010-87654321-123",
    "8765 4321 转 123",
    "87654321-123",
    "8765 4321 ext. 5",
]

# Other callers: a neighbour's number, the same digits in Shanghai, a mobile.
OTHERS = ["010-87654322", "021-87654321", "(021) 8765 4321 转 123", "13800138000", "87654322"]


@pytest.mark.parametrize("typed", BEIJING_MAIN)
def test_every_form_of_the_main_number_is_one_caller_in_its_area(typed: str) -> None:
    assert caller_number(typed, "010") == "01087654321"
    assert caller_key(typed, "", SECRET, area_code="010") == caller_key("01087654321", "", SECRET)
    assert caller_keys(typed, "", SECRET, area_code="010") == [
        caller_key("01087654321", "", SECRET)
    ]


def test_other_numbers_and_other_areas_are_other_callers() -> None:
    ours = caller_key("010-87654321", "", SECRET, area_code="010")
    keys = {caller_key(p, "", SECRET, area_code="010") for p in OTHERS}
    # Three callers: 010-87654322 (also as 87654322), 021-87654321 (with or without its
    # extension) and the mobile.
    assert ours not in keys and len(keys) == 3
    assert caller_number("(021) 8765 4321 转 123", "010") == "02187654321"
    # In Shanghai's office the local number is Shanghai's.
    assert caller_number("8765 4321", "021") == "02187654321"


def test_without_an_area_code_a_local_number_stays_local_but_loses_its_extension() -> None:
    assert caller_number("8765 4321 转 123", "") == "87654321"
    assert caller_number("8765 4321", "") == "87654321"
    assert caller_number("010-87654321 ext. 9", "") == "01087654321"
    assert caller_key("87654321", "", SECRET) != caller_key("01087654321", "", SECRET)


def test_mobiles_service_numbers_and_foreign_numbers_are_not_given_an_area_code() -> None:
    assert caller_number("138 0013 8000", "010") == "13800138000"
    assert caller_number("400-810-5678", "010") == "4008105678"
    assert caller_number("+44 20 7946 0958", "010") == "+442079460958"
    assert caller_number("+44 20 7946 0958 ext. 12", "010") == "+442079460958"
    assert caller_number("", "010") is None and caller_number("电话", "010") is None


def test_the_extension_is_kept_for_the_call_back() -> None:
    """What is stored on the case keeps the extension; only the key drops it."""
    assert normalise_phone("8765 4321 转 123") == "87654321-123"
    assert normalise_phone("010-87654321 ext. 123") == "01087654321-123"
    assert normalise_phone("8765-4321") == "87654321"  # a dash inside a number is no extension
    assert normalise_phone("010-8765-4321") == "01087654321"
    assert normalise_phone("138-0013-8000") == "13800138000"


@pytest.mark.parametrize(
    ("configured", "digits"),
    [("010", "010"), ("10", "010"), ("0571", "0571"), ("571", "0571"), ("", ""), (" 021 ", "021")],
)
def test_the_configured_area_code_is_read_with_or_without_its_zero(
    configured: str, digits: str
) -> None:
    assert area_code_digits(configured) == digits


@pytest.mark.parametrize("bad", ["1", "01", "00571", "abc", "010-", "+8610"])
def test_a_malformed_area_code_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="area code"):
        area_code_digits(bad)
