"""Vocabularies: values seen during fit -> embedding indices."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .._schema import N_RESERVED, OOV_INDEX, PAD_INDEX
from ._roles import is_list_like_cell, is_missing_cell


class Vocabulary:
    """Maps known values to ``N_RESERVED..`` and anything else (unseen, missing) to ``OOV_INDEX``.

    Parameters
    ----------
    values : iterable
        Training values; missing values are ignored.
    """

    def __init__(self, values: Iterable) -> None:
        if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
            # Every declared category, seen in this data or not: a dtype declared up front
            # fixes the vocabulary for data that arrives in chunks (partial_fit), and no
            # row needs hashing.
            uniques = values.cat.categories
        else:
            if not isinstance(values, (pd.Series, np.ndarray)):
                values = list(values)
            uniques = pd.unique(pd.Series(values, dtype=object).dropna())
        index = pd.Index(uniques, dtype=object)
        # Sorted order makes the table independent of row order; values of mixed types that
        # do not compare (strings and numbers) are ordered by type name, then text.
        try:
            index = index.sort_values()
        except TypeError:
            index = pd.Index(sorted(index, key=lambda v: (type(v).__name__, str(v))), dtype=object)
        self.index_ = index
        # pandas' name for the kind of values ("string", "integer", "mixed", ...), checked
        # against what predict receives (TabularEncoder) without rescanning the vocabulary.
        self.kind_ = pd.api.types.infer_dtype(index, skipna=True)

    def __len__(self) -> int:
        return len(self.index_)

    @property
    def size(self) -> int:
        """Embedding table size, reserved indices included."""
        return len(self.index_) + N_RESERVED

    def encode(self, values: np.ndarray | pd.Series) -> np.ndarray:
        if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
            # Map the (few) categories once, then index by the integer codes.
            lookup = self.encode(np.asarray(values.cat.categories, dtype=object))
            codes = values.cat.codes.to_numpy()
            return (
                np.where(codes < 0, OOV_INDEX, lookup[np.maximum(codes, 0)])
                if len(lookup)
                else np.full(len(codes), OOV_INDEX)
            )
        codes = self.index_.get_indexer(pd.Index(np.asarray(values, dtype=object)))
        return np.where(codes < 0, OOV_INDEX, codes + N_RESERVED).astype(np.int64)

    def merged_with(self, values: Iterable) -> Vocabulary:
        return Vocabulary(list(self.index_) + list(values))


def flatten_lists(series: pd.Series, label: str) -> tuple[list, np.ndarray]:
    """All items of a list-valued column, and the length of each cell (missing = empty)."""
    items: list = []
    lengths = np.zeros(len(series), dtype=np.int64)
    for i, cell in enumerate(series.to_numpy()):
        if is_list_like_cell(cell):
            cell = list(cell)
            items.extend(cell)
            lengths[i] = len(cell)
        elif not is_missing_cell(cell):
            raise ValueError(f"{label} is a sequence feature but row {i} holds {cell!r}, not a list.")
    return items, lengths


def pad(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Left-aligned ``(n, max_len)`` matrix of ids, ``PAD_INDEX`` after each row's end."""
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    out = np.full((len(lengths), width), PAD_INDEX, dtype=np.int64)
    mask = np.arange(width)[None, :] < lengths[:, None]
    out[mask] = ids
    return out
