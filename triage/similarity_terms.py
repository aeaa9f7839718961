"""Word lists behind near-duplicate scoring (``triage.similarity``): letter boilerplate,
generic complaint words, place words and the problem/object concepts shared by Chinese and
English complaints.

Written by hand for citizen complaints; extend them here, not in the scoring code. Chinese
entries are matched after NFKC normalisation and lower-casing (so ``，`` is ``,``, ``！`` is
``!``); English entries are matched as whole stemmed words (see ``similarity._stem``), or as
the start of a word where they end in ``*``.
"""

from __future__ import annotations

import re


def words(text: str) -> frozenset[str]:
    """The white-space separated words of a list written as text."""
    return frozenset(text.split())


CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""Character class of the Chinese characters (CJK unified ideographs and extensions A)."""

_TITLES = "领导|市长|书记|局长|主任|区长|县长|镇长|同志|工作人员|负责人|政府|部门|单位"

OPENINGS = (
    # 尊敬的领导您好！ / 尊敬的书记、市长：你们好！ / 各位领导好，
    re.compile(
        rf"^\s*(?:尊敬的|敬爱的|亲爱的|各位)[^\n,.!:;。?]{{0,14}}?(?:{_TITLES})们?"
        r"[\s,:!、。]*(?:(?:您|你|大家)们?好)?[\s,:!。]*"
    ),
    re.compile(rf"^\s*(?:(?:{_TITLES}|您|你|大家)们?好)[\s,:!。]*"),
    re.compile(
        r"^\s*(?:dear|hello|hi|good (?:morning|afternoon|evening)|to whom it may concern)\b"
        r"[^\n,.!:]{0,40}[\n,.!:]\s*",
        re.IGNORECASE,
    ),
)
"""Greetings at the start of a letter, removed once each."""

SELF_INTRODUCTION = re.compile(
    r"(?:我|本人)(?:是|系|为)(?P<who>[^。!?;\n,]{0,30}?)"
    r"(?:业主|居民|住户|市民|村民|租户|家长|职工|员工|学生|群众|老百姓|老住户)(?:之一|了)?"
)
"""我是…小区的业主: replaced by what stands between (the estate, the building)."""

INTRODUCTION_FILLER = re.compile(r"住在|家住|一名|一位|一个|普通|的|了")

CLOSINGS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"此致\s*敬礼|此致",
        r"望(?:各位)?领导们?(?:高度)?重视",
        r"(?:恳|敬|特)请(?:各位)?领导们?",
        r"麻烦(?:各位)?领导们?(?:抽空)?(?:关注|看)一下",
        r"盼(?:复|回复)|期待(?:您的|你们的)?(?:回复|答复)",
        r"(?:万分|非常|十分|衷心)?感谢(?:您|你们|领导|各位领导)?(?:的关注|的支持|的帮助)?",
        r"谢谢(?:您|你们|领导|各位)?了?",
        r"以上(?:情况|内容|反映)(?:属实|真实)",
        r"给(?:我们)?(?:老百姓|群众|业主)一个(?:说法|交代)",
        r"一位关心此事的市民|一位普通市民",
        r"[(（]\s*来电记录\s*[)）]",
        rf"(?:市民|来电人|来电者|群众)[{CJK}]{{0,3}}?(?:反映|称|表示)",
        r"现(?:将|就)?反映一(?:个|下)?问题|反映一个问题",
        # English closing and the signature lines after it.
        r"(?:^|(?<=[\n.!?]))\s*(?:(?:best|kind|warm|many)\s+(?:regards|wishes|thanks)|regards"
        r"|yours\s+(?:sincerely|faithfully|truly)|sincerely|thank\s+you(?:\s+very\s+much)?"
        r"|thanks|cheers)\b[^\n]*(?:\n[^\n]{0,40}){0,2}\s*$",
        r"\bi(?: am|'m) (?:a |an )?(?:local )?(?:resident|owner|tenant|parent|student)s? "
        r"(?:of|in|at)\b",
        r"\bi am writing to (?:complain|report|inform you) (?:about|that)\b",
    )
)
"""Closings, requests and other set phrases of letters, removed wherever they stand."""

GENERIC_WORDS = words("""
    我们 你们 他们 她们 自己 已经 一直 没有 不能 不敢 可以 能够 现在 最近 每天 天天 晚上 早上 白天
    时候 问题 情况 反映 投诉 举报 希望 请求 要求 恳请 尽快 及时 处理 解决 部门 有关 相关 政府 领导
    重视 关注 帮助 帮忙 居民 市民 业主 住户 群众 百姓 小区 物业 严重 影响 生活 休息 安全 危险 隐患
    多次 好几 几次 很多 非常 特别 根本 实在 真的 到底 是否 为什么 什么 怎么 这个 那个 这样 一下 一些
    一个 还是 还有 但是 因为 所以 而且 如果 结果 然后 只能 只是 就是 不是 没人 没用 有人 大家 家里
    附近 周边 旁边 门口 对面 这里 那里 这条 那条 目前 一段 时间 个月 星期 礼拜 今年 去年 上个 这个月
    上周 前几天 几天 半个 多月 以后 以来 之后 开始 一下子 出来 起来 下来 进去 过来 说是 就说 不知道
    请问 是不是 有没有 能不能 管一管 查一查 看一看 执法 依法 查处 整改 督促 协调 落实 答复 回复
    几个 两个 三个 多个 各个 整个 这家 那家 一家 几家 该 其 整条 这段 那段 建议 一带 试点
    """)
"""Words of any complaint: their character bigrams count little."""

GENERIC_BIGRAMS = frozenset(w[i : i + 2] for w in GENERIC_WORDS for i in range(len(w) - 1))

FUNCTION_CHARACTERS = frozenset(
    "的了是在我你他她它们也都就还又把被给让着过吗呢啊吧呀么这那个住每很太没不说来年月边"
    "从到近靠往向于和与及或跟同进出去回条整段间离沿经跑走拉堆满"
)
"""Characters that do not occur in a place's name (they end the name read leftwards)."""

PLACE_WORDS = words("""
    小区 花园 家园 新村 新城 公寓 大厦 广场 农贸市场 批发市场 菜市场 市场 公园 大街 大道 街道 社区
    小学 中学 学校 幼儿园 医院 酒吧 清吧 超市 商场 商厦 饭店 餐馆 餐厅 酒店 网吧 工地 工业园 菜场
    药房 药店 大药房 公司 健身房 旅行社 中介 搅拌站 体育中心 图书馆 项目 名邸 景园 苑 园 府 湾 邸
    路 街 巷 村 镇 河 里 火锅店 烧烤店 ktv
    """)
"""Words after a name that make it a place: 锦江苑, 松涛路, 蓝调酒吧, 第五中学."""

PLACE_SIDES = frozenset("上口边旁段东西南北内外站")
"""路上, 路口: the place word with a side after it."""

NOT_PLACES = words(
    """
    跑路 马路 走路 道路 一路 出路 网路 线路 思路 套路 退路 让路 过路 带路 修路 夜路 山路 公路 铁路
    校园 果园 菜园 乐园 农村 乡村 上街 逛街 满街 沿街 过河 运河 拔河 夜里 家里 这里 那里 哪里 心里
    村里 店里 城里 车站 网站 加油站
    """
)
"""Words that end like a place but are none (跑路: to abscond, 马路: the road)."""

QUOTED = re.compile(r"[“\"「『《]([^”\"」』》\n]{1,16})[”\"」』》]")
BRACKETED = re.compile(rf"[(（]\s*([{CJK}]{{2,8}})\s*[)）]")

# A number starts where a run of digits starts and has at most six digits: unbounded runs
# made a text of digits cost quadratic time.
NUMBERED = (
    (re.compile(r"(?<!\d)(\d{1,6})\s*(?:号楼|栋|幢|号院)"), "b"),
    (re.compile(r"(?<!\d)(\d{1,6})\s*单元"), "u"),
    (re.compile(r"(?<!\d)(\d{1,6})\s*路"), "r"),
    (re.compile(r"(?<!\d)(\d{1,6})\s*号线"), "l"),
    (re.compile(r"(?<!\d)(\d{1,6})\s*号(?![楼线院])"), "h"),
    (re.compile(r"\b(?:building|block|tower|bldg\.?)\s*(?:no\.?\s*)?(\d{1,6})\b", re.I), "b"),
    (re.compile(r"\b(?:bus|route)\s*(?:no\.?\s*)?(\d{1,6})\b", re.I), "r"),
    (re.compile(r"\bline\s*(?:no\.?\s*)?(\d{1,6})\b", re.I), "l"),
)
"""Numbers that name something (building, entrance, bus route, metro line, house)."""

CLAUSE_START = re.compile(r"[,.!?;:，。！？；：\n]")
RESIDENCE = re.compile(r"住|我家|家在|\bi live\b|\bmy flat\b|\bmy home\b", re.IGNORECASE)
"""A clause that says where the writer lives: its numbers are the writer's home."""

ENGLISH_STOP = words("""
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just me
    more most my nor not now of off on once only or other our ours out over own same she should so
    some such than that the their them then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your yours
    yourself us get got go going please thank thanks hello dear sir madam regards best kind problem
    issue complaint complain report reported since week weeks month months day days every still
    already really someone anyone people city government department authority bureau resident
    residents live living need want ask asked help soon time times even many much lot one two
    three four five mr mrs ms dr monday tuesday wednesday thursday friday saturday sunday
    january february march april may june july august september october november december
    """)
"""English words that say nothing about the problem or the place."""

ENGLISH_FILLER = words("""
    like know tell let make made say said says told yes able sincerely faithfully look forward
    reply concern attention hope appreciate grateful writing write inform information thing
    things today yesterday last next year years ago morning evening night also
    """)
"""Letter filler besides ``ENGLISH_STOP``, left out of the words that group hot issues."""

ENGLISH_NOT_NAMES = words("""
    english chinese mandarin cantonese german swedish french british american canadian
    australian japanese korean russian indian italian spanish dutch foreign foreigner
    foreigners several
    """)
"""Capitalised English words that are no place's name (languages, nationalities …)."""

ENGLISH_REGIONS = words("district city county province region")
"""English words after the name of a whole region ("Minsheng District"): letters about
anything in it name it, so the pair of words counts little as a place."""

ENGLISH_ABBREVIATIONS = {"ave": "avenue", "st": "street", "rd": "road", "sq": "square"}

CONCEPTS: dict[str, tuple[str, ...]] = {
    # noise and night life
    "noise": ("噪音", "噪声", "吵", "扰民", "喧哗", "吼", "震", "noise", "noisy", "loud"),
    "music": (
        "音乐",
        "音响",
        "低音",
        "音箱",
        "驻唱",
        "唱歌",
        "乐队",
        "演出",
        "鼓",
        "music",
        "bass",
        "speaker",
        "sing",
    ),
    "bar": ("酒吧", "清吧", "bar", "pub"),
    "karaoke": ("ktv", "卡拉ok", "k歌", "karaoke"),
    "square_dance": ("广场舞", "square danc*"),
    "sleep": ("睡", "失眠", "sleep", "awake"),
    "night": ("半夜", "深夜", "凌晨", "夜里", "夜间", "通宵", "后半夜", "midnight", "night", "3am"),
    # streets and traffic
    "streetlight": ("路灯", "照明", "灯不亮", "streetlight", "street light", "lamp"),
    "dark": ("黑漆漆", "漆黑", "黑灯瞎火", "dark", "darkness"),
    "pothole": ("坑洼", "坑槽", "大坑", "深坑", "水坑", "pothole", "hole"),
    "road_surface": ("路面", "地砖", "road surface"),
    "sidewalk": ("人行道", "sidewalk", "pavement", "footpath"),
    "manhole": ("井盖", "窨井", "manhole"),
    "traffic": ("车道", "红绿灯", "信号灯", "交警", "超速", "traffic", "speeding"),
    "parking": ("停车", "乱停", "车位", "car park", "parking lot", "parking space"),
    "bike": ("单车", "自行车", "bike", "bicycle", "cycl*"),
    "ebike": ("电动车", "电瓶车", "e-bike", "scooter"),
    "bus": ("公交", "巴士", "bus", "route"),
    "bus_stop": ("站台", "公交站", "站点", "bus stop", "shelter"),
    "skip_stop": ("过站不停", "甩站", "不进站", "开过去", "skip", "drive past"),
    "wait": ("等车", "候车", "等了", "wait", "late", "timetable"),
    "metro": ("地铁", "号线", "metro", "subway", "underground"),
    "escalator": ("扶梯", "escalator"),
    "bridge": ("桥", "bridge"),
    "tree": ("树", "tree"),
    # buildings and estates
    "elevator": ("电梯", "lift", "elevator"),
    "trapped": ("困住", "被困", "困在", "困人", "关在里面", "trapped", "stuck"),
    "corridor": ("楼道", "楼梯口", "corridor", "stairwell"),
    "roof": ("楼顶", "屋顶", "顶楼", "roof"),
    "leak": ("渗水", "漏水", "渗漏", "leak"),
    "flood": ("积水", "淹", "泡水", "进水", "flood"),
    "illegal_building": ("违建", "违章", "彩钢房", "搭建", "illegal structure"),
    "rubble": ("建筑垃圾", "渣土", "rubble", "debris"),
    "gate": ("门禁", "access control"),
    "parcel": ("快递", "parcel", "delivery"),
    "property_fee": ("物业费", "management fee", "service charge"),
    "heating": ("暖气", "供暖", "供热", "热力", "heating", "radiator"),
    "cold": ("冻", "不热", "室温", "cold", "freez*"),
    "water_supply": (
        "停水",
        "供水",
        "自来水",
        "没水",
        "水龙头",
        "water supply",
        "tap water",
        "no water",
        "water cut",
    ),
    "rust": ("发黄", "铁锈", "锈", "rust", "brown"),
    "gas": ("燃气", "煤气", "天然气", "gas"),
    "sewage": ("化粪池", "下水道", "污水", "粪", "sewage", "sewer", "drain"),
    "garbage": ("垃圾", "清运", "rubbish", "garbage", "trash", "litter"),
    "smell": ("臭", "异味", "气味", "味道", "smell", "stink"),
    "rat": ("老鼠", "rat", "mice"),
    "dog": ("狗", "犬", "dog"),
    "poultry": ("鸡", "鸭", "chicken"),
    "vegetable_plot": ("种菜", "菜地", "vegetable"),
    "greenery": ("绿地", "绿化", "草坪", "lawn", "green space"),
    "theft": ("被盗", "被偷", "偷走", "stolen", "theft", "burglar"),
    # pollution
    "fumes": ("油烟", "排烟", "fume", "cooking smoke"),
    "construction": ("工地", "施工", "在建", "楼盘", "construction", "building site"),
    "piling": ("打桩", "混凝土", "浇筑", "pile", "concrete"),
    "dust": ("扬尘", "粉尘", "灰尘", "落灰", "一层灰", "dust"),
    "concrete_plant": ("搅拌站", "石料厂", "concrete plant", "quarry"),
    "river": ("河水", "河道", "河里", "river", "canal"),
    "pollution": ("排污", "偷排", "废水", "发黑", "死鱼", "污染", "pollut*", "discharge"),
    # safety
    "fire_exit": (
        "安全出口",
        "消防通道",
        "疏散通道",
        "fire exit",
        "emergency exit",
        "escape route",
    ),
    "fire": ("着火", "火灾", "起火", "消防", "fire"),
    "locked": ("锁", "lock", "chain"),
    "boxes": ("纸箱", "纸壳", "杂物", "box", "cardboard"),
    "hoarding": ("围挡", "hoarding"),
    # leisure
    "pool": ("游泳池", "泳池", "游泳馆", "swimming pool", "pool", "swim"),
    "gym": ("健身", "gym", "fitness"),
    "library": ("图书馆", "自习室", "library", "study room"),
    "wifi": ("wifi", "无线网", "热点", "断线", "hotspot"),
    "toilet": ("厕所", "卫生间", "toilet", "restroom"),
    "internet_cafe": ("网吧", "internet cafe"),
    "tour": ("旅行社", "旅游", "导游", "纯玩", "购物店", "tour", "travel agency"),
    # health and education
    "hospital": ("医院", "hospital"),
    "registration": ("挂号", "预约", "register", "registration", "appointment", "booking", "book"),
    "id_document": ("身份证", "护照", "passport", "id card", "id number"),
    "foreigner": ("外国", "外籍", "foreign", "foreigner"),
    "pharmacy": ("药房", "药店", "pharmacy", "drugstore"),
    "antibiotic": ("抗生素", "抗菌药", "头孢", "阿莫西林", "处方", "antibiotic", "prescription"),
    "supplement": ("保健品", "supplement"),
    "infection": ("手足口", "传染", "流感", "infectious", "infection"),
    "kindergarten": ("幼儿园", "kindergarten", "nursery"),
    "school": ("学校", "小学", "中学", "school"),
    "tutoring": ("补课", "补习", "tutoring", "tuition"),
    "canteen": ("食堂", "canteen", "cafeteria"),
    "minor": ("未成年", "初中生", "小学生", "minor", "underage", "teenager"),
    # money and work
    "wages": ("工资", "欠薪", "讨薪", "工钱", "薪水", "wage", "salary", "unpaid"),
    "fee": ("收费", "费", "fee", "charge"),
    "deposit": ("押金", "deposit"),
    "rent": ("租房", "退租", "房东", "landlord", "rent", "tenancy"),
    "prepaid": ("办卡", "储值卡", "会员卡", "跑路", "失联", "membership", "prepaid"),
    "scale": ("秤", "缺斤短两", "短斤少两", "scale", "short weight"),
    "market": ("菜市场", "农贸市场", "菜场", "market"),
    "restaurant": ("餐馆", "饭店", "餐厅", "火锅", "restaurant"),
    "shopping": ("购物", "强制消费", "shopping"),
    # more everyday topics
    "renovation": ("装修", "电钻", "电锤", "砸墙", "renovat*", "drill"),
    "load_bearing": ("承重墙", "墙面开裂", "裂缝", "crack", "load-bearing"),
    "pigeon": ("鸽子", "鸽", "pigeon"),
    "cat": ("流浪猫", "猫", "cat"),
    "stray": ("流浪", "stray"),
    "taxi": ("出租车", "的士", "网约车", "taxi", "cab"),
    "meter_fare": ("拒载", "不打表", "挑客", "拼车", "一口价", "meter", "refus*"),
    "bank": ("银行", "支行", "柜台", "bank"),
    "social_card": ("社保卡", "医保卡", "社保", "医保", "social security", "pension"),
    "ads": ("小广告", "牛皮癣", "广告", "flyer", "advert*", "poster"),
    "group_rental": ("群租", "隔断", "隔成", "sublet", "overcrowd*"),
    "basement": ("地下室", "basement", "cellar"),
    "playground": ("游乐设施", "滑梯", "秋千", "playground", "slide", "swing"),
    "utility_bill": ("水费", "电费", "燃气费", "水表", "电表", "bill", "meter read*"),
    "clinic": ("卫生服务站", "卫生服务中心", "诊所", "卫生室", "clinic", "health centre"),
    "party": ("派对", "聚会", "party", "dj"),
    "smoking": ("抽烟", "吸烟", "烟头", "smok*", "cigarette"),
    "fallen": ("倒伏", "倒下", "刮倒", "刮歪", "fallen", "fell", "blown down"),
    "cycle_path": ("自行车道", "非机动车道", "骑行道", "cycle path", "bike path", "bike lane"),
    "crossing": ("斑马线", "人行横道", "过马路", "crossing", "crosswalk", "zebra"),
    "school_bus": ("校车", "school bus"),
    "food_safety": ("变质", "过期", "食物中毒", "发霉", "expired", "food poisoning", "mould"),
    "power": ("停电", "断电", "跳闸", "power cut", "blackout", "electricity"),
    "broadband": ("宽带", "网速", "信号", "broadband", "signal"),
    "refund": ("退款", "退费", "退钱", "要不回", "refund"),
    "hygiene": ("脏", "卫生差", "浑浊", "发绿", "dirty", "filthy", "unhygienic"),
    "chemical": ("消毒水", "氯", "化学", "chlorine", "chemical"),
    "stall": ("摊贩", "摊位", "早点摊", "夜市", "占道经营", "street vendor", "stall"),
    "tricycle": ("三轮车", "tricycle"),
    "wire": ("电线", "私拉", "乱拉", "飞线", "wiring", "cable"),
    "gas_cylinder": ("煤气罐", "液化气", "气罐", "gas cylinder", "lpg"),
    "traffic_light": (
        "红绿灯",
        "信号灯",
        "绿灯",
        "traffic light",
        "green light",
        "pedestrian light",
    ),
    "sound_insulation": ("隔音", "soundproof*"),
}
"""Problems and objects: the same concept whether written in Chinese or English."""

PLACE_CONCEPTS = words(
    "bar karaoke internet_cafe restaurant market hospital pharmacy kindergarten school library"
    " metro bus roof"
)
"""Concepts that are mostly the kind of place complained about, not the problem: they count
less than the others (``similarity._CONCEPT_PLACE_WEIGHT``)."""

ATTRIBUTE_CONCEPTS = words(
    "night sleep smell dark wait fee cold locked boxes trapped theft foreigner hygiene refund stray"
)
"""Concepts that describe a problem rather than name it (it happens at night, it smells):
different problems at one place share them, so they count less
(``similarity._CONCEPT_ATTRIBUTE_WEIGHT``)."""
