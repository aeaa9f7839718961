"""Masking of personal data where the public, external supervisors or exports look.

Two kinds of personal data are masked in free text:

- the complainant's own name, phone and email, wherever they appear (a letter signed with
  the name, the phone repeated in the body, a reply that quotes the email);
- anything that looks like a Chinese mobile or landline number, an 18-digit ID-card number,
  an international number or an email address, as people really write them: with spaces,
  hyphens, dots or brackets between the digits, a ``+86`` / ``0086`` prefix, full-width
  digits (``１３８…``) or a full-width ``＠``, internationalised domains and non-ASCII local
  parts (``张伟@例子.中国``).

Masking keeps enough to recognise a number one already knows (``138****5678``) and never
enough to recover one: the middle digits of a phone, twelve digits of an ID card, everything
but the first character of an email's local part.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "People",
    "mask_email",
    "mask_name",
    "mask_phone",
    "mask_text",
    "masked_case_text",
    "phone_digits",
]

# A run of digits (any script's: Python's \d matches full-width ones) with at most three
# separators between neighbours, optionally led by + or ＋. Weak separators join the parts
# of one number (138 0013 8000); strong ones may also separate two numbers
# (13800138000/13900139000), so a run with them is judged part by part first.
_WEAK_SEPARATORS = (
    " \t\n\r\u00a0\u2007\u202f\u3000-\u2010\u2011\u2012\u2013\u2014\u2212\uff0d"
    ".\u00b7()\uff08\uff09_~\uff5e"
)
_STRONG_SEPARATORS = "/\u3001,\uff0c;\uff1b"
_STRONG = re.compile("[" + re.escape(_STRONG_SEPARATORS) + "]")
_NUMBER = re.compile(
    r"(?<!\d)(?<!\d[.,])[+\uff0b]?\d(?:["
    + re.escape(_WEAK_SEPARATORS + _STRONG_SEPARATORS)
    + r"]{0,3}\d){4,40}(?:[Xx\uff38\uff58])?(?!\d)"
)
_PHONE_WORDS = re.compile(
    r"(?:电话|手机|座机|联系|致电|拨打|来电|号码|热线|tel|phone|mobile|call|fax|传真|"
    r"whatsapp|微信|wechat|qq)[^\d\n]{0,6}$",
    re.IGNORECASE,
)
_ACCOUNT_WORDS = re.compile(r"(?:qq|微信|wechat|vx|wx)[^\d\n]{0,6}$", re.IGNORECASE)
# Country codes of Hong Kong, Macao and Taiwan, often written without the +.
_NEAR_COUNTRIES = ("852", "853", "886")
# Local part: anything but white space, @ and the punctuation that surrounds addresses in
# running text; domain: labels of letters or digits of any script, joined by dots or 。.
# Every repeat is bounded (RFC 5321's lengths), so the cost stays linear in the text's
# length: unbounded runs made a long word without spaces cost seconds.
_EMAIL = re.compile(
    r"[^\s@\uff20<>()（）\[\]{},，;；:：\"'“”‘’「」『』《》、]{1,64}"
    r"[ \t]?[@\uff20][ \t]?"
    r"(?:[\w\-]{1,63}[ \t]?[.\u3002\uff0e][ \t]?){1,8}[^\W\d_]{2,24}(?![^\W\d_])",
)
_MASK = "*"


def _digits(text: str) -> str:
    """The digits of ``text`` as ASCII (full-width ones too), and a final X of an ID card."""
    out = []
    for ch in text:
        if ch.isdigit():
            out.append(str(unicodedata.digit(ch, 0)))
        elif ch in "Xx\uff38\uff58":
            out.append("X")
    return "".join(out)


def phone_digits(phone: str) -> str:
    """A phone as typed → its digits (ASCII), without a +86 / 0086 / 86 prefix on a mobile.

    ``"+86 139-1234-5678"`` → ``"13912345678"``; ``"(010) 8765 4321"`` → ``"01087654321"``.
    """
    digits = _digits(unicodedata.normalize("NFKC", phone)).replace("X", "")
    for prefix in ("0086", "86"):
        rest = digits[len(prefix) :]
        if digits.startswith(prefix) and len(rest) == 11 and rest.startswith("1"):
            return rest
    return digits


def mask_name(name: str) -> str:
    """王小明 → 王**, John Smith → J***."""
    name = name.strip()
    if not name:
        return ""
    return name[0] + _MASK * max(1, min(len(name) - 1, 3))


def _mask_digits(digits: str) -> str:
    """At least four digits hidden, and never more than the first three and last four shown."""
    n = len(digits)
    if n < 7:
        return _MASK * n
    if n in (15, 17, 18):  # an ID card: the region code stays, birth date and serial go
        return digits[:6] + _MASK * (n - 6)
    if n > 18:  # several numbers run together, or a card number: nothing to recognise
        return digits[:3] + _MASK * (n - 3)
    head = 3 if n >= 11 else 0
    tail = min(4, n - head - 4)
    return digits[:head] + _MASK * (n - head - tail) + digits[n - tail :]


def mask_phone(phone: str) -> str:
    """13912345678 → 139****5678, in whatever form the phone was typed."""
    return _mask_digits(phone_digits(phone))


def mask_email(email: str) -> str:
    """zhang.wei@example.cn → z***@example.cn."""
    email = email.strip()
    at = max(email.rfind("@"), email.rfind("\uff20"))
    if at <= 0:
        return mask_name(email) if email else ""
    return email[0] + "***" + email[at:]


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# An address's local part, or the masked form of one (j***) put in by the citizen's own rule.
_ASCII_TAIL = re.compile(r"[A-Za-z0-9._%+\-]+\**$")


def _mask_found_email(m: re.Match[str]) -> str:
    """An address found in running text; Chinese run into an ASCII address (邮箱lisi@qq.com)
    is the sentence, not the address."""
    found = m.group(0)
    at = max(found.rfind("@"), found.rfind("\uff20"))
    local = found[:at]
    if _CJK.search(local):
        tail = _ASCII_TAIL.search(local)
        if tail and tail.start() > 0:
            return local[: tail.start()] + mask_email(found[tail.start() :])
    return mask_email(found)


def _is_id_card(digits: str) -> bool:
    return len(digits) == 18 and digits[:17].isdigit() and digits[6:8] in ("18", "19", "20")


def _personal_number(digits: str, context: str, international: bool) -> bool:
    """Whether a run of digits in text is a phone, account or ID-card number worth masking."""
    bare = digits.replace("X", "")
    if "X" in digits:
        return _is_id_card(digits)
    national = phone_digits(bare)
    if len(national) == 11 and national[0] == "1" and national[1] in "3456789":
        return True  # mobile
    if national.startswith("0") and 10 <= len(national) <= 12:
        return True  # landline with area code
    if len(bare) >= 15 or (international and len(bare) >= 8):
        return True  # ID card, bank card, international number: never shown
    if bare.startswith(_NEAR_COUNTRIES) and 11 <= len(bare) <= 13:
        return True  # Hong Kong, Macao, Taiwan without the +
    if 5 <= len(bare) <= 12 and _ACCOUNT_WORDS.search(context):
        return True  # QQ or WeChat number
    # A local landline or foreign number that the text calls a phone.
    return 7 <= len(bare) <= 14 and bool(_PHONE_WORDS.search(context))


_BRACKETS = "()\uff08\uff09"


def _keep_brackets(raw: str, masked: str) -> str:
    """``masked`` (one character per digit of ``raw``) with the brackets of ``raw`` in their
    places: a number matched from its first digit ends before the text's "(" and takes the
    ")" after the area code with it, which left the text with a bracket never closed."""
    closers = raw.count(")") + raw.count("\uff09")
    openers = raw.count("(") + raw.count("\uff08")
    if closers <= openers or len(_digits(raw)) != len(masked):
        return masked
    out, digits = [], iter(masked)
    for ch in raw:
        if ch in _BRACKETS:
            out.append(ch)
        elif _digits(ch):
            out.append(next(digits))
    return "".join(out)


def _mask_numbers(text: str, own_phones: frozenset[str], generic: bool = True) -> str:
    def is_own(bare: str) -> bool:
        # Written with a prefix (+86 …, 0086 …) the text's number ends with the stored one;
        # written as a local number (8765 4321 for 01087654321) the stored one ends with it.
        return bool(own_phones) and (
            phone_digits(bare) in own_phones
            or any(bare.endswith(p) or (len(bare) >= 7 and p.endswith(bare)) for p in own_phones)
        )

    def masked(raw: str, context: str) -> str | None:
        """The masked form of one number, or None when it is not personal."""
        digits = _digits(raw)
        bare = digits.replace("X", "")
        international = raw[:1] in "+\uff0b"
        if not is_own(bare) and not (generic and _personal_number(digits, context, international)):
            return None
        if "X" in digits:
            return _mask_digits(digits)
        national = phone_digits(bare)
        prefix = "+" if international and national == bare else ""
        return prefix + _keep_brackets(raw, _mask_digits(national))

    def replace(m: re.Match[str]) -> str:
        raw = m.group(0)
        context = text[max(0, m.start() - 12) : m.start()]
        if _STRONG.search(raw):
            # Two numbers in a list (13800138000/13900139000), or one written with commas.
            pieces = _STRONG.split(raw)
            separators = _STRONG.findall(raw)
            done = [masked(p, context) if _digits(p) else None for p in pieces]
            if any(d is not None for d in done):
                out = [d if d is not None else p for p, d in zip(pieces, done, strict=True)]
                return "".join(
                    part + (separators[i] if i < len(separators) else "")
                    for i, part in enumerate(out)
                )
        whole = masked(raw, context)
        return raw if whole is None else whole

    return _NUMBER.sub(replace, text)


# Two-character surnames, whose bearers' given names start at the third character.
_COMPOUND_SURNAMES = frozenset(
    [
        "欧阳",
        "司马",
        "上官",
        "诸葛",
        "东方",
        "皇甫",
        "尉迟",
        "公孙",
        "慕容",
        "令狐",
        "长孙",
        "宇文",
        "司徒",
        "夏侯",
        "轩辕",
        "端木",
        "澹台",
        "闻人",
        "南宫",
        "万俟",
        "独孤",
        "钟离",
        "赫连",
        "申屠",
        "太史",
        "濮阳",
        "呼延",
        "西门",
        "第五",
        "公羊",
        "左丘",
        "拓跋",
        "百里",
        "东郭",
    ]
)
# The middle dot of transcribed names (阿卜杜·热合曼) in its many look-alikes.
_NAME_DOTS = "·•・‧∙⋅.．・ "
_CJK_NAME = re.compile(r"[\u3400-\u9fff]")
# Between two characters of a Chinese name in running text: nothing, spaces, a line break,
# or a middle dot of any kind.
_CJK_GAP = "[\\s" + re.escape(_NAME_DOTS) + "]{0,2}"


def _name_parts(name: str) -> list[str]:
    """The complainant's name and the parts of it that identify them on their own."""
    name = " ".join(unicodedata.normalize("NFKC", name).split())
    if not name:
        return []
    parts = [name]
    if _CJK_NAME.search(name):
        words = [w for w in re.split("[" + re.escape(_NAME_DOTS) + "]+", name) if w]
        compact = "".join(words)
        parts.append(compact)
        if len(words) > 1:
            parts += [w for w in words if len(w) >= 2]  # 阿卜杜·热合曼 → 阿卜杜, 热合曼
        elif len(compact) >= 3:
            surname = 2 if compact[:2] in _COMPOUND_SURNAMES else 1
            if len(compact) - surname >= 2:
                parts.append(compact[surname:])  # the given name: 王小明 → 小明
    else:
        # Surname and given names, not initials ("E. Lindqvist" → "Lindqvist").
        parts += [p.strip(".,") for p in re.split(r"[\s.,]+", name) if len(p.strip(".,")) >= 3]
    return sorted({p for p in parts if len(p) >= 2}, key=len, reverse=True)


def _name_pattern(part: str) -> str:
    if _CJK_NAME.search(part):
        chars = [re.escape(c) for c in part if c not in _NAME_DOTS]
        return _CJK_GAP.join(chars)
    return r"(?<![^\W\d_])" + re.escape(part).replace(r"\ ", r"\s+") + r"(?![^\W\d_])"


# What the name pattern lets stand between two characters: white space (\s is str.isspace,
# all below U+3001) and the dots.
_GAPS = str.maketrans(
    dict.fromkeys([chr(i) for i in range(0x3001) if chr(i).isspace()] + list(_NAME_DOTS))
)


def _may_occur(part: str, squeezed: str) -> bool:
    """False when ``part`` cannot match in a text whose gaps are removed (``squeezed``): a
    Chinese name matches with at most two gap characters between its characters, so without
    gaps its characters stand together. Only for parts whose characters have no case (the
    pattern ignores case); others may always occur. Spares compiling a pattern for every
    complainant's name, which cost more than the rest of the masking."""
    if not _CJK_NAME.search(part):
        return True
    chars = [c for c in part if c not in _NAME_DOTS]
    if any(c.lower() != c or c.upper() != c for c in chars):
        return True
    return "".join(chars) in squeezed


def _mask_names(text: str, names: Iterable[str]) -> str:
    squeezed = ""
    for name in names:
        for part in _name_parts(name):
            squeezed = squeezed or text.translate(_GAPS)
            if not _may_occur(part, squeezed):
                continue
            text = re.sub(
                _name_pattern(part),
                lambda m: mask_name(re.sub(r"\s", "", m.group(0))),
                text,
                flags=re.IGNORECASE,
            )
            squeezed = ""  # the text changed
    return text


# The extension of a stored phone (`intake.normalise.normalise_phone`: 01087654321-8021).
_STORED_EXTENSION = re.compile(r"-\s*\d{1,6}\s*$")


def _own_numbers(phones: Iterable[str]) -> Iterable[str]:
    """The digits of each of a citizen's ``phones``, and of its main number when it has an
    extension: a text gives the main number alone (白天打8765 4321) or with the extension
    after 转, which is no number of its own."""
    for phone in phones:
        yield phone_digits(phone)
        extension = _STORED_EXTENSION.search(phone)
        if extension:
            yield phone_digits(phone[: extension.start()])


def mask_text(
    text: str,
    *,
    names: Iterable[str] = (),
    phones: Iterable[str] = (),
    emails: Iterable[str] = (),
    generic: bool = True,
) -> str:
    """Masks personal data inside free text (see the module's docstring).

    ``names``, ``phones`` and ``emails`` are the complainants' own: masked wherever they
    appear, in any spacing or width. With ``generic`` (the default: observers, exports,
    anyone who is not the complainant), anything that looks like a phone, ID-card number or
    email address is masked too, whoever it belongs to; without it (a complainant reading
    the office's reply) only the given people's data is, so an office number stays readable.
    """
    if not text:
        return text
    own_phones = frozenset(d for d in _own_numbers(phones) if len(d) >= 5)
    for email in emails:
        email = email.strip()
        # Its pattern needs an @ or ＠ in the text: spare compiling it otherwise.
        if email and ("@" in text or "\uff20" in text):
            pattern = r"[ \t]?[@\uff20][ \t]?".join(re.escape(p) for p in email.split("@", 1))
            text = re.sub(pattern, mask_email(email), text, flags=re.IGNORECASE)
    if generic and ("@" in text or "\uff20" in text):
        text = _EMAIL.sub(_mask_found_email, text)
    text = _mask_numbers(text, own_phones, generic)
    return _mask_names(text, names)


@dataclass(frozen=True)
class People:
    """The citizens whose personal data a text may carry: their names (with those given on
    later calls), phones and emails, each once, empty ones left out. `|` joins two sets of
    people; `mask` masks them all in a text (`mask_text`)."""

    names: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, names: Iterable[str] = (), phones: Iterable[str] = (), emails: Iterable[str] = ()
    ) -> People:
        def kept(values: Iterable[str]) -> tuple[str, ...]:
            return tuple(dict.fromkeys(v for v in values if v and v.strip()))

        return cls(kept(names), kept(phones), kept(emails))

    def __or__(self, other: People) -> People:
        return People.of(
            (*self.names, *other.names),
            (*self.phones, *other.phones),
            (*self.emails, *other.emails),
        )

    def __sub__(self, other: People) -> People:
        """These people but the data of `other` (a notice's reader: their own stays)."""
        return People(
            tuple(n for n in self.names if n not in other.names),
            tuple(p for p in self.phones if p not in other.phones),
            tuple(e for e in self.emails if e not in other.emails),
        )

    def mask(self, text: str, *, generic: bool = True) -> str:
        """`text` with these people's data masked (``generic``: as `mask_text`)."""
        return mask_text(
            text, names=self.names, phones=self.phones, emails=self.emails, generic=generic
        )


def masked_case_text(
    subject: str,
    body: str,
    name: str,
    phone: str,
    email: str,
    other_names: Iterable[str] = (),
    *,
    replies: Iterable[str] = (),
    people: People | None = None,
) -> str:
    """Subject, body and the replies that went out (`Case.sent_replies`' bodies), as masked
    views show them: all that observers may search. ``other_names``: the names the caller
    gave on later calls (`Case.caller_names`); ``people``: the other citizens whose data the
    case's texts may carry (`triage.case_people`: those of the cases merged with it or
    linked to it). Subject first: its first line is the title masked views show. Each reply
    is masked on its own, as the case page shows it."""
    everyone = People.of([name, *other_names], [phone], [email]) | (people or People())
    text = everyone.mask(f"{subject}\n{body}")
    for reply in replies:
        text += "\n" + everyone.mask(reply)
    return text
