"""Columns -> vocabularies and scalers (fit) -> a flat dict of tensors (transform)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .._schema import FeatureSchema, SequenceInput, SparseInput, TextInput
from ._bins import bin_edges
from ._roles import CATEGORICAL, NUMERIC, SEQUENCE, TEXT, check_no_bytes, column_label, infer_kind, resolve_roles
from ._sparse import SparseColumns, as_csr, check_sparse_roles
from ._text import N_BUCKETS, HashedText, text_strings
from ._vocab import Vocabulary, flatten_lists, pad


def _numeric_values(series: pd.Series, name: Any) -> np.ndarray:
    if infer_kind(series) != "numeric":
        check_no_bytes(series, name)
        # Also refuses number-like strings: the same strings at fit would have made the
        # column categorical, so parsing them here would silently change its meaning.
        raise ValueError(f"{column_label(name)} is numeric but holds {series.dtype} values that are not numbers.")
    try:
        values = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{column_label(name)} is numeric but holds values that are not numbers ({exc}).") from None
    if np.isinf(values).any():
        raise ValueError(f"{column_label(name)} holds infinite values; replace them (NaN is allowed).")
    return values


_NUMBER_KINDS = frozenset({"integer", "floating", "mixed-integer-float", "decimal"})


def _check_value_kind(series: pd.Series, vocabulary: Vocabulary, col: Any) -> None:
    """Numbers where the vocabulary holds strings (or the reverse) would all be unseen: the
    ids of a column read once as integers and once as text. Say so instead of predicting
    every row with the out-of-vocabulary embedding."""
    values = series.cat.categories if isinstance(series.dtype, pd.CategoricalDtype) else series
    if len(vocabulary) == 0 or not values.notna().any():
        return  # missing values are simply unseen
    now = pd.api.types.infer_dtype(values, skipna=True)
    # Models saved before vocabularies recorded their kind work out the fitted one here.
    fitted = getattr(vocabulary, "kind_", None) or pd.api.types.infer_dtype(vocabulary.index_, skipna=True)
    if (now == "string" and fitted in _NUMBER_KINDS) or (now in _NUMBER_KINDS and fitted == "string"):
        raise ValueError(
            f"{column_label(col)} is categorical with {fitted} values from fit but holds {now} values "
            "now, which would all be unseen; give it the type it had in fit (e.g. read ids with the same dtype)."
        )


def _scaled_stat(stat, values: np.ndarray, empty: float) -> float:
    """``stat(values)`` computed on values divided by their largest magnitude, so that huge
    values (ids near 2**64, 1e300) do not overflow to an infinite mean or scale, which would
    silently turn the column into zeros."""
    if not np.isfinite(values).any():
        return empty
    top = float(np.nanmax(np.abs(values)))
    return float(stat(values / top) * top) if top > 0 else 0.0


NUMERIC_ENCODINGS = ("piecewise", "standard")


def check_numeric_encoding(encoding: Any, n_bins: Any) -> None:
    """ValueError unless ``numeric_encoding`` / ``numeric_bins`` are valid."""
    if encoding not in NUMERIC_ENCODINGS:
        raise ValueError(f"numeric_encoding must be one of {NUMERIC_ENCODINGS}, got {encoding!r}.")
    if isinstance(n_bins, Mapping):
        return  # edges are checked per column at fit
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or not 2 <= n_bins <= 1024:
        raise ValueError(
            f"numeric_bins must be an integer in [2, 1024] or a dict of bin edges per column, got {n_bins!r}."
        )


def check_bin_edges(edges: Any, col: Any) -> np.ndarray:
    """Declared bin edges of ``col`` as a float array: finite, strictly increasing, 2 to 1025 of them."""
    try:
        array = np.asarray(edges, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"numeric_bins[{col!r}] must be a 1-D array of numbers, got {edges!r}.") from None
    if array.ndim != 1 or not 2 <= array.size <= 1025:
        raise ValueError(f"numeric_bins[{col!r}] must hold between 2 and 1025 edges, got shape {array.shape}.")
    if not np.isfinite(array).all() or np.any(np.diff(array) <= 0):
        raise ValueError(f"numeric_bins[{col!r}] must be finite and strictly increasing.")
    return array


class TabularEncoder:
    """Learn how to turn a table into the tensors the models take.

    - categorical columns: a vocabulary per column (index 1 = missing or unseen);
    - numeric columns: standardised with the training mean and standard deviation; a
      missing value becomes 0 (the training mean) and, for every column that had missing
      values during fit, a 0/1 missing-indicator column is appended. With
      ``numeric_encoding="piecewise"`` each column also gets bin edges fitted on its training
      values (:func:`~sklearn_mtr.features._bins.bin_edges`, or given per column in
      ``numeric_bins``), which the schema hands to the models in standardised units;
    - sequence columns (list-valued cells): padded id matrices plus lengths, with a vocabulary
      of their own or shared with a categorical column (then built from both columns' values);
    - text columns: hashed word uni- and bigrams weighted as TF-IDF (:class:`HashedText`,
      ``n_text_buckets`` buckets; idf fitted here);
    - a ``scipy.sparse`` X (every column numeric): each row's stored values as weighted
      column ids, each column scaled by its largest training magnitude (:class:`SparseColumns`).

    Parameters mirror the estimators' ``categorical_features``, ``sequence_features``,
    ``text_features``, ``numeric_encoding`` and ``numeric_bins``.
    """

    def __init__(
        self,
        categorical_features: Any = "from_dtype",
        sequence_features: Any = None,
        text_features: Any = None,
        n_text_buckets: int = N_BUCKETS,
        numeric_encoding: str = "standard",
        numeric_bins: Any = 32,
    ) -> None:
        self.categorical_features = categorical_features
        self.sequence_features = sequence_features
        self.text_features = text_features
        self.n_text_buckets = n_text_buckets
        self.numeric_encoding = numeric_encoding
        self.numeric_bins = numeric_bins

    def fit(self, X: pd.DataFrame | sp.spmatrix) -> TabularEncoder:
        if not isinstance(self.n_text_buckets, int) or self.n_text_buckets < 1:
            raise ValueError(f"n_text_buckets must be a positive integer, got {self.n_text_buckets!r}.")
        check_numeric_encoding(self.numeric_encoding, self.numeric_bins)
        self.sparse_ = None
        if sp.issparse(X):
            return self._fit_sparse(X)
        roles, shared = resolve_roles(X, self.categorical_features, self.sequence_features, self.text_features)
        self.roles_ = roles
        self.shared_ = shared
        self.categorical_ = [c for c, r in roles.items() if r == CATEGORICAL]
        self.numeric_ = [c for c, r in roles.items() if r == NUMERIC]
        self.sequence_ = [c for c, r in roles.items() if r == SEQUENCE]
        self.text_ = [c for c, r in roles.items() if r == TEXT]

        for col in self.categorical_:
            check_no_bytes(X[col], col)
        self.vocabularies_: dict = {c: Vocabulary(X[c]) for c in self.categorical_}
        for col in self.sequence_:
            items, _ = flatten_lists(X[col], column_label(col))
            check_no_bytes(items, col)
            target = shared[col]
            if target is None:
                self.vocabularies_[col] = Vocabulary(items)
            else:  # history items never shown as candidates must still get embeddings
                self.vocabularies_[target] = self.vocabularies_[target].merged_with(items)
        self.texts_ = {c: HashedText(self.n_text_buckets).fit(text_strings(X[c], c)) for c in self.text_}

        numeric = [_numeric_values(X[c], c) for c in self.numeric_]
        self.mean_ = np.array([_scaled_stat(np.nanmean, v, 0.0) for v in numeric])
        std = np.array([_scaled_stat(np.nanstd, v, 1.0) for v in numeric])
        self.scale_ = np.where(std > 0, std, 1.0)
        self.has_missing_ = np.array([bool(np.isnan(v).any()) for v in numeric], dtype=bool)
        self.bin_edges_ = self._fit_bin_edges(numeric) if self.numeric_encoding == "piecewise" else None

        self.schema_ = FeatureSchema(
            categorical_names=tuple(str(c) for c in self.categorical_),
            categorical_cardinalities=tuple(self.vocabularies_[c].size for c in self.categorical_),
            n_numeric=len(self.numeric_) + int(self.has_missing_.sum()),
            numeric_names=tuple(str(c) for c in self.numeric_)
            + tuple(f"{c}__missing" for c, m in zip(self.numeric_, self.has_missing_) if m),
            sequences=tuple(
                SequenceInput(
                    name=str(c),
                    vocab_size=self.vocabularies_[shared[c] if shared[c] is not None else c].size,
                    shared_with=None if shared[c] is None else str(shared[c]),
                )
                for c in self.sequence_
            ),
            texts=tuple(
                TextInput(name=str(c), vocab_size=self.texts_[c].size, deep_size=self.texts_[c].deep_size)
                for c in self.text_
            ),
            numeric_bins=None if self.bin_edges_ is None else tuple(self._standardised_edges()),
        )
        return self

    def _fit_bin_edges(self, numeric: list[np.ndarray]) -> list[np.ndarray]:
        """Each numeric column's bin edges: given in ``numeric_bins`` or fitted on its values."""
        given = self.numeric_bins if isinstance(self.numeric_bins, Mapping) else {}
        unknown = [c for c in given if c not in self.numeric_]
        if unknown:
            raise ValueError(f"numeric_bins names {unknown}, which are not numeric columns of X.")
        n_bins = 32 if isinstance(self.numeric_bins, Mapping) else self.numeric_bins
        edges = []
        for col, values in zip(self.numeric_, numeric):
            if col in given:
                edges.append(check_bin_edges(given[col], col))
            else:
                edges.append(bin_edges(values, n_bins))
        return edges

    def _standardised_edges(self):
        # computed exactly as transform standardises values, so a value on an edge stays on it
        for edges, mean, scale in zip(self.bin_edges_, self.mean_, self.scale_):
            with np.errstate(over="ignore", invalid="ignore"):
                scaled = (edges - mean) / scale
            yield tuple(float(v) for v in np.unique(scaled[np.isfinite(scaled)].astype(np.float32)))

    def _fit_sparse(self, X) -> TabularEncoder:
        check_sparse_roles(self.categorical_features, self.sequence_features, self.text_features)
        self.sparse_ = SparseColumns().fit(as_csr(X))
        self.roles_, self.shared_, self.vocabularies_, self.texts_ = {}, {}, {}, {}
        self.categorical_, self.numeric_, self.sequence_, self.text_ = [], [], [], []
        self.mean_, self.scale_, self.has_missing_ = np.zeros(0), np.ones(0), np.zeros(0, dtype=bool)
        self.bin_edges_ = None
        self.schema_ = FeatureSchema(sparse=SparseInput(n_columns=X.shape[1], deep_size=self.sparse_.deep_size))
        return self

    def transform(self, X: pd.DataFrame | sp.spmatrix) -> dict[str, torch.Tensor]:
        """Encode ``X`` (same columns as during fit) into CPU tensors."""
        batch: dict[str, torch.Tensor] = {}
        fitted_sparse = getattr(self, "sparse_", None) is not None
        if sp.issparse(X) != fitted_sparse:
            raise ValueError(
                f"X is {'a sparse' if sp.issparse(X) else 'a dense'} matrix but the model was fitted on "
                f"{'a sparse' if fitted_sparse else 'a dense'} one; pass X in the form it had in fit."
            )
        if fitted_sparse:
            ids, values = self.sparse_.transform(as_csr(X))
            return {"sparse__ids": torch.from_numpy(ids), "sparse__values": torch.from_numpy(values)}
        if self.categorical_:
            codes = np.empty((len(X), len(self.categorical_)), dtype=np.int64)
            for j, col in enumerate(self.categorical_):
                series = X[col]
                if pd.api.types.is_object_dtype(series.dtype) and infer_kind(series) == "list":
                    raise ValueError(f"{column_label(col)} is categorical but holds list values.")
                check_no_bytes(series, col)
                _check_value_kind(series, self.vocabularies_[col], col)
                codes[:, j] = self.vocabularies_[col].encode(series)
            batch["categorical"] = torch.from_numpy(codes)
        if self.numeric_:
            raw = np.column_stack([_numeric_values(X[c], c) for c in self.numeric_])
            with np.errstate(over="ignore", invalid="ignore"):
                values = (raw - self.mean_) / self.scale_
                # Near the float64 limit raw - mean can overflow although the standardised value
                # is small: those cells are computed as raw / scale - mean / scale instead.
                overflow = np.isinf(values) & np.isfinite(raw)
                if overflow.any():
                    values = np.where(overflow, raw / self.scale_ - self.mean_ / self.scale_, values)
            too_far = np.abs(np.nan_to_num(values)) > np.finfo(np.float32).max
            if too_far.any():
                # float32 would make them infinite and the predictions NaN.
                row, j = np.argwhere(too_far)[0]
                raise ValueError(
                    f"{column_label(self.numeric_[j])} holds {raw[row, j]:.4g}, more than 3.4e38 training "
                    "standard deviations from the training mean: too large to encode; check the column's scale."
                )
            missing = np.isnan(values)
            values[missing] = 0.0
            if self.has_missing_.any():
                values = np.hstack([values, missing[:, self.has_missing_]])
            batch["numeric"] = torch.from_numpy(values.astype(np.float32))
        for col in self.sequence_:
            items, lengths = flatten_lists(X[col], column_label(col))
            check_no_bytes(items, col)
            vocab = self.vocabularies_[self.shared_[col] if self.shared_[col] is not None else col]
            ids = vocab.encode(np.asarray(items, dtype=object)) if items else np.empty(0, dtype=np.int64)
            batch[f"seq__{col}"] = torch.from_numpy(pad(ids, lengths))
            batch[f"len__{col}"] = torch.from_numpy(lengths)
        for col in self.text_:
            ids, weights = self.texts_[col].transform(text_strings(X[col], col))
            batch[f"text__{col}"] = torch.from_numpy(ids)
            batch[f"weight__{col}"] = torch.from_numpy(weights)
        return batch
