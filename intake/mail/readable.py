"""Whether a mail's case text is text a person can read: the measurable criterion.

Used by bench/bench_mail_readable.py (the share of real mail that comes out readable) and by
the tests. `unreadable_reason` names the first fault found, or returns "" for readable text:

- ``empty``: nothing but white space;
- ``replacement character``: U+FFFD, bytes no charset was found for;
- ``control or private-use character``: C0/C1 controls other than tab and line feed, or
  private-use characters (what GBK's user-defined area and wrong Big5 guesses give);
- ``Latin-1 mojibake``: UTF-8 shown as Latin-1 or Windows-1252 (``Ã©``, ``â€™``, ``ä¸­``:
  a lead byte as a letter followed by a continuation byte), or GBK shown so: four or more
  Latin-1 letters and signs in a row, not all one sign and not × or ÷ (``ÄãºÃ`` is 你好);
  no European word has that many together;
- ``mojibake marker``: ``锟斤拷`` (UTF-8's replacement character read as GBK), ``烫烫烫``
  and ``屯屯屯`` (uninitialised memory shown as GBK);
- ``rare hanzi``: ten or more hanzi of which fewer than half are common in GB2312 or Big5
  (UTF-8 read as GBK or the wrong one of GBK and Big5 gives rare characters);
- ``undecoded encoding``: an RFC 2047 word ``=?…?=``, a run of quoted-printable escapes, or
  a base64 block (120 characters of its alphabet, in both cases and with digits);
- ``terminal escape remnant``: ``[31m``, ``[0m``, ``]0;``, a colour escape whose ESC went;
- ``MIME scaffolding``: a part header (``Content-Type:``) or a boundary line (not a rule
  of dashes);
- ``HTML markup``: tags or entities left from an HTML part;
- ``mostly symbols``: under 90 % printable ASCII, letters, digits, punctuation, white space
  and the signs of ordinary text (× ° ℃ ￥); other symbols (box drawing, geometric shapes,
  emoji) count against.
"""

from __future__ import annotations

import re
import unicodedata

from intake.mail.charset import BIG5, GB, plausibility

__all__ = ["unreadable_reason"]

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ue000-\uf8ff\U000f0000-\U0010ffff]")
_CONTINUATION = (
    "\u0080-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039"
    "\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a"
    "\u0153\u017e\u0178"
)
# A UTF-8 lead byte as a Windows-1252 letter, then a continuation byte as Windows-1252 shows it
_UTF8_AS_LATIN1 = re.compile(f"[\u00c2-\u00f4][{_CONTINUATION}]")
_LATIN1_RUN = re.compile("[\u00a1-\u00d6\u00d8-\u00f6\u00f8-\u00ff]{4,}")
_MARKERS = ("锟斤拷", "烫烫烫", "屯屯屯")
_HANZI = re.compile("[\u4e00-\u9fff]")
_ENCODED = re.compile(r"=\?[\w.:-]+\?[bBqQ]\?[^?\s]*\?=|(?:=[0-9A-F]{2}){6}")
# Base64: a long run of its alphabet with capitals, small letters and digits (a hex string,
# a long number or a word is not).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{120,}={0,2}")
_SCAFFOLDING = re.compile(
    r"^(?:Content-(?:Type|Transfer-Encoding|Disposition)[ \t]*:"
    r"|--(?=[=_A-Za-z0-9.'()+,/:?-]*[^-\s])[=_A-Za-z0-9.'()+,/:?-]{12,}$)",
    re.M | re.IGNORECASE,
)
_ESCAPE_REMNANT = re.compile(r"\[\d{1,3}(?:;\d{1,3})*m(?![a-z])|\]0;")
_HTML = re.compile(
    r"</?(?:html|body|div|p|span|br|table|td|tr|font|style)\b[^>]*>|&(?:nbsp|lt|gt|amp|#\d+);",
    re.IGNORECASE,
)


# Signs that sit in ordinary text: Latin-1's (× ° ¥ ½), general punctuation (… ‰ ※),
# letterlike and number forms (℃ № Ⅲ), CJK symbols (〒 【】) and full-width forms (￥).
_TEXT_SIGNS = re.compile("[\u00a0-\u00ff\u2000-\u215f\u2160-\u218f\u3000-\u303f\uff00-\uffef]")


def _writing(char: str) -> bool:
    return unicodedata.category(char)[0] in "LMNPZ" or bool(_TEXT_SIGNS.match(char))


def unreadable_reason(text: str) -> str:
    """ "" when ``text`` reads as text, else the first fault found (see the module's list)."""
    if not text.strip():
        return "empty"
    if "\ufffd" in text:
        return "replacement character"
    if _CONTROL.search(text):
        return "control or private-use character"
    if _UTF8_AS_LATIN1.search(text) or any(
        len(set(run)) > 1
        for run in _LATIN1_RUN.findall(text)  # not "°°°°"
    ):
        return "Latin-1 mojibake"
    if any(marker in text for marker in _MARKERS):
        return "mojibake marker"
    hanzi = "".join(_HANZI.findall(text[:4000]))
    if len(hanzi) >= 10 and max(plausibility(hanzi, GB), plausibility(hanzi, BIG5)) < 0.5:
        return "rare hanzi"
    if _ENCODED.search(text) or any(
        re.search("[a-z]", run) and re.search("[A-Z]", run) and re.search("[0-9]", run)
        for run in _BASE64_RUN.findall(text)
    ):
        return "undecoded encoding"
    if _ESCAPE_REMNANT.search(text):
        return "terminal escape remnant"
    if _SCAFFOLDING.search(text):
        return "MIME scaffolding"
    if _HTML.search(text):
        return "HTML markup"
    sample = text[:4000]
    good = sum(1 for char in sample if " " <= char <= "~" or char in "\n\t" or _writing(char))
    if good < 0.9 * len(sample):
        return "mostly symbols"
    return ""
