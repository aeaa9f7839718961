"""What the search index holds of a text and how a query is cut and highlighted: no database."""

from __future__ import annotations

from triage.search import excerpt, highlight, search_terms
from triage.search_index import (
    BODY,
    CONTACT,
    MASKED_BODY,
    MASKED_FIELDS,
    NUMBER,
    REPLY,
    STAFF_FIELDS,
    CaseText,
    case_rows,
    text_grams,
)


def _grams(*pieces: str) -> set[int]:
    found: set[int] = set()
    for piece in pieces:
        found |= text_grams(piece)
    return found


def test_grams_are_bigrams_of_chinese_and_trigrams_of_latin_words() -> None:
    assert text_grams("噪音扰民") == _grams("噪音", "音扰", "扰民")
    assert text_grams("噪音") and text_grams("噪") == set()
    # Full-width and upper case are the same word; punctuation ends a run.
    assert text_grams("ＭＳ－２０２６") == text_grams("ms-2026") == _grams("2026")
    assert text_grams("物业，停车") == _grams("物业", "停车")
    assert text_grams("ab") == set()


def test_personal_data_is_in_staff_fields_only() -> None:
    rows = case_rows(
        CaseText(
            1,
            "MS-2026-777777",
            "",
            "王小明反映楼道噪音，电话13800138000。",
            "王小明",
            "13800138000",
            "xm@example.com",
            replies=["已回复王小明"],
        )
    )
    # What the masks hide (王**, 138****8000) is only for staff; what they show is for both.
    for gram in _grams("王小明", "0013"):
        assert rows[gram] & STAFF_FIELDS and not rows[gram] & MASKED_FIELDS, gram
    noise = next(iter(text_grams("噪音")))
    assert rows[noise] == BODY | MASKED_BODY
    assert rows[next(iter(text_grams("已回")))] == REPLY
    assert rows[next(iter(text_grams("777777")))] & NUMBER
    assert rows[next(iter(text_grams("8000")))] & MASKED_BODY
    assert rows[next(iter(text_grams("example")))] & CONTACT


def test_search_terms_split_at_spaces_except_a_phone() -> None:
    assert search_terms("  路灯   漆黑 ") == ["路灯", "漆黑"]
    assert search_terms("138 0013 8000") == ["138 0013 8000"]
    assert search_terms("") == []


def test_highlight_marks_each_term_in_any_case_and_a_phone_however_spaced() -> None:
    assert highlight("Fire exit locked, fire!", ["fire"]) == [
        ("Fire", True),
        (" exit locked, ", False),
        ("fire", True),
        ("!", False),
    ]
    assert highlight("电话 138-0013-8000", ["13800138000"]) == [
        ("电话 ", False),
        ("138-0013-8000", True),
    ]
    assert highlight("<b>", ["b"]) == [("<", False), ("b", True), (">", False)]


def test_excerpt_cuts_around_the_first_match() -> None:
    text = "甲" * 100 + "噪音" + "乙" * 100
    pieces = excerpt(["没有", text], ["噪音"], width=5)
    assert pieces == [
        ("…", False),
        ("甲" * 5, False),
        ("噪音", True),
        ("乙" * 5, False),
        ("…", False),
    ]
    assert excerpt(["没有"], ["噪音"]) is None
