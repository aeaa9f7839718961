"""Caller keys: every way of writing the same number or address is one caller; the key does
not give the number away."""

from __future__ import annotations

import pytest

from triage.callers import alt_key, caller_key, caller_keys

SECRET = b"test secret"

SAME_MOBILE = [
    "13800138000",
    "138 0013 8000",
    "+86 13800138000",
    "+86-138-0013-8000",
    "0086-138-0013-8000",
    "0086 13800138000",
    "１３８００１３８０００",
    "138-0013-8000",
]


def test_every_format_of_a_mobile_is_one_caller() -> None:
    keys = {caller_key(phone, "", SECRET) for phone in SAME_MOBILE}
    assert len(keys) == 1
    (key,) = keys
    assert key is not None and len(key) == 32
    assert "13800138000" not in key and "8000" not in key


def test_landline_formats_are_one_caller_and_differ_from_others() -> None:
    landline = {
        caller_key(p, "", SECRET) for p in ("010-8765 4321", "(010)87654321", "+86 10 8765 4321")
    }
    assert len(landline) == 1
    assert landline != {caller_key("13800138000", "", SECRET)}
    assert caller_key("13800138001", "", SECRET) != caller_key("13800138000", "", SECRET)


def test_email_is_case_insensitive_and_phone_comes_first() -> None:
    a = caller_key("", "Wang.Xiaoming@Example.COM", SECRET)
    assert a == caller_key("", " wang.xiaoming@example.com ", SECRET)
    assert a == caller_key("", "ｗａｎｇ.xiaoming@example.com", SECRET)
    both = caller_key("138 0013 8000", "wang.xiaoming@example.com", SECRET)
    assert both == caller_key("13800138000", "", SECRET)
    assert alt_key("138 0013 8000", "WANG.xiaoming@example.com", SECRET) == a
    assert alt_key("", "wang.xiaoming@example.com", SECRET) is None
    assert caller_keys("13800138000", "wang.xiaoming@example.com", SECRET) == [both, a]


def test_anonymous_has_no_key_and_the_key_depends_on_the_secret() -> None:
    assert caller_key("", "", SECRET) is None
    assert caller_key("  ", "not an address", SECRET) is None
    assert caller_key("13800138000", "", SECRET) != caller_key("13800138000", "", b"other")
    with pytest.raises(ValueError):
        caller_key("13800138000", "", b"")


def test_an_oddly_typed_number_still_keys_by_its_digits() -> None:
    # A call centre's export may carry numbers normalise_phone refuses (a short service code).
    assert caller_key("12345", "", SECRET) == caller_key("1 2 3 4 5", "", SECRET)
    assert caller_key("123", "", SECRET) is None
