"""One password policy and one way to set a password, for every place that sets one: the
web form, `minsheng user add` and `minsheng user set-password`.

Passwords are compared in their NFKC form: `１２３４５６７８９０` typed with a Chinese input
method's full-width mode is `1234567890`, so the policy judges it as that, the hash is of
that, and sign-in accepts either width. (Hashes stored before this were of the password as
typed; `candidates` lets those still sign in.)

Setting a password also renews the account's session token, so every session and "stay
signed in" cookie issued before stops working (a changed password shuts out whoever had it).
"""

from __future__ import annotations

import unicodedata

from flask_babel import gettext as _
from werkzeug.security import generate_password_hash

from triage.models import User, new_session_token

MIN_LENGTH = 10
MAX_LENGTH = 200
MIN_DISTINCT = 4

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


def check_password(password: str, username: str = "") -> None:
    """Raises WeakPassword unless `password` follows the policy: 10 to 200 characters, not
    built on the username, at least 4 different characters, not a run of the keyboard or the
    alphabet, not a well-known weak password. Judged on the NFKC forms of both."""
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
    if len(set(lowered)) < MIN_DISTINCT:
        raise WeakPassword(_("Use at least %(n)d different characters, please.", n=MIN_DISTINCT))
    if lowered in _COMMON or any(lowered in seq or lowered in seq[::-1] for seq in _SEQUENCES):
        raise WeakPassword(_("This password is too easy to guess; choose another."))


def hash_password(password: str) -> str:
    """The stored form of a password: werkzeug's default (scrypt) of its NFKC form."""
    return generate_password_hash(normalise_password(password))


def set_password(user: User, password: str) -> None:
    """Checks the policy, stores the new hash and signs the account out everywhere.

    Raises WeakPassword (nothing changed) if the password breaks the policy.
    """
    check_password(password, user.username)
    user.password_hash = hash_password(password)
    renew_session_token(user)


def renew_session_token(user: User) -> None:
    """Invalidates every session and "stay signed in" cookie of `user` issued so far."""
    user.session_token = new_session_token()
