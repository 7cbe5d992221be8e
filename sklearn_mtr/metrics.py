"""Metrics and scorers for multi-task binary classification.

Conventions
-----------
``Y_true`` has shape ``(n_samples, n_tasks)`` and holds 0/1 labels, with NaN
for a missing label (a row that is not labelled for that task); a 1-D array is
read as a single task. ``Y_score`` has the same shape and holds probabilities
(scores are enough for the AUC metrics). Every metric masks the missing labels
task by task.

Scorers
-------
:data:`mean_auc_scorer`, :data:`mean_log_loss_scorer` and :data:`gauc_scorer`
can be passed as ``scoring`` to :class:`~sklearn.model_selection.GridSearchCV`,
:func:`~sklearn.model_selection.cross_val_score` and friends. They call
``predict_proba`` and accept both a multi-task ``(n_samples, n_tasks)`` output
and the ``(n_samples, 2)`` output of a single binary task. When ``Y`` has missing
labels, pass an explicit splitter such as ``cv=KFold(5)``: with ``cv=5``
scikit-learn checks ``Y`` for stratification and rejects the NaN.

.. warning::
   scikit-learn's built-in ``"neg_log_loss"`` scorer is wrong for multilabel
   (multi-task) output. :func:`sklearn.metrics.log_loss` treats the tasks as the
   classes of a single multiclass problem: older scikit-learn releases renormalise
   each row of ``predict_proba`` to sum to one, and recent ones (1.9 included) warn
   that the rows do not sum to one and then score ``-sum_k y_k log p_k``, which
   drops the ``(1 - y_k) log(1 - p_k)`` terms of every negative label. Either way
   it is not the binary cross-entropy of the tasks. Use
   :data:`mean_log_loss_scorer`, which averages the binary cross-entropy of each
   task. The built-in scorers also keep only one column of ``predict_proba`` when
   a two-task estimator reports ``classes_ == [0, 1]`` (as
   :class:`~sklearn.neural_network.MLPClassifier` does), because scikit-learn then
   takes the problem for a binary one; the scorers of this module read
   ``predict_proba`` themselves and do not have that problem.
"""

from __future__ import annotations

import inspect
from numbers import Real

import numpy as np
import pandas as pd
import sklearn
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sklearn.utils.metadata_routing import MetadataRequest

__all__ = [
    "gauc_scorer",
    "group_auc_score",
    "mean_auc_scorer",
    "mean_group_auc_score",
    "mean_log_loss",
    "mean_log_loss_scorer",
    "mean_roc_auc_score",
    "per_task_log_loss",
    "per_task_roc_auc",
    "weighted_recall_at_k",
]


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def _as_float_array(values, name):
    """Array of float, with pandas missing values (pd.NA, None) turned into NaN."""
    if isinstance(values, (pd.DataFrame, pd.Series)):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got an error: {exc}") from exc


def _check_targets(Y_true, Y_score):
    """Validate labels and scores; return 2-D float arrays and whether input was 1-D."""
    Y_true = _as_float_array(Y_true, "Y_true")
    Y_score = _as_float_array(Y_score, "Y_score")
    true_shape, score_shape = Y_true.shape, Y_score.shape
    if Y_true.ndim not in (1, 2) or Y_score.ndim not in (1, 2):
        raise ValueError(f"Y_true and Y_score must be 1-D or 2-D, got shapes {true_shape} and {score_shape}.")
    one_d = Y_true.ndim == 1
    if Y_true.ndim == 1:
        Y_true = Y_true[:, None]
    if Y_score.ndim == 1:
        Y_score = Y_score[:, None]
    if Y_true.shape != Y_score.shape:
        hint = ""
        if one_d and Y_score.shape[1] == 2:
            hint = " For the predict_proba output of a binary classifier, pass its second column, Y_score[:, 1]."
        raise ValueError(
            f"Y_true and Y_score have inconsistent shapes: Y_true has shape "
            f"{true_shape} and Y_score has shape {score_shape}.{hint}"
        )
    if Y_true.shape[0] == 0:
        raise ValueError("Y_true and Y_score are empty (0 samples).")
    observed = ~np.isnan(Y_true)
    for task in range(Y_true.shape[1]):
        labels = Y_true[observed[:, task], task]
        bad = labels[(labels != 0) & (labels != 1)]
        if bad.size:
            raise ValueError(
                f"Y_true must hold 0, 1 or NaN (missing); task {task} has the label(s) {np.unique(bad)[:5].tolist()}."
            )
        if not np.all(np.isfinite(Y_score[observed[:, task], task])):
            raise ValueError(f"Y_score has NaN or infinite values for labelled rows of task {task}.")
    return Y_true, Y_score, one_d


def _check_sample_weight(sample_weight, n_samples):
    if sample_weight is None:
        return np.ones(n_samples)
    sample_weight = _as_float_array(sample_weight, "sample_weight")
    if sample_weight.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {sample_weight.shape}.")
    if not np.all(np.isfinite(sample_weight)) or np.any(sample_weight < 0):
        raise ValueError("sample_weight must be finite and non-negative.")
    return sample_weight


def _check_groups(groups, n_samples):
    if isinstance(groups, (pd.Series, pd.Index, pd.Categorical)):
        values = groups
    else:
        values = np.asarray(groups)
        if values.ndim != 1:
            raise ValueError(f"groups must be 1-D, got shape {values.shape}.")
    if len(values) != n_samples:
        raise ValueError(f"groups has {len(values)} entries but Y_true has {n_samples} rows; they must match.")
    # factorize handles any hashable ids (str, int, mixed); NaN is a group of its own
    codes, _ = pd.factorize(values, use_na_sentinel=False)
    return codes


# ---------------------------------------------------------------------------
# Per-task metrics
# ---------------------------------------------------------------------------


def per_task_roc_auc(
    Y_true: np.ndarray,
    Y_score: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """ROC AUC of each task, ignoring missing labels.

    Parameters
    ----------
    Y_true : array-like of shape (n_samples, n_tasks) or (n_samples,)
        Binary labels, 0 or 1, with NaN for a missing label.

    Y_score : array-like of the same shape as `Y_true`
        Predicted probabilities or any scores, higher meaning more positive.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    Returns
    -------
    auc : ndarray of shape (n_tasks,)
        AUC of each task, computed on its labelled rows. NaN (and no exception) for
        a task whose labelled rows hold only one class.

    See Also
    --------
    mean_roc_auc_score : Mean of these values.
    group_auc_score : AUC averaged over groups (e.g. users).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mtr.metrics import per_task_roc_auc
    >>> Y_true = np.array([[0, 1], [1, np.nan], [1, 1], [0, 1]])
    >>> Y_score = np.array([[0.1, 0.9], [0.8, 0.5], [0.4, 0.7], [0.3, 0.2]])
    >>> per_task_roc_auc(Y_true, Y_score).tolist()
    [1.0, nan]
    """
    Y_true, Y_score, _ = _check_targets(Y_true, Y_score)
    weight = _check_sample_weight(sample_weight, Y_true.shape[0])
    auc = np.full(Y_true.shape[1], np.nan)
    for task in range(Y_true.shape[1]):
        rows = ~np.isnan(Y_true[:, task])
        y, w = Y_true[rows, task], weight[rows]
        # undefined unless both classes carry some weight: NaN, not an exception
        if w[y == 1].sum() > 0 and w[y == 0].sum() > 0:
            if sample_weight is None:
                auc[task] = _rank_auc(y, Y_score[rows, task])
            else:
                auc[task] = roc_auc_score(y, Y_score[rows, task], sample_weight=w)
    return auc


def _rank_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Unweighted ROC AUC from the positives' rank sum (Mann-Whitney U): with average ranks
    for ties it equals the trapezoidal ROC area, in about half of ``roc_auc_score``'s time
    (it runs on every training epoch's predictions)."""
    ranks = rankdata(score)
    positive = y == 1
    n_pos = float(positive.sum())
    n_neg = float(len(y)) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def per_task_log_loss(
    Y_true: np.ndarray,
    Y_score: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    eps: float = 1e-7,
) -> np.ndarray:
    """Binary cross-entropy of each task, ignoring missing labels.

    Parameters
    ----------
    Y_true : array-like of shape (n_samples, n_tasks) or (n_samples,)
        Binary labels, 0 or 1, with NaN for a missing label.

    Y_score : array-like of the same shape as `Y_true`
        Predicted probabilities of the positive class, in ``[0, 1]``.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    eps : float, default=1e-7
        Probabilities are clipped to ``[eps, 1 - eps]`` so that the loss stays
        finite.

    Returns
    -------
    loss : ndarray of shape (n_tasks,)
        (Weighted) mean binary cross-entropy of each task over its labelled rows;
        NaN for a task without labelled rows.

    See Also
    --------
    mean_log_loss : Mean of these values.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mtr.metrics import per_task_log_loss
    >>> Y_true = np.array([[1, 0], [0, np.nan]])
    >>> Y_score = np.array([[0.5, 0.5], [0.5, 0.9]])
    >>> per_task_log_loss(Y_true, Y_score).round(4)
    array([0.6931, 0.6931])
    """
    if not isinstance(eps, Real) or not 0 < eps < 0.5:
        raise ValueError(f"eps must be a number in (0, 0.5), got {eps!r}.")
    Y_true, Y_score, _ = _check_targets(Y_true, Y_score)
    weight = _check_sample_weight(sample_weight, Y_true.shape[0])
    loss = np.full(Y_true.shape[1], np.nan)
    for task in range(Y_true.shape[1]):
        rows = ~np.isnan(Y_true[:, task])
        y, p, w = Y_true[rows, task], Y_score[rows, task], weight[rows]
        if np.any((p < 0) | (p > 1)):
            # clipping would silently hide logits passed instead of probabilities
            raise ValueError(
                f"Y_score must hold probabilities in [0, 1] for the log loss; task "
                f"{task} has values in [{p.min():.4g}, {p.max():.4g}]."
            )
        if w.sum() > 0:
            p = np.clip(p, eps, 1 - eps)
            losses = -(y * np.log(p) + (1 - y) * np.log1p(-p))
            loss[task] = np.average(losses, weights=w)
    return loss


def _nanmean(values):
    # np.nanmean warns on an all-NaN input; a NaN result says enough
    values = np.asarray(values, dtype=np.float64)
    if np.all(np.isnan(values)):
        return float("nan")
    return float(np.nanmean(values))


def mean_roc_auc_score(
    Y_true: np.ndarray,
    Y_score: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
) -> float:
    """Mean over tasks of the ROC AUC, ignoring missing labels.

    Tasks whose AUC is undefined (a single class among the labelled rows) are left
    out of the mean; the result is NaN if every task is undefined.

    Parameters
    ----------
    Y_true : array-like of shape (n_samples, n_tasks) or (n_samples,)
        Binary labels, 0 or 1, with NaN for a missing label.

    Y_score : array-like of the same shape as `Y_true`
        Predicted probabilities or scores.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    Returns
    -------
    score : float
        Mean AUC.

    See Also
    --------
    per_task_roc_auc : The AUC of each task.
    mean_auc_scorer : The scorer built on this metric.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mtr.metrics import mean_roc_auc_score
    >>> Y_true = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
    >>> Y_score = np.array([[0.1, 0.9], [0.8, 0.5], [0.4, 0.7], [0.3, 0.6]])
    >>> mean_roc_auc_score(Y_true, Y_score)
    1.0
    """
    return _nanmean(per_task_roc_auc(Y_true, Y_score, sample_weight=sample_weight))


def mean_log_loss(
    Y_true: np.ndarray,
    Y_score: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    eps: float = 1e-7,
) -> float:
    """Mean over tasks of the binary cross-entropy, ignoring missing labels.

    Unlike :func:`sklearn.metrics.log_loss` on multilabel input, the
    probabilities of the tasks are not renormalised to sum to one: each task is
    its own binary problem.

    Parameters
    ----------
    Y_true : array-like of shape (n_samples, n_tasks) or (n_samples,)
        Binary labels, 0 or 1, with NaN for a missing label.

    Y_score : array-like of the same shape as `Y_true`
        Predicted probabilities of the positive class, in ``[0, 1]``.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    eps : float, default=1e-7
        Probabilities are clipped to ``[eps, 1 - eps]``.

    Returns
    -------
    loss : float
        Mean of the per-task losses (NaN tasks, i.e. without labels, left out).

    See Also
    --------
    per_task_log_loss : The loss of each task.
    mean_log_loss_scorer : The scorer built on this metric.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mtr.metrics import mean_log_loss
    >>> Y_true = np.array([[1, 0], [0, 1]])
    >>> Y_score = np.array([[0.9, 0.2], [0.2, 0.9]])
    >>> round(mean_log_loss(Y_true, Y_score), 4)
    0.1643
    """
    return _nanmean(per_task_log_loss(Y_true, Y_score, sample_weight=sample_weight, eps=eps))


# ---------------------------------------------------------------------------
# Group AUC
# ---------------------------------------------------------------------------


def _grouped_auc(y, score, weight, codes, n_groups):
    """Weighted AUC of every group at once, ties counting one half.

    Returns the AUC of each group (NaN when a class has no weight) and the weight of
    each group (its summed sample weight).
    """
    # sort by group, then by score, so that each group is a run of increasing scores
    order = np.lexsort((score, codes))
    y, score, weight, codes = y[order], score[order], weight[order], codes[order]
    # a "block" is a run of equal scores within a group: ties are compared as 1/2
    new_block = np.ones(len(y), dtype=bool)
    new_block[1:] = (codes[1:] != codes[:-1]) | (score[1:] != score[:-1])
    block = np.cumsum(new_block) - 1
    n_blocks = block[-1] + 1
    pos = np.bincount(block, weights=weight * y, minlength=n_blocks)
    neg = np.bincount(block, weights=weight * (1 - y), minlength=n_blocks)
    block_group = codes[new_block]

    # negatives strictly below each block, within its group
    neg_cum = np.cumsum(neg)
    group_start = np.ones(n_blocks, dtype=bool)
    group_start[1:] = block_group[1:] != block_group[:-1]
    offset = np.where(group_start, neg_cum - neg, 0.0)
    offset = np.maximum.accumulate(np.where(group_start, offset, -np.inf))
    neg_below = neg_cum - neg - offset

    wins = np.bincount(block_group, weights=pos * (neg_below + 0.5 * neg), minlength=n_groups)
    pos_total = np.bincount(block_group, weights=pos, minlength=n_groups)
    neg_total = np.bincount(block_group, weights=neg, minlength=n_groups)
    defined = (pos_total > 0) & (neg_total > 0)
    auc = np.full(n_groups, np.nan)
    auc[defined] = wins[defined] / (pos_total[defined] * neg_total[defined])
    return auc, pos_total + neg_total


def group_auc_score(
    y_true: np.ndarray,
    y_score: np.ndarray,
    groups: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
) -> float | np.ndarray:
    """Group AUC (GAUC): the AUC of each group, averaged with group-size weights.

    GAUC is the usual ranking metric of recommender systems, where ``groups`` holds
    the user (or query) of each row: it only compares items shown to the same user.
    For each task, the AUC of every group that holds both classes among its
    labelled rows is computed, and these AUCs are averaged with a weight per group
    equal to its number of labelled rows (or their summed ``sample_weight``).
    Groups with a single class are left out.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_tasks)
        Binary labels, 0 or 1, with NaN for a missing label.

    y_score : array-like of the same shape as `y_true`
        Predicted probabilities or scores.

    groups : array-like of shape (n_samples,)
        Group id (e.g. user id) of each row; any hashable values.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights, used inside each group's AUC and to weight the groups.

    Returns
    -------
    gauc : float or ndarray of shape (n_tasks,)
        A float for 1-D `y_true`, else one value per task. NaN where no group holds
        both classes.

    See Also
    --------
    mean_group_auc_score : Mean over tasks.
    gauc_scorer : The scorer built on the mean.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mtr.metrics import group_auc_score
    >>> y_true = np.array([1, 0, 0, 1, 0, 1, 1])
    >>> y_score = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.4, 0.8])
    >>> groups = np.array(["a", "a", "a", "b", "b", "c", "c"])
    >>> # a: AUC 1 over 3 rows, b: AUC 0 over 2 rows, c: one class only (left out)
    >>> group_auc_score(y_true, y_score, groups)
    0.6
    """
    y_true, y_score, one_d = _check_targets(y_true, y_score)
    n_samples, n_tasks = y_true.shape
    codes = _check_groups(groups, n_samples)
    weight = _check_sample_weight(sample_weight, n_samples)
    n_groups = int(codes.max()) + 1
    gauc = np.full(n_tasks, np.nan)
    for task in range(n_tasks):
        rows = ~np.isnan(y_true[:, task])
        if not rows.any():
            continue
        auc, group_weight = _grouped_auc(y_true[rows, task], y_score[rows, task], weight[rows], codes[rows], n_groups)
        defined = ~np.isnan(auc)
        if defined.any() and group_weight[defined].sum() > 0:
            gauc[task] = np.average(auc[defined], weights=group_weight[defined])
    return float(gauc[0]) if one_d else gauc


def mean_group_auc_score(
    y_true: np.ndarray,
    y_score: np.ndarray,
    groups: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
) -> float:
    """Mean over tasks of the group AUC (see :func:`group_auc_score`).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_tasks)
        Binary labels, 0 or 1, with NaN for a missing label.

    y_score : array-like of the same shape as `y_true`
        Predicted probabilities or scores.

    groups : array-like of shape (n_samples,)
        Group id (e.g. user id) of each row.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    Returns
    -------
    score : float
        Mean GAUC over the tasks where it is defined; NaN if none is.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mtr.metrics import mean_group_auc_score
    >>> Y_true = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    >>> Y_score = np.array([[0.9, 0.2], [0.1, 0.8], [0.3, 0.7], [0.4, 0.6]])
    >>> mean_group_auc_score(Y_true, Y_score, groups=[0, 0, 1, 1])
    0.75
    """
    gauc = group_auc_score(y_true, y_score, groups, sample_weight=sample_weight)
    return _nanmean(np.atleast_1d(gauc))


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------


def _task_probabilities(proba, y_true):
    """Turn any ``predict_proba`` output into one positive-class column per task."""
    if isinstance(proba, list):
        # one (n_samples, n_classes) array per output (e.g. RandomForestClassifier)
        columns = []
        for task, task_proba in enumerate(proba):
            task_proba = np.asarray(task_proba)
            if task_proba.ndim != 2 or task_proba.shape[1] != 2:
                raise ValueError(
                    f"predict_proba returned an array of shape {task_proba.shape} "
                    f"for output {task}; expected two classes (n_samples, 2)."
                )
            columns.append(task_proba[:, 1])
        proba = np.column_stack(columns)
    proba = _as_float_array(proba, "predict_proba output")
    n_tasks = 1 if np.ndim(y_true) == 1 else np.shape(y_true)[1]
    if np.ndim(y_true) == 1 or n_tasks == 1:
        # a single binary task: (n, 2) class probabilities -> P(class 1)
        if proba.ndim == 2 and proba.shape[1] == 2:
            proba = proba[:, 1]
        elif proba.ndim == 2 and proba.shape[1] == 1:
            proba = proba[:, 0]
        if np.ndim(y_true) == 2:
            proba = proba.reshape(-1, 1)
    return proba


class _MultiTaskProbaScorer:
    """A scorer (``scorer(estimator, X, y, **metadata)``) that reads ``predict_proba`` itself.

    A scorer from ``make_scorer`` post-processes ``predict_proba`` from ``estimator.classes_``:
    a two-task estimator reporting ``classes_ == [0, 1]`` is taken for a binary one and only
    its second column is scored. This one calls ``predict_proba`` directly and keeps one column
    per task. Metadata (``groups``) reaches it through scikit-learn's routing, which reads
    :meth:`get_metadata_routing`; built from public APIs only.
    """

    def __init__(self, score_func, *, greater_is_better: bool = True, required: tuple[str, ...] = ()):
        self._score_func = score_func
        self._sign = 1 if greater_is_better else -1
        # names of metadata the score function cannot do without
        self._required = tuple(required)
        self._requests: dict[str, bool | str | None] = {}

    def __repr__(self) -> str:
        sign = "" if self._sign > 0 else ", greater_is_better=False"
        return f"make_scorer({self._score_func.__name__}{sign}, response_method='predict_proba')"

    def set_score_request(self, **requests) -> _MultiTaskProbaScorer:
        """Request metadata (``groups=True``) for scoring, as ``set_score_request`` of a
        scikit-learn scorer; needs ``sklearn.set_config(enable_metadata_routing=True)``."""
        if not sklearn.get_config()["enable_metadata_routing"]:
            raise RuntimeError(
                "This method is only available when metadata routing is enabled. You can enable it "
                "using sklearn.set_config(enable_metadata_routing=True)."
            )
        self._requests.update(requests)
        return self

    def get_metadata_routing(self) -> MetadataRequest:
        request = MetadataRequest(owner=type(self).__name__)
        for param, alias in self._requests.items():
            request.score.add_request(param=param, alias=alias)
        return request

    def __call__(self, estimator, X, y_true, **kwargs):
        if not hasattr(estimator, "predict_proba"):
            raise AttributeError(f"{type(estimator).__name__} has no predict_proba method, which this scorer needs.")
        if "groups" in self._required and kwargs.get("groups") is None:
            raise ValueError(
                "This scorer needs the `groups` of the rows. Enable metadata routing "
                "(sklearn.set_config(enable_metadata_routing=True)) and pass groups "
                "to fit, e.g. GridSearchCV(...).fit(X, Y, groups=groups)."
            )
        # a model that scores a request's rows together (OneRank) must see the same groups
        # the metric uses, or every row would be scored as a request of its own
        groups = kwargs.get("groups")
        takes_groups = "groups" in inspect.signature(estimator.predict_proba).parameters
        proba = estimator.predict_proba(X, groups=groups) if groups is not None and takes_groups else None
        if proba is None:
            proba = estimator.predict_proba(X)
        y_score = _task_probabilities(proba, y_true)
        return self._sign * self._score_func(y_true, y_score, **kwargs)


mean_auc_scorer = _MultiTaskProbaScorer(mean_roc_auc_score)
mean_auc_scorer.__doc__ = """Scorer: mean ROC AUC over tasks (:func:`mean_roc_auc_score`).

Like ``make_scorer(mean_roc_auc_score, response_method="predict_proba")``, but
it reads ``predict_proba`` itself: ``(n_samples, n_tasks)`` for multi-task targets,
column 1 of ``(n_samples, 2)`` for a single binary task.
"""

mean_log_loss_scorer = _MultiTaskProbaScorer(mean_log_loss, greater_is_better=False)
mean_log_loss_scorer.__doc__ = """Scorer: minus the mean binary log loss (:func:`mean_log_loss`).

Like ``make_scorer(mean_log_loss, greater_is_better=False,
response_method="predict_proba")`` (reading ``predict_proba`` itself, like
:data:`mean_auc_scorer`), so it reports the negative loss. Use it instead of
scikit-learn's ``"neg_log_loss"``, which is wrong for multilabel output: it scores the
tasks as the classes of one multiclass problem (older scikit-learn releases
renormalise each row of ``predict_proba`` to sum to one; recent ones keep only the
``-log p_k`` terms of the positive labels), not as separate binary problems.
"""

# set_score_request only works while routing is enabled; the request it records
# stays with the scorer afterwards
with sklearn.config_context(enable_metadata_routing=True):
    gauc_scorer = _MultiTaskProbaScorer(mean_group_auc_score, required=("groups",)).set_score_request(groups=True)
gauc_scorer.__doc__ = """Scorer: mean group AUC over tasks (:func:`mean_group_auc_score`).

It requests ``groups`` through metadata routing, so it needs
``sklearn.set_config(enable_metadata_routing=True)``; the groups passed to ``fit`` of
:class:`~sklearn.model_selection.GridSearchCV` (or as ``params={"groups": ...}`` to
:func:`~sklearn.model_selection.cross_val_score`) then reach the scorer, restricted
to each validation fold. The estimator's ``fit`` takes ``groups`` too, so routing asks it to
say what to do with them: ``set_fit_request(groups=True)`` (or ``False`` to ignore them).
A model that scores a request's rows together (``OneRankClassifier``) gets the same groups
in ``predict_proba``.
"""


# ---------------------------------------------------------------------------
# Weighted recall at K (ResFlow-style)
# ---------------------------------------------------------------------------


def _top_k_share(score, codes, k):
    """Share of each row in its group's top ``k`` by score, ties split evenly.

    A row strictly above the group's ``k``-th score counts 1; the rows tied at the
    boundary share the remaining places equally (the expected count under a random
    tie-break), so the metric does not depend on the row order.
    """
    n = len(score)
    order = np.lexsort((-score, codes))
    s, g = score[order], codes[order]
    new_group = np.r_[True, g[1:] != g[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    new_run = new_group | np.r_[True, s[1:] != s[:-1]]
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[run_start, n])
    above = run_start[run_id] - group_start  # rows of the group ranked strictly higher
    share_sorted = np.clip((k - above) / run_len[run_id], 0.0, 1.0)
    share = np.empty(n)
    share[order] = share_sorted
    return share


def weighted_recall_at_k(y_true, y_score, *, k=10, weights=None, groups=None) -> float:
    """Weighted Recall@K over feedback types, per request when ``groups`` is given.

    ResFlow (Fu et al., KDD 2024) evaluates its pre-rank stage with a "Weighted
    Recall@K" that it reports to align with orders per user; the paper's exact formula
    was not available to us. This function implements the common industrial reading
    (an unverified hypothesis, not ResFlow's published definition):

    - in each request (each value of ``groups``; the whole input when ``groups`` is
      None) the candidates are ranked by ``y_score`` and the top ``k`` are kept;
    - for each feedback type ``j`` (a column of ``y_true``: click, add-to-cart,
      order, ...), ``Recall_j = sum_q |topK_q & Pos_qj| / sum_q |Pos_qj|``, the
      positives of type ``j`` retrieved in the top ``k`` of their request over all
      positives of that type (pooled over requests);
    - ``WRecall@K = sum_j w_j Recall_j / sum_j w_j``.

    Candidates tied at the top-``k`` boundary share the remaining places equally (the
    expected recall under a random tie-break). A request with fewer than ``k`` rows
    keeps all of them. Missing labels (NaN) are not positives; their rows still take
    places in the top ``k``. A type without any positive is left out of the average
    (its weight too).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_types)
        0/1 labels per feedback type (NaN = missing).

    y_score : array-like of shape (n_samples,)
        The one ranking score of each candidate (for several task probabilities, fuse
        them first, e.g. a weighted sum of the ``predict_proba`` columns).

    k : int, default=10
        Number of candidates kept per request.

    weights : array-like of shape (n_types,), default=None
        Non-negative weight of each feedback type; equal weights when None. The paper's
        weights are unknown; deeper funnel steps (orders) are usually weighted more.

    groups : array-like of shape (n_samples,), default=None
        Request id of each row; None ranks all rows as one request.

    Returns
    -------
    wrecall : float
        In [0, 1]; NaN when no type has a positive.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mtr.metrics import weighted_recall_at_k
    >>> y = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
    >>> score = np.array([0.9, 0.2, 0.8, 0.1])
    >>> # top 2 = rows 0 and 2: click recall 1/3, order recall 0/1
    >>> weighted_recall_at_k(y, score, k=2, weights=[1, 2])
    0.1111111111111111
    """
    Y = _as_float_array(y_true, "y_true")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ValueError(f"y_true must be 1-D or 2-D, got shape {Y.shape}.")
    score = _as_float_array(y_score, "y_score")
    if score.ndim == 2 and score.shape[1] == 1:
        score = score[:, 0]
    if score.ndim != 1:
        raise ValueError(
            f"y_score must be one ranking score per row, shape ({Y.shape[0]},), got {score.shape}; "
            "fuse the task probabilities into one score first."
        )
    n_samples, n_types = Y.shape
    if score.shape[0] != n_samples:
        raise ValueError(f"y_score has {score.shape[0]} rows but y_true has {n_samples}.")
    if n_samples == 0:
        raise ValueError("y_true and y_score are empty (0 samples).")
    if not np.all(np.isfinite(score)):
        raise ValueError("y_score has NaN or infinite values.")
    labelled = ~np.isnan(Y)
    bad = Y[labelled & (Y != 0) & (Y != 1)]
    if bad.size:
        raise ValueError(f"y_true must hold 0, 1 or NaN (missing); got {np.unique(bad)[:5].tolist()}.")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if weights is None:
        w = np.ones(n_types)
    else:
        w = _as_float_array(weights, "weights").ravel()
        if w.shape != (n_types,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() == 0:
            raise ValueError(
                f"weights must be {n_types} non-negative numbers, one per column of y_true, not all zero; got {weights!r}."
            )
    codes = np.zeros(n_samples, dtype=np.int64) if groups is None else _check_groups(groups, n_samples)
    share = _top_k_share(score, codes, int(k))
    positive = labelled & (Y == 1)
    n_pos = positive.sum(0)
    hits = (positive * share[:, None]).sum(0)
    defined = n_pos > 0
    if not defined.any() or w[defined].sum() == 0:
        return float("nan")
    recall = hits[defined] / n_pos[defined]
    return float(np.average(recall, weights=w[defined]))
