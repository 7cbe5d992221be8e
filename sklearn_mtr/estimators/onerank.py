"""OneRankClassifier: the scikit-learn estimator around :class:`~sklearn_mtr.models.OneRank`."""

from __future__ import annotations

import numbers
import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from .._base import MultiTaskClassifierBase
from .._common_doc import with_common_parameters
from .._params import store_init_params
from ..models import OneRank
from ._requests import check_request_columns, group_codes

# the common entry, with OneRank's own default and the measurement behind it
_MAX_EPOCHS = """max_epochs : int, default=20
        Passes over the training data (``fit``); ``partial_fit`` always runs one. Twice the
        other estimators' 10: OneRank learns more slowly. On Census-Income (5 paired seeds,
        ``benchmarks/results/weight_averaging_census_cap.json``) its validation AUC was still
        rising by about 1e-4 an epoch at the 10th, where 4 of 5 fits hit the cap of 10;
        with 20, early stopping ended those after 14-19 epochs, each gaining test income AUC
        (0.0003 to 0.0007; mean +0.0004 [+0.0000, +0.0008]), at 1.5 times the fit time. Against
        HistGradientBoosting that moves OneRank from -0.0006 [-0.0010, -0.0001] to no
        difference (-0.0001 [-0.0009, +0.0006]). Early stopping still decides, and a fit that
        it ends before the 10th epoch is the same with either cap."""


@with_common_parameters(max_epochs=_MAX_EPOCHS)
class OneRankClassifier(MultiTaskClassifierBase):
    """OneRank: a Transformer-native multi-task ranker (Tang et al., KDD 2026, arXiv 2606.16838).

    Every task has a private channel through one shared Transformer. For each request (rows
    sharing a ``groups`` id) the encoder reads a prefix of context field tokens and history
    tokens, then one group per candidate: the candidate token followed by ``K`` task tokens.
    Task tokens cannot see each other, the candidate token cannot see its task tokens, and
    candidate groups cannot see each other; the prefix is computed once per request and every
    group attends to its keys/values plus its own, so the cost grows linearly with the number
    of candidates. Each task then forms a query from the request's situational descriptor
    (the context fields) and attends over the request's candidates; a masked cross-task
    attention lets a task read the others without changing them (their inputs are
    detached); a matching scorer gives the logit. Training adds an in-request InfoNCE term.

    **Requests.** Scores depend on the candidate set of a request: pass the same kind of
    ``groups`` to :meth:`predict_proba` as to :meth:`fit`. Columns in ``context_features``
    and every sequence feature are request-level: they are read from each request's first
    row, and ``fit`` and ``predict_proba`` raise a ``ValueError`` (naming the column and a
    request) when one varies within a request. A missing request id (NaN or None) is a
    ``ValueError`` too.

    **Per-row mode.** Without ``groups`` every row is a request of one candidate. The
    candidate attention would then run over a single key, so the situational descriptor
    and the per-task queries would get no gradient, and the InfoNCE term has no
    negatives: a model fitted without ``groups`` is built without them (each task's head
    is the single linear map the attention reduces to, and there are no temperatures). It
    is a plain multi-task Transformer over the row's features and ignores ``groups`` at
    predict time. A continuation (``warm_start=True`` or :meth:`partial_fit`) keeps the
    mode of the first fit.

    Readings taken where the paper is silent:
    pre-LN blocks with a 4x GELU feed-forward and a final LayerNorm; context field tokens
    attend to each other bidirectionally, history tokens causally (and to the fields); the
    candidate token does not see its own task tokens (otherwise task tokens would leak into
    each other from the second layer on); one candidate token per row, projected from the
    candidate fields, and history items share the candidate item's embedding and
    projection block; the situational descriptor is ``LN(Linear(context fields))`` (a
    learned vector without context fields) and each task's query is ``LN(W_k s + b_k)``;
    the cross-task module is shared by the tasks, its feed-forward too; the scorer is
    scaled by ``1 / sqrt(d_model)`` with a per-task bias initialised at the logit of the
    task's positive rate; InfoNCE averages over each request's positives, uses a learnable
    per-task temperature, is multiplied by ``infonce_weight``, is not scaled by
    ``task_weights`` or ``sample_weight``, and skips requests without a labelled positive
    and negative.

    Parameters
    ----------
    d_model : int, default=32
        Width of the Transformer (tokens, task representations).
    n_layers : int, default=2
        Number of encoder layers.
    n_heads : int, default=2
        Attention heads (encoder, per-task cross-attention and cross-task attention);
        ``d_model`` must be a multiple of it.
    ffn_mult : int, default=4
        Feed-forward width as a multiple of ``d_model``.
    dropout : float, default=0.0
        Dropout on the encoder's residual branches.
    context_features : list of str or int, default=None
        Request-level columns (user, query, context): each becomes a prefix token and they
        form the situational descriptor. Names, or indices for array input. Every other
        non-sequence column describes the candidate. None: all columns describe the
        candidate.
    max_history : int, default=50
        Length of the history kept per sequence feature (its last items).
    cross_task_mask : {"cascade", "parallel", "full"} or array-like of shape (n_tasks, n_tasks), default="cascade"
        Which tasks each task reads in the cross-task attention (row ``k`` reads column
        ``j``): ``"cascade"`` in task order (a task reads itself and the tasks before it,
        the funnel order), ``"parallel"`` none, ``"full"`` all; a 0/1 matrix with a unit
        diagonal gives any hybrid (e.g. a chain over some tasks, the rest parallel).
    detach : {"input", "projection", "none"}, default="input"
        Cross-task gradient detachment: ``"input"`` reads the other tasks' representations
        detached (the shared projections still learn from them), ``"projection"``
        detaches the projected keys/values, ``"none"`` detaches nothing.
    scorer : {"bilinear", "dot", "mlp"}, default="bilinear"
        Matching scorer: ``z_k . (W_k r) / sqrt(d) + b_k`` with ``W_k`` initialised to the
        identity (default; escapes the constant-prediction plateau of the rank-1 dot
        product faster), ``"dot"`` the paper's ``z_k . r / sqrt(d) + b_k``, or ``"mlp"``
        on ``[z_k ; r]``.
    candidate_access : {"add", "type", "attention"}, default="add"
        How a task token reaches its own candidate. ``"add"``: the task token enters the
        encoder as ``t_k + e_i^C`` (mask and detachment unchanged), so ``r_k^i`` starts from
        the candidate. ``"type"``: the task token enters as ``t_k`` and a learned token-type
        vector is added to the candidate token, so that attention can tell it from the
        history tokens that share its projection. ``"attention"``: the paper's literal
        reading, ``t_k`` alone, the candidate read only through attention; its weight on
        the candidate falls as the history grows (about 0.23 of a task token's attention
        at initialisation without history, 0.04 with 20 history items). The default was
        chosen by measurement (``docs/onerank.md``).
    infonce_weight : float, default=0.1
        Weight of the in-request InfoNCE term (0 turns it off).
    temperature : float, default=1.0
        Initial InfoNCE temperature (learned per task). A re-implementation (Alibaba's TorchEasyRec)
        uses 0.07; here the InfoNCE runs on the unnormalised logits, where
        ``1 / 0.07`` multiplies its gradient about fourteen-fold: on MovieLens-100K requests
        it then dominated the BCE term and lowered validation AUC (mean over tasks about 0.56
        against 0.63 with 1.0 after three epochs on 20k rows), so 1.0 is the default.
    %(common)s
    fitted_with_groups_ : bool
        Whether the last fit received ``groups``.

    Notes
    -----
    ``task_parameters(k)`` (what multi-task optimizers see as task ``k``'s own) holds its
    task token, query map, candidate cross-attention, scorer and temperature: with
    detachment, no other task's loss reaches them. The encoder, embeddings, situational
    descriptor and cross-task weights are shared. ``DRGrad``'s split mode trains through
    the scorer inputs and does not see the InfoNCE term.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn_mtr import OneRankClassifier
    >>> rng = np.random.default_rng(0)
    >>> n = 400
    >>> request = np.repeat(np.arange(40), 10)  # 40 requests of 10 candidates
    >>> X = pd.DataFrame({
    ...     "user": pd.Categorical(request % 7),
    ...     "item": pd.Categorical(rng.integers(0, 30, n)),
    ...     "price": rng.normal(size=n),
    ... })
    >>> Y = np.column_stack([X["price"] > 0, X["price"] > 1]).astype(int)
    >>> clf = OneRankClassifier(context_features=["user"], d_model=16, max_epochs=2, random_state=0)
    >>> clf = clf.fit(X, Y, groups=request)
    >>> clf.predict_proba(X, groups=request).shape
    (400, 2)
    """

    # The module's constraints table (context_features is resolved against X's columns;
    # base_rates and requests are computed in fit).
    _parameter_constraints: ClassVar[dict[str, list]] = OneRank.parameter_constraints(
        exclude=("context_features", "base_rates", "requests")
    )

    def __init__(
        self,
        *,
        d_model=32,
        n_layers=2,
        n_heads=2,
        ffn_mult=4,
        dropout=0.0,
        context_features=None,
        max_history=50,
        cross_task_mask="cascade",
        detach="input",
        scorer="bilinear",
        candidate_access="add",
        infonce_weight=0.1,
        temperature=1.0,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size=256,
        max_epochs=20,
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

    # ------------------------------------------------------------------ fitting
    def fit(self, X, Y, sample_weight=None, groups=None):
        """Train on ``X``, ``Y``; rows sharing a ``groups`` id form one request.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Features. ``context_features`` and the sequence features are request-level: each
            must be constant within a request.
        Y : array-like of shape (n_samples, n_tasks) or (n_samples,)
            Binary labels per task (NaN: unlabelled for that task).
        sample_weight : array-like of shape (n_samples,), default=None
            Per-row weights of the BCE loss.
        groups : array-like of shape (n_samples,), default=None
            Request ids (no missing values). None: every row is a request of its own and
            the model is built in per-row mode.

        Returns
        -------
        self : OneRankClassifier
        """
        self._check_requests(X, groups, continuing=self.warm_start)
        return super().fit(X, Y, sample_weight=sample_weight, groups=groups)

    def partial_fit(self, X, Y, classes=None, sample_weight=None, groups=None):
        """One epoch on ``X``, ``Y``, continuing the current model; arguments as in
        :meth:`fit` and :meth:`MultiTaskClassifierBase.partial_fit`. A continuation keeps
        the mode of the first fit (with or without ``groups``)."""
        self._check_requests(X, groups, continuing=True)
        return super().partial_fit(X, Y, classes=classes, sample_weight=sample_weight, groups=groups)

    def _check_requests(self, X, groups, continuing: bool) -> None:
        """A ValueError for missing request ids, a request-level column that varies within a
        request, or a continuation that switches between per-row and request mode."""
        fitted = self.__sklearn_is_fitted__()
        if continuing and fitted and self.fitted_with_groups_ != (groups is not None):
            raise ValueError(
                f"the model was fitted {'with' if self.fitted_with_groups_ else 'without'} groups; a continuation "
                "(warm_start=True or partial_fit) keeps that mode. Set warm_start=False (or clone the estimator) to "
                "train a new model."
            )
        if groups is not None:
            check_request_columns(X, groups, self._request_level_columns(X))

    def _request_level_columns(self, X) -> list:
        """Labels of the context and sequence columns of ``X`` (request-level inputs)."""
        if sp.issparse(X) or not hasattr(X, "__len__"):
            return []
        columns = list(X.columns) if isinstance(X, pd.DataFrame) else list(range(np.shape(X)[1]))
        declared = []
        for option in (self.context_features, self.sequence_features):
            if option is None:
                continue
            declared += [option] if isinstance(option, (str, int)) else list(option)  # a dict: its keys
        found = []
        for feature in declared:
            if feature in columns:
                found.append(feature)
            elif (
                isinstance(feature, numbers.Integral) and not isinstance(feature, bool) and 0 <= feature < len(columns)
            ):
                found.append(columns[feature])
        return list(dict.fromkeys(found))  # unknown names: fit's own check reports them

    # ------------------------------------------------------------------ fitting hooks
    def _start_model(self, frame, y, groups, info, fixed):
        super()._start_model(frame, y, groups, info, fixed)
        # the mode of the model (request sets or rows alone), kept by every continuation
        self.fitted_with_groups_ = groups is not None
        # positive rate of each task: the scorers' bias initialisation (read by _build_module)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self._label_rates = np.nan_to_num(np.nanmean(y, axis=0), nan=0.5)

    def _context_names(self) -> list[str]:
        if self.context_features is None:
            return []
        features = [self.context_features] if isinstance(self.context_features, (str, int)) else self.context_features
        names = []
        keys = [str(c) for c in self._column_keys_]
        for feature in features:
            if (
                isinstance(feature, numbers.Integral)
                and not isinstance(feature, bool)
                and feature not in self._column_keys_
            ):
                if not 0 <= feature < len(keys):
                    raise ValueError(f"context feature index {feature} is out of range for {len(keys)} columns.")
                names.append(keys[feature])
            elif str(feature) in keys:
                names.append(str(feature))
            else:
                raise ValueError(f"context feature {feature!r} is not a column of X.")
        return names

    def _build_module(self, schema, n_tasks):
        return OneRank(
            schema,
            n_tasks,
            embedding_dim=self.embedding_dim,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            ffn_mult=self.ffn_mult,
            dropout=self.dropout,
            context_features=self._context_names(),
            max_history=self.max_history,
            cross_task_mask=self.cross_task_mask,
            detach=self.detach,
            scorer=self.scorer,
            candidate_access=self.candidate_access,
            infonce_weight=self.infonce_weight,
            temperature=self.temperature,
            base_rates=getattr(self, "_label_rates", None),
            requests=self.fitted_with_groups_,
        )

    # ------------------------------------------------------------------ prediction
    def _request_codes(self, groups, n_rows):
        with_groups = getattr(self, "fitted_with_groups_", False)
        if groups is not None:
            codes = group_codes(groups, n_rows)
            return codes if with_groups else None  # a per-row model scores rows alone
        if with_groups:
            warnings.warn(
                "OneRankClassifier was fitted with groups but predict is called without them: every row "
                "is scored as a request of its own. Pass groups= to score each request as a set.",
                UserWarning,
                stacklevel=4,
            )
        return None

    def _predict_task_proba(self, X, groups=None):
        check_is_fitted(self)
        if groups is not None and self.fitted_with_groups_:
            check_request_columns(X, groups, self._request_level_columns(X))
        return super()._predict_task_proba(X, groups)

    def predict_proba(self, X, groups=None):
        """Probability of the positive label for every task.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Features, with the columns seen in ``fit``.
        groups : array-like of shape (n_samples,), default=None
            Request ids: rows sharing an id are scored together as one candidate set. None
            scores every row as its own request (warned about when ``fit`` had groups).

        Returns
        -------
        proba : ndarray of shape (n_samples, n_tasks), or (n_samples, 2) for a 1-D ``y``
            Column ``k`` is task ``k``'s probability, in the order of ``task_names_``.
        """
        return self._proba_output(self._predict_task_proba(X, groups))

    def predict(self, X, groups=None):
        """0/1 decisions per task (probability > 0.5), shape (n_samples, n_tasks); with a 1-D
        ``y`` the predicted class labels. ``groups`` as in :meth:`predict_proba`."""
        return self._decisions(self._predict_task_proba(X, groups))

    def score(self, X, y, sample_weight=None, groups=None):
        """Mean over tasks of the ROC AUC of ``predict_proba(X, groups)`` (not accuracy);
        see :meth:`MultiTaskClassifierBase.score`."""
        return self._mean_task_auc(self._predict_task_proba(X, groups), y, sample_weight)
