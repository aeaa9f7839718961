"""Tests of near-duplicate search and hot-issue clustering."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from triage.similarity import HotIssue, _matrix, hot_issues, similar_cases

VOTES = Path(__file__).resolve().parents[3] / "shared" / "data" / "teddy2020c" / "with_votes.jsonl"

NOISE = "A3区枫林路星城小区东门外的夜宵摊每天营业到凌晨三点，烧烤油烟和喧哗声让居民无法入睡"
CASES = [
    (1, "反映A3区星城小区东门夜宵摊噪音扰民，每天营业到凌晨三点，油烟和喧哗声让居民无法入睡"),
    (2, "A5区某学校补课收费过高，家长负担很重，请教育局查处"),
    (3, "公司拖欠农民工工资半年，劳动监察大队不处理"),
    (4, "A3区星城小区东门外夜宵摊凌晨还在营业，烧烤油烟太大"),
    (5, "K6县公交车太旧，没有监控，乘客的钱包被偷"),
]


def test_similar_cases_finds_the_same_complaint_reworded() -> None:
    found = similar_cases(NOISE, CASES, min_score=0.3)
    assert [case_id for case_id, _ in found] == [1, 4]
    assert found[0][1] >= found[1][1] >= 0.3
    assert all(0 < score <= 1 for _, score in found)


def test_similar_cases_respects_min_score_and_limit() -> None:
    assert similar_cases(NOISE, CASES, min_score=0.99) == []
    assert len(similar_cases(NOISE, CASES, min_score=0.0, limit=2)) == 2
    assert similar_cases(NOISE, []) == []
    assert similar_cases("", CASES) == []
    exact = similar_cases(CASES[1][1], CASES)
    assert exact[0] == (2, 1.0)


def test_similar_cases_handles_empty_and_one_character_candidates() -> None:
    found = similar_cases(NOISE, [(7, ""), (8, "夜"), *CASES], min_score=0.3)
    assert [case_id for case_id, _ in found] == [1, 4]


def test_similar_cases_scores_are_the_cosines_of_the_tfidf_profiles() -> None:
    candidates = [*CASES, (6, "星城小区夜宵摊"), (7, "")]
    matrix = _matrix([NOISE, *(text for _, text in candidates)])
    cosines = (matrix[1:] @ matrix[0].T).toarray().ravel()
    found = dict(similar_cases(NOISE, candidates, min_score=0.0, limit=10))
    for (case_id, _), cosine in zip(candidates, cosines, strict=True):
        if cosine > 0:
            assert found[case_id] == pytest.approx(cosine, abs=2e-4)


def test_similar_cases_notices_a_changed_candidate_list() -> None:
    first = similar_cases(NOISE, CASES, min_score=0.3)
    assert similar_cases(NOISE, list(CASES), min_score=0.3) == first  # kept, same answer
    changed = [(1, "公司拖欠工资"), *CASES[1:]]
    assert [case_id for case_id, _ in similar_cases(NOISE, changed, min_score=0.3)] == [4]


def test_similar_cases_is_fast_for_many_candidates() -> None:
    candidates = [(i, f"{CASES[i % 5][1]}第{i}号补充说明{i * 7919}") for i in range(5000)]
    similar_cases(NOISE, candidates)
    started = time.perf_counter()
    similar_cases(NOISE + "再次", candidates)
    assert time.perf_counter() - started < 0.25  # < 50 ms on an idle machine


def test_hot_issues_group_cases_about_one_problem() -> None:
    items = [
        (10, "星城小区东门夜宵摊噪音扰民，凌晨三点还在营业，油烟很大"),
        (11, "反映星城小区东门夜宵摊噪音扰民，油烟很大，凌晨三点还在营业"),
        (12, "星城小区东门的夜宵摊噪音扰民，凌晨三点还营业，油烟大"),
        (13, "公司拖欠农民工工资半年"),
        (14, "学校补课乱收费"),
        (15, "K6县公交车没有监控"),
    ]
    issues = hot_issues(items, min_size=3)
    assert len(issues) == 1
    issue = issues[0]
    assert isinstance(issue, HotIssue)
    assert issue.case_ids == (10, 11, 12)
    assert issue.size == 3
    assert issue.label
    assert issue.keywords
    assert all(word in items[0][1] + items[1][1] + items[2][1] for word in issue.keywords)
    assert hot_issues(items, min_size=4) == []
    assert hot_issues(items[:2]) == []


def test_hot_issues_on_shared_messages_with_votes() -> None:
    if not VOTES.exists():
        if os.environ.get("MINSHENG_REQUIRE_ALL") == "1":
            pytest.fail(f"shared data missing at {VOTES} and MINSHENG_REQUIRE_ALL=1")
        pytest.skip(f"shared data not found at {VOTES}")
    rows = [json.loads(line) for line in VOTES.read_text("utf-8").splitlines() if line][:1500]
    items = [(i, f"{r['subject']}\n{r['body']}") for i, r in enumerate(rows)]
    issues = hot_issues(items)
    assert issues
    assert all(issue.size >= 3 and len(issue.keywords) > 0 for issue in issues)
    # Groups stay small: the threshold does not chain unrelated complaints together.
    assert issues[0].size < 40
