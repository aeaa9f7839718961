"""Query codes: short, readable on the phone, stored only as a hash."""

from __future__ import annotations

from triage.cases import (
    QUERY_CODE_ALPHABET,
    check_query_code,
    derived_query_code,
    hash_query_code,
    new_query_code,
)


def test_codes_avoid_letters_that_sound_or_look_alike() -> None:
    codes = {new_query_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == 6 and set(c) <= set(QUERY_CODE_ALPHABET) for c in codes)
    assert not set("01ILO") & set(QUERY_CODE_ALPHABET)


def test_stored_hash_checks_the_code_as_typed_or_read_out() -> None:
    stored = hash_query_code("AB3DEF")
    assert "AB3DEF" not in stored
    assert check_query_code(stored, "AB3DEF")
    assert check_query_code(stored, " ab3 def ")
    assert not check_query_code(stored, "AB3DEG")
    assert not check_query_code("garbage", "AB3DEF")


def test_derived_code_is_stable_per_form_and_secret() -> None:
    a = derived_query_code("secret", "form:abc")
    assert a == derived_query_code("secret", "form:abc")
    assert a != derived_query_code("secret", "form:abd")
    assert a != derived_query_code("other", "form:abc")
    assert len(a) == 6 and set(a) <= set(QUERY_CODE_ALPHABET)


def test_keyed_hashes_need_the_key_and_old_scrypt_hashes_still_open() -> None:
    key = b"application-secret"
    stored = hash_query_code("AB3DEF", key=key)
    assert stored.startswith("hmac$")
    assert check_query_code(stored, "ab3-def", key)
    assert not check_query_code(stored, "AB3DEF", b"another-secret")
    assert not check_query_code(stored, "AB3DEF")  # no key: no way to check
    assert check_query_code(hash_query_code("AB3DEF"), "AB3DEF", key)  # scrypt, from before


def test_each_character_of_a_code_is_uniform_over_the_alphabet() -> None:
    """31,000 codes: every position takes every character of the alphabet about equally
    often (each of 31 x 6 counts within 1,000 +- 200; a chance failure is below 1e-9)."""
    from collections import Counter

    codes = [new_query_code() for _ in range(31_000)]
    for position in range(6):
        counts = Counter(code[position] for code in codes)
        assert set(counts) == set(QUERY_CODE_ALPHABET)
        assert all(800 <= n <= 1200 for n in counts.values()), (position, counts)
