"""Control characters and terminal escape sequences in mail: gone whole, the text around them
read as the sender wrote it.

A NUL inside a GBK character made the whole body undecodable (U+FFFD and Big5 garbage);
an escape sequence pasted from a terminal left ``[31m`` in the case text once its ESC went.
"""

from __future__ import annotations

import base64
import quopri
import random
import time

import pytest

from intake.email import ParsedMail, parse_message
from intake.mail.charset import decode_text
from tests.unit.test_email_parse import NOW

TEXT = "市民反映：道路积水严重，朱镕基路口尤甚，请尽快处理。"
SUBJECT = "反映道路积水"


def message(body: bytes, content_type: str, *, cte: str = "8bit", subject: bytes = b"") -> bytes:
    return (
        b"From: =?utf-8?B?" + base64.b64encode("张三".encode()) + b"?= <zhangsan@example.cn>\r\n"
        b"To: xfb@example.gov.cn\r\n"
        b"Subject: " + (subject or SUBJECT.encode("gbk")) + b"\r\n"
        b"Message-ID: <controls@example.cn>\r\n"
        b"Content-Type: " + content_type.encode() + b"\r\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body
    )


def parse(raw: bytes) -> ParsedMail:
    return parse_message(raw, received_at=NOW)


def gbk(text: str) -> bytes:
    return text.encode("gbk")


# (how the body was spoiled, body bytes): each must read as TEXT
SPOILED = {
    "NUL between characters": gbk("市民反映：") + b"\x00" + gbk(TEXT[5:]),
    "NUL inside a character": gbk(TEXT).replace(gbk("道"), gbk("道")[:1] + b"\x00" + gbk("道")[1:]),
    "NULs at the end": gbk(TEXT) + b"\x00\x00\x00",
    "BEL, backspace, DEL": b"\x07" + gbk(TEXT[:4]) + b"\x08\x7f" + gbk(TEXT[4:]),
    "colour on and off": b"\x1b[1;31m" + gbk(TEXT) + b"\x1b[0m",
    "colour inside a word": gbk(TEXT[:2])
    + b"\x1b[31m"
    + gbk(TEXT[2:6])
    + b"\x1b[m"
    + gbk(TEXT[6:]),
    "OSC window title": b"\x1b]0;terminal\x07" + gbk(TEXT),
    "OSC hyperlink": b"\x1b]8;;http://x.cn\x1b\\" + gbk(TEXT) + b"\x1b]8;;\x1b\\",
    "erase and cursor": b"\x1b[2J\x1b[H" + gbk(TEXT) + b"\x1b[K",
    "cut sequence at the end": gbk(TEXT) + b"\x1b[3",
}


@pytest.mark.parametrize("label", ["", "; charset=gb2312", "; charset=gbk", "; charset=utf-8"])
@pytest.mark.parametrize("spoiled", SPOILED.values(), ids=SPOILED.keys())
def test_controls_in_a_gbk_body_go_and_the_text_stays(spoiled: bytes, label: str) -> None:
    parsed = parse(message(spoiled, "text/plain" + label))
    assert parsed.submission.body == TEXT
    assert "\ufffd" not in parsed.full_text


# A sequence cut off before "</p>" takes the tag as its parameters, as a terminal would.
IN_HTML = {name: data for name, data in SPOILED.items() if not name.startswith("cut")}


@pytest.mark.parametrize("spoiled", IN_HTML.values(), ids=IN_HTML.keys())
def test_controls_in_quoted_printable_html_go(spoiled: bytes) -> None:
    html = b"<html><body><p>" + spoiled + b"</p></body></html>"
    raw = message(quopri.encodestring(html), "text/html; charset=gb2312", cte="quoted-printable")
    assert parse(raw).submission.body == TEXT


def test_controls_in_utf8_and_big5_bodies() -> None:
    traditional = "社區垃圾兩週沒有清運，請環保局派人處理。"
    big5 = traditional.encode("big5")
    spoiled = big5[:3] + b"\x00" + big5[3:] + b"\x1b[0m"
    assert parse(message(spoiled, "text/plain; charset=big5")).submission.body == traditional
    utf8 = b"\x1b[32m" + TEXT.encode() + b"\x00\x1b[0m"
    assert parse(message(utf8, "text/plain; charset=utf-8")).submission.body == TEXT


def test_controls_in_raw_and_encoded_subjects() -> None:
    raw_subject = b"\x1b[31m" + gbk(SUBJECT[:2]) + b"\x00" + gbk(SUBJECT[2:]) + b"\x1b[0m"
    assert parse(message(gbk(TEXT), "text/plain", subject=raw_subject)).submission.subject == (
        SUBJECT
    )
    word = b"=?gbk?B?" + base64.b64encode(raw_subject) + b"?="
    assert parse(message(gbk(TEXT), "text/plain", subject=word)).submission.subject == SUBJECT


def test_utf16_keeps_its_nul_bytes() -> None:
    """UTF-16 has a NUL in every ASCII character: those are not controls to remove."""
    assert decode_text("路灯 ok".encode("utf-16"), "utf-16").text == "路灯 ok"
    assert decode_text("路灯 ok".encode("utf-16-le"), "utf-16le").text == "路灯 ok"


def test_iso2022_jp_keeps_its_escapes() -> None:
    assert decode_text("日本語".encode("iso2022_jp")).text == "日本語"
    assert decode_text("日本語".encode("iso2022_jp"), "iso-2022-jp").text == "日本語"


def test_removal_is_listed_among_the_defects() -> None:
    parsed = parse(message(SPOILED["colour on and off"], "text/plain; charset=gbk"))
    assert "body: control characters and terminal escape sequences removed" in parsed.defects


# -- bytes that break a character --------------------------------------------------------------

DAO = gbk("道")  # b"\xb5\xc0"
BROKEN = {
    "line feed inside a character": gbk(TEXT).replace(DAO, DAO[:1] + b"\n" + DAO[1:]),
    "CR LF inside a character": gbk(TEXT).replace(DAO, DAO[:1] + b"\r\n" + DAO[1:]),
    "space inside a character": gbk(TEXT).replace(DAO, DAO[:1] + b" " + DAO[1:]),
    "stray 0xFF inside a character": gbk(TEXT).replace(DAO, DAO[:1] + b"\xff" + DAO[1:]),
    "stray byte before the text": b"\xff" + gbk(TEXT),
    "stray lead byte at the end": gbk(TEXT) + gbk("道")[:1],
}


@pytest.mark.parametrize("label", ["", "; charset=gb2312", "; charset=big5"])
@pytest.mark.parametrize("broken", BROKEN.values(), ids=BROKEN.keys())
def test_a_byte_inside_or_between_characters_is_dropped_not_replaced(
    broken: bytes, label: str
) -> None:
    parsed = parse(message(broken, "text/plain" + label))
    assert parsed.submission.body == TEXT
    assert any("stray byte(s) in or between characters dropped" in d for d in parsed.defects)


@pytest.mark.parametrize(
    ("encoding", "label", "text"),
    [
        ("gbk", "; charset=gbk", TEXT),
        ("gbk", "", TEXT),
        ("gb18030", "; charset=gb2312", TEXT + "刘䶮"),
        ("utf-8", "; charset=utf-8", TEXT),
        ("utf-8", "", TEXT),
        ("big5", "; charset=big5", "社區垃圾兩週沒有清運，請環保局派人處理。"),
    ],
)
@pytest.mark.parametrize("step", [75, 76, 77])
def test_8bit_lines_wrapped_by_bytes_read_whole(
    encoding: str, label: str, text: str, step: int
) -> None:
    """A client that wraps 8-bit lines every so many bytes cuts characters in pieces: each
    is read whole again, and a wrap that fell between characters stays a line break."""
    data = (text * 8).encode(encoding)
    wrapped = b"\r\n".join(data[i : i + step] for i in range(0, len(data), step))
    body = parse(message(wrapped, "text/plain" + label)).submission.body
    assert "\ufffd" not in body
    assert body.replace("\n", "") == text * 8


def test_stray_bytes_in_big5_and_utf8() -> None:
    traditional = "社區垃圾兩週沒有清運，請環保局派人處理。"
    big5 = traditional.encode("big5")
    spoiled = big5[:7] + b"\r\n" + big5[7:]  # inside 圾
    assert parse(message(spoiled, "text/plain; charset=big5")).submission.body == traditional
    utf8 = TEXT.encode()
    spoiled = utf8[:9] + b"\xff" + utf8[9:]
    assert parse(message(spoiled, "text/plain; charset=utf-8")).submission.body == TEXT


def test_many_broken_bytes_are_not_dropped_silently() -> None:
    """Bytes that are not in the charset at all are not read by dropping half of them."""
    decoded = decode_text(bytes(range(0x80, 0x100)) * 4, "gb2312")
    assert "stray byte" not in " ".join(decoded.defects)


def test_a_megabyte_of_random_bytes_is_decoded_in_linear_time() -> None:
    """Reading again around stray bytes must not cost a pass over the rest for each one: a
    1 MiB text part of noise took 10-16 s that way."""
    noise = random.Random(7).randbytes(1024 * 1024)
    for label in (None, "gb2312", "big5", "utf-8"):
        started = time.perf_counter()
        decode_text(noise, label)
        assert time.perf_counter() - started < 3.0, label
