"""Input as people really type it: cleaned once at the boundary, phones validated."""

from __future__ import annotations

import re

import pytest

from intake import normalise
from intake.files import name_for_type
from intake.normalise import (
    PhoneError,
    clean_filename,
    clean_line,
    clean_text,
    nfkc,
    normalise_phone,
)
from intake.submission import Attachment, Channel, Contact, Submission


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("１３８００１３８０００", "13800138000"),
        ("138 0013 8000", "13800138000"),
        ("+86 138-0013-8000", "13800138000"),
        ("0086 13800138000", "13800138000"),
        ("010-8765 4321", "01087654321"),
        ("(0571) 87654321", "057187654321"),
        ("８７６５４３２１", "87654321"),
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+86 10 8765 4321", "01087654321"),
        ("+86 571 8765 4321", "057187654321"),
        ("010-87654321-8021", "01087654321-8021"),
        ("010-87654321转8021", "01087654321-8021"),
        ("(0571) 8765-4321 ext. 12", "057187654321-12"),
        ("400-810-5678", "4008105678"),
    ],
)
def test_phones_as_people_type_them(typed: str, stored: str) -> None:
    assert normalise_phone(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "-----",
        "( ) ( )",
        "12345",
        "95588",
        "+1",
        "1234567890123456",
        "12800138000",
        "电话",
        "0",
        "13800138000-12",
    ],
)
def test_things_that_are_not_phones(typed: str) -> None:
    with pytest.raises(PhoneError):
        normalise_phone(typed)


def test_control_and_bidi_characters_go_line_breaks_stay() -> None:
    assert clean_text("路灯\x00不亮\x1b[31m\r\n第二行\u202e") == "路灯不亮\n第二行"
    assert clean_line("  a\tb \n c  ") == "a b c"
    assert clean_text("a    ") == "a"
    # Characters that look like nothing do not make an empty text look written.
    for blank in ("\u3164" * 4, "\u2800" * 4, "\u00ad\u061c", "\U000e0041\U000e0042", "\u115f"):
        assert clean_text(blank) == "", repr(blank)
    assert clean_line("ＭＳ－２０２６－０００１２３") == "MS-2026-000123"
    # Chinese punctuation stays as Chinese readers write it; full-width letters do not.
    assert clean_text("路灯坏了，怎么办？（急！）：５０％") == "路灯坏了，怎么办？（急！）：50%"
    assert normalise_phone("（010）8765 4321") == "01087654321"


@pytest.mark.parametrize(
    ("typed", "clean"),
    [
        ("\x1b[31m红灯\x1b[0m坏了", "红灯坏了"),  # SGR colour, on and off
        ("\x1b[1;4;38;5;196m加粗\x1b[m", "加粗"),  # several parameters, bare reset
        ("\x1b[2J\x1b[H清屏后", "清屏后"),  # erase and cursor home
        ("\x1b]0;窗口标题\x07正文", "正文"),  # OSC ended by BEL
        ("\x1b]8;;http://x.cn\x1b\\链接\x1b]8;;\x1b\\", "链接"),  # OSC 8 hyperlink, ST
        ("\x1b(B字符集\x1b=", "字符集"),  # character-set and keypad escapes
        ("\x9b31m单字节CSI", "单字节CSI"),  # the one-character (C1) CSI
        ("半截\x1b[31", "半截"),  # a sequence cut off at the end
        ("\x00路\x07灯\x7f", "路灯"),  # NUL, BEL and DEL
    ],
)
def test_terminal_escape_sequences_go_whole(typed: str, clean: str) -> None:
    """Text pasted from a terminal: the sequences go with their parameters, no "[31m" left."""
    assert clean_text(typed) == clean
    assert clean_line(typed) == clean


def test_file_names_cannot_hide_what_they_are() -> None:
    assert clean_filename("a.png\x00.html") == "a.png.html"
    assert clean_filename("photo\u202egnp.exe") == "photognp.exe"
    assert clean_filename("../../etc/passwd") == "passwd"
    assert clean_filename("C:\\Users\\x\\照片.jpg") == "照片.jpg"
    assert clean_filename("\x00\u202e") == "attachment"
    long_name = clean_filename("照" * 500 + ".png")
    assert len(long_name) == 200 and long_name.endswith("照.png")
    assert name_for_type("photo.jpg.html", "image/png") == "photo.jpg.html.png"
    assert name_for_type("照片.JPG", "image/jpeg") == "照片.JPG"


def test_every_channel_is_cleaned_at_the_submission() -> None:
    from datetime import UTC, datetime

    s = Submission(
        channel=Channel.EMAIL,
        external_id="<a@b>\x00",
        received_at=datetime(2026, 11, 30, tzinfo=UTC),
        subject="  噪音\x1b  扰民 ",
        body="酒吧\u202e每晚唱歌\r\n到两点\x00",
        contact=Contact(name="王\x00小明", phone="１３８００１３８０００"),
        attachments=(Attachment("x\x00.png", "image/png", b"\x89PNG"),),
    )
    assert s.subject == "噪音 扰民"
    assert s.body == "酒吧每晚唱歌\n到两点"
    assert s.contact.name == "王小明" and s.contact.phone == "13800138000"
    assert s.attachments[0].filename == "x.png" and s.external_id == "<a@b>"


def test_a_mobile_as_a_call_centres_switch_logs_it_is_the_mobile() -> None:
    # A switch shows an out-of-town mobile with the trunk 0 it was dialled with, and call
    # records give +86 without its +: both were another caller than 13800138000 (no area
    # code starts 01 but Beijing's 010; no Chinese number has 13 digits).
    assert normalise_phone("013800138000") == "13800138000"
    assert normalise_phone("0138-0013-8000") == "13800138000"
    assert normalise_phone("8613800138000") == "13800138000"
    assert normalise_phone("01087654321") == "01087654321"
    with pytest.raises(PhoneError):
        normalise_phone("8612800138000")


def _reference_nfkc(value: str) -> str:
    """`nfkc` as first written: every part between Chinese punctuation normalised."""
    import unicodedata

    marks = "！，（）：；？～"
    return "".join(
        part if part in marks else unicodedata.normalize("NFKC", part)
        for part in re.split(f"([{marks}])", value)
    )


def test_nfkc_and_clean_text_skip_normalising_only_what_is_normal_already() -> None:
    """The fast paths (ASCII, text NFKC already but for its Chinese punctuation) give what
    normalising every part gives: over real complaints and random strings of punctuation,
    combining marks, jamo, full-width and compatibility characters."""
    import json
    import random
    from pathlib import Path

    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    texts = [
        row[key]
        for path in sorted(shared.glob("*/*.jsonl"))
        for row in map(json.loads, path.read_text(encoding="utf-8").splitlines()[:300])
        for key in ("subject", "body")
        if isinstance(row.get(key), str)
    ]
    rng = random.Random(7)
    alphabet = list(
        "！，（）：；？～,.!aZ１Ａ가\u1100\u1161\u11a8\u0301\u0308\u3099\u309a\u0915\u093c"
        "\u200b\x00\x1b[\r\n\t ㈱①ﬁſ\u212a\u2028éｶﾞ\uff9e\u0cd5\u0cbf红"
    )
    texts += ["".join(rng.choices(alphabet, k=rng.randrange(12))) for _ in range(20_000)]
    for text in texts:
        assert nfkc(text) == _reference_nfkc(text), repr(text)
        if "\x1b" not in text:  # (escape sequences: tested above)
            reference = _reference_nfkc(normalise._LINE_BREAKS.sub("\n", text))
            assert clean_text(text) == normalise._UNSAFE.sub("", reference).strip(), repr(text)
