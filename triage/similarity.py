"""Near-duplicate complaints and hot issues.

``similar_cases`` finds open cases that say the same as a new complaint, so a supervisor can
merge them; ``hot_issues`` groups a month's cases about the same local problem for the
monthly report. Both compare texts by the cosine of their TF-IDF character bigram
profiles, which needs no word segmentation and survives the small rewordings of people who
complain about the same thing. Profiles are hashed into a fixed number of buckets and cached
per text, and the candidates of the last few calls are kept run together as sparse matrices, so
comparing each new complaint with the open cases of the last weeks takes milliseconds.
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


class _Candidates:
    """Candidate texts run together once, so that comparing new complaints with the same
    open cases costs two sparse products instead of rebuilding their profiles.

    Buckets are renumbered to the ones that occur (``buckets``), which keeps the weight
    vectors small enough to stay in the processor's cache.
    """

    def __init__(self, texts: Sequence[str]):
        profiles = _profiles(texts)
        lengths = np.fromiter((len(p[0]) for p in profiles), dtype=np.int64, count=len(profiles))
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        if indptr[-1]:
            indices = np.concatenate([p[0] for p in profiles])
            tf = np.concatenate([p[1] for p in profiles])
        else:
            indices, tf = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        df = np.bincount(indices, minlength=_BUCKETS)
        self.buckets = np.flatnonzero(df)
        self.df = df[self.buckets]
        self.column = np.full(_BUCKETS, -1, dtype=np.int32)
        self.column[self.buckets] = np.arange(len(self.buckets), dtype=np.int32)
        shape = (len(texts), len(self.buckets))
        compact = self.column[indices]
        self.tf = sp.csr_matrix((tf, compact, indptr), shape=shape)
        self.tf2 = sp.csr_matrix((tf * tf, compact, indptr), shape=shape)
        self.size = len(texts)

    def scores(self, query: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Cosine of the query's TF-IDF profile with each candidate's (idf of all of them)."""
        buckets, tf = query
        n = self.size + 1
        columns = self.column[buckets]
        known = columns >= 0
        df = self.df.astype(np.float64)
        df[columns[known]] += 1.0  # the query counts too
        idf = (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)
        query_idf = np.full(len(buckets), np.float32(math.log((1 + n) / 2) + 1.0))
        query_idf[known] = idf[columns[known]]
        query_weight = tf * query_idf
        query_norm = float(np.sqrt(np.dot(query_weight, query_weight)))
        norms = np.sqrt(self.tf2 @ (idf * idf))
        weights = np.zeros(len(idf), dtype=np.float32)
        weights[columns[known]] = query_weight[known] * idf[columns[known]]
        dots = self.tf @ weights
        norms[norms == 0] = 1.0
        return dots / (norms * (query_norm or 1.0))


_CANDIDATE_SETS = 4
_candidate_cache: OrderedDict[tuple[str, ...], _Candidates] = OrderedDict()


def _candidates(texts: tuple[str, ...]) -> _Candidates:
    """The run-together candidates, kept for the last few distinct candidate lists."""
    with _cache_lock:
        found = _candidate_cache.get(texts)
        if found is not None:
            _candidate_cache.move_to_end(texts)
            return found
    found = _Candidates(texts)
    with _cache_lock:
        _candidate_cache[texts] = found
        while len(_candidate_cache) > _CANDIDATE_SETS:
            _candidate_cache.popitem(last=False)
    return found


def similar_cases(
    text: str,
    candidates: Sequence[tuple[int, str]],
    *,
    min_score: float = DUPLICATE_SCORE,
    limit: int = 5,
) -> list[tuple[int, float]]:
    """The candidates (case id, text) most like ``text``: (case id, cosine), best first.

    The idf comes from the text and the candidates together. The candidates are run together
    once and kept (for the last few candidate lists), so comparing each new complaint with the
    same open cases stays fast.
    """
    if not candidates or not text.strip():
        return []
    scores = _candidates(tuple(c[1] for c in candidates)).scores(_profiles([text])[0])
    best = np.flatnonzero(scores >= min_score - 1e-6)
    best = best[np.argsort(-scores[best], kind="stable")][:limit]
    return [(candidates[i][0], round(min(float(scores[i]), 1.0), 4)) for i in best]


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
