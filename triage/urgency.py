"""Urgent safety hazards: complaints that skip the triage queue and get hour-level limits.

A complaint is urgent when it reports a present gas or chemical leak, a fire hazard, a risk of
collapse, explosives or poison, or live electricity, in Chinese or English. Detection is by
phrase rules, not by the classifier: the cases are rare, the cost of missing one is high, and
a supervisor must be able to read why a case was flagged.

How a phrase is read:

- A rule matches a hazard phrase, often an object and what it does with a short gap between
  (``燃气管道在漏``, ``the fire exit is being blocked``). The object and the predicate are
  named groups ``o`` and ``p`` so that a negation can be checked where it would govern.
- A negation cancels the phrase only when it governs it: directly before the phrase, its
  object or its predicate, with nothing between but the words that link a negation to its
  object (``没有燃气泄漏``, ``未发现漏气``, ``不存在火灾隐患``, ``no smell of gas``, ``did not
  find any exposed wires``). A negation of another verb (``物业没来处理燃气泄漏``, ``nobody came
  to fix the gas leak``) does not, nor does a question (``会不会塌``, ``有没有人管``).
  Words of precaution (``防止``, ``预防``, ``prevent``) count as negations.
- A note right after the phrase that it was dealt with (``…已排除``, ``…has been fixed``)
  cancels it.
- Known ordinary uses of hazard words (personal data ``泄露``, a tyre ``漏气``, ``信息爆炸``,
  ``explosion of complaints``) are masked before matching.
- A message asking for compensation or accountability for an accident placed in the past
  (``去年…燃气爆炸…赔偿``) is not urgent, unless it says the danger is still there.
- Overlapping matches are one mention: the longest is kept, so a reason never repeats part
  of another.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from triage.models import Status

if TYPE_CHECKING:
    from triage.deadlines import Deadlines
    from triage.models import Actor, Case

__all__ = ["HAZARD_PATTERNS", "HazardFlag", "HazardMatch", "detect_hazard", "find_hazards"]


@dataclass(frozen=True)
class HazardFlag:
    """Whether a complaint reports an urgent hazard, and the phrases that said so."""

    urgent: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class HazardMatch:
    """One hazard phrase found: ``start``/``end`` index the normalised text (see
    ``find_hazards``), ``phrase`` is what a supervisor is shown."""

    start: int
    end: int
    category: str
    phrase: str


_SENTENCE = r"[^。！？!?\n]"
_CLAUSE = r"[^。！？!?\n,，;；：:]"


def _gap(n: int) -> str:
    """Up to ``n`` characters within one clause, as few as possible."""
    return f"{_CLAUSE}{{0,{n}}}?"


def _sentence_gap(n: int, without: str = "") -> str:
    """Up to ``n`` characters within one sentence; none of them starts ``without``."""
    char = f"(?:(?!{without}){_SENTENCE})" if without else _SENTENCE
    return f"{char}{{0,{n}}}?"


def _words(alternatives: str) -> str:
    """A regex group of the whitespace-separated alternatives; ``_`` in one stands for spaces."""
    return "(?:" + "|".join(w.replace("_", r"\s+") for w in alternatives.split()) + ")"


# Chinese vocabulary shared by several rules.
_GAS = _words("燃气 煤气 天然气 液化石油气 液化气 沼气 管道气 瓦斯")
# "漏" of gas, not 漏水 (water), 漏缴/漏抄/漏收 (a missed payment or reading), 漏洞 …
_LEAK = _words(
    "泄漏 泄露 外泄 漏气 漏出 漏了 在漏 漏(?![水雨缴交抄收算发报登记录税费掉洞油网缝风斗勺]) "
    "往外冒 冒出来 冒气"
)
_EXIT = _words(
    "消防通道 消防车道 消防通路 消防出口 消防门 消防栓 安全出口 安全通道 疏散通道 逃生通道 "
    "逃生出口 逃生门 应急通道 生命通道 紧急出口"
)
_BLOCKED = _words(
    "堵塞 堵死 被堵 堵住 堵着 堵了 被占 占用 占道 占了 封堵 封死 被封 锁死 被锁 上锁 锁住 锁着 "
    "锁了 堆满 堆放 堆着 堆了 停满 停放 停着 停了 被挡 挡住 挡着 不通 焊死"
)
_EBIKE = _words("电动自行车 电动摩托车? 电动车 电瓶车 电摩 锂电池 电瓶 电池")
_INDOOR = _words(
    "楼道 走廊 楼梯间? 过道 室内 屋内 屋里 家里 家中 入户 上楼 电梯 大厅 门厅 地下室 宿舍 房间 回家"
)
_STRUCTURE = _words(
    "承重墙 挡土墙 外墙 内墙 围墙 墙体 墙面 墙 楼(?![市盘主价长道层下上里外]) 楼体 楼房 房子 "
    "房屋 房顶 屋顶 屋面 天花板 吊顶 顶棚 楼板 横梁 大梁 柱子 立柱 阳台 楼梯 台阶 桥梁 桥面 大桥 "
    "桥 路面 地面 地基 广告牌 招牌 围挡 脚手架 塔吊 雨棚 护坡 边坡 大树 树"
)
# Not 坍塌/垮塌/倒塌/塌陷/塌方 here: those have rules of their own, read whole.
_GIVES_WAY = _words(
    "开裂 裂缝 裂开 裂了 裂成 裂出 倾斜 歪了 下沉 沉降 变形 要塌 快塌 会塌 塌了 塌下 塌掉 "
    "(?<![坍垮倒])塌(?![陷方]) 倒了 要倒 快倒 会倒 倒下 垮了 要垮 快垮 晃得 摇晃 晃动 松动 "
    "摇摇欲坠 摇摇晃晃"
)
_FALLS_OFF = _words("脱落 掉下来 掉下 掉落 坠落 往下掉 掉了 掉渣 (?<!被)砸(?:到|伤|中|在|下|死)")
_POWER = _words(
    "高压线 电线杆 电线 电缆 线杆 电杆 变压器 配电房 电井 配电箱 配电柜 电表箱 电箱 电闸 插座 "
    "插排 插线板 充电桩 空开"
)
_POWER_FAULT = _words(
    "裸露 脱落 断落 断了 垂落 垂下 垂到 垂得 下垂 耷拉 掉下 掉了 掉在 落地 倒了 倒下 倾斜 歪了 "
    "打火 冒火 冒烟 火花 着火 起火 烧焦 烧了 短路 漏电"
)

# English vocabulary. Auxiliaries may sit between a subject and its verb, negations may not:
# "the fire exit is not blocked" simply does not match.
_AUX = (
    _words(
        "is are was were be been being has have had keeps? kept got gets getting remains? "
        "remained stays? stayed still always often constantly again now just already completely "
        "totally partly partially badly seriously visibly started starting starts began begun "
        "going_to about_to likely_to could might may will would can that which"
    )
    + r"\s+"
)
_AUX = f"(?:{_AUX})*"
# "the wall next to the school is leaning": a short place may follow the subject.
_PLACE_EN = (
    r"(?:\s+"
    + _words("at in of on near behind by next_to outside above over along beside under")
    + r"(?:\s+[\w'-]+){1,3}?)?"
)
_GAS_THING_EN = (
    r"(?:\s+"
    + _words(
        "pipes? lines? mains? tanks? cylinders? bottles? meters? stoves? cookers? hobs? "
        "heaters? boilers? valves? canisters? supply"
    )
    + ")?"
)
_EXIT_EN = _words(
    "fire_(?:exit|escape|door|lane|route|stair(?:s|case|well)?)s? emergency_(?:exit|door)s? "
    "(?:back|rear|side|only)_exits? "
    "escape_routes?"
)
_STRUCTURE_EN = _words(
    "buildings? house houses home flats? roofs? ceilings? walls? floors? "
    "(?:foot|rail|road)?bridges? balcon(?:y|ies) "
    r"stair\w* roads? pavements? sidewalks? scaffold\w* hoardings? billboards? trees? chimneys? "
    "awnings? canop(?:y|ies) tunnels? embankments? slopes? hillsides? facades? tiles?"
)
_BLOCKED_EN = _words(
    "blocked locked obstructed chained padlocked jammed bolted barred sealed welded_shut "
    "nailed_shut boarded_up"
)
_BLOCKING_EN = _words(
    r"block\w* lock(?:s|ed|ing)? obstruct\w* chain(?:s|ed|ing)? padlock\w* "
    r"park\w*_(?:in|on|across) stor\w*_(?:in|at)"
)
_GIVING_WAY_EN = _words(
    r"collaps\w* caving_in caved_in cave_in falling_down fell_down fall_down coming_down "
    r"came_down crumbl\w* giving_way gave_way sagging cracking leaning tilting subsiding sinking "
    "falling_apart falling_off fell_off fall_off falling_in fell_in fall_in fallen_(?:down|in|off)"
)
_POWER_EN = _words(
    "wires? wiring cables? sockets? outlets? plugs? power_(?:lines?|cables?) fuse_?box(?:es)? "
    "breaker_box(?:es)? meter_box(?:es)? transformers? junction_box(?:es)? switchboards? "
    "electrical_panels?"
)
_POWER_FAULT_EN = _words(
    "sparking sparks smoking burning arcing melting smouldering smoldering on_fire exposed "
    "hanging_(?:down|loose|low|from|out|over|across) dangling down fallen snapped live "
    "c[oa]me_down coming_down fell(?:_down)? falling_down lying_(?:on|in|across)"
)

# Each pattern matches a phrase that, in a complaint, reports a present danger. Broad words
# that are ordinary in complaints ("安全隐患", bare "爆炸" of information, "滑坡" of quality)
# are left out or tied to what makes them dangerous.
HAZARD_PATTERNS: dict[str, tuple[str, ...]] = {
    "gas or chemical leak": (
        rf"(?P<o>{_GAS}|\bgas\b){_gap(8)}(?P<p>{_LEAK})",
        rf"(?P<o>{_GAS})\s*{_AUX}(?P<p>leak(?:s|ed|ing|age)?)\b",
        rf"(?P<o>{_GAS}(?:泄漏)?(?:报警器|报警装置|探测器))\s*{_AUX}"
        r"(?P<p>going\s+off|went\s+off|goes\s+off|beeping|sounding|ringing)",
        r"\b(?P<o>(?:gas|carbon\s+monoxide|co)(?:\s+leak)?\s+(?:detector|alarm|sensor)s?)\s+"
        rf"{_AUX}(?P<p>going\s+off|went\s+off|goes\s+off|beeping|sounding|ringing)",
        # "天然气管道被挖断了，正在泄漏": the leak is told in the next clause.
        # The gap holds no second gas word: 宣传燃气安全，预防燃气泄漏 reads from the nearest.
        rf"(?P<o>{_GAS}){_sentence_gap(20, _GAS)}"
        r"(?P<p>泄漏|漏气|(?:正在|还在|仍在|一直|不停地?|又在?|往外)漏(?![水雨]))",
        rf"(?P<o>{_GAS}){_gap(6)}(?P<p>破了|破裂|断了|裂了|爆了|挖断|挖破|被挖|爆管)",
        r"漏气",
        rf"(?P<o>{_GAS})的?(?P<p>味道?|气味|臭味|异味)",
        rf"(?P<o>{_GAS}){_gap(8)}(?P<p>气味|味道|臭味|异味|味儿)",
        rf"(?P<o>{_GAS}){_sentence_gap(20, _GAS)}(?P<p>闻到{_gap(5)}(?:气味|味道|异味|臭味))",
        rf"(?P<o>{_GAS}(?:泄漏)?报警器){_gap(4)}(?P<p>响|叫|报警|鸣)",
        r"(?P<o>化学品|化工|危化品|危险品|有毒气体|氨气|氯气|硫化氢|液氨|硫酸|盐酸|储罐|油罐)"
        + _gap(6)
        + r"(?P<p>泄漏|泄露|外泄|漏了|在漏|漏出|溢出)",
        r"危险化学品",
        r"危化品",
        r"危险品",
        r"易燃易爆",
        rf"\bgas{_GAS_THING_EN}{_PLACE_EN}\s+{_AUX}(?P<p>leak(?:s|ed|ing|age)?)\b",
        r"\bleak(?:s|ed|ing|age)?\s+(?:of\s+)?(?:natural\s+|cooking\s+|lpg\s+)?gas\b",
        r"\b(?P<p>burst|broken|ruptured|cracked|damaged|severed|split)\s+gas\s+(?:pipe|line|main|"
        r"hose)s?\b",
        rf"\b(?P<o>gas\s+(?:pipe|line|main|hose)s?){_PLACE_EN}\s+{_AUX}"
        r"(?P<p>burst|broken|ruptured|cracked|damaged|severed|split)\b",
        r"\b(?P<p>smell\w*|odou?rs?|stench|whiff|reek\w*)(?:\s+(?:strongly|badly|heavily|faintly))?"
        r"\s+(?:of\s+|like\s+)?(?:natural\s+|cooking\s+|leaking\s+)?gas\b",
        r"\bgas\s+(?:smell|odou?r|fumes)s?\b",
        r"\bchemical\s+(?:leak|spill)\w*",
        r"\bhazardous\s+(?:material|chemical|substance)s?",
        r"\bcarbon\s+monoxide\b",
    ),
    "fire hazard": (
        r"火灾隐患",
        r"消防(?:安全)?隐患",
        rf"(?P<o>{_EXIT}){_gap(8)}(?P<p>{_BLOCKED})",
        r"(?P<p>堵塞|堵死|占用|封堵|堵住|锁住|锁死|堵了|挡住|占了|焊死|(?:堆|停|放|摆)(?:在|到|满了?))"
        rf"{_gap(4)}(?P<o>{_EXIT})",
        r"私拉乱接",
        r"(?:私拉|乱拉|乱接)(?:乱接)?电线",
        r"飞线充电",
        rf"(?:拉|接|扯){_gap(2)}(?:电线|插线板|插排|接线板){_gap(12)}(?P<p>充电)",
        rf"(?P<o>{_EBIKE}){_gap(12)}{_INDOOR}{_gap(10)}(?P<p>充电)",
        rf"{_INDOOR}{_gap(12)}(?P<o>{_EBIKE}){_gap(10)}(?P<p>充电)",
        # "楼梯口停满了电瓶车，晚上都在那里充电": the charging is told in the next clause.
        rf"{_INDOOR}{_gap(12)}(?P<o>{_EBIKE}){_sentence_gap(16, _EBIKE)}(?P<p>充电)(?!桩|站|柜|费)",
        # Not 引起火灾 (cause a fire) nor 两起火灾 (起 counting fires), nor a chimney's 浓烟.
        r"(?P<p>着火(?!点)|(?<![引一两三几多\d])起火(?!原因|灾)|失火|发生火灾|火势|烧起来|燃起来|火光冲天)",
        rf"{_INDOOR}{_gap(8)}(?P<p>充电)的?{_gap(2)}(?P<o>{_EBIKE})",
        rf"(?P<o>{_EXIT_EN}){_gap(4)}(?P<p>{_BLOCKED})",
        r"\b(?P<o>e-?bikes?|electric\s+(?:bikes?|scooters?|bicycles?)|(?:e-?bike\s+|"
        r"scooter\s+)?batter(?:y|ies))"
        r"\s+(?:(?:are|is|being|left|kept)\s+)*(?P<p>charg\w*|plugged\s+in)\s+(?:in|inside|on|"
        r"at)\s+"
        r"(?:the\s+|our\s+|their\s+)?(?:hallway|corridor|stair\w*|lobby|lift|elevator|landing|flat|"
        r"apartment|basement|building)s?\b",
        r"\b(?P<p>charg\w*)\s+(?:their\s+|the\s+|his\s+|her\s+)?(?P<o>e-?bikes?|"
        r"electric\s+(?:bikes?|scooters?))"
        r"\s+(?:in|inside|on|at)\s+(?:the\s+|our\s+)?(?:hallway|corridor|stair\w*|lobby|lift|"
        r"elevator|"
        r"landing|flat|apartment|basement|building)s?\b",
        r"\bfire\s+hazards?\b",
        # "The 消防通道 at our compound is blocked": a place may follow the exit.
        rf"(?P<o>\b{_EXIT_EN}|{_EXIT}){_PLACE_EN}\s*{_AUX}(?P<p>{_BLOCKED_EN})\b",
        rf"\b(?P<p>{_BLOCKING_EN})"
        r"\s+(?:(?:the|a|an|our|their|its|both|all|every|main|only|rear|back|front|side|"
        r"[\w']+'s)\s+)*" + _EXIT_EN,
        r"\b(?:on\s+fire|caught\s+fire|catch(?:es|ing)?\s+fire|fire\s+broke\s+out|in\s+flames|"
        r"ablaze)\b",
        r"\b(?:smoke|sparks|flames)\s+(?:is\s+|are\s+|were\s+|was\s+)?"
        r"(?:coming|pouring|billowing|shooting)\s+(?:out\s+of|from)\b",
    ),
    "collapse": (
        r"坍塌",
        r"塌陷",
        r"塌方",
        r"垮塌",
        r"倒塌",
        r"山体滑坡",
        r"泥石流",
        rf"(?P<o>山|坡|土坡|边坡|护坡|山体){_gap(3)}(?P<p>滑坡|塌|垮|崩)",
        # Not the renovation programme for old houses (危房改造) or its subsidies.
        r"危房(?!改造|改建|补|拆|户|政策|指标|申请|项目)",
        r"危楼(?!改造|改建|补|拆|政策|项目)",
        # The gap holds no second structure word, so that 老楼墙体开裂 reads as 墙体开裂.
        rf"(?P<o>{_STRUCTURE})(?:(?!{_STRUCTURE}){_CLAUSE}){{0,4}}?(?P<p>{_GIVES_WAY})",
        r"(?P<o>外墙砖|外墙|瓷砖|墙砖|广告牌|招牌|空调外机|玻璃|雨棚|天花板|吊顶|楼板|水泥块|石块|墙体)"
        rf"{_gap(4)}(?P<p>{_FALLS_OFF})",
        rf"\b(?P<o>{_STRUCTURE_EN}){_PLACE_EN}\s+{_AUX}(?P<p>{_GIVING_WAY_EN})",
        r"\b(?:large|big|huge|deep|wide|serious|major|long|growing|widening)\s+cracks?\s+"
        r"(?:in|on|across|along|through)\s+(?:the\s+|our\s+|a\s+|my\s+|this\s+|that\s+)?"
        rf"(?:[\w-]+\s+){{0,2}}?{_STRUCTURE_EN}",
        rf"\b(?P<o>{_STRUCTURE_EN}){_PLACE_EN}\s+{_AUX}(?:in\s+danger|at\s+risk)\s+of\s+"
        r"(?P<p>collaps\w*|falling\s+down|caving\s+in)",
        rf"\b(?:collapsing|collapsed|crumbling|sagging|leaning|caved-in|caving)\s+{_STRUCTURE_EN}",
        r"\bsinkholes?\b",
        r"塌(?:了|出|下去)(?:一个|个|一)?大?(?:洞|坑|口子)",
        r"\bstructural\s+(?:damage|crack|cracks|failure)\b",
        r"\b(?:landslide|mudslide|rockfall)s?\b(?!\s+(?:victory|win))",
    ),
    "explosion": (
        r"(?<!信息)(?<!知识)(?<!人口)爆炸(?!性)",
        r"爆燃",
        r"炸药",
        r"雷管",
        r"非法(?:储存|存放|生产)" + _gap(4) + r"(?:烟花|爆竹|鞭炮)",
        r"(?P<o>煤气罐|液化气罐|气罐|煤气瓶|液化气瓶|钢瓶|锅炉|高压锅|压力锅|电瓶|电池|充电宝|热水器)"
        + _gap(3)
        + r"(?P<p>炸了|爆了|要炸|要爆|炸开|爆开)",
        r"\bexplosions?\b",
        r"\bexplosives?\b",
        r"\b(?P<o>"
        + _words(r"tanks? cylinders? boilers? bottles? transformers? batter(?:y|ies) pipes? gas")
        + r")\s+(?:has\s+|had\s+|just\s+)?(?P<p>exploded|blew\s+up)\b",
    ),
    "poison": (
        # Not bare "毒气": in complaints it is mostly a factory's fumes, a pollution case.
        r"毒气(?:泄漏|泄露|外泄)",
        r"(?:食物|集体|一氧化碳)中毒",
        r"放射源",
        r"放射性物质",
        r"\btoxic\s+(?:gas|fumes|waste|chemicals?)\b",
        r"\bpoisoning\b",
        r"\basbestos\b",
    ),
    "electricity": (
        r"漏电",
        r"触电",
        r"被电(?:了|到|击|伤)",
        rf"(?P<o>路灯|灯杆|栏杆|护栏|铁门|铁栏|扶手|外壳|水管|井盖|墙|电梯|广告牌|信号灯){_gap(6)}"
        r"(?P<p>带电|漏电|麻手|电人)",
        r"\bsparks?\s+(?:from|in|at|on)\s+(?:the\s+|a\s+|our\s+)?(?:sockets?|outlets?|plugs?|"
        r"wires?|wiring|"
        r"cables?|fuse\s*box(?:es)?|meters?|transformers?|switch(?:es)?)\b",
        rf"(?P<o>{_POWER}){_gap(6)}(?P<p>{_POWER_FAULT})",
        rf"\b(?P<o>{_POWER_EN}){_PLACE_EN}\s+{_AUX}(?P<p>{_POWER_FAULT_EN})\b",
        r"\b(?:exposed|bare|live|sparking|dangling|fallen|downed|hanging|snapped)\s+"
        r"(?:electric(?:al)?\s+|power\s+|high[- ]voltage\s+)?"
        r"(?:wiring|wires?|cables?|power\s+lines?)\b",
        r"\b(?:sparking|smoking|burning|melting|scorched)\s+(?:electric(?:al)?\s+)?"
        r"(?:sockets?|outlets?|plugs?|switch(?:es)?|fuse\s*box(?:es)?|meters?|transformers?)\b",
        r"\belectric(?:al)?\s+shocks?\b",
        r"\belectrocut\w*",
    ),
}

# Ordinary uses of hazard words; a match overlapping one of these is not a hazard.
_BENIGN = re.compile(
    "|".join(
        (
            r"(?:信息|隐私|数据|资料|号码|地址|个人)" + _gap(4) + r"(?:泄露|泄漏|外泄)",
            r"(?:公司|客服|员工|营业厅|部门|平台|银行|物业|中介|单位)泄露",
            r"(?:泄露|泄漏|外泄)了?"
            + _gap(10)
            + r"(?:信息|隐私|数据|资料|号码|电话|地址|客户|个人)",
            r"(?:轮胎|车胎|胎|气球|篮球|足球|排球|皮球|球|气垫|充气\w?|泳圈|救生圈|床垫|玩具|窗户?|门窗|门缝|漏风)"
            + _gap(3)
            + r"漏气",
            r"(?:高压锅|压力锅|锅盖|保温杯|真空|包装|密封圈|袋子?)" + _gap(3) + r"漏气",
            # Paint or wallpaper coming off is a repair, not something falling on people.
            r"(?:涂料|油漆|漆皮?|墙皮|腻子|粉刷|墙纸|壁纸)"
            + _gap(3)
            + r"(?:脱落|掉了|掉落|往下掉|掉渣|起皮|开裂)",
            r"定时炸弹",
            r"(?:信息|知识|人口|消息|流量|订单|数据|舆论|话题|粉丝)爆炸|爆炸(?:头|性|式|新闻)",
            r"(?:信任|信心|诚信|信誉|人设|形象|道德|市场|股市|楼市|房价|价格|经济|体系|制度)"
            + _gap(2)
            + r"(?:坍塌|崩塌|垮塌|倒塌|塌方)",
            r"塌方式",
            rf"{_GAS}(?:泄漏)?(?:报警器|报警装置|探测器|检测仪)(?!{_gap(4)}(?:响|叫|报警|鸣|going|beep|ring))",
            r"\b(?:gas|carbon\s+monoxide|co)(?:\s+leak)?\s+(?:detector|alarm|sensor)s?\b"
            r"(?!\s+(?:is\s+|are\s+|was\s+|keeps\s+|kept\s+|has\s+been\s+)*"
            r"(?:going\s+off|went\s+off|goes\s+off|beeping|sounding|ringing))",
            r"\bexplosion\s+of\b(?!\s+(?:an?\s+|the\s+)?(?:gas|boiler|tank|cylinder|bomb|"
            r"fireworks?))",
            r"\b(?:population|information|data|price|social\s+media)\s+explosion\b",
        )
    ),
    re.IGNORECASE,
)

# Negations, and words of precaution, that can govern a hazard phrase. 有无 asks, it does not deny.
_NEGATION = re.compile(
    r"(?:并没有|并不|并无|并未|从来没有|从没有|从没|从未|没有|毫无|绝无|决无|尚无|暂无|均无|未曾|"
    r"不再|禁止|严禁|不得|不准|不要|不能|切勿|杜绝|排除了?|已经?(?:消除|整改)|防止|预防|避免|谨防|以防|防范|"
    r"以免|免得|没|(?<!有)无|未|不|非|别|"
    r"\bno\b|\bnot\b|n't\b|\bnever\b|\bwithout\b|\bnobody\b|\bno\s+one\b|\bnone\b|\bcannot\b|"
    r"\bfree\s+of\b|\bprevent\w*|\bavoid\w*|\bin\s+case\s+of\b|\bguard\w*\s+against\b)"
)
# Words that may stand between a negation and what it negates (没有|发现|任何 燃气泄漏).
_LINK = re.compile(
    r"(?:\s|有|发现|出现|存在|任何|什么|明显|过|再次|再|检测到|检测出|检查出|查出|查到|闻到|看到|听到|"
    r"见到|见|到|出|发生|造成|产生|引起|一点|丝毫|的|啥|可能|会|是|在|被|了|那么|这种|这样的|还|一丝|"
    r"半点|迹象|意外|大的|太大|多大|严重|存放|堆放|储存|携带|寄|邮寄|运输|使用|私自|违规|随意|让|许|允许|"
    r"能|得|要|"
    r"\b(?:a|an|the|any|some|signs?|traces?|evidence|indications?|hints?|risk|danger|of|there|is|"
    r"are|"
    r"was|were|be|been|being|longer|more|further|real|actual|obvious|visible|apparent|detectable|"
    r"serious|such|kind|found|find|detect\w*|notic\w*|see|seen|saw|have|has|had|do|does|did|will|"
    r"would|can|could|should|may|might|yet|ever|really|actually|currently|at\s+all|indeed)\b)*"
)
_ASKING_VERBS = "是会有能要可算该属存漏塌倒危安"
_CLAUSE_END = re.compile(r"[。！？!?\n,，;；：:]|\.(?=\s)")
_LOOK_BACK = 24

# A note right after a phrase that it has been dealt with.
_RESOLVED_AFTER = re.compile(
    r"(?:"
    r"[^。！？!?\n]{0,8}?(?:已经|已|都已|均已)(?:被|经|得到|全部|基本)?"
    r"(?:排除|消除|整改|处理|解决|修复|修好|清理|清走|清除|疏通|拆除|加固|挪走|移走|关闭|更换|封堵|维修)"
    r"|[^。！？!?\n,，]{0,6}?(?<![没未不])(?:修好了|处理好了|处理完了|解决了|修复了|排除了|清走了|疏通了|清理干净了)"
    r"|\s*(?:now\s+|finally\s+)?(?:fixed|repaired|resolved|sorted)\b"
    r"|(?:\s+(?:at|in|on|near|by|outside)(?:\s+[\w'-]+){1,3}?)?\s*(?:(?:has|have|had)\s+(?:now\s+|"
    r"already\s+|finally\s+)?been|was|were|is|are|got|has\s+now\s+been)\s+"
    r"(?:now\s+|already\s+|finally\s+|quickly\s+|all\s+|properly\s+)?"
    r"(?:fixed|repaired|resolved|sealed|stopped|cleared|removed|dealt\s+with|sorted|handled|"
    r"unblocked|"
    r"filled|taken\s+care\s+of|made\s+safe|reopened)"
    r")"
)

# An accident placed in the past, reported for compensation or accountability.
_AFTERMATH = re.compile(
    r"赔|补偿|工伤|保险|追责|追究|问责|责任人|损失|讨(?:个)?说法|维权|"
    r"\bcompensat\w*|\binsur\w*|\bclaim\w*|\breimburs\w*|\brefuses?\s+to\s+pay\b|\bdamages\b|"
    r"\bliab\w*|"
    r"\bpay\s+for\b|\brefund\w*"
)
_PAST_TIME = re.compile(
    r"去年|前年|上个?月|上周|上星期|上次|上回|当年|那年|那次|那天|当时|曾经|事发|前几天|前些天|前段时间|"
    r"[\d一二两三四五六七八九十几半]+\s*(?:个)?(?:年|月|周|星期)(?:前|以前)|\d{4}\s*年|\d{1,2}\s*月\s*\d{1,2}\s*[日号]|"
    r"\blast\s+(?:year|month|week|spring|summer|autumn|fall|winter|time)\b|\bin\s+(?:19|20)\d\d\b|"
    r"\b\w+\s+(?:years?|months?|weeks?)\s+ago\b"
)
_ACCIDENT_AFTER = re.compile(r".{0,2}(?:事故|事件|案)")
_STILL_THERE = re.compile(
    r"还在|仍在|仍然在|依然在|一直在|又在|至今还在|还没修|隐患还|"
    r"\bstill\s+(?:leak|smell|block|spark|crack|burn|there|hang|collaps|fall|lock|dangerous|"
    r"unsafe)\w*|"
    r"\bagain\b|\bkeeps?\s+\w+ing\b"
)

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (category, re.compile(pattern, re.IGNORECASE))
    for category, patterns in HAZARD_PATTERNS.items()
    for pattern in patterns
)


# -- which rules can match a text at all -----------------------------------------------------
#
# Most complaints report no hazard, and running the ~90 rules over one costs most of the
# import of a call (0.7 ms; the English rules, which start with \b and no literal, try every
# position of a Chinese text). Each rule has sets of characters such that every match holds
# one of each set (worked out from the parsed pattern: the parts every match goes through):
# a rule with a set none of whose characters is in the text cannot match it and is not run.
# The test is one bit mask a text (`_RuleSet`): each set is a bit, each character carries
# the bits of the sets it is in, and a rule runs when the text's characters have all of its
# bits (asking each rule's sets in turn was 0.2 ms a text, most of the detection's time).
# The result is the same; tests/unit/test_urgency.py compares it over real complaints.

_MAX_CLASS = 64  # a character class larger than this says nothing useful


def _variants(c: str) -> set[str]:
    """`c` and the characters IGNORECASE may match it with (ſ, K (kelvin), ı and the like
    fold to s, k, i)."""
    forms = {c, c.lower(), c.upper(), c.upper().lower(), c.lower().upper()}
    return {f for f in forms if len(f) == 1}


def _set_of(op: Any, arg: Any) -> frozenset[str] | None:
    """Characters of which every match of one parsed item holds one; None: cannot say."""
    from re import _parser  # type: ignore[attr-defined]

    if op is _parser.LITERAL:
        return frozenset({chr(arg)})
    if op is _parser.IN:
        chars: set[str] = set()
        for kind, value in arg:
            if kind is _parser.LITERAL:
                chars.add(chr(value))
            elif kind is _parser.RANGE and value[1] - value[0] < _MAX_CLASS:
                chars.update(chr(c) for c in range(value[0], value[1] + 1))
            else:  # NEGATE, categories (\w, \d), large ranges
                return None
        return frozenset(chars) or None
    if op is _parser.SUBPATTERN:
        return _smallest(_required(arg[-1]))
    if op is _parser.BRANCH:
        union: set[str] = set()
        for branch in arg[1]:
            part = _smallest(_required(branch))
            if part is None:
                return None
            union |= part
        return frozenset(union) or None
    if op in (_parser.MAX_REPEAT, _parser.MIN_REPEAT, _parser.POSSESSIVE_REPEAT) and arg[0] >= 1:
        return _smallest(_required(arg[2]))
    return None  # AT, ANY, lookarounds, NOT_LITERAL, group references: nothing required


def _required(items: Any) -> list[frozenset[str]]:
    """For a parsed sequence: the sets of its items that every match goes through."""
    found = []
    for op, arg in items:
        part = _set_of(op, arg)
        if part is not None:
            found.append(part)
    return found


def _smallest(sets: list[frozenset[str]]) -> frozenset[str] | None:
    return min(sets, key=len) if sets else None


@functools.lru_cache(maxsize=1024)
def _triggers(pattern: re.Pattern[str]) -> tuple[frozenset[str], ...]:
    """Sets of characters such that every match of `pattern` holds one of each (none: the
    rule always runs)."""
    from re import _parser  # type: ignore[attr-defined]

    try:
        sets = _required(_parser.parse(pattern.pattern, pattern.flags))
    except Exception:  # a construct this reading does not know: always run the rule
        return ()
    if pattern.flags & re.IGNORECASE:
        sets = [frozenset(v for c in part for v in _variants(c)) for part in sets]
    return tuple(sorted(set(sets), key=len))


_ODD = re.compile("[^\x00-\x7f\u4e00-\u9fff]")  # characters that may have case variants


def _text_chars(text: str) -> set[str]:
    """The characters of a normalised (NFKC, lower-case) text and their case variants (Han
    and ASCII characters have none)."""
    chars = set(text)
    for c in set(_ODD.findall(text)):
        chars |= _variants_of(c)
    return chars


@functools.lru_cache(maxsize=4096)
def _variants_of(c: str) -> frozenset[str]:
    return frozenset(_variants(c))


def _may_match(pattern: re.Pattern[str], chars: set[str]) -> bool:
    """Whether every trigger set of `pattern` meets `chars` (what `_RuleSet.live` works out
    for all rules at once)."""
    return all(not part.isdisjoint(chars) for part in _triggers(pattern))


class _RuleSet:
    """Rules (category, compiled pattern) with their trigger sets as bit masks: `live` gives
    the rules that may match a text, in order, as ``_may_match`` of each would."""

    def __init__(self, rules: Sequence[tuple[str, re.Pattern[str]]]) -> None:
        self.rules = tuple(rules)
        bit_of: dict[frozenset[str], int] = {}
        for _, pattern in self.rules:
            for part in _triggers(pattern):
                bit_of.setdefault(part, 1 << len(bit_of))
        # character -> the bits of the trigger sets holding it
        self.bits: dict[str, int] = {}
        for part, bit in bit_of.items():
            for c in part:
                self.bits[c] = self.bits.get(c, 0) | bit
        self.keys = frozenset(self.bits)
        # a rule's bits: those of all its sets (0: it has none and always runs)
        self.needs = tuple(
            functools.reduce(int.__or__, (bit_of[p] for p in _triggers(pattern)), 0)
            for _, pattern in self.rules
        )

    def live(self, chars: set[str]) -> list[tuple[str, re.Pattern[str]]]:
        have = 0
        bits = self.bits
        for c in self.keys.intersection(chars):
            have |= bits[c]
        return [
            rule for rule, need in zip(self.rules, self.needs, strict=True) if have & need == need
        ]


@functools.lru_cache(maxsize=64)
def _rule_set(extra_terms: tuple[str, ...]) -> _RuleSet:
    """The built-in rules and the configured extra terms (normalised, stripped, non-empty)."""
    extra = [("extra", re.compile(re.escape(term))) for term in extra_terms]
    return _RuleSet([*_RULES, *extra])


# Chinese punctuation, which the intake's text keeps full-width (`intake.normalise.nfkc`),
# and what NFKC makes of it: replaced first, the rest of a text is mostly NFKC already, which
# is quick to check (normalising a complaint of 300 characters took 28 µs, checking 0.2 µs).
_FULL_WIDTH = tuple((c, unicodedata.normalize("NFKD", c)) for c in "！，（）：；？～")


def _normalize(text: str) -> str:
    """NFKC, lower case, curly single quotes straight."""
    for full, half in _FULL_WIDTH:
        if full in text:
            text = text.replace(full, half)
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = text.lower()
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _clause_start(text: str, index: int) -> int:
    start = max(0, index - _LOOK_BACK)
    for end in _CLAUSE_END.finditer(text, start, index):
        start = end.end()
    return start


def _is_question(text: str, neg_start: int) -> bool:
    """``会不会``, ``是不是``, ``有没有``: a negation between a word and itself asks.

    Only for the verbs that ask this way: ``检查没查出`` is a plain negation.
    """
    return (
        text[neg_start] in "不没"
        and 0 < neg_start < len(text) - 1
        and text[neg_start - 1] == text[neg_start + 1]
        and text[neg_start - 1] in _ASKING_VERBS
    )


def _governed(text: str, index: int) -> bool:
    """Whether a negation in the same clause governs what starts at ``index``."""
    start = _clause_start(text, index)
    for neg in _NEGATION.finditer(text, start, index):
        between = text[neg.end() : index]
        if _LINK.fullmatch(between) and not _is_question(text, neg.start()):
            return True
    return False


def _cancelled(text: str, match: re.Match[str]) -> bool:
    heads = {match.start()}
    for group in ("o", "p"):
        if group in match.re.groupindex and match.start(group) >= 0:
            heads.add(match.start(group))
    if any(_governed(text, head) for head in heads):
        return True
    return bool(_RESOLVED_AFTER.match(text, match.end()))


def _sentence(text: str, start: int, end: int) -> str:
    left = max(text.rfind(c, 0, start) for c in "。！？!?\n")
    rights = [i for i in (text.find(c, end) for c in "。！？!?\n") if i >= 0]
    return text[left + 1 : min(rights, default=len(text))]


def _in_the_past(text: str, match: HazardMatch) -> bool:
    sentence = _sentence(text, match.start, match.end)
    if _STILL_THERE.search(sentence):
        return False
    return bool(_PAST_TIME.search(sentence) or _ACCIDENT_AFTER.match(text, match.end))


def _phrase(text: str, match: re.Match[str]) -> str:
    phrase = match.group(0)
    if _CLAUSE_END.search(phrase) and "o" in match.re.groupindex and match.start("o") >= 0:
        # A phrase that runs over clauses is shown by its two ends.
        return f"{match.group('o')}…{text[match.start('p') : match.end()]}"
    return re.sub(r"\s+", " ", phrase)


def _candidates(text: str, rules: _RuleSet) -> list[tuple[re.Match[str], str]]:
    benign: list[tuple[int, int]] | None = None  # read at the first match only
    found = []
    # Rules that cannot match (the text lacks every character of a part all their matches
    # hold) are not run.
    for category, pattern in rules.live(_text_chars(text)):
        for match in pattern.finditer(text):
            start, end = match.span()
            if benign is None:
                benign = [m.span() for m in _BENIGN.finditer(text)]
            if end > start and not any(s < end and start < e for s, e in benign):
                found.append((match, category))
    return found


def _longest_first(found: list[tuple[re.Match[str], str]]) -> list[tuple[re.Match[str], str]]:
    """Of overlapping matches keep the longest (then the earliest): one mention, one reason."""
    kept: list[tuple[re.Match[str], str]] = []
    for match, category in sorted(found, key=lambda f: (f[0].start() - f[0].end(), f[0].start())):
        if all(match.end() <= k.start() or k.end() <= match.start() for k, _ in kept):
            kept.append((match, category))
    return sorted(kept, key=lambda f: f[0].start())


def find_hazards(
    subject: str, body: str, extra_terms: Iterable[str] = ()
) -> tuple[HazardMatch, ...]:
    """The hazard phrases a complaint reports, in order of appearance, never overlapping.

    Offsets index ``subject + "\\n" + body`` after NFKC normalisation and lower-casing.
    ``extra_terms`` are literal phrases (configuration) read like the built-in ones.
    """
    text = _normalize(f"{subject}\n{body}")
    terms = tuple(_normalize(term.strip()) for term in extra_terms if term.strip())
    rules = _rule_set(terms)
    live = [
        HazardMatch(m.start(), m.end(), category, _phrase(text, m))
        for m, category in _longest_first(_candidates(text, rules))
        if not _cancelled(text, m)
    ]
    if live and _AFTERMATH.search(text) and all(_in_the_past(text, h) for h in live):
        return ()
    return tuple(live)


def detect_hazard(subject: str, body: str, extra_terms: Iterable[str] = ()) -> HazardFlag:
    """Flag a complaint that reports an urgent safety hazard; ``extra_terms`` add phrases.

    The reasons are the phrases found (as they read after normalising full-width characters
    and case), in order of appearance: the first of each kind of hazard, so a letter that
    names the same gas leak five ways shows it once. `find_hazards` gives every match.
    """
    first: dict[str, str] = {}
    for h in find_hazards(subject, body, extra_terms):
        first.setdefault(h.category if h.category != "extra" else h.phrase, h.phrase)
    reasons = tuple(dict.fromkeys(first.values()))
    return HazardFlag(bool(reasons), reasons)


def escalate(
    case: Case,
    actor: Actor,
    at: datetime,
    reasons: Sequence[str],
    deadlines: Deadlines,
    *,
    source: str = "",
    triage_due_by: datetime | None = None,
    due_by: datetime | None = None,
) -> bool:
    """A case found urgent after its registration (a repeat call about a gas leak, marked
    urgent by the operator, an urgent case merged into it): flagged urgent with ``reasons``
    added, and its running deadline brought forward to the urgent one counted from `at` (the
    triage deadline in triage; the handling deadline once it has a department and a deadline;
    never later than it was).

    ``source``: the tracking number of the urgent case merged into ``case`` (`Case.merge_into`),
    whose hazard was reported when it arrived, not at the merge: ``triage_due_by`` and
    ``due_by`` are its own running deadlines (dispatch while it waited for it, handling while a
    department had it), and ``case``'s are brought forward to them where later. With a
    ``source`` this is done even when ``case`` is urgent already (its urgent deadlines may run
    from a later report), adding the reasons it lacks.

    Event "flagged_urgent" {reasons, triage_due_at / due_at (ISO) when changed, source when
    given}. Returns False (nothing done) when the case was urgent already and, for a merge,
    has every reason and deadlines no later: its deadlines are the urgent ones."""
    if case.urgent and not source:
        return False
    added = [r for r in dict.fromkeys(reasons) if r and r not in case.urgent_reasons]
    became = not case.urgent
    changed: dict[str, str] = {}
    if case.status in (Status.RECEIVED, Status.TRIAGE):
        dues = [triage_due_by] if triage_due_by is not None else []
        if became:
            dues.append(deadlines.triage_due(at, True, kind=case.kind))
        if dues and (case.triage_due_at is None or min(dues) < case.triage_due_at):
            case.triage_due_at = min(dues)
            changed["triage_due_at"] = case.triage_due_at.isoformat()
    if case.due_at is not None and case.department is not None:
        dues = [due_by] if due_by is not None else []
        if became:
            dues.append(deadlines.handling_due(at, case.department.code, True, kind=case.kind))
        running = case.extended_to or case.due_at
        if dues and min(dues) < running:
            case.due_at = min(dues)
            case.extended_to = None
            changed["due_at"] = case.due_at.isoformat()
    if not (became or added or changed):
        return False
    case.urgent = True
    case.urgent_reasons = [*case.urgent_reasons, *added]
    if source:
        changed["source"] = source
    case.record("flagged_urgent", actor, at, reasons=list(reasons), **changed)
    return True
