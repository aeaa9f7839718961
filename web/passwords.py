"""One password policy and one way to set a password, for every place that sets one: the
web form, `minsheng user add` and `minsheng user set-password`.

Passwords are compared in their NFKC form: `１２３４５６７８９０` typed with a Chinese input
method's full-width mode is `1234567890`, so the policy judges it as that, the hash is of
that, and sign-in accepts either width. (Hashes stored before this were of the password as
typed; `candidates` lets those still sign in.)

Strength is judged by zxcvbn (Dropbox's estimator, in Python): it finds keyboard runs with
a few characters added (`asdfghjkl;`, `zaq12wsxcde`), counting, dates, repeats and common
passwords and words, where a hand-kept list catches only what it lists. A password must
score `MIN_SCORE` (about 10^8 guesses) or more, and may not contain the system's name, the
office's or a department's name (in Chinese, in pinyin, in English: the whole name or a piece
of it, `_name_pieces`, and the short name it goes by, 住建 or zhujian for 住房和城乡建设局,
`_short_names`), the username or the account's name (周敏, and in pinyin zhoumin, Zhou.Min,
minzhou: `_spoken_names`), nor be made of words of those names with only digits and symbols
besides (`Efficiency2026!`); names in any case and in leetspeak (`M1nsh3ng`, `0ff1ce`), as
zxcvbn's own matching of user inputs reads them.

zxcvbn knows English: `woaini1314520`, `zhangwei1990` and `Huawei@123` look random to it.
So it is also given `CHINESE_WORDS` (and the office's and account's names), and each rule
judges a second, folded form too (`fold_password`: lower case, no spaces, `!@#…` as the
digits they are shifted from, Chinese numerals as digits), so `1qaz@WSX3edc`, `wo ai ni` and
`一二三四五六七八九十` count as what they are; the weaker verdict of the two forms stands.

Setting a password also renews the account's session token, so every session and "stay
signed in" cookie issued before stops working (a changed password shuts out whoever had it).
"""

from __future__ import annotations

import functools
import itertools
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rjieba
from flask import current_app, has_app_context
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session
from werkzeug.security import generate_password_hash
from zxcvbn import zxcvbn

from triage.models import Department, Role, User, new_session_token
from web.settings import AppSettings, ConfigError, load_settings

MIN_LENGTH = 10
MAX_LENGTH = 200
MIN_DISTINCT = 4
# zxcvbn's score 0-4: 3 is "safely unguessable" (about 10^8 guesses and more).
MIN_SCORE = 3
# zxcvbn refuses longer input (its cost grows with the length); what follows is judged no more.
JUDGED_LENGTH = 72
# The system's own names: the first words an attacker of this office would try.
PRODUCT_NAMES = ("minsheng", "民声", "民聲")

# Runs a password may not be a piece of: counting, the alphabet, keyboard rows and columns.
_SEQUENCES = (
    "01234567890123456789",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "1q2w3e4r5t6y7u8i9o0p",
)
# Well-known weak passwords of 10 or more characters (shorter ones fail on length anyway),
# from the lists of most common passwords, Chinese ones among them.
_COMMON = frozenset(
    {
        "password123",
        "password1234",
        "password12345",
        "passw0rd123",
        "p@ssw0rd123",
        "iloveyou123",
        "woaini1314",
        "woaini521520",
        "5201314520",
        "1314520520",
        "aa123456789",
        "a123456789",
        "abc1234567",
        "abcd123456",
        "abc123456789",
        "qq123456789",
        "admin12345",
        "admin123456",
        "administrator",
        "welcome123",
        "letmein123",
        "changeme123",
        "football123",
        "baseball123",
        "superman123",
        "1234567890a",
        "123456789a",
        "123456789abc",
        "zxcvbnm123",
        "qwerty12345",
        "qwerty123456",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "zaq12wsxcde3",
        "minsheng123",
        "minsheng2026",
    }
)


# Words of Chinese users' passwords that zxcvbn's English lists lack, most common first (zxcvbn
# ranks a user input by its place). From the published analyses of the leaked Chinese password
# sets (CSDN, Tianya, 12306, 2011-2014; e.g. Li, Han and Xu, "A Large-Scale Empirical Analysis
# of Chinese Web Passwords", USENIX Security 2014): love numbers (520 "I love you", 1314 "for
# ever"), pinyin phrases, the most common full names and surnames, big brands and cities, and
# keyboard fragments; then this system's role names, which an attacker of it would try first.
CHINESE_WORDS = (
    "woaini",
    "5201314",
    "1314",
    "520",
    "aini",
    "woaiwojia",
    "wodemima",
    "mima",
    "admin",
    "root",
    "qwer",
    "asdf",
    "zxcv",
    "1qaz",
    "2wsx",
    "3edc",
    "zaq1",
    "xsw2",
    "cde3",
    "zhangwei",
    "wangwei",
    "wangfang",
    "liwei",
    "lina",
    "zhangmin",
    "lijing",
    "wangjing",
    "liuwei",
    "wangxiuying",
    "zhangli",
    "zhang",
    "wang",
    "chen",
    "yang",
    "huang",
    "zhao",
    "zhou",
    "liu",
    "sun",
    "zhu",
    "guo",
    "lin",
    "laopo",
    "laogong",
    "baobei",
    "woshishui",
    "nihao",
    "zhongguo",
    "china",
    "huawei",
    "xiaomi",
    "tencent",
    "baidu",
    "beijing",
    "shanghai",
    "guangzhou",
    "shenzhen",
    "tianjin",
    *(role.value for role in Role),
    "head",
)
# Chinese numerals typed for digits (十 as 0, as on a keyboard's digit row after 9).
_NUMERALS = str.maketrans("零〇一二三四五六七八九十壹贰叁肆伍陆柒捌玖拾", "0012345678901234567890")
# The symbols over the digit row, shifted for "a symbol, please": `1qaz@WSX` is `1qaz2wsx`.
_SHIFTED_DIGITS = str.maketrans("!@#$%^&*()", "1234567890")
# Runs of this many characters of the office's Chinese name are refused (效能建设 of
# 民声区机关效能建设办公室): two-character pieces are common words, four are the office.
OFFICE_PIECE = 4
# A letter of any script (what a password built on one word has none of around it).
_LETTER = re.compile(r"[^\W\d_]")


class WeakPassword(ValueError):
    """The password breaks the policy; str() is the reason, in the user's language."""


def normalise_password(password: str) -> str:
    """The form of a password that is judged and hashed: NFKC (full-width is half-width)."""
    return unicodedata.normalize("NFKC", password)


def candidates(password: str) -> list[str]:
    """What to check a typed password against a stored hash as: its NFKC form and, if that
    differs, the password as typed (hashes stored before passwords were normalised)."""
    normal = normalise_password(password)
    return [normal] if normal == password else [normal, password]


def fold_password(password: str) -> str:
    """The password as an attacker's rules would try it: NFKC, lower case, without spaces,
    the symbols over the digit row as their digits and Chinese numerals as digits."""
    folded = "".join(normalise_password(password).lower().split())
    return folded.translate(_SHIFTED_DIGITS).translate(_NUMERALS)


def same_password(one: str, other: str) -> bool:
    """Whether two passwords are one for the rule "a new password, not the current one":
    equal once folded (`fold_password`: case, spaces anywhere, `!@#` for `123`) and without
    diacritics. An administrator's password with a space or a capital added stays known to
    the administrator."""

    def key(password: str) -> str:
        folded = unicodedata.normalize("NFKD", fold_password(password))
        return "".join(c for c in folded if not unicodedata.combining(c))

    return key(one) == key(other)


def office_names() -> tuple[str, str]:
    """The office's Chinese and English names (`app.office_name`, `app.office_name_en`):
    of the running app, else of the config file a command reads, else the defaults."""
    if has_app_context() and "minsheng" in current_app.extensions:
        app = current_app.extensions["minsheng"].settings.app
    else:
        try:
            app = load_settings().app
        except ConfigError:
            app = AppSettings()
    return app.office_name, app.office_name_en


def department_names(session: Session | None = None) -> list[str]:
    """The departments' names, Chinese and English: of the database when a session is at
    hand (the request's, or `session`: departments an administrator added too), and of
    the config's ``[[departments]]`` with their ``short_names``."""
    names: list[str] = []
    if session is None and has_app_context() and "minsheng" in current_app.extensions:
        from web import db

        session = db()
    if session is not None:
        for name, name_en in session.execute(select(Department.name, Department.name_en)):
            names += [name or "", name_en or ""]
    if has_app_context() and "minsheng" in current_app.extensions:
        configured = current_app.extensions["minsheng"].settings.departments
    else:
        try:
            configured = load_settings().departments
        except ConfigError:
            configured = []
    for d in configured:
        names += [d.name, d.name_en, *d.short_names]
    return list(dict.fromkeys(n for n in names if n and n.strip()))


# What a letter is written as in leetspeak (zxcvbn's table): m1nsh3ng is minsheng.
_LEET = {
    "a": "4@",
    "b": "8",
    "c": "(<{[",
    "e": "3",
    "g": "69",
    "i": "1!|",
    "l": "1|7",
    "o": "0",
    "s": "$5",
    "t": "+7",
    "x": "%",
    "z": "2",
}
# Words of a name that name nothing on their own: never a piece to refuse.
_STOP_WORDS = frozenset({"and", "the", "for", "of", "to", "in", "on", "at"})
_CJK = re.compile(r"[\u3400-\u9fff]")
_SHORTEST_NAME = 5
# What may stand between the words of a name in a password (Efficiency-Office, efficiency.office).
_BETWEEN = r"[\W_]{0,3}"


# What may stand between the letters of one word of a name (Min-Sheng, m.i.n.s.h.e.n.g, 民-声).
_INSIDE = r"[\W_]{0,2}"
# The fewest letters of a name in pinyin refused (of two syllables or more): lina (李娜) and
# lilei (李雷) are, li or min alone (of 李敏) are not: one syllable is in too many passwords.
SHORTEST_SPOKEN_NAME = 4
# A department's short name (住建, zhujian) is refused anywhere in a password from this many
# letters of pinyin on; shorter, only when the password is made of it and digits or symbols.
SHORTEST_SPOKEN_SHORT_NAME = 5
# Surnames of two characters (欧阳娜娜: surname 欧阳, given name 娜娜).
_COMPOUND_SURNAMES = frozenset(
    re.findall(
        "..",
        "欧阳司马上官诸葛东方皇甫尉迟公孙慕容令狐长孙宇文司徒夏侯轩辕端木独孤"
        "南宫西门百里呼延澹台申屠钟离闻人万俟赫连司空太史公羊拓跋左丘第五",
    )
)
# Surnames read otherwise than their character's usual reading (lazy_pinyin's): both are tried.
_SURNAME_READINGS = {
    "曾": "zeng",
    "单": "shan",
    "仇": "qiu",
    "解": "xie",
    "朴": "piao",
    "查": "zha",
    "区": "ou",
    "乐": "yue",
    "盖": "ge",
    "覃": "qin",
    "缪": "miao",
    "翟": "zhai",
    "召": "shao",
    "任": "ren",
    "华": "hua",
    "纪": "ji",
    "宁": "ning",
    "沈": "shen",
    "贾": "jia",
    "薄": "bo",
    "柏": "bai",
    "尉迟": "yu chi",
    "万俟": "mo qi",
    "长孙": "zhang sun",
}
# What a district's name ends in (民声区): a department's name may begin with it.
_REGION_END = "区县市省州旗"
# The words a unit's name ends in, longest first: what its short name leaves out.
_UNIT_WORDS = (
    "委员会",
    "办公室",
    "办事处",
    "管委会",
    "分局",
    "大队",
    "支队",
    "中队",
    "中心",
    "局",
    "委",
    "办",
    "所",
    "站",
    "处",
    "科",
    "厅",
    "部",
    "署",
    "院",
    "队",
    "室",
    "组",
    "股",
)
# The words joining the matters of a unit (住房和城乡建设, 商务与文化旅游): one letter each.
_CONJUNCTIONS = frozenset("和与及")


def _letters(word: str) -> str:
    """A regular expression of `word` that also matches its leetspeak (`_LEET`) and
    separators between its letters (`_INSIDE`)."""
    return _INSIDE.join(
        "[" + re.escape(c + _LEET[c]) + "]" if c in _LEET else re.escape(c) for c in word
    )


def _words_pattern(words: Sequence[str]) -> re.Pattern[str]:
    return re.compile(_BETWEEN.join(_letters(w) for w in words))


def _syllables(text: str) -> list[str]:
    """The pinyin of `text`, a syllable a character, lower case: 住建 is ["zhu", "jian"]."""
    from pypinyin import lazy_pinyin  # loads its dictionary: only when a password is judged

    return [s.lower() for s in lazy_pinyin(text)]


def _spoken_pattern(syllables: Sequence[str]) -> re.Pattern[str]:
    """A regular expression of pinyin `syllables` in a password (lower case, without tone
    marks): leetspeak and separators as `_words_pattern` allows, ü as v or u (wenlv, wenlu),
    but not where the syllables are only the start of longer ones or the end of one: renshe
    (人社) is not in rensheng (人生), zhujian (住建) not in zhujiang (珠江), anjian (安监) not in
    lianjian."""
    body = _BETWEEN.join(
        _INSIDE.join("[vu]" if c == "v" else _letters(c) for c in syllable)
        for syllable in syllables
    )
    first, last = syllables[0][:1], syllables[-1][-1:]
    before = "(?<![a-z])" if first in ("a", "e", "o") else ""
    after = "(?!g)" if last == "n" else "(?!n)" if last in "aeiouv" else ""
    return re.compile(before + body + after)


def _name_readings(run: str) -> list[list[str]]:
    """The ways a Chinese name `run` (two characters or more) is written in pinyin, each as
    its syllables: surname and given name in either order, the given name alone when it has
    two syllables or more, with the surname's other reading (`_SURNAME_READINGS`): 王小明 is
    wangxiaoming, xiaomingwang and xiaoming. A run longer than four characters is no
    person's name: only the whole of it."""
    whole = _syllables(run)
    if len(run) > 4:
        return [whole]
    surname = run[:2] if len(run) > 2 and run[:2] in _COMPOUND_SURNAMES else run[:1]
    given = _syllables(run[len(surname) :])
    surnames = [_syllables(surname)]
    if surname in _SURNAME_READINGS:
        surnames.append(_SURNAME_READINGS[surname].split())
    readings = [whole]
    for spoken in surnames:
        readings += [[*spoken, *given], [*given, *spoken]]
    if len(given) >= 2:
        readings.append(given)
    return readings


@functools.lru_cache(maxsize=64)
def _spoken_names(names: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """The account's names (display names: 周敏, 督查科 周敏) in pinyin as a password may not
    hold them, each as (its syllables joined, its pattern): every run of two Chinese
    characters or more read as a name (`_name_readings`), of `SHORTEST_SPOKEN_NAME` letters
    or more."""
    found: dict[str, re.Pattern[str]] = {}
    for name in names:
        for run in re.findall(r"[\u3400-\u9fff]{2,}", normalise_password(name)):
            for syllables in _name_readings(run):
                if len("".join(syllables)) >= SHORTEST_SPOKEN_NAME:
                    found.setdefault("".join(syllables), _spoken_pattern(syllables))
    return tuple(found.items())


def _districts(office: Sequence[str]) -> list[str]:
    """The district of the office's Chinese names, with and without its last word (民声区 and
    民声 of 民声区机关效能建设办公室), longest first; none for a name without one."""
    found: list[str] = []
    for name in office:
        normal = "".join(normalise_password(name).split())
        if m := re.match(rf"^([\u3400-\u9fff]{{1,5}}?[{_REGION_END}])", normal):
            found += [m.group(1), m.group(1)[:-1]] if len(m.group(1)) > 2 else [m.group(1)]
    return sorted(dict.fromkeys(found), key=len, reverse=True)


def _short_names(name: str, districts: Sequence[str]) -> list[str]:
    """The short names a Chinese unit's name `name` (NFKC, no spaces) goes by: a name in
    brackets (安监 of 区应急管理局（安监）), and the first character of its words, without the
    district's and region's words before (区, 民声区: `districts`) and the unit's after (局,
    委员会, 办公室: `_UNIT_WORDS`): 城管 of 区城市管理局, 卫健 of 区卫生健康委员会. A name of
    matters joined by 和/与/及 gives one character of each matter, the first of its first or of
    its last word (住建 and 住城 of 住房和城乡建设, 人社 of 人力资源和社会保障), and a matter of
    two words or more its own (文旅 of 商务和文化旅游). Only Chinese of two characters or more;
    none for a name of one word (教育, 港务)."""
    shorts = [s for s in re.findall(r"\(([^()]*)\)", name) if len(s) >= 2 and _CJK.search(s)]
    core = re.sub(r"\([^()]*\)", "", name)
    while True:
        before = core
        for district in districts:
            if core.startswith(district) and len(core) > len(district):
                core = core[len(district) :]
            if core.endswith(district) and len(core) > len(district):
                core = core[: -len(district)]
        # 区 of 区住房…, not 市 of 市场监督管理局: only a word of its own.
        if len(core) > 1 and core[0] in _REGION_END and rjieba.cut(core)[0] == core[0]:
            core = core[1:]
        for unit in _UNIT_WORDS:
            if core.endswith(unit) and len(core) > len(unit) + 1:
                core = core[: -len(unit)]
                break
        if core == before:
            break
    parts: list[list[str]] = [[]]
    for word in rjieba.cut(core):
        if word in _CONJUNCTIONS:
            parts.append([])
        elif _CJK.match(word):
            # 人力资源 is 人力 and 资源: a word of four characters is two.
            parts[-1] += [word[:2], word[2:]] if len(word) == 4 else [word]
    parts = [p for p in parts if p]
    for words in parts:
        if len(words) >= 2:
            shorts.append("".join(w[0] for w in words))
    if len(parts) >= 2:
        choices = [dict.fromkeys((words[0][0], words[-1][0])) for words in parts]
        for combination in itertools.islice(itertools.product(*choices), 8):
            shorts.append("".join(combination))
    return list(dict.fromkeys(s for s in shorts if len(s) >= 2))


@dataclass(frozen=True)
class _Piece:
    """A piece of the office's or a department's name: `shown` in the message, `pattern`
    matching it in a password (lower case; leetspeak and separators allowed)."""

    kind: str  # "office" or "department"
    shown: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class _Names:
    """What of the names a password may not contain (`contained`), may not be made of with
    only digits and symbols besides (`words`, with the single characters and syllables of
    the Chinese names, `syllables`: 效能办 is 效能 and 办), and the words zxcvbn is given."""

    contained: tuple[_Piece, ...]
    words: tuple[_Piece, ...]
    syllables: tuple[re.Pattern[str], ...]
    inputs: tuple[str, ...]


def _pinyin(text: str) -> str:
    from pypinyin import lazy_pinyin  # loads its dictionary: only when a password is judged

    return "".join(lazy_pinyin(text)).lower()


@functools.lru_cache(maxsize=16)
def _name_pieces(office: tuple[str, ...], departments: tuple[str, ...]) -> _Names:
    """The pieces of the office's and the departments' names a password may not hold.

    A name in Chinese: the whole name and each run of `OFFICE_PIECE` characters of it, in
    characters and in pinyin (机关效能建设办公室, 效能建设, xiaonengjianshe), each two
    neighbouring words of it in pinyin (jiguanxiaonengjianshe); alone with digits and
    symbols: a word or two characters of it (效能, xiaoneng); its short names (`_short_names`:
    住建, zhujian) anywhere when their pinyin has `SHORTEST_SPOKEN_SHORT_NAME` letters or
    more, else alone with digits and symbols. A name in English (or any
    other script): the whole name and each two neighbouring words of it (efficiency office,
    Transport Bureau); alone with digits and symbols: each word of four letters or more
    (Efficiency2026!)."""
    contained: list[_Piece] = []
    words: list[_Piece] = []
    syllables: list[str] = []
    inputs: list[str] = []
    districts = _districts(office)
    for kind, names in (("office", office), ("department", departments)):
        for name in names:
            normal = " ".join(normalise_password(name).lower().split())
            if not normal:
                continue
            if _CJK.search(normal):
                folded = normal.replace(" ", "")
                runs = [folded[i : i + OFFICE_PIECE] for i in range(len(folded) - OFFICE_PIECE + 1)]
                parts = [w for w in rjieba.cut(folded) if w.strip()]
                pairs = ["".join(parts[i : i + 2]) for i in range(len(parts) - 1)]
                for piece in dict.fromkeys([folded, *runs]):
                    contained.append(_Piece(kind, piece, _words_pattern([piece])))
                    contained.append(
                        _Piece(kind, f"{piece} {_pinyin(piece)}", _words_pattern([_pinyin(piece)]))
                    )
                for pair in dict.fromkeys(pairs):
                    contained.append(
                        _Piece(kind, f"{pair} {_pinyin(pair)}", _words_pattern([_pinyin(pair)]))
                    )
                short = [w for w in parts if len(w) >= 2]
                short += [folded[i : i + 2] for i in range(len(folded) - 1)]
                for word in dict.fromkeys(short):
                    words.append(_Piece(kind, word, _words_pattern([word])))
                    if len(spoken := _pinyin(word)) >= 4:
                        words.append(_Piece(kind, f"{word} {spoken}", _words_pattern([spoken])))
                        inputs.append(spoken)
                for char in folded:
                    if _CJK.match(char):
                        syllables += [char, _pinyin(char)]
                for short in _short_names(folded, districts):
                    spoken = _syllables(short)
                    shown = f"{short} {''.join(spoken)}"
                    words.append(_Piece(kind, short, _words_pattern([short])))
                    if len("".join(spoken)) >= 4:
                        words.append(_Piece(kind, shown, _spoken_pattern(spoken)))
                        inputs.append("".join(spoken))
                    if len("".join(spoken)) >= SHORTEST_SPOKEN_SHORT_NAME:
                        contained.append(_Piece(kind, short, _words_pattern([short])))
                        contained.append(_Piece(kind, shown, _spoken_pattern(spoken)))
                continue
            parts = [w for w in re.split(r"[\W_]+", normal) if w and w not in _STOP_WORDS]
            # A name or pair of fewer letters (IT, HR) is in too many passwords to refuse.
            if len("".join(parts)) >= _SHORTEST_NAME:
                contained.append(_Piece(kind, name.strip(), _words_pattern(parts)))
            for i in range(len(parts) - 1):
                pair = parts[i : i + 2]
                if len("".join(pair)) >= _SHORTEST_NAME:
                    contained.append(_Piece(kind, " ".join(pair), _words_pattern(pair)))
            for word in parts:
                if len(word) >= 3:
                    inputs.append(word)
                if len(word) >= 4:
                    words.append(_Piece(kind, word, _words_pattern([word])))
    # Longest first: what is left of a password once they are taken out is what counts.
    words.sort(key=lambda p: -len(p.pattern.pattern))
    singles = sorted(dict.fromkeys(syllables), key=len, reverse=True)
    return _Names(
        tuple(contained),
        tuple(words),
        tuple(_words_pattern([c]) for c in singles),
        tuple(dict.fromkeys(inputs)),
    )


def _made_of_names(bare: str, names: _Names) -> _Piece | None:
    """The first word of a name `bare` (a password, lower case, no spaces) holds, when it
    holds no letter but those of words and syllables of the names (`_Names.words`,
    `_Names.syllables`): Efficiency2026!, DistrictOffice#88, xiaonengban2026. Else None."""
    first: _Piece | None = None
    rest = bare
    for piece in names.words:
        if piece.pattern.search(rest):
            first = first or piece
            rest = piece.pattern.sub(" ", rest)
    if first is None:
        return None
    for syllable in names.syllables:
        rest = syllable.sub(" ", rest)
    return None if _LETTER.search(rest) else first


def _name_parts(name: str) -> list[str]:
    """The pieces of an account's display name worth refusing in a password: each word of
    three or more letters, and each run of two or more Chinese characters (周敏 of 督查科 周敏)."""
    parts = []
    for word in re.split(r"[\s\-_.·,，]+", name.lower()):
        if re.fullmatch(r"[\u3400-\u9fff]+", word):
            if len(word) >= 2:
                parts.append(word)
        elif len(word) >= 3:
            parts.append(word)
    return parts


def _weakness(result: dict[str, Any]) -> str:
    """Why zxcvbn found a password weak, in the user's language: the longest guessable
    piece it found (a keyboard run, counting, a date, a repeat, a common word)."""
    pieces = [m for m in result.get("sequence", []) if m.get("pattern") != "bruteforce"]
    if not pieces:
        return _("This password is too easy to guess: make it longer, with less usual words.")
    piece = max(pieces, key=lambda m: len(m.get("token", "")))
    token = piece.get("token", "")
    pattern = piece.get("pattern")
    if pattern == "spatial":
        return _(
            "This password is too easy to guess: %(part)s is a run of neighbouring keys.",
            part=token,
        )
    if pattern == "sequence":
        return _(
            "This password is too easy to guess: %(part)s is counting or the alphabet.",
            part=token,
        )
    if pattern == "repeat":
        return _("This password is too easy to guess: %(part)s repeats itself.", part=token)
    if pattern == "date":
        return _("This password is too easy to guess: %(part)s is a date.", part=token)
    return _(
        "This password is too easy to guess: %(part)s is a common password or word.",
        part=token,
    )


def check_password(
    password: str,
    username: str = "",
    names: Sequence[str] = (),
    office: Sequence[str] | None = None,
    departments: Sequence[str] | None = None,
) -> None:
    """Raises WeakPassword unless `password` follows the policy: 10 to 200 characters, not
    containing the system's name (`PRODUCT_NAMES`), the office's name (`office`, by default
    `office_names()`) or a department's (`departments`, by default `department_names()`)
    or a piece of one (`_name_pieces`: 4 characters of a Chinese name, their pinyin, two
    words of an English name), nor made of one word of those names with only digits and
    symbols around it; each in any case and in leetspeak (M1nsh3ng); not containing the
    username or a part of the account's `names` (display name), nor a Chinese name of them in
    pinyin (`_spoken_names`: zhoumin, Zhou.Min, minzhou of 周敏); at least 4 different
    characters, not a well-known weak password, and strong by zxcvbn (score `MIN_SCORE` or
    more). Judged on the NFKC form and on the folded form (`fold_password`); either one
    failing refuses the password."""
    password = normalise_password(password)
    if len(password) < MIN_LENGTH:
        raise WeakPassword(_("At least %(n)d characters, please.", n=MIN_LENGTH))
    if len(password) > MAX_LENGTH:
        raise WeakPassword(_("At most %(n)d characters, please.", n=MAX_LENGTH))
    username = normalise_password(username).strip().lower()
    parts = [p for n in names for p in _name_parts(normalise_password(n))]
    pieces = _name_pieces(
        tuple(office_names() if office is None else office),
        tuple(department_names() if departments is None else departments),
    )
    spoken = _spoken_names(tuple(names))
    inputs = [*PRODUCT_NAMES, username, *parts, *(s for s, _ in spoken), *pieces.inputs]
    inputs += CHINESE_WORDS
    forms = dict.fromkeys((password, fold_password(password)))
    for form in forms:
        _judge(form, username, parts, spoken, pieces, inputs)
    for named in dict.fromkeys(n for form in forms for n in _name_forms(form)):
        _judge_names(named, pieces)


def _name_forms(password: str) -> list[str]:
    """The forms of a password the name rules also judge (lower case, no spaces): without
    diacritics (mínshēng is minsheng: pinyin with its tone marks), and with its Chinese
    characters as their pinyin, so that a name in traditional characters (效能建設) or
    written with homophones counts as the name's pinyin (xiaonengjianshe). The separators
    between a name's letters (Min-Sheng, 民-声) are the patterns' (`_letters`)."""
    lowered = unicodedata.normalize("NFKD", password.lower())
    plain = unicodedata.normalize(
        "NFKC", "".join(c for c in lowered if not unicodedata.combining(c) and not c.isspace())
    )
    if not _CJK.search(plain):
        return [plain]
    from pypinyin import lazy_pinyin  # loads its dictionary: only for a Chinese password

    return [plain, "".join(lazy_pinyin(plain)).lower()]


def _judge(
    password: str,
    username: str,
    parts: list[str],
    spoken: tuple[tuple[str, re.Pattern[str]], ...],
    pieces: _Names,
    inputs: list[str],
) -> None:
    """Raises WeakPassword if one form of a password breaks a rule of `check_password` but
    the length. `spoken` is the account's names in pinyin (`_spoken_names`)."""
    lowered = password.lower()
    if username and (lowered == username or (len(username) >= 3 and username in lowered)):
        raise WeakPassword(_("The password must not contain the username."))
    _judge_names("".join(lowered.split()), pieces)
    if any(part in lowered for part in parts) or any(
        pattern.search(named) for named in _name_forms(lowered) for _, pattern in spoken
    ):
        raise WeakPassword(_("The password must not contain the account's name."))
    if len(set(lowered)) < MIN_DISTINCT:
        raise WeakPassword(_("Use at least %(n)d different characters, please.", n=MIN_DISTINCT))
    if lowered in _COMMON or any(lowered in seq or lowered in seq[::-1] for seq in _SEQUENCES):
        raise WeakPassword(_("This password is too easy to guess; choose another."))
    result = zxcvbn(password[:JUDGED_LENGTH], user_inputs=inputs)
    if int(result["score"]) < MIN_SCORE:
        raise WeakPassword(_weakness(result))


def _judge_names(bare: str, pieces: _Names) -> None:
    """Raises WeakPassword if `bare` (a form of a password, lower case, no spaces) holds the
    system's name or a piece of the office's or a department's (`_name_pieces`), or is made
    of their words with digits and symbols only; the message names the name found."""
    for product in PRODUCT_NAMES:
        if re.search(_letters(product), bare):
            raise WeakPassword(
                _("The password must not contain the name of this system (%(name)s).", name=product)
            )
    for piece in pieces.contained:
        if piece.pattern.search(bare):
            if piece.kind == "office":
                raise WeakPassword(
                    _(
                        "The password must not contain the name of this office (%(name)s).",
                        name=piece.shown,
                    )
                )
            raise WeakPassword(
                _(
                    "The password must not contain the name of a department (%(name)s).",
                    name=piece.shown,
                )
            )
    if (word := _made_of_names(bare, pieces)) is not None:
        raise WeakPassword(
            _(
                "The password is made of the name of this office or of a department "
                "(%(name)s) with only digits or symbols besides: add words of your own.",
                name=word.shown,
            )
        )


def hash_password(password: str) -> str:
    """The stored form of a password: werkzeug's default (scrypt) of its NFKC form."""
    return generate_password_hash(normalise_password(password))


def set_password(user: User, password: str) -> None:
    """Checks the policy, stores the new hash and signs the account out everywhere.

    Raises WeakPassword (nothing changed) if the password breaks the policy.
    """
    session = object_session(user)
    departments = department_names(session) if session is not None else None
    check_password(password, user.username, [user.display_name or ""], departments=departments)
    user.password_hash = hash_password(password)
    renew_session_token(user)


def draw_password() -> str:
    """16 random URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def set_generated_password(user: User) -> str:
    """Sets a random password (16 URL-safe characters) that the policy accepts and returns
    it, to be shown once. A random token breaks the policy about once in 100,000 draws (a
    short name of a department inside it: wenlv); another is drawn."""
    while True:
        generated = draw_password()
        try:
            set_password(user, generated)
            return generated
        except WeakPassword:
            continue


def renew_session_token(user: User) -> None:
    """Invalidates every session and "stay signed in" cookie of `user` issued so far."""
    user.session_token = new_session_token()
