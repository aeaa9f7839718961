"""triage.routing.text.normalize_text: its quick NFKC check gives what NFKC gives."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from pathlib import Path

from triage.routing import text as routing_text
from triage.routing.text import MAX_CHARS, normalize_text


def _reference(text: str) -> str:
    """`normalize_text` as first written: the whole text NFKC-normalised."""
    text = unicodedata.normalize("NFKC", text[:MAX_CHARS]).lower()
    return re.sub(r"\d", "0", re.sub(r"\s+", " ", text))


def test_normalize_text_checks_nfkc_instead_of_normalising_and_gives_the_same() -> None:
    """Over real complaints (most are NFKC once their ，！？ are ASCII: the quick path) and
    random strings of full-width punctuation, combining marks (which compose with what a
    mark is replaced by, e.g. = and U+0338), jamo and compatibility characters."""
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    texts = [
        row[key]
        for path in sorted(shared.glob("*/*.jsonl"))
        for row in map(json.loads, path.read_text(encoding="utf-8").splitlines()[:500])
        for key in ("subject", "body")
        if isinstance(row.get(key), str)
    ]
    assert len(texts) > 1000
    # Real texts not NFKC (their ，！？) that the quick check serves.
    quick = sum(
        not unicodedata.is_normalized("NFKC", t)
        and unicodedata.is_normalized("NFKC", routing_text._nfkc(t))
        and routing_text._nfkc(t) != t
        for t in texts
    )
    assert quick > 100
    rng = random.Random(11)
    alphabet = list(
        "！，（）：；？～\u3000 ,.!=<>aZ１Ａ가\u1100\u1161\u11a8\u0301\u0308\u0338\u3099\u309a"
        "\u0915\u093c㈱①ﬁſ\u212aéｶﾞ\uff9e\u0cd5\u0cbf红，。"
    )
    texts += ["".join(rng.choices(alphabet, k=rng.randrange(12))) for _ in range(30_000)]
    for text in texts:
        assert normalize_text(text) == _reference(text), repr(text)
