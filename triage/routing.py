"""Routing classifier: suggests the responsible department for a complaint.

Everything about the model lives here: reading labelled examples, the scikit-learn pipeline,
training with cross-validation, choosing the confidence above which a case is routed without
a supervisor, evaluation on held-out data, and a versioned store of trained models with
their metadata beside them. No Flask and no database: the web app, the CLI and the
benchmarks call these functions.

The pipeline takes ``(subject, body)`` pairs. Its features are TF-IDF weighted character
1-3-grams of the whole text, the same of the title alone (the subject, or the first sentence of
the body where the subject is empty, since many messages arrive with title and detail run
together), and words (jieba's dictionary and algorithm through jieba-rs, which is several times
faster than jieba itself; English words come out of it too). A linear SVM with balanced class
weights scores them; one sigmoid per label, fitted on the out-of-fold scores of the training
cross-validation, turns scores into probabilities. Character n-grams are counted with numpy
rather than a Python loop per n-gram, and words are numbered in C (``dict.fromkeys``, ``map``),
which keeps classification well above a thousand complaints a second on one core.

Training fits the features once on all examples and cross-validates the SVM on rows of that
one matrix (3 folds from ``LARGE`` examples on, fitted by SGD); below ``LARGE`` the
cross-validation runs twice with different splits. The auto-route threshold is chosen on the
pooled out-of-fold probabilities, on the lower confidence bound of the precision
(``THRESHOLD_Z``), so that it holds on new messages and not only on the training data.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import platform
import re
import secrets
import tempfile
import time
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np
import rjieba
import scipy.sparse as sp
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

__all__ = [
    "DataError",
    "Example",
    "IncompatibleModel",
    "KeywordRouter",
    "ModelStore",
    "Router",
    "RoutingModel",
    "Suggestion",
    "choose_threshold",
    "evaluate",
    "load_examples",
    "make_pipeline",
    "map_labels",
    "should_deploy",
    "train_model",
]

NEVER = 1.01
"""A threshold no probability reaches: the router never routes on its own."""

TITLE_CHARS = 40
"""At most this many characters of the body are taken as the title when the subject is empty."""

MAX_CHARS = 3000
"""Longer texts are cut here; the rest adds little and would only cost time."""


# --------------------------------------------------------------------------------------------
# Labelled examples


@dataclass(frozen=True)
class Example:
    """One labelled complaint."""

    subject: str
    body: str
    label: str


class DataError(ValueError):
    """Training data that cannot be used; the message says where and why."""


def load_examples(path: str | Path) -> list[Example]:
    """Read JSON Lines with ``subject``, ``body`` and ``label``; blank lines are skipped."""
    path = Path(path)
    examples: list[Example] = []
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            subject = row.get("subject", "")
            body = row.get("body")
            label = row.get("label")
            if subject is None:
                subject = ""
            for name, value in (("subject", subject), ("body", body), ("label", label)):
                if not isinstance(value, str):
                    shown = "missing" if value is None else f"a {type(value).__name__}"
                    raise DataError(f"{where}: '{name}' must be a string, it is {shown}")
            if not (subject.strip() or body.strip()):
                raise DataError(f"{where}: subject and body are both empty")
            if not label.strip():
                raise DataError(f"{where}: 'label' is empty")
            examples.append(Example(subject, body, label.strip()))
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def map_labels(examples: Iterable[Example], mapping: dict[str, str]) -> list[Example]:
    """Replace each label by the department code it maps to; unmapped labels are an error."""
    examples = list(examples)
    unknown = Counter(e.label for e in examples if e.label not in mapping)
    if unknown:
        listed = ", ".join(f"'{label}' ({n} rows)" for label, n in sorted(unknown.items()))
        raise DataError(f"labels with no department in the mapping: {listed}")
    return [Example(e.subject, e.body, mapping[e.label]) for e in examples]


def data_fingerprint(examples: Sequence[Example]) -> str:
    """sha256 over the examples as canonical JSON lines: the same data gives the same hash."""
    digest = hashlib.sha256()
    for e in examples:
        line = json.dumps([e.subject, e.body, e.label], ensure_ascii=False, separators=(",", ":"))
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Text features

_SPACES = re.compile(r"\s+")
_DIGITS = re.compile(r"\d")
# Where a title run together with its detail ends: at a greeting to the official addressed…
_GREETING = re.compile(
    r"尊敬的|您好|你好|各位领导|(?:领导|书记|局长|市长|县长|区长|主任|厅长)[：:,，]"
)
# …or at the end of its first sentence.
_SENTENCE_END = re.compile(r"[。！？!?]")


def normalize_text(text: str) -> str:
    """NFKC (full-width to half-width), lower case, one space for any run, digits as 0."""
    text = unicodedata.normalize("NFKC", text[:MAX_CHARS]).lower()
    text = _SPACES.sub(" ", text)
    # Numbers are mostly dates, amounts and the anonymised place codes (A3区): their value
    # says nothing about the department, their presence sometimes does.
    return _DIGITS.sub("0", text)


def complaint_text(subject: str, body: str) -> str:
    """Subject and body as one text."""
    return f"{subject}\n{body}" if subject.strip() else body


def complaint_title(subject: str, body: str) -> str:
    """The title: the subject, or a guess at the title where it was run into the body."""
    if subject.strip():
        return subject
    greeting = _GREETING.search(body, 4, TITLE_CHARS + 20)
    end = greeting.start() if greeting else TITLE_CHARS + 20
    sentence = _SENTENCE_END.search(body, 0, end)
    if sentence and sentence.start() >= 6:
        end = sentence.start() + 1
    return body[: min(end, TITLE_CHARS)]


_BITS = np.uint64(21)  # every Unicode code point fits in 21 bits


def ngram_codes(texts: Sequence[str], max_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each character 1..max_n-gram of each text as an exact 63-bit code, with its text's index.

    Up to three code points are packed side by side, so codes are exact, not hashed, and an
    n-gram never collides with a shorter one (no text contains code point 0).
    """
    if max_n > 3:
        raise ValueError("character n-grams longer than 3 are not supported")
    encoded = [t.replace("\0", "").encode("utf-32-le") for t in texts]
    lengths = np.fromiter((len(b) // 4 for b in encoded), dtype=np.int64, count=len(encoded))
    points = np.frombuffer(b"".join(encoded), dtype=np.uint32).astype(np.uint64)
    ends = np.cumsum(lengths)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    codes: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for n in range(1, max_n + 1):
        count = len(points) - n + 1
        if count <= 0:
            continue
        inside = np.arange(count) + n <= ends[owner[:count]]
        code = points[:count].copy()
        for k in range(1, n):
            code |= points[k : k + count] << (_BITS * np.uint64(k))
        codes.append(code[inside])
        owners.append(owner[:count][inside])
    if not codes:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate(codes), np.concatenate(owners)


def decode_ngram(code: int) -> str:
    """The characters of an n-gram code (for explaining a model)."""
    chars = []
    while code:
        chars.append(chr(code & ((1 << 21) - 1)))
        code >>= 21
    return "".join(chars)


_WORD = re.compile(r"\w")


def segment(text: str) -> list[str]:
    """Words of a text: jieba's dictionary and algorithm (via jieba-rs), punctuation dropped."""
    return [w for w in rjieba.cut(text) if _WORD.search(w)]


def _idf(df: np.ndarray, n: int) -> np.ndarray:
    # scikit-learn's smoothed idf, so the figures match TfidfTransformer's.
    return np.log((1 + n) / (1 + df)) + 1.0


def _scale_rows(matrix: sp.csr_matrix, weight: float) -> sp.csr_matrix:
    """L2-normalise each row in place, then multiply by the block's weight."""
    lengths = np.diff(matrix.indptr)
    squares = np.zeros(matrix.shape[0])
    nonempty = lengths > 0
    if nonempty.any():
        squares[nonempty] = np.add.reduceat(matrix.data**2, matrix.indptr[:-1][nonempty])
    squares[~nonempty] = 1.0
    matrix.data *= np.repeat(weight / np.sqrt(squares), lengths)
    return matrix


@dataclass(frozen=True)
class Analysis:
    """Texts taken apart once: character n-gram codes of text and title, and word ids.

    Training analyses all texts once; the features are fitted on them once (vocabulary and
    idf need no labels) and every cross-validation fold takes rows of the one matrix.
    """

    size: int
    char_codes: np.ndarray
    char_owners: np.ndarray
    title_codes: np.ndarray
    title_owners: np.ndarray
    word_ids: np.ndarray
    word_owners: np.ndarray
    words: tuple[str, ...]


def analyze(pairs: Sequence[Sequence[str]], *, words: bool = True) -> Analysis:
    """Normalise, cut into character n-grams and segment into words.

    Words get ids in a table of this batch's distinct tokens; punctuation and spaces are in it
    too and dropped when a vocabulary is learnt (``fit``) or looked up (``transform``), which
    tests each distinct token once instead of every occurrence.
    """
    texts = [normalize_text(complaint_text(s or "", b or "")) for s, b in pairs]
    titles = [normalize_text(complaint_title(s or "", b or "")) for s, b in pairs]
    char_codes, char_owners = ngram_codes(texts, 3)
    title_codes, title_owners = ngram_codes(titles, 3)
    table: dict[str, int] = {}
    ids = np.zeros(0, dtype=np.int64)
    owners = np.zeros(0, dtype=np.int64)
    if words:
        cut = rjieba.cut
        tokens = [cut(text) for text in texts]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        flat = list(itertools.chain.from_iterable(tokens))
        # Distinct tokens in order of first occurrence, then each token's number: both loops
        # run in C (dict.fromkeys, map), not once per token in Python.
        table = {word: i for i, word in enumerate(dict.fromkeys(flat))}
        ids = np.fromiter(map(table.__getitem__, flat), dtype=np.int64, count=len(flat))
        owners = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    return Analysis(
        len(texts),
        char_codes,
        char_owners,
        title_codes,
        title_owners,
        ids,
        owners,
        tuple(table),
    )


def _counts(
    owners: np.ndarray, columns: np.ndarray, rows: int, idf: np.ndarray, sublinear: bool
) -> sp.csr_matrix:
    """TF-IDF matrix from (row, column) occurrences; columns < 0 are unknown and dropped."""
    known = columns >= 0
    owners, columns = owners[known], columns[known]
    matrix = sp.csr_matrix(
        (np.ones(len(columns)), (owners, columns)), shape=(rows, len(idf)), dtype=np.float64
    )
    matrix.sum_duplicates()
    if sublinear:
        np.log(matrix.data, out=matrix.data)
        matrix.data += 1.0
    matrix.data *= idf[matrix.indices]
    return matrix


def _distinct_counts(
    owners: np.ndarray, values: np.ndarray, rows: int
) -> tuple[np.ndarray, sp.csr_matrix]:
    """The distinct values (sorted) and a count matrix with one column per distinct value."""
    distinct, inverse = np.unique(values, return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(len(values)), (owners, inverse.ravel())),
        shape=(rows, len(distinct)),
        dtype=np.float64,
    )
    matrix.sum_duplicates()
    return distinct, matrix


def _keep_columns(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The columns where ``keep`` is true, renumbered in order."""
    column = np.cumsum(keep) - 1
    mask = keep[matrix.indices]
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[mask], minlength=matrix.shape[0]), out=indptr[1:])
    return sp.csr_matrix(
        (matrix.data[mask], column[matrix.indices[mask]], indptr),
        shape=(matrix.shape[0], int(keep.sum())),
    )


def _tfidf(counts: sp.csr_matrix, idf: np.ndarray, sublinear: bool, weight: float) -> sp.csr_matrix:
    """Counts to L2-normalised TF-IDF rows times the block's weight (in place)."""
    if sublinear:
        np.log(counts.data, out=counts.data)
        counts.data += 1.0
    counts.data *= idf[counts.indices]
    return _scale_rows(counts, weight)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class _CodeIndex:
    """An open-addressing hash table from n-gram code to column, probed with numpy.

    Looking up the million n-grams of a thousand texts this way costs about half what a binary
    search of the sorted vocabulary does. Built from the vocabulary when first needed, never
    stored with the model.
    """

    def __init__(self, vocabulary: np.ndarray):
        self.bits = max(4, len(vocabulary).bit_length() + 1)  # at most half full
        size = 1 << self.bits
        self.keys = np.zeros(size, dtype=np.uint64)  # 0 is no n-gram: an empty slot
        self.columns = np.full(size, -1, dtype=np.int64)
        slots = self._slots(vocabulary)
        pending = np.arange(len(vocabulary))
        while len(pending):
            free = self.keys[slots[pending]] == 0
            candidates = pending[free]
            # Of several codes aiming at one free slot, the first takes it; the rest probe on.
            _, first = np.unique(slots[candidates], return_index=True)
            placed = candidates[first]
            self.keys[slots[placed]] = vocabulary[placed]
            self.columns[slots[placed]] = placed
            waiting = np.ones(len(vocabulary), dtype=bool)
            waiting[placed] = False
            pending = pending[waiting[pending]]
            slots[pending] = (slots[pending] + 1) & (size - 1)

    def _slots(self, codes: np.ndarray) -> np.ndarray:
        return ((codes * _GOLDEN) >> np.uint64(64 - self.bits)).astype(np.int64)

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """Column of each code, -1 where it is not in the vocabulary."""
        result = np.full(len(codes), -1, dtype=np.int64)
        slots = self._slots(codes)
        pending = np.arange(len(codes))
        mask = len(self.keys) - 1
        while len(pending):
            at = slots[pending]
            keys = self.keys[at]
            found = keys == codes[pending]
            result[pending[found]] = self.columns[at[found]]
            pending = pending[~found & (keys != 0)]
            slots[pending] = (slots[pending] + 1) & mask
        return result


def _columns(vocabulary: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Column of each code in a sorted vocabulary, -1 where absent (binary search)."""
    if len(vocabulary) == 0:
        return np.full(len(codes), -1, dtype=np.int64)
    index = np.searchsorted(vocabulary, codes)
    index[index == len(vocabulary)] = 0
    return np.where(vocabulary[index] == codes, index, -1)


class ComplaintFeatures(TransformerMixin, BaseEstimator):
    """(subject, body) pairs to TF-IDF features in three blocks, each L2-normalised.

    ``chars``: character 1-3-grams of the whole text (seen in at least ``min_df`` texts);
    ``title``: character 1-3-grams of the title, times ``title_weight``; ``words``: words
    (jieba segmentation; English words for English), sublinear tf, times ``word_weight``.
    A weight of 0 leaves the block out. Character n-grams are counted with numpy, not a
    Python loop per n-gram.
    """

    def __init__(self, *, min_df: int = 2, title_weight: float = 0.85, word_weight: float = 1.0):
        self.min_df = min_df
        self.title_weight = title_weight
        self.word_weight = word_weight

    def fit(self, pairs: Sequence[Sequence[str]], y: Any = None) -> ComplaintFeatures:
        """Learn the vocabularies and idf weights."""
        return self.fit_analysis(analyze(pairs, words=bool(self.word_weight)))

    def transform(self, pairs: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """The feature matrix, one row per pair."""
        return self.transform_analysis(analyze(pairs, words=bool(self.word_weight)))

    def fit_transform(self, pairs: Sequence[Sequence[str]], y: Any = None) -> sp.csr_matrix:
        """``fit`` and ``transform`` in one pass over the texts."""
        return self.fit_transform_analysis(analyze(pairs, words=bool(self.word_weight)))

    def fit_analysis(self, analysis: Analysis) -> ComplaintFeatures:
        """``fit`` on texts already analysed."""
        self.fit_transform_analysis(analysis)
        return self

    def fit_transform_analysis(self, analysis: Analysis) -> sp.csr_matrix:
        """Learn the vocabularies and idf weights and return the texts' matrix.

        One count matrix over every distinct n-gram gives both the document frequencies and,
        with the rare columns dropped, the features: no second lookup of each n-gram.
        """
        n = analysis.size
        codes, chars = _distinct_counts(analysis.char_owners, analysis.char_codes, n)
        df = np.bincount(chars.indices, minlength=len(codes))
        keep = df >= self.min_df
        self.char_vocabulary_, self.char_idf_ = codes[keep], _idf(df[keep], n)
        blocks = [_tfidf(_keep_columns(chars, keep), self.char_idf_, False, 1.0)]
        codes, title = _distinct_counts(analysis.title_owners, analysis.title_codes, n)
        df = np.bincount(title.indices, minlength=len(codes))
        self.title_vocabulary_, self.title_idf_ = codes, _idf(df, n)
        if self.title_weight:
            blocks.append(_tfidf(title, self.title_idf_, False, self.title_weight))
        ids, words = _distinct_counts(analysis.word_owners, analysis.word_ids, n)
        df = np.bincount(words.indices, minlength=len(ids))
        is_word = np.fromiter(
            (bool(_WORD.search(analysis.words[i])) for i in ids), dtype=bool, count=len(ids)
        )
        keep = (df >= self.min_df) & is_word
        self.word_vocabulary_ = {analysis.words[i]: c for c, i in enumerate(ids[keep])}
        self.word_idf_ = _idf(df[keep], n)
        if self.word_weight:
            blocks.append(
                _tfidf(_keep_columns(words, keep), self.word_idf_, True, self.word_weight)
            )
        return sp.hstack(blocks, format="csr")

    def transform_analysis(self, analysis: Analysis) -> sp.csr_matrix:
        """``transform`` of texts already analysed."""
        n = analysis.size
        chars = _counts(
            analysis.char_owners,
            self._index("char").lookup(analysis.char_codes),
            n,
            self.char_idf_,
            sublinear=False,
        )
        blocks = [_scale_rows(chars, 1.0)]
        if self.title_weight:
            title = _counts(
                analysis.title_owners,
                self._index("title").lookup(analysis.title_codes),
                n,
                self.title_idf_,
                sublinear=False,
            )
            blocks.append(_scale_rows(title, self.title_weight))
        if self.word_weight:
            lookup = np.array(
                [self.word_vocabulary_.get(w, -1) for w in analysis.words], dtype=np.int64
            )
            columns = lookup[analysis.word_ids] if len(lookup) else analysis.word_ids
            words = _counts(analysis.word_owners, columns, n, self.word_idf_, sublinear=True)
            blocks.append(_scale_rows(words, self.word_weight))
        return sp.hstack(blocks, format="csr")

    def _index(self, block: str) -> _CodeIndex:
        """The hash index of a block's vocabulary, built on first use."""
        indexes = self.__dict__.setdefault("_indexes", {})
        vocabulary = getattr(self, f"{block}_vocabulary_")
        index = indexes.get(block)
        if index is None or index[0] is not vocabulary:
            index = indexes[block] = (vocabulary, _CodeIndex(vocabulary))
        return index[1]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_indexes", None)  # rebuilt from the vocabulary when needed
        return state

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Feature names in column order: ``chars:…``, ``title:…``, ``words:…``."""
        names = [f"chars:{decode_ngram(int(c))}" for c in self.char_vocabulary_]
        if self.title_weight:
            names += [f"title:{decode_ngram(int(c))}" for c in self.title_vocabulary_]
        if self.word_weight:
            names += [f"words:{w}" for w in self.word_vocabulary_]
        return np.array(names, dtype=object)


def linear_svm(alpha: float = 1e-4) -> SGDClassifier:
    """A linear SVM (hinge loss, balanced class weights) fitted by stochastic gradient descent.

    As accurate here as liblinear's LinearSVC (cross-validated macro-F1 0.902 against 0.900
    on the 2,172 labelled messages; 15 epochs instead of 8 gain nothing) and several times
    faster on 10,000 texts.
    """
    return SGDClassifier(
        loss="hinge",
        alpha=alpha,
        max_iter=8,
        tol=None,
        class_weight="balanced",
        random_state=0,
    )


LARGE = 5000
"""From this many examples on, the SVM is fitted by SGD (liblinear would take minutes) and
cross-validation uses at most ``LARGE_FOLDS`` folds."""

LARGE_FOLDS = 3
"""Folds of the cross-validation from ``LARGE`` examples on."""

REPEATS = 2
"""Cross-validation runs (with different splits) below ``LARGE`` examples."""

THRESHOLD_Z = 0.5
"""The auto-route threshold is where the Wilson lower bound of the out-of-fold precision, this
many standard errors below it, reaches the target: a held-back precision lands at the target
or above it rather than half the time below."""


def make_pipeline(
    *,
    solver: str = "liblinear",
    min_df: int = 2,
    title_weight: float = 0.85,
    word_weight: float = 1.0,
) -> Pipeline:
    """The untrained pipeline: (subject, body) pairs in, one score per label out.

    A weight of 0 leaves that feature block out.
    """
    features = ComplaintFeatures(min_df=min_df, title_weight=title_weight, word_weight=word_weight)
    return Pipeline(
        [
            ("features", features),
            (
                "svm",
                LinearSVC(C=1.0, class_weight="balanced", max_iter=5000)
                if solver == "liblinear"
                else linear_svm(),
            ),
        ]
    )


class Calibration:
    """Maps SVM scores to probabilities: one sigmoid per label (Platt), then normalised.

    Fitted on out-of-fold scores, so it learns how far a score from a model that has not seen
    the complaint can be trusted. Unfitted, it is a plain softmax: ranks well, not calibrated.
    """

    def __init__(self) -> None:
        self.slopes: np.ndarray | None = None
        self.intercepts: np.ndarray | None = None

    def fit(self, scores: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> Calibration:
        """Fit one sigmoid per label on out-of-fold scores."""
        labels = np.asarray(labels)
        slopes, intercepts = [], []
        for k, label in enumerate(classes):
            target = (labels == label).astype(int)
            # Weak regularisation: two parameters fitted on hundreds of scores.
            model = LogisticRegression(C=100.0).fit(scores[:, [k]], target)
            slopes.append(model.coef_[0, 0])
            intercepts.append(model.intercept_[0])
        self.slopes = np.array(slopes)
        self.intercepts = np.array(intercepts)
        return self

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities, rows summing to 1."""
        if self.slopes is None or self.intercepts is None:
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
        else:
            p = 1.0 / (1.0 + np.exp(-(scores * self.slopes + self.intercepts)))
        return p / p.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Suggestions


@dataclass(frozen=True)
class Suggestion:
    """The router's proposal for one complaint."""

    label: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...]
    model_version: str


class Router(Protocol):
    """Anything that suggests a department: a trained model or the keyword fallback."""

    version: str
    threshold: float

    def suggest(self, subject: str, body: str) -> Suggestion:
        """Suggest a label for one complaint."""
        ...


def _suggestions(
    classes: Sequence[str], probabilities: np.ndarray, version: str
) -> list[Suggestion]:
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :3]
    result = []
    for row, best in zip(probabilities, top, strict=True):
        alternatives = tuple((str(classes[i]), float(row[i])) for i in best)
        result.append(Suggestion(alternatives[0][0], alternatives[0][1], alternatives, version))
    return result


class RoutingModel:
    """A trained pipeline with its calibration, version, threshold and metadata."""

    def __init__(self, pipeline: Pipeline, calibration: Calibration, metadata: dict[str, Any]):
        self.pipeline = pipeline
        self.calibration = calibration
        self.metadata = metadata
        self.version: str = metadata["version"]
        self.threshold: float = float(metadata["threshold"])
        self.labels: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)
        # The classifier's weights as one C-ordered (features x labels) array: scipy copies a
        # transposed coef_ on every product, which for a 10,000-example vocabulary costs more
        # than all the rest of a suggestion.
        classifier = pipeline.steps[-1][1]
        self._weights = np.ascontiguousarray(np.asarray(classifier.coef_, dtype=np.float64).T)
        self._intercept = np.asarray(classifier.intercept_, dtype=np.float64)

    def __repr__(self) -> str:
        return f"RoutingModel(version={self.version!r}, labels={len(self.labels)})"

    def probabilities(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Class probabilities, columns in the order of ``labels``."""
        pairs = [(s or "", b or "") for s, b in pairs]
        matrix = self.pipeline.named_steps["features"].transform(pairs)
        scores = np.asarray(matrix @ self._weights) + self._intercept
        if scores.shape[1] == 1:
            scores = np.column_stack([-scores[:, 0], scores[:, 0]])
        return self.calibration.probabilities(scores)

    def suggest(self, subject: str, body: str) -> Suggestion:
        """Suggest a label for one complaint."""
        return self.suggest_many([(subject, body)])[0]

    def suggest_many(self, pairs: Sequence[tuple[str, str]]) -> list[Suggestion]:
        """Suggest labels for many complaints at once (much faster than one by one)."""
        if not pairs:
            return []
        return _suggestions(self.labels, self.probabilities(pairs), self.version)


class KeywordRouter:
    """Fallback when no model is trained: keyword lists per label from the configuration.

    The confidence of a label is its share of all keyword hits, so it is only a hint; the
    threshold is above 1, so cases are never routed on keywords alone.
    """

    version = "keywords"
    threshold = NEVER

    def __init__(self, keywords: dict[str, list[str]], default_label: str | None = None):
        self.keywords = {
            label: tuple(dict.fromkeys(normalize_text(w).strip() for w in words if w.strip()))
            for label, words in keywords.items()
        }
        self.default_label = default_label

    def suggest(self, subject: str, body: str) -> Suggestion:
        """Count the distinct keywords of each label found in the complaint.

        With no hit the label is ``default_label`` (or ``""``) with confidence 0.
        """
        text = normalize_text(f"{subject}\n{body}")
        hits = {
            label: sum(1 for word in words if word in text)
            for label, words in self.keywords.items()
        }
        total = sum(hits.values())
        if total == 0:
            label = self.default_label or ""
            alternatives = ((label, 0.0),) if label else ()
            return Suggestion(label, 0.0, alternatives, self.version)
        ranked = sorted(((n / total, label) for label, n in hits.items() if n), key=lambda x: -x[0])
        alternatives = tuple((label, share) for share, label in ranked[:3])
        return Suggestion(alternatives[0][0], alternatives[0][1], alternatives, self.version)


# --------------------------------------------------------------------------------------------
# Training and evaluation


def choose_threshold(
    confidences: np.ndarray, correct: np.ndarray, target_precision: float, *, z: float = 0.0
) -> float:
    """Lowest confidence at which the predictions at or above it reach the target precision.

    With ``z`` > 0 it is the precision's Wilson lower bound (``z`` standard errors) that must
    reach the target, so a threshold chosen on a few hundred cases errs on the safe side.
    Returns ``NEVER`` when no threshold reaches it.
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if len(confidences) == 0:
        return NEVER
    order = np.argsort(-confidences, kind="stable")
    sorted_conf = confidences[order]
    n = np.arange(1, len(order) + 1)
    precision = np.cumsum(correct[order]) / n
    if z > 0:
        spread = z * np.sqrt(precision * (1 - precision) / n + z * z / (4 * n * n))
        precision = (precision + z * z / (2 * n) - spread) / (1 + z * z / n)
    # A threshold keeps every prediction with an equal confidence: only the last of a run of
    # equal values is a possible cut.
    cut = np.ones(len(order), dtype=bool)
    cut[:-1] = sorted_conf[:-1] != sorted_conf[1:]
    good = np.flatnonzero(cut & (precision >= target_precision - 1e-12))
    if len(good) == 0:
        return NEVER
    return float(sorted_conf[good.max()])


def _metrics(
    y_true: Sequence[str], probabilities: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, top-3 accuracy and per-label figures."""
    classes = np.asarray(classes)
    y_true = np.asarray(y_true)
    predicted = classes[probabilities.argmax(axis=1)]
    top3 = classes[np.argsort(-probabilities, axis=1, kind="stable")[:, :3]]
    labels = sorted(set(classes) | set(y_true))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0
    )
    present = sorted(set(y_true))
    return {
        "accuracy": _round(accuracy_score(y_true, predicted)),
        "macro_f1": _round(
            f1_score(y_true, predicted, labels=present, average="macro", zero_division=0)
        ),
        "top3_accuracy": _round(float(np.mean((top3 == y_true[:, None]).any(axis=1)))),
        "per_label": {
            label: {
                "precision": _round(p),
                "recall": _round(r),
                "f1": _round(f),
                "support": int(s),
            }
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
    }


def _auto_route(
    y_true: Sequence[str], probabilities: np.ndarray, classes: Sequence[str], threshold: float
) -> dict[str, float | None]:
    """Share of cases at or above the threshold and the precision among them."""
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    routed = probabilities.max(axis=1) >= threshold
    correct = predicted == np.asarray(y_true)
    return {
        "threshold": _round(threshold),
        "coverage": _round(float(routed.mean())) if len(routed) else 0.0,
        "precision": _round(float(correct[routed].mean())) if routed.any() else None,
    }


def _round(x: float) -> float:
    return round(float(x), 4)


def _library_versions() -> dict[str, str]:
    versions = {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": importlib_metadata.version("scipy"),
        "joblib": joblib.__version__,
    }
    with contextlib.suppress(importlib_metadata.PackageNotFoundError):
        versions["jieba"] = importlib_metadata.version("jieba")
    with contextlib.suppress(importlib_metadata.PackageNotFoundError):
        versions["rjieba"] = importlib_metadata.version("rjieba")
    return versions


def _pairs(examples: Sequence[Example]) -> list[tuple[str, str]]:
    return [(e.subject, e.body) for e in examples]


def _fitted_features(
    pipeline: Pipeline, examples: Sequence[Example]
) -> tuple[ComplaintFeatures, sp.csr_matrix]:
    """Fit the pipeline's feature step on all examples and return it with their matrix.

    The vocabulary and idf are learnt without labels, so cross-validation reuses this one
    matrix for every fold instead of analysing and counting the texts again per fold.
    """
    features = pipeline.named_steps["features"]
    analysis = analyze(_pairs(examples), words=bool(features.word_weight))
    return features, features.fit_transform_analysis(analysis)


def _fit_classifier(classifier: Any, matrix: sp.csr_matrix, labels: np.ndarray) -> Any:
    with warnings.catch_warnings():
        # An SVM stopped at max_iter on a separable training set still ranks well.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return classifier.fit(matrix, labels)


def _decision(classifier: Any, matrix: sp.csr_matrix) -> np.ndarray:
    scores = classifier.decision_function(matrix)
    return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores


def cross_validate(
    examples: Sequence[Example],
    *,
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    pipeline_factory: Callable[[], Pipeline] = make_pipeline,
    matrix: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold classifier scores for every example and the class order of their columns.

    ``matrix`` is the examples' feature matrix (from features fitted on all of them); without
    it the features are fitted here.
    """
    labels = np.array([e.label for e in examples])
    classes = sorted(set(labels))
    if matrix is None:
        _, matrix = _fitted_features(pipeline_factory(), examples)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = np.zeros((len(examples), len(classes)))
    column = {label: i for i, label in enumerate(classes)}
    for i, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        if progress:
            progress("cross-validation", i, folds)
        classifier = _fit_classifier(pipeline_factory().steps[-1][1], matrix[train], labels[train])
        # A label absent from the fold's training part keeps score 0: only in tiny data sets.
        columns = [column[label] for label in classifier.classes_]
        scores[np.ix_(test, columns)] = _decision(classifier, matrix[test])
    if progress:
        progress("cross-validation", folds, folds)
    return scores, classes


def _overall_progress(
    progress: Callable[[str, int, int], None] | None, run: int, runs: int
) -> Callable[[str, int, int], None] | None:
    """Progress of one of several cross-validation runs as progress of them all."""
    if progress is None:
        return None

    def report(stage: str, done: int, total: int) -> None:
        if done < total or run == runs - 1:
            progress(stage, run * total + done, runs * total)

    return report


def _new_version(fingerprint: str, now: datetime) -> str:
    return f"{now:%Y%m%d-%H%M%S}-{fingerprint[:6]}"


def train_model(
    examples: Sequence[Example],
    *,
    target_precision: float = 0.97,
    folds: int = 5,
    progress: Callable[[str, int, int], None] | None = None,
    seed: int = 0,
    pipeline_factory: Callable[[], Pipeline] | None = None,
) -> RoutingModel:
    """Fit the routing model and measure it by cross-validation on the same data.

    The out-of-fold scores fit the calibration and give the figures in ``metadata["cv"]`` and
    the auto-route threshold: the lowest confidence at which they reach ``target_precision``.
    With fewer than two examples of some label there is no cross-validation, the
    probabilities are uncalibrated and the model never auto-routes.
    ``progress(stage, done, total)`` is called as the work advances; ``pipeline_factory``
    makes the untrained pipeline (to compare variants; by default ``make_pipeline``, with the
    SGD solver from ``LARGE`` examples on).
    """
    examples = list(examples)
    if pipeline_factory is None:
        solver = "sgd" if len(examples) >= LARGE else "liblinear"
        pipeline_factory = functools.partial(make_pipeline, solver=solver)
    started = time.perf_counter()
    counts = Counter(e.label for e in examples)
    if len(counts) < 2:
        raise DataError(f"need at least two labels to train, got {sorted(counts) or 'none'}")
    labels = [e.label for e in examples]
    cv_folds = min(folds, min(counts.values()))
    if len(examples) >= LARGE:
        # With thousands of examples per fold, three folds fit calibration and threshold as
        # well as five, in little more than half the time.
        cv_folds = min(cv_folds, LARGE_FOLDS)

    pipeline = pipeline_factory()
    _, matrix = _fitted_features(pipeline, examples)
    calibration = Calibration()
    cv: dict[str, Any] | None = None
    threshold = NEVER
    auto_route: dict[str, float | None] = {"threshold": NEVER, "coverage": 0.0, "precision": None}
    if cv_folds >= 2:
        # Below LARGE the cross-validation is repeated with another split: twice the
        # out-of-fold scores for calibration and threshold, which would otherwise move by a
        # few points of coverage with the split.
        repeats = 1 if len(examples) >= LARGE else REPEATS
        runs = []
        for r in range(repeats):
            scores, classes = cross_validate(
                examples,
                folds=cv_folds,
                seed=seed + 1000 * r,
                progress=_overall_progress(progress, r, repeats),
                pipeline_factory=pipeline_factory,
                matrix=matrix,
            )
            runs.append(scores)
        all_scores = np.vstack(runs)
        all_labels = np.asarray(labels * repeats)
        calibration.fit(all_scores, all_labels, classes)
        probabilities = calibration.probabilities(runs[0])
        cv = {"folds": cv_folds, **_metrics(labels, probabilities, classes)}
        pooled = calibration.probabilities(all_scores)
        predicted = np.asarray(classes)[pooled.argmax(axis=1)]
        threshold = choose_threshold(
            pooled.max(axis=1), predicted == all_labels, target_precision, z=THRESHOLD_Z
        )
        auto_route = _auto_route(all_labels, pooled, classes, threshold)

    if progress:
        progress("fit", 0, 1)
    _fit_classifier(pipeline.steps[-1][1], matrix, np.asarray(labels))
    if progress:
        progress("fit", 1, 1)

    now = datetime.now().astimezone()
    fingerprint = data_fingerprint(examples)
    metadata: dict[str, Any] = {
        "version": _new_version(fingerprint, now),
        "created_at": now.isoformat(timespec="seconds"),
        "train_seconds": round(time.perf_counter() - started, 2),
        "labels": sorted(counts),
        "label_counts": dict(sorted(counts.items())),
        "data": {"sha256": fingerprint, "examples": len(examples)},
        "libraries": _library_versions(),
        "pipeline": "TF-IDF of char 1-3-grams (text, title) and jieba words; linear SVM "
        "(balanced; liblinear, or SGD for large sets); Platt calibration on out-of-fold scores; "
        "threshold on the lower confidence bound of out-of-fold precision",
        "target_precision": target_precision,
        "threshold": threshold,
        "auto_route": auto_route,
        "cv": cv,
    }
    return RoutingModel(pipeline, calibration, metadata)


def evaluate(
    train: Sequence[Example], test: Sequence[Example], *, target_precision: float = 0.97
) -> dict[str, Any]:
    """Train on ``train`` (threshold from its cross-validation alone), measure on ``test``."""
    started = time.perf_counter()
    model = train_model(train, target_precision=target_precision)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    probabilities = model.probabilities(_pairs(test))
    predict_seconds = time.perf_counter() - started

    y_test = [e.label for e in test]
    metrics = _metrics(y_test, probabilities, model.labels)
    return {
        "n_train": len(train),
        "n_test": len(test),
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "top3_accuracy": metrics["top3_accuracy"],
        "per_label": metrics["per_label"],
        "auto_route": _auto_route(y_test, probabilities, model.labels, model.threshold),
        "train_seconds": round(train_seconds, 2),
        "predict_per_second": round(len(test) / max(predict_seconds, 1e-9), 1),
    }


# --------------------------------------------------------------------------------------------
# Model store


class IncompatibleModel(RuntimeError):
    """A stored model made by another scikit-learn version than the one running."""


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


class ModelStore:
    """Trained models on disk: ``root/<version>/model.joblib`` and ``metadata.json``.

    ``root/CURRENT`` holds the version in use.
    """

    MODEL = "model.joblib"
    METADATA = "metadata.json"
    CURRENT = "CURRENT"

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def save(self, model: RoutingModel) -> Path:
        """Write the model and its metadata; returns the model's folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / model.version
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        # Written in a scratch folder and renamed, so a folder that exists is complete.
        scratch = Path(tempfile.mkdtemp(prefix=f".{model.version}-", dir=self.root))
        try:
            stored = {"pipeline": model.pipeline, "calibration": model.calibration}
            joblib.dump(stored, scratch / self.MODEL, compress=3)
            (scratch / self.METADATA).write_text(
                json.dumps(model.metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
            os.replace(scratch, target)
        except BaseException:
            for path in scratch.glob("*"):
                path.unlink()
            scratch.rmdir()
            raise
        return target

    def deploy(self, version: str) -> None:
        """Make ``version`` the model in use."""
        if not (self.root / version / self.MODEL).is_file():
            raise FileNotFoundError(f"no model {version!r} in {self.root}")
        scratch = self.root / f".{self.CURRENT}.{secrets.token_hex(4)}"
        scratch.write_text(version + "\n", encoding="utf-8")
        os.replace(scratch, self.root / self.CURRENT)

    def current_version(self) -> str | None:
        """The version in use, or None."""
        try:
            version = (self.root / self.CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return version or None

    def metadata(self, version: str) -> dict[str, Any]:
        """The metadata of one stored model."""
        path = self.root / version / self.METADATA
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no model {version!r} in {self.root}") from None

    def load(self, version: str | None = None) -> RoutingModel:
        """Load a stored model, by default the one in use."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise FileNotFoundError(f"no model deployed in {self.root}")
        metadata = self.metadata(version)
        made_with = metadata.get("libraries", {}).get("scikit-learn", "unknown")
        if _minor(made_with) != _minor(sklearn.__version__):
            raise IncompatibleModel(
                f"model {version} was made with scikit-learn {made_with}, this is "
                f"scikit-learn {sklearn.__version__}: retrain it with this version"
            )
        stored = joblib.load(self.root / version / self.MODEL)
        return RoutingModel(stored["pipeline"], stored["calibration"], metadata)

    def versions(self) -> list[dict[str, Any]]:
        """Metadata of every stored model, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            self.metadata(path.name)
            for path in self.root.iterdir()
            if path.is_dir() and not path.name.startswith(".") and (path / self.METADATA).is_file()
        ]
        return sorted(found, key=lambda m: (m.get("created_at", ""), m.get("version", "")))


def _cv_f1(meta: dict[str, Any] | None) -> float | None:
    if not meta or not meta.get("cv"):
        return None
    value = meta["cv"].get("macro_f1")
    return None if value is None or math.isnan(value) else float(value)


def should_deploy(
    new_meta: dict[str, Any], current_meta: dict[str, Any] | None
) -> tuple[bool, str]:
    """Whether a newly trained model should replace the one in use, and why."""
    if current_meta is None:
        return True, "no model is deployed yet"
    new_labels, old_labels = new_meta.get("labels"), current_meta.get("labels")
    if new_labels != old_labels:
        return True, (
            f"the departments changed ({', '.join(old_labels or [])} → "
            f"{', '.join(new_labels or [])}): the deployed model cannot route to them, "
            "so the scores are not compared"
        )
    new_f1, old_f1 = _cv_f1(new_meta), _cv_f1(current_meta)
    old_version = current_meta.get("version", "?")
    if new_f1 is None:
        if old_f1 is None:
            return True, "neither model has cross-validation figures; the newer one is used"
        return False, (
            f"the new model has no cross-validation figures (too few examples per "
            f"department); keeping {old_version} (macro-F1 {old_f1:.3f})"
        )
    if old_f1 is None or new_f1 >= old_f1:
        than = "" if old_f1 is None else f" ≥ {old_f1:.3f} of {old_version}"
        return True, f"cross-validated macro-F1 {new_f1:.3f}{than}"
    return False, (
        f"cross-validated macro-F1 {new_f1:.3f} < {old_f1:.3f} of the deployed {old_version}; "
        "keeping it"
    )
