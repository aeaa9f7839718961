"""Compact similarity profiles (triage/similarity.py): the vectorised scorer gives the scores
of the dictionary formulas it replaced, a profile read back from its bytes scores exactly as
the computed one, and a change of what a profile holds cannot go unnoticed by the stored
ones (`PROFILE_VERSION`)."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from triage import similarity
from triage.similarity import ProfiledText, duplicate_score, similar_cases

PAIRS = Path(__file__).resolve().parents[2] / "bench" / "data" / "duplicate_pairs.jsonl"


def _pairs() -> list[tuple[str, str]]:
    with PAIRS.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [(str(r["a"]), str(r["b"])) for r in rows]


def _reference(a: str, b: str) -> float:
    """The pair score as the dictionary profiles defined it before profiles were compact."""
    p, q = similarity._raw_profile(a), similarity._raw_profile(b)

    def normalised(raw: Any) -> dict[str, float]:
        norm = math.sqrt(sum(v * v for v in raw.content.values())) or 1.0
        return {k: v / norm for k, v in raw.content.items()}

    def cosine(x: dict[str, float], y: dict[str, float]) -> float:
        if not x or not y:
            return 0.0
        dot = sum(v * y[k] for k, v in x.items() if k in y)
        if not dot:
            return 0.0
        return dot / math.sqrt(sum(v * v for v in x.values()) * sum(v * v for v in y.values()))

    def weight(concepts: frozenset[str]) -> float:
        return sum(similarity._CONCEPT_WEIGHTS.get(c, 1.0) for c in concepts)

    mine, theirs = normalised(p), normalised(q)
    content = sum(mine[k] * theirs[k] for k in mine.keys() & theirs.keys())
    if not p.scripts & q.scripts:
        place = max(similarity.UNKNOWN_PLACE, content)
    else:
        place = cosine(p.places, q.places)
        for kind in "bruhl":
            x = {k for k in p.places if k.startswith("#" + kind)}
            y = {k for k in q.places if k.startswith("#" + kind)}
            if x and y and not x & y:
                place *= 0.35
                break
    shared = weight(p.concepts & q.concepts)
    total = weight(p.concepts) + weight(q.concepts)
    dice = 2 * shared / (total + 1.0) if shared else 0.0
    problem = max(dice, content)
    return place**0.4 * problem**0.6


def test_the_vectorised_scores_are_the_dictionary_formulas() -> None:
    pairs = _pairs()
    rng = random.Random(3)
    texts = [t for pair in pairs for t in pair]
    pairs += [(rng.choice(texts), rng.choice(texts)) for _ in range(300)]
    for a, b in pairs:
        expected = _reference(a, b)
        got = similarity._scores(similarity.profile(a), [similarity.profile(b)])[0]
        assert got == pytest.approx(expected, abs=1e-12), (a, b)
        assert duplicate_score(a, b) == round(min(expected, 1.0), 4)
        assert duplicate_score(b, a) == duplicate_score(a, b)


def test_a_stored_profile_scores_as_the_computed_one() -> None:
    texts = sorted({t for pair in _pairs() for t in pair})
    query, candidates = texts[0], list(enumerate(texts[1:]))
    stored = [
        (i, ProfiledText(t, similarity.stored_profile(similarity.profile(t).data)))
        for i, t in candidates
    ]
    computed = similar_cases(query, candidates, min_score=0.0, limit=len(texts))
    from_store = similar_cases(
        ProfiledText(query, similarity.stored_profile(similarity.profile(query).data)),
        stored,
        min_score=0.0,
        limit=len(texts),
    )
    assert from_store == computed
    # The same scores whether a candidate is scored alone or among all the others.
    alone = {i: similar_cases(query, [(i, t)], min_score=0.0)[0][1] for i, t in candidates}
    assert dict(computed) == alone


def test_a_profiled_text_is_still_its_text() -> None:
    text = "\n".join(("莲花路路灯不亮", "莲花路与金桥街交叉口的路灯坏了两个星期。"))
    profiled = ProfiledText(text, similarity.profile(text))
    assert profiled == text and isinstance(profiled, str) and profiled.strip() == text
    assert similar_cases(profiled, [(1, profiled)]) == [(1, 1.0)]


def test_a_profile_is_compact() -> None:
    texts = [t for pair in _pairs() for t in pair]
    sizes = sorted(len(similarity.profile(t).data) for t in texts)
    assert sizes[len(sizes) // 2] < 1200  # bytes: about 6 a Chinese bigram


def test_unreadable_bytes_are_refused() -> None:
    data = similarity.profile("翠竹苑小区三号楼下的垃圾桶已经满了三天").data
    for bad in (b"", data[:10], data + b"x", data[:-1]):
        with pytest.raises(ValueError):
            similarity.stored_profile(bad)


# What the profiles of a few texts hold, with the version they were made with. The version
# follows the word lists and jieba by itself; a change of the code that computes profiles
# (`_raw_profile`, `_encode`) must bump similarity._PROFILE_FORMAT, or stored profiles would go
# on being scored as if they were what the code now computes.
_EXPECTED = (382248351, "2164f0aee362db0a")
_TEXTS = (
    "尊敬的领导您好！我是翠竹苑小区3栋的业主，楼下“蓝调”酒吧每晚音乐声太大，吵得睡不着。",
    "The street light on Maple Avenue near building 8 has been dark for two weeks.",
    "松涛路26路公交站的顶棚破损，下雨天无处避雨，希望尽快维修。",
)


def test_a_change_of_profiles_comes_with_a_new_version() -> None:
    data = b"".join(similarity._encode(similarity._raw_profile(t)) for t in _TEXTS)
    now = (similarity.PROFILE_VERSION, hashlib.sha256(data).hexdigest()[:16])
    assert now[0] != _EXPECTED[0] or now[1] == _EXPECTED[1], (
        "profiles changed but PROFILE_VERSION did not: bump similarity._PROFILE_FORMAT"
    )
    assert now == _EXPECTED, f"a new PROFILE_VERSION: set _EXPECTED = {now!r} here"
