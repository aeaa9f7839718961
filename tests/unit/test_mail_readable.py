"""The readability criterion of bench/bench_mail_readable.py, and the parser against it.

`unreadable_reason` must catch each kind of unreadable text a wrong decoding gives, and let
real writing through (Chinese, traditional, Japanese, European, symbols in a sentence).
The teddy-derived messages of the benchmark, a sample, must all come out as the text sent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from intake.email import parse_message
from intake.mail.readable import unreadable_reason
from tests.conftest import SHARED_DATA, need
from tests.unit.test_email_parse import NOW

ROOT = Path(__file__).resolve().parents[2]
COMPLAINT = "我家楼下的烧烤店每天营业到凌晨两点，油烟和噪音严重扰民，请尽快处理。"


@pytest.mark.parametrize(
    "text",
    [
        COMPLAINT,
        "我家樓下的燒烤店每天營業到凌晨兩點，請儘快處理。",
        "朱镕基、陶喆、王堃、刘昇都在GBK里。",
        "日本語のメールです。よろしくお願いします。",
        "Bitte prüfen Sie die Straßenbeleuchtung, Müller, Zürich.",
        "电话：177××××1292，温度 30°C、35℃，价格 ￥50，约 ½ 天，第Ⅲ期。",
        "==========\n请勿回复此邮件\n--------------------",
        "哈希 " + "9bbf38a544f990e73cd12f3c56c60e6180edebd31d752d3997fa4c0650d6aaa3" * 3,
        "Subject: 关于路灯的问题",
        "数组 a[1] 和 [m] 不是转义",
    ],
)
def test_real_writing_is_readable(text: str) -> None:
    assert unreadable_reason(text) == ""


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  \n ", "empty"),
        ("路灯\ufffd\ufffd坏了", "replacement character"),
        ("路灯\x00坏了", "control or private-use character"),
        ("路灯\ue5e5坏了", "control or private-use character"),
        ("è·¯ç¯å\x9d", "control or private-use character"),
        ("路灯 ä¸­æ–‡", "Latin-1 mojibake"),
        ("Itâ€™s broken", "Latin-1 mojibake"),
        (COMPLAINT.encode("gbk").decode("latin-1")[:20], "Latin-1 mojibake"),
        ("ÄãºÃ", "Latin-1 mojibake"),
        ("锟斤拷锟斤拷", "mojibake marker"),
        (COMPLAINT.encode("utf-8").decode("gbk", "ignore"), "rare hanzi"),
        ("=?gb2312?B?1ebKtQ==?= 路灯", "undecoded encoding"),
        ("=E8=B7=AF=E7=81=AF=E5=9D=8F", "undecoded encoding"),
        (
            "路灯\n" + "5oiR5a625qW85LiL55qE54On54Ok5bqX5q+P5aSp6JCl5Lia5Yiw5YeM5pmo" * 3,
            "undecoded encoding",
        ),
        ("路灯坏了\nContent-Type: text/plain; charset=gbk", "MIME scaffolding"),
        ("路灯坏了\n------=_Part_10541_215446765.98298273965074084", "MIME scaffolding"),
        ("\u8def\u706f[1;31m坏了[0m", "terminal escape remnant"),
        ("<div>路灯坏了</div>", "HTML markup"),
        ("路灯&nbsp;坏了", "HTML markup"),
        ("路灯" + "■□▲△" * 10, "mostly symbols"),
    ],
)
def test_each_kind_of_unreadable_text_is_named(text: str, reason: str) -> None:
    assert unreadable_reason(text) == reason


def _bench() -> object:
    path = ROOT / "bench" / "bench_mail_readable.py"
    spec = importlib.util.spec_from_file_location("bench_mail_readable", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_benchmark_sample_of_teddy_mail_comes_out_as_the_text_sent() -> None:
    """200 real citizens' texts spread over the benchmark's 19 structures: every one
    parsed, readable, and exactly the subject, name and body that were sent."""
    teddy = SHARED_DATA / "teddy2020c"
    need((teddy / "unlabelled.jsonl").exists(), f"teddy2020c texts not found at {teddy}")
    bench = _bench()
    texts = bench.teddy_texts(teddy, 200)  # type: ignore[attr-defined]
    for structures, make in (
        (bench.STRUCTURES, bench.build),  # type: ignore[attr-defined]
        (bench.EXTRA, bench.build_extra),  # type: ignore[attr-defined]
    ):
        tally = bench.measure(  # type: ignore[attr-defined]
            bench.Tally("sample"),  # type: ignore[attr-defined]
            bench.built(texts, structures, make, 0),  # type: ignore[attr-defined]
        )
        assert tally.failures == []
        assert (tally.total, tally.readable, tally.exact) == (200, 200, 200)


def test_html_fragment_in_a_plain_part_is_read_as_html() -> None:
    """A part whose start was lost (a broken Content-Type) still shows no tags."""
    raw = (
        b"From: a@example.cn\r\nSubject: x\r\nContent-Type: <html>\r\n\r\n"
        + "路灯坏了。<br>\r\n<br>\r\n请尽快修理。<br>\r\n</font></p>\r\n</body>\r\n".encode()
    )
    assert parse_message(raw, received_at=NOW).submission.body == "路灯坏了。\n\n请尽快修理。"


def test_part_headers_left_by_a_broken_boundary_are_not_case_text() -> None:
    raw = (
        b"From: a@example.cn\r\nSubject: x\r\n"
        b'Content-Type: multipart/mixed; boundary="declared"\r\n\r\n'
        + "路灯坏了。\r\n--other\r\nContent-Type: text/plain;\r\n charset=gbk\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n请尽快修理。\r\n".encode("gbk")
    )
    body = parse_message(raw, received_at=NOW).submission.body
    assert body == "路灯坏了。\n\n请尽快修理。"
