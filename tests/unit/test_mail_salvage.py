"""The quarantine's "make a case of this" text: what a supervisor should read, never MIME
boundaries or part headers."""

from __future__ import annotations

import base64
import quopri

import pytest

from intake.mail.salvage import readable_share, salvage_text

TEXT = "莲花路3号门前的井盖丢了，晚上很危险，请尽快补上。"
TRADITIONAL = "社區垃圾兩週沒有清運，請環保局派人處理。"


def part(ctype: str, body: bytes, cte: str = "8bit") -> bytes:
    return f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode() + body


def multipart(kind: str, boundary: str, *parts: bytes, headers: bytes = b"") -> bytes:
    out = headers + f'Content-Type: multipart/{kind}; boundary="{boundary}"\r\n\r\n'.encode()
    out += b"This is a multi-part message in MIME format.\r\n\r\n"
    for p in parts:
        out += f"--{boundary}\r\n".encode() + p + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


TOP = b"From: =?gbk?B?zfXQocP3?= <citizen@example.cn>\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
GBK_B64 = part("text/plain; charset=gbk", base64.encodebytes(TEXT.encode("gbk")), "base64")
HTML_QP = part(
    "text/html; charset=gb2312",
    quopri.encodestring(f"<html><body><p>{TEXT}</p></body></html>".encode("gbk")),
    "quoted-printable",
)
ALTERNATIVE = multipart("alternative", "alt-1", GBK_B64, HTML_QP)
PDF = part("application/pdf", b"%PDF-1.4 " + bytes(range(256)))


def forwarded(inner: bytes) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" + inner


CASES = {
    "mixed > alternative > base64 GBK": TOP + multipart("mixed", "mix-1", ALTERNATIVE, PDF),
    "three levels deep": TOP
    + multipart(
        "mixed",
        "m1",
        multipart("related", "r1", multipart("alternative", "a1", GBK_B64, HTML_QP)),
    ),
    "forwarded message/rfc822 only": TOP
    + multipart("mixed", "f1", forwarded(b"From: a@b.cn\r\nSubject: y\r\n" + ALTERNATIVE)),
    "bounce with the original inside": TOP
    + multipart(
        "report; report-type=delivery-status",
        "rep",
        part("message/delivery-status", b"Final-Recipient: rfc822; x@y.cn\r\nAction: failed\r\n"),
        forwarded(b"From: a@b.cn\r\nSubject: y\r\n" + ALTERNATIVE),
    ),
    "html only, quoted-printable": TOP + multipart("mixed", "h1", HTML_QP),
    "declared boundary never used": TOP
    + b'Content-Type: multipart/mixed; boundary="declared"\r\n\r\n--real\r\n'
    + GBK_B64
    + b"\r\n--real\r\n"
    + PDF
    + b"\r\n--real--\r\n",
    "no headers at all, then parts": b"--zz\r\n"
    + part("text/plain; charset=gbk", TEXT.encode("gbk"))
    + b"\r\n--zz--\r\n",
}


@pytest.mark.parametrize("raw", CASES.values(), ids=CASES.keys())
def test_nested_mime_gives_the_text_without_boundaries_or_headers(raw: bytes) -> None:
    assert salvage_text(raw) == TEXT


def test_big5_part_in_a_nested_message() -> None:
    inner = part("text/plain; charset=big5", TRADITIONAL.encode("big5"))
    raw = TOP + multipart("mixed", "b", forwarded(b"Subject: y\r\n" + inner))
    assert salvage_text(raw) == TRADITIONAL


def test_own_text_comes_before_forwarded_text() -> None:
    own = part("text/plain; charset=utf-8", "转发一封市民来信。".encode())
    raw = TOP + multipart("mixed", "o", own, forwarded(b"Subject: y\r\n" + GBK_B64))
    assert salvage_text(raw) == "转发一封市民来信。"


def test_nothing_readable_gives_nothing() -> None:
    assert salvage_text(bytes(range(256)) * 20) == ""
    assert salvage_text(TOP + multipart("mixed", "p", PDF)) == ""


def test_a_dashed_rule_in_text_is_not_a_boundary() -> None:
    raw = TOP + b"Content-Type: text/plain; charset=gbk\r\n\r\n" + "甲\n--------\n乙".encode("gbk")
    assert salvage_text(raw) == "甲\n--------\n乙"


def test_the_text_is_cut_to_the_limit() -> None:
    raw = TOP + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + ("长" * 9000).encode()
    assert salvage_text(raw, limit=5000) == "长" * 5000


def test_readable_share() -> None:
    assert readable_share(TEXT) == 1.0
    assert readable_share("") == 0.0
    assert readable_share("\ufffd\ufffd路灯") == 0.5
