"""Benchmark of the routing classifier on the shared data: prints figures, asserts nothing.

Measures, with nested cross-validation (the auto-route threshold is chosen inside each outer
fold from the training part alone, by the inner cross-validation that ``train_model`` runs):

* the final pipeline against a plain char 1-3-gram TF-IDF + LinearSVC baseline, and the
  variants in between, on the Chinese messages (teddy2020c/train.jsonl);
* the final pipeline on the English complaints (cfpb/train.jsonl);
* the final pipeline again over three outer seeds (0, 1, 2; coverage and precision at the
  auto-route threshold move with the split);
* training time on 10,000 real messages (the labelled ones plus unlabelled ones of the same
  source with model-drawn labels, see ``realistic``), classification throughput on one core,
  the latency of one suggestion, and the size of the stored model; timings are repeated.

    .venv/bin/python bench/bench_classifier.py [--data-dir ../shared/data] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import json
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
    load_examples,
    make_pipeline,
    train_model,
)
from triage.routing.metrics import metrics  # noqa: E402

Factory = Callable[[], Pipeline]

SEEDS = (0, 1, 2)


def baseline() -> Pipeline:
    """Plain char 1-3-gram TF-IDF of subject + body, LinearSVC with default settings."""
    features = ComplaintFeatures(min_df=1, title_weight=0.0, word_weight=0.0)
    return Pipeline([("features", features), ("svm", LinearSVC())])


VARIANTS: dict[str, Factory] = {
    "baseline: char 1-3 TF-IDF + LinearSVC(C=1)": baseline,
    "+ min_df 2, balanced classes": functools.partial(
        make_pipeline, title_weight=0.0, word_weight=0.0
    ),
    "+ title block (x0.85)": functools.partial(make_pipeline, word_weight=0.0),
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
    figures = metrics(labels, probabilities, classes)
    # Each outer fold has its own threshold: count routed cases fold by fold.
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    routed = probabilities.max(axis=1) >= routed_threshold
    correct = predicted == labels
    return {
        "macro_f1": figures["macro_f1"],
        "accuracy": figures["accuracy"],
        "top3": figures["top3_accuracy"],
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


UNLABELLED = ("with_replies.jsonl", "unlabelled.jsonl", "with_votes.jsonl")


def realistic(examples: Sequence[Example], data_dir: Path, n: int, seed: int = 0) -> list[Example]:
    """n real messages: every labelled one, topped up with distinct unlabelled ones.

    The unlabelled messages (with_replies, unlabelled, with_votes; same source, same lengths)
    get a label drawn at random from the probabilities that a model trained on the labelled
    ones gives them: the clear cases keep their likely label, the doubtful ones get a mix, as
    in real data. Where the files are missing the labelled messages are resampled.
    """
    rng = random.Random(seed)
    seen = {(e.subject, e.body) for e in examples}
    pool: list[tuple[str, str]] = []
    for name in UNLABELLED:
        path = data_dir / "teddy2020c" / name
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            pair = (row.get("subject") or "", row["body"])
            if pair not in seen:
                seen.add(pair)
                pool.append(pair)
    result = list(examples)[:n]
    extra = rng.sample(pool, min(len(pool), n - len(result)))
    if extra:
        model = train_model(examples, folds=3)
        probabilities = model.probabilities(extra)
        generator = np.random.default_rng(seed)
        for pair, p in zip(extra, probabilities, strict=True):
            label = model.labels[generator.choice(len(p), p=p / p.sum())]
            result.append(Example(pair[0], pair[1], label))
    while len(result) < n:
        result.append(rng.choice(examples))
    rng.shuffle(result)
    return result


def timing(examples: Sequence[Example], data_dir: Path) -> None:
    """Training on 10k, throughput, one-suggestion latency, model size (each repeated)."""
    big = realistic(examples, data_dir, 10_000)
    lengths = [len(e.subject) + len(e.body) for e in big]
    print(
        f"10,000 real messages ({len(examples)} labelled + pseudo-labelled unlabelled ones), "
        f"median {statistics.median(lengths):.0f} characters, mean {statistics.mean(lengths):.0f}"
    )
    times = []
    for _ in range(2):
        started = time.perf_counter()
        model = train_model(big)
        times.append(time.perf_counter() - started)
    folds = model.metadata["cv"]["folds"] if model.metadata["cv"] else 0
    shown = ", ".join(f"{t:.1f}" for t in times)
    print(f"train_model on 10,000 complaints ({folds}-fold CV + fit): {shown} s")

    pairs = [(e.subject, e.body) for e in big]
    model.suggest_many(pairs[:50])
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        for start in range(0, len(pairs), 1000):
            model.suggest_many(pairs[start : start + 1000])
        rates.append(len(pairs) / (time.perf_counter() - started))
    shown = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"classify (batches of 1,000, vectorising included): {shown} per second")

    for _ in range(2):
        latencies = []
        for subject, body in pairs[:500]:
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
    final = None
    for name, factory in variants.items():
        result = nested_cv(chinese, factory)
        print_row(name, result)
        if factory is make_pipeline:
            final = result
    # The threshold moves with the split: the final pipeline again with other outer seeds.
    print("final pipeline, other outer splits:")
    results = [final or nested_cv(chinese, make_pipeline, seed=SEEDS[0])]
    results += [nested_cv(chinese, make_pipeline, seed=seed) for seed in SEEDS[1:]]
    for seed, result in zip(SEEDS, results, strict=True):
        print_row(f"  outer seed {seed}", result)
    mean = {
        key: float(np.mean([r[key] for r in results if r[key] is not None])) for key in results[0]
    }
    print_row("  mean over these seeds", mean)

    if english_path.exists():
        english = load_examples(english_path)
        print(f"\nEnglish: {english_path} ({len(english)} rows), nested 5-fold CV")
        print_header()
        print_row("final", nested_cv(english, make_pipeline))

    print("\nTiming (one core)")
    timing(chinese, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
