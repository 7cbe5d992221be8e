"""The label contract shared by the funnel estimators (ESMM, AITM)."""

from __future__ import annotations

import numpy as np

FUNNEL_LABELS_DOC = """Label contract: the columns of ``Y`` are funnel stages in order, each over the entire
    impression space: column 0 = click, column 1 = click *and* conversion (CTCVR), and so
    on. A row positive at a stage must be positive at every earlier stage; a violation
    (say conversion 1 with click 0) is a ``ValueError`` naming both tasks. Missing labels
    (NaN) are not checked."""


def check_funnel_labels(y: np.ndarray, task_names=None) -> None:
    """Raise ValueError when a later stage is positive where an earlier one is negative.

    ``y`` is ``(n, n_tasks)`` float with NaN for a missing label.
    """
    n_tasks = y.shape[1]
    names = [str(t) for t in task_names] if task_names is not None and len(task_names) == n_tasks else None
    names = names or [f"task{k}" for k in range(n_tasks)]
    for later in range(1, n_tasks):
        positive = y[:, later] == 1
        for earlier in range(later):
            bad = np.flatnonzero(positive & (y[:, earlier] == 0))
            if len(bad):
                raise ValueError(
                    f"funnel label contract violated: task {names[later]!r} (stage {later}) is positive "
                    f"where the earlier task {names[earlier]!r} (stage {earlier}) is negative, in "
                    f"{len(bad)} row(s) (first: row {bad[0]}). Columns of Y are funnel stages in order "
                    "(click, then click-and-conversion, ...); a later stage implies the earlier ones."
                )


class FunnelLabelsMixin:
    """Enforces :func:`check_funnel_labels` on the labels given to ``fit`` / ``partial_fit``."""

    def _check_task_labels(self, y, task_names):
        check_funnel_labels(y, task_names)

    def predict_conditional_proba(self, X):
        """Probability of each stage given the previous one.

        Column 0 is the first stage's probability (pCTR); column ``t`` is
        ``P(stage t | stage t-1) = P(stage t) / P(stage t-1)`` computed from the
        predicted logits in log space (column 1 is pCVR). Values are clipped to [0, 1]
        (a model without ESMM's product structure may predict a deeper stage as more
        likely than the previous one).

        Returns
        -------
        proba : ndarray of shape (n_samples, n_tasks)
        """
        # predict_proba's path: the same input checks and errors, and rows encoded chunk by
        # chunk, so memory beyond the input and the output stays bounded.
        out = self._predict_task_logits(X).astype(np.float64)
        # log sigmoid, then differences of consecutive stages, in place (no temporaries of the output's size)
        np.negative(out, out=out)
        np.logaddexp(0.0, out, out=out)
        np.negative(out, out=out)
        for stage in range(out.shape[1] - 1, 0, -1):
            out[:, stage] -= out[:, stage - 1]
        np.exp(out, out=out)
        return np.clip(out, 0.0, 1.0, out=out)

    def predict_cvr(self, X):
        """pCVR = P(stage 1 | stage 0), the conversion rate of clicked impressions.

        Returns
        -------
        pcvr : ndarray of shape (n_samples,)
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        if self.n_tasks_ < 2:
            raise ValueError(
                f"predict_cvr needs at least two funnel stages; the model was fitted with {self.n_tasks_}."
            )
        return self.predict_conditional_proba(X)[:, 1].copy()  # not a view keeping every stage alive


def with_funnel_labels(cls):
    """Insert :data:`FUNNEL_LABELS_DOC` where a class docstring says ``%(funnel)s``."""
    cls.__doc__ = cls.__doc__.replace("%(funnel)s", FUNNEL_LABELS_DOC)
    return cls
