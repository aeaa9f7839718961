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
username or the account's name.

Setting a password also renews the account's session token, so every session and "stay
signed in" cookie issued before stops working (a changed password shuts out whoever had it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from flask_babel import gettext as _
from werkzeug.security import generate_password_hash
from zxcvbn import zxcvbn

from triage.models import User, new_session_token

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


def check_password(password: str, username: str = "", names: Sequence[str] = ()) -> None:
    """Raises WeakPassword unless `password` follows the policy: 10 to 200 characters, not
    containing the system's name (`PRODUCT_NAMES`), the username or a part of the account's
    `names` (display name), at least 4 different characters, not a well-known weak password,
    and strong by zxcvbn (score `MIN_SCORE` or more). Judged on the NFKC forms of all."""
    password = normalise_password(password)
    username = normalise_password(username)
    if len(password) < MIN_LENGTH:
        raise WeakPassword(_("At least %(n)d characters, please.", n=MIN_LENGTH))
    if len(password) > MAX_LENGTH:
        raise WeakPassword(_("At most %(n)d characters, please.", n=MAX_LENGTH))
    lowered = password.lower()
    name = username.strip().lower()
    if name and (lowered == name or (len(name) >= 3 and name in lowered)):
        raise WeakPassword(_("The password must not contain the username."))
    for product in PRODUCT_NAMES:
        if product in lowered:
            raise WeakPassword(
                _("The password must not contain the name of this system (%(name)s).", name=product)
            )
    parts = [p for n in names for p in _name_parts(normalise_password(n))]
    if any(part in lowered for part in parts):
        raise WeakPassword(_("The password must not contain the account's name."))
    if len(set(lowered)) < MIN_DISTINCT:
        raise WeakPassword(_("Use at least %(n)d different characters, please.", n=MIN_DISTINCT))
    if lowered in _COMMON or any(lowered in seq or lowered in seq[::-1] for seq in _SEQUENCES):
        raise WeakPassword(_("This password is too easy to guess; choose another."))
    result = zxcvbn(password[:JUDGED_LENGTH], user_inputs=[*PRODUCT_NAMES, name, *parts])
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
