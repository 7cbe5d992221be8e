"""What the multi-task optimization method reported over training (``optim_*`` in ``history_``)."""

from __future__ import annotations

import numbers

import numpy as np

from ._plotting import final_estimator, history_epochs, history_rows, history_task_names, import_pyplot

_PREFIX = "optim_"
# y-axis labels of the keys the bundled methods record; any other key is shown by name.
_LABELS = {
    "weights": "task weights",
    "loss_weights": "loss weights",
    "grad_norms": "gradient norms",
    "update_norm": "update norms",
    "update_cosine": "update cosines",
    "cosine": "mean gradient cosine",
    "cosine_primary_aux": "cosine primary / auxiliary",
    "cosine_primary_split": "cosine primary / split",
    "norm_ratio_aux": "norm ratio primary / auxiliary",
    "norm_ratio_split": "norm ratio primary / split",
    "mixing": "mixing coefficients",
    "log_variance": "log variances",
    "conflicts": "share of conflicting pairs",
    "min_norm": "min-norm of the combination",
    "solve_failed": "share of failed solves",
    "residual": "residual of the weights' system",
    "excess_risk": "relative excess risks",
}


class OptimizerDiagnosticsDisplay:
    """The multi-task method's diagnostics over training: one panel per ``optim_*`` key.

    Multi-task methods report what they did at each step (task weights, gradient or update
    cosines, norms, DRGrad's mixing coefficients, ...); the estimator records their mean
    per epoch in ``history_`` as ``optim_<name>``. Each key gets its own axes, with one line
    per component: per task for task-sized vectors, per task pair for cosines between tasks
    (pairs ``(0, 1), (0, 2), ..., (1, 2), ...``), per index otherwise. Equal weighting
    (``optimizer="adam"``) reports nothing.

    Build it with :meth:`from_estimator` (or :meth:`from_history`); the constructor only
    stores the data.

    Parameters
    ----------
    epochs : ndarray of shape (n_epochs,)
        Epoch numbers (1-based).
    diagnostics : dict of str to ndarray of shape (n_epochs, n_components)
        Each key's per-epoch values (without the ``optim_`` prefix); NaN where an epoch did
        not record it.
    component_labels : dict of str to list of str
        Legend label of each component of each key.
    estimator_name : str, default=None
        Shown as the figure's title.

    Attributes
    ----------
    lines_ : dict of str to list of matplotlib Line2D
        The lines of each key, one per component.
    axes_ : ndarray of matplotlib Axes
        One axes per key, in the order of ``diagnostics``.
    figure_ : matplotlib Figure

    See Also
    --------
    TaskLearningCurveDisplay : Per-task learning curves.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.inspection import OptimizerDiagnosticsDisplay
    >>> X, Y = make_multitask_classification(n_samples=200, n_tasks=2, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, expert_hidden_sizes=(16,), optimizer="pub", max_epochs=2, random_state=0)
    >>> clf = clf.fit(X, Y)
    >>> disp = OptimizerDiagnosticsDisplay.from_estimator(clf)
    >>> list(disp.lines_)
    ['weights', 'update_norm', 'update_cosine']
    >>> len(disp.lines_["weights"])  # one line per task
    2
    """

    def __init__(self, *, epochs, diagnostics, component_labels, estimator_name=None):
        self.epochs = epochs
        self.diagnostics = diagnostics
        self.component_labels = component_labels
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, keys=None, ax=None, name: str | None = None, **kwargs):
        """Plot the ``optim_*`` diagnostics recorded in a fitted estimator's ``history_``.

        Parameters
        ----------
        estimator : fitted multi-task classifier
            Any sklearn-mtr estimator (its ``history_`` is read), or a Pipeline ending in one.
        keys : list of str, default=None
            Keys to draw, with or without the ``optim_`` prefix; every recorded one by default.
        ax : matplotlib Axes or array-like of Axes, default=None
            One axes per key (a single Axes is accepted for one key); a new figure with a
            column of axes when None.
        name : str, default=None
            Figure title; the estimator's class name and optimizer by default.
        **kwargs
            Passed to matplotlib's ``plot`` for every line.

        Returns
        -------
        display : OptimizerDiagnosticsDisplay
        """
        estimator = final_estimator(estimator)
        if name is None:
            optimizer = getattr(estimator, "optimizer", None)
            label = optimizer if isinstance(optimizer, str) else type(optimizer).__name__
            name = f"{type(estimator).__name__}, optimizer={label}"
        return cls.from_history(estimator, keys=keys, ax=ax, name=name, **kwargs)

    @classmethod
    def from_history(cls, history, *, keys=None, ax=None, name: str | None = None, **kwargs):
        """Plot the ``optim_*`` diagnostics of a ``history_`` (a skorch ``History`` or a list of
        per-epoch dicts).

        Parameters are those of :meth:`from_estimator`, with ``history`` in place of the
        estimator.

        Returns
        -------
        display : OptimizerDiagnosticsDisplay
        """
        rows = history_rows(history)
        task_names = history_task_names(rows)
        recorded = list(dict.fromkeys(k[len(_PREFIX) :] for row in rows for k in row if k.startswith(_PREFIX)))
        if not recorded:
            raise ValueError(
                "the history holds no optim_* diagnostics: the multi-task method reported none "
                "(equal weighting, optimizer='adam', never does)."
            )
        if keys is None:
            keys = recorded
        else:
            keys = [k.removeprefix(_PREFIX) for k in ([keys] if isinstance(keys, str) else keys)]
            unknown = [k for k in keys if k not in recorded]
            if unknown:
                raise ValueError(f"the history has no diagnostics {unknown}; it records {recorded}.")
        diagnostics = {key: _stack(rows, _PREFIX + key) for key in keys}
        labels = {key: _component_labels(key, values.shape[1], task_names) for key, values in diagnostics.items()}
        display = cls(
            epochs=history_epochs(rows), diagnostics=diagnostics, component_labels=labels, estimator_name=name
        )
        return display.plot(ax=ax, **kwargs)

    def plot(self, ax=None, *, name: str | None = None, **kwargs) -> OptimizerDiagnosticsDisplay:
        """Draw one panel per key.

        Parameters
        ----------
        ax : matplotlib Axes or array-like of Axes, default=None
            One axes per key (a single Axes is accepted for one key); a new figure with a
            column of axes when None.
        name : str, default=None
            Figure title; ``estimator_name`` by default.
        **kwargs
            Passed to matplotlib's ``plot`` for every line.

        Returns
        -------
        display : OptimizerDiagnosticsDisplay
            Object that stores the drawn artists.
        """
        plt = import_pyplot(f"{type(self).__name__}.plot")
        keys = list(self.diagnostics)
        if ax is None:
            figure, axes = plt.subplots(len(keys), 1, sharex=True, figsize=(6.4, 1.2 + 2.0 * len(keys)), squeeze=False)
            axes = axes[:, 0]
        else:
            axes = np.ravel(np.asarray(ax, dtype=object))
            if len(axes) != len(keys):
                raise ValueError(f"ax must hold one Axes per diagnostic key ({len(keys)}: {keys}), got {len(axes)}.")
            figure = axes[0].figure
        self.lines_ = {}
        single = {"marker": "o"} if len(self.epochs) < 2 else {}  # a line of one point is invisible
        for axis, key in zip(axes, keys):
            values, labels = self.diagnostics[key], self.component_labels[key]
            self.lines_[key] = []
            for c in range(values.shape[1]):
                style = {"color": f"C{c % 10}", "label": labels[c], **single, **kwargs}
                self.lines_[key].append(axis.plot(self.epochs, values[:, c], **style)[0])
            axis.set_ylabel(_LABELS.get(key, key.replace("_", " ")), fontsize="small")
            if values.shape[1] > 1:
                axis.legend(loc="best", fontsize="x-small")
        axes[-1].set_xlabel("epoch")
        title = self.estimator_name if name is None else name
        if title:
            figure.suptitle(title)
        self.axes_, self.figure_ = axes, figure
        return self


def _stack(rows: list[dict], key: str) -> np.ndarray:
    """A key's values as ``(n_epochs, n_components)``; scalars are one component, NaN pads gaps."""
    values = [np.atleast_1d(np.asarray(row[key], dtype=float)) if _numeric(row.get(key)) else None for row in rows]
    width = max(len(v) for v in values if v is not None)
    out = np.full((len(rows), width), np.nan)
    for i, v in enumerate(values):
        if v is not None:
            out[i, : len(v)] = v
    return out


def _numeric(value) -> bool:
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(v, numbers.Real) for v in np.ravel(value))


def _component_labels(key: str, width: int, task_names: list[str]) -> list[str]:
    """Legend labels: tasks, task pairs (cosines between tasks), DRGrad's two mixing weights, or indices."""
    n = len(task_names)
    if width == 1:
        return [key.replace("_", " ")]
    if "cosine" in key and width == n * (n - 1) // 2:
        return [f"{task_names[i]} / {task_names[j]}" for i in range(n) for j in range(i + 1, n)]
    if key == "mixing" and width == 2:
        return ["mu' (own tower)", "mu'' (split tower)"]
    if width == n:
        return list(task_names)
    return [f"{key}[{c}]" for c in range(width)]
