"""Bytes of mail text → the str a person can read, whatever charset label came with them.

Chinese mail arrives in GB2312, GBK, GB18030, Big5 and UTF-8, often labelled wrongly or not at
all. `decode_text` trusts a label only as far as the bytes agree with it: it decodes the bytes
strictly in the declared charset and in the likely others (UTF-8, GB18030, Big5), scores each
result by how plausible it is as text (common Chinese characters, Latin letters inside words)
and keeps the best; a GB18030 reading made only of hanzi has a head start (`GB_PRIOR`), as
this is a Chinese mailbox and GBK-only name characters (镕, 喆) read as rare Big5 ones too;
a Big5 label is always weighed against GB18030. GB2312 and GBK labels are read as GB18030,
their superset, because clients label GBK bytes ``gb2312``. Replacement characters (U+FFFD)
appear only when no candidate decodes the bytes cleanly.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Decoded", "codec_for_label", "decode_text", "plausibility"]

GB = "gb18030"
BIG5 = "big5"
UTF8 = "utf-8"
WESTERN = "cp1252"

# Labels seen in mail that Python does not know, or knows as something narrower than what the
# senders really write: keys are labels lower-cased with everything but letters and digits gone.
_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        (
            "gb2312",
            "gb231280",
            "gbk",
            "cp936",
            "ms936",
            "windows936",
            "euccn",
            "csgb2312",
            "chinese",
            "gb18030",
            "isoir58",
            "gb",
            "gb2312charset",
            "gbkcharset",
            "936",
        ),
        GB,
    ),
    **dict.fromkeys(
        ("big5", "big5hkscs", "cp950", "cnbig5", "csbig5", "big5charset", "chinesebig5", "950"),
        BIG5,
    ),
    **dict.fromkeys(("utf8", "utf", "unicode11utf8", "unicode20utf8", "utf8charset"), UTF8),
    **dict.fromkeys(
        (
            "usascii",
            "ascii",
            "ansix341968",
            "iso88591",
            "latin1",
            "l1",
            "cp1252",
            "windows1252",
            "iso885915",
            "ansi",
            "cp819",
            "ibm819",
            "usascii7",
            "7bit",
            "8bit",
            "default",
        ),
        WESTERN,
    ),
    **dict.fromkeys(("kscharset", "ksc56011987", "ksc5601", "euckr", "cp949", "uhc"), "cp949"),
    **dict.fromkeys(("shiftjis", "sjis", "mskanji", "cp932", "windows31j", "xsjis"), "cp932"),
    "iso88598i": "iso8859-8",
    "iso88596i": "iso8859-6",
    "windows874": "cp874",
    "utf7": "utf-7",
    "hzgb2312": "hz",
}
# Multi-byte charsets whose strict decoding is evidence enough: bytes in another charset
# almost never decode cleanly in these (unlike GB18030 and Big5, which accept most pairs).
_TRUSTED_STRICT = frozenset({"cp932", "shift_jis", "euc_jp", "cp949", "euc_kr", "utf-7", "hz"})
_STATEFUL_ASCII = frozenset({"utf-7", "hz", "iso2022_jp", "iso2022_jp_2", "iso2022_kr"})


@dataclass(frozen=True, slots=True)
class Decoded:
    """Text decoded from bytes: ``charset`` is the codec used; ``defects`` say what was repaired."""

    text: str
    charset: str
    defects: tuple[str, ...] = ()


def label_key(label: str) -> str:
    """A charset label as written in mail → lower-case letters and digits only.

    ``charset="charset="GB2312""`` has already been cut to ``GB2312`` by the header parser;
    here ``GB2312_CHARSET`` → ``gb2312charset`` and ``x-gbk`` → ``xgbk``.
    """
    return re.sub(r"[^a-z0-9]", "", label.lower())


@lru_cache(maxsize=256)
def codec_for_label(label: str | None) -> str | None:
    """The Python codec to read text labelled ``label``, or None when the label is unusable.

    ``gb2312``/``gbk``/``x-gbk``/``GB2312_CHARSET`` → ``gb18030``; ``us-ascii`` and
    ``iso-8859-1`` → ``cp1252`` (what such senders really use); unknown → None.
    """
    if not label:
        return None
    key = label_key(label)
    for candidate in (key, key.removeprefix("x"), key.removesuffix("charset")):
        if candidate in _ALIASES:
            return _ALIASES[candidate]
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except (LookupError, ValueError):
        return None
    # Codecs that are not text encodings (rot13, base64, zlib…) are not charsets.
    if name.endswith("_codec") or name in {"rot-13", "mbcs"}:
        return None
    return {"euc_kr": "cp949", "shift_jis": "cp932", "big5hkscs": BIG5}.get(name, name)


def _table(encoding: str, leads: range, trails: range, stop: bytes = b"") -> frozenset[str]:
    chars = set()
    for lead in leads:
        for trail in trails:
            pair = bytes((lead, trail))
            if stop and pair > stop:
                break
            try:
                chars.add(pair.decode(encoding))
            except UnicodeDecodeError:
                continue
    return frozenset(chars)


# The characters people write most, by the charset that writes them: GB2312 level 1 (3,755
# simplified hanzi) for GB, Big5's frequent block (5,401 traditional) for Big5. Bytes read in
# the wrong one of the two land mostly outside it, in rare characters, symbols, kana and
# private use, which is what tells them apart; Latin-1 letters read as GBK land in GBK's
# extension, which neither block holds.
_BOTH_TRAILS = tuple(range(0x40, 0x7F)) + tuple(range(0xA1, 0xFF))
_GB_L1 = _table("gb2312", range(0xB0, 0xD8), range(0xA1, 0xFF))
_GB_L2 = _table("gb2312", range(0xD8, 0xF8), range(0xA1, 0xFF))
_BIG5_FREQUENT = _table("big5", range(0xA4, 0xC7), _BOTH_TRAILS, b"\xc6\x7e")
_BIG5_RARE = _table("big5", range(0xC9, 0xFA), _BOTH_TRAILS)
_PUNCT = frozenset(
    "，。、；：？！“”‘’（）《》〈〉【】「」『』—…·～￥％＃＠＆＊＋－＝／＼｜"
    "０１２３４５６７８９　\u2014\u2026\u00b7\u3000\u00a0"
)


def _deleter(chars: frozenset[str]) -> dict[int, None]:
    return dict.fromkeys(map(ord, chars))


# Hanzi that GBK and GB18030 add to GB2312: rare in text, but common in people's names
# (镕, 喆, 堃, 昇, 嬛), so in a name or a short subject they may be all the non-ASCII there is.
# GB18030's four-byte ideographs (CJK extension A, 䶮) are added by range in `_GB_EXT_RE`.
_GB_EXT = (
    frozenset(
        char
        for char in _table("gbk", range(0x81, 0xFF), _BOTH_TRAILS + tuple(range(0x80, 0xA1)))
        if "\u4e00" <= char <= "\u9fff"
    )
    - _GB_L1
    - _GB_L2
)
_GB_EXT_RE = re.compile("[\u3400-\u4dbf\U00020000-\U0002ffff]")

# (common, rare) characters per family of codec, as str.translate tables that delete them
# (a count by deletion runs in C, about ten times faster than findall); rare ones count a third.
_GB_SETS = (_deleter(_GB_L1 | _PUNCT), _deleter((_GB_L2 | _BIG5_FREQUENT | _GB_EXT) - _GB_L1))
_BIG5_SETS = (_deleter(_BIG5_FREQUENT | _PUNCT), _deleter(_BIG5_RARE - _BIG5_FREQUENT))
_ANY_SETS = (
    _deleter(_GB_L1 | _BIG5_FREQUENT | _PUNCT),
    _deleter((_GB_L2 | _BIG5_RARE) - _GB_L1 - _BIG5_FREQUENT),
)
SAMPLE = 400
"""Characters of a text that `plausibility` looks at: enough to tell charsets apart."""
_LATIN = "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017f"
_LATIN_WORD_RE = re.compile(f"[A-Za-z{_LATIN}]*[{_LATIN}][A-Za-z{_LATIN}]*")
_ASCII_LETTER = re.compile("[A-Za-z]")
_BAD_RE = re.compile("[\ue000-\uf8ff\x80-\x9f\ufffd]")


def plausibility(text: str, codec: str = "", *, any_script: bool = False) -> float:
    """How much of the non-ASCII part of ``text`` reads as writing, -1.0 … 1.0.

    The share of non-ASCII characters that are commonly written in ``codec`` (GB2312 level 1
    for GB18030, Big5's frequent block for Big5, either otherwise) or CJK punctuation (full
    weight), rarer hanzi (a third; for GB18030 also the hanzi GBK and GB18030 add to GB2312),
    or Latin letters in a word of ASCII letters, as in ``prüfen`` (full weight,
    `_latin_in_words`). With ``any_script`` (a declared Cyrillic, Greek… single-byte
    charset), any letter next to a letter counts. Private-use, C1 control and replacement
    characters count against. Only the first `SAMPLE` characters are looked at; pure ASCII
    scores 1.0.
    """
    sample = text[:SAMPLE]
    non_ascii = _non_ascii(sample)
    if non_ascii == 0:
        return 1.0
    common, rare = _GB_SETS if codec == GB else _BIG5_SETS if codec == BIG5 else _ANY_SETS
    good: float = len(sample) - len(sample.translate(common))
    if good >= non_ascii:
        return 1.0
    good += (len(sample) - len(sample.translate(rare))) / 3
    if codec == GB:
        good += len(_GB_EXT_RE.findall(sample)) / 3
    if any_script:
        if _ANY_LETTER.search(sample):
            good += len(_LETTER_IN_WORD_RE.findall(sample))
    elif _ANY_LATIN.search(sample):
        good += _latin_in_words(sample)
    good -= len(_BAD_RE.findall(sample))
    return max(-1.0, min(1.0, good / non_ascii))


GB_PRIOR = 0.15
"""Head start of a GB18030 reading made only of hanzi and Chinese punctuation."""
_HANZI = _deleter(_GB_L1 | _GB_L2 | _GB_EXT | _PUNCT)


def _all_hanzi(text: str) -> bool:
    """Whether every non-ASCII character of the sample of ``text`` is a hanzi that GB18030
    writes (GB2312, GBK, extension A and B) or Chinese punctuation, and there is one."""
    sample = text[:SAMPLE]
    rest = _GB_EXT_RE.sub("", sample.translate(_HANZI))
    return _non_ascii(rest) == 0 and rest != sample


def _latin_in_words(text: str) -> int:
    """How many accented Latin letters of ``text`` sit in words that look like words.

    A word counts when it has at least three letters, an ASCII one among them, and the case
    of a word (``prüfen``, ``Müller``, ``ÉCOLE``). A GBK character whose second byte is an
    ASCII letter reads in Windows-1252 as an accented letter and that letter (镕 → ``éF``,
    赟 → ``ÚS``): two letters, often in mixed case, which this does not count.
    """
    count = 0
    for word in _LATIN_WORD_RE.findall(text):
        if len(word) < 3 or word.isascii() or not _ASCII_LETTER.search(word):
            continue
        if word.islower() or word.isupper() or (word[0].isupper() and word[1:].islower()):
            count += _non_ascii(word)
    return count


def _non_ascii(text: str) -> int:
    return len(text) - len(text.encode("ascii", "ignore"))


_ANY_LATIN = re.compile(f"[{_LATIN}]")
_LETTER = r"(?![\x00-\x7f])[^\W\d_]"  # a non-ASCII letter of any script
_ANY_LETTER = re.compile(_LETTER)
_LETTER_IN_WORD_RE = re.compile(rf"(?<=[^\W\d_]){_LETTER}|{_LETTER}(?=[^\W\d_])")
# A GBK pair spells a two-byte UTF-8 sequence (U+0080–U+07FF) by chance: 谢谢 → "лл".
_OUTSIDE_TWO_BYTE = re.compile("[^\x00-\u07ff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")
_MOJIBAKE = re.compile(
    "[^\x00-\xff\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6"
    "\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a"
    "\u20ac\u2122]"
)


def _repair_mojibake(text: str, declared: str | None) -> tuple[str, str] | None:
    """Chinese text that was once read as Windows-1252 and saved as UTF-8, put right.

    ``"ÖÐÎÄ"`` (GBK bytes of 中文 shown as Latin-1) → ``("中文", "gb18030")``; None when the
    text is not that (it has characters outside Windows-1252, or the bytes are not Chinese).
    """
    if _MOJIBAKE.search(text) or len(_NON_ASCII.findall(text)) < 4:
        return None
    try:
        data = text.encode(WESTERN)
    except UnicodeEncodeError:
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:
            return None
    for codec in (BIG5, GB) if declared == BIG5 else (GB, BIG5):
        try:
            fixed = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if plausibility(fixed, codec) >= 0.9:
            return fixed, codec
    return None


_MULTIBYTE = frozenset({GB, BIG5, "cp949", "cp932", "euc_jp"})


def _decode(data: bytes, codec: str) -> tuple[str, int]:
    """``data`` in ``codec`` → (text, stray bytes dropped): strictly when it can be; else, for
    UTF-8, GB18030 and Big5, with stray bytes dropped (`_resync`) when there are few; else
    with U+FFFD for what cannot be decoded."""
    wider = ("cp950", "big5hkscs") if codec == BIG5 else ("latin-1",) if codec == WESTERN else ()
    for attempt in (codec, *wider):
        try:
            return data.decode(attempt), 0
        except UnicodeDecodeError:
            continue
        except LookupError:
            break
    if codec in (GB, BIG5, UTF8):
        resynced = _resync(data, codec)
        if resynced is not None:
            return resynced
    try:
        return data.decode(codec, "replace"), 0
    except LookupError:
        return data.decode(WESTERN, "replace"), 0


_INSERTED = (b"\r\n", b"\n", b"\r", b" ", b"\t")


def _resync(data: bytes, codec: str) -> tuple[str, int] | None:
    """``data`` in ``codec`` with the bytes that break it dropped, or None when more than a
    few do (then it is not in ``codec``).

    A byte put inside a character (a line break from a client that wraps 8-bit lines by
    bytes, a stray byte) is dropped and the character read whole (`_mend`); a byte that
    starts nothing (a character cut off, a stray 0xFF) is dropped. Returns the text and how
    many bytes were dropped.
    """
    # Lone bytes that start nothing are rare in text in the right charset; bytes inside a
    # character after which it reads whole come once a wrapped line (76 bytes) at most. Both
    # are counted against the bytes read so far, so that bytes in another charset (or none)
    # are given up on within the first few hundred bytes.
    view = memoryview(data)  # slices without copies: each error costs only what was read
    out: list[str] = []
    position = dropped = lone = inside = 0
    while True:
        try:
            out.append(str(view[position:], codec))
            return "".join(out), dropped
        except UnicodeDecodeError as error:
            start = position + error.start
            out.append(data[position:start].decode(codec, "replace"))
            position = position + max(error.end, error.start + 1)
            mended = _mend(data, start, codec)
            if mended is not None:
                char, inserted, position = mended
                out.append(char)
                dropped += inserted
                inside += 1
            else:
                dropped += position - start
                lone += 1
            if lone > max(3, position // 200) or inside > max(8, position // 40):
                return None


def _mend(data: bytes, start: int, codec: str) -> tuple[str, int, int] | None:
    """The character at ``start`` read whole around the bytes put inside it (a line break, a
    space, one stray byte) → (character, bytes inside, where reading goes on), or None.
    Characters are two bytes in GBK and Big5, up to four in GB18030 and UTF-8."""
    width = 2 if codec == BIG5 else 4
    for offset in range(1, width):
        at = start + offset
        for inserted in (*_INSERTED, data[at : at + 1]):
            if not inserted or not data.startswith(inserted, at):
                continue
            after = at + len(inserted)
            for length in range(offset + 1, width + 1):
                end = after + length - offset
                if end > len(data):
                    break
                try:
                    char = (data[start:at] + data[after:end]).decode(codec)
                except UnicodeDecodeError:
                    continue
                if len(char) == 1:
                    return char, len(inserted), end
    return None


# A terminal's escape sequences, whole: CSI (ESC [ parameters intermediates final, as in
# ESC[31m), OSC (ESC ] text, ended by BEL or ESC \\ or the line), DCS/SOS/PM/APC strings, and
# the two- and three-byte ones (ESC ( B, ESC =). A lone ESC goes with the controls.
_ESCAPE_BYTES = re.compile(
    rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    rb"|[\]PX^_][^\x07\x1b\r\n]{0,1024}(?:\x07|\x1b\\)?"
    rb"|[\x20-\x2f]{0,2}[\x30-\x7e])?"
)
# C0 controls but tab, line feed and carriage return, and DEL. No byte of these is part of a
# character in UTF-8, GB18030, Big5 or the single-byte charsets, so removing them before
# decoding mends a character a NUL was put inside (which no codec can decode).
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")
_CONTROL_OR_ESCAPE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _without_controls(data: bytes, codec: str | None, context: str, defects: list[str]) -> bytes:
    """``data`` without control bytes and terminal escape sequences, where the charset does
    not use them: UTF-16/32 have NUL bytes in characters, ISO-2022 and unlabelled bytes with
    ``ESC $`` switch character sets with ESC."""
    if not _CONTROL_OR_ESCAPE.search(data):
        return data
    name = codec or ""
    if name.startswith(("utf-16", "utf_16", "utf-32", "utf_32", "iso2022")) or (
        codec is None and re.search(rb"\x1b[$(]", data) and not re.search(rb"\x1b\[", data)
    ):
        return data
    cleaned = _CONTROL_BYTES.sub(b"", _ESCAPE_BYTES.sub(b"", data))
    if len(cleaned) != len(data):
        defects.append(f"{context}: control characters and terminal escape sequences removed")
    return cleaned


def decode_text(data: bytes, label: str | None = None, *, context: str = "text") -> Decoded:
    """``data`` in the charset it is really in, with ``label`` (as declared) as a hint.

    Order of evidence: pure ASCII is ASCII (unless labelled UTF-7, HZ or ISO-2022, which are
    written in ASCII bytes); valid UTF-8 with non-ASCII bytes is UTF-8; a Japanese or Korean
    label whose charset decodes the bytes cleanly is believed; otherwise the declared
    charset, GB18030, Big5 and (unless the label is Chinese) Windows-1252 are each tried and
    scored with `plausibility` (a replacement character counts against), the declared one
    with a small head start, and the best kept. Control bytes (NUL…) and terminal escape
    sequences (ESC[31m) are removed first, where the charset does not use them. ``context``
    names the place in the defects (``"body"``, ``"Subject"``). Never raises.
    """
    codec = codec_for_label(label)
    defects: list[str] = []
    if label and codec is None:
        defects.append(f"{context}: unknown charset {label!r}")
    data = _without_controls(data, codec, context, defects)
    if data.isascii():
        if codec in _STATEFUL_ASCII or (codec is None and b"\x1b$" in data):
            try:
                return Decoded(
                    data.decode(codec or "iso2022_jp"), codec or "iso2022_jp", tuple(defects)
                )
            except UnicodeDecodeError:
                pass
        return Decoded(data.decode("ascii"), "ascii", tuple(defects))

    if codec in _TRUSTED_STRICT or (codec or "").startswith("iso2022"):
        try:
            return Decoded(data.decode(codec or ""), codec or "", tuple(defects))
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        utf8 = data.decode(UTF8)
    except UnicodeDecodeError:
        pass
    else:
        # GBK pairs can spell valid UTF-8 by chance (谢谢 → "лл", 什么 → "ʲô"): text with no
        # three-byte (CJK) sequence that reads better as common Chinese in GB18030 is GB18030.
        if not _OUTSIDE_TWO_BYTE.search(utf8):
            gb, _ = _decode(data, GB)
            gb_score = plausibility(gb, GB)
            if gb_score >= 0.9 and gb_score > plausibility(utf8, UTF8):
                defects.append(f"{context}: bytes valid as UTF-8 but read as gb18030")
                return Decoded(gb, GB, tuple(defects))
        repaired = _repair_mojibake(utf8, codec)
        if repaired is not None:
            defects.append(f"{context}: {repaired[1]} text once misread as Latin-1, repaired")
            return Decoded(repaired[0], repaired[1], tuple(defects))
        if codec not in (None, UTF8, WESTERN):
            defects.append(f"{context}: declared {label}, bytes are UTF-8")
        elif codec is None:
            defects.append(f"{context}: {'no' if not label else 'unusable'} charset, read as utf-8")
        return Decoded(utf8, UTF8, tuple(defects))

    if codec == BIG5:
        # GB2312 pairs are valid Big5 too, and a short GB text can read as common Big5
        # characters; Big5 text read as GB almost never comes out as common simplified
        # characters throughout. So a Big5 label yields to a GB reading that does.
        gb, gb_dropped = _decode(data, GB)
        if plausibility(gb, GB) >= 0.9 and _non_ascii(gb[:SAMPLE]) >= 4 and not gb_dropped:
            defects.append(f"{context}: declared {label}, bytes are {GB}")
            return Decoded(gb, GB, tuple(defects))
    candidates = [c for c in (codec, GB, BIG5, UTF8) if c]
    if codec not in (GB, BIG5):
        candidates.append(WESTERN)
    best: tuple[float, str, str, int] | None = None
    for order, candidate in enumerate(dict.fromkeys(candidates)):
        text, dropped = _decode(data, candidate)
        native = candidate == codec and codec not in _MULTIBYTE and codec not in (WESTERN, UTF8)
        score = plausibility(text, candidate, any_script=native)
        score += 0.1 if candidate == codec else 0.0
        # Dropped bytes count against, in proportion to the whole text they were dropped from.
        score -= dropped / max(1, _non_ascii(text)) if dropped else 0.0
        # Earlier candidates win ties: declared, then GB (this is a Chinese mailbox), then Big5.
        score -= order * 0.001
        # A Chinese mailbox: bytes that read in GB18030 as nothing but hanzi and Chinese
        # punctuation are GB18030 unless another reading is clearly commoner writing (a lone
        # GBK name such as 镕 reads as a rare Big5 character too). Only for the ranking: a
        # reading must still earn the early stop on its own.
        believed = best is not None and best[1] == codec and best[0] >= 0.8
        prior = GB_PRIOR if candidate == GB and not believed and _all_hanzi(text) else 0.0
        if best is None or score + prior > best[0]:
            best = (score + prior, candidate, text, dropped)
        # A declared charset that reads well is believed; a guess must read very well. Big5
        # is declared over GB bytes so often that its reading is always weighed against GB's.
        if score >= (0.8 if candidate == codec != BIG5 else 0.95):
            break
    assert best is not None
    _, chosen, text, dropped = best
    if codec is None:
        defects.append(f"{context}: {'no' if not label else 'unusable'} charset, read as {chosen}")
    elif chosen != codec:
        defects.append(f"{context}: declared {label}, bytes are {chosen}")
    if dropped:
        defects.append(f"{context}: {dropped} stray byte(s) in or between characters dropped")
    replaced = text.count("\ufffd")
    if replaced:
        defects.append(f"{context}: {replaced} undecodable byte sequence(s) replaced")
    return Decoded(text, chosen, tuple(defects))
