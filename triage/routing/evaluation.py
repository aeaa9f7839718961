"""Evaluation of the training recipe on held-out data (the CLI's `triage evaluate`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from triage.routing.data import Example
from triage.routing.metrics import auto_route, metrics
from triage.routing.training import train_model


def evaluate(
    train: Sequence[Example], test: Sequence[Example], *, target_precision: float = 0.97
) -> dict[str, Any]:
    """Train on ``train`` (threshold from its cross-validation alone), measure on ``test``."""
    started = time.perf_counter()
    model = train_model(train, target_precision=target_precision)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    probabilities = model.probabilities([(e.subject, e.body) for e in test])
    predict_seconds = time.perf_counter() - started

    y_test = [e.label for e in test]
    figures = metrics(y_test, probabilities, model.labels)
    return {
        "n_train": len(train),
        "n_test": len(test),
        "accuracy": figures["accuracy"],
        "macro_f1": figures["macro_f1"],
        "top3_accuracy": figures["top3_accuracy"],
        "per_label": figures["per_label"],
        "auto_route": auto_route(y_test, probabilities, model.labels, model.threshold),
        "train_seconds": round(train_seconds, 2),
        "predict_per_second": round(len(test) / max(predict_seconds, 1e-9), 1),
    }
