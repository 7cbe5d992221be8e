"""PLEClassifier: the scikit-learn estimator around :class:`~sklearn_mtr.models.PLE`."""

from __future__ import annotations

from .._base import MultiTaskClassifierBase
from .._common_doc import with_common_parameters
from .._params import store_init_params
from ..models import PLE


@with_common_parameters
class PLEClassifier(MultiTaskClassifierBase):
    """Progressive Layered Extraction classifier (Tang et al., RecSys 2020).

    ``n_levels`` stacked CGC levels: at every level each task has ``n_task_experts`` private
    experts and all tasks share ``n_shared_experts``; a task's gate mixes its own and the
    shared experts, and a shared gate (below the last level) mixes all experts for the level
    above. All experts of a level run as one batched product (on a CPU, layers 64 or more
    wide run expert by expert, which is faster there).

    Parameters
    ----------
    n_levels : int, default=2
        Number of CGC levels.
    n_task_experts : int, default=1
        Private experts per task and level.
    n_shared_experts : int, default=1
        Shared experts per level.
    expert_hidden_sizes : tuple of int, default=(256, 128)
        Widths of each expert MLP (every level).
    tower_hidden_sizes : tuple of int, default=(64,)
        Widths of each task tower before its logit.
    activation : str, default="relu"
        Hidden activation: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer.
    %(common)s

    Examples
    --------
    >>> from sklearn_mtr import PLEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> X, Y = make_multitask_classification(n_samples=500, n_tasks=2, random_state=0)
    >>> clf = PLEClassifier(max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    """

    _architecture = PLE

    def __init__(
        self,
        *,
        n_levels=2,
        n_task_experts=1,
        n_shared_experts=1,
        expert_hidden_sizes=(256, 128),
        tower_hidden_sizes=(64,),
        activation="relu",
        dropout=0.0,
        batch_norm=False,
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
