"""Training: cross-validation, calibration, the auto-route threshold and the final fit.

The texts are analysed (normalised, cut into n-grams, segmented) once. Each cross-validation
fold then fits a new pipeline, feature step included, on its training part alone and scores
its held-out part: the vocabulary and idf that score a held-out complaint never saw it, as
they will never have seen a new message. The out-of-fold scores fit the calibration, give
the figures in ``metadata["cv"]`` and choose the auto-route threshold, on the lower
confidence bound of the precision (``THRESHOLD_Z``), so that it holds on new messages and
not only on the training data. From ``LARGE`` examples on there are 3 folds and the SVM is
fitted by SGD; below ``LARGE`` the cross-validation runs twice with different splits.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib import metadata as importlib_metadata
from typing import Any

import joblib
import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from triage.routing.data import DataError, Example, data_fingerprint
from triage.routing.features import Counts, analyze, count
from triage.routing.metrics import auto_route, metrics
from triage.routing.model import Calibration, RoutingModel, make_pipeline
from triage.routing.threshold import NEVER, THRESHOLD_Z, choose_threshold

LARGE = 5000
"""From this many examples on, the SVM is fitted by SGD (liblinear would take minutes) and
cross-validation uses at most ``LARGE_FOLDS`` folds."""

LARGE_FOLDS = 3
"""Folds of the cross-validation from ``LARGE`` examples on."""

REPEATS = 2
"""Cross-validation runs (with different splits) below ``LARGE`` examples."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called as training advances."""


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


def _counts(pipeline: Pipeline, examples: Sequence[Example]) -> Counts:
    """The examples' n-grams and words counted, as the pipeline's feature step needs them."""
    words = bool(pipeline.named_steps["features"].word_weight)
    return count(analyze([(e.subject, e.body) for e in examples], words=words))


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
    progress: Progress | None = None,
    pipeline_factory: Callable[[], Pipeline] = make_pipeline,
    counts: Counts | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold classifier scores for every example and the class order of their columns.

    Returns an (examples x labels) array and the sorted labels. Each fold fits a new pipeline
    from ``pipeline_factory``, feature step and classifier, on its training part only.
    ``counts`` are the examples' counts, if already made (the same for every fold: counting
    learns nothing).
    """
    labels = np.array([e.label for e in examples])
    classes = sorted(set(labels))
    if counts is None:
        counts = _counts(pipeline_factory(), examples)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = np.zeros((len(examples), len(classes)))
    column = {label: i for i, label in enumerate(classes)}
    for i, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        if progress:
            progress("cross-validation", i, folds)
        pipeline = pipeline_factory()
        features = pipeline.named_steps["features"]
        matrix = features.fit_transform_counts(counts.rows(train))
        classifier = _fit_classifier(pipeline.steps[-1][1], matrix, labels[train])
        # A label absent from the fold's training part keeps score 0: only in tiny data sets.
        columns = [column[label] for label in classifier.classes_]
        held_out = features.transform_counts(counts.rows(test))
        scores[np.ix_(test, columns)] = _decision(classifier, held_out)
    if progress:
        progress("cross-validation", folds, folds)
    return scores, classes


def _overall_progress(progress: Progress | None, run: int, runs: int) -> Progress | None:
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
    progress: Progress | None = None,
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
    SGD solver from ``LARGE`` examples on). Raises ``DataError`` with fewer than two labels.
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
    counted = _counts(pipeline, examples)
    calibration = Calibration()
    cv: dict[str, Any] | None = None
    threshold = NEVER
    auto_routing: dict[str, float | None] = {
        "threshold": NEVER,
        "coverage": 0.0,
        "precision": None,
    }
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
                counts=counted,
            )
            runs.append(scores)
        all_scores = np.vstack(runs)
        all_labels = np.asarray(labels * repeats)
        calibration.fit(all_scores, all_labels, classes)
        probabilities = calibration.probabilities(runs[0])
        cv = {"folds": cv_folds, **metrics(labels, probabilities, classes)}
        pooled = calibration.probabilities(all_scores)
        predicted = np.asarray(classes)[pooled.argmax(axis=1)]
        threshold = choose_threshold(
            pooled.max(axis=1), predicted == all_labels, target_precision, z=THRESHOLD_Z
        )
        auto_routing = auto_route(all_labels, pooled, classes, threshold)

    if progress:
        progress("fit", 0, 1)
    matrix = pipeline.named_steps["features"].fit_transform_counts(counted)
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
        "(balanced; liblinear, or SGD for large sets); Platt calibration on out-of-fold scores "
        "(features fitted within each fold); threshold on the lower confidence bound of "
        "out-of-fold precision",
        "target_precision": target_precision,
        "threshold": threshold,
        "auto_route": auto_routing,
        "cv": cv,
    }
    return RoutingModel(pipeline, calibration, metadata)
