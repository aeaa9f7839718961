"""Near-duplicate complaints and hot issues.

``similar_cases`` finds open cases that say the same as a new complaint, so a supervisor can
merge them; ``hot_issues`` groups a month's cases about the same local problem for the
monthly report. Both compare texts by the cosine of their TF-IDF character bigram
profiles, which needs no word segmentation and survives the small rewordings of people who
complain about the same thing. Profiles are hashed into a fixed number of buckets and cached
per text, so comparing a complaint with the open cases of the last weeks stays fast.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from triage.routing import ngram_codes, normalize_text, segment

__all__ = ["HotIssue", "hot_issues", "similar_cases"]

DUPLICATE_SCORE = 0.5
"""Cosine from which two complaints are taken to report the same thing."""

HOT_ISSUE_SCORE = 0.3
"""Cosine from which two complaints are taken to concern the same local problem."""

_BUCKETS = 1 << 20
_UNIGRAM_LIMIT = np.uint64(1 << 21)  # codes below this are single characters
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CACHE_SIZE = 50_000

_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_cache_lock = threading.Lock()


def _profiles(texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sorted bucket numbers and log-scaled counts of each text's character bigrams."""
    result: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(texts)
    missing: list[int] = []
    with _cache_lock:
        for i, text in enumerate(texts):
            profile = _cache.get(text)
            if profile is None:
                missing.append(i)
            else:
                _cache.move_to_end(text)
                result[i] = profile
    if missing:
        normalized = [normalize_text(texts[i]) for i in missing]
        codes, owners = ngram_codes(normalized, 2)
        keep = codes >= _UNIGRAM_LIMIT
        buckets = ((codes[keep] * _GOLDEN) >> np.uint64(44)).astype(np.int64)
        owners = owners[keep]
        # One sort puts every text's buckets together and in order.
        order = np.lexsort((buckets, owners))
        buckets, owners = buckets[order], owners[order]
        bounds = np.searchsorted(owners, np.arange(len(missing) + 1))
        new = {}
        for k, i in enumerate(missing):
            part = buckets[bounds[k] : bounds[k + 1]]
            unique, counts = np.unique(part, return_counts=True)
            profile = (unique.astype(np.int32), (1.0 + np.log(counts)).astype(np.float32))
            result[i] = profile
            new[texts[i]] = profile
        with _cache_lock:
            _cache.update(new)
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return result  # type: ignore[return-value]


def _weighted(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All profiles run together: indptr, bucket numbers and L2-normalised TF-IDF weights.

    The idf comes from these texts themselves.
    """
    profiles = _profiles(texts)
    lengths = np.fromiter((len(p[0]) for p in profiles), dtype=np.int64, count=len(profiles))
    indptr = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if indptr[-1] == 0:
        return indptr, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    indices = np.concatenate([p[0] for p in profiles])
    values = np.concatenate([p[1] for p in profiles])
    idf = np.log((1 + len(texts)) / (1 + np.bincount(indices, minlength=_BUCKETS))) + 1.0
    values *= idf.astype(np.float32)[indices]
    squares = np.zeros(len(texts), dtype=np.float32)
    nonempty = lengths > 0
    squares[nonempty] = np.add.reduceat(values**2, indptr[:-1][nonempty])
    squares[~nonempty] = 1.0
    values /= np.repeat(np.sqrt(squares), lengths)
    return indptr, indices, values


def _matrix(texts: Sequence[str]) -> sp.csr_matrix:
    """Rows of L2-normalised TF-IDF profiles; idf from these texts."""
    indptr, indices, values = _weighted(texts)
    return sp.csr_matrix((values, indices, indptr), shape=(len(texts), _BUCKETS))


def similar_cases(
    text: str,
    candidates: Sequence[tuple[int, str]],
    *,
    min_score: float = DUPLICATE_SCORE,
    limit: int = 5,
) -> list[tuple[int, float]]:
    """The candidates (case id, text) most like ``text``: (case id, cosine), best first."""
    if not candidates or not text.strip():
        return []
    indptr, indices, values = _weighted([text, *(c[1] for c in candidates)])
    query = np.zeros(_BUCKETS, dtype=np.float32)
    query[indices[: indptr[1]]] = values[: indptr[1]]
    start = indptr[1]
    products = query[indices[start:]] * values[start:]
    lengths = np.diff(indptr[1:])
    scores = np.zeros(len(candidates), dtype=np.float32)
    nonempty = lengths > 0
    scores[nonempty] = np.add.reduceat(products, indptr[1:-1][nonempty] - start)
    best = np.flatnonzero(scores >= min_score)
    best = best[np.argsort(-scores[best], kind="stable")][:limit]
    return [(candidates[i][0], round(float(scores[i]), 4)) for i in best]


@dataclass(frozen=True)
class HotIssue:
    """Cases about the same local problem."""

    case_ids: tuple[int, ...]
    size: int
    label: str
    keywords: tuple[str, ...]


_STOP_WORDS = frozenset(
    [
        "我们",
        "你们",
        "他们",
        "我",
        "你",
        "他",
        "她",
        "的",
        "了",
        "是",
        "在",
        "和",
        "有",
        "也",
        "都",
        "就",
        "不",
        "没有",
        "一个",
        "这个",
        "那个",
        "什么",
        "问题",
        "反映",
        "请问",
        "希望",
        "尊敬",
        "领导",
        "您好",
        "你好",
        "谢谢",
        "现在",
        "已经",
        "还是",
        "还有",
        "因为",
        "所以",
        "但是",
        "可以",
        "没",
        "要",
        "会",
        "能",
        "对",
        "到",
        "被",
        "把",
        "让",
        "给",
        "与",
        "及",
        "等",
        "从",
        "而",
        "很",
        "又",
        "吗",
        "呢",
        "啊",
        "该",
        "这",
        "那",
        "其",
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "is",
        "are",
        "was",
        "were",
        "for",
        "on",
        "with",
        "my",
        "i",
        "it",
        "this",
        "that",
    ]
)


def _keywords(texts: Sequence[str], frequency: Counter[str], total: int) -> tuple[str, ...]:
    """Words frequent in these texts and rare elsewhere."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(
            w
            for w in set(segment(normalize_text(text)))
            if len(w.strip()) > 1 and w not in _STOP_WORDS and not w.isdigit()
        )
    scored = {w: n * math.log((1 + total) / (1 + frequency.get(w, 0))) for w, n in counts.items()}
    return tuple(w for w, _ in sorted(scored.items(), key=lambda x: (-x[1], x[0]))[:5])


def hot_issues(
    items: Sequence[tuple[int, str]],
    *,
    min_score: float = HOT_ISSUE_SCORE,
    min_size: int = 3,
) -> list[HotIssue]:
    """Groups of at least ``min_size`` cases about the same problem, largest first.

    Two cases belong together when their cosine is at least ``min_score``, and so do cases
    linked through others. The label is the text of the case most like the rest of its group
    (its first 60 characters); the keywords are the words that set the group apart.
    """
    if len(items) < max(min_size, 2):
        return []
    texts = [text for _, text in items]
    matrix = _matrix(texts)
    similarity = (matrix @ matrix.T).tocsr()
    similarity.data[similarity.data < min_score] = 0
    similarity.eliminate_zeros()
    count, component = connected_components(similarity, directed=False)
    groups = [np.flatnonzero(component == c) for c in range(count)]
    groups = [g for g in groups if len(g) >= min_size]
    if not groups:
        return []

    frequency: Counter[str] = Counter()
    for text in texts:
        frequency.update(set(segment(normalize_text(text))))
    issues = []
    for group in groups:
        inner = similarity[group][:, group]
        central = group[int(np.asarray(inner.sum(axis=1)).ravel().argmax())]
        issues.append(
            HotIssue(
                case_ids=tuple(items[i][0] for i in group),
                size=len(group),
                label=" ".join(texts[central].split())[:60],
                keywords=tuple(_keywords([texts[i] for i in group], frequency, len(texts))),
            )
        )
    return sorted(issues, key=lambda issue: (-issue.size, issue.case_ids))
