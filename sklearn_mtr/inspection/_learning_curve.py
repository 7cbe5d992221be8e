"""Per-task learning curves read from a fitted estimator's ``history_``."""

from __future__ import annotations

import numpy as np

from ._plotting import (
    check_task,
    final_estimator,
    history_column,
    history_epochs,
    history_rows,
    history_task_names,
    resolve_ax,
)

_METRICS = {"auc": "ROC AUC", "loss": "log loss"}
_SUBSETS = ("train", "valid")


class TaskLearningCurveDisplay:
    """Per-task learning curves: one line per task and subset (train / validation) over epochs.

    Build it with :meth:`from_estimator` (or :meth:`from_history`); the constructor only
    stores the data. Validation curves are solid and training curves dashed, with one colour
    per task, so a task that keeps improving while another one degrades (negative transfer)
    shows at a glance.

    Parameters
    ----------
    epochs : ndarray of shape (n_epochs,)
        Epoch numbers (1-based).
    scores : dict of str to ndarray of shape (n_epochs, n_tasks)
        Per-task values of the metric for each recorded subset (``"train"``, ``"valid"``);
        NaN where an epoch did not record a value.
    task_names : list of str
        Names of the tasks, the columns of each array in ``scores``.
    metric : {"auc", "loss"}
        What ``scores`` holds: ROC AUC or the task's log loss (binary cross-entropy).
    estimator_name : str, default=None
        Shown as the title.

    Attributes
    ----------
    lines_ : dict of str to list of matplotlib Line2D
        For each subset, the lines drawn, one per task, in the order of the ``tasks`` plotted.
    ax_ : matplotlib Axes
        Axes with the curves.
    figure_ : matplotlib Figure
        Figure containing the curves.

    See Also
    --------
    OptimizerDiagnosticsDisplay : What the multi-task method recorded over training.
    TaskTradeoffDisplay : Per-task scores of several models against each other.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.inspection import TaskLearningCurveDisplay
    >>> X, Y = make_multitask_classification(n_samples=200, n_tasks=2, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, expert_hidden_sizes=(16,), max_epochs=3, early_stopping=True, random_state=0)
    >>> clf = clf.fit(X, Y)
    >>> disp = TaskLearningCurveDisplay.from_estimator(clf, metric="auc")
    >>> sorted(disp.lines_), len(disp.lines_["valid"])
    (['train', 'valid'], 2)
    """

    def __init__(self, *, epochs, scores, task_names, metric, estimator_name=None):
        self.epochs = epochs
        self.scores = scores
        self.task_names = task_names
        self.metric = metric
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(
        cls, estimator, *, metric: str = "auc", subsets=None, tasks=None, ax=None, name: str | None = None, **kwargs
    ) -> TaskLearningCurveDisplay:
        """Plot the per-task learning curves recorded in a fitted estimator's ``history_``.

        Parameters
        ----------
        estimator : fitted multi-task classifier
            Any sklearn-mtr estimator (its ``history_`` is read), or a Pipeline ending in one.
        metric : {"auc", "loss"}, default="auc"
            Per-task ROC AUC (``<subset>_auc_<task>``) or per-task log loss
            (``<subset>_loss_<task>``).
        subsets : list of {"train", "valid"}, default=None
            Which curves to draw; by default every subset the history recorded (``"valid"``
            exists only when the estimator was fitted with early stopping: ``early_stopping=True``,
            or ``"auto"`` on more than 10,000 rows).
        tasks : list of str or int, default=None
            Tasks to draw (names or positions); all by default.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        name : str, default=None
            Title; the estimator's class name by default.
        **kwargs
            Passed to matplotlib's ``plot`` for every line.

        Returns
        -------
        display : TaskLearningCurveDisplay
        """
        estimator = final_estimator(estimator)
        name = type(estimator).__name__ if name is None else name
        return cls.from_history(estimator, metric=metric, subsets=subsets, tasks=tasks, ax=ax, name=name, **kwargs)

    @classmethod
    def from_history(
        cls, history, *, metric: str = "auc", subsets=None, tasks=None, ax=None, name: str | None = None, **kwargs
    ) -> TaskLearningCurveDisplay:
        """Plot the per-task learning curves of a ``history_`` (a skorch ``History`` or a list of
        per-epoch dicts with the keys sklearn-mtr records).

        Parameters are those of :meth:`from_estimator`, with ``history`` in place of the
        estimator.

        Returns
        -------
        display : TaskLearningCurveDisplay
        """
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}.")
        rows = history_rows(history)
        task_names = history_task_names(rows)
        recorded = [s for s in _SUBSETS if any(f"{s}_{metric}_{t}" in row for row in rows for t in task_names)]
        if subsets is None:
            subsets = recorded
        else:
            subsets = [subsets] if isinstance(subsets, str) else list(subsets)
            for subset in subsets:
                if subset not in _SUBSETS:
                    raise ValueError(f"subsets must hold 'train' and/or 'valid', got {subset!r}.")
                if subset not in recorded:
                    raise ValueError(
                        f"the history holds no {subset!r} curves; validation curves need early_stopping=True "
                        "(the default 'auto' turns it on only above 10,000 training rows)."
                    )
        scores = {s: np.column_stack([history_column(rows, f"{s}_{metric}_{t}") for t in task_names]) for s in subsets}
        display = cls(
            epochs=history_epochs(rows), scores=scores, task_names=task_names, metric=metric, estimator_name=name
        )
        return display.plot(ax=ax, tasks=tasks, **kwargs)

    def plot(self, ax=None, *, tasks=None, name: str | None = None, **kwargs) -> TaskLearningCurveDisplay:
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        tasks : list of str or int, default=None
            Tasks to draw (names or positions); all by default.
        name : str, default=None
            Title; ``estimator_name`` by default.
        **kwargs
            Passed to matplotlib's ``plot`` for every line.

        Returns
        -------
        display : TaskLearningCurveDisplay
            Object that stores the drawn artists.
        """
        ax, figure = resolve_ax(ax, f"{type(self).__name__}.plot")
        names = list(self.task_names)
        indices = range(len(names)) if tasks is None else [check_task(t, names) for t in tasks]
        colours = [f"C{i % 10}" for i in range(len(names))]
        styles = {"valid": "-", "train": "--"}
        single = {"marker": "o"} if len(self.epochs) < 2 else {}  # a line of one point is invisible
        self.lines_ = {}
        for subset, values in self.scores.items():
            self.lines_[subset] = [
                ax.plot(
                    self.epochs,
                    values[:, k],
                    **{
                        "color": colours[k],
                        "linestyle": styles[subset],
                        "label": f"{names[k]} ({subset})",
                        **single,
                        **kwargs,
                    },
                )[0]
                for k in indices
            ]
        ax.set_xlabel("epoch")
        ax.set_ylabel(_METRICS[self.metric])
        title = self.estimator_name if name is None else name
        if title:
            ax.set_title(title)
        ax.legend(loc="best", fontsize="small")
        self.ax_, self.figure_ = ax, figure
        return self
