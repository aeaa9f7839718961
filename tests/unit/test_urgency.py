"""Tests of urgent-hazard detection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from triage.urgency import HazardFlag, detect_hazard

TEDDY = Path(__file__).resolve().parents[3] / "shared" / "data" / "teddy2020c" / "train.jsonl"


@pytest.mark.parametrize(
    ("subject", "body", "reason"),
    [
        ("", "楼下饭店燃气泄漏，整栋楼都是味道", "燃气泄漏"),
        ("煤气泄露", "", "煤气泄露"),
        ("", "厨房管道一直漏气，物业不管", "漏气"),
        ("", "厂里的化学品泄漏到河里", "化学品泄漏"),
        ("", "小区旁边仓库堆放危险品", "危险品"),
        ("", "居民楼下违规存放危化品", "危化品"),
        ("", "门面里堆满易燃易爆物品", "易燃易爆"),
        ("", "商场存在严重火灾隐患", "火灾隐患"),
        ("", "小区消防通道堵塞，消防车进不来", "消防通道堵塞"),
        ("", "消防通道被占用了好几个月", "消防通道被占"),
        ("", "超市安全出口堵塞", "安全出口堵塞"),
        ("", "群租房私拉电线", "私拉电线"),
        ("", "很多人把电动车推进楼道充电", "电动车推进楼道充电"),
        ("", "工地基坑坍塌，旁边居民楼危险", "坍塌"),
        ("", "路面塌陷了一个大坑", "塌陷"),
        ("", "我家房子已被鉴定为危房", "危房"),
        ("", "老楼墙体开裂越来越严重", "墙体开裂"),
        ("", "工地脚手架摇晃，随时会倒", "脚手架摇晃"),
        ("", "附近工厂昨晚发生爆炸", "爆炸"),
        ("", "There is a strong smell of gas in our building", "smell of gas"),
        ("Gas leak", "", "gas leak"),
        ("", "The fire exit is blocked by boxes", "fire exit is blocked"),
        ("", "Exposed wires hang in the stairwell", "exposed wires"),
    ],
)
def test_hazards_are_urgent(subject: str, body: str, reason: str) -> None:
    flag = detect_hazard(subject, body)
    assert flag.urgent
    assert reason.lower() in flag.reasons


@pytest.mark.parametrize(
    "body",
    [
        "检查后没有安全隐患",
        "小区没有燃气泄漏，请放心",
        "经检查并无火灾隐患",
        "火灾隐患已排除",
        "为防止火灾隐患，建议多设灭火器",
        "No gas leak was found by the inspector",
        "楼上装修噪音太大，晚上睡不着",
        "公司拖欠工资三个月",
        "学校乱收费，补课费太贵",
        "申请农村危房改造补贴",
        "个人信息泄露，经常接到骚扰电话",
        "信息爆炸的时代",
        "My credit report shows a collapsed account",
        "小区安全隐患多，路灯不亮",
    ],
)
def test_ordinary_complaints_and_negations_are_not_urgent(body: str) -> None:
    assert detect_hazard("", body) == HazardFlag(False, ())


def test_reasons_are_in_order_without_repeats() -> None:
    flag = detect_hazard("消防通道堵塞", "消防通道堵塞，而且燃气泄漏，燃气泄漏很严重")
    assert flag.reasons == ("消防通道堵塞", "燃气泄漏")


def test_full_width_and_case_are_normalised() -> None:
    assert detect_hazard("", "ＧＡＳ ＬＥＡＫ near the school").reasons == ("gas leak",)


def test_extra_terms_count_and_respect_negation() -> None:
    assert detect_hazard("", "小区井盖丢失", extra_terms=["井盖丢失"]).reasons == ("井盖丢失",)
    assert not detect_hazard("", "没有井盖丢失", extra_terms=["井盖丢失", " "]).urgent


def test_share_flagged_in_shared_data_is_small() -> None:
    if not TEDDY.exists():
        if os.environ.get("MINSHENG_REQUIRE_ALL") == "1":
            pytest.fail(f"shared data missing at {TEDDY} and MINSHENG_REQUIRE_ALL=1")
        pytest.skip(f"shared data not found at {TEDDY}")
    rows = [json.loads(line) for line in TEDDY.read_text("utf-8").splitlines() if line]
    flagged = [r for r in rows if detect_hazard(r["subject"], r["body"]).urgent]
    # Ordinary complaints: only a few per cent report a hazard, most of them about buildings.
    assert 0.005 < len(flagged) / len(rows) < 0.05
    by_label = [r["label"] for r in flagged]
    assert by_label.count("城乡建设") > len(flagged) / 2
