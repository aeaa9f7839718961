"""Mail as Chinese mailboxes really receive it → the text a person should read.

Every fixture is built here from bytes, with one fault each (a lying or unusable charset, no
charset, a boundary that never appears, base64 over raw bytes, raw 8-bit or split RFC 2047
headers, HTML only, quoted replies and signatures), and asserts the exact text stored on the
case. The stored text passes `clean_text` (the project's one normalisation), so expectations
go through it too.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from intake.email import (
    NO_TEXT,
    AttachmentLimits,
    ParsedMail,
    UnparseableMail,
    parse_message,
)
from intake.mail.charset import decode_text
from intake.mail.headers import decode_header
from intake.normalise import clean_line, clean_text
from intake.submission import Channel
from tests.conftest import SHARED_DATA, need

NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
DATE = "Mon, 02 Mar 2026 15:58:00 +0800"
COMPLAINT = "我家楼下的烧烤店每天营业到凌晨两点，油烟和噪音严重扰民，请尽快处理。"
# Characters beyond GB2312 that GBK and GB18030 carry: people's names are full of them.
GBK_ONLY = "朱镕基、陶喆、王堃、刘昇都在GBK里。"
GB18030_ONLY = GBK_ONLY + "刘䶮和𠀀只在GB18030里。"
TRADITIONAL = "我家樓下的燒烤店每天營業到凌晨兩點，油煙和噪音嚴重擾民，請儘快處理。"


def mail(body: bytes, *headers: str | bytes, date: str = DATE) -> bytes:
    """A message: the given header lines (str or raw bytes), standard ones, a blank line, body."""
    lines: list[bytes] = [
        b"From: =?utf-8?B?" + base64.b64encode("张三".encode()) + b"?= <zhangsan@example.cn>",
        b"To: xfb@example.gov.cn",
        b"Date: " + date.encode(),
        b"Message-ID: <20260302155800.1234@mail.example.cn>",
        b"Subject: =?utf-8?B?" + base64.b64encode("烧烤店扰民".encode()) + b"?=",
    ]
    for header in headers:
        raw = header if isinstance(header, bytes) else header.encode()
        name = raw.split(b":", 1)[0].lower()
        lines = [line for line in lines if line.split(b":", 1)[0].lower() != name]
        lines.append(raw)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def parse(raw: bytes, **kwargs: object) -> ParsedMail:
    return parse_message(raw, received_at=NOW, **kwargs)  # type: ignore[arg-type]


def body_of(raw: bytes) -> str:
    parsed = parse(raw)
    assert "\ufffd" not in parsed.submission.body
    return parsed.submission.body


# ---------------------------------------------------------------------------------------------
# Charsets as they are really labelled


@pytest.mark.parametrize(
    ("label", "encoding", "text"),
    [
        ("gb2312", "gb2312", COMPLAINT),
        ("gb2312", "gbk", GBK_ONLY),  # the label says GB2312, the bytes are GBK
        ("GB2312", "gb18030", GB18030_ONLY),  # four-byte GB18030 under a GB2312 label
        ("gbk", "gbk", GBK_ONLY),
        ("x-gbk", "gbk", COMPLAINT),
        ("GB2312_CHARSET", "gbk", COMPLAINT),
        ("cp936", "gbk", COMPLAINT),
        ("big5", "big5", TRADITIONAL),
        ("utf-8", "utf-8", COMPLAINT),
    ],
)
def test_declared_charsets_and_their_usual_labels(label: str, encoding: str, text: str) -> None:
    raw = mail(text.encode(encoding), f"Content-Type: text/plain; charset={label}")
    assert body_of(raw) == clean_text(text)


def test_charset_label_nested_in_itself() -> None:
    raw = mail(COMPLAINT.encode("gbk"), 'Content-Type: text/plain; charset="charset="GB2312""')
    assert body_of(raw) == clean_text(COMPLAINT)


@pytest.mark.parametrize(
    ("encoding", "text"),
    [("gbk", COMPLAINT), ("gb18030", GB18030_ONLY), ("big5", TRADITIONAL), ("utf-8", COMPLAINT)],
)
def test_no_charset_at_all(encoding: str, text: str) -> None:
    """No Content-Type, or one without charset: UTF-8, GB18030 and Big5 by plausibility."""
    assert body_of(mail(text.encode(encoding))) == clean_text(text)
    raw = mail(text.encode(encoding), "Content-Type: text/plain")
    assert body_of(raw) == clean_text(text)


@pytest.mark.parametrize("label", ["utf-8", "us-ascii", "big5", "iso-8859-1", "windows-1252"])
def test_lying_charsets_over_gb_bytes(label: str) -> None:
    raw = mail(COMPLAINT.encode("gbk"), f"Content-Type: text/plain; charset={label}")
    parsed = parse(raw)
    assert parsed.submission.body == clean_text(COMPLAINT)
    assert any("bytes are gb18030" in defect for defect in parsed.defects)


def test_big5_labelled_gb2312_and_unlabelled_short_gbk() -> None:
    raw = mail(TRADITIONAL.encode("big5"), "Content-Type: text/plain; charset=gb2312")
    assert body_of(raw) == clean_text(TRADITIONAL)
    # 谢谢 in GBK is also valid UTF-8 ("лл"); a Chinese mailbox reads it as Chinese.
    assert body_of(mail("谢谢".encode("gbk"))) == "谢谢"


@pytest.mark.parametrize("text", ["谢谢", "什么", "为什么", "缺钱", "浅谈"])
def test_short_gbk_texts_that_happen_to_be_valid_utf8(text: str) -> None:
    # 什么 in GBK is the UTF-8 of "ʲô": a Chinese mailbox reads what reads as Chinese.
    assert body_of(mail(text.encode("gbk"))) == text
    subject = b"Subject: " + text.encode("gbk")
    assert parse(mail(b"x", subject)).submission.subject == text


def test_big5_label_over_gb_text_with_rarer_characters() -> None:
    text = "潇楚南路长明灯浪费能源"  # 潇 is outside GB2312's common level
    raw = mail(text.encode("gbk"), "Content-Type: text/plain; charset=big5")
    assert body_of(raw) == text
    raw = mail(TRADITIONAL.encode("big5"), "Content-Type: text/plain; charset=big5")
    assert body_of(raw) == clean_text(TRADITIONAL)


def test_western_text_stays_western() -> None:
    text = "Bitte prüfen Sie die Straßenbeleuchtung, sie ist völlig ausgefallen."
    raw = mail(text.encode("latin-1"), "Content-Type: text/plain; charset=iso-8859-1")
    assert body_of(raw) == text
    assert body_of(mail(text.encode("latin-1"))) == text


def test_no_replacement_character_when_a_chinese_charset_reads_the_bytes() -> None:
    for encoding, text in (("gbk", GBK_ONLY), ("gb18030", GBK_ONLY), ("big5", TRADITIONAL)):
        for label in ("utf-8", "us-ascii", "gb2312", "big5", ""):
            header = f"Content-Type: text/plain; charset={label}" if label else "X-Note: none"
            body = parse(mail(text.encode(encoding), header)).submission.body
            assert "\ufffd" not in body, (encoding, label, body)
            assert body == clean_text(text), (encoding, label, body)


def test_chinese_text_once_misread_as_latin1_is_put_right() -> None:
    mangled = COMPLAINT.encode("gbk").decode("latin-1").encode("utf-8")
    raw = mail(mangled, "Content-Type: text/plain; charset=utf-8")
    assert body_of(raw) == clean_text(COMPLAINT)


# ---------------------------------------------------------------------------------------------
# Structure faults


def test_multipart_whose_boundary_never_appears() -> None:
    parts = (
        b"--real-boundary\r\nContent-Type: text/plain; charset=gb2312\r\n\r\n"
        + COMPLAINT.encode("gbk")
        + b"\r\n--real-boundary\r\nContent-Type: text/html; charset=gb2312\r\n\r\n<p>"
        + COMPLAINT.encode("gbk")
        + b"</p>\r\n--real-boundary--\r\n"
    )
    raw = mail(parts, 'Content-Type: multipart/alternative; boundary="declared-but-absent"')
    parsed = parse(raw)
    assert parsed.submission.body == clean_text(COMPLAINT)
    assert any("boundary" in defect for defect in parsed.defects)


def test_multipart_without_any_boundary_is_read_as_text() -> None:
    raw = mail(COMPLAINT.encode("gbk"), "Content-Type: multipart/mixed")
    assert body_of(raw) == clean_text(COMPLAINT)


def test_base64_declared_over_raw_bytes() -> None:
    raw = mail(
        COMPLAINT.encode("gbk"),
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: base64",
    )
    parsed = parse(raw)
    assert parsed.submission.body == clean_text(COMPLAINT)
    assert "base64 declared over raw bytes: read as is" in parsed.defects


def test_base64_and_quoted_printable_bodies() -> None:
    encoded = base64.encodebytes(COMPLAINT.encode("gbk"))
    raw = mail(
        encoded, "Content-Type: text/plain; charset=gbk", "Content-Transfer-Encoding: base64"
    )
    assert body_of(raw) == clean_text(COMPLAINT)
    # Base64 that lost its padding on the way still decodes.
    raw = mail(encoded.strip().rstrip(b"="), "Content-Transfer-Encoding: base64")
    assert body_of(raw) == clean_text(COMPLAINT)
    qp = "".join(f"={b:02X}" for b in COMPLAINT.encode("gb2312")).encode()
    qp = b"=\r\n".join(qp[i : i + 72] for i in range(0, len(qp), 72))
    raw = mail(
        qp,
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: quoted-printable",
    )
    assert body_of(raw) == clean_text(COMPLAINT)


def test_format_flowed_lines_are_joined() -> None:
    flowed = "我家楼下的烧烤店每天营业到 \r\n凌晨两点，油烟和噪音严重 \r\n扰民。\r\n请尽快处理。"
    raw = mail(flowed.encode(), "Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes")
    assert body_of(raw) == clean_text(
        "我家楼下的烧烤店每天营业到凌晨两点，油烟和噪音严重扰民。\n请尽快处理。"
    )
    english = "The street light on Renmin Road \r\nhas been out for weeks.\r\n"
    raw = mail(english.encode(), "Content-Type: text/plain; format=flowed")
    assert body_of(raw) == "The street light on Renmin Road has been out for weeks."


def test_header_line_that_lost_its_fold_keeps_the_headers_after_it() -> None:
    raw = mail(
        COMPLAINT.encode("gbk"),
        b"X-Diagnostics: 1;AM4PR01MB1442;6:1Y77VdiYZv\r\nP8FxVksOO2tmFWl+LxT0Acgv7RaCFBKFm",
        "Content-Type: text/plain; charset=gb2312",
    )
    assert body_of(raw) == clean_text(COMPLAINT)


# ---------------------------------------------------------------------------------------------
# Headers


def test_raw_8bit_subject_and_sender_name_are_decoded_from_their_bytes() -> None:
    raw = mail(
        COMPLAINT.encode("gbk"),
        b"Subject: " + "路灯不亮，晚上出行危险".encode("gbk"),
        b"From: " + "李四".encode("gbk") + b" <lisi@example.cn>",
        "Content-Type: text/plain; charset=gbk",
    )
    parsed = parse(raw)
    assert parsed.submission.subject == clean_text("路灯不亮，晚上出行危险")
    assert parsed.submission.contact.name == "李四"
    assert parsed.submission.contact.email == "lisi@example.cn"


def _split_words(text: str, charset: str, encoding: str, step: int) -> str:
    data = text.encode(encoding)
    # Odd cuts land in the middle of two-byte characters.
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    words = [f"=?{charset}?B?{base64.b64encode(c).decode()}?=" for c in chunks]
    return "\r\n ".join(words)


@pytest.mark.parametrize(
    ("charset", "encoding", "text"),
    [
        ("gb2312", "gbk", "关于" + GBK_ONLY),
        ("GBK", "gbk", "关于小区停车难的投诉"),
        ("gb18030", "gb18030", "关于小区停车难的投诉𠀀"),
        ("big5", "big5", "關於社區停車難的投訴"),
        ("utf-8", "utf-8", "关于小区停车难的投诉"),
    ],
)
def test_encoded_words_split_in_the_middle_of_a_character(
    charset: str, encoding: str, text: str
) -> None:
    raw = mail(b"x", "Subject: " + _split_words(text, charset, encoding, 5))
    parsed = parse(raw)
    assert parsed.submission.subject == clean_text(text)
    assert "\ufffd" not in parsed.submission.subject


def test_encoded_words_with_text_around_them() -> None:
    word = "=?gb2312?Q?" + "".join(f"={b:02X}" for b in "投诉".encode("gbk")) + "?="
    assert decode_header(f"Re: {word} (2)")[0] == "Re: 投诉 (2)"
    # A word in quotes, as some clients write display names.
    name = base64.b64encode("王五".encode("gbk")).decode()
    raw = mail(b"x", f'From: "=?gbk?B?{name}?=" <wangwu@example.cn>')
    assert parse(raw).submission.contact.name == "王五"


def test_message_ids_and_threading_headers() -> None:
    raw = mail(
        b"x",
        "Message-ID:  < abc.123@mail.example.cn >",
        "In-Reply-To: <ack-2026-000042@minsheng.example.gov.cn>",
        "References: <first@a.cn>\r\n <ack-2026-000042@minsheng.example.gov.cn>",
    )
    parsed = parse(raw)
    assert parsed.in_reply_to == ("ack-2026-000042@minsheng.example.gov.cn",)
    assert parsed.references == ("first@a.cn", "ack-2026-000042@minsheng.example.gov.cn")
    assert parsed.thread_ids == ("ack-2026-000042@minsheng.example.gov.cn", "first@a.cn")
    assert parsed.submission.channel == Channel.EMAIL


def test_message_id_normalised_or_taken_from_the_raw_bytes() -> None:
    parsed = parse(mail(b"x", "Message-ID: <20260302.1@mail.example.cn>"))
    assert parsed.submission.external_id == parsed.message_id == "20260302.1@mail.example.cn"
    raw = mail(COMPLAINT.encode("gbk")).replace(
        b"Message-ID: <20260302155800.1234@mail.example.cn>\r\n", b""
    )
    parsed = parse(raw)
    assert parsed.message_id == ""
    assert parsed.submission.external_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert parsed.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert parse(raw).submission.external_id == parsed.submission.external_id


def test_received_time_from_a_sane_date_header() -> None:
    parsed = parse(mail(b"x"))
    assert parsed.submission.received_at == datetime(
        2026, 3, 2, 15, 58, tzinfo=timezone(timedelta(hours=8))
    )
    # No zone: China time.
    parsed = parse(mail(b"x", date="2 Mar 2026 15:58:00"))
    assert parsed.submission.received_at == datetime(2026, 3, 2, 7, 58, tzinfo=UTC)
    # -0000: UTC from a sender that does not say where it is.
    parsed = parse(mail(b"x", date="Mon, 02 Mar 2026 07:58:00 -0000"))
    assert parsed.submission.received_at == datetime(2026, 3, 2, 7, 58, tzinfo=UTC)
    # In the future, long past, or garbage: the fetch time.
    for date in ("Thu, 01 Jan 2037 00:00:00 +0000", "Sat, 01 Jan 2000 00:00:00 +0000", "昨天"):
        assert parse(mail(b"x", date=date)).submission.received_at == NOW


def test_a_backdated_date_does_not_set_the_received_time() -> None:
    # The deadlines count from the received time: 84 days back would be overdue on arrival.
    parsed = parse(mail(b"x", date="Mon, 08 Dec 2025 08:30:00 +0000"))
    assert parsed.submission.received_at == NOW
    assert parsed.date_header == datetime(2025, 12, 8, 8, 30, tzinfo=UTC)  # still shown
    # A mailbox read after a 2-day outage keeps the day it was sent.
    parsed = parse(mail(b"x", date="Sat, 28 Feb 2026 08:30:00 +0000"))
    assert parsed.submission.received_at == datetime(2026, 2, 28, 8, 30, tzinfo=UTC)
    # A few minutes ahead of our clock: the fetch time, never a time after it.
    parsed = parse(mail(b"x", date="Mon, 02 Mar 2026 08:35:00 +0000"))
    assert parsed.submission.received_at == NOW


# ---------------------------------------------------------------------------------------------
# HTML


def test_html_only_mail_becomes_text_with_links_kept() -> None:
    html = (
        "<html><head><title>标题</title><style>p{color:red}</style>"
        "<script>alert('x')</script></head><body>"
        "<div>您好：</div><p>小区门口的路灯&nbsp;坏了三个月，<b>至今</b>没人修。</p>"
        '<p>照片见<a href="https://pan.example.cn/s/abc">网盘链接</a>。<br>谢谢！</p>'
        '<p><a href="https://www.example.cn">https://www.example.cn</a></p>'
        "</body></html>"
    )
    raw = mail(html.encode("gbk"), "Content-Type: text/html; charset=gb2312")
    assert body_of(raw) == clean_text(
        "您好：\n小区门口的路灯 坏了三个月，至今没人修。\n\n"
        "照片见网盘链接 (https://pan.example.cn/s/abc)。\n谢谢！\n\n"
        "https://www.example.cn"
    )


def test_html_with_an_unclosed_head_still_shows_its_body() -> None:
    html = f"<html><head><title>投诉</title><meta charset=utf-8><body><p>{COMPLAINT}</p></html>"
    raw = mail(html.encode("utf-8"), "Content-Type: text/html; charset=utf-8")
    assert body_of(raw) == clean_text(COMPLAINT)


@pytest.mark.parametrize(
    "trap", ["<!--" * 60000, "<a " * 80000, '<a href="' + "x" * 250000, "<" * 100000]
)
def test_crafted_html_is_read_in_time(trap: str) -> None:
    """html.parser alone takes minutes over these (it rescans an unclosed construct)."""
    html = f"<p>{COMPLAINT}</p>{trap}"
    raw = mail(html.encode(), "Content-Type: text/html; charset=utf-8")
    started = time.perf_counter()
    body = parse(raw).submission.body
    assert time.perf_counter() - started < 10
    assert body.startswith(clean_text(COMPLAINT))


def test_html_charset_from_its_meta_tag() -> None:
    html = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312">'
    html += f"</head><body>{COMPLAINT}</body></html>"
    raw = mail(html.encode("gbk"), "Content-Type: text/html")
    assert body_of(raw) == clean_text(COMPLAINT)


def test_alternative_prefers_the_plain_part() -> None:
    body = (
        b"--b1\r\nContent-Type: text/plain; charset=gbk\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(COMPLAINT.encode("gbk"))
        + b"\r\n--b1\r\nContent-Type: text/html; charset=gbk\r\n\r\n<div>"
        + COMPLAINT.encode("gbk")
        + b"</div>\r\n--b1--\r\n"
    )
    raw = mail(body, 'Content-Type: multipart/alternative; boundary="b1"')
    assert body_of(raw) == clean_text(COMPLAINT)


# ---------------------------------------------------------------------------------------------
# Quoted earlier mail and signatures


REPLY = "补充一下：烧烤店昨晚又营业到三点。"


@pytest.mark.parametrize(
    "tail",
    [
        "\n\n-----原始邮件-----\n发件人: 效能办 <xfb@example.gov.cn>\n"
        "发送时间: 2026年3月1日 10:00\n收件人: 张三\n主题: 您的投诉已受理\n\n"
        "您的受理编号是 MS-2026-000042。",
        "\n\n------------------ 原始邮件 ------------------\n"
        '发件人: "效能办"<xfb@example.gov.cn>;\n发送时间: 2026年3月1日(星期天) 上午10:00\n'
        '收件人: "张三";\n主题: 您的投诉已受理\n\n受理编号 …',
        "\n\n-----Original Message-----\nFrom: xfb@example.gov.cn\nSent: Sunday, March 1, 2026\n"
        "To: zhangsan\nSubject: Received\n\nYour tracking number …",
        "\n\n在 2026年3月1日 10:00，效能办 <xfb@example.gov.cn> 写道：\n"
        "> 您的投诉已受理。\n> 受理编号 …",
        "\n\nOn Sun, Mar 1, 2026 at 10:00 AM 效能办 <xfb@example.gov.cn>\nwrote:\n\n> Received.",
        "\n\n效能办 <xfb@example.gov.cn> 于2026年3月1日周日 上午10:00写道：\n\n> 您的投诉已受理。",
        '\n\n在 2026-03-01 10:00:00，"效能办" <xfb@example.gov.cn> 写道：\n> 已受理',
        "\n\n________________________________\n发件人: 效能办 <xfb@example.gov.cn>\n"
        "发送时间: 2026年3月1日 10:00\n收件人: 张三\n主题: 已受理\n\n受理编号 …",
        "\n\nFrom: xfb@example.gov.cn\nDate: Sun, 1 Mar 2026 10:00\nTo: zhangsan@example.cn\n"
        "Subject: Received\n\nYour tracking number …",
        "\n\n-- \n张三\n手机 13800138000",
        "\n\n发自我的iPhone",
        "\n\n发自我的华为手机\n\n------------------ 原始邮件 ------------------\n…",
        "\n\nSent from my Xiaomi phone",
        "\n\n> 您的投诉已受理。\n> 受理编号 MS-2026-000042",
    ],
)
def test_quoted_mail_and_signatures_are_trimmed(tail: str) -> None:
    raw = mail((REPLY + tail).encode("gbk"), "Content-Type: text/plain; charset=gbk")
    parsed = parse(raw)
    assert parsed.submission.body == clean_text(REPLY)
    assert parsed.quotes_trimmed
    assert parsed.full_text == clean_text(REPLY + tail)


def test_lines_that_only_look_like_signatures_stay() -> None:
    text = "来自我的邻居家的噪音每晚都有。\n从我的窗户能看到工地。\n--\n以上情况属实。"
    # "--" alone cuts (a signature marker); the two lines above it stay.
    assert (
        body_of(mail(text.encode("gbk")))
        == "来自我的邻居家的噪音每晚都有。\n从我的窗户能看到工地。"
    )


def test_qq_and_outlook_html_replies_are_trimmed() -> None:
    qq = (
        f"<div>{REPLY}</div><div><br></div>"
        '<div style="font-size:12px;color:#000">------------------&nbsp;原始邮件&nbsp;'
        '------------------</div><div><b>发件人:</b>&nbsp;"效能办"&lt;xfb@example.gov.cn&gt;;'
        "</div><div><b>发送时间:</b>&nbsp;2026年3月1日</div><div>您的投诉已受理。</div>"
    )
    outlook = (
        f'<p class="MsoNormal">{REPLY}<o:p></o:p></p>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt"><p class="MsoNormal">'
        "<b>发件人:</b> 效能办 &lt;xfb@example.gov.cn&gt;<br><b>发送时间:</b> 2026年3月1日 10:00"
        "<br><b>收件人:</b> 张三<br><b>主题:</b> 已受理</p></div><p>您的投诉已受理。</p>"
    )
    for html in (qq, outlook):
        raw = mail(html.encode("gbk"), "Content-Type: text/html; charset=gbk")
        assert body_of(raw) == clean_text(REPLY)


def test_inline_reply_keeps_the_new_lines_only() -> None:
    text = "> 请问具体地址？\n人民路12号。\n> 营业时间？\n每天晚上到凌晨两点。"
    assert body_of(mail(text.encode("gbk"))) == "人民路12号。\n每天晚上到凌晨两点。"


def test_a_forward_with_a_note_is_kept_whole() -> None:
    text = (
        "请处理下面这封邮件。\n\n---------- Forwarded message ---------\n"
        "From: 王五 <wangwu@example.cn>\nDate: 2026年3月1日\nSubject: 噪音\nTo: 张三\n\n"
        "工地夜间施工，噪音很大。"
    )
    assert body_of(mail(text.encode("gbk"))) == clean_text(text)


def test_placeholder_plain_part_gives_way_to_the_html() -> None:
    body = (
        b"--b1\r\nContent-Type: text/plain; charset=gbk\r\n\r\n"
        + "此邮件为HTML格式，请使用支持HTML的客户端查看。".encode("gbk")
        + b"\r\n--b1\r\nContent-Type: text/html; charset=gbk\r\n\r\n<p>"
        + COMPLAINT.encode("gbk")
        + b"</p>\r\n--b1--\r\n"
    )
    raw = mail(body, 'Content-Type: multipart/alternative; boundary="b1"')
    assert body_of(raw) == clean_text(COMPLAINT)


def test_a_bare_forward_is_kept_whole() -> None:
    text = "-----原始邮件-----\n发件人: 王五\n主题: 噪音\n\n工地夜间施工，噪音很大。"
    assert body_of(mail(text.encode("gbk"))) == clean_text(text)


def test_quoted_html_reply_is_trimmed() -> None:
    html = (
        f"<div>{REPLY}</div><div><br></div><div>发自我的iPhone</div>"
        "<blockquote><div>您的投诉已受理。</div></blockquote>"
    )
    raw = mail(html.encode("utf-8"), "Content-Type: text/html; charset=utf-8")
    assert body_of(raw) == clean_text(REPLY)


# ---------------------------------------------------------------------------------------------
# Loops, bounces, spam


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
        ("Precedence: bulk", "Precedence: bulk"),
        ("Precedence: junk", "Precedence: junk"),
        ("Precedence: list", "Precedence: list"),
        ("X-Loop: xfb@example.gov.cn", "X-Loop: xfb@example.gov.cn"),
        ("From: MAILER-DAEMON@mx.example.cn", "sent by mailer-daemon"),
        ("From: postmaster@example.cn", "sent by postmaster"),
        ("From: 效能办 <xfb@example.gov.cn>", "sent from our own address (xfb@example.gov.cn)"),
        (
            "Subject: 自动回复：您的邮件已收到",
            f"auto-reply subject ({clean_line('自动回复：您的邮件已收到')})",
        ),
        (
            "Subject: Automatic reply: Out of office",
            "auto-reply subject (Automatic reply: Out of office)",
        ),
    ],
)
def test_mail_that_must_not_be_answered(header: str, reason: str) -> None:
    parsed = parse(mail(COMPLAINT.encode(), header), own_addresses=["XFB@example.gov.cn"])
    assert parsed.auto_reply
    assert reason in parsed.loop_reasons


def test_ordinary_mail_may_be_answered() -> None:
    parsed = parse(mail(COMPLAINT.encode(), "Auto-Submitted: no"), own_addresses=["xfb@x.cn"])
    assert not parsed.auto_reply
    assert parsed.loop_reason == ""
    assert parsed.bounce is None
    assert parsed.spam_score == 0 and not parsed.likely_spam


def test_delivery_status_report_names_the_mail_that_bounced() -> None:
    body = (
        b"--r1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "邮件无法投递。".encode()
        + b"\r\n--r1\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.cn\r\n\r\n"
        b"Final-Recipient: rfc822; Nobody@Example.cn\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        b"\r\n--r1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"Message-ID: <ack-2026-000042@minsheng.example.gov.cn>\r\nSubject: ack\r\n"
        b"\r\n--r1--\r\n"
    )
    raw = mail(
        body,
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.cn>",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r1"',
    )
    parsed = parse(raw)
    assert parsed.bounce is not None
    assert parsed.bounce.original_message_id == "ack-2026-000042@minsheng.example.gov.cn"
    assert parsed.bounce.recipient == "nobody@example.cn"
    assert (parsed.bounce.status, parsed.bounce.action) == ("5.1.1", "failed")
    assert parsed.auto_reply


def test_bounce_without_a_delivery_status_part() -> None:
    text = (
        "Hi. This is the qmail-send program at mx.example.cn.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
        "<nobody@example.cn>:\nSorry, no mailbox here by that name.\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "Message-ID: <ack-2026-000043@minsheng.example.gov.cn>\nSubject: ack\n"
    )
    raw = mail(text.encode(), "From: MAILER-DAEMON@mx.example.cn", "Subject: failure notice")
    parsed = parse(raw)
    assert parsed.bounce is not None
    assert parsed.bounce.original_message_id == "ack-2026-000043@minsheng.example.gov.cn"
    assert parsed.bounce.recipient == "nobody@example.cn"


def test_spam_signals_add_up_with_reasons() -> None:
    links = " ".join(f"http://spam{i}.example.com/x" for i in range(12))
    text = f"代开发票，六合彩内幕，兼职日结！{links}"
    parsed = parse(mail(text.encode("gbk"), "X-Spam-Flag: YES"))
    assert parsed.likely_spam
    assert "upstream spam filter: X-Spam-Flag: YES" in parsed.spam_reasons
    assert "12 links" in parsed.spam_reasons
    assert "spam phrase: 代开发票" in parsed.spam_reasons
    # The same text without the upstream flag: phrases and links alone reach the threshold.
    assert parse(mail(text.encode("gbk"))).likely_spam
    # A complaint that mentions one link is not spam.
    assert not parse(mail(f"{COMPLAINT} https://pan.example.cn/s/1".encode())).likely_spam


# ---------------------------------------------------------------------------------------------
# Attachments

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _attachment(headers: str, data: bytes) -> bytes:
    return (
        f"--m1\r\n{headers}\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
        + base64.encodebytes(data)
    )


def _mixed(*parts: bytes) -> bytes:
    text = (
        b"--m1\r\nContent-Type: text/plain; charset=gbk\r\n\r\n" + COMPLAINT.encode("gbk") + b"\r\n"
    )
    body = text + b"".join(parts) + b"--m1--\r\n"
    return mail(body, 'Content-Type: multipart/mixed; boundary="m1"')


def test_attachments_kept_with_safe_names() -> None:
    gbk_name = "".join(f"%{b:02X}" for b in "现场照片.jpg".encode("gbk"))
    word = base64.b64encode("噪音记录.png".encode("gb2312")).decode()
    raw = _mixed(
        _attachment(
            "Content-Type: image/jpeg\r\n"
            f"Content-Disposition: attachment; filename*=gbk''{gbk_name}",
            JPEG,
        ),
        _attachment(f'Content-Type: image/png; name="=?gb2312?B?{word}?="', PNG),
        _attachment(
            "Content-Type: image/png\r\n"
            'Content-Disposition: attachment; filename="../../etc/pic.gif"',
            PNG,
        ),
    )
    parsed = parse(raw)
    files = [(a.filename, a.content_type, a.data) for a in parsed.submission.attachments]
    assert files == [
        ("现场照片.jpg", "image/jpeg", JPEG),
        ("噪音记录.png", "image/png", PNG),
        ("pic.gif.png", "image/png", PNG),
    ]
    # A raw GBK name, and an RFC 2231 name continued across sections mid-character.
    halves = "".join(f"%{b:02X}" for b in "夜间施工.jpg".encode("gbk"))
    raw = _mixed(
        _attachment(
            'Content-Type: image/jpeg\r\nContent-Disposition: attachment; filename="', JPEG
        ).replace(b'filename="', b'filename="' + "工地照片.jpg".encode("gbk") + b'"'),
        _attachment(
            "Content-Type: image/jpeg\r\nContent-Disposition: attachment;"
            f"\r\n filename*0*=gbk''{halves[:9]};\r\n filename*1*={halves[9:]}",
            JPEG,
        ),
    )
    names = [a.filename for a in parse(raw).submission.attachments]
    assert names == ["工地照片.jpg", "夜间施工.jpg"]
    assert parsed.submission.body == clean_text(COMPLAINT)


def test_attachment_limits_on_type_count_and_size() -> None:
    exe = b"MZ\x90\x00" + b"\x00" * 64
    raw = _mixed(
        _attachment('Content-Type: application/octet-stream; name="photo.jpg.exe"', exe),
        *(_attachment(f'Content-Type: image/jpeg; name="p{i}.jpg"', JPEG) for i in range(4)),
        _attachment('Content-Type: image/png; name="big.png"', PNG + b"\x00" * 2000),
    )
    parsed = parse(raw, limits=AttachmentLimits(max_count=3, max_bytes=1000))
    assert [a.filename for a in parsed.submission.attachments] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    reasons = {s.filename: s.reason for s in parsed.skipped_attachments}
    assert reasons["photo.jpg.exe"].startswith("type not accepted")
    assert reasons["p3.jpg"] == "more than 3 attachments"
    assert reasons["big.png"] == "more than 3 attachments"
    parsed = parse(raw, limits=AttachmentLimits(max_count=10, max_bytes=1000))
    assert {s.filename: s.reason for s in parsed.skipped_attachments}["big.png"] == (
        "larger than 1000 bytes"
    )


def test_office_documents_keep_their_names() -> None:
    docx = b"PK\x03\x04" + b"\x00" * 64
    doc = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64
    raw = _mixed(
        _attachment('Content-Type: application/octet-stream; name="情况说明.docx"', docx),
        _attachment('Content-Type: application/msword; name="情况说明.doc"', doc),
    )
    files = [(a.filename, a.content_type) for a in parse(raw).submission.attachments]
    assert files == [
        (
            "情况说明.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("情况说明.doc", "application/msword"),
    ]


def test_winmail_dat_is_kept_as_is_and_flagged() -> None:
    tnef = b"\x78\x9f\x3e\x22" + b"\x01\x00" * 32
    raw = _mixed(_attachment('Content-Type: application/ms-tnef; name="winmail.dat"', tnef))
    parsed = parse(raw)
    assert parsed.tnef
    assert [(a.filename, a.data) for a in parsed.submission.attachments] == [("winmail.dat", tnef)]


def test_photo_only_mail_gets_a_placeholder_text_or_its_subject() -> None:
    body = _attachment('Content-Type: image/jpeg; name="a.jpg"', JPEG) + b"--m1--\r\n"
    raw = mail(body, 'Content-Type: multipart/mixed; boundary="m1"', "Subject: ")
    assert parse(raw).submission.body == clean_text(NO_TEXT)
    raw = mail(body, 'Content-Type: multipart/mixed; boundary="m1"')
    assert parse(raw).submission.body == "烧烤店扰民"


# ---------------------------------------------------------------------------------------------
# What cannot be read


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b"  \r\n\r\n ", "empty message"),
        (b"\x00\x01\x02\x03\xff\xfe" * 50, "no headers and no readable text: not a mail message"),
        # 5,000 random bytes: a lenient decoder reads them as printable mojibake
        (random.Random(7).randbytes(5000), "no headers and no readable text: not a mail message"),
        (b"From: a@b.cn\r\nTo: c@d.cn\r\n\r\n", "no text, no subject and no attachment"),
    ],
)
def test_unparseable_mail_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(UnparseableMail) as caught:
        parse(raw)
    assert caught.value.reason == reason


def test_deep_nesting_does_not_crash() -> None:
    depth = 300
    opening = b"".join(
        f'--d{i}\r\nContent-Type: multipart/mixed; boundary="d{i + 1}"\r\n\r\n'.encode()
        for i in range(depth)
    )
    closing = b"".join(f"--d{i}--\r\n".encode() for i in reversed(range(depth)))
    body = opening + f"--d{depth}\r\nContent-Type: text/plain\r\n\r\nhello\r\n".encode() + closing
    raw = mail(body, 'Content-Type: multipart/mixed; boundary="d0"')
    parsed = parse(raw)
    assert any("nesting deeper" in d for d in parsed.defects)


# ---------------------------------------------------------------------------------------------
# The shared set of broken real-world mail

MIME = SHARED_DATA / "mime"


def readable(text: str) -> bool:
    """Text a person can read: no replacement or control characters, no Latin-1 mojibake."""
    return (
        bool(text.strip())
        and "\ufffd" not in text
        and not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ue000-\uf8ff]", text)
        and not re.search(r"[\u00c0-\u00ff][\u0080-\u00bf]{2}", text)
    )


def classify(path: Path) -> str:
    try:
        parsed = parse_message(path.read_bytes(), received_at=NOW)
    except UnparseableMail:
        return "unparseable (nothing to read)"
    text = parsed.submission.subject + "\n" + parsed.submission.body
    if not readable(text):
        return "text with replacement characters or mojibake"
    if "no body text: the subject is the text" in parsed.defects:
        return "readable (subject only)"
    return "readable"


def test_every_shared_mime_message_is_read_or_quarantined_with_a_reason() -> None:
    need(MIME.is_dir(), f"shared MIME fixtures not found at {MIME}")
    files = sorted(p for p in MIME.rglob("*") if p.is_file() and p.parent != MIME)
    assert len(files) >= 140
    outcome = Counter(classify(p) for p in files)
    print("\nshared MIME set:", dict(outcome))
    assert sum(outcome.values()) == len(files)  # none lost
    readable_share = (outcome["readable"] + outcome["readable (subject only)"]) / len(files)
    assert readable_share >= 0.95
    assert outcome["text with replacement characters or mojibake"] <= 1


def test_shared_mime_charsets_read_right() -> None:
    need(MIME.is_dir(), f"shared MIME fixtures not found at {MIME}")
    expected = {
        "jhillyerd__enmime/testdata/parts/chardet-success-big-5.raw": "北齊  顏之推",
        "mikel__mail/spec/fixtures/emails/multi_charset/japanese_shift_jis.eml": "あいうえお",
        "mikel__mail/spec/fixtures/emails/plain_emails/raw_email.eml": "대부분의",
        "jstedfast__MimeKit/UnitTests/TestData/tnef/ukr.eml": "шостий",
        "zbateson__mail-mime-parser/tests/_data/emails/github-102-02.txt": "Frösche",
    }
    for name, fragment in expected.items():
        parsed = parse_message((MIME / name).read_bytes(), received_at=NOW)
        assert fragment in parsed.submission.subject + parsed.submission.body, name


def test_decode_text_reports_what_it_repaired() -> None:
    decoded = decode_text(COMPLAINT.encode("gbk"), "us-ascii", context="body")
    assert decoded.charset == "gb18030"
    assert decoded.defects == ("body: declared us-ascii, bytes are gb18030",)
    assert decode_text(b"plain", None).defects == ()


@pytest.mark.parametrize("charset", ["utf-8", "gbk"])
def test_headerless_chinese_text_is_still_read(charset: str) -> None:
    text = "小区门口的路灯坏了一个月了，晚上很黑，请尽快修理。\r\n"
    parsed = parse(text.encode(charset) * 3)
    assert "路灯坏了" in parsed.submission.body
