"""The base class of every multi-task classifier: the shared constructor, the subclass hooks
and the scikit-learn tags; each job lives in its own mixin."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from ._fitting import FitMixin
from ._params import store_init_params
from ._prediction import PredictionMixin
from ._validation import InputValidationMixin
from .models import MultiTaskModule


class MultiTaskClassifierBase(FitMixin, PredictionMixin, InputValidationMixin, ClassifierMixin, BaseEstimator):
    """Base class of the multi-task ranking classifiers; not meant to be used directly.

    Subclasses declare their architecture's hyper-parameters in ``__init__`` and implement
    :meth:`_build_module`. The rest is shared, one job per mixin: input validation
    (``_validation``), fitting and continuation (``_fitting``), prediction and scoring
    (``_prediction``). See :class:`MMoEClassifier` for the
    documentation of the common parameters.
    """

    def __init__(
        self,
        *,
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

    #: The architecture the default :meth:`_build_module` builds, passing it the estimator's
    #: parameters of the same names (every one of its hyper-parameters, ``embedding_dim`` included).
    _architecture: type[MultiTaskModule] | None = None
    #: Constraints of the estimator's own parameters, checked with the shared ones at the start
    #: of fit (see :mod:`sklearn_mtr._constraints`).
    _parameter_constraints: ClassVar[dict[str, list]] = {}

    # ------------------------------------------------------------------ subclass hooks
    def _build_module(self, schema, n_tasks: int) -> MultiTaskModule:
        architecture = type(self)._architecture
        if architecture is None:  # pragma: no cover - a subclass sets one or overrides this
            raise NotImplementedError(f"{type(self).__name__} sets no _architecture and does not build a module.")
        return architecture(schema, n_tasks, **{name: getattr(self, name) for name in architecture.hyperparameters()})

    def _request_codes(self, groups, n_rows: int) -> torch.Tensor | None:
        """Request codes ``(n_rows,)`` of ``groups`` for architectures that score a request's rows
        as a set (OneRank), in fit and predict alike; None, the default, means rows are
        independent (``groups`` then only keeps requests whole in the validation split)."""
        return None

    def _check_task_labels(self, y: np.ndarray, task_names) -> None:
        """Architecture-specific label rules (funnel models: a later stage implies the
        earlier ones); ``y`` is ``(n, n_tasks)`` float with NaN. Raise ValueError naming the task."""

    # ------------------------------------------------------------------ tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.input_tags.sparse = True
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_")
