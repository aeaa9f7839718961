"""Text as people really type it, made safe and comparable at the boundary.

Every channel passes what a citizen or an operator typed through these functions before it
is validated or stored: Unicode NFKC (full-width digits and letters become ASCII, so
``１３８００１３８０００`` is a phone number; Chinese punctuation such as ``，`` and ``！`` stays
as written), no control characters (NUL, ESC and the rest of C0 and C1 break HTML, CSV and
headers; a terminal escape sequence such as ESC[31m goes whole, parameters too) and no
bidirectional overrides (which make ``gpj.exe`` read as ``exe.jpg``). Line breaks and tabs in
free text stay.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "PhoneError",
    "clean_filename",
    "clean_line",
    "clean_text",
    "nfkc",
    "normalise_clean_phone",
    "normalise_phone",
]

# C0 and C1 controls but tab and line feed; DEL; the bidirectional embeddings, overrides and
# isolates; zero-width and BOM characters that hide inside identifiers.
# Also the characters that look like nothing (soft hyphen, Hangul and braille blanks, the
# Arabic letter mark, tag characters), which would let an empty complaint pass for text.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5"
    "\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\u2800\u3164\ufeff\uffa0"
    "\ufff9-\ufffb\U000e0000-\U000e007f]"
)
_LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x85]")
# Terminal escape sequences, with their parameters, which would be left as "[31m" if only
# the ESC went: CSI (ESC [ or U+009B, parameters, final letter), OSC and the other strings
# (ESC ] … ended by BEL, ESC \\ or the line), and short ones such as ESC ( B.
_ESCAPES = re.compile(
    "(?:\x1b\\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    "|\x1b[\\]PX^_][^\x07\x1b\n]{0,1024}(?:\x07|\x1b\\\\)?"
    "|\x1b[\x20-\x2f]{0,2}[\x30-\x7e]"
)


# The full-width punctuation of Chinese text (GB/T 15834), which NFKC would turn into ASCII.
_CHINESE_PUNCTUATION = "！，（）：；？～"
_KEEP = re.compile(f"([{_CHINESE_PUNCTUATION}])")


# What NFKC makes of each of them (one ASCII character).
_PUNCTUATION_NFKD = tuple((c, unicodedata.normalize("NFKD", c)) for c in _CHINESE_PUNCTUATION)


def nfkc(value: str) -> str:
    """Unicode NFKC (full-width letters and digits become ASCII), but Chinese punctuation
    (，！？：；（）～) stays as Chinese readers write it."""
    # Most text is NFKC already but for that punctuation: checked (quick), not normalised.
    if value.isascii() or unicodedata.is_normalized("NFKC", value):
        return value
    if not _KEEP.search(value):
        return unicodedata.normalize("NFKC", value)
    # Each punctuation mark as NFKC would make it: if that is NFKC, so is every part of the
    # text between the marks (an ASCII mark composes with nothing), which nfkc leaves as is.
    half = value
    for full, ascii_form in _PUNCTUATION_NFKD:
        if full in half:
            half = half.replace(full, ascii_form)
    if unicodedata.is_normalized("NFKC", half):
        return value
    return "".join(
        part if part in _CHINESE_PUNCTUATION else unicodedata.normalize("NFKC", part)
        for part in _KEEP.split(value)
    )


def clean_text(value: str) -> str:
    """`nfkc`, line breaks as ``\\n``, no control or bidi characters and no terminal escape
    sequences (``"\\x1b[31m红\\x1b[0m"`` → ``"红"``), outer white space gone."""
    if value and value.isascii() and value.isprintable():
        return value.strip()  # nothing to normalise, no line break, no control character
    value = _LINE_BREAKS.sub("\n", value or "")
    if "\x1b" in value or "\x9b" in value:
        value = _ESCAPES.sub("", value)
    return _UNSAFE.sub("", nfkc(value)).strip()


def clean_line(value: str) -> str:
    """As `clean_text`, for one-line fields: inner runs of white space become one space."""
    return " ".join(clean_text(value).split())


def clean_filename(name: str, fallback: str = "attachment") -> str:
    """A file name safe to store and to send back in a Content-Disposition header.

    Drops folders (``../../x`` → ``x``), control and bidi characters, and the characters
    Windows refuses; keeps Chinese. ``"a.png\\x00.html"`` → ``"a.png.html"``.
    """
    name = clean_line(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r'[<>:"|?*]', "_", name).strip(" .")
    if len(name) > 200:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: 199 - len(extension)] + "." + extension  # keep what the file is
        else:
            name = name[:200]
    return name or fallback


class PhoneError(ValueError):
    """Not a phone number; the message says why (English; the web layer has its own)."""


_EXTENSION = re.compile(r"\s*(?:转|分机|ext\.?|x|#|-)\s*(\d{1,6})\s*$", re.IGNORECASE)


def _has_main_number(digits: str) -> bool:
    """Whether `digits` (those before what reads as an extension) make a whole number: one
    with its area code or a mobile (10 or more digits), or a local number without its area
    code (7 or 8 digits, never starting 0 or 1), so that ``8765 4321 转 123`` and
    ``87654321-123`` have an extension while ``8765-4321`` and ``010-8765-4321`` do not."""
    return len(digits) >= 10 or (len(digits) in (7, 8) and digits[0] not in "01")


def normalise_phone(value: str) -> str:
    """A phone as typed → its canonical form, or PhoneError.

    Accepts a Chinese mobile (``138 0013 8000``, ``+86-138…``, full-width digits), a landline
    with or without area code (``010-8765 4321``, ``(0571)87654321``, ``87654321``,
    ``+86 10 8765 4321``) and with an extension (``010-87654321-8021``, ``…转8021``,
    ``8765 4321 转 123``, ``… ext. 123``, ``… x123``), a
    company's service number (``400-810-5678``), or an international number with its ``+``
    or ``00`` prefix (a trunk ``(0)`` after the country code is dropped). Returns digits only
    for Chinese numbers (``13800138000``, ``01087654321``, ``87654321``), an extension after
    a ``-`` (``01087654321-8021``, ``87654321-123``), and ``+`` and digits for others
    (``+442079460958``). The area code of a local number is not known here: who the caller
    is (triage/callers.py) adds the office's own.
    """
    return normalise_clean_phone(clean_line(value))


def normalise_clean_phone(text: str) -> str:
    """`normalise_phone` of a value `clean_line` gave already (a call import's cell, cleaned
    once): the same result without cleaning it again."""
    text = unicodedata.normalize("NFKC", text)
    if not text:
        raise PhoneError("empty")
    extension = ""
    found = _EXTENSION.search(text)
    if found and _has_main_number(re.sub(r"\D", "", text[: found.start()])):
        extension, text = found.group(1), text[: found.start()]
    if re.search(r"[^\d\s+\-().]", text):
        raise PhoneError("only digits, spaces, +, - and brackets")
    text = re.sub(r"^(\s*(?:\+|00)\s*\d{1,3})\s*\(0\)", r"\1", text)  # +44 (0)20 …
    digits = re.sub(r"\D", "", text)
    international = text.lstrip().startswith("+") or digits.startswith("00")
    if digits.startswith("00"):
        digits = digits[2:]
    if international and digits.startswith("86"):
        digits, international = digits[2:], False
        if not (len(digits) == 11 and digits[0] == "1") and not digits.startswith("0"):
            digits = "0" + digits  # +86 10 8765 4321: a landline written internationally
    elif re.fullmatch(r"861[3-9]\d{9}|01[3-9]\d{9}", digits):
        # A mobile as call records give it: 86 without its +, or with the trunk 0 a switch
        # shows for an out-of-town mobile (no area code starts 01 but Beijing's 010).
        digits = digits[-11:]
    if international:
        if not 7 <= len(digits) <= 15:
            raise PhoneError("an international number has 7 to 15 digits after the +")
        return "+" + digits + (f"-{extension}" if extension else "")
    if len(digits) == 11 and digits[0] == "1":
        if digits[1] not in "3456789":
            raise PhoneError("not a Chinese mobile number")
        if extension:
            raise PhoneError("a mobile number has no extension")
        return digits
    if len(digits) == 10 and digits.startswith(("400", "800")):
        return digits  # a company's service number
    if digits.startswith("0"):
        if not 10 <= len(digits) <= 12:
            raise PhoneError("a landline has a 3- or 4-digit area code and 7 or 8 digits")
        return digits + (f"-{extension}" if extension else "")
    if len(digits) in (7, 8) and digits[0] not in "01":
        return digits + (f"-{extension}" if extension else "")
    raise PhoneError("too few or too many digits for a phone number")
