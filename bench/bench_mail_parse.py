"""Benchmark: raw mail bytes → ParsedMail, beside the standard library's bare parse.

Builds N messages (default 2,000) in memory from ../shared/data/teddy2020c texts, in the
charsets and structures a Chinese complaints mailbox receives (GB2312 labels over GBK bytes,
no charset, lying and unusable labels, base64 and quoted-printable, HTML only, alternative and
mixed multiparts with a photo, replies with quoted mail and a signature, split RFC 2047 and
raw 8-bit subjects), then times `intake.email.parse_message` on all of them and, as the floor,
`email.message_from_bytes` (compat32, no decoding at all) on the same bytes. Nothing is
written anywhere. With ``--mime`` it also prints what the shared MIME set comes out as.

    .venv/bin/python bench/bench_mail_parse.py [--n 2000] [--rounds 3] [--mime]
"""

from __future__ import annotations

import argparse
import base64
import email
import json
import quopri
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from intake.email import UnparseableMail, parse_message  # noqa: E402

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 24  # a 6 KB "photo"
STRUCTURES = (
    "gb2312-label-gbk-bytes",
    "no-charset-gb18030",
    "utf8-base64",
    "lying-us-ascii",
    "nested-label-qp",
    "html-only-gb2312",
    "alternative-utf8",
    "mixed-with-photo",
    "reply-quoted-signature",
    "split-2047-raw-subject",
)


def _b64_word(text: str, charset: str, encoding: str, step: int = 7) -> str:
    data = text.encode(encoding, "replace")
    words = [
        f"=?{charset}?B?{base64.b64encode(data[i : i + step]).decode()}?="
        for i in range(0, len(data), step)
    ]
    return "\r\n ".join(words)


def build(index: int, subject: str, body: str) -> bytes:
    """One message in the structure ``index`` picks, carrying ``subject`` and ``body``."""
    structure = STRUCTURES[index % len(STRUCTURES)]
    subject = subject or body[:20]
    gbk = body.encode("gb18030")
    headers = [
        f"From: {_b64_word('市民' + str(index), 'utf-8', 'utf-8')} <citizen{index}@example.cn>",
        "To: xfb@example.gov.cn",
        f"Date: {format_datetime(NOW)}",
        f"Message-ID: <bench-{index}@mail.example.cn>",
        "MIME-Version: 1.0",
    ]
    raw_subject: bytes | None = None
    subject_header = f"Subject: {_b64_word(subject, 'gb2312', 'gb18030')}"
    if structure == "gb2312-label-gbk-bytes":
        headers += ["Content-Type: text/plain; charset=gb2312", "Content-Transfer-Encoding: 8bit"]
        payload = gbk
    elif structure == "no-charset-gb18030":
        payload = gbk
    elif structure == "utf8-base64":
        headers += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"]
        payload = base64.encodebytes(body.encode())
    elif structure == "lying-us-ascii":
        headers += ["Content-Type: text/plain; charset=us-ascii"]
        payload = gbk
    elif structure == "nested-label-qp":
        headers += [
            'Content-Type: text/plain; charset="charset="GB2312""',
            "Content-Transfer-Encoding: quoted-printable",
        ]
        payload = quopri.encodestring(gbk)
    elif structure == "html-only-gb2312":
        headers += ["Content-Type: text/html; charset=gb2312"]
        payload = (
            "<html><head><style>p{margin:0}</style></head><body><div>您好：</div>"
            f"<p>{body}</p><p>详见<a href='https://pan.example.cn/s/{index}'>照片</a></p>"
            "</body></html>"
        ).encode("gb18030")
    elif structure == "alternative-utf8":
        headers += ['Content-Type: multipart/alternative; boundary="alt"']
        payload = (
            b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(body.encode())
            + b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<div>"
            + body.encode()
            + b"</div>\r\n--alt--\r\n"
        )
    elif structure == "mixed-with-photo":
        headers += ['Content-Type: multipart/mixed; boundary="mix"']
        payload = (
            b"--mix\r\nContent-Type: text/plain; charset=gbk\r\n\r\n"
            + gbk
            + b"\r\n--mix\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n"
            + b"Content-Disposition: attachment; filename*=gbk''%CF%D6%B3%A1.jpg\r\n\r\n"
            + base64.encodebytes(JPEG)
            + b"--mix--\r\n"
        )
    elif structure == "reply-quoted-signature":
        headers += [
            "Content-Type: text/plain; charset=gbk",
            f"In-Reply-To: <ack-{index}@minsheng.example.gov.cn>",
        ]
        subject_header = f"Subject: {_b64_word('回复：' + subject, 'gbk', 'gb18030')}"
        payload = (
            body
            + "\n\n发自我的iPhone\n\n------------------ 原始邮件 ------------------\n"
            + '发件人: "效能办"<xfb@example.gov.cn>;\n发送时间: 2026年3月1日 上午10:00\n'
            + '收件人: "市民";\n主题: 已受理\n\n您的受理编号是 MS-2026-000042。\n'
        ).encode("gb18030")
    else:  # split-2047-raw-subject
        headers += ["Content-Type: text/plain; charset=GB2312_CHARSET"]
        raw_subject = b"Subject: " + subject.encode("gb18030")
        payload = gbk
    head = "\r\n".join([*headers, subject_header]).encode()
    if raw_subject is not None:
        head = "\r\n".join(headers).encode() + b"\r\n" + raw_subject
    return head + b"\r\n\r\n" + payload


def load_texts(teddy: Path, n: int) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for name in ("unlabelled.jsonl", "with_replies.jsonl", "with_votes.jsonl", "train.jsonl"):
        with (teddy / name).open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                texts.append((row.get("subject") or "", row["body"]))
                if len(texts) >= n:
                    return texts
    return texts


def time_rounds(func, messages: list[bytes], rounds: int) -> float:  # type: ignore[no-untyped-def]
    """Best messages per second over ``rounds`` passes."""
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for raw in messages:
            func(raw)
        best = max(best, len(messages) / (time.perf_counter() - started))
    return best


def mime_report(mime: Path) -> None:
    files = sorted(p for p in mime.rglob("*") if p.is_file() and p.parent != mime)
    outcome: Counter[str] = Counter()
    for path in files:
        try:
            parsed = parse_message(path.read_bytes(), received_at=NOW)
        except UnparseableMail as exc:
            outcome[f"UnparseableMail ({exc.reason.split(' kept')[0]})"] += 1
            continue
        text = parsed.submission.subject + parsed.submission.body
        if "\ufffd" in text:
            outcome["text with U+FFFD (already in the source bytes)"] += 1
        elif "no body text: the subject is the text" in parsed.defects:
            outcome["readable (no body: subject as text)"] += 1
        else:
            outcome["readable text"] += 1
    print(f"\nshared MIME set, {len(files)} messages:")
    for label, count in outcome.most_common():
        print(f"  {count:4d}  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--mime", action="store_true", help="also report the shared MIME set")
    args = parser.parse_args()
    teddy = args.data_dir / "teddy2020c"
    if not (teddy / "unlabelled.jsonl").exists():
        sys.exit(f"no shared data at {teddy}")

    texts = load_texts(teddy, args.n)
    messages = [build(i, *texts[i % len(texts)]) for i in range(args.n)]
    sizes = [len(m) for m in messages]
    print(
        f"{len(messages)} messages in {len(STRUCTURES)} structures, "
        f"median {statistics.median(sizes) / 1024:.1f} KiB, total {sum(sizes) / 2**20:.1f} MiB"
    )

    # Every message must come out as the text it was built from (quotes trimmed).
    bad = 0
    for i, raw in enumerate(messages):
        parsed = parse_message(raw, received_at=NOW)
        if "\ufffd" in parsed.submission.body or len(parsed.submission.body) < 5:
            bad += 1
            if bad <= 3:
                print(f"  unreadable: #{i} {STRUCTURES[i % len(STRUCTURES)]}")
    print(f"readable bodies: {len(messages) - bad}/{len(messages)}")

    floor = time_rounds(email.message_from_bytes, messages, args.rounds)
    ours = time_rounds(lambda raw: parse_message(raw, received_at=NOW), messages, args.rounds)
    print(f"floor  email.message_from_bytes: {floor:8.0f} messages/s")
    print(f"parse  intake.email.parse_message: {ours:6.0f} messages/s ({floor / ours:.1f}x floor)")
    print("target for the whole intake: >= 200 messages/s")

    per_structure = {}
    for k, name in enumerate(STRUCTURES):
        subset = messages[k :: len(STRUCTURES)]
        per_structure[name] = time_rounds(
            lambda raw: parse_message(raw, received_at=NOW), subset, 1
        )
    for name, rate in per_structure.items():
        print(f"  {name:26s} {rate:7.0f} messages/s")

    if args.mime:
        mime = args.data_dir / "mime"
        if mime.is_dir():
            mime_report(mime)
        else:
            print(f"no shared MIME set at {mime}")


if __name__ == "__main__":
    main()
