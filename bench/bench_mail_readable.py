"""Benchmark: the share of mail whose case text comes out readable, and none lost.

Issue 7 asks that of a few thousand real Chinese emails at least 99 % come out as readable
text and none is lost. This runs `intake.email.parse_message` over

- every message under ../shared/data/mime/ (149 broken real-world messages from four mail
  parsers' test suites, in many languages; see its PROVENANCE.md), and
- messages built from ../shared/data/teddy2020c texts (real citizens' messages) in the ten
  structures of bench/bench_mail_parse.py plus eight more of the faults seen in Chinese mail
  (GBK-only name characters in raw headers, lying Big5 and UTF-8 labels, control characters
  and terminal escapes, nested forwards, HTML with entities, RFC 2231 file names, RFC 2047
  words split mid-character, 8-bit lines wrapped every 75 bytes through characters),

and reports for each set: how many were read, how many were quarantined (`UnparseableMail`:
kept, not lost) and why, how many crashed the parser (lost: must be 0), and the share whose
case text (subject, From name and body) is readable by
`intake.mail.readable.unreadable_reason`. For the teddy set the text is also known, so
"exact" counts messages whose body is exactly the text they were built from (after
`clean_text`; for HTML parts, with runs of white space as one space, and the greeting and
link around it allowed) and whose subject and From name are exactly theirs. Failures are
listed with their reason.

    .venv/bin/python bench/bench_mail_readable.py [--n 2000] [--show 10]
"""

from __future__ import annotations

import argparse
import base64
import json
import quopri
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_mail_parse import NOW, STRUCTURES, build  # noqa: E402

from intake.email import UnparseableMail, parse_message  # noqa: E402
from intake.mail.readable import unreadable_reason  # noqa: E402
from intake.normalise import clean_line, clean_text  # noqa: E402

EXTRA = (  # nine more structures
    "raw-gbk-name-subject",
    "big5-label-over-gbk",
    "utf8-label-over-gbk",
    "controls-and-escapes",
    "forwarded-rfc822",
    "html-entities-no-charset",
    "rfc2231-filename-only-text",
    "gb18030-base64-split-2047",
    "8bit-wrapped-by-bytes",
)
NAMES = ("朱镕基", "陶喆", "王堃", "刘昇", "李赟", "张玥", "周嬛", "王小明")


def build_extra(index: int, subject: str, body: str) -> bytes:
    """One message in an extra structure (picked by ``index``) carrying ``subject``/``body``."""
    structure = EXTRA[index % len(EXTRA)]
    subject = subject or body[:20]
    gbk = body.encode("gb18030")
    name = NAMES[index % len(NAMES)]
    head = [
        b"From: " + name.encode("gbk") + f" <citizen{index}@example.cn>".encode(),
        b"To: xfb@example.gov.cn",
        b"Date: Mon, 02 Mar 2026 08:00:00 +0000",
        f"Message-ID: <extra-{index}@mail.example.cn>".encode(),
        b"MIME-Version: 1.0",
        b"Subject: =?gb2312?B?" + base64.b64encode(subject.encode("gb18030")) + b"?=",
    ]
    if structure == "raw-gbk-name-subject":
        head[-1] = b"Subject: " + (name + "反映：" + subject).encode("gb18030")
        head.append(b"Content-Type: text/plain")
        payload = gbk
    elif structure == "big5-label-over-gbk":
        head.append(b"Content-Type: text/plain; charset=big5")
        payload = gbk
    elif structure == "utf8-label-over-gbk":
        head.append(b"Content-Type: text/plain; charset=utf-8")
        payload = gbk
    elif structure == "controls-and-escapes":
        head.append(b"Content-Type: text/plain; charset=gbk")
        # A NUL inside the first two-byte character, colour around the text.
        cut = next((i for i, char in enumerate(body) if len(char.encode("gb18030")) == 2), 0)
        head_bytes = body[:cut].encode("gb18030")
        char = body[cut : cut + 1].encode("gb18030")
        rest = body[cut + 1 :].encode("gb18030")
        payload = (
            b"\x1b[1;31m" + head_bytes + char[:1] + b"\x00" + char[1:] + b"\x1b[0m" + rest + b"\x07"
        )
    elif structure == "forwarded-rfc822":
        head.append(b'Content-Type: multipart/mixed; boundary="fw"')
        inner = (
            b"From: a@example.cn\r\nSubject: fw\r\nContent-Type: text/plain; charset=gbk\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(gbk)
        )
        payload = b"--fw\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--fw--\r\n"
    elif structure == "html-entities-no-charset":
        head.append(b"Content-Type: text/html")
        escaped = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        payload = (
            "<html><body><div style='font:14px'>" + escaped + "&nbsp;</div></body></html>"
        ).encode("gb18030")
    elif structure == "rfc2231-filename-only-text":
        head.append(b'Content-Type: multipart/mixed; boundary="att"')
        payload = (
            b"--att\r\nContent-Type: text/plain; charset=gb2312\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            + quopri.encodestring(gbk)
            + b"\r\n--att\r\nContent-Type: application/pdf\r\n"
            b"Content-Disposition: attachment; filename*=gbk''%D6%EC%E9%46.pdf\r\n\r\n"
            b"%PDF-1.4\r\n--att--\r\n"
        )
    elif structure == "8bit-wrapped-by-bytes":
        # A client that wraps 8-bit lines every 75 bytes, through characters; no charset.
        head.append(b"Content-Type: text/plain")
        payload = b"\r\n".join(gbk[i : i + 75] for i in range(0, len(gbk), 75))
    else:  # gb18030-base64-split-2047: words split every 5 bytes, mid-character
        data = subject.encode("gb18030")
        words = [
            b"=?gb18030?B?" + base64.b64encode(data[i : i + 5]) + b"?="
            for i in range(0, len(data), 5)
        ]
        head[-1] = b"Subject: " + b"\r\n ".join(words)
        head.append(b"Content-Type: text/plain; charset=gb18030")
        head.append(b"Content-Transfer-Encoding: base64")
        payload = base64.encodebytes(gbk)
    return b"\r\n".join(head) + b"\r\n\r\n" + payload


@dataclass
class Tally:
    """What came of one set of messages."""

    name: str
    total: int = 0
    readable: int = 0
    exact: int = 0
    checked_exact: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    crashed: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, label: str, detail: str) -> None:
        self.failures.append(f"{label}: {detail}")

    def report(self, show: int) -> None:
        parsed = self.total - sum(self.quarantined.values()) - self.crashed
        print(f"\n{self.name}: {self.total} messages")
        print(f"  parsed        {parsed:6d}")
        print(f"  quarantined   {sum(self.quarantined.values()):6d}  (kept, not lost)")
        for reason, count in self.quarantined.most_common():
            print(f"      {count:4d}  {reason}")
        print(f"  crashed       {self.crashed:6d}  (lost)")
        share = self.readable / self.total if self.total else 0.0
        print(f"  readable      {self.readable:6d}  = {share:.2%} of all")
        if parsed:
            print(f"                        = {self.readable / parsed:.2%} of those parsed")
        for reason, count in self.unreadable.most_common():
            print(f"      {count:4d}  unreadable: {reason}")
        if self.checked_exact:
            print(
                f"  exact text    {self.exact:6d}  of {self.checked_exact} "
                f"({self.exact / self.checked_exact:.2%})"
            )
        for line in self.failures[:show]:
            print(f"    - {line}")
        if len(self.failures) > show:
            print(f"    … and {len(self.failures) - show} more")


def measure(
    tally: Tally,
    messages: Iterable[tuple[str, bytes, tuple[str, str, str] | None]],
) -> Tally:
    """Parses each (label, raw, expected (From name, subject, body) or None) into ``tally``."""
    for label, raw, expected in messages:
        tally.total += 1
        try:
            parsed = parse_message(raw, received_at=NOW)
        except UnparseableMail as exc:
            tally.quarantined[exc.reason.split(" kept")[0][:70]] += 1
            tally.fail(label, f"quarantined: {exc.reason}")
            continue
        except Exception as exc:  # a crash: the mail would be lost without the intake's guard
            tally.crashed += 1
            tally.fail(label, f"CRASH {type(exc).__name__}: {exc}")
            continue
        subject, body = parsed.submission.subject, parsed.submission.body
        name = parsed.submission.contact.name
        reason = (
            unreadable_reason(subject + "\n" + body) or _bad_subject(subject) or _bad_subject(name)
        )
        if reason:
            tally.unreadable[reason] += 1
            tally.fail(label, f"{reason}: {(subject + ' | ' + body)[:90]!r}")
        else:
            tally.readable += 1
        if expected is not None:
            tally.checked_exact += 1
            want_name, want_subject, want_body = expected
            html = "html" in label
            body_ok = body == want_body or (html and _words(want_body) in _words(body))
            if "wrapped" in label:  # a wrap between two characters stays a line break
                body_ok = _words(body).replace(" ", "") == _words(want_body).replace(" ", "")
            if body_ok and subject == want_subject and name == want_name:
                tally.exact += 1
            elif not reason:
                got, want = (
                    (body, want_body)
                    if not body_ok
                    else (subject, want_subject)
                    if subject != want_subject
                    else (name, want_name)
                )
                tally.fail(label, f"not the text sent: {got[:40]!r} ≠ {want[:40]!r}")
    return tally


def _words(text: str) -> str:
    """White space as HTML shows it: runs of it are one space."""
    return " ".join(text.split())


def _bad_subject(subject: str) -> str:
    """A subject may be empty; a non-empty one must be readable too."""
    return unreadable_reason(subject) if subject.strip() else ""


def mime_messages(mime: Path) -> list[tuple[str, bytes, None]]:
    files = sorted(p for p in mime.rglob("*") if p.is_file() and p.parent != mime)
    return [(str(p.relative_to(mime)), p.read_bytes(), None) for p in files]


def teddy_texts(teddy: Path, n: int) -> list[tuple[str, str]]:
    """``n`` (subject, body) pairs spread over all four teddy files (not only the first)."""
    rows: list[tuple[str, str]] = []
    for name in ("unlabelled.jsonl", "with_replies.jsonl", "with_votes.jsonl", "train.jsonl"):
        with (teddy / name).open(encoding="utf-8") as handle:
            rows += [(r.get("subject") or "", r["body"]) for r in map(json.loads, handle)]
    step = max(1, len(rows) // n)
    return rows[::step][:n]


def built(
    texts: list[tuple[str, str]],
    structures: tuple[str, ...],
    make: Callable[[int, str, str], bytes],
    offset: int,
) -> list[tuple[str, bytes, tuple[str, str, str]]]:
    out = []
    for i, (subject, body) in enumerate(texts):
        index = i + offset
        raw = make(index, subject, body)
        structure = structures[index % len(structures)]
        want_subject = clean_line(subject or body[:20])
        if structure == "reply-quoted-signature":
            want_subject = clean_line("回复：" + want_subject)
        elif structure == "raw-gbk-name-subject":
            want_subject = clean_line(NAMES[index % len(NAMES)] + "反映：" + (subject or body[:20]))
        want_name = NAMES[index % len(NAMES)] if make is build_extra else f"市民{index}"
        out.append((f"#{index} {structure}", raw, (want_name, want_subject, clean_text(body))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="teddy messages per structure set")
    parser.add_argument("--show", type=int, default=10, help="failures listed per set")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    tallies = []
    mime = args.data_dir / "mime"
    if mime.is_dir():
        tallies.append(measure(Tally("shared MIME set (../shared/data/mime)"), mime_messages(mime)))
    else:
        print(f"no shared MIME set at {mime}")
    teddy = args.data_dir / "teddy2020c"
    if (teddy / "unlabelled.jsonl").exists():
        texts = teddy_texts(teddy, args.n)
        tallies.append(
            measure(
                Tally(f"teddy2020c in the {len(STRUCTURES)} structures of bench_mail_parse"),
                built(texts, STRUCTURES, build, 0),
            )
        )
        tallies.append(
            measure(
                Tally(f"teddy2020c in {len(EXTRA)} more structures (this file)"),
                built(texts, EXTRA, build_extra, 0),
            )
        )
    else:
        print(f"no teddy2020c texts at {teddy}")
    for tally in tallies:
        tally.report(args.show)
    total = sum(t.total for t in tallies)
    readable = sum(t.readable for t in tallies)
    crashed = sum(t.crashed for t in tallies)
    if total:
        print(f"\nall sets: {readable}/{total} readable ({readable / total:.2%}), {crashed} lost")
    print("target: >= 99 % readable, none lost")


if __name__ == "__main__":
    main()
