"""Complaint text as the classifier and the duplicate search see it.

Normalisation, the title guessed from a body, character n-grams packed into exact integer
codes, and words (jieba's dictionary and algorithm through jieba-rs, several times faster
than jieba itself; English words come out of it too).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import rjieba

TITLE_CHARS = 40
"""At most this many characters of the body are taken as the title when the subject is empty."""

MAX_CHARS = 3000
"""Longer texts are cut here; the rest adds little and would only cost time."""


_SPACES = re.compile(r"\s+")
_DIGITS = re.compile(r"\d")
# Where a title run together with its detail ends: at a greeting to the official addressed…
_GREETING = re.compile(
    r"尊敬的|您好|你好|各位领导|(?:领导|书记|局长|市长|县长|区长|主任|厅长)[：:,，]"
)
# …or at the end of its first sentence.
_SENTENCE_END = re.compile(r"[。！？!?]")


# The full-width punctuation of Chinese text and the ideographic space, with their NFKD (one
# ASCII character each): replaced by it, most Chinese text is NFKC already.
_HALF_WIDTH = tuple((c, unicodedata.normalize("NFKD", c)) for c in "，！？：；（）～\u3000")


def _nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, checked (quick) rather than normalised where
    the text is NFKC once its full-width punctuation is replaced by its NFKD: a character
    replaced by its own decomposition leaves the text's NFKD, hence its NFKC, as it was, and
    the NFKC of an NFKC text is itself (3 µs instead of 13 for a 100-character complaint)."""
    if text.isascii():
        return text
    half = text
    for full, ascii_form in _HALF_WIDTH:
        if full in half:
            half = half.replace(full, ascii_form)
    if unicodedata.is_normalized("NFKC", half):
        return half
    return unicodedata.normalize("NFKC", text)


def normalize_text(text: str) -> str:
    """NFKC (full-width to half-width), lower case, one space for any run, digits as 0."""
    text = _nfkc(text[:MAX_CHARS]).lower()
    text = _SPACES.sub(" ", text)
    # Numbers are mostly dates, amounts and the anonymised place codes (A3区): their value
    # says nothing about the department, their presence sometimes does.
    return _DIGITS.sub("0", text)


def complaint_text(subject: str, body: str) -> str:
    """Subject and body as one text."""
    return f"{subject}\n{body}" if subject.strip() else body


def complaint_title(subject: str, body: str) -> str:
    """The title: the subject, or a guess at the title where it was run into the body."""
    if subject.strip():
        return subject
    greeting = _GREETING.search(body, 4, TITLE_CHARS + 20)
    end = greeting.start() if greeting else TITLE_CHARS + 20
    sentence = _SENTENCE_END.search(body, 0, end)
    if sentence and sentence.start() >= 6:
        end = sentence.start() + 1
    return body[: min(end, TITLE_CHARS)]


_BITS = np.uint64(21)  # every Unicode code point fits in 21 bits


def ngram_codes(texts: Sequence[str], max_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each character 1..max_n-gram of each text as an exact 63-bit code, with its text's index.

    Up to three code points are packed side by side, so codes are exact, not hashed, and an
    n-gram never collides with a shorter one (no text contains code point 0).
    """
    if max_n > 3:
        raise ValueError("character n-grams longer than 3 are not supported")
    encoded = [t.replace("\0", "").encode("utf-32-le") for t in texts]
    lengths = np.fromiter((len(b) // 4 for b in encoded), dtype=np.int64, count=len(encoded))
    points = np.frombuffer(b"".join(encoded), dtype=np.uint32).astype(np.uint64)
    ends = np.cumsum(lengths)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    codes: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for n in range(1, max_n + 1):
        count = len(points) - n + 1
        if count <= 0:
            continue
        inside = np.arange(count) + n <= ends[owner[:count]]
        code = points[:count].copy()
        for k in range(1, n):
            code |= points[k : k + count] << (_BITS * np.uint64(k))
        codes.append(code[inside])
        owners.append(owner[:count][inside])
    if not codes:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate(codes), np.concatenate(owners)


def decode_ngram(code: int) -> str:
    """The characters of an n-gram code (for explaining a model)."""
    chars = []
    while code:
        chars.append(chr(code & ((1 << 21) - 1)))
        code >>= 21
    return "".join(chars)


_WORD = re.compile(r"\w")


def is_word(token: str) -> bool:
    """Whether a token holds a letter, digit or character of a word (not only punctuation)."""
    return _WORD.search(token) is not None


def segment(text: str) -> list[str]:
    """Words of a text: jieba's dictionary and algorithm (via jieba-rs), punctuation dropped."""
    return [w for w in rjieba.cut(text) if _WORD.search(w)]
