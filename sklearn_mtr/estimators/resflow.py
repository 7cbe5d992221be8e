"""ResFlowClassifier: the scikit-learn estimator around :class:`~sklearn_mtr.models.ResFlow`."""

from __future__ import annotations

from .._base import MultiTaskClassifierBase, store_init_params, with_common_parameters
from ..models import ResFlow


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
    pos_weight : float or array-like of shape (n_tasks,), default=None
        Weight of the positive term of each task's loss (``BCEWithLogitsLoss``'s
        ``pos_weight``). None keeps plain cross-entropy, so ``predict_proba`` stays
        calibrated; the released code uses 100 / 500 on Ali-CCP, which inflates the
        predicted odds by about that factor (rankings are what it is for).
    %(common)s

    Examples
    --------
    >>> from sklearn_mtr import ResFlowClassifier
    >>> from sklearn_mtr.datasets import make_funnel_classification
    >>> X, Y = make_funnel_classification(n_samples=500, random_state=0)
    >>> clf = ResFlowClassifier(tower_hidden_sizes=(16, 8), max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    """

    def __init__(
        self,
        *,
        tower_hidden_sizes=(128, 64),
        task_order=None,
        activation="prelu",
        batch_norm="affine",
        logit_residual=False,
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
        )
