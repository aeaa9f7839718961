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
office's name, the username or the account's name.

zxcvbn knows English: `woaini1314520`, `zhangwei1990` and `Huawei@123` look random to it.
So it is also given `CHINESE_WORDS` (and the office's and account's names), and each rule
judges a second, folded form too (`fold_password`: lower case, no spaces, `!@#…` as the
digits they are shifted from, Chinese numerals as digits), so `1qaz@WSX3edc`, `wo ai ni` and
`一二三四五六七八九十` count as what they are; the weaker verdict of the two forms stands.

Setting a password also renews the account's session token, so every session and "stay
signed in" cookie issued before stops working (a changed password shuts out whoever had it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from flask import current_app, has_app_context
from flask_babel import gettext as _
from werkzeug.security import generate_password_hash
from zxcvbn import zxcvbn

from triage.models import Role, User, new_session_token
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


def _office_pieces(office: Sequence[str]) -> tuple[list[str], list[str]]:
    """What of the office's names a password may not contain (each name without spaces, and
    each run of `OFFICE_PIECE` characters of a name in Chinese), and the words of its names
    for zxcvbn's dictionary."""
    refused: list[str] = []
    words: list[str] = []
    for name in office:
        folded = "".join(normalise_password(name).lower().split())
        if not folded:
            continue
        refused.append(folded)
        if re.search(r"[\u3400-\u9fff]", folded):
            refused += [folded[i : i + OFFICE_PIECE] for i in range(len(folded) - OFFICE_PIECE + 1)]
        words += [w for w in re.split(r"[\W_]+", normalise_password(name).lower()) if len(w) >= 3]
    return refused, words


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
) -> None:
    """Raises WeakPassword unless `password` follows the policy: 10 to 200 characters, not
    containing the system's name (`PRODUCT_NAMES`), the office's name or 4 characters of it
    (`office`, by default `office_names()`), the username or a part of the account's `names`
    (display name), at least 4 different characters, not a well-known weak password, and
    strong by zxcvbn (score `MIN_SCORE` or more). Judged on the NFKC form and on the folded
    form (`fold_password`); either one failing refuses the password."""
    password = normalise_password(password)
    if len(password) < MIN_LENGTH:
        raise WeakPassword(_("At least %(n)d characters, please.", n=MIN_LENGTH))
    if len(password) > MAX_LENGTH:
        raise WeakPassword(_("At most %(n)d characters, please.", n=MAX_LENGTH))
    username = normalise_password(username).strip().lower()
    parts = [p for n in names for p in _name_parts(normalise_password(n))]
    refused, office_words = _office_pieces(office_names() if office is None else office)
    inputs = [*PRODUCT_NAMES, username, *parts, *office_words, *CHINESE_WORDS]
    for form in dict.fromkeys((password, fold_password(password))):
        _judge(form, username, parts, refused, inputs)


def _judge(
    password: str, username: str, parts: list[str], office: list[str], inputs: list[str]
) -> None:
    """Raises WeakPassword if one form of a password breaks a rule of `check_password` but
    the length."""
    lowered = password.lower()
    if username and (lowered == username or (len(username) >= 3 and username in lowered)):
        raise WeakPassword(_("The password must not contain the username."))
    for product in PRODUCT_NAMES:
        if product in lowered:
            raise WeakPassword(
                _("The password must not contain the name of this system (%(name)s).", name=product)
            )
    for piece in office:
        if piece in lowered:
            raise WeakPassword(
                _("The password must not contain the name of this office (%(name)s).", name=piece)
            )
    if any(part in lowered for part in parts):
        raise WeakPassword(_("The password must not contain the account's name."))
    if len(set(lowered)) < MIN_DISTINCT:
        raise WeakPassword(_("Use at least %(n)d different characters, please.", n=MIN_DISTINCT))
    if lowered in _COMMON or any(lowered in seq or lowered in seq[::-1] for seq in _SEQUENCES):
        raise WeakPassword(_("This password is too easy to guess; choose another."))
    result = zxcvbn(password[:JUDGED_LENGTH], user_inputs=inputs)
    if int(result["score"]) < MIN_SCORE:
        raise WeakPassword(_weakness(result))


def hash_password(password: str) -> str:
    """The stored form of a password: werkzeug's default (scrypt) of its NFKC form."""
    return generate_password_hash(normalise_password(password))


def set_password(user: User, password: str) -> None:
    """Checks the policy, stores the new hash and signs the account out everywhere.

    Raises WeakPassword (nothing changed) if the password breaks the policy.
    """
    check_password(password, user.username, [user.display_name or ""])
    user.password_hash = hash_password(password)
    renew_session_token(user)


def renew_session_token(user: User) -> None:
    """Invalidates every session and "stay signed in" cookie of `user` issued so far."""
    user.session_token = new_session_token()
