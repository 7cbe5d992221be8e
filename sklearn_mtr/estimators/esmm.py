"""ESMMClassifier: the scikit-learn estimator around :class:`~sklearn_mtr.models.ESMM`."""

from __future__ import annotations

from .._base import MultiTaskClassifierBase
from .._common_doc import with_common_parameters
from .._params import store_init_params
from ..models import ESMM
from ._funnel import FunnelLabelsMixin, with_funnel_labels


@with_common_parameters
@with_funnel_labels
class ESMMClassifier(FunnelLabelsMixin, MultiTaskClassifierBase):
    """ESMM: entire space multi-task model (Ma et al., SIGIR 2018).

    A CTR tower and a CVR tower read the same embeddings. The model outputs
    ``pCTR`` and ``pCTCVR = pCTR * pCVR``; both are trained on labels defined over all
    impressions (click, and click-and-conversion), so the CVR tower learns from the
    entire space and never sees a label directly. ``predict_proba`` returns
    ``(pCTR, pCTCVR)``; :meth:`predict_cvr` returns pCVR, the conversion probability
    given a click. More than two stages chain the product (stage ``t`` probability =
    product of the first ``t + 1`` conditional towers); one stage is a plain tower.

    %(funnel)s

    Parameters
    ----------
    tower_hidden_sizes : tuple of int, default=(128, 64)
        Widths of each stage's tower before its logit.
    activation : str, default="relu"
        Hidden activation: "relu", "prelu", "gelu", "silu", "tanh" or "leaky_relu".
    dropout : float, default=0.0
        Dropout after every hidden layer.
    batch_norm : bool, default=False
        Batch normalisation after every hidden linear layer.
    %(common)s

    Examples
    --------
    >>> from sklearn_mtr import ESMMClassifier
    >>> from sklearn_mtr.datasets import make_funnel_classification
    >>> X, Y = make_funnel_classification(n_samples=500, random_state=0)
    >>> clf = ESMMClassifier(tower_hidden_sizes=(16,), max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X[:3]).shape, clf.predict_cvr(X[:3]).shape
    ((3, 2), (3,))
    """

    _architecture = ESMM

    def __init__(
        self,
        *,
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
