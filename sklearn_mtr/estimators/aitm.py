"""AITMClassifier: the scikit-learn estimator around :class:`~sklearn_mtr.models.AITM`."""

from __future__ import annotations

from .._base import MultiTaskClassifierBase
from .._common_doc import with_common_parameters
from .._params import store_init_params
from ..models import AITM
from ._funnel import FunnelLabelsMixin, with_funnel_labels


@with_common_parameters
@with_funnel_labels
class AITMClassifier(FunnelLabelsMixin, MultiTaskClassifierBase):
    """AITM: adaptive information transfer multi-task model (Xi et al., KDD 2021).

    Each funnel step has a tower on the shared embeddings. Between consecutive steps an
    adaptive information transfer module mixes what the previous step learned (through an
    info gate) with the step's own representation by a two-way attention (query, key,
    value projections, scores scaled by ``1/sqrt(d)``); a head per step gives its logit.
    The behavioural expectation calibrator adds
    ``calibration_weight * mean(sum_t max(p_t - p_{t-1}, 0))`` to the loss, penalising a
    deeper step predicted as more likely than the previous one. ``predict_proba``
    returns each stage's probability over the entire space (pCTR, pCTCVR);
    :meth:`predict_cvr` their ratio.

    %(funnel)s

    Parameters
    ----------
    tower_hidden_sizes : tuple of int, default=(128, 64)
        Widths of each step's tower (its representation has the last width).
    head_hidden_sizes : tuple of int, default=(32,)
        Widths of each step's head MLP after the transfer, before the logit.
    calibration_weight : float, default=0.6
        Weight of the calibrator loss (0.6 in the paper; 0 turns it off).
    activation : str, default="relu"
        Hidden activation: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer.
    %(common)s

    Examples
    --------
    >>> from sklearn_mtr import AITMClassifier
    >>> from sklearn_mtr.datasets import make_funnel_classification
    >>> X, Y = make_funnel_classification(n_samples=500, random_state=0)
    >>> clf = AITMClassifier(tower_hidden_sizes=(16,), max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    """

    _architecture = AITM

    def __init__(
        self,
        *,
        tower_hidden_sizes=(128, 64),
        head_hidden_sizes=(32,),
        calibration_weight=0.6,
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
