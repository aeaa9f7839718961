"""intake.phone.parse_row cleans each cell once: its Submission is the one that cleaning
every field again (Submission's and Contact's own __post_init__) gives."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from intake.phone import ColumnMapping, parse_file
from intake.submission import Contact, Submission

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
HEADER = ["工单号", "来电号码", "来电时间", "通话时长", "诉求内容", "话务员", "姓名", "地址"]


def _messy(rng: random.Random, text: str) -> str:
    """`text` with what exports hold: runs of spaces and tabs, CR LF, controls, escapes,
    zero-width and bidi characters, full-width letters, compatibility characters."""
    bits = [" ", "  ", "\t", "\r\n", "\x07", "\x1b[31m", "\u200b", "\u202e", "Ａ１", "①", "ﬁ", "，"]
    out = list(text)
    for _ in range(rng.randrange(4)):
        out.insert(rng.randrange(len(out) + 1), rng.choice(bits))
    return "".join(out)


def test_parsed_submissions_are_what_cleaning_them_again_gives() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "teddy2020c"
    texts = [
        row["body"][:300]
        for row in map(json.loads, (shared / "train.jsonl").read_text("utf-8").splitlines()[:800])
        if isinstance(row.get("body"), str) and row["body"].strip()
    ]
    rng = random.Random(5)
    phones = ["138 0013 8000", "１３８００１３８０００", "+86-138-0013-8000", "010-8765 4321转8021"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for i, text in enumerate(texts):
        call_id = _messy(rng, f"A{i:06d}") if i % 7 else ""
        if i % 50 == 3:
            call_id = f"{i:04d}" + "x" * 250 + " tail"  # cut at 255 characters: a space
        writer.writerow(
            [
                call_id,
                rng.choice(phones),
                f"2026/11/{1 + i % 28} {i % 24}:{i % 60:02d}",
                str(i % 900),
                _messy(rng, text),
                _messy(rng, "王芳"),
                _messy(rng, rng.choice(["", "李先生", "张 三"])),
                _messy(rng, rng.choice(["", "明德路 12号", "桃源居（东区）"])),
            ]
        )
    rows = list(parse_file(out.getvalue().encode(), ColumnMapping(), tz=TZ, now=NOW).rows)
    submissions = [r.submission for r in rows if r.submission is not None]
    assert len(submissions) > len(texts) * 0.9
    assert any(len(s.external_id) > 250 for s in submissions)
    for sub in submissions:
        assert type(sub) is Submission and type(sub.contact) is Contact
        again = dataclasses.replace(sub, contact=dataclasses.replace(sub.contact))
        assert again == sub, sub
        assert {f.name: getattr(again, f.name) for f in dataclasses.fields(sub)} == {
            f.name: getattr(sub, f.name) for f in dataclasses.fields(sub)
        }
