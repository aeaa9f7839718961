"""Near-duplicate complaints and hot issues.

``similar_cases`` finds open cases that report the same problem as a new complaint, so a
supervisor can merge them. Two complaints report the same problem when they name the same
place (estate, street, building, shop) *and* the same problem or object (noise from a bar, a
broken lift), in whatever words: so a pair's score is a weighted geometric mean of a *place*
agreement and a *problem* agreement, each computed from the two texts alone, after letter
boilerplate (greetings, self-introductions, closings) is removed. The score of a pair
therefore does not depend on which other candidates are compared; the candidates come from
``triage.duplicate_index``. The word lists are in ``triage.similarity_terms``.

``hot_issues`` groups a month's cases about the same local problem for the monthly report, by
the cosine of TF-IDF profiles whose idf comes from that month's cases: character bigrams of
Chinese, stemmed content words (and pairs of them) of English, as character pairs of English
are shared by nearly every English text. Linked cases are split by average linkage, so a
chain of borderline pairs does not make one group.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import itertools
import math
import re
import struct
import threading
import unicodedata
import zlib
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rjieba
import scipy.sparse as sp
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from triage import similarity_terms as terms
from triage.routing import ngram_codes, normalize_text, segment

__all__ = [
    "PROFILE_VERSION",
    "HotIssue",
    "Profile",
    "ProfiledText",
    "duplicate_score",
    "hot_issues",
    "profile",
    "shorten",
    "similar_cases",
    "stored_profile",
]

DUPLICATE_SCORE = 0.46
"""Score from which two complaints are taken to report the same problem: the threshold with
the best F1 at precision >= 0.9 on the labelled pairs of bench/bench_duplicates.py."""

HOT_ISSUE_SCORE = 0.3
"""Cosine from which two complaints are taken to concern the same local problem."""

HOT_ISSUE_MEAN_SCORE = 0.15
"""Mean cosine of their pairs from which two groups of linked complaints are one hot issue:
fifteen letters about one estate's parking (teddy2020c) stay one group, a chain of texts
each sharing half its words with the next does not."""

UNKNOWN_PLACE = 0.4
"""Place agreement of a pair whose places cannot be compared: one names none, or they are
named in different scripts (松涛路 and Songtao Road)."""

_PLACE_SHARE = 0.4  # exponent of the place agreement; the problem's is 1 - this
_NUMBER_MISMATCH = 0.35  # building 8 is not building 2 of the same estate
_WEIGHT_GENERIC = 0.15  # a bigram of a generic complaint word, relative to 1 for any other
_WEIGHT_NUMBER = 0.7  # a building or route number, relative to 1 for a bigram of a name
_MAX_CHARS = 4000  # the start of a long text says what it is about

_CLOSING_QUOTES = frozenset('”"」』》)）')
_CONCEPT_PRIOR = 1.0  # one shared concept is weak evidence: 2 × shared / (total + prior)
_CONCEPT_PLACE_WEIGHT = 0.4
_CONCEPT_ATTRIBUTE_WEIGHT = 0.5
_CONCEPT_WEIGHTS = {
    **{c: _CONCEPT_ATTRIBUTE_WEIGHT for c in terms.ATTRIBUTE_CONCEPTS},
    **{c: _CONCEPT_PLACE_WEIGHT for c in terms.PLACE_CONCEPTS},
}
_CJK_RUN = re.compile(rf"[{terms.CJK}]+")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_SENTENCE_END = frozenset('.!?\n:;("“')  # right before a word: it starts a sentence


@dataclass(frozen=True, slots=True)
class _Profile:
    """What a complaint says, once its letter boilerplate is gone (as first computed).

    ``places``: bigrams of place names ("n:松涛"), English names ("e:maple"), and numbers of
    buildings, routes and houses ("#b8", "#r26"), each with its weight; ``scripts``: the
    scripts those places are written in ("zh", "en", "#"); ``concepts``: the problems and
    objects of ``similarity_terms.CONCEPTS`` it mentions; ``content``: its other Chinese
    character bigrams ("z:路灯") and English word stems ("e:lamp"), each with its raw weight
    (not normalised); ``counts``: how often each content bigram occurs (stems: 1).
    """

    places: dict[str, float]
    scripts: frozenset[str]
    concepts: frozenset[str]
    content: dict[str, float]
    counts: dict[str, int]


def _strip_boilerplate(text: str) -> str:
    """The text without greetings, self-introductions (their estate kept) and closings."""
    for pattern in terms.OPENINGS:
        text = pattern.sub(" ", text, count=1)
    # 住 keeps the fact that this is where the writer lives (see _numbered_places).
    text = terms.SELF_INTRODUCTION.sub(
        lambda m: " 住 " + terms.INTRODUCTION_FILLER.sub("", m.group("who")) + " ", text
    )
    for pattern in terms.CLOSINGS:
        text = pattern.sub(" ", text)
    return text


def _stem(word: str) -> str:
    """A lower-case English word without its plural, -ing or -ed ending (crudely)."""
    word = terms.ENGLISH_ABBREVIATIONS.get(word, word)
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxh":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word


def _concept_forms() -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    """Each concept with its Chinese forms and its English forms as stemmed " word " keys."""
    table = []
    for concept, forms in terms.CONCEPTS.items():
        chinese = tuple(f for f in forms if not f.isascii())
        english = []
        for form in forms:
            if form.isascii():
                prefix = form.endswith("*")
                words = [_stem(w) for w in form.rstrip("*").split()]
                english.append(" " + " ".join(words) + ("" if prefix else " "))
        table.append((concept, chinese, tuple(english)))
    return tuple(table)


_CONCEPT_FORMS = _concept_forms()


def _form_matcher(forms: dict[str, set[str]]) -> tuple[re.Pattern[str], dict[str, frozenset[str]]]:
    """One pattern that finds a form starting at every position (longest first), and the
    concepts of each form together with those of the shorter forms it begins with."""
    ordered = sorted(forms, key=len, reverse=True)
    pattern = re.compile("(?=(" + "|".join(map(re.escape, ordered)) + "))")
    concepts = {
        form: frozenset(c for other in forms if form.startswith(other) for c in forms[other])
        for form in forms
    }
    return pattern, concepts


def _matchers() -> tuple[tuple[re.Pattern[str], dict[str, frozenset[str]]], ...]:
    chinese: dict[str, set[str]] = {}
    english: dict[str, set[str]] = {}
    for concept, chinese_forms, english_forms in _CONCEPT_FORMS:
        for form in chinese_forms:
            chinese.setdefault(form, set()).add(concept)
        for form in english_forms:
            english.setdefault(form, set()).add(concept)
    return _form_matcher(chinese), _form_matcher(english)


(_CHINESE_CONCEPTS, _CHINESE_OF), (_ENGLISH_CONCEPTS, _ENGLISH_OF) = _matchers()


def _concepts(chinese: str, english: str) -> frozenset[str]:
    """Concepts named in a text's Chinese (names blanked out) or its " stemmed words ".

    The same as the concepts of the longest form found at each position by
    ``_CHINESE_CONCEPTS`` / ``_ENGLISH_CONCEPTS`` (a shorter form found at a position is a
    prefix of the longest one there, whose concepts include its own), found by testing each
    form with ``in``: a few hundred substring searches in C cost a sixth of a pattern tried
    at every position.
    """
    found: set[str] = set()
    for form, concepts in _CHINESE_OF.items():
        if form in chinese:
            found |= concepts
    for form, concepts in _ENGLISH_OF.items():
        if form in english:
            found |= concepts
    return frozenset(found)


_CHINESE_CONCEPT_FORMS = frozenset(f for _, chinese, _ in _CONCEPT_FORMS for f in chinese)
# Parts of speech that end a name read leftwards: prepositions, conjunctions, particles,
# pronouns, locatives, verbs, measure words, time words, punctuation …
_NOT_NAME_TAGS = terms.words("p c u uj ul uz ug ud uv r f v vn vd q t x ad y e o s")


# Last characters of the tokens `_place_word` can answer for: any other token is none (a
# cheap test first, since most of a text's tokens are not places).
_PLACE_ENDS = frozenset(w[-1] for w in terms.PLACE_WORDS) | terms.PLACE_SIDES


def _place_word(token: str) -> str | None:
    """The place word a token is or ends with (路, 小区, 酒吧; 路上 counts as 路), if any."""
    if token in terms.PLACE_WORDS:
        return token
    if len(token) > 1 and token[:-1] in terms.PLACE_WORDS and token[-1] in terms.PLACE_SIDES:
        return token[:-1]
    for length in (3, 2, 1):
        if len(token) > length and token[-length:] in terms.PLACE_WORDS:
            return token[-length:]
    return None


def _may_name(word: str, tag: str) -> bool:
    """Whether a word (with jieba's part of speech) may be part of a place's name."""
    return not (
        tag in _NOT_NAME_TAGS
        or (tag == "m" and not word.startswith("第"))
        or (len(word) == 1 and word in terms.FUNCTION_CHARACTERS)
        or word in terms.GENERIC_WORDS
        or word in _CHINESE_CONCEPT_FORMS
        or word in terms.PLACE_WORDS
        or not _CJK_RUN.fullmatch(word)
    )


def _place_names(text: str) -> tuple[set[str], str]:
    """Chinese place names of a lower-cased text, and the text with them blanked out.

    A name is what stands before a place word (路, 小区, 酒吧 …): up to four characters of
    whole words, read leftwards until a function or generic word; or a short quoted or
    bracketed name (“蓝调”, (阳光水岸)). Words come from jieba's segmentation.
    """
    names: set[str] = set()
    spans: list[tuple[int, int]] = []
    tokens: list[tuple[str, str, int]] = []  # word, part of speech, start
    position = 0
    for word, tag in rjieba.tag(text):
        tokens.append((word, tag, position))
        position += len(word)
    for i, (token, _, start) in enumerate(tokens):
        if token[-1:] not in _PLACE_ENDS:
            continue
        suffix = _place_word(token)
        if suffix is None:
            continue
        end = start + len(token)
        own = token[: len(token) - len(suffix)] if token.endswith(suffix) else ""
        j = i - 1
        if not own and j >= 0 and tokens[j][0] in _CLOSING_QUOTES:
            spans.append((start, end))  # “蓝调”酒吧: the quoted name is read below
            continue
        if not own and j >= 0 and tokens[j][0][-1:] + token[:1] in terms.NOT_PLACES:
            continue
        if own and not _may_name(own, "n"):
            continue
        name, name_start = own, start
        while j >= 0 and len(name) < 4:
            word, tag, word_start = tokens[j]
            if not _may_name(word, tag) or len(name) + len(word) > 4:
                break
            name, name_start = word + name, word_start
            j -= 1
        if len(name) >= 2:
            names.add(name)
            spans.append((name_start, end))
    for pattern in (terms.QUOTED, terms.BRACKETED):
        for match in pattern.finditer(text):
            quoted = match.group(1).strip()
            if quoted and (len(quoted) <= 8 or quoted.isascii()):
                names.add(quoted)
                spans.append(match.span(1))
    if not spans:
        return names, text
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return names, "".join(chars)


def _numbered_places(text: str) -> set[str]:
    """Numbered buildings, routes, houses …: "#b8", "#r26". Not where the clause says the
    writer lives (我住3栋): two neighbours reporting one bar live in different buildings."""
    keys = set()
    for pattern, kind in terms.NUMBERED:
        for match in pattern.finditer(text):
            clause = terms.CLAUSE_START.split(text[max(0, match.start() - 200) : match.start()])[-1]
            if not terms.RESIDENCE.search(clause):
                keys.add(f"#{kind}{int(match.group(1))}")
    return keys


_NEXT_WORD = re.compile(r"[ \t]*([A-Za-z][A-Za-z'-]*)")
_WEIGHT_REGION = 0.3  # "Minsheng", "District" of "Minsheng District", relative to 1


def _never_name(lower_word: str) -> bool:
    """Whether a capitalised English word is still no place's name ("English", "The")."""
    return lower_word in terms.ENGLISH_STOP or lower_word in terms.ENGLISH_NOT_NAMES


def _raw_profile(text: str) -> _Profile:
    """The profile of one complaint text, as dictionaries (`_encode` makes it compact)."""
    cased = _strip_boilerplate(unicodedata.normalize("NFKC", text[:_MAX_CHARS]))
    lower = cased.lower()
    places: dict[str, float] = {}
    scripts: set[str] = set()
    names, unnamed = _place_names(lower)
    for name in names:
        for run in _CJK_RUN.findall(name):
            for i in range(len(run) - 1):
                if run[i : i + 2] not in terms.GENERIC_BIGRAMS:
                    places["n:" + run[i : i + 2]] = 1.0
                    scripts.add("zh")
    for key in _numbered_places(lower):
        places[key] = _WEIGHT_NUMBER
        scripts.add("#")

    content = Counter(
        run[i : i + 2] for run in _CJK_RUN.findall(unnamed) for i in range(len(run) - 1)
    )
    weights: dict[str, float] = {}
    counts: dict[str, int] = {}
    function, generic = terms.FUNCTION_CHARACTERS, terms.GENERIC_BIGRAMS
    for bigram, count in content.items():
        if bigram[0] in function and bigram[1] in function:
            continue
        weight = _WEIGHT_GENERIC if bigram in generic else 1.0
        weights["z:" + bigram] = weight * (1.0 + math.log(count))
        counts["z:" + bigram] = count

    # English: names are capitalised words inside a sentence or next to another one.
    stems: list[str] = []
    previous_capital = False
    previous_end = 0
    for match in _LATIN_WORD.finditer(cased):
        word = match.group(0)
        lower_word = word.lower()
        stem = _stem(lower_word)
        stems.append(stem)
        gap = cased[previous_end : match.start()]
        tail = gap.rstrip(" \t")[-1:]
        starts_sentence = (previous_end == 0 and not gap.strip()) or (
            tail != "" and tail in _SENTENCE_END
        )
        previous_end = match.end()
        capital = word[0].isupper() and not _never_name(lower_word)
        if lower_word in terms.ENGLISH_STOP or len(stem) < 2:
            previous_capital = False
            continue
        following = _NEXT_WORD.match(cased, match.end())
        following_capital = following is not None and (
            following.group(1)[0].isupper() and not _never_name(following.group(1).lower())
        )
        if capital and (not starts_sentence or previous_capital or following_capital):
            region = stem in terms.ENGLISH_REGIONS or (
                following_capital and following.group(1).lower() in terms.ENGLISH_REGIONS
            )
            places["e:" + stem] = _WEIGHT_REGION if region else 1.0
            scripts.add("en")
        else:
            weights["e:" + stem] = 1.0
            counts["e:" + stem] = 1
        previous_capital = capital

    joined = " " + " ".join(stems) + " "
    return _Profile(places, frozenset(scripts), _concepts(unnamed, joined), weights, counts)


# Compact profiles ----------------------------------------------------------------------------
#
# A profile as scored and stored: its keys as sorted 64-bit integers, so that a new text is
# compared with its ~50 candidates in a few array operations instead of one Python loop over
# dictionaries each, and so that a case's profile can be stored with it (`data`,
# triage.similarity_store) instead of being computed again, with jieba, every time the case
# is a candidate. A Chinese bigram is its two code points (exact); an English stem is a 63-bit
# hash (negative), a number its kind and value (from 2**62): no two keys of a pair collide
# but with a probability of about 1e-14 (two hundred stems each).

_KINDS = "bruhl"  # kinds of numbered places (similarity_terms.NUMBERED), bits 0-4
_NUMBER_KEY = 1 << 62
_COUNT_BITS = 12  # a content key's count (at most _MAX_CHARS bigrams) ...
_GENERIC_CODE = 1 << _COUNT_BITS  # ... and whether it is a generic bigram
_SCRIPTS = ("zh", "en", "#")
_CONCEPT_IDS = {c: i for i, c in enumerate(sorted(terms.CONCEPTS))}
_CONCEPT_TABLE = np.array([_CONCEPT_WEIGHTS.get(c, 1.0) for c in sorted(terms.CONCEPTS)])
# The raw weight of each content code: the same float as `_raw_profile` computes from it.
_WEIGHT_TABLE = np.array(
    [
        (_WEIGHT_GENERIC if code & _GENERIC_CODE else 1.0) * (1.0 + math.log(code & 4095))
        if code & 4095
        else 0.0
        for code in range(2 * _GENERIC_CODE)
    ]
)
_GENERIC_KEYS = np.array(
    sorted((ord(b[0]) << 16) | ord(b[1]) for b in terms.GENERIC_BIGRAMS if len(b) == 2),
    dtype=np.uint32,
)
_HEADER = struct.Struct("<HHHHBB6xddd")
_PROFILE_FORMAT = 1
"""Bump when `_raw_profile` or `_encode` computes something else from the same text and the
same word lists (a change of the word lists or of jieba changes `PROFILE_VERSION` by itself):
stored profiles of another version are computed again when next needed."""


def _canonical(value: object) -> str:
    """A text of ``value`` that is the same in every process (sets and dicts sorted)."""
    if isinstance(value, re.Pattern):
        return f"re({value.pattern!r},{value.flags})"
    if isinstance(value, set | frozenset):
        return "{" + ",".join(sorted(_canonical(v) for v in value)) + "}"
    if isinstance(value, dict):
        items = sorted((_canonical(k), _canonical(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, tuple | list):
        return "(" + ",".join(_canonical(v) for v in value) + ")"
    return repr(value)


def _profile_version() -> int:
    """A fingerprint of what a profile is computed from: the format, the word lists, the
    weights and jieba's version (a positive 31-bit integer)."""
    parts = [
        str(_PROFILE_FORMAT),
        importlib.metadata.version("rjieba"),
        _canonical(
            (
                _WEIGHT_GENERIC,
                _WEIGHT_NUMBER,
                _WEIGHT_REGION,
                _MAX_CHARS,
                _CLOSING_QUOTES,
                _NOT_NAME_TAGS,
                _SENTENCE_END,
            )
        ),
    ]
    for name, value in sorted(vars(terms).items()):
        if not name.startswith("__") and isinstance(
            value, str | int | float | frozenset | set | dict | tuple | list | re.Pattern
        ):
            parts.append(f"{name}={_canonical(value)}")
    return zlib.crc32("\n".join(parts).encode()) & 0x7FFFFFFF


PROFILE_VERSION = _profile_version()
"""The version of the profiles this code computes: stored ones of another are not used."""


@dataclass(frozen=True, slots=True, eq=False)
class Profile:
    """A complaint's profile as scored and stored (`profile`, `stored_profile`).

    ``content_keys`` (int64, sorted) and ``content_weights`` (float64, L2-normalised): its
    content bigrams and stems; ``place_keys`` (int64, sorted) and ``place_weights``: its
    places, ``place_squares`` the sum of their squared weights; ``concepts``: ids of its
    concepts (sorted), ``concept_weights`` their weights, ``concept_weight`` their total;
    ``scripts`` and ``kinds``: bit masks of its places' scripts and of the kinds of its
    numbers; ``data``: all of it as bytes (about 6 bytes a content bigram), what
    `stored_profile` reads back.
    """

    content_keys: np.ndarray
    content_weights: np.ndarray
    place_keys: np.ndarray
    place_weights: np.ndarray
    place_squares: float
    concepts: np.ndarray
    concept_weights: np.ndarray
    concept_weight: float
    scripts: int
    kinds: int
    data: bytes


def _stem_key(stem: str) -> int:
    """An English stem's key: a 63-bit hash, negative (below every other key)."""
    digest = hashlib.blake2b(stem.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") | (1 << 63)) - (1 << 64)


def _key(key: str) -> int:
    """The integer of a profile key: "z:路灯"/"n:松涛" (a bigram), "e:lamp", "#b8"."""
    if key[0] == "#":
        return _NUMBER_KEY | (_KINDS.index(key[1]) << 24) | int(key[2:])
    if key[0] == "e":
        return _stem_key(key[2:])
    return (ord(key[2]) << 16) | ord(key[3])


def _encode(raw: _Profile) -> bytes:
    """The bytes of a profile (`_HEADER`, then its arrays; see `_decode`)."""
    counts = raw.counts
    stems = sorted(_stem_key(k[2:]) for k in counts if k[0] == "e")
    # Content bigrams ("z:路灯") as arrays: their keys from their code points, in one go.
    pairs = "".join(k[2:] for k in counts if k[0] == "z")
    points = np.frombuffer(pairs.encode("utf-32-le"), dtype="<u4").reshape(-1, 2)
    bigrams = (points[:, 0] << 16) | points[:, 1]
    # At most _MAX_CHARS bigrams a text (and NFKC's expansions do not repeat one).
    codes = np.fromiter((c for k, c in counts.items() if k[0] == "z"), np.uint16, len(bigrams))
    np.minimum(codes, _GENERIC_CODE - 1, out=codes)
    at = np.minimum(np.searchsorted(_GENERIC_KEYS, bigrams), len(_GENERIC_KEYS) - 1)
    codes[_GENERIC_KEYS[at] == bigrams] |= _GENERIC_CODE
    order = np.argsort(bigrams, kind="stable")
    # As `{k: v / norm}` of the dictionary profile: the sum in the order of the text.
    norm = math.sqrt(sum(v * v for v in raw.content.values())) or 1.0
    places = sorted((_key(k), w) for k, w in raw.places.items())
    concepts = sorted(_CONCEPT_IDS[c] for c in raw.concepts)
    scripts = sum(1 << i for i, s in enumerate(_SCRIPTS) if s in raw.scripts)
    kinds = 0
    for key in raw.places:
        if key[0] == "#":
            kinds |= 1 << _KINDS.index(key[1])
    header = _HEADER.pack(
        len(stems),
        len(bigrams),
        len(places),
        len(concepts),
        scripts,
        kinds,
        norm,
        math.fsum(w * w for _, w in places),
        sum(_CONCEPT_TABLE[i] for i in concepts),
    )
    return b"".join(
        (
            header,
            np.array(stems, dtype="<i8").tobytes(),
            np.array([k for k, _ in places], dtype="<i8").tobytes(),
            np.array([w for _, w in places], dtype="<f8").tobytes(),
            bigrams[order].astype("<u4").tobytes(),
            np.ones(len(stems), dtype="<u2").tobytes(),  # a stem's code: once, not generic
            codes[order].astype("<u2").tobytes(),
            np.array(concepts, dtype="<u2").tobytes(),
        )
    )


def _decode(data: bytes) -> Profile:
    """The profile of `_encode`'s bytes; ValueError if they are not such bytes."""
    n_stems, n_bigrams, n_places, n_concepts, scripts, kinds, norm, squares, concept_weight = (
        _HEADER.unpack_from(data)
    )
    size = _HEADER.size + 8 * n_stems + 16 * n_places + 6 * n_bigrams + 2 * n_stems
    if len(data) != size + 2 * n_concepts:
        raise ValueError("not a similarity profile")
    at = _HEADER.size
    stems = np.frombuffer(data, "<i8", n_stems, at)
    at += 8 * n_stems
    place_keys = np.frombuffer(data, "<i8", n_places, at)
    at += 8 * n_places
    place_weights = np.frombuffer(data, "<f8", n_places, at)
    at += 8 * n_places
    bigrams = np.frombuffer(data, "<u4", n_bigrams, at)
    at += 4 * n_bigrams
    codes = np.frombuffer(data, "<u2", n_stems + n_bigrams, at)
    at += 2 * (n_stems + n_bigrams)
    concepts = np.frombuffer(data, "<u2", n_concepts, at)
    return Profile(
        content_keys=np.concatenate((stems, bigrams), dtype=np.int64),
        content_weights=_WEIGHT_TABLE[codes] / norm,
        place_keys=place_keys,
        place_weights=place_weights,
        place_squares=squares,
        concepts=concepts,
        concept_weights=_CONCEPT_TABLE[concepts],
        concept_weight=concept_weight,
        scripts=scripts,
        kinds=kinds,
        data=data,
    )


@functools.lru_cache(maxsize=4096)  # a profile takes a few KiB
def _profile(text: str) -> Profile:
    """The profile of one complaint text (cached: open cases are compared again and again).

    Computed through its bytes, so that it is the very profile `stored_profile` gives back
    from them."""
    return _decode(_encode(_raw_profile(text)))


def profile(text: str) -> Profile:
    """The profile of a complaint text (``subject\\nbody``), computed (0.5-2 ms: jieba)."""
    return _profile(text)


def stored_profile(data: bytes) -> Profile:
    """The profile whose `Profile.data` ``data`` is (stored with `PROFILE_VERSION`): a few
    microseconds. Raises ValueError if ``data`` is not such bytes."""
    try:
        return _decode(bytes(data))
    except struct.error as exc:
        raise ValueError("not a similarity profile") from exc


class ProfiledText(str):
    """A complaint text with its profile at hand (stored, or computed once by the caller).

    Still the text, so any ``FindSimilar`` takes it; `similar_cases` and `duplicate_score`
    use the profile instead of computing one from the text.
    """

    profile: Profile

    def __new__(cls, text: str, profile: Profile) -> ProfiledText:
        self = super().__new__(cls, text)
        self.profile = profile
        return self


def _profile_of(text: str) -> Profile:
    return text.profile if isinstance(text, ProfiledText) else _profile(text)


def _dots(
    keys: np.ndarray, weights: np.ndarray, others: list[np.ndarray], other_weights: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``others`` (sorted keys, with their weights), the sum of products of the
    weights of the keys it shares with ``keys`` (sorted); also the shared keys and the index
    of the other each belongs to. The products are added in the order of the other's keys."""
    n = len(others)
    lengths = np.fromiter(map(len, others), dtype=np.int64, count=n)
    if not len(keys) or not lengths.any():
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(n), empty, empty
    flat = np.concatenate(others)
    found = np.arange(len(flat))
    if len(flat) > max(1024, 16 * len(keys)):
        # Most keys are not the query's: a 4 Ki-slot table of its keys' hashes leaves a few
        # (theirs, and some 5% of the others) for the binary search.
        table = np.zeros(1 << _SLOT_BITS, dtype=bool)
        table[_slots(keys)] = True
        found = np.flatnonzero(table[_slots(flat)])
    at = np.searchsorted(keys, flat[found])
    np.minimum(at, len(keys) - 1, out=at)
    hit = keys[at] == flat[found]
    found, at = found[hit], at[hit]  # in the order of ``flat``
    ends = np.cumsum(lengths)
    owners = np.searchsorted(ends, found, side="right")
    products = np.concatenate(other_weights)[found] * weights[at]
    return np.bincount(owners, weights=products, minlength=n), flat[found], owners


_SLOT_BITS = 12


def _slots(keys: np.ndarray) -> np.ndarray:
    """A hash of each key in 0 .. 2**_SLOT_BITS - 1 (Fibonacci hashing, `_GOLDEN`)."""
    return ((keys.astype(np.int64).view(np.uint64) * _GOLDEN) >> np.uint64(64 - _SLOT_BITS)).astype(
        np.intp
    )


def _scores(query: Profile, others: Sequence[Profile]) -> list[float]:
    """The pair score of ``query`` with each of ``others``: a weighted geometric mean of a
    place agreement and a problem agreement (both must agree, and the problem a little
    more); unrounded, possibly a hair above 1."""
    if not others:
        return []
    content, _, _ = _dots(
        query.content_keys,
        query.content_weights,
        [p.content_keys for p in others],
        [p.content_weights for p in others],
    )
    places, shared, owners = _dots(
        query.place_keys,
        query.place_weights,
        [p.place_keys for p in others],
        [p.place_weights for p in others],
    )
    shared_kinds = np.zeros(len(others), dtype=np.int64)
    if query.kinds:
        numbers = shared >= _NUMBER_KEY
        if numbers.any():
            np.bitwise_or.at(shared_kinds, owners[numbers], 1 << ((shared[numbers] >> 24) & 0xFF))
    concepts = np.zeros(len(others))
    if len(query.concepts):
        concepts, _, _ = _dots(
            query.concepts,
            np.ones(len(query.concepts)),
            [p.concepts for p in others],
            [p.concept_weights for p in others],
        )
    scores = []
    scripts, kinds, squares = query.scripts, query.kinds, query.place_squares
    weight, problem_share = query.concept_weight, 1 - _PLACE_SHARE
    for other, cosine, dot, shared_kind, shared_weight in zip(
        others,
        content.tolist(),  # both agreements use it
        places.tolist(),
        shared_kinds.tolist(),
        concepts.tolist(),
        strict=True,
    ):
        if scripts & other.scripts:
            place = dot / math.sqrt(squares * other.place_squares) if dot else 0.0
            if kinds & other.kinds & ~shared_kind:
                place *= _NUMBER_MISMATCH  # building 8 is not building 2 of the same estate
        else:
            # Nothing to compare: the same wording is then the best sign of the same place.
            place = max(UNKNOWN_PLACE, cosine)
        total = weight + other.concept_weight
        dice = 2 * shared_weight / (total + _CONCEPT_PRIOR) if shared_weight else 0.0
        problem = dice if dice > cosine else cosine
        scores.append(place**_PLACE_SHARE * problem**problem_share)
    return scores


def duplicate_score(a: str, b: str) -> float:
    """How likely two complaint texts report the same problem: 0-1, symmetric.

    A function of the two texts alone (no corpus statistics), so the same pair scores the
    same whatever else is compared.
    """
    if not a.strip() or not b.strip():
        return 0.0
    return round(min(_scores(_profile_of(a), [_profile_of(b)])[0], 1.0), 4)


def similar_cases(
    text: str,
    candidates: Sequence[tuple[int, str]],
    *,
    min_score: float = DUPLICATE_SCORE,
    limit: int = 5,
) -> list[tuple[int, float]]:
    """The candidates (case id, text) most like ``text``: (case id, score), best first.

    Scores are ``duplicate_score`` of ``text`` and each candidate, independent of the other
    candidates; those under ``min_score`` are left out, at most ``limit`` are returned, ties
    in the order given. A `ProfiledText` (the query or a candidate) is scored by the profile
    it carries, any other text by its computed (cached) profile.
    """
    if not candidates or not text.strip():
        return []
    kept = [(position, c) for position, c in enumerate(candidates) if c[1].strip()]
    raw = _scores(_profile_of(text), [_profile_of(candidate) for _, (_, candidate) in kept])
    scored = []
    for (position, (case_id, _)), score in zip(kept, raw, strict=True):
        score = round(min(score, 1.0), 4)
        if score >= min_score - 1e-9:
            scored.append((-score, position, case_id))
    scored.sort()
    return [(case_id, -negative) for negative, _, case_id in scored[:limit]]


# Hot issues --------------------------------------------------------------------------------

_BUCKETS = 1 << 20
_UNIGRAM_LIMIT = np.uint64(1 << 21)  # codes below this are single characters
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CACHE_SIZE = 50_000

_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_cache_lock = threading.Lock()


_LATIN_RUN = re.compile(r"[a-z][a-z'-]*")
_WORD_BIGRAM_WEIGHT = 0.5  # two content words in a row, relative to 1 for one word


def _word_stems(normalized: str) -> list[str]:
    """The content words of a normalised text's Latin parts, stemmed: stop words, letter
    boilerplate and words of fewer than three letters left out."""
    stems = []
    for word in _LATIN_RUN.findall(normalized):
        word = word.strip("'-")
        if len(word) < 3 or word in terms.ENGLISH_STOP or word in terms.ENGLISH_FILLER:
            continue
        stems.append(_stem(word))
    return stems


def _bucket(key: str) -> int:
    """A word feature's bucket: a fixed hash (the same in every process)."""
    return zlib.crc32(key.encode()) & (_BUCKETS - 1)


def _word_features(normalized: str) -> tuple[list[int], list[float]]:
    """Buckets and weights of a text's Latin words and pairs of consecutive content words."""
    stems = _word_stems(normalized)
    counts: Counter[str] = Counter("w:" + s for s in stems)
    counts.update(f"p:{a} {b}" for a, b in itertools.pairwise(stems))
    buckets: list[int] = []
    weights: list[float] = []
    for key, count in counts.items():
        buckets.append(_bucket(key))
        weights.append((_WORD_BIGRAM_WEIGHT if key[0] == "p" else 1.0) * (1.0 + math.log(count)))
    return buckets, weights


_POINT_BITS = np.uint64(21)
_POINT_MASK = np.uint64((1 << 21) - 1)


def _is_word_point(points: np.ndarray) -> np.ndarray:
    """Whether code points are letters of a non-Latin script (Chinese, kana, Cyrillic …),
    not spaces, digits, punctuation or symbols: a bigram of those alone (". ", "0,") is in
    every text, whatever its language."""
    return ((points >= 0xC0) & (points < 0x2000)) | (points >= 0x3040)


def _profiles(texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sorted bucket numbers and log-scaled counts of each text's features: character bigrams
    of its Chinese (and other non-Latin) parts, and stemmed content words and word pairs of its
    Latin parts. Character pairs say little in English: "th", "in", "er" are in every text, so
    unrelated English complaints would look alike."""
    result: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(texts)
    missing: list[int] = []
    with _cache_lock:
        for i, text in enumerate(texts):
            profile = _cache.get(text)
            if profile is None:
                missing.append(i)
            else:
                _cache.move_to_end(text)
                result[i] = profile
    if missing:
        normalized = [normalize_text(texts[i]) for i in missing]
        codes, owners = ngram_codes([_LATIN_RUN.sub(" ", t) for t in normalized], 2)
        keep = (codes >= _UNIGRAM_LIMIT) & (
            _is_word_point(codes & _POINT_MASK) | _is_word_point(codes >> _POINT_BITS)
        )
        buckets = ((codes[keep] * _GOLDEN) >> np.uint64(44)).astype(np.int64)
        owners = owners[keep]
        # One sort puts every text's buckets together and in order.
        order = np.lexsort((buckets, owners))
        buckets, owners = buckets[order], owners[order]
        bounds = np.searchsorted(owners, np.arange(len(missing) + 1))
        new = {}
        for k, i in enumerate(missing):
            part = buckets[bounds[k] : bounds[k + 1]]
            unique, counts = np.unique(part, return_counts=True)
            values = 1.0 + np.log(counts)
            word_buckets, word_weights = _word_features(normalized[k])
            if word_buckets:
                merged: dict[int, float] = dict(zip(unique.tolist(), values.tolist(), strict=True))
                for bucket, weight in zip(word_buckets, word_weights, strict=True):
                    merged[bucket] = merged.get(bucket, 0.0) + weight
                unique = np.array(sorted(merged), dtype=np.int64)
                values = np.array([merged[b] for b in unique.tolist()])
            profile = (unique.astype(np.int32), values.astype(np.float32))
            result[i] = profile
            new[texts[i]] = profile
        with _cache_lock:
            _cache.update(new)
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return result  # type: ignore[return-value]


def _weighted(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All profiles run together: indptr, bucket numbers and L2-normalised TF-IDF weights.

    The idf comes from these texts themselves.
    """
    profiles = _profiles(texts)
    lengths = np.fromiter((len(p[0]) for p in profiles), dtype=np.int64, count=len(profiles))
    indptr = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if indptr[-1] == 0:
        return indptr, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    indices = np.concatenate([p[0] for p in profiles])
    values = np.concatenate([p[1] for p in profiles])
    idf = np.log((1 + len(texts)) / (1 + np.bincount(indices, minlength=_BUCKETS))) + 1.0
    values *= idf.astype(np.float32)[indices]
    squares = np.zeros(len(texts), dtype=np.float32)
    nonempty = lengths > 0
    squares[nonempty] = np.add.reduceat(values**2, indptr[:-1][nonempty])
    squares[~nonempty] = 1.0
    values /= np.repeat(np.sqrt(squares), lengths)
    return indptr, indices, values


def _matrix(texts: Sequence[str]) -> sp.csr_matrix:
    """Rows of L2-normalised TF-IDF profiles; idf from these texts (for ``hot_issues``)."""
    indptr, indices, values = _weighted(texts)
    return sp.csr_matrix((values, indices, indptr), shape=(len(texts), _BUCKETS))


@dataclass(frozen=True)
class HotIssue:
    """Cases about the same local problem."""

    case_ids: tuple[int, ...]
    size: int
    label: str
    keywords: tuple[str, ...]
    central: int = 0
    """The case id of the case most like the rest (the label's)."""


_STOP_WORDS = frozenset(
    [
        "我们",
        "你们",
        "他们",
        "我",
        "你",
        "他",
        "她",
        "的",
        "了",
        "是",
        "在",
        "和",
        "有",
        "也",
        "都",
        "就",
        "不",
        "没有",
        "一个",
        "这个",
        "那个",
        "什么",
        "问题",
        "反映",
        "请问",
        "希望",
        "尊敬",
        "领导",
        "您好",
        "你好",
        "谢谢",
        "现在",
        "已经",
        "还是",
        "还有",
        "因为",
        "所以",
        "但是",
        "可以",
        "没",
        "要",
        "会",
        "能",
        "对",
        "到",
        "被",
        "把",
        "让",
        "给",
        "与",
        "及",
        "等",
        "从",
        "而",
        "很",
        "又",
        "吗",
        "呢",
        "啊",
        "该",
        "这",
        "那",
        "其",
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "is",
        "are",
        "was",
        "were",
        "for",
        "on",
        "with",
        "my",
        "i",
        "it",
        "this",
        "that",
    ]
)


def _keywords(texts: Sequence[str], frequency: Counter[str], total: int) -> tuple[str, ...]:
    """Words frequent in these texts and rare elsewhere."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(
            w
            for w in set(segment(normalize_text(text)))
            if len(w.strip()) > 1
            and w not in _STOP_WORDS
            and w not in terms.ENGLISH_STOP
            and w not in terms.ENGLISH_FILLER
            and not (w.isascii() and len(w) < 3)
            and not w.isdigit()
        )
    scored = {w: n * math.log((1 + total) / (1 + frequency.get(w, 0))) for w, n in counts.items()}
    return tuple(w for w, _ in sorted(scored.items(), key=lambda x: (-x[1], x[0]))[:5])


def _average_link(similarity: np.ndarray, min_score: float) -> np.ndarray:
    """Cluster numbers of a group's members (dense cosines, n x n): average linkage, merging
    two clusters only while the mean cosine of their pairs is at least ``min_score``. Memory
    n² floats: n is one connected set of linked cases, not the month."""
    if len(similarity) < 2:
        return np.zeros(len(similarity), dtype=np.int64)
    distance = np.clip(1.0 - similarity.astype(np.float64), 0.0, None)
    np.fill_diagonal(distance, 0.0)
    distance = (distance + distance.T) / 2
    tree = linkage(squareform(distance, checks=False), method="average")
    return fcluster(tree, t=1.0 - min_score + 1e-9, criterion="distance")


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (``limit`` >= 2) with the "…" that
    marks a cut; a cut inside a Latin word moves back to the word's start (unless that would
    drop more than two thirds), Chinese is cut at any character."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if _is_latin_alnum(text[limit - 1]) and _is_latin_alnum(cut[-1]):
        space = cut.rfind(" ")
        if space > limit // 3:
            cut = cut[:space]
    return cut.rstrip(" ,.;:-，、") + "…"


def _is_latin_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def hot_issues(
    items: Sequence[tuple[int, str]],
    *,
    min_score: float = HOT_ISSUE_SCORE,
    mean_score: float = HOT_ISSUE_MEAN_SCORE,
    min_size: int = 3,
) -> list[HotIssue]:
    """Groups of at least ``min_size`` cases about the same problem, largest first.

    Cases are linked when their cosine is at least ``min_score``; each connected set is then
    split by average linkage, so two groups join only when the mean cosine of their pairs is
    at least ``mean_score`` (one borderline pair cannot chain unrelated complaints together).
    The label is the text of the case most like the rest of its group (``central``), its
    first 60 characters cut at a word boundary; the keywords are the words that set the
    group apart.
    """
    if len(items) < max(min_size, 2):
        return []
    texts = [text for _, text in items]
    matrix = _matrix(texts)
    similarity = (matrix @ matrix.T).tocsr()
    linked = similarity.copy()
    linked.data[linked.data < min_score] = 0
    linked.eliminate_zeros()
    count, component = connected_components(linked, directed=False)
    groups = []
    for c in range(count):
        members = np.flatnonzero(component == c)
        if len(members) < min_size:
            continue
        inner = similarity[members][:, members].toarray()
        labels = _average_link(inner, min(mean_score, min_score))
        for label in np.unique(labels):
            group = members[labels == label]
            if len(group) >= min_size:
                groups.append(group)
    if not groups:
        return []

    frequency: Counter[str] = Counter()
    for text in texts:
        frequency.update(set(segment(normalize_text(text))))
    issues = []
    for group in groups:
        inner = similarity[group][:, group]
        central = group[int(np.asarray(inner.sum(axis=1)).ravel().argmax())]
        issues.append(
            HotIssue(
                case_ids=tuple(items[i][0] for i in group),
                size=len(group),
                label=shorten(texts[central], 60),
                keywords=tuple(_keywords([texts[i] for i in group], frequency, len(texts))),
                central=items[central][0],
            )
        )
    return sorted(issues, key=lambda issue: (-issue.size, issue.case_ids))
