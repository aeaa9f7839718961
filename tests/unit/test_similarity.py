"""Tests of near-duplicate scoring and hot-issue clustering."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from triage.similarity import (
    DUPLICATE_SCORE,
    HotIssue,
    duplicate_score,
    hot_issues,
    shorten,
    similar_cases,
)
from web.settings import load_settings

VOTES = Path(__file__).resolve().parents[3] / "shared" / "data" / "teddy2020c" / "with_votes.jsonl"
CONFIG = Path(__file__).resolve().parents[2] / "config.toml"

NOISE = "A3区枫林路星城小区东门外的夜宵摊每天营业到凌晨三点，烧烤油烟和喧哗声让居民无法入睡"
CASES = [
    (1, "反映A3区星城小区东门夜宵摊噪音扰民，每天营业到凌晨三点，油烟和喧哗声让居民无法入睡"),
    (2, "A5区某学校补课收费过高，家长负担很重，请教育局查处"),
    (3, "公司拖欠农民工工资半年，劳动监察大队不处理"),
    (4, "A3区星城小区东门外夜宵摊凌晨还在营业，烧烤油烟太大"),
    (5, "K6县公交车太旧，没有监控，乘客的钱包被偷"),
]

# The issue's three examples, in texts written for these tests.
BAR_LETTER = (
    "尊敬的领导您好！我是绿荫苑小区的业主。小区西门外建设路上的“午夜蓝”酒吧每天晚上放音乐到"
    "凌晨两点，低音炮震得玻璃嗡嗡响，全家都睡不好。我们报过警，警察走了又照旧。"
    "望领导重视，尽快解决！此致敬礼！"
)
BAR_SHORT = "建设路午夜蓝酒吧半夜太吵了，喝多的客人在门口喊叫，住绿荫苑的天天被吵醒，有没有人管？"
TEMPLATE = "尊敬的领导您好！我是绿荫苑小区的业主。{}望领导重视，尽快解决！此致敬礼！"
LIFT = TEMPLATE.format("小区6栋的电梯这个月坏了五次，上周还困住了一个孩子，物业一直说在等配件。")
PARKING = TEMPLATE.format(
    "物业把小区的地面车位全部改成了月租车位，每月收三百元，业主大会根本没开过。"
)
FIRE_EXIT = (
    "Dear Sir or Madam,\n\nThe fire exit at the back of the Riverside Cinema has been locked "
    "with a padlock for a month, and rubbish bins stand in front of it. Please inspect it.\n\n"
    "Kind regards,\nAnna Berg"
)
POOL = (
    "尊敬的领导您好！我是碧水湾小区的业主。小区游泳池的水一个月没换了，池底长了青苔，"
    "更衣室也没人打扫，收了年卡费却不好好管理。望领导重视，此致敬礼！"
)


def threshold() -> float:
    return load_settings(CONFIG).classifier.duplicate_min_score


def test_two_independent_reports_of_noise_from_one_bar_are_duplicates() -> None:
    assert duplicate_score(BAR_LETTER, BAR_SHORT) >= threshold()
    found = similar_cases(
        BAR_SHORT, [(7, LIFT), (8, BAR_LETTER), (9, PARKING)], min_score=threshold()
    )
    assert [case_id for case_id, _ in found] == [8]


def test_a_shared_greeting_introduction_and_closing_do_not_make_duplicates() -> None:
    assert duplicate_score(LIFT, PARKING) < threshold()
    assert duplicate_score(LIFT, BAR_LETTER) < threshold()
    # The old scorer gave such letters 0.84: most of their text is the template.
    assert duplicate_score(LIFT, PARKING) < 0.3


def test_an_english_fire_exit_complaint_does_not_match_a_chinese_pool_complaint() -> None:
    assert duplicate_score(FIRE_EXIT, POOL) < threshold()
    assert similar_cases(FIRE_EXIT, [(1, POOL)], min_score=threshold()) == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # A phone log and a web form about one problem, in their own words.
        (
            "（来电记录）市民刘女士反映：长安街12号“老味道”饭馆的排烟管对着她家窗户，没装净化器，"
            "油烟熏得家里没法开窗，要求环保部门处理。",
            "长安街老味道饭馆油烟太大了！排风口就对着我们楼，衣服晾出去全是油烟味。",
        ),
        # An English letter and a short English report.
        (
            "Hello,\nthe streetlights on Orchard Road between the bridge and the sports centre "
            "have been out for ten days. It is pitch dark at night.\nThanks,\nLiu Yang",
            "Orchard Road is completely dark at night, none of the street lamps near the sports "
            "centre work.",
        ),
        # Chinese, and English naming the place in Chinese.
        (
            "梧桐苑小区北门外的垃圾站一个星期没人清运，臭气熏天，苍蝇到处飞。",
            "The rubbish station outside the north gate of 梧桐苑 has not been emptied for a "
            "week. The smell is terrible.",
        ),
        # The same letter, once in its template and once bare.
        (
            TEMPLATE.format("小区门口的路灯坏了两个星期，晚上黑漆漆的，老人出门很危险。"),
            "绿荫苑小区门口路灯坏了两周，晚上一片漆黑，老人出门危险。",
        ),
    ],
)
def test_reports_of_one_problem_in_other_words_are_duplicates(a: str, b: str) -> None:
    assert duplicate_score(a, b) >= threshold()
    assert duplicate_score(b, a) == duplicate_score(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # One place, two problems.
        (
            "长安街老味道饭馆油烟太大了！排风口就对着我们楼，衣服晾出去全是油烟味。",
            "长安街老味道饭馆门口天天占道摆桌子，人行道上根本走不了人。",
        ),
        # One problem, two places.
        (
            "建设路午夜蓝酒吧半夜太吵了，喝多的客人在门口喊叫，住绿荫苑的天天被吵醒。",
            "人民路“老码头”酒吧每晚唱到凌晨，住在金沙苑的居民都睡不着。",
        ),
        # One estate, two buildings.
        (
            "绿荫苑6栋电梯这个月坏了五次，上周还困住了一个孩子。",
            "绿荫苑2栋电梯按钮失灵，到不了十楼以上，物业说要换主板。",
        ),
        # The same letter template in English, two problems.
        (
            "Dear Sir or Madam,\nI am a resident of Maple Court. The lift in block 3 has been "
            "broken for two weeks.\nBest regards,\nJohn Smith",
            "Dear Sir or Madam,\nI am a resident of Maple Court. The management office doubled "
            "the parking fee without a residents' meeting.\nBest regards,\nJohn Smith",
        ),
    ],
)
def test_a_shared_place_or_problem_alone_is_not_a_duplicate(a: str, b: str) -> None:
    assert duplicate_score(a, b) < threshold()


def test_the_configured_threshold_is_the_one_chosen_on_the_labelled_pairs() -> None:
    assert threshold() == DUPLICATE_SCORE


def test_a_pairs_score_does_not_depend_on_the_other_candidates() -> None:
    others = [(10 + i, text) for i, text in enumerate([LIFT, PARKING, POOL, FIRE_EXIT, BAR_SHORT])]
    others += [(100 + i, f"{text}，第{i}次反映") for i, (_, text) in enumerate(CASES * 9)]
    alone = dict(similar_cases(BAR_LETTER, [(1, BAR_SHORT)], min_score=0.0))
    for count in (1, 5, 20, len(others)):
        crowd = [(1, BAR_SHORT), *others[:count]]
        found = dict(similar_cases(BAR_LETTER, crowd, min_score=0.0, limit=len(crowd)))
        assert found[1] == alone[1]
        assert found[1] == duplicate_score(BAR_LETTER, BAR_SHORT)
    reordered = [*others[:20], (1, BAR_SHORT)]
    found = dict(similar_cases(BAR_LETTER, reordered, min_score=0.0, limit=len(reordered)))
    assert found[1] == alone[1]


def test_similar_cases_finds_the_same_complaint_reworded() -> None:
    found = similar_cases(NOISE, CASES)
    assert [case_id for case_id, _ in found] == [1, 4]
    assert found[0][1] >= found[1][1] >= DUPLICATE_SCORE
    assert all(0 < score <= 1 for _, score in found)


def test_similar_cases_respects_min_score_and_limit() -> None:
    assert similar_cases(NOISE, CASES, min_score=0.99) == []
    assert len(similar_cases(NOISE, CASES, min_score=0.0, limit=2)) == 2
    assert similar_cases(NOISE, []) == []
    assert similar_cases("", CASES) == []
    assert similar_cases("   ", CASES) == []
    exact = similar_cases(CASES[1][1], CASES)
    assert exact[0] == (2, 1.0)


def test_similar_cases_handles_empty_odd_and_one_character_candidates() -> None:
    odd = [(7, ""), (8, "夜"), (9, "\x00\u202e!!!"), (10, "a" * 20000), (11, "。。。")]
    found = similar_cases(NOISE, [*odd, *CASES])
    assert [case_id for case_id, _ in found] == [1, 4]
    assert duplicate_score("", NOISE) == 0.0


def test_similar_cases_is_fast_for_a_short_list_of_candidates() -> None:
    candidates = [(i, f"{CASES[i % 5][1]}第{i}号补充说明{i * 7919}") for i in range(50)]
    started = time.perf_counter()
    similar_cases(NOISE + "首次", candidates)
    assert time.perf_counter() - started < 0.5  # about 30 ms on an idle machine, none cached
    started = time.perf_counter()
    similar_cases(NOISE + "再次", candidates)
    assert time.perf_counter() - started < 0.1  # candidates cached: about 3 ms


def test_long_texts_are_scored_quickly() -> None:
    letter = "Dear Sir, The Fire Exit at Riverside Cinema is Locked again. " * 400
    started = time.perf_counter()
    assert duplicate_score(letter, FIRE_EXIT + "长安街" * 3000) > 0
    assert time.perf_counter() - started < 0.5  # about 30 ms: linear in the length


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
    # Yet the many letters about one estate's bundled parking spaces stay one group, not
    # split into pieces by the average-linkage check.
    parking = [i for i in issues if "伊景园" in items[i.case_ids[0]][1][:40]]
    assert len(parking) == 1 and parking[0].size >= 10


def test_hostile_texts_cost_little_and_never_fail() -> None:
    import time

    from triage.similarity import duplicate_score

    # A text of digits cost 0.7 s a pair before (quadratic), and "bus" followed by 5,000
    # digits raised ValueError (int() refuses more than 4,300 digits): a 500 on the form.
    for text in ("1" * 5000, "bus " + "1" * 5000, "line " + "9" * 5000, "1号楼" * 1000):
        started = time.perf_counter()
        assert 0.0 <= duplicate_score(text, text[::-1]) <= 1.0
        assert time.perf_counter() - started < 0.5, text[:8]


# English and mixed text: words, not character pairs ----------------------------------------

# Unrelated complaints written in English with the same letter boilerplate: by character
# pairs ("th", "in", "er", ". ") they all looked alike and chained into one hot issue.
ENGLISH_UNRELATED = [
    (
        101,
        "Dear Sir or Madam, the karaoke bar below our flat plays loud music until three in "
        "the morning and drunk guests shout in the stairwell. Please send someone to check.",
    ),
    (
        102,
        "Dear Sir or Madam, the restaurant downstairs dumps cooking oil into the storm drain "
        "every evening and the whole street smells rotten. Please send an inspector.",
    ),
    (
        103,
        "Hello, my employer has not paid my salary since February and the manager keeps "
        "promising to pay next week. Where can I file a complaint about unpaid wages?",
    ),
    (
        104,
        "Dear Sir or Madam, Bus Route 8 skips the Qingsong Street stop in the morning and "
        "we wait forty minutes in the rain. Please ask the company to keep the timetable.",
    ),
    (
        105,
        "Hello, I would like to know which documents a foreigner needs to enrol a child in "
        "a local primary school, and when the application period opens.",
    ),
    (
        106,
        "Dear Sir or Madam, the streetlights along the river path have been dark for a "
        "month and two women were robbed there last Friday. Please fix the lights.",
    ),
    (
        107,
        "Hello, the tower crane at the construction site next to our school swings loads "
        "over the playground during lessons. This is dangerous for the children.",
    ),
    (
        108,
        "Dear Sir or Madam, the district library closes at five on weekdays, so people who "
        "work cannot borrow books. Could the opening hours be extended to the evening?",
    ),
]
ELEVATOR_REWORDED = [
    (
        201,
        "Lift broken for three weeks in Building 5 of Maple Court: elderly residents on the "
        "upper floors are stuck at home, and the property company does nothing.",
    ),
    (
        202,
        "The elevator of Building 5, Maple Court has been out of order for three weeks. "
        "Old people on the top floors cannot go out. The property company ignores us.",
    ),
    (
        203,
        "Building 5 Maple Court elevator broken again, three weeks now, the elderly upstairs "
        "cannot leave their flats and the property company will not repair the lift.",
    ),
]


def test_unrelated_english_complaints_form_no_hot_issue_and_are_no_duplicates() -> None:
    assert hot_issues(ENGLISH_UNRELATED, min_size=2) == []
    for i, (_, a) in enumerate(ENGLISH_UNRELATED):
        for _, b in ENGLISH_UNRELATED[i + 1 :]:
            assert duplicate_score(a, b) < DUPLICATE_SCORE, (a, b)


def test_english_rewordings_form_one_hot_issue_labelled_at_a_word_boundary() -> None:
    issues = hot_issues(ENGLISH_UNRELATED + ELEVATOR_REWORDED, min_size=2)
    assert [issue.case_ids for issue in issues] == [(201, 202, 203)]
    issue = issues[0]
    assert issue.central in issue.case_ids
    text = " ".join(dict(ELEVATOR_REWORDED)[issue.central].split())
    assert issue.label.endswith("…") and len(issue.label) <= 60
    stem = issue.label[:-1]
    assert text.startswith(stem) and text[len(stem)] == " "  # ends on a whole word
    assert {"elevator", "lift"} & set(issue.keywords) or "maple" in issue.keywords
    assert not {"the", "and", "for", "dear"} & set(issue.keywords)
    for _, a in ELEVATOR_REWORDED:
        for _, b in ELEVATOR_REWORDED:
            assert duplicate_score(a, b) >= DUPLICATE_SCORE


def test_one_borderline_pair_does_not_chain_a_hot_issue() -> None:
    # Each text shares half its words with the next and none with the others: linked one by
    # one, single linkage made one group of seven out of them.
    words = [
        *("pothole", "gravel", "asphalt", "crack", "puddle", "scooter", "pharmacy", "receipt"),
        *("invoice", "overcharge", "refund", "cashier", "kindergarten", "tuition", "uniform"),
        *("canteen", "teacher", "classroom", "graffiti", "scaffold", "hoarding", "billboard"),
    ]
    items = [(i, " ".join(words[3 * i : 3 * i + 6])) for i in range(7)]
    assert all(len(issue.case_ids) <= 3 for issue in hot_issues(items, min_size=2))


def test_mixed_chinese_and_english_complaints_group_by_both_parts() -> None:
    items = [
        (301, "松涛路 Blue Note bar 每晚live music到凌晨两点，低音炮太吵，睡不着"),
        (302, "Blue Note bar on 松涛路: live music until 2 a.m. every night, 低音炮吵得睡不着"),
        (303, "松涛路的Blue Note酒吧live music吵到凌晨两点，低音炮震得睡不着觉"),
        (304, "明德路菜市场 the fish stalls dump waste water on the pavement, 臭味很大"),
        (305, "Jinxiu Garden 锦绣华庭 parking fees raised without notice, 物业不给解释"),
        (306, "The swimming pool at the District Sports Centre 更衣柜坏了, water is dirty"),
    ]
    issues = hot_issues(items, min_size=2)
    assert [issue.case_ids for issue in issues] == [(301, 302, 303)]
    assert duplicate_score(items[0][1], items[1][1]) >= DUPLICATE_SCORE
    assert duplicate_score(items[0][1], items[3][1]) < DUPLICATE_SCORE


def test_shorten_cuts_english_at_a_word_and_chinese_at_a_character() -> None:
    assert shorten("The elevator in our building has been broken", 40) == (
        "The elevator in our building has been…"
    )
    assert shorten("The elevator  in\nour building", 40) == "The elevator in our building"
    assert shorten("电梯坏了三个星期，老人下不了楼", 8) == "电梯坏了三个星…"
    assert len(shorten("x" * 200, 60)) == 60


def test_the_districts_name_and_a_nationality_do_not_make_english_letters_duplicates() -> None:
    # Letters from foreigners name the district and their language or nationality: neither
    # is the place of a problem ("Minsheng District", "English", "Several Chinese colleagues").
    school = (
        "School enrolment for foreign children\nHello, my family moved to Minsheng District "
        "from Germany last month. My son is 7 years old. Can he attend a local public primary "
        "school? What documents do we need and where should we apply? We could not find any "
        "information in English online. Thank you very much."
    )
    salary = (
        "Unpaid salary for three months\nI am an English teacher at a private training school "
        "in Minsheng District. The school has not paid my salary since February. The manager "
        "keeps promising to pay 'next week'. Several Chinese colleagues are in the same "
        "situation. Where can we file a complaint about unpaid wages, and can foreigners use "
        "the same procedure?"
    )
    assert duplicate_score(school, salary) < DUPLICATE_SCORE
    reworded = (
        "Foreign children and school places\nWe moved to Minsheng District from Germany and our "
        "7-year-old son needs a public primary school. Which documents are needed to enrol "
        "him, and where do we apply?"
    )
    assert duplicate_score(school, reworded) >= DUPLICATE_SCORE
