"""Input validation shared by every estimator: X's columns, the task labels, and the per-task
weights of the loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_array, validate_data


class InputValidationMixin:
    """How the estimators read ``X`` and ``Y``: the same rules in fit, continuation and predict."""

    def _validate_X(self, X, reset: bool) -> pd.DataFrame | sp.csr_matrix:
        """A DataFrame whose column keys are those seen in fit, without touching the values;
        a scipy sparse X as a CSR matrix (rows are sliced from it, never densified).

        Columns are matched by label when fit was given labelled columns (a DataFrame), by
        position otherwise (an array, a sparse matrix), and for an unlabelled X at predict time.
        """
        if sp.issparse(X):
            array = check_array(X, accept_sparse="csr", dtype=None, ensure_all_finite=False)
            if array.dtype.kind not in "biuf":
                raise ValueError(f"a sparse X must hold numbers, got dtype {array.dtype}.")
            validate_data(self, array, reset=reset, skip_check_array=True)
            if reset:
                self._labelled_columns_ = False
            return array
        if isinstance(X, pd.DataFrame):
            if not X.columns.is_unique:
                raise ValueError("X has duplicate column names.")
            # checks string column names against feature_names_in_ (order included)
            validate_data(self, X, reset=reset, skip_check_array=True)
            if reset:
                self._labelled_columns_ = True
            elif getattr(self, "_labelled_columns_", False) and not hasattr(self, "feature_names_in_"):
                # feature_names_in_ covers string names only; other labels (the integers of a
                # DataFrame built from an array) are compared here, or reordered columns would be
                # read by position, silently as the wrong features.
                self._check_column_labels(list(X.columns))
            if X.shape[0] == 0:
                raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
            if X.shape[1] == 0:
                raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
            frame = X.reset_index(drop=True)
        else:
            if hasattr(X, "__dataframe__") or type(X).__module__.startswith("polars"):
                X = X.to_pandas() if hasattr(X, "to_pandas") else pd.api.interchange.from_dataframe(X)
                return self._validate_X(X, reset)
            array = check_array(X, dtype=None, ensure_all_finite=False, ensure_2d=True, accept_sparse=False)
            if array.dtype.kind == "c":
                raise ValueError("Complex data not supported.")
            validate_data(self, array, reset=reset, skip_check_array=True)
            if reset:
                self._labelled_columns_ = False
            frame = pd.DataFrame(array)
        if not reset:
            frame.columns = self._column_keys_
        return frame

    def _check_column_labels(self, columns: list) -> None:
        """Raise when the column labels of X differ from those seen in fit, as scikit-learn
        does for string feature names (a reordering included).

        Raises
        ------
        ValueError
            Naming the labels unseen in fit, those missing, or the order expected.
        """
        expected = list(self._column_keys_)
        if columns == expected:
            return
        unseen = [c for c in columns if c not in expected]
        missing = [c for c in expected if c not in columns]
        if unseen or missing:
            detail = f"unseen at fit time: {unseen[:10]}; seen at fit time, yet now missing: {missing[:10]}"
        else:
            detail = f"the same labels in another order, {columns[:10]} instead of {expected[:10]}; reorder X's columns"
        raise ValueError(f"X's column labels should match those passed during fit: {detail}.")

    def _validate_y(self, Y, first: bool, classes=None) -> tuple[np.ndarray, dict]:
        """Labels as a float ``(n, k)`` array (NaN = missing) plus what fit learns from them."""
        if Y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        if not isinstance(Y, (pd.DataFrame, pd.Series)):
            Y = np.asarray(Y)
        if isinstance(Y, pd.Series) or (not isinstance(Y, pd.DataFrame) and np.ndim(Y) == 1):
            y = np.asarray(Y)
            check_classification_targets(y)
            if type_of_target(y) != "binary":
                raise ValueError(
                    f"Only binary classification is supported. The type of the target is {type_of_target(y)}; "
                    "for several tasks pass a 2-D Y of 0/1 labels, one column per task."
                )
            labels, encoded = np.unique(y, return_inverse=True)
            if classes is not None and first:
                labels = np.unique(np.asarray(classes))
                if len(labels) != 2 or len(np.setdiff1d(np.unique(y), labels)):
                    raise ValueError(f"classes={list(labels)} must be the two labels of y.")
                encoded = np.searchsorted(labels, y)
            classes = labels
            if first and len(classes) < 2:
                raise ValueError(
                    f"y contains only one class ({classes[0]!r}); the classifier needs samples of 2 classes."
                )
            if not first and not self.binary_:
                raise ValueError(
                    f"y is 1-D but the estimator was fitted with a 2-D Y of {self.n_tasks_} task(s); "
                    "pass Y with one column per task."
                )
            if not first:
                unknown = np.setdiff1d(classes, self.classes_)
                if len(unknown):
                    raise ValueError(
                        f"y contains labels {unknown.tolist()} not seen in the first fit: {self.classes_.tolist()}."
                    )
                encoded = np.searchsorted(self.classes_, y)
                classes = self.classes_
            # a named Series keeps its name (history_ keys, reports); on continuation the first name stays
            name = str(Y.name) if isinstance(Y, pd.Series) and Y.name is not None else ""
            name = name or "y"  # an unnamed or ""-named Series
            names = np.array([name], dtype=object) if first else self.task_names_
            info = {"binary_": True, "classes_": classes, "task_names_": names}
            return encoded.astype(np.float32).reshape(-1, 1), info

        if not isinstance(Y, pd.DataFrame) and Y.ndim != 2:
            raise ValueError(f"Y must be 1-D (one binary task) or 2-D (n_samples, n_tasks); got shape {Y.shape}.")
        frame = Y if isinstance(Y, pd.DataFrame) else pd.DataFrame(Y)
        if frame.shape[1] == 0:
            raise ValueError(f"Y must be 1-D (one binary task) or 2-D (n_samples, n_tasks); got shape {np.shape(Y)}.")
        if isinstance(Y, pd.DataFrame):
            names = np.array([str(c) for c in Y.columns], dtype=object)
            # the names key history_, the reports and the CLI's output columns
            repeated = sorted({c for c in names if list(names).count(c) > 1})
            if repeated:
                raise ValueError(f"Y's column names must be unique, one per task; {repeated} appear more than once.")
        else:
            names = np.array([f"task{k}" for k in range(frame.shape[1])], dtype=object)
        values = np.empty(frame.shape, dtype=np.float32)
        for k in range(frame.shape[1]):
            col = task_label_values(frame.iloc[:, k], f"task {names[k]!r}")
            if first and np.isnan(col).all():
                raise ValueError(f"task {names[k]!r} has no label at all (every value is missing).")
            values[:, k] = col
        if not first:
            if values.shape[1] != self.n_tasks_ or self.binary_:
                raise ValueError(
                    f"Y has {values.shape[1]} task(s) but the estimator was fitted with {self.n_tasks_}"
                    + (" as a binary classifier (1-D y)." if self.binary_ else ".")
                )
            if isinstance(Y, pd.DataFrame) and list(names) != list(self.task_names_):
                raise ValueError(f"Y's columns {list(names)} differ from the fitted tasks {list(self.task_names_)}.")
            names = self.task_names_
        info = {
            "binary_": False,
            "classes_": [np.array([0, 1]) for _ in range(values.shape[1])],
            "task_names_": names,
        }
        return values, info

    def _pos_weight_tensor(self, n_tasks: int) -> torch.Tensor | None:
        """Per-task weight of the positive term of the loss; None (plain BCE) unless an
        estimator with a ``pos_weight`` parameter overrides this (ResFlow)."""
        return None

    def _task_weight_tensor(self, n_tasks: int) -> torch.Tensor:
        if self.task_weights is None:
            return torch.ones(n_tasks)
        return per_task_tensor(self.task_weights, n_tasks, "task_weights", allow_zero=True, broadcast=False)


def per_task_tensor(value, n_tasks: int, name: str, *, allow_zero: bool, broadcast: bool) -> torch.Tensor:
    """``value`` as ``n_tasks`` finite weights, one per task (one number repeated when
    ``broadcast``), non-negative or positive.

    Raises
    ------
    ValueError
        Naming ``name``, what it must be and the value.
    """
    weights = np.asarray(value, dtype=np.float64).ravel()
    if broadcast and weights.shape == (1,):
        weights = np.repeat(weights, n_tasks)
    if (
        weights.shape != (n_tasks,)
        or not np.all(np.isfinite(weights))
        or np.any(weights < 0 if allow_zero else weights <= 0)
    ):
        sign = "non-negative" if allow_zero else "positive"
        count = f"a {sign} number or {n_tasks} of them" if broadcast else f"{n_tasks} {sign} numbers"
        raise ValueError(f"{name} must be {count}, one per task; got {value!r}.")
    if not weights.any():  # zero loss: nothing would be learnt
        raise ValueError(f"{name} must give at least one task a positive weight; got {value!r}.")
    return torch.tensor(weights, dtype=torch.float32)


def task_label_values(column, what: str) -> np.ndarray:
    """One task's labels as float64, NaN where missing: the rule for every column of a 2-D
    ``Y`` (0/1 numbers, no text, not mapped from two other values; a 1-D ``y`` alone may hold
    any two labels). ``what`` names the column in errors (``"task 'click'"``).

    Raises
    ------
    ValueError
        When the column holds text or numbers other than 0 and 1.
    """
    column = pd.Series(np.asarray(column, dtype=object) if not isinstance(column, pd.Series) else column)
    try:
        values = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        present = column[column.notna()]
        numeric = pd.to_numeric(present, errors="coerce")
        examples = list(dict.fromkeys(present[numeric.isna()].head(1000).tolist()))[:3]
        raise ValueError(
            f"{what} holds non-numeric labels ({', '.join(repr(v) for v in examples)}); each task's labels must be "
            "0/1 numbers (NaN or empty = missing)."
        ) from None
    bad = np.setdiff1d(np.unique(values[~np.isnan(values)]), [0.0, 1.0])
    if len(bad):
        raise ValueError(f"{what} holds labels {bad[:5].tolist()}; each task must be binary 0/1 (NaN = missing).")
    return values
