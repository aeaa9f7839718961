"""Figures of a model's predictions: accuracy, macro-F1, top-3, per label, auto-routing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support


def metrics(
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


def auto_route(
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
