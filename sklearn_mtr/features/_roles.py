"""Deciding what each input column is: categorical, numeric, sequence or text."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

CATEGORICAL = "categorical"
NUMERIC = "numeric"
SEQUENCE = "sequence"
TEXT = "text"

# A string column made categorical only because it holds strings is reported as free text when
# - more than half of its non-missing values are distinct: ids of users, items or titles in an
#   interaction log repeat (a user or an item has several rows), a review or a query rarely does;
# - it has more than 50 distinct values: below that an embedding per value is cheap and a small
#   table's short string column is simply a categorical with few levels;
# - most distinct values hold several words (whitespace): ids and codes ("u123", UUIDs, SKUs) do
#   not, so a unique id column is not mistaken for text.
FREE_TEXT_MIN_DISTINCT = 50
FREE_TEXT_MIN_DISTINCT_SHARE = 0.5
# Distinct values looked at for the word test (enough for a majority, bounded on huge columns).
_FREE_TEXT_SAMPLE = 1000


def column_label(name: Any) -> str:
    """How error messages name a column: its name, or its position for arrays."""
    return f"column {name}" if isinstance(name, (int, np.integer)) else f"column {name!r}"


def check_no_bytes(values, col: Any) -> None:
    """Refuse ``bytes`` values (in a column, a categorical's categories, or a sequence's items).

    ``b"a"`` and ``"a"`` are different keys: a column read as bytes in one call and as text in
    another (a parquet or database reader's choice) would be all unseen, silently, and model
    files store text, not bytes. Decoding is the user's one-line fix, so it is asked for.

    Raises
    ------
    ValueError
        Naming the column, an example value and how to decode it.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        values = values.cat.categories
    elif isinstance(values, pd.Series) and not pd.api.types.is_object_dtype(values.dtype):
        return  # numbers, pandas strings: no bytes
    kind = pd.api.types.infer_dtype(values, skipna=True)  # one pass in C; a Python scan only when mixed
    if kind != "bytes" and not kind.startswith("mixed"):
        return
    example = next((v for v in values if isinstance(v, (bytes, bytearray))), None)
    if example is not None:
        raise ValueError(
            f"{column_label(col)} holds bytes values (such as {example!r}); decode them to text first, "
            f"e.g. X[{col!r}] = X[{col!r}].str.decode('utf-8') (list cells: decode each item)."
        )


def is_list_like_cell(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray, pd.Series))


def is_missing_cell(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def infer_kind(series: pd.Series) -> str:
    """Classify a column's content: 'category', 'string', 'list', 'numeric' or 'other'."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        if pd.api.types.is_complex_dtype(dtype):
            return "other"
        return "numeric"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "string"  # pandas 3 `str` dtype and StringDtype
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("string", "unicode"):
            return "string"
        if inferred in ("integer", "floating", "mixed-integer-float", "boolean", "decimal"):
            return "numeric"
        if inferred == "empty":
            return "numeric"
        # 'mixed' covers list cells and odd objects: look at the values themselves.
        non_missing = [v for v in series.to_numpy() if not is_list_like_cell(v) and not is_missing_cell(v)]
        if any(is_list_like_cell(v) for v in series.to_numpy()):
            return "list"
        if non_missing and all(
            isinstance(v, (str, int, float, np.integer, np.floating, bool, np.bool_)) for v in non_missing
        ):
            return "string" if any(isinstance(v, str) for v in non_missing) else "numeric"
        return "other"
    return "other"


def looks_like_free_text(series: pd.Series) -> bool:
    """Whether a string column's values are mostly distinct, many and made of several words."""
    values = series.dropna()
    distinct = pd.unique(values.to_numpy(dtype=object))
    if len(distinct) <= FREE_TEXT_MIN_DISTINCT or len(distinct) <= FREE_TEXT_MIN_DISTINCT_SHARE * len(values):
        return False
    sample = distinct[:_FREE_TEXT_SAMPLE]
    several_words = sum(isinstance(v, str) and len(v.split()) > 1 for v in sample)
    return several_words > len(sample) / 2


def warn_free_text(X: pd.DataFrame, columns: list) -> None:
    """Warn about each of ``columns`` (string columns made categorical without being named)
    that :func:`looks_like_free_text`: an embedding per distinct text learns next to nothing."""
    for col in columns:
        if looks_like_free_text(X[col]):
            values = X[col].dropna()
            warnings.warn(
                f"{column_label(col)} looks like free text ({values.nunique()} distinct values in "
                f"{len(values)} non-missing rows, most of several words) but is categorical because it holds "
                f"strings: an embedding per distinct value learns little. Pass text_features=[{col!r}] "
                "(--text-features on the command line) to use its words, or name it in "
                "categorical_features=[...] to keep it categorical without this warning.",
                UserWarning,
                stacklevel=2,
            )


def _select(spec: Any, columns: list, param: str, allow_mask: bool) -> list:
    """Turn a mask / indices / names specification into a list of column keys."""
    if isinstance(spec, str):
        spec = [spec]
    values = list(spec)
    if not values:
        return []
    n = len(columns)
    if allow_mask and all(isinstance(v, (bool, np.bool_)) for v in values):
        if len(values) != n:
            raise ValueError(f"{param} as a boolean mask has {len(values)} entries but X has {n} columns.")
        return [c for c, keep in zip(columns, values) if keep]
    selected = []
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{param} mixes booleans with other values: {spec!r}.")
        if isinstance(v, (int, np.integer)):
            if not -n <= v < n:
                raise ValueError(f"{param} holds index {v}, out of range for X with {n} columns.")
            selected.append(columns[int(v)])
        elif isinstance(v, str):
            if all(isinstance(c, (int, np.integer)) for c in columns):
                raise ValueError(
                    f"{param} names column {v!r}, but X has no column names; pass a pandas "
                    "DataFrame or use integer indices."
                )
            if v not in columns:
                raise ValueError(f"{param} names column {v!r}, which is not in X.")
            selected.append(v)
        else:
            raise ValueError(f"{param} holds {v!r}; expected column names, indices or a boolean mask.")
    if len(set(selected)) != len(selected):
        raise ValueError(f"{param} names a column twice: {spec!r}.")
    return selected


def resolve_roles(
    X: pd.DataFrame,
    categorical_features: Any,
    sequence_features: Any,
    text_features: Any,
) -> tuple[dict, dict]:
    """Assign a role to every column of ``X``.

    Returns
    -------
    roles : dict
        Column key -> one of ``"categorical"``, ``"numeric"``, ``"sequence"``, ``"text"``.
    shared : dict
        Sequence column key -> categorical column key whose vocabulary it shares (or None).
    """
    columns = list(X.columns)
    roles: dict = {}
    shared: dict = {}

    if sequence_features is not None:
        if isinstance(sequence_features, Mapping):
            seq_cols = _select(list(sequence_features), columns, "sequence_features", allow_mask=False)
            targets = list(sequence_features.values())
        else:
            seq_cols = _select(sequence_features, columns, "sequence_features", allow_mask=False)
            targets = [None] * len(seq_cols)
        for col, target in zip(seq_cols, targets):
            if target is not None:
                target = _select([target], columns, f"sequence_features[{col!r}]", allow_mask=False)[0]
            roles[col] = SEQUENCE
            shared[col] = target

    if text_features is not None:
        for col in _select(text_features, columns, "text_features", allow_mask=False):
            if col in roles:
                raise ValueError(f"{column_label(col)} is given both as a sequence and a text feature.")
            roles[col] = TEXT

    kinds = {c: infer_kind(X[c]) for c in columns if c not in roles}

    if categorical_features is None:
        explicit: list = []
    elif isinstance(categorical_features, str) and categorical_features == "from_dtype":
        explicit = [c for c, k in kinds.items() if k in ("category", "string")]
        # string columns only: a pandas category dtype is a declaration, as a named column is
        warn_free_text(X, [c for c in explicit if kinds[c] == "string"])
    elif isinstance(categorical_features, str):
        explicit = _select([categorical_features], columns, "categorical_features", allow_mask=False)
    else:
        try:
            spec = list(np.asarray(categorical_features, dtype=object).ravel())
        except Exception as exc:  # pragma: no cover - defensive
            raise ValueError(f"categorical_features={categorical_features!r} is not understood.") from exc
        explicit = _select(spec, columns, "categorical_features", allow_mask=True)

    for col in explicit:
        if col in roles:
            raise ValueError(f"{column_label(col)} is given both as categorical and as a {roles[col]} feature.")
        if kinds[col] == "list":
            raise ValueError(
                f"{column_label(col)} holds list values and cannot be categorical; pass it in sequence_features."
            )
        roles[col] = CATEGORICAL

    for col, kind in kinds.items():
        if col in roles:
            continue
        if kind == "list":
            raise ValueError(f"{column_label(col)} holds list values; pass it in sequence_features.")
        if kind in ("string", "category"):
            raise ValueError(
                f"{column_label(col)} holds strings or categories but is not declared categorical; "
                "add it to categorical_features (or text_features), or use categorical_features='from_dtype'."
            )
        if kind == "other":
            check_no_bytes(X[col], col)
            raise ValueError(
                f"{column_label(col)} has dtype {X[col].dtype} with values that are neither numbers, "
                "strings nor lists; it cannot be used as a feature."
            )
        roles[col] = NUMERIC

    for col, target in shared.items():
        if target is not None and roles.get(target) != CATEGORICAL:
            raise ValueError(
                f"sequence_features maps {column_label(col)} to {column_label(target)}, which is not a "
                "categorical feature; a sequence can only share a categorical column's vocabulary."
            )
    return {c: roles[c] for c in columns}, shared
