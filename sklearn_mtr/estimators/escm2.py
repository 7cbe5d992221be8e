"""ESCM2Classifier: the scikit-learn estimator around :class:`~sklearn_mtr.models.ESCM2`."""

from __future__ import annotations

from .._base import MultiTaskClassifierBase
from .._common_doc import with_common_parameters
from .._params import store_init_params
from ..models import ESCM2
from ._funnel import FunnelLabelsMixin, with_funnel_labels


@with_common_parameters
@with_funnel_labels
class ESCM2Classifier(FunnelLabelsMixin, MultiTaskClassifierBase):
    """ESCM2: entire space counterfactual multi-task model (Wang et al., SIGIR 2022, arXiv:2204.05125).

    ESMM (:class:`ESMMClassifier`: a CTR tower and a CVR tower, outputs ``pCTR`` and
    ``pCTCVR = pCTR * pCVR`` trained on the click and click-and-conversion labels over all
    impressions) plus a counterfactual risk of the CVR tower that removes the bias of ESMM's
    pCVR: the conversion loss of the clicked impressions weighted by the inverse of the
    predicted pCTR (``"ips"``), or its doubly robust form with an imputation tower
    (``"dr"``). The training loss is ``L_CTR + counterfactual_weight * L_CVR + L_CTCVR``
    (``task_weights`` weighs the first and the last). ``predict_proba`` returns
    ``(pCTR, pCTCVR)``; :meth:`predict_cvr` returns pCVR. More than two stages apply the risk
    to each stage given the one before; rows are unweighted in it (``sample_weight`` weighs
    the task losses).

    %(funnel)s

    Parameters
    ----------
    counterfactual : {"ips", "dr"}, default="dr"
        The counterfactual risk: inverse propensity scoring, or doubly robust (an imputation
        tower predicts the CVR error; lower variance).
    counterfactual_weight : float, default=0.5
        Weight ``lambda_c`` of the counterfactual risk in the training loss.
    min_propensity : float, default=0.05
        Lower bound of the predicted pCTR used as propensity (so ``1 / pCTR <= 20``).
    tower_hidden_sizes : tuple of int, default=(128, 64)
        Widths of each stage's tower (and imputation tower) before its output.
    activation : str, default="relu"
        Hidden activation: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer.
    %(common)s

    Examples
    --------
    >>> from sklearn_mtr import ESCM2Classifier
    >>> from sklearn_mtr.datasets import make_funnel_classification
    >>> X, Y = make_funnel_classification(n_samples=500, random_state=0)
    >>> clf = ESCM2Classifier(tower_hidden_sizes=(16,), max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X[:3]).shape, clf.predict_cvr(X[:3]).shape
    ((3, 2), (3,))
    """

    _architecture = ESCM2

    def __init__(
        self,
        *,
        counterfactual="dr",
        counterfactual_weight=0.5,
        min_propensity=0.05,
        tower_hidden_sizes=(128, 64),
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
