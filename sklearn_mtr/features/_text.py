"""Text columns -> hashed word uni- and bigrams weighted like TF-IDF.

Each text becomes a bag of terms (lower-cased ``\\w+`` words and pairs of adjacent words)
hashed with sklearn's :class:`~sklearn.feature_extraction.text.HashingVectorizer`
(MurmurHash3, the same bucket on every machine and Python process). A term's weight is
``(1 + log tf) * idf``, the idf being fitted on the training rows, and each row's weights are
l2-normalised: the vector ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)`` gives,
up to hash collisions. The models sum a learned vector per term with these weights (deep
path) and read the same bag linearly into each task's logit (wide path).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import HashingVectorizer

from .._schema import PAD_INDEX
from ._roles import column_label

#: Hash buckets of the word uni- and bigrams of a text column.
N_BUCKETS = 2**18
#: Terms kept per text (its heaviest ones): bounds the padded ``(n, width)`` encoding.
MAX_TERMS = 256


def text_strings(series: pd.Series, col: Any) -> list[str]:
    """The column's cells as strings (a missing value is an empty text), or a ValueError."""
    values = series.to_numpy(dtype=object)
    missing = pd.isna(values)
    out = []
    for value, gone in zip(values, missing):
        if gone:
            out.append("")
        elif isinstance(value, str):
            out.append(value)
        else:
            raise ValueError(
                f"{column_label(col)} is a text feature but holds {value!r} "
                f"(expected a string, got {type(value).__name__})."
            )
    return out


def pad_rows(indptr: np.ndarray, ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR-style rows -> left-aligned ``(n, width)`` ids (``PAD_INDEX`` after the end) and
    float32 weights (0 there); ``width`` is the longest row, at least 1."""
    lengths = np.diff(indptr)
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    out_ids = np.full((len(lengths), width), PAD_INDEX, dtype=np.int64)
    out_w = np.zeros((len(lengths), width), dtype=np.float32)
    mask = np.arange(width)[None, :] < lengths[:, None]
    out_ids[mask] = ids
    out_w[mask] = weights
    return out_ids, out_w


class HashedText:
    """Fit the idf of one text column's hashed terms; encode texts as weighted term ids.

    Only the buckets seen in fit get an id (``1..size - 1``, 0 is padding), so the models'
    tables hold those rows only, not ``n_buckets``; terms of other buckets are dropped, as
    :class:`~sklearn.feature_extraction.text.TfidfVectorizer` drops words outside its
    vocabulary. The terms are fixed by the first fit (``partial_fit`` keeps them).

    Parameters
    ----------
    n_buckets : int, default=N_BUCKETS
        Hash buckets of the terms.
    max_terms : int, default=MAX_TERMS
        Terms kept per text, the heaviest ones (after normalisation over all of them).
    """

    def __init__(self, n_buckets: int = N_BUCKETS, max_terms: int = MAX_TERMS) -> None:
        self.n_buckets = n_buckets
        self.max_terms = max_terms

    def _counts(self, texts: list[str]):
        vectorizer = HashingVectorizer(
            n_features=self.n_buckets,
            ngram_range=(1, 2),
            token_pattern=r"(?u)\w+",  # the tokeniser of the other text paths: single letters count
            lowercase=True,
            alternate_sign=False,
            norm=None,
            dtype=np.float64,
        )
        counts = vectorizer.transform(texts).tocsr()
        counts.sort_indices()
        return counts

    def fit(self, texts: list[str]) -> HashedText:
        counts = self._counts(texts)
        df = np.bincount(counts.indices, minlength=self.n_buckets)
        self.buckets_ = np.flatnonzero(df).astype(np.int64)
        # smooth idf, as TfidfVectorizer's default
        self.idf_ = (np.log((1.0 + len(texts)) / (1.0 + df[self.buckets_])) + 1.0).astype(np.float64)
        return self

    @property
    def size(self) -> int:
        """Table size: the seen buckets plus the padding id."""
        return len(self.buckets_) + 1

    def transform(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Padded term ids ``(n, width)`` int64 and their weights ``(n, width)`` float32."""
        counts = self._counts(texts)
        pos = np.searchsorted(self.buckets_, counts.indices)
        pos_c = np.minimum(pos, max(len(self.buckets_) - 1, 0))
        known = (pos < len(self.buckets_)) & (self.buckets_[pos_c] == counts.indices) if len(self.buckets_) else pos < 0
        weights = (1.0 + np.log(counts.data)) * np.where(known, self.idf_[pos_c] if len(self.idf_) else 0.0, 0.0)
        ids = pos_c + 1
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        norms = np.sqrt(np.bincount(rows, weights=weights**2, minlength=counts.shape[0]))
        weights = weights / np.where(norms > 0, norms, 1.0)[rows]
        # drop unseen terms; keep each row's heaviest max_terms (stable: ties keep bucket order)
        order = np.lexsort((-weights, rows))
        rank = np.arange(len(order)) - np.repeat(counts.indptr[:-1], np.diff(counts.indptr))
        keep = known[order] & (rank < self.max_terms)
        order = order[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[order], minlength=counts.shape[0]))])
        return pad_rows(indptr, ids[order], weights[order])
