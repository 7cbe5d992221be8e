"""Helpers shared by the display classes: the lazy matplotlib import and reading ``history_``."""

from __future__ import annotations

import numbers
import re

import numpy as np
from sklearn.utils.validation import check_is_fitted

_TASK_KEY = re.compile(r"^(?:train|valid)_(?:loss|auc)_(.+)$")


def import_pyplot(caller: str):
    """``matplotlib.pyplot``, imported only when something is drawn (matplotlib is optional)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller} requires matplotlib, an optional dependency. Install it with `pip install sklearn-mtr[plot]`."
        ) from exc
    return plt


def resolve_ax(ax, caller: str):
    """The axes to draw on (a new figure when ``ax`` is None) and its figure."""
    plt = import_pyplot(caller)
    if ax is None:
        _, ax = plt.subplots()
    return ax, ax.figure


def final_estimator(estimator):
    """The last step of a ``Pipeline`` (where ``history_`` and the task names live), else ``estimator``."""
    from sklearn.pipeline import Pipeline

    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def history_rows(source) -> list[dict]:
    """The per-epoch rows of a fitted estimator's ``history_``, a skorch ``History`` or a list of dicts."""
    source = final_estimator(source)
    if hasattr(source, "history_") or hasattr(source, "get_params"):
        check_is_fitted(source, "history_")
        source = source.history_
    rows = list(source)
    if not rows:
        raise ValueError("the history is empty: the estimator has not trained a single epoch.")
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError("a history must be a fitted estimator, a skorch History or a list of per-epoch dicts.")
    return rows


def history_task_names(rows: list[dict]) -> list[str]:
    """Task names, read from the ``{train,valid}_{loss,auc}_<task>`` keys in recorded order.

    skorch's ``*_best`` flags (booleans) are not tasks.
    """
    names: list[str] = []
    for row in rows:
        for key, value in row.items():
            match = _TASK_KEY.match(key)
            if match and not isinstance(value, bool) and match.group(1) not in names:
                names.append(match.group(1))
    if not names:
        raise ValueError("the history holds no per-task keys (train_loss_<task>); was it recorded by sklearn-mtr?")
    return names


def history_column(rows: list[dict], key: str) -> np.ndarray:
    """One key over the epochs as floats, NaN where an epoch did not record it."""
    values = [row.get(key, np.nan) for row in rows]
    return np.array([v if isinstance(v, numbers.Real) else np.nan for v in values], dtype=float)


def history_epochs(rows: list[dict]) -> np.ndarray:
    """Epoch numbers (1-based, as skorch counts them)."""
    return np.array([row.get("epoch", i + 1) for i, row in enumerate(rows)], dtype=int)


def check_task(task, task_names: list[str]) -> int:
    """The index of ``task``, given by name or position."""
    if isinstance(task, numbers.Integral) and not isinstance(task, bool):
        if not -len(task_names) <= task < len(task_names):
            raise ValueError(f"task index {task} is out of range for {len(task_names)} tasks {task_names}.")
        return int(task) % len(task_names)
    if task in task_names:
        return task_names.index(task)
    raise ValueError(f"unknown task {task!r}; the tasks are {task_names}.")
