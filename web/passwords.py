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
of it, `_name_pieces`), the username or the account's name, nor be made of words of those
names with only digits and symbols besides (`Efficiency2026!`); names in any case and in
leetspeak (`M1nsh3ng`, `0ff1ce`), as zxcvbn's own matching of user inputs reads them.

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
import re
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
    the config's ``[[departments]]``."""
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
        names += [d.name, d.name_en]
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


def _letters(word: str) -> str:
    """A regular expression of `word` that also matches its leetspeak (`_LEET`) and
    separators between its letters (`_INSIDE`)."""
    return _INSIDE.join(
        "[" + re.escape(c + _LEET[c]) + "]" if c in _LEET else re.escape(c) for c in word
    )


def _words_pattern(words: Sequence[str]) -> re.Pattern[str]:
    return re.compile(_BETWEEN.join(_letters(w) for w in words))


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
    symbols: a word or two characters of it (效能, xiaoneng). A name in English (or any
    other script): the whole name and each two neighbouring words of it (efficiency office,
    Transport Bureau); alone with digits and symbols: each word of four letters or more
    (Efficiency2026!)."""
    contained: list[_Piece] = []
    words: list[_Piece] = []
    syllables: list[str] = []
    inputs: list[str] = []
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
    username or a part of the account's `names` (display name); at least 4 different
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
    inputs = [*PRODUCT_NAMES, username, *parts, *pieces.inputs, *CHINESE_WORDS]
    forms = dict.fromkeys((password, fold_password(password)))
    for form in forms:
        _judge(form, username, parts, pieces, inputs)
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
    password: str, username: str, parts: list[str], pieces: _Names, inputs: list[str]
) -> None:
    """Raises WeakPassword if one form of a password breaks a rule of `check_password` but
    the length."""
    lowered = password.lower()
    if username and (lowered == username or (len(username) >= 3 and username in lowered)):
        raise WeakPassword(_("The password must not contain the username."))
    _judge_names("".join(lowered.split()), pieces)
    if any(part in lowered for part in parts):
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


def renew_session_token(user: User) -> None:
    """Invalidates every session and "stay signed in" cookie of `user` issued so far."""
    user.session_token = new_session_token()
