"""Urgent safety hazards: complaints that skip the triage queue and get hour-level limits.

A complaint is urgent when it reports a gas or chemical leak, a fire hazard, a risk of
collapse, explosives or poison, or live electricity, in Chinese or English. Detection is by
phrase rules, not by the classifier: the cases are rare, the cost of missing one is high, and
a supervisor must be able to read why a case was flagged. A phrase preceded by a negation in
the same clause ("没有安全隐患", "no gas leak") or followed by a note that it has been dealt
with ("火灾隐患已排除") does not count.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["HAZARD_PATTERNS", "HazardFlag", "detect_hazard"]


@dataclass(frozen=True)
class HazardFlag:
    """Whether a complaint reports an urgent hazard, and the phrases that said so."""

    urgent: bool
    reasons: tuple[str, ...]


_NOT_PERIOD = r"[^。！？!?\n]"
_ANY = _NOT_PERIOD + "{0,10}?"

# Each pattern matches a phrase that, in a complaint, reports a present danger. Broad words
# that are ordinary in complaints ("安全隐患", "泄露" of personal data, "爆炸" of information)
# are left out or tied to what makes them dangerous.
HAZARD_PATTERNS: dict[str, tuple[str, ...]] = {
    "gas or chemical leak": (
        r"(?:燃气|煤气|天然气|液化气|沼气|管道气)" + _NOT_PERIOD + r"{0,4}?(?:泄漏|泄露|外泄|漏气)",
        r"漏气",
        r"(?:闻到|有|一股)" + _NOT_PERIOD + r"{0,4}?(?:燃气|煤气|天然气|液化气)味",
        r"(?:化学品|化工|危化品|危险品|有毒气体|氨气|氯气|硫化氢|液氨)"
        + _NOT_PERIOD
        + r"{0,4}?(?:泄漏|泄露|外泄)",
        r"危险化学品",
        r"危化品",
        r"危险品",
        r"易燃易爆",
        r"gas leak(?:s|ing|age)?",
        r"(?:smell|smells|smelled|odou?r) of gas",
        r"chemical (?:leak|spill)s?",
        r"hazardous (?:material|chemical|substance)s?",
        r"carbon monoxide",
    ),
    "fire hazard": (
        r"火灾隐患",
        r"消防隐患",
        r"消防(?:通道|车道)" + _NOT_PERIOD + r"{0,6}?(?:堵塞|堵死|被堵|堵住|被占|占用|占道|封堵)",
        r"(?:堵塞|堵死|占用|封堵|堵住)" + _NOT_PERIOD + r"{0,4}?消防(?:通道|车道)",
        r"(?:安全出口|疏散通道|逃生通道)"
        + _NOT_PERIOD
        + r"{0,6}?(?:堵塞|堵死|被堵|被锁|锁死|上锁|被占|占用)",
        r"私拉(?:乱接)?电线",
        r"私拉乱接",
        r"飞线充电",
        r"(?:电动车|电瓶车|电动自行车)" + _ANY + r"(?:楼道|走廊|楼梯间?|室内|屋内|入户|上楼)"
        r"" + _NOT_PERIOD + r"{0,6}?充电",
        r"(?:楼道|走廊|楼梯间|室内)" + _ANY + r"(?:电动车|电瓶车)" + _NOT_PERIOD + r"{0,6}?充电",
        r"fire hazards?",
        r"fire (?:exit|escape|door)s? (?:is |are |was |were )?(?:blocked|locked|obstructed)",
        r"(?:blocked|locked|obstructed) fire (?:exit|escape|door)s?",
        r"(?:exposed|bare|live|sparking) (?:wiring|wires|wire)",
    ),
    "collapse": (
        r"坍塌",
        r"塌陷",
        r"塌方",
        r"垮塌",
        # Not the renovation programme for old houses (危房改造) or its subsidies.
        r"危房(?!改造|改建|补|拆|户|政策|指标|申请|项目)",
        r"(?:墙体|墙面|楼体|房屋|楼房|承重墙|桥梁|桥面|大桥)"
        + _NOT_PERIOD
        + r"{0,4}?(?:开裂|裂缝|倾斜)",
        r"脚手架" + _NOT_PERIOD + r"{0,8}?(?:倒|塌|松动|摇晃|不稳|坠落|掉落)",
        r"山体滑坡",
        r"泥石流",
        r"(?:building|house|roof|ceiling|wall|floor|bridge|balcony|stair\w*) (?:has |is |was )?"
        r"(?:collaps\w*|caving in|caved in)",
        r"sinkholes?",
        r"structural (?:damage|crack|cracks|failure)",
    ),
    "explosion": (
        r"(?<!信息)(?<!知识)(?<!人口)爆炸(?!性)",
        r"爆燃",
        r"炸药",
        r"雷管",
        r"非法(?:储存|存放|生产)" + _NOT_PERIOD + r"{0,4}?(?:烟花|爆竹|鞭炮)",
        r"explosions?",
        r"explosives?",
    ),
    "poison": (
        # Not bare "毒气": in complaints it is mostly a factory's fumes, a pollution case.
        r"毒气(?:泄漏|泄露|外泄)",
        r"(?:食物|集体|一氧化碳)中毒",
        r"放射源",
        r"放射性物质",
        r"toxic (?:gas|fumes|waste|chemicals?)",
        r"poisoning",
        r"asbestos",
    ),
    "electricity": (
        r"漏电",
        r"电线" + _NOT_PERIOD + r"{0,4}?(?:裸露|脱落|断落|垂落)",
        r"(?:高压线|电线杆)" + _NOT_PERIOD + r"{0,6}?(?:倒|断|垂|下垂|倾斜)",
        r"触电",
        r"downed power lines?",
    ),
}

# Words that, shortly before a phrase in the same clause, deny it or make it a precaution.
_NEGATION_BEFORE = re.compile(
    r"(?:没有|没|无|不存在|并无|未发现|没发现|未|排除|消除|杜绝|防止|预防|避免|谨防|"
    r"\bno\b|\bnot\b|\bnever\b|\bwithout\b|\bfree of\b|\bno sign of\b|\bprevent\w*)"
)
# Phrases right after that say the hazard is past.
_RESOLVED_AFTER = re.compile(
    r"^[^。！？!?\n,，;；]{0,4}(?:已|已经)(?:排除|消除|整改|处理|解决|修复)"
)
_CLAUSE_END = re.compile(r"[。！？!?\n,，;；]")
_WINDOW = 8

_COMPILED = tuple(
    (category, re.compile(pattern, re.IGNORECASE))
    for category, patterns in HAZARD_PATTERNS.items()
    for pattern in patterns
)


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _negated(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - _WINDOW) : start]
    clause_starts = [m.end() for m in _CLAUSE_END.finditer(before)]
    if clause_starts:
        before = before[clause_starts[-1] :]
    if _NEGATION_BEFORE.search(before):
        return True
    return bool(_RESOLVED_AFTER.search(text[end : end + 12]))


def detect_hazard(subject: str, body: str, extra_terms: Iterable[str] = ()) -> HazardFlag:
    """Flag a complaint that reports an urgent safety hazard; ``extra_terms`` add phrases.

    The reasons are the phrases found (as they read after normalising full-width characters
    and case), in order of appearance, without repeats.
    """
    text = _normalize(f"{subject}\n{body}")
    found: list[tuple[int, str]] = []
    patterns = list(_COMPILED)
    patterns += [
        ("extra", re.compile(re.escape(_normalize(term.strip()))))
        for term in extra_terms
        if term.strip()
    ]
    for _category, pattern in patterns:
        for match in pattern.finditer(text):
            if not _negated(text, match.start(), match.end()):
                found.append((match.start(), match.group(0)))
    reasons = tuple(dict.fromkeys(phrase for _, phrase in sorted(found)))
    return HazardFlag(bool(reasons), reasons)
