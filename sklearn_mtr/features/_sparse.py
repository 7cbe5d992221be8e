"""A ``scipy.sparse`` X -> the stored values of each row as weighted column ids.

A sparse X (a ``TfidfVectorizer`` or ``OneHotEncoder`` in a ``ColumnTransformer``, say) is
never densified: each row becomes the ids of its stored columns and their values, which the
models read as a weighted sum of learned column vectors (a sparse product with an
``(n_columns, embedding_dim)`` table) and linearly into each task's logit.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._text import frequent_first_ids, pad_rows

# The padded (n, widest row) encoding may hold this many cells whatever the rows' spread;
# beyond it, at most _MAX_PADDING times the stored values (one row far wider than the others
# would otherwise make every row as wide).
_FREE_CELLS = 1 << 24
_MAX_PADDING = 8


def _named_columns_error(parameter: str, value) -> ValueError:
    return ValueError(
        f"{parameter}={value!r} needs named or typed columns, but X is a scipy sparse matrix, whose "
        f"columns are all numeric; leave {parameter} at its default, or encode that column in the "
        "ColumnTransformer that builds X (OneHotEncoder, TfidfVectorizer)."
    )


def check_sparse_roles(categorical_features, sequence_features, text_features) -> None:
    """Refuse the column-role parameters a sparse X cannot honour, naming the parameter."""
    if isinstance(categorical_features, str) and categorical_features == "from_dtype":
        pass
    elif categorical_features is not None:
        mask = np.asarray(categorical_features)
        if not (mask.size == 0 or (mask.dtype == bool and not mask.any())):
            raise _named_columns_error("categorical_features", categorical_features)
    for name, value in (("sequence_features", sequence_features), ("text_features", text_features)):
        if value is not None and len(value):
            raise _named_columns_error(name, value)


def as_csr(X) -> sp.csr_matrix:
    """``X`` as a float64 CSR matrix with finite values, or a ValueError naming the problem."""
    X = sp.csr_matrix(X, dtype=np.float64)  # a copy only when the format or dtype differs
    if X.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    bad = ~np.isfinite(X.data)
    if bad.any():
        what = "NaN" if np.isnan(X.data[bad]).any() else "infinite values"
        first = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(X.indptr, first, side="right") - 1)
        raise ValueError(
            f"X is a sparse matrix holding {what} (first at row {row}, column {int(X.indices[first])}); "
            "a sparse X must hold finite values (an unstored cell is 0): impute missing values first."
        )
    return X


class SparseColumns:
    """Scale a sparse X's columns by their largest training magnitude and encode rows as
    padded ``(n, width)`` column ids (column ``j`` -> ``ids_[j]``; 0 is padding) and values.

    Columns stored in at least :data:`~._text.DEEP_MIN_DF` training rows get the first ids
    (``1 .. deep_size - 1``, in column order), the models' deep vectors; rarer columns (a
    rare word of a ``TfidfVectorizer``, a rare level of a ``OneHotEncoder``) are read by the
    wide path only, as rare text terms are.

    Scaling by the maximum absolute value (as :class:`~sklearn.preprocessing.MaxAbsScaler`)
    keeps the zeros zero and every value in ``[-1, 1]`` on the training rows. Padded per-row
    arrays were chosen over flat indices and offsets because the training data set slices
    every input by rows; their size is bounded (see :meth:`transform`).
    """

    def fit(self, X: sp.csr_matrix) -> SparseColumns:
        self.n_columns_ = X.shape[1]
        top = np.zeros(X.shape[1])
        np.maximum.at(top, X.indices, np.abs(X.data))
        self.scale_ = np.where(top > 0, top, 1.0)
        self.ids_, self.n_deep_columns_ = frequent_first_ids(np.bincount(X.indices, minlength=X.shape[1]))
        return self

    @property
    def deep_size(self) -> int:
        """Size of the deep table: the columns stored in at least ``DEEP_MIN_DF`` training rows
        plus padding."""
        return self.n_deep_columns_ + 1

    def transform(self, X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        if X.shape[1] != self.n_columns_:
            raise ValueError(f"X has {X.shape[1]} features, but the model was fitted with {self.n_columns_}.")
        lengths = np.diff(X.indptr)
        width = int(lengths.max()) if len(lengths) else 0
        cells = X.shape[0] * width
        if cells > _FREE_CELLS and cells > _MAX_PADDING * max(X.nnz, 1):
            row = int(np.argmax(lengths))
            raise ValueError(
                f"X's row {row} stores {width} values while rows store {X.nnz / X.shape[0]:.1f} on average: "
                f"padded to the widest row, the sparse encoding would hold {cells} cells. Limit the values "
                "per row (e.g. max_features of the vectorizer) or fit on smaller chunks (partial_fit)."
            )
        values = X.data / self.scale_[X.indices]
        return pad_rows(X.indptr, self.ids_[X.indices], values)
