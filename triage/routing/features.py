"""The feature step of the pipeline: (subject, body) pairs to TF-IDF rows.

Three blocks, each L2-normalised: character 1-3-grams of the whole text, the same of the
title alone (the subject, or the first sentence of the body where the subject is empty, since
many messages arrive with title and detail run together), and words. Character n-grams are
counted with numpy rather than a Python loop per n-gram, and words are numbered in C
(``dict.fromkeys``, ``map``), which keeps classification well above a thousand complaints a
second on one core.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rjieba
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from triage.routing.text import (
    complaint_text,
    complaint_title,
    decode_ngram,
    is_word,
    ngram_codes,
    normalize_text,
)


def _idf(df: np.ndarray, n: int) -> np.ndarray:
    # scikit-learn's smoothed idf, so the figures match TfidfTransformer's.
    return np.log((1 + n) / (1 + df)) + 1.0


def _scale_rows(matrix: sp.csr_matrix, weight: float) -> sp.csr_matrix:
    """L2-normalise each row in place, then multiply by the block's weight."""
    lengths = np.diff(matrix.indptr)
    squares = np.zeros(matrix.shape[0])
    nonempty = lengths > 0
    if nonempty.any():
        squares[nonempty] = np.add.reduceat(matrix.data**2, matrix.indptr[:-1][nonempty])
    squares[~nonempty] = 1.0
    matrix.data *= np.repeat(weight / np.sqrt(squares), lengths)
    return matrix


@dataclass(frozen=True)
class Analysis:
    """Texts taken apart: character n-gram codes of text and title, and word ids.

    Each ``*_codes``/``word_ids`` array lists occurrences; the ``*_owners`` array beside it
    gives the index of the text each occurrence belongs to (0 .. ``size`` - 1). ``words`` is
    the table of distinct tokens that ``word_ids`` index, in order of first occurrence.
    """

    size: int
    char_codes: np.ndarray
    char_owners: np.ndarray
    title_codes: np.ndarray
    title_owners: np.ndarray
    word_ids: np.ndarray
    word_owners: np.ndarray
    words: tuple[str, ...]
    # When set, ``word_ids`` are the tokens' columns in this learnt vocabulary (-1: not in
    # it) and ``words`` is empty: see `analyze`.
    word_vocabulary: Mapping[str, int] | None = None


def analyze(
    pairs: Sequence[Sequence[str]],
    *,
    words: bool = True,
    vocabulary: Mapping[str, int] | None = None,
) -> Analysis:
    """Normalise, cut into character n-grams and segment into words.

    Words get ids in a table of this batch's distinct tokens; punctuation and spaces are in it
    too and dropped when a vocabulary is learnt (``fit``) or looked up (``transform``), which
    tests each distinct token once instead of every occurrence. Given the learnt
    `vocabulary` (``transform``), each token is looked up in it instead, once: no table of
    distinct tokens to build and look up again (a third of a call import's routing of
    500 calls), the same columns.
    """
    texts = [normalize_text(complaint_text(s or "", b or "")) for s, b in pairs]
    titles = [normalize_text(complaint_title(s or "", b or "")) for s, b in pairs]
    char_codes, char_owners = ngram_codes(texts, 3)
    title_codes, title_owners = ngram_codes(titles, 3)
    table: dict[str, int] = {}
    ids = np.zeros(0, dtype=np.int64)
    owners = np.zeros(0, dtype=np.int64)
    if words:
        cut = rjieba.cut
        tokens = [cut(text) for text in texts]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        flat = list(itertools.chain.from_iterable(tokens))
        if vocabulary is not None:
            # Each token's column, in C (map): punctuation and spaces are in no vocabulary.
            columns = map(vocabulary.get, flat, itertools.repeat(-1))
            ids = np.fromiter(columns, dtype=np.int64, count=len(flat))
        else:
            # Distinct tokens in order of first occurrence, then each token's number: both
            # loops run in C (dict.fromkeys, map), not once per token in Python.
            table = {word: i for i, word in enumerate(dict.fromkeys(flat))}
            ids = np.fromiter(map(table.__getitem__, flat), dtype=np.int64, count=len(flat))
        owners = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    return Analysis(
        len(texts),
        char_codes,
        char_owners,
        title_codes,
        title_owners,
        ids,
        owners,
        tuple(table),
        vocabulary if words else None,
    )


@dataclass(frozen=True)
class Counts:
    """How often each n-gram and word occurs in each text of a batch.

    ``chars`` and ``title`` are (texts x distinct codes) count matrices whose columns are the
    sorted codes in ``char_codes`` and ``title_codes``; ``words`` has one column per token of
    ``word_table`` (in order of first occurrence), and ``wordlike`` says which tokens are
    words rather than punctuation or spaces. Counting sorts every occurrence, the costliest
    step of fitting the features; taking ``rows`` does not, so training counts the texts once
    and each cross-validation fold fits its features on the rows of its own texts.
    """

    chars: sp.csr_matrix
    char_codes: np.ndarray
    title: sp.csr_matrix
    title_codes: np.ndarray
    words: sp.csr_matrix
    word_table: tuple[str, ...]
    wordlike: np.ndarray

    @property
    def size(self) -> int:
        """Number of texts (rows)."""
        return int(self.chars.shape[0])

    def rows(self, indices: np.ndarray | Sequence[int]) -> Counts:
        """The counts of the texts at ``indices``, in that order; the columns stay the same."""
        indices = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            chars=self.chars[indices],
            title=self.title[indices],
            words=self.words[indices],
        )


def count(analysis: Analysis) -> Counts:
    """Count the analysed texts' n-grams and words (one sort of each block's codes)."""
    n = analysis.size
    char_codes, chars = _distinct_counts(analysis.char_owners, analysis.char_codes, n)
    title_codes, title = _distinct_counts(analysis.title_owners, analysis.title_codes, n)
    words = sp.csr_matrix(
        (np.ones(len(analysis.word_ids)), (analysis.word_owners, analysis.word_ids)),
        shape=(n, len(analysis.words)),
        dtype=np.float64,
    )
    words.sum_duplicates()
    wordlike = np.fromiter(map(is_word, analysis.words), dtype=bool, count=len(analysis.words))
    return Counts(chars, char_codes, title, title_codes, words, analysis.words, wordlike)


def _counts(
    owners: np.ndarray, columns: np.ndarray, rows: int, idf: np.ndarray, sublinear: bool
) -> sp.csr_matrix:
    """TF-IDF matrix from (row, column) occurrences; columns < 0 are unknown and dropped."""
    known = columns >= 0
    owners, columns = owners[known], columns[known]
    matrix = sp.csr_matrix(
        (np.ones(len(columns)), (owners, columns)), shape=(rows, len(idf)), dtype=np.float64
    )
    matrix.sum_duplicates()
    if sublinear:
        np.log(matrix.data, out=matrix.data)
        matrix.data += 1.0
    matrix.data *= idf[matrix.indices]
    return matrix


def _distinct_counts(
    owners: np.ndarray, values: np.ndarray, rows: int
) -> tuple[np.ndarray, sp.csr_matrix]:
    """The distinct values (sorted) and a count matrix with one column per distinct value."""
    distinct, inverse = np.unique(values, return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(len(values)), (owners, inverse.ravel())),
        shape=(rows, len(distinct)),
        dtype=np.float64,
    )
    matrix.sum_duplicates()
    return distinct, matrix


def _remap_columns(matrix: sp.csr_matrix, column: np.ndarray, width: int) -> sp.csr_matrix:
    """A new matrix with column ``j`` moved to ``column[j]``, dropped where that is -1."""
    moved = column[matrix.indices]
    mask = moved >= 0
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[mask], minlength=matrix.shape[0]), out=indptr[1:])
    return sp.csr_matrix((matrix.data[mask], moved[mask], indptr), shape=(matrix.shape[0], width))


def _keep_columns(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """A new matrix of the columns where ``keep`` is true, renumbered in order."""
    column = np.where(keep, np.cumsum(keep) - 1, -1)
    return _remap_columns(matrix, column, int(keep.sum()))


def _tfidf(counts: sp.csr_matrix, idf: np.ndarray, sublinear: bool, weight: float) -> sp.csr_matrix:
    """Counts to L2-normalised TF-IDF rows times the block's weight (in place)."""
    if sublinear:
        np.log(counts.data, out=counts.data)
        counts.data += 1.0
    counts.data *= idf[counts.indices]
    return _scale_rows(counts, weight)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class _CodeIndex:
    """An open-addressing hash table from n-gram code to column, probed with numpy.

    Looking up the million n-grams of a thousand texts this way costs about half what a binary
    search of the sorted vocabulary does. Built from the vocabulary when first needed, never
    stored with the model.
    """

    def __init__(self, vocabulary: np.ndarray):
        self.bits = max(4, len(vocabulary).bit_length() + 1)  # at most half full
        size = 1 << self.bits
        self.keys = np.zeros(size, dtype=np.uint64)  # 0 is no n-gram: an empty slot
        self.columns = np.full(size, -1, dtype=np.int64)
        slots = self._slots(vocabulary)
        pending = np.arange(len(vocabulary))
        while len(pending):
            free = self.keys[slots[pending]] == 0
            candidates = pending[free]
            # Of several codes aiming at one free slot, the first takes it; the rest probe on.
            _, first = np.unique(slots[candidates], return_index=True)
            placed = candidates[first]
            self.keys[slots[placed]] = vocabulary[placed]
            self.columns[slots[placed]] = placed
            waiting = np.ones(len(vocabulary), dtype=bool)
            waiting[placed] = False
            pending = pending[waiting[pending]]
            slots[pending] = (slots[pending] + 1) & (size - 1)

    def _slots(self, codes: np.ndarray) -> np.ndarray:
        return ((codes * _GOLDEN) >> np.uint64(64 - self.bits)).astype(np.int64)

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """Column of each code, -1 where it is not in the vocabulary."""
        result = np.full(len(codes), -1, dtype=np.int64)
        slots = self._slots(codes)
        pending = np.arange(len(codes))
        mask = len(self.keys) - 1
        while len(pending):
            at = slots[pending]
            keys = self.keys[at]
            found = keys == codes[pending]
            result[pending[found]] = self.columns[at[found]]
            pending = pending[~found & (keys != 0)]
            slots[pending] = (slots[pending] + 1) & mask
        return result


def _columns(vocabulary: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Column of each code in a sorted vocabulary, -1 where absent (binary search)."""
    if len(vocabulary) == 0:
        return np.full(len(codes), -1, dtype=np.int64)
    index = np.searchsorted(vocabulary, codes)
    index[index == len(vocabulary)] = 0
    return np.where(vocabulary[index] == codes, index, -1)


class ComplaintFeatures(TransformerMixin, BaseEstimator):
    """(subject, body) pairs to TF-IDF features in three blocks, each L2-normalised.

    ``chars``: character 1-3-grams of the whole text (seen in at least ``min_df`` texts);
    ``title``: character 1-3-grams of the title, times ``title_weight``; ``words``: words
    (jieba segmentation; English words for English), sublinear tf, times ``word_weight``.
    A weight of 0 leaves the block out. Character n-grams are counted with numpy, not a
    Python loop per n-gram.
    """

    def __init__(self, *, min_df: int = 2, title_weight: float = 0.85, word_weight: float = 1.0):
        self.min_df = min_df
        self.title_weight = title_weight
        self.word_weight = word_weight

    def fit(self, pairs: Sequence[Sequence[str]], y: Any = None) -> ComplaintFeatures:
        """Learn the vocabularies and idf weights."""
        return self.fit_analysis(analyze(pairs, words=bool(self.word_weight)))

    def transform(self, pairs: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """The feature matrix, one row per pair."""
        if not self.word_weight:
            return self.transform_analysis(analyze(pairs, words=False))
        return self.transform_analysis(analyze(pairs, vocabulary=self.word_vocabulary_))

    def fit_transform(self, pairs: Sequence[Sequence[str]], y: Any = None) -> sp.csr_matrix:
        """``fit`` and ``transform`` in one pass over the texts."""
        return self.fit_transform_analysis(analyze(pairs, words=bool(self.word_weight)))

    def fit_analysis(self, analysis: Analysis) -> ComplaintFeatures:
        """``fit`` on texts already analysed."""
        self.fit_transform_analysis(analysis)
        return self

    def fit_transform_analysis(self, analysis: Analysis) -> sp.csr_matrix:
        """Learn the vocabularies and idf weights and return the texts' matrix."""
        return self.fit_transform_counts(count(analysis))

    def fit_transform_counts(self, counts: Counts) -> sp.csr_matrix:
        """Learn the vocabularies and idf weights from counted texts; return their matrix.

        The count matrix gives both the document frequencies and, with the rare columns
        dropped, the features: no second lookup of each n-gram. What none of these texts
        has (a column of counts taken from a larger batch) is never learnt.
        """
        n = counts.size
        at_least = max(self.min_df, 1)
        df = np.bincount(counts.chars.indices, minlength=len(counts.char_codes))
        keep = df >= at_least
        self.char_vocabulary_, self.char_idf_ = counts.char_codes[keep], _idf(df[keep], n)
        blocks = [_tfidf(_keep_columns(counts.chars, keep), self.char_idf_, False, 1.0)]
        df = np.bincount(counts.title.indices, minlength=len(counts.title_codes))
        keep = df > 0
        self.title_vocabulary_, self.title_idf_ = counts.title_codes[keep], _idf(df[keep], n)
        if self.title_weight:
            title = _keep_columns(counts.title, keep)
            blocks.append(_tfidf(title, self.title_idf_, False, self.title_weight))
        df = np.bincount(counts.words.indices, minlength=len(counts.word_table))
        keep = (df >= at_least) & counts.wordlike
        learnt = itertools.compress(counts.word_table, keep)
        self.word_vocabulary_ = {word: c for c, word in enumerate(learnt)}
        self.word_idf_ = _idf(df[keep], n)
        if self.word_weight:
            words = _keep_columns(counts.words, keep)
            blocks.append(_tfidf(words, self.word_idf_, True, self.word_weight))
        return sp.hstack(blocks, format="csr")

    def transform_counts(self, counts: Counts) -> sp.csr_matrix:
        """``transform`` of counted texts: the same matrix as ``transform`` of the texts."""
        chars = _remap_columns(
            counts.chars, self._index("char").lookup(counts.char_codes), len(self.char_idf_)
        )
        blocks = [_tfidf(chars, self.char_idf_, False, 1.0)]
        if self.title_weight:
            title = _remap_columns(
                counts.title,
                self._index("title").lookup(counts.title_codes),
                len(self.title_idf_),
            )
            blocks.append(_tfidf(title, self.title_idf_, False, self.title_weight))
        if self.word_weight:
            vocabulary = self.word_vocabulary_
            column = np.fromiter(
                (vocabulary.get(w, -1) for w in counts.word_table),
                dtype=np.int64,
                count=len(counts.word_table),
            )
            words = _remap_columns(counts.words, column, len(self.word_idf_))
            blocks.append(_tfidf(words, self.word_idf_, True, self.word_weight))
        return sp.hstack(blocks, format="csr")

    def transform_analysis(self, analysis: Analysis) -> sp.csr_matrix:
        """``transform`` of texts already analysed."""
        n = analysis.size
        chars = _counts(
            analysis.char_owners,
            self._index("char").lookup(analysis.char_codes),
            n,
            self.char_idf_,
            sublinear=False,
        )
        blocks = [_scale_rows(chars, 1.0)]
        if self.title_weight:
            title = _counts(
                analysis.title_owners,
                self._index("title").lookup(analysis.title_codes),
                n,
                self.title_idf_,
                sublinear=False,
            )
            blocks.append(_scale_rows(title, self.title_weight))
        if self.word_weight:
            if analysis.word_vocabulary is not None:
                if analysis.word_vocabulary is not self.word_vocabulary_:
                    raise ValueError("texts analysed with another model's vocabulary")
                columns = analysis.word_ids
            else:
                lookup = np.array(
                    [self.word_vocabulary_.get(w, -1) for w in analysis.words], dtype=np.int64
                )
                columns = lookup[analysis.word_ids] if len(lookup) else analysis.word_ids
            words = _counts(analysis.word_owners, columns, n, self.word_idf_, sublinear=True)
            blocks.append(_scale_rows(words, self.word_weight))
        return sp.hstack(blocks, format="csr")

    def _index(self, block: str) -> _CodeIndex:
        """The hash index of a block's vocabulary, built on first use."""
        indexes = self.__dict__.setdefault("_indexes", {})
        vocabulary = getattr(self, f"{block}_vocabulary_")
        index = indexes.get(block)
        if index is None or index[0] is not vocabulary:
            index = indexes[block] = (vocabulary, _CodeIndex(vocabulary))
        return index[1]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_indexes", None)  # rebuilt from the vocabulary when needed
        return state

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Feature names in column order: ``chars:…``, ``title:…``, ``words:…``."""
        names = [f"chars:{decode_ngram(int(c))}" for c in self.char_vocabulary_]
        if self.title_weight:
            names += [f"title:{decode_ngram(int(c))}" for c in self.title_vocabulary_]
        if self.word_weight:
            names += [f"words:{w}" for w in self.word_vocabulary_]
        return np.array(names, dtype=object)
