"""MMoEClassifier: the scikit-learn estimator around :class:`~sklearn_mtr.models.MMoE`."""

from __future__ import annotations

from .._base import MultiTaskClassifierBase
from .._common_doc import with_common_parameters
from .._params import store_init_params
from ..models import MMoE


@with_common_parameters
class MMoEClassifier(MultiTaskClassifierBase):
    """Multi-gate Mixture-of-Experts classifier (Ma et al., KDD 2018).

    ``n_experts`` expert MLPs read the embedded input; each task mixes them with its own
    softmax gate and feeds the mixture to its tower. The experts run as one batched matrix
    product per layer (on a CPU, layers 64 or more wide run expert by expert, which is faster
    there).

    Parameters
    ----------
    n_experts : int, default=8
        Number of experts.
    expert_hidden_sizes : tuple of int, default=(256, 128)
        Widths of each expert MLP.
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
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> X, Y = make_multitask_classification(n_samples=500, n_tasks=2, random_state=0)
    >>> clf = MMoEClassifier(n_experts=4, max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    """

    _architecture = MMoE

    def __init__(
        self,
        *,
        n_experts=8,
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
