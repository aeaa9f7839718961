"""Hanzi that GBK adds to GB2312 (镕, 喆, 堃, 昇, 嬛…) read as the sender wrote them.

They are rare in running text but common in people's names, so a From name, a short subject
or a file name may hold nothing else that is not ASCII. Read as Big5 or Windows-1252 they
come out as other characters (镕 → 噷 or ``éF``), which a person cannot put right. Each case
here is raw 8-bit (no RFC 2047 word) unless it says otherwise, with and without a charset
label, and genuine Big5 mail must still read as traditional characters.
"""

from __future__ import annotations

import base64

import pytest

from intake.email import ParsedMail, parse_message
from intake.mail.charset import decode_text
from tests.unit.test_email_parse import NOW

# Each alone is not common Big5 (玥 alone is not here: its bytes are Big5's 則, a common
# character, and two bytes cannot tell; 张玥 can, and is among the names).
GBK_ONLY_CHARS = "镕喆堃昇嬛赟"
# (text, as a subject or name a person writes it): each holds a GBK-only character.
NAMES = ["镕", "朱镕基", "陶喆", "王堃", "刘昇", "甄嬛传", "李赟", "张玥", "王珺"]
SUBJECTS = [
    "镕",
    "Re: 镕",
    "关于朱镕基路的投诉",
    "陶喆反映噪音",
    "堃",
    "昇 test",
    "《甄嬛传》剧组扰民",
    "嬛嬛",
]


def gbk_mail(
    subject: bytes,
    from_name: bytes,
    body: bytes,
    filename: bytes,
    *,
    charset: str | None,
) -> bytes:
    """A multipart mail with every given piece as raw bytes; the text part labelled
    ``charset`` (no charset parameter at all when None)."""
    label = f"; charset={charset}".encode() if charset else b""
    return (
        b"From: " + from_name + b" <citizen@example.cn>\r\n"
        b"To: xfb@example.gov.cn\r\n"
        b"Subject: " + subject + b"\r\n"
        b"Date: Mon, 02 Mar 2026 15:58:00 +0800\r\n"
        b"Message-ID: <gbk-names@example.cn>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain"
        + label
        + b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + body
        + b"\r\n--b1\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="' + filename + b'"\r\n\r\n'
        b"%PDF-1.4 minimal\r\n--b1--\r\n"
    )


def parse(raw: bytes) -> ParsedMail:
    return parse_message(raw, received_at=NOW)


@pytest.mark.parametrize("charset", [None, "gbk", "gb2312", "big5", "us-ascii", "iso-8859-1"])
@pytest.mark.parametrize("text", SUBJECTS)
def test_gbk_only_subject_body_and_file_name_read_as_written(
    text: str, charset: str | None
) -> None:
    """Subject, body and file name all raw GBK; the text part's label, if any, lies or not."""
    data = text.encode("gbk")
    parsed = parse(gbk_mail(data, b"=?utf-8?B?5byg5LiJ?=", data, data + b".pdf", charset=charset))
    assert parsed.submission.subject == text
    assert parsed.submission.body == text
    # A colon is not allowed in a Windows file name: it becomes "_".
    assert [a.filename for a in parsed.submission.attachments] == [text.replace(":", "_") + ".pdf"]


@pytest.mark.parametrize("name", NAMES)
def test_gbk_only_from_name_read_as_written(name: str) -> None:
    raw = gbk_mail(b"x", name.encode("gbk"), "路灯坏了".encode("gbk"), b"a.pdf", charset=None)
    parsed = parse(raw)
    assert parsed.submission.contact.name == name
    assert parsed.submission.contact.email == "citizen@example.cn"


@pytest.mark.parametrize("name", NAMES)
def test_gbk_only_name_in_a_gb2312_encoded_word(name: str) -> None:
    """``=?gb2312?B?…?=`` over GBK bytes, the usual label of Chinese webmail."""
    word = b"=?gb2312?B?" + base64.b64encode(name.encode("gbk")) + b"?="
    parsed = parse(gbk_mail(word, word, "路灯坏了".encode("gbk"), b"a.pdf", charset="gb2312"))
    assert parsed.submission.contact.name == name
    assert parsed.submission.subject == name


def test_each_gbk_only_character_alone_in_each_charset_guess() -> None:
    """The hardest case: one such character and nothing else, labelled or not."""
    for char in GBK_ONLY_CHARS:
        for label in (None, "gbk", "gb2312", "big5", "utf-8", "us-ascii"):
            decoded = decode_text(char.encode("gbk"), label)
            assert (decoded.text, decoded.charset) == (char, "gb18030"), (char, label)


def test_gb18030_four_byte_name_read_as_written() -> None:
    """䶮 (CJK extension A) exists only in GB18030, as four bytes."""
    for text in ("刘䶮", "䶮"):
        assert decode_text(text.encode("gb18030")).text == text
        assert decode_text(text.encode("gb18030"), "gb2312").text == text


TRADITIONAL = [
    "我家樓下的燒烤店每天營業到凌晨兩點，油煙和噪音嚴重擾民，請儘快處理。",
    "社區垃圾兩週沒有清運",
    "林",
    "陳大文",
    "關於路燈問題",
    "臺北市政府",
    "劉德華",
    "這是測試",
]


@pytest.mark.parametrize("text", TRADITIONAL)
def test_genuine_big5_still_reads_as_traditional(text: str) -> None:
    data = text.encode("big5")
    assert decode_text(data, "big5").text == text
    raw = gbk_mail(data, data, data, data + b".pdf", charset="big5")
    parsed = parse(raw)
    assert parsed.submission.body == text
    assert parsed.submission.contact.name == text


@pytest.mark.parametrize("text", [t for t in TRADITIONAL if len(t) >= 4])
def test_genuine_big5_without_label_or_under_a_gb_label(text: str) -> None:
    data = text.encode("big5")
    for label in (None, "gb2312"):
        assert decode_text(data, label).text == text, label


def test_latin1_words_still_read_as_latin1() -> None:
    """Accented letters inside real words are Windows-1252, though their bytes are also
    valid GBK (ü + l is a GBK pair)."""
    for text in ("Müller", "Bitte prüfen Sie die Straßenbeleuchtung", "ÉCOLE", "Zürich"):
        assert decode_text(text.encode("latin-1")).text == text


@pytest.mark.parametrize("name", ["镕.pdf", "陶喆的照片.pdf", "王堃反映材料.pdf"])
def test_gbk_only_file_names_in_rfc2231_and_rfc2047(name: str) -> None:
    """``filename*=gbk''%E9%46.pdf`` (RFC 2231) and ``name="=?gb2312?B?…?="`` (RFC 2047,
    as Outlook and Foxmail write it), both over GBK bytes."""
    data = name.encode("gbk")
    percent = "".join(f"%{b:02X}" if b > 0x7E or chr(b) in "%'*; " else chr(b) for b in data)
    word = "=?gb2312?B?" + base64.b64encode(data).decode() + "?="
    for disposition in (
        f"attachment; filename*=gbk''{percent}",
        f"attachment; filename*=gb2312''{percent}",
        f'attachment; filename="{word}"',
    ):
        raw = (
            b"From: a@example.cn\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain; charset=gbk\r\n\r\n"
            + "见附件".encode("gbk")
            + b"\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: "
            + disposition.encode()
            + b"\r\n\r\n%PDF-1.4\r\n--b--\r\n"
        )
        assert [a.filename for a in parse(raw).submission.attachments] == [name], disposition
