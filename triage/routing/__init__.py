"""Routing classifier: suggests the responsible department for a complaint.

No Flask and no database: the web app, the CLI and the benchmarks call these functions.
One module per concern:

- ``data``: labelled examples read from JSON Lines, labels mapped to departments;
- ``text``: normalisation, title, character n-gram codes and words of a complaint;
- ``features``: the pipeline's feature step (TF-IDF of n-grams of text and title, and words);
- ``model``: the pipeline, the calibration of its scores, ``RoutingModel``, ``KeywordRouter``;
- ``threshold``: the confidence above which a case is routed without a supervisor;
- ``metrics``: figures of predictions; ``training``: cross-validation and ``train_model``;
- ``evaluation``: train on one set, measure on another;
- ``store``: the versioned models on disk, and whether a new one should replace the old.

The names below are the package's interface; import them from ``triage.routing``.
"""

from __future__ import annotations

from triage.routing.data import DataError, Example, data_fingerprint, load_examples, map_labels
from triage.routing.evaluation import evaluate

# ComplaintFeatures and Calibration must stay importable from here: models saved before
# the classifier became a package name them triage.routing.ComplaintFeatures and
# triage.routing.Calibration in their pickles.
from triage.routing.features import ComplaintFeatures
from triage.routing.model import (
    Calibration,
    KeywordRouter,
    Router,
    RoutingModel,
    Suggestion,
    make_pipeline,
)
from triage.routing.store import IncompatibleModel, ModelStore, should_deploy
from triage.routing.text import (
    complaint_text,
    complaint_title,
    decode_ngram,
    ngram_codes,
    normalize_text,
    segment,
)
from triage.routing.threshold import NEVER, choose_threshold
from triage.routing.training import cross_validate, train_model

__all__ = [
    "NEVER",
    "Calibration",
    "ComplaintFeatures",
    "DataError",
    "Example",
    "IncompatibleModel",
    "KeywordRouter",
    "ModelStore",
    "Router",
    "RoutingModel",
    "Suggestion",
    "choose_threshold",
    "complaint_text",
    "complaint_title",
    "cross_validate",
    "data_fingerprint",
    "decode_ngram",
    "evaluate",
    "load_examples",
    "make_pipeline",
    "map_labels",
    "ngram_codes",
    "normalize_text",
    "segment",
    "should_deploy",
    "train_model",
]
