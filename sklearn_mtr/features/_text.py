"""Text columns -> hashed word uni- and bigrams weighted like TF-IDF.

Each text becomes a bag of terms (lower-cased ``\\w+`` words and pairs of adjacent words)
hashed with sklearn's :class:`~sklearn.feature_extraction.text.HashingVectorizer`
(MurmurHash3, the same bucket on every machine and Python process). A term's weight is
``(1 + log tf) * idf``, the idf being fitted on the training rows, and each row's weights are
l2-normalised: the vector ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)`` gives,
up to hash collisions. The models read the bag linearly into each task's logit (wide path:
every term) and sum a learned vector per term with these weights (deep path: the terms of at
least :data:`DEEP_MIN_DF` training texts, which get the ids ``1 .. deep_size - 1``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import HashingVectorizer

from .._schema import PAD_INDEX
from ._roles import check_no_bytes, column_label

#: Hash buckets of the word uni- and bigrams of a text column.
N_BUCKETS = 2**18
#: Terms kept per text (its heaviest ones): bounds the padded ``(n, width)`` encoding.
MAX_TERMS = 256
#: Training texts a term must occur in to get a deep vector. Adam moves a rare term's vector a
#: full step whenever the term is seen, so the deep path memorises rare terms within 2-3
#: epochs while the wide path is still learning. On the clothing-reviews data (17k training
#: texts, 136k seen terms), MMoE's test AUC was best with the 2.4k terms of 100 texts or more
#: among thresholds 1, 5, 20, 100, 300, 1000 and none at all (benchmarks/text_deep_min_df.py).
#: Rare terms still reach the logits through the wide path, as in TF-IDF + a linear model.
DEEP_MIN_DF = 100


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
            check_no_bytes([value], col)
            raise ValueError(
                f"{column_label(col)} is a text feature but holds {value!r} "
                f"(expected a string, got {type(value).__name__})."
            )
    return out


def frequent_first_ids(counts: np.ndarray, min_count: int | None = None) -> tuple[np.ndarray, int]:
    """Ids ``1..len(counts)`` for items seen in ``counts[i]`` training rows: those of at least
    ``min_count`` rows (default :data:`DEEP_MIN_DF`) first, each group in its given order; and
    how many there are. The models give deep vectors to the ids below that number plus 1."""
    frequent = np.asarray(counts) >= (DEEP_MIN_DF if min_count is None else min_count)
    n_frequent = int(frequent.sum())
    ids = np.empty(len(frequent), dtype=np.int64)
    ids[frequent] = np.arange(1, n_frequent + 1)
    ids[~frequent] = np.arange(n_frequent + 1, len(frequent) + 1)
    return ids, n_frequent


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
    vocabulary. The terms are fixed by the first fit (``partial_fit`` keeps them). Terms of at
    least ``deep_min_df`` training texts come first (ids ``1 .. deep_size - 1``, in bucket
    order), then the rarer ones: the models give deep vectors to the first ones only.

    Parameters
    ----------
    n_buckets : int, default=N_BUCKETS
        Hash buckets of the terms.
    max_terms : int, default=MAX_TERMS
        Terms kept per text, the heaviest ones (after normalisation over all of them).
    deep_min_df : int or None, default=None
        Training texts a term must occur in to be among the first ids; None: :data:`DEEP_MIN_DF`.
    """

    def __init__(self, n_buckets: int = N_BUCKETS, max_terms: int = MAX_TERMS, deep_min_df: int | None = None) -> None:
        self.n_buckets = n_buckets
        self.max_terms = max_terms
        self.deep_min_df = deep_min_df

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
        self.ids_, self.n_deep_terms_ = frequent_first_ids(df[self.buckets_], self.deep_min_df)
        return self

    @property
    def deep_size(self) -> int:
        """Size of the deep tables: the terms of at least ``deep_min_df`` texts plus padding."""
        return self.n_deep_terms_ + 1

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
        # no term seen in fit: nothing to look up, and every term is dropped below
        ids = self.ids_[pos_c] if len(self.buckets_) else pos_c
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
