"""Benchmark of the routing classifier on the shared data: prints figures, asserts nothing.

Measures, with nested cross-validation (the auto-route threshold is chosen inside each outer
fold from the training part alone, by the inner cross-validation that ``train_model`` runs):

* the final pipeline against a plain char 1-3-gram TF-IDF + LinearSVC baseline, and the
  variants in between, on the Chinese messages (teddy2020c/train.jsonl);
* the final pipeline on the English complaints (cfpb/train.jsonl);
* training time on 10,000 synthetic complaints, classification throughput on one core, the
  latency of one suggestion, and the size of the stored model.

    .venv/bin/python bench/bench_classifier.py [--data-dir ../shared/data] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# One core, so the figures mean the same on a busy machine and on the product's.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from triage.routing import (  # noqa: E402
    ComplaintFeatures,
    Example,
    ModelStore,
    _metrics,
    load_examples,
    make_pipeline,
    train_model,
)

Factory = Callable[[], Pipeline]


def baseline() -> Pipeline:
    """Plain char 1-3-gram TF-IDF of subject + body, LinearSVC with default settings."""
    features = ComplaintFeatures(min_df=1, title_weight=0.0, word_weight=0.0)
    return Pipeline([("features", features), ("svm", LinearSVC())])


VARIANTS: dict[str, Factory] = {
    "baseline: char 1-3 TF-IDF + LinearSVC(C=1)": baseline,
    "+ min_df 2, balanced classes": functools.partial(
        make_pipeline, title_weight=0.0, word_weight=0.0
    ),
    "+ title block (x0.7)": functools.partial(make_pipeline, word_weight=0.0),
    "+ jieba words = final": make_pipeline,
}


def nested_cv(
    examples: Sequence[Example], factory: Factory, *, folds: int = 5, seed: int = 0
) -> dict[str, float | None]:
    """Outer k-fold; in each, train_model (inner CV → threshold) on the rest, test the fold."""
    labels = np.array([e.label for e in examples])
    classes = sorted(set(labels))
    probabilities = np.zeros((len(examples), len(classes)))
    routed_threshold = np.zeros(len(examples))
    seconds = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(labels)), labels):
        started = time.perf_counter()
        model = train_model([examples[i] for i in train], pipeline_factory=factory, seed=seed + 1)
        seconds.append(time.perf_counter() - started)
        fold = model.probabilities([(examples[i].subject, examples[i].body) for i in test])
        columns = [classes.index(label) for label in model.labels]
        probabilities[np.ix_(test, columns)] = fold
        routed_threshold[test] = model.threshold
    metrics = _metrics(labels, probabilities, classes)
    # Each outer fold has its own threshold: count routed cases fold by fold.
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    routed = probabilities.max(axis=1) >= routed_threshold
    correct = predicted == labels
    return {
        "macro_f1": metrics["macro_f1"],
        "accuracy": metrics["accuracy"],
        "top3": metrics["top3_accuracy"],
        "coverage": float(routed.mean()),
        "precision": float(correct[routed].mean()) if routed.any() else None,
        "train_s": float(np.mean(seconds)),
    }


def print_header() -> None:
    """Column names."""
    print(
        f"{'variant':46s} {'macro-F1':>8s} {'acc':>6s} {'top-3':>6s} "
        f"{'cover@.97':>9s} {'prec':>6s} {'train s':>8s}",
        flush=True,
    )


def print_row(name: str, r: dict[str, float | None]) -> None:
    """One line per variant."""
    precision = "-" if r["precision"] is None else f"{r['precision']:.4f}"
    print(
        f"{name:46s} {r['macro_f1']:8.4f} {r['accuracy']:6.4f} {r['top3']:6.4f} "
        f"{r['coverage']:9.4f} {precision:>6s} {r['train_s']:8.1f}",
        flush=True,
    )


def synthetic(examples: Sequence[Example], n: int, seed: int = 0) -> list[Example]:
    """n complaints made by joining the bodies of two random messages of the same label."""
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    labels = [e.label for e in examples]
    result = []
    for _ in range(n):
        group = by_label[rng.choice(labels)]
        a, b = rng.choice(group), rng.choice(group)
        result.append(Example(a.subject, f"{a.body}{b.body[: len(b.body) // 2]}", a.label))
    return result


def timing(examples: Sequence[Example]) -> None:
    """Training on 10k, throughput, one-suggestion latency, model size."""
    big = synthetic(examples, 10_000)
    started = time.perf_counter()
    model = train_model(big)
    seconds = time.perf_counter() - started
    print(f"train_model on 10,000 complaints (5-fold CV + fit): {seconds:.1f} s")

    pairs = [(e.subject, e.body) for e in big]
    model.suggest_many(pairs[:50])
    started = time.perf_counter()
    for start in range(0, len(pairs), 1000):
        model.suggest_many(pairs[start : start + 1000])
    elapsed = time.perf_counter() - started
    rate = len(pairs) / elapsed
    print(f"classify (batches of 1,000, vectorising included): {rate:,.0f} per second")

    latencies = []
    for subject, body in pairs[:300]:
        started = time.perf_counter()
        model.suggest(subject, body)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    print(
        f"one suggestion: median {statistics.median(latencies):.1f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)]:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = ModelStore(Path(tmp)).save(model)
        size = sum(f.stat().st_size for f in path.iterdir())
        print(f"stored model (10k training set): {size / 1e6:.1f} MB")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="only baseline and final")
    args = parser.parse_args(argv)
    chinese_path = args.data_dir / "teddy2020c" / "train.jsonl"
    english_path = args.data_dir / "cfpb" / "train.jsonl"
    if not chinese_path.exists():
        print(f"no data at {chinese_path}; pass --data-dir", file=sys.stderr)
        return 2
    chinese = load_examples(chinese_path)

    print(f"Chinese: {chinese_path} ({len(chinese)} rows), nested 5-fold CV, target precision 0.97")
    variants = VARIANTS
    if args.quick:
        names = list(VARIANTS)
        variants = {names[0]: VARIANTS[names[0]], names[-1]: VARIANTS[names[-1]]}
    print_header()
    for name, factory in variants.items():
        print_row(name, nested_cv(chinese, factory))

    if english_path.exists():
        english = load_examples(english_path)
        print(f"\nEnglish: {english_path} ({len(english)} rows), nested 5-fold CV")
        print_header()
        print_row("final", nested_cv(english, make_pipeline))

    print("\nTiming (one core)")
    timing(chinese)
    return 0


if __name__ == "__main__":
    sys.exit(main())
