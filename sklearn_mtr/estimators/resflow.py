"""ResFlowClassifier: the scikit-learn estimator around :class:`~sklearn_mtr.models.ResFlow`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from .._base import MultiTaskClassifierBase
from .._common_doc import with_common_parameters
from .._params import store_init_params
from .._validation import per_task_tensor
from ..models import ResFlow

# The released code (github.com/BrunoTruthAlliance/ResFlow, commit c80e215), as its two
# training scripts set it; batch size and epochs are required arguments there with no value
# given, so the presets keep this package's.
RELEASED_FUNNEL = {
    "task_weights": (2.0, 1.0),
    "pos_weight": (100.0, 500.0),
    "logit_residual": True,
    "hidden_residual": True,
    "batch_norm": "affine",
    "activation": "prelu",
    "tower_hidden_sizes": (128, 64),
    "embedding_dim": 32,
    "lr": 4e-4,
}
RELEASED_ORDINAL = {
    "logit_residual": True,
    "hidden_residual": False,
    "batch_norm": "none",
    "activation": "prelu",
    "tower_hidden_sizes": (128, 64),
    "embedding_dim": 8,
    "lr": 1e-3,
}


def ordinal_labels(y, thresholds: Sequence[float]) -> pd.DataFrame:
    """Nested "above threshold" tasks from one graded label, as ResFlow's ordinal variant uses.

    Task ``i`` is ``1[y > thresholds[i]]`` (the released code's watch-time tasks: play time
    above 5, 10, 20, ..., 80 seconds). A missing ``y`` leaves every task's label missing.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        The graded label (watch time, rating, ...).
    thresholds : sequence of float
        Strictly increasing thresholds, one task each, shallowest first.

    Returns
    -------
    Y : DataFrame of shape (n_samples, len(thresholds))
        0/1 labels (NaN where ``y`` is missing), columns ``"> <threshold>"``.

    Examples
    --------
    >>> from sklearn_mtr.estimators.resflow import ordinal_labels
    >>> ordinal_labels([3, 12, 45], thresholds=[5, 10, 40]).to_numpy()
    array([[0., 0., 0.],
           [1., 1., 0.],
           [1., 1., 1.]])
    """
    values = np.asarray(y, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"y must be one graded label per row (1-D), got shape {values.shape}.")
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    if thr.size == 0 or not np.all(np.isfinite(thr)) or np.any(np.diff(thr) <= 0):
        raise ValueError(f"thresholds must be finite and strictly increasing, got {list(thresholds)!r}.")
    labels = (values[:, None] > thr[None, :]).astype(np.float64)
    labels[np.isnan(values)] = np.nan
    index = y.index if isinstance(y, pd.Series) else None
    return pd.DataFrame(labels, columns=[f"> {t:g}" for t in thr], index=index)


@with_common_parameters
class ResFlowClassifier(MultiTaskClassifierBase):
    """ResFlow: task towers joined by residual flows (Fu et al., KDD 2024).

    One tower per task on a shared embedding. Along ``task_order`` (shallow funnel step
    first), the output of layer ``l`` of task ``t-1``'s tower is added to the input of
    layer ``l + 1`` of task ``t``'s tower (and to the input of its logit layer), so the
    deeper task builds on the shallower one; no gating, no extra parameters. See
    :class:`~sklearn_mtr.models.ResFlow` for the exact wiring.

    Parameters
    ----------
    tower_hidden_sizes : tuple of int, default=(128, 64)
        Widths of every task tower (equal across towers, as the flows require), before
        its logit.
    task_order : sequence of int or str, default=None
        Order of the residual chain: task indices, or names from ``Y``'s columns. None
        means label order (e.g. click before conversion). Only the last task in the order
        has a tower of its own (``task_parameters``); the others flow into it.
    activation : str, default="prelu"
        Hidden activation (PReLU as in the released code): "prelu", "relu", "gelu",
        "silu", "tanh" or "leaky_relu".
    batch_norm : {"affine", "train", "none"}, default="affine"
        Normalisation after every hidden activation and on the embedding vector.
        ``"train"``: standard batch norm (batch statistics when training, running ones
        when predicting). ``"affine"``: a learned per-feature scale and shift only, which
        is what the released TF1 code computes in effect (its BN layers run in inference
        mode with never-updated statistics); predictions do not depend on the batch.
        ``"none"``: no normalisation.
    logit_residual : bool, default=False
        Also add the previous task's logit to each task's logit (the released two-task
        code does; the N-task variant uses only this residual). Off by default: the
        deeper task's probability is then not tied to the shallower one's scale.
    hidden_residual : bool, default=True
        Add each hidden layer's output to the next task's corresponding layer input (the
        flows between towers). False with ``logit_residual=True`` leaves only the logit
        chain, the released N-task variant (:meth:`released_ordinal`); False with neither
        makes independent towers.
    pos_weight : float or array-like of shape (n_tasks,), default=None
        Weight of the positive term of each task's loss (``BCEWithLogitsLoss``'s
        ``pos_weight``). None keeps plain cross-entropy, so ``predict_proba`` stays
        calibrated; the released code uses 100 / 500 on Ali-CCP, which inflates the
        predicted odds by about that factor (rankings are what it is for).
    %(common)s

    Notes
    -----
    Two presets reproduce the released code's settings (Fu et al., "Residual Multi-Task
    Learner for Applied Ranking", KDD 2024, arXiv 2411.09705), each an ordinary estimator
    whose parameters ``get_params`` shows: :meth:`released_funnel` (two tasks, CTR then
    CTCVR: loss ``2 * BCE_ctr + 1 * BCE_ctcvr`` with ``pos_weight`` 100 / 500) and
    :meth:`released_ordinal` (N ordinal tasks from a graded label, built by
    ``sklearn_mtr.estimators.resflow.ordinal_labels``; logit residuals only). The
    defaults differ from both: plain cross-entropy with equal weights, so that
    ``predict_proba`` is calibrated.

    Examples
    --------
    >>> from sklearn_mtr import ResFlowClassifier
    >>> from sklearn_mtr.datasets import make_funnel_classification
    >>> X, Y = make_funnel_classification(n_samples=500, random_state=0)
    >>> clf = ResFlowClassifier(tower_hidden_sizes=(16, 8), max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    >>> ResFlowClassifier.released_funnel(max_epochs=2).get_params()["pos_weight"]
    (100.0, 500.0)
    """

    # The module's constraints table (task_order may name tasks and is resolved against Y).
    _parameter_constraints: ClassVar[dict[str, list]] = ResFlow.parameter_constraints(exclude=("task_order",))

    def __init__(
        self,
        *,
        tower_hidden_sizes=(128, 64),
        task_order=None,
        activation="prelu",
        batch_norm="affine",
        logit_residual=False,
        hidden_residual=True,
        pos_weight=None,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size=256,
        max_epochs=10,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=3,
        scoring="auc",
        tol=1e-4,
        ema_epochs=1.0,
        categorical_features="from_dtype",
        sequence_features=None,
        text_features=None,
        numeric_encoding="piecewise",
        numeric_bins=32,
        embedding_dim=16,
        task_weights=None,
        device="auto",
        precision="fp32",
        compile=False,
        n_threads=None,
        random_state=None,
        verbose=0,
        callbacks=None,
        warm_start=False,
    ):
        store_init_params(self, locals())

    @classmethod
    def released_funnel(cls, **params) -> ResFlowClassifier:
        """The released two-task (CTR -> CTCVR) configuration, its loss included.

        From the official code of arXiv 2411.09705 (``e-comm/``): task weights 2 : 1 on
        the per-task mean losses (``task_weights=(2.0, 1.0)``), the positive term of each
        task's cross-entropy weighted 100 (CTR) and 500 (CTCVR) (``pos_weight``, its
        Ali-CCP values; the code says other data sets' are in the paper's appendix),
        hidden and logit residuals, PReLU, batch norm as a learned affine map (what the
        TF1 code computes in effect), towers (128, 64), embeddings of 32, Adam at lr 4e-4.
        Batch size and epochs are not given in the released code; this package's are kept.
        The large positive weights inflate the predicted odds by about their factor:
        rankings, not probabilities, are what the preset is for.

        Parameters
        ----------
        **params
            Any estimator parameter; it overrides the preset's value.

        Returns
        -------
        ResFlowClassifier
            An unfitted estimator; ``Y`` must have two columns, the shallow task first.
        """
        return cls(**{**RELEASED_FUNNEL, **params})

    @classmethod
    def released_ordinal(cls, n_tasks: int = 9, **params) -> ResFlowClassifier:
        """The released logit-only N-task variant, for ordinal tasks from a graded label.

        From the official code of arXiv 2411.09705 (``other-modality/``, KuaiRand watch
        time above 5, 10, 20, ..., 80 seconds: build such labels with
        ``sklearn_mtr.estimators.resflow.ordinal_labels``). Independent towers (no
        hidden residuals, no batch norm) whose logits chain, ``z_t = f_t(e) + z_{t-1}``; equal task weights and
        ``pos_weight`` ``0.9 + 0.05 * t`` for task ``t = 0 .. n_tasks - 1`` (0.90 to 1.30
        at 9 tasks); towers (128, 64), embeddings of 8, Adam at lr 1e-3.

        Parameters
        ----------
        n_tasks : int, default=9
            Number of ordinal tasks (columns of ``Y``), shallowest threshold first; sets
            the length of ``pos_weight``.
        **params
            Any estimator parameter; it overrides the preset's value.

        Returns
        -------
        ResFlowClassifier
            An unfitted estimator.
        """
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, (int, np.integer)) or n_tasks < 1:
            raise ValueError(f"n_tasks must be a positive integer, got {n_tasks!r}.")
        pos_weight = tuple(round(0.9 + 0.05 * t, 10) for t in range(n_tasks))
        return cls(**{**RELEASED_ORDINAL, "pos_weight": pos_weight, **params})

    def _resolved_task_order(self, n_tasks):
        if self.task_order is None:
            return None
        if isinstance(self.task_order, str) or not hasattr(self.task_order, "__iter__"):
            raise ValueError(f"task_order must be a sequence of task indices or names, got {self.task_order!r}.")
        names = [str(t) for t in getattr(self, "task_names_", [])]
        order = []
        for t in self.task_order:
            if isinstance(t, str):
                if t not in names:
                    raise ValueError(f"task_order names {t!r}, which is not a task of Y: {names}.")
                order.append(names.index(t))
            else:
                order.append(t)
        return order

    def _pos_weight_tensor(self, n_tasks):
        if self.pos_weight is None:
            return None
        return per_task_tensor(self.pos_weight, n_tasks, "pos_weight", allow_zero=False, broadcast=True)

    def _build_module(self, schema, n_tasks):
        return ResFlow(
            schema,
            n_tasks,
            embedding_dim=self.embedding_dim,
            tower_hidden_sizes=self.tower_hidden_sizes,
            task_order=self._resolved_task_order(n_tasks),
            activation=self.activation,
            batch_norm=self.batch_norm,
            logit_residual=self.logit_residual,
            hidden_residual=self.hidden_residual,
        )
