"""Task trade-off plot: per-task scores of several models, task against task."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._plotting import check_task, final_estimator, resolve_ax

# metric -> (axis label, greater is better)
_METRICS = {"auc": ("ROC AUC", True), "gauc": ("GAUC", True), "loss": ("log loss", False)}


class TaskTradeoffDisplay:
    """Task against task: one point per model (optimizer, architecture, ...), the seesaw made visible.

    Each point is a model's score on task ``i`` (x) and task ``j`` (y). Points on the dashed
    Pareto front are not beaten on both tasks by any other model; moving along the front
    trades one task for the other (the seesaw phenomenon). With ``reference`` (e.g. the
    equal-weight baseline) dotted lines split the plane into "better on both", "worse on
    both" and the two trade-off quadrants.

    Build it with :meth:`from_estimators` or :meth:`from_results`; the constructor only
    stores the data.

    Parameters
    ----------
    scores : ndarray of shape (n_models, n_tasks)
        Per-task score of each model (the mean over seeds for :meth:`from_results`).
    names : list of str
        Name of each model.
    task_names : list of str
        Names of the tasks.
    metric : {"auc", "gauc", "loss"}
        What ``scores`` holds. For ``"loss"`` lower is better, which the Pareto front follows.
    errors : ndarray of shape (n_models, n_tasks), default=None
        Standard deviation over seeds, drawn as error bars.

    Attributes
    ----------
    scatter_ : matplotlib PathCollection
        The points, in the order of ``names``.
    annotations_ : list of matplotlib Annotation
        The name next to each point.
    errorbar_ : matplotlib ErrorbarContainer or None
        Error bars, when ``errors`` is given.
    pareto_line_ : matplotlib Line2D
        The Pareto front through the non-dominated points.
    reference_lines_ : list of matplotlib Line2D
        The vertical and horizontal lines through the reference model (empty without one).
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    See Also
    --------
    TaskLearningCurveDisplay : Per-task learning curves of one model.

    Examples
    --------
    >>> from sklearn_mtr.inspection import TaskTradeoffDisplay
    >>> results = {  # mean test AUC over seeds, per optimizer
    ...     "adam": {"ctr": 0.731, "cvr": 0.702},
    ...     "pub": {"ctr": 0.735, "cvr": 0.699},
    ...     "drgrad": {"ctr": 0.728, "cvr": 0.711},
    ... }
    >>> disp = TaskTradeoffDisplay.from_results(results, reference="adam")
    >>> disp.scatter_.get_offsets().tolist()[1]
    [0.735, 0.699]
    """

    def __init__(self, *, scores, names, task_names, metric, errors=None):
        self.scores = scores
        self.names = names
        self.task_names = task_names
        self.metric = metric
        self.errors = errors

    @classmethod
    def from_estimators(
        cls,
        estimators,
        X,
        Y,
        *,
        names=None,
        metric: str = "auc",
        groups=None,
        sample_weight=None,
        tasks=None,
        reference: str | None = None,
        ax=None,
        **kwargs,
    ) -> TaskTradeoffDisplay:
        """Score fitted multi-task estimators on ``X, Y`` and plot task against task.

        Parameters
        ----------
        estimators : list of fitted estimators, or dict of name to fitted estimator
            Multi-task classifiers (or Pipelines ending in one) fitted on the same tasks.
        X : DataFrame or array-like of shape (n_samples, n_features)
            Evaluation features.
        Y : array-like of shape (n_samples, n_tasks)
            0/1 labels, NaN = missing.
        names : list of str, default=None
            A name per estimator; the dict's keys or the class names by default.
        metric : {"auc", "gauc", "loss"}, default="auc"
            Per-task ROC AUC, group AUC (needs ``groups``) or log loss.
        groups : array-like of shape (n_samples,), default=None
            Request / user ids for ``metric="gauc"``.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights of the metric.
        tasks : pair of str or int, default=None
            The tasks on the x and y axes; the first two by default.
        reference : str, default=None
            Name of the model to draw reference lines through.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to matplotlib's ``scatter``.

        Returns
        -------
        display : TaskTradeoffDisplay
        """
        from ..metrics import group_auc_score, per_task_log_loss, per_task_roc_auc

        _check_metric(metric)
        if isinstance(estimators, Mapping):
            names = list(estimators) if names is None else names
            estimators = list(estimators.values())
        estimators = list(estimators)
        if not estimators:
            raise ValueError("estimators is empty; pass at least one fitted estimator.")
        names = [type(final_estimator(e)).__name__ for e in estimators] if names is None else [str(n) for n in names]
        if len(names) != len(estimators):
            raise ValueError(f"got {len(names)} names for {len(estimators)} estimators.")
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {names}; pass names=.")
        if metric == "gauc" and groups is None:
            raise ValueError('metric="gauc" needs groups (the request or user id of each row).')
        y = np.asarray(Y, dtype=float)
        task_names = None
        rows = []
        for name, est in zip(names, estimators):
            # a Pipeline predicts as a whole, but its last step holds the task metadata
            model = final_estimator(est)
            check_is_fitted(model)
            if getattr(model, "binary_", False) or getattr(model, "n_tasks_", 0) < 2:
                raise ValueError(f"estimator {name!r} is not a multi-task model; a trade-off needs two tasks or more.")
            own = [str(t) for t in model.task_names_]
            if task_names is None:
                task_names = own
            elif own != task_names:
                raise ValueError(f"estimator {name!r} was fitted on tasks {own}, the first one on {task_names}.")
            if y.ndim != 2 or y.shape[1] != len(task_names):
                raise ValueError(f"Y must have shape (n_samples, {len(task_names)}), got {y.shape}.")
            proba = est.predict_proba(X)
            if metric == "auc":
                rows.append(per_task_roc_auc(y, proba, sample_weight=sample_weight))
            elif metric == "gauc":
                rows.append(group_auc_score(y, proba, np.asarray(groups), sample_weight=sample_weight))
            else:
                rows.append(per_task_log_loss(y, proba, sample_weight=sample_weight))
        display = cls(scores=np.array(rows, dtype=float), names=names, task_names=task_names, metric=metric)
        return display.plot(ax=ax, tasks=tasks, reference=reference, **kwargs)

    @classmethod
    def from_results(
        cls,
        results: Mapping,
        *,
        task_names=None,
        metric: str = "auc",
        tasks=None,
        reference: str | None = None,
        ax=None,
        **kwargs,
    ) -> TaskTradeoffDisplay:
        """Plot per-task scores computed elsewhere (a benchmark's results).

        Parameters
        ----------
        results : dict of str to per-task scores
            For each model, one of: a dict task name -> score; a sequence of ``n_tasks``
            scores; a 2-D array ``(n_seeds, n_tasks)``; or a dict task name -> sequence of
            per-seed scores. Several seeds are drawn as their mean with the standard deviation
            as error bars.
        task_names : list of str, default=None
            Task names when the scores are sequences (``task0, task1, ...`` by default).
        metric : {"auc", "gauc", "loss"}, default="auc"
            What the scores are (for the axis labels and the direction of the Pareto front).
        tasks : pair of str or int, default=None
            The tasks on the x and y axes; the first two by default.
        reference : str, default=None
            Name of the model to draw reference lines through.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to matplotlib's ``scatter``.

        Returns
        -------
        display : TaskTradeoffDisplay
        """
        _check_metric(metric)
        if not isinstance(results, Mapping) or not results:
            raise ValueError("results must be a non-empty dict mapping each model's name to its per-task scores.")
        means, stds, names_seen = [], [], None
        for name, value in results.items():
            if isinstance(value, Mapping):
                keys = [str(k) for k in value]
                if names_seen is None:
                    names_seen = keys
                elif keys != names_seen:
                    raise ValueError(f"model {name!r} has tasks {keys}, the first model {names_seen}.")
                per_task = [np.atleast_1d(np.asarray(v, dtype=float)) for v in value.values()]
                if len({len(v) for v in per_task}) != 1:
                    raise ValueError(f"model {name!r} has a different number of seeds per task.")
                array = np.column_stack(per_task)
            else:
                array = np.asarray(value, dtype=float)
                array = array[None, :] if array.ndim == 1 else array
                if array.ndim != 2:
                    raise ValueError(f"the scores of model {name!r} must be 1-D (tasks) or 2-D (seeds, tasks).")
            means.append(np.nanmean(array, axis=0))
            stds.append(np.nanstd(array, axis=0) if len(array) > 1 else np.full(array.shape[1], np.nan))
        if len({len(m) for m in means}) != 1:
            raise ValueError("every model in results must have the same number of tasks.")
        n_tasks = len(means[0])
        if task_names is None:
            task_names = names_seen if names_seen is not None else [f"task{k}" for k in range(n_tasks)]
        task_names = [str(t) for t in task_names]
        if len(task_names) != n_tasks:
            raise ValueError(f"got {len(task_names)} task_names for {n_tasks} tasks.")
        errors = np.array(stds)
        display = cls(
            scores=np.array(means),
            names=[str(n) for n in results],
            task_names=task_names,
            metric=metric,
            errors=None if np.isnan(errors).all() else errors,
        )
        return display.plot(ax=ax, tasks=tasks, reference=reference, **kwargs)

    def plot(
        self, ax=None, *, tasks=None, reference: str | None = None, annotate: bool = True, **kwargs
    ) -> TaskTradeoffDisplay:
        """Draw the points, their names, the Pareto front and the reference lines.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        tasks : pair of str or int, default=None
            The tasks on the x and y axes; the first two by default.
        reference : str, default=None
            Name of the model to draw reference lines through.
        annotate : bool, default=True
            Write each model's name next to its point.
        **kwargs
            Passed to matplotlib's ``scatter``.

        Returns
        -------
        display : TaskTradeoffDisplay
            Object that stores the drawn artists.
        """
        names, task_names = list(self.names), list(self.task_names)
        if len(task_names) < 2:
            raise ValueError(f"a trade-off needs two tasks or more, got {task_names}.")
        if tasks is None:
            tasks = (0, 1)
        if isinstance(tasks, (str, numbers.Integral)) or len(tasks) != 2:
            raise ValueError(f"tasks must be a pair (x task, y task), got {tasks!r}.")
        i, j = (check_task(t, task_names) for t in tasks)
        if i == j:
            raise ValueError(f"tasks must be two different tasks, got {tasks!r}.")
        if reference is not None and reference not in names:
            raise ValueError(f"reference {reference!r} is not one of the models {names}.")
        ax, figure = resolve_ax(ax, f"{type(self).__name__}.plot")
        scores = np.asarray(self.scores, dtype=float)
        x, y = scores[:, i], scores[:, j]

        self.errorbar_ = None
        if self.errors is not None:
            errors = np.asarray(self.errors, dtype=float)
            self.errorbar_ = ax.errorbar(
                x, y, xerr=errors[:, i], yerr=errors[:, j], fmt="none", ecolor="0.6", elinewidth=1, capsize=2
            )
        front = _pareto_front(x, y, greater_is_better=_METRICS[self.metric][1])
        self.pareto_line_ = ax.plot(x[front], y[front], linestyle="--", color="0.5", linewidth=1, label="Pareto front")[
            0
        ]
        colours = [f"C{k % 10}" for k in range(len(names))]
        style = {"s": 40, "zorder": 3, **({} if "color" in kwargs else {"c": colours}), **kwargs}
        self.scatter_ = ax.scatter(x, y, **style)
        self.annotations_ = []
        if annotate:
            for name, xk, yk in zip(names, x, y):
                self.annotations_.append(
                    ax.annotate(name, (xk, yk), xytext=(4, 4), textcoords="offset points", fontsize="small")
                )
        self.reference_lines_ = []
        if reference is not None:
            r = names.index(reference)
            self.reference_lines_ = [
                ax.axvline(x[r], color="0.7", linestyle=":", linewidth=1),
                ax.axhline(y[r], color="0.7", linestyle=":", linewidth=1),
            ]
        label = _METRICS[self.metric][0]
        ax.set_xlabel(f"{task_names[i]} {label}")
        ax.set_ylabel(f"{task_names[j]} {label}")
        self.ax_, self.figure_ = ax, figure
        return self


def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}.")


def _pareto_front(x: np.ndarray, y: np.ndarray, *, greater_is_better: bool) -> np.ndarray:
    """Indices of the points no other point beats on both axes, sorted by x."""
    sign = 1.0 if greater_is_better else -1.0
    sx, sy = sign * x, sign * y
    finite = np.isfinite(sx) & np.isfinite(sy)
    front = [
        k
        for k in np.flatnonzero(finite)
        if not np.any(finite & (sx >= sx[k]) & (sy >= sy[k]) & ((sx > sx[k]) | (sy > sy[k])))
    ]
    return np.array(sorted(front, key=lambda k: x[k]), dtype=int)
