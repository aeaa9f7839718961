"""Tests of the routing classifier: data loading, training, threshold, evaluation, model store."""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import time
import types
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.pipeline import Pipeline

from triage.routing import (
    NEVER,
    Calibration,
    ComplaintFeatures,
    DataError,
    Example,
    IncompatibleModel,
    KeywordRouter,
    ModelStore,
    RoutingModel,
    Suggestion,
    choose_threshold,
    complaint_title,
    cross_validate,
    evaluate,
    load_examples,
    make_pipeline,
    map_labels,
    should_deploy,
    train_model,
)
from triage.routing import training as routing_training
from triage.routing.features import _CodeIndex, _columns, analyze, count

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TEDDY = SHARED / "teddy2020c" / "train.jsonl"

# Small synthetic complaints: each department has its own words, mixed with common filler.
TOPICS = {
    "housing": ["物业", "小区", "拆迁", "房产证", "电梯", "业主"],
    "labour": ["工资", "拖欠", "社保", "养老保险", "劳动合同", "加班"],
    "schools": ["学校", "老师", "学生", "入学", "补课", "学费"],
    "transport": ["公交", "出租车", "道路", "红绿灯", "驾驶", "站台"],
}
FILLER = ["我们", "请求", "尽快", "处理", "领导", "反映", "问题", "一直", "没有", "解决"]


def synthetic_examples(n_per_label: int = 30, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for label, words in TOPICS.items():
        for _ in range(n_per_label):
            body = "".join(rng.choice(words if rng.random() < 0.5 else FILLER) for _ in range(20))
            subject = "".join(rng.choice(words) for _ in range(3)) if rng.random() < 0.5 else ""
            examples.append(Example(subject, body, label))
    rng.shuffle(examples)
    return examples


@pytest.fixture(scope="module")
def model() -> RoutingModel:
    return train_model(synthetic_examples(), folds=3)


def require_shared() -> None:
    if not TEDDY.exists():
        if os.environ.get("MINSHENG_REQUIRE_ALL") == "1":
            pytest.fail(f"shared data missing at {TEDDY} and MINSHENG_REQUIRE_ALL=1")
        pytest.skip(f"shared data not found at {TEDDY}")


# Loading data


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_examples_reads_rows_and_skips_blank_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "a.jsonl",
        [
            json.dumps({"subject": "噪音", "body": "楼下施工", "label": "环境保护", "id": 1}),
            "",
            json.dumps({"body": "工资拖欠", "label": "劳动和社会保障"}),
        ],
    )
    assert load_examples(path) == [
        Example("噪音", "楼下施工", "环境保护"),
        Example("", "工资拖欠", "劳动和社会保障"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"subject": "a", "label": "x"}', "'body' must be a string, it is missing"),
        ('{"body": "a", "label": 3}', "'label' must be a string, it is a int"),
        ('{"body": "a", "label": " "}', "'label' is empty"),
        ('{"subject": "", "body": " ", "label": "x"}', "subject and body are both empty"),
    ],
)
def test_load_examples_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps({"body": "ok", "label": "x"})
    path = write_lines(tmp_path / "bad.jsonl", [good, line])
    with pytest.raises(DataError) as error:
        load_examples(path)
    assert f"{path}:2: " in str(error.value)
    assert message in str(error.value)


def test_map_labels_replaces_labels_and_reports_unknown_ones() -> None:
    examples = [Example("", "a", "教育文体"), Example("", "b", "交通运输"), Example("", "c", "x")]
    examples.append(Example("", "d", "x"))
    with pytest.raises(DataError, match=r"'x' \(2 rows\)"):
        map_labels(examples, {"教育文体": "EDU", "交通运输": "TRANS"})
    mapped = map_labels(examples[:2], {"教育文体": "EDU", "交通运输": "TRANS"})
    assert [e.label for e in mapped] == ["EDU", "TRANS"]
    assert mapped[0].body == "a"


def test_title_is_subject_or_first_sentence_of_body() -> None:
    assert complaint_title("小区停水", "整整三天了") == "小区停水"
    assert complaint_title("", "K市公交车乱收费尊敬的领导：您好！我每天坐车") == "K市公交车乱收费"
    assert complaint_title("", "学校何时开学？家长都很着急") == "学校何时开学？"
    assert len(complaint_title("", "很长" * 100)) == 40


# Threshold


def test_choose_threshold_keeps_largest_share_at_target_precision() -> None:
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, False, True, False])
    assert choose_threshold(confidence, correct, 0.75) == 0.7  # 4 of 5 right
    assert choose_threshold(confidence, correct, 1.0) == 0.9
    assert choose_threshold(confidence, ~correct, 0.97) == NEVER


def test_choose_threshold_with_lower_bound_is_more_cautious() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.random(2000)
    correct = rng.random(2000) < 0.9 + 0.1 * confidence  # more confident, more often right
    plain = choose_threshold(confidence, correct, 0.97)
    cautious = choose_threshold(confidence, correct, 0.97, z=0.5)
    assert plain < cautious < NEVER
    routed = confidence >= cautious
    assert correct[routed].mean() > 0.97
    assert choose_threshold(confidence, correct, 0.97, z=0.0) == plain


def test_choose_threshold_does_not_split_ties() -> None:
    confidence = np.array([0.9, 0.8, 0.8, 0.8])
    correct = np.array([True, True, False, False])
    assert choose_threshold(confidence, correct, 0.6) == 0.9


# Training and suggestions


def test_train_model_learns_and_records_metadata(model: RoutingModel) -> None:
    meta = model.metadata
    assert model.labels == tuple(sorted(TOPICS))
    assert meta["labels"] == sorted(TOPICS)
    assert meta["cv"]["folds"] == 3
    assert meta["cv"]["macro_f1"] > 0.8
    assert set(meta["cv"]["per_label"]["labour"]) == {"precision", "recall", "f1", "support"}
    assert meta["data"]["examples"] == 120
    assert len(meta["data"]["sha256"]) == 64
    assert meta["version"].endswith(meta["data"]["sha256"][:6])
    assert meta["libraries"]["scikit-learn"] == sklearn.__version__
    assert {"python", "numpy", "rjieba"} <= set(meta["libraries"])
    assert 0 < model.threshold <= NEVER
    assert meta["auto_route"]["threshold"] == round(model.threshold, 4)


def test_suggestion_has_label_confidence_and_top3(model: RoutingModel) -> None:
    suggestion = model.suggest("拖欠工资", "公司拖欠我们三个月工资，社保也没有交")
    assert isinstance(suggestion, Suggestion)
    assert suggestion.label == "labour"
    assert suggestion.model_version == model.version
    assert len(suggestion.alternatives) == 3
    assert suggestion.alternatives[0] == (suggestion.label, suggestion.confidence)
    probabilities = [p for _, p in suggestion.alternatives]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0.5 < suggestion.confidence <= 1.0


def test_suggest_many_matches_suggest_and_handles_empty_text(model: RoutingModel) -> None:
    pairs = [("公交", "站台太远"), ("", "学校补课收费"), ("", "")]
    many = model.suggest_many(pairs)
    assert [s.label for s in many[:2]] == ["transport", "schools"]
    assert many[0] == model.suggest(*pairs[0])
    assert model.suggest_many([]) == []


def test_train_model_reports_progress() -> None:
    seen = []
    train_model(synthetic_examples(10), folds=2, progress=lambda *a: seen.append(a))
    # Two cross-validation runs (different splits) of two folds each, then the final fit.
    cv = [done for stage, done, total in seen if stage == "cross-validation" and total == 4]
    assert cv == [0, 1, 2, 3, 4]
    assert seen[-1] == ("fit", 1, 1)


def test_features_fitted_in_one_pass_match_fit_then_transform() -> None:
    pairs = [(e.subject, e.body) for e in synthetic_examples(10)] + [("", "物业。，！ hello")] * 2
    one_pass = ComplaintFeatures()
    matrix = one_pass.fit_transform(pairs)
    two_pass = ComplaintFeatures().fit(pairs)
    assert (abs(matrix - two_pass.transform(pairs)) > 1e-12).nnz == 0
    assert list(one_pass.get_feature_names_out()) == list(two_pass.get_feature_names_out())
    assert "words:hello" in one_pass.get_feature_names_out()
    assert not {"words:。", "words:，", "words: "} & set(one_pass.get_feature_names_out())


def test_hash_index_finds_the_same_columns_as_binary_search() -> None:
    rng = np.random.default_rng(0)
    vocabulary = np.unique(rng.integers(1, 1 << 62, 5000, dtype=np.int64).astype(np.uint64))
    codes = np.concatenate([vocabulary[::3], rng.integers(1, 1 << 62, 3000).astype(np.uint64)])
    index = _CodeIndex(vocabulary)
    assert (index.lookup(codes) == _columns(vocabulary, codes)).all()
    assert (_CodeIndex(vocabulary[:0]).lookup(codes) == -1).all()


def test_large_sets_use_fewer_folds_and_one_cross_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routing_training, "LARGE", 100)
    seen = []
    model = train_model(synthetic_examples(30), progress=lambda *a: seen.append(a))
    assert model.metadata["cv"]["folds"] == routing_training.LARGE_FOLDS == 3
    assert ("cross-validation", 3, 3) in seen
    assert model.metadata["cv"]["macro_f1"] > 0.8


def test_tiny_data_trains_but_never_auto_routes() -> None:
    examples = [Example("", "工资拖欠", "labour"), Example("", "公交晚点", "transport")]
    model = train_model(examples)
    assert model.threshold == NEVER
    assert model.metadata["cv"] is None
    assert model.suggest("", "工资").label == "labour"


def test_one_label_is_an_error() -> None:
    with pytest.raises(DataError, match="two labels"):
        train_model([Example("", "a", "x"), Example("", "b", "x")])


def test_english_words_count() -> None:
    rng = random.Random(1)
    words = {
        "mortgage": ["mortgage", "escrow", "foreclosure", "servicer"],
        "debt": ["collector", "debt", "calls", "owed"],
    }
    examples = [
        Example("", " ".join(rng.choice([*w, "the", "my", "bank"]) for _ in range(12)), label)
        for label, w in words.items()
        for _ in range(15)
    ]
    model = train_model(examples, folds=3)
    assert model.suggest("", "The debt collector calls me every day").label == "debt"
    assert model.suggest("", "My escrow account and the servicer").label == "mortgage"


def test_single_suggestion_is_fast(model: RoutingModel) -> None:
    model.suggest("热身", "第一次")
    started = time.perf_counter()
    for _ in range(20):
        model.suggest("小区物业", "电梯坏了一个月没人修，业主很不满意" * 5)
    assert (time.perf_counter() - started) / 20 < 0.05  # 20 ms on an idle machine


# The threshold's cross-validation: features fitted within each fold


def marked_examples(n_per_label: int = 15) -> tuple[list[Example], np.ndarray]:
    """Synthetic complaints, each with a character in its subject that no other one has.

    The characters (CJK Extension A) are title features that only a feature step fitted on
    that complaint can know; returned with their n-gram codes (a 1-gram's code is its code
    point).
    """
    examples = synthetic_examples(n_per_label)
    marks = [chr(0x3400 + i) for i in range(len(examples))]
    marked = [Example(m + e.subject, e.body, e.label) for m, e in zip(marks, examples, strict=True)]
    return marked, np.array([ord(m) for m in marks], dtype=np.uint64)


def recording(
    factory: Callable[[], Pipeline] = make_pipeline,
) -> tuple[Callable[[], Pipeline], list[Pipeline]]:
    """A pipeline factory that keeps every pipeline it makes, and the list it keeps them in."""
    made: list[Pipeline] = []

    def make() -> Pipeline:
        pipeline = factory()
        made.append(pipeline)
        return pipeline

    return make, made


def seen_by(pipeline: Pipeline, marks: np.ndarray) -> np.ndarray:
    """Which complaints' own characters the pipeline's fitted feature step knows."""
    return np.isin(marks, pipeline.named_steps["features"].title_vocabulary_)


def held_out_by(made: list[Pipeline], marks: np.ndarray) -> list[np.ndarray]:
    """For each fitted feature step that lacks some complaints, the indices of those."""
    fitted = [p for p in made if hasattr(p.named_steps["features"], "title_vocabulary_")]
    return [np.flatnonzero(~seen_by(p, marks)) for p in fitted if not seen_by(p, marks).all()]


def test_threshold_folds_fit_features_without_their_held_out_complaints() -> None:
    examples, marks = marked_examples()
    make, made = recording()
    model = train_model(examples, folds=3, pipeline_factory=make)
    assert model.pipeline in made
    assert seen_by(model.pipeline, marks).all()
    # In each cross-validation run (the threshold is chosen on their scores) every complaint
    # was left out of the feature step of exactly one fold, about a third of them each time.
    held_out = held_out_by(made, marks)
    times = np.bincount(np.concatenate([np.zeros(0, dtype=np.int64), *held_out]), minlength=60)
    assert (times == routing_training.REPEATS).all()
    assert all(15 <= len(h) <= 25 for h in held_out)


def test_out_of_fold_scores_are_those_of_a_pipeline_never_shown_the_fold() -> None:
    examples, marks = marked_examples()
    pairs = [(e.subject, e.body) for e in examples]
    labels = np.array([e.label for e in examples])
    sgd = functools.partial(make_pipeline, solver="sgd")  # deterministic
    make, made = recording(sgd)
    scores, classes = cross_validate(examples, folds=3, pipeline_factory=make)
    scored = np.zeros(len(examples), dtype=int)
    for test in held_out_by(made, marks):
        scored[test] += 1
        train = np.setdiff1d(np.arange(len(examples)), test)
        # What scikit-learn's own Pipeline.fit on the other folds' texts alone gives.
        fresh = sgd().fit([pairs[i] for i in train], labels[train])
        assert list(fresh.classes_) == classes
        expected = fresh.decision_function([pairs[i] for i in test])
        assert np.allclose(scores[test], expected, rtol=0, atol=1e-9)
        # Features fitted on all complaints first (vocabulary and idf of the held-out fold
        # included) score the fold measurably otherwise: this test would see the leak.
        leaky = ComplaintFeatures().fit(pairs)
        svm = sgd().steps[-1][1].fit(leaky.transform([pairs[i] for i in train]), labels[train])
        leaked = svm.decision_function(leaky.transform([pairs[i] for i in test]))
        assert np.abs(leaked - expected).max() > 1e-3
    assert (scored == 1).all()


def test_features_fitted_on_counted_rows_are_those_of_the_texts_alone() -> None:
    pairs = [(e.subject, e.body) for e in synthetic_examples(10)] + [("", "物业。，！ hello")]
    counted = count(analyze(pairs))
    part, rest = np.arange(0, len(pairs), 2), np.arange(1, len(pairs), 2)
    from_rows = ComplaintFeatures()
    matrix = from_rows.fit_transform_counts(counted.rows(part))
    alone = ComplaintFeatures()
    expected = alone.fit_transform([pairs[i] for i in part])
    # The same features; the words may come in another order, so match columns by name.
    names, expected_names = from_rows.get_feature_names_out(), alone.get_feature_names_out()
    assert sorted(names) == sorted(expected_names)
    column = {name: i for i, name in enumerate(expected_names)}
    order = [column[name] for name in names]
    assert abs(matrix - expected[:, order]).max() < 1e-12
    held_out = from_rows.transform_counts(counted.rows(rest))
    assert abs(held_out - from_rows.transform([pairs[i] for i in rest])).max() < 1e-12


def test_texts_routed_look_their_words_up_in_the_vocabulary_with_the_same_features() -> None:
    """`transform` looks each token up in the learnt vocabulary (no table of the batch's
    distinct tokens): the matrix, hence every suggestion, is the one of the table, exactly;
    unknown words, punctuation and empty texts included."""
    pairs = [(e.subject, e.body) for e in synthetic_examples(10)]
    features = ComplaintFeatures().fit(pairs)
    routed = [*pairs, ("", "物业。，！ hello 从未见过的词"), ("", ""), ("电梯", "")]
    by_vocabulary = features.transform(routed)
    by_table = features.transform_analysis(analyze(routed))
    assert by_vocabulary.shape == by_table.shape and by_vocabulary.nnz > 0
    for part in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(by_vocabulary, part), getattr(by_table, part)), part
    other = ComplaintFeatures().fit(pairs[:5])
    with pytest.raises(ValueError):
        features.transform_analysis(analyze(routed, vocabulary=other.word_vocabulary_))


# Evaluation


def test_evaluate_returns_the_cli_figures() -> None:
    train, test = synthetic_examples(25, seed=1), synthetic_examples(5, seed=2)
    report = evaluate(train, test)
    assert set(report) == {
        "n_train",
        "n_test",
        "accuracy",
        "macro_f1",
        "top3_accuracy",
        "per_label",
        "auto_route",
        "train_seconds",
        "predict_per_second",
    }
    assert (report["n_train"], report["n_test"]) == (100, 20)
    assert report["accuracy"] > 0.8
    assert set(report["auto_route"]) == {"threshold", "coverage", "precision"}
    assert report["per_label"]["housing"]["support"] == 5
    json.dumps(report)


# Keyword fallback


def test_keyword_router_shares_and_never_routes() -> None:
    router = KeywordRouter(
        {"EDU": ["学校", "老师"], "LAB": ["工资", "Salary"], "ENV": ["噪音"]}, default_label="GEN"
    )
    suggestion = router.suggest("学校拖欠老师工资", "")
    assert suggestion.label == "EDU"
    assert suggestion.alternatives == (("EDU", 2 / 3), ("LAB", 1 / 3))
    assert suggestion.model_version == "keywords"
    assert router.threshold > 1
    assert router.suggest("", "SALARY unpaid").label == "LAB"
    nothing = router.suggest("", "你好")
    assert (nothing.label, nothing.confidence) == ("GEN", 0.0)
    assert KeywordRouter({}).suggest("", "x").label == ""


# Model store


def test_store_saves_deploys_and_loads(tmp_path: Path, model: RoutingModel) -> None:
    store = ModelStore(tmp_path / "models")
    assert store.current_version() is None
    assert store.versions() == []
    with pytest.raises(FileNotFoundError):
        store.load()
    path = store.save(model)
    assert (path / "model.joblib").is_file()
    assert json.loads((path / "metadata.json").read_text("utf-8"))["version"] == model.version
    with pytest.raises(FileExistsError):
        store.save(model)
    store.deploy(model.version)
    assert store.current_version() == model.version
    loaded = store.load()
    assert loaded.version == model.version
    assert loaded.threshold == model.threshold
    pair = ("", "学校老师补课收费")
    assert loaded.suggest(*pair) == model.suggest(*pair)
    assert [m["version"] for m in store.versions()] == [model.version]
    with pytest.raises(FileNotFoundError):
        store.deploy("no-such-version")


def test_store_refuses_model_of_other_sklearn_minor(tmp_path: Path, model: RoutingModel) -> None:
    store = ModelStore(tmp_path)
    path = store.save(model)
    meta = json.loads((path / "metadata.json").read_text("utf-8"))
    meta["libraries"]["scikit-learn"] = "1.2.0"
    (path / "metadata.json").write_text(json.dumps(meta), "utf-8")
    with pytest.raises(IncompatibleModel, match=rf"1\.2\.0.*{sklearn.__version__}"):
        store.load(model.version)


def test_model_saved_before_the_package_split_still_loads(
    tmp_path: Path, model: RoutingModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saved as the single-module classifier saved models: its classes named by the old path.
    monkeypatch.setattr(ComplaintFeatures, "__module__", "triage.routing")
    monkeypatch.setattr(Calibration, "__module__", "triage.routing")
    store = ModelStore(tmp_path)
    path = store.save(model)
    monkeypatch.undo()
    pickled = zlib.decompress((path / "model.joblib").read_bytes())
    assert b"triage.routing\x94\x8c\x11ComplaintFeatures" in pickled
    assert b"triage.routing.features" not in pickled
    loaded = store.load(model.version)
    pair = ("", "学校老师补课收费")
    assert loaded.suggest(*pair) == model.suggest(*pair)


def test_model_naming_code_that_is_gone_is_refused_with_the_reason(
    tmp_path: Path, model: RoutingModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = types.ModuleType("triage.routing_gone")
    gone.ComplaintFeatures = ComplaintFeatures  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triage.routing_gone", gone)
    monkeypatch.setattr(ComplaintFeatures, "__module__", "triage.routing_gone")
    store = ModelStore(tmp_path)
    store.save(model)
    monkeypatch.undo()
    with pytest.raises(IncompatibleModel, match=r"refers to code .*routing_gone.*retrain it"):
        store.load(model.version)


def test_should_deploy_compares_cv_macro_f1() -> None:
    old = {"version": "old", "labels": ["a", "b"], "cv": {"macro_f1": 0.9}}
    better = {"version": "new", "labels": ["a", "b"], "cv": {"macro_f1": 0.91}}
    worse = {"version": "new", "labels": ["a", "b"], "cv": {"macro_f1": 0.85}}
    assert should_deploy(better, None)[0]
    assert should_deploy(better, old) == (True, "cross-validated macro-F1 0.910 ≥ 0.900 of old")
    ok, reason = should_deploy(worse, old)
    assert not ok
    assert "0.850 < 0.900" in reason
    assert should_deploy({**worse, "labels": ["a", "b", "c"]}, old)[0]
    assert not should_deploy({**better, "cv": None}, old)[0]


# Shared data


def test_shared_data_subsample_reaches_useful_accuracy() -> None:
    require_shared()
    examples = load_examples(TEDDY)
    rng = random.Random(0)
    rng.shuffle(examples)
    # 400 to train on, not 800: a third of the CPU, and a stricter test (macro-F1 0.83 here,
    # 0.89 with 800; with the body dropped from the text, 0.72 fails where 800 passed 0.78).
    report = evaluate(examples[:400], examples[400:800])
    assert report["macro_f1"] > 0.75
    assert report["top3_accuracy"] > 0.95
    assert report["predict_per_second"] > 200
