"""Routing classifier: suggests the responsible department for a complaint.

Everything about the model lives here: reading labelled examples, the scikit-learn pipeline,
training with cross-validation, choosing the confidence above which a case is routed without
a supervisor, evaluation on held-out data, and a versioned store of trained models with
their metadata beside them. No Flask and no database: the web app, the CLI and the
benchmarks call these functions.

The pipeline takes ``(subject, body)`` pairs. Its features are character 1-3-gram counts of
the whole text and, as a second block, of the title alone (the subject, or the start of the
body where the subject is empty, since many messages arrive with title and detail run
together), TF-IDF weighted, plus English word uni- and bigrams. A linear SVM with balanced
class weights scores them and a sigmoid calibration fitted on inner folds turns the scores into
probabilities. Character n-grams are counted with numpy rather than a Python loop per n-gram,
which keeps classification well above a thousand complaints a second on one core.
"""

from __future__ import annotations

import contextlib
import hashlib
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
import scipy.sparse as sp
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
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

HEAD_CHARS = 20
"""Characters of the body taken as the title when the subject is empty."""

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


def normalize_text(text: str) -> str:
    """NFKC (full-width to half-width), lower case, one space for any run, digits as 0."""
    text = unicodedata.normalize("NFKC", text[:MAX_CHARS]).lower()
    text = _SPACES.sub(" ", text)
    # Numbers are mostly dates, amounts and the anonymised place codes (A3区): their value
    # says nothing about the department, their presence sometimes does.
    return _DIGITS.sub("0", text)


def complaint_text(pair: Sequence[str]) -> str:
    """Subject and body as one text."""
    subject, body = pair[0], pair[1]
    return f"{subject}\n{body}" if subject else body


def complaint_head(pair: Sequence[str]) -> str:
    """The title: the subject, or the start of the body when the subject is empty."""
    subject, body = pair[0], pair[1]
    return subject if subject.strip() else body[:HEAD_CHARS]


_FIELDS: dict[str, Callable[[Sequence[str]], str]] = {
    "text": complaint_text,
    "head": complaint_head,
}

_BITS = np.uint64(21)  # every Unicode code point fits in 21 bits


def _ngram_codes(texts: Sequence[str], min_n: int, max_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each character n-gram of each text as an exact 63-bit code, with its text's index.

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
    for n in range(min_n, max_n + 1):
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
    """The characters of an n-gram code made by the char n-gram counter (for explanations)."""
    chars = []
    while code:
        chars.append(chr(code & ((1 << 21) - 1)))
        code >>= 21
    return "".join(chars)


class CharNgramCounts(TransformerMixin, BaseEstimator):
    """Counts of character n-grams (n <= 3) of one field of ``(subject, body)`` pairs.

    Same result as ``CountVectorizer(analyzer="char")`` on the normalised field, about ten
    times faster. The vocabulary is the sorted array of n-gram codes seen in at least
    ``min_df`` training texts.
    """

    def __init__(self, field: str = "text", ngram_range: tuple[int, int] = (1, 3), min_df: int = 1):
        self.field = field
        self.ngram_range = ngram_range
        self.min_df = min_df

    def _codes(self, pairs: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        extract = _FIELDS[self.field]
        texts = [normalize_text(extract(pair)) for pair in pairs]
        return _ngram_codes(texts, *self.ngram_range)

    def fit(self, pairs: Sequence[Sequence[str]], y: Any = None) -> CharNgramCounts:
        """Learn the vocabulary."""
        codes, owners = self._codes(pairs)
        order = np.lexsort((owners, codes))
        codes, owners = codes[order], owners[order]
        first = np.ones(len(codes), dtype=bool)
        first[1:] = (codes[1:] != codes[:-1]) | (owners[1:] != owners[:-1])
        unique, df = np.unique(codes[first], return_counts=True)
        self.vocabulary_ = unique[df >= self.min_df]
        return self

    def transform(self, pairs: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """Count matrix, one row per pair."""
        codes, owners = self._codes(pairs)
        vocabulary = self.vocabulary_
        shape = (len(pairs), len(vocabulary))
        if len(vocabulary) == 0 or len(codes) == 0:
            return sp.csr_matrix(shape, dtype=np.float64)
        index = np.searchsorted(vocabulary, codes)
        index[index == len(vocabulary)] = 0
        known = vocabulary[index] == codes
        counts = np.ones(int(known.sum()), dtype=np.float64)
        matrix = sp.csr_matrix((counts, (owners[known], index[known])), shape=shape)
        matrix.sum_duplicates()
        return matrix

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The n-grams, in column order."""
        return np.array([decode_ngram(int(c)) for c in self.vocabulary_], dtype=object)


def english_words(pair: Sequence[str]) -> str:
    """Preprocessor for the word block: the whole text, normalised."""
    return normalize_text(complaint_text(pair))


# Latin-script words only: Chinese has no spaces, so a "word" there would be a whole clause.
_WORD_PATTERN = r"(?u)\b[a-z][a-z']+\b"


def make_pipeline(
    *, c: float = 3.0, head_weight: float = 0.7, calibration_folds: int = 3
) -> Pipeline:
    """The untrained pipeline: (subject, body) pairs in, calibrated class probabilities out."""
    features = FeatureUnion(
        [
            (
                "chars",
                Pipeline(
                    [
                        ("counts", CharNgramCounts("text", (1, 3), min_df=2)),
                        ("tfidf", TfidfTransformer()),
                    ]
                ),
            ),
            (
                "title",
                Pipeline(
                    [
                        ("counts", CharNgramCounts("head", (1, 3), min_df=1)),
                        ("tfidf", TfidfTransformer()),
                    ]
                ),
            ),
            (
                "words",
                TfidfVectorizer(
                    preprocessor=english_words,
                    token_pattern=_WORD_PATTERN,
                    ngram_range=(1, 2),
                    min_df=2,
                    sublinear_tf=True,
                    dtype=np.float64,
                ),
            ),
        ],
        transformer_weights={"chars": 1.0, "title": head_weight, "words": 1.0},
    )
    svm = LinearSVC(C=c, class_weight="balanced", max_iter=5000)
    classifier: BaseEstimator
    if calibration_folds >= 2:
        # ensemble=False keeps one SVM (a small model file); the inner folds only fit the
        # sigmoid that maps its scores to probabilities.
        classifier = CalibratedClassifierCV(
            svm, method="sigmoid", cv=calibration_folds, ensemble=False
        )
    else:
        classifier = SoftmaxClassifier(svm)
    return Pipeline([("features", features), ("classifier", classifier)])


class SoftmaxClassifier(ClassifierMixin, BaseEstimator):
    """Probabilities as the softmax of a linear model's scores.

    Used only when a class has too few examples for calibration folds: the scores rank
    well but are not calibrated, so such a model should not route on its own.
    """

    def __init__(self, estimator: BaseEstimator):
        self.estimator = estimator

    def fit(self, x: Any, y: Sequence[str]) -> SoftmaxClassifier:
        """Fit the wrapped model."""
        self.estimator_ = clone(self.estimator).fit(x, y)
        self.classes_ = self.estimator_.classes_
        return self

    def decision_function(self, x: Any) -> np.ndarray:
        """One score per class, also for two classes."""
        scores = self.estimator_.decision_function(x)
        if scores.ndim == 1:
            scores = np.column_stack([-scores, scores])
        return scores

    def predict_proba(self, x: Any) -> np.ndarray:
        """Softmax of the scores."""
        scores = self.decision_function(x)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        """The best class."""
        return self.classes_[self.decision_function(x).argmax(axis=1)]


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
    """A trained pipeline with its version, threshold and metadata."""

    def __init__(self, pipeline: Pipeline, metadata: dict[str, Any]):
        self.pipeline = pipeline
        self.metadata = metadata
        self.version: str = metadata["version"]
        self.threshold: float = float(metadata["threshold"])
        self.labels: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)

    def __repr__(self) -> str:
        return f"RoutingModel(version={self.version!r}, labels={len(self.labels)})"

    def probabilities(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Class probabilities, columns in the order of ``labels``."""
        return self.pipeline.predict_proba([(s or "", b or "") for s, b in pairs])

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
    confidences: np.ndarray, correct: np.ndarray, target_precision: float
) -> float:
    """Lowest confidence at which the predictions at or above it reach the target precision.

    Returns ``NEVER`` when no threshold reaches it.
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if len(confidences) == 0:
        return NEVER
    order = np.argsort(-confidences, kind="stable")
    sorted_conf = confidences[order]
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    # A threshold keeps every prediction with an equal confidence: only the last of a run of
    # equal values is a possible cut.
    cut = np.ones(len(order), dtype=bool)
    cut[:-1] = sorted_conf[:-1] != sorted_conf[1:]
    good = np.flatnonzero(cut & (precision >= target_precision))
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
    return versions


def _pairs(examples: Sequence[Example]) -> list[tuple[str, str]]:
    return [(e.subject, e.body) for e in examples]


def _calibration_folds(counts: Counter[str], wanted: int = 3) -> int:
    # Each calibration fold needs every class in its training part.
    return min(wanted, min(counts.values()))


def cross_validate(
    examples: Sequence[Example],
    *,
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    pipeline: Pipeline | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold class probabilities for every example, and the class order."""
    labels = np.array([e.label for e in examples])
    classes = sorted(set(labels))
    pairs = _pairs(examples)
    if pipeline is None:
        pipeline = make_pipeline(calibration_folds=_calibration_folds(Counter(labels)))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probabilities = np.zeros((len(examples), len(classes)))
    column = {label: i for i, label in enumerate(classes)}
    for i, (train, test) in enumerate(splitter.split(pairs, labels)):
        if progress:
            progress("cross-validation", i, folds)
        fold = clone(pipeline)
        train_counts = Counter(labels[train])
        if "classifier__cv" in fold.get_params() and len(train_counts) == len(classes):
            fold.set_params(
                classifier__cv=min(fold.get_params()["classifier__cv"], min(train_counts.values()))
            )
        _fit(fold, [pairs[j] for j in train], labels[train])
        fold_probabilities = fold.predict_proba([pairs[j] for j in test])
        for k, label in enumerate(fold.classes_):
            probabilities[test, column[label]] = fold_probabilities[:, k]
    if progress:
        progress("cross-validation", folds, folds)
    return probabilities, classes


def _fit(pipeline: Pipeline, pairs: Sequence[tuple[str, str]], labels: Sequence[str]) -> None:
    with warnings.catch_warnings():
        # An SVM that stops at max_iter on a separable training set still ranks well.
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(pairs, labels)


def _new_version(fingerprint: str, now: datetime) -> str:
    return f"{now:%Y%m%d-%H%M%S}-{fingerprint[:6]}"


def train_model(
    examples: Sequence[Example],
    *,
    target_precision: float = 0.97,
    folds: int = 5,
    progress: Callable[[str, int, int], None] | None = None,
    seed: int = 0,
) -> RoutingModel:
    """Fit the routing model and measure it by cross-validation on the same data.

    The out-of-fold predictions give the figures in ``metadata["cv"]`` and the auto-route
    threshold: the lowest confidence at which they reach ``target_precision``. With fewer than
    two examples of some label there is no cross-validation and the model never auto-routes.
    ``progress(stage, done, total)`` is called as the work advances.
    """
    examples = list(examples)
    started = time.perf_counter()
    counts = Counter(e.label for e in examples)
    if len(counts) < 2:
        raise DataError(f"need at least two labels to train, got {sorted(counts) or 'none'}")
    labels = [e.label for e in examples]
    smallest = min(counts.values())
    cv_folds = min(folds, smallest)
    pipeline = make_pipeline(calibration_folds=_calibration_folds(counts))

    cv: dict[str, Any] | None = None
    threshold = NEVER
    auto_route: dict[str, float | None] = {"threshold": NEVER, "coverage": 0.0, "precision": None}
    if cv_folds >= 2:
        probabilities, classes = cross_validate(
            examples, folds=cv_folds, seed=seed, progress=progress, pipeline=pipeline
        )
        cv = {"folds": cv_folds, **_metrics(labels, probabilities, classes)}
        predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
        threshold = choose_threshold(
            probabilities.max(axis=1), predicted == np.asarray(labels), target_precision
        )
        auto_route = _auto_route(labels, probabilities, classes, threshold)

    if progress:
        progress("fit", 0, 1)
    _fit(pipeline, _pairs(examples), labels)
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
        "pipeline": "char 1-3-grams of text and title + English words, TF-IDF, "
        "LinearSVC (balanced), sigmoid calibration",
        "target_precision": target_precision,
        "threshold": threshold,
        "auto_route": auto_route,
        "cv": cv,
    }
    return RoutingModel(pipeline, metadata)


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
            joblib.dump(model.pipeline, scratch / self.MODEL, compress=3)
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
        pipeline = joblib.load(self.root / version / self.MODEL)
        return RoutingModel(pipeline, metadata)

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
