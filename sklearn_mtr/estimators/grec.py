"""GRecClassifier: the scikit-learn estimator around :class:`~sklearn_mtr.models.GRec`."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted

from .._base import MultiTaskClassifierBase
from .._common_doc import with_common_parameters
from .._params import store_init_params
from ..models import GRec
from ._router_statistics import RouterStatistics


@with_common_parameters
class GRecClassifier(MultiTaskClassifierBase):
    """Generalist Recommender with a task-sentence mixture of experts (Wang et al., CIKM 2023).

    Every sample is turned into tokens of width ``d_model``: a wide & deep **context**
    token (categorical embeddings through a deep layer, numeric columns through batch norm
    and a wide layer), one **behaviour-sequence** token per ``sequence_features`` column
    (a parallel Transformer with multi-query attention, rotary positions and a padding
    mask), one **text** token per ``text_features`` column (a projection of its TF-IDF-weighted
    bag of hashed word uni- and bigrams, or a projected vector of a ``sentence_encoder``),
    and a **candidate item** token (``item_features``). These tokens form a sentence, mixed
    by a parallel Transformer block; a Switch-style sparse mixture of experts transforms it
    (top-k routing; router noise only while training; load-balancing and router z-losses
    added to the training loss), and a shared head with one output unit per task scores
    it. By default (``routing="task"``) the router reads each task's learned embedding, so
    a task's experts are the same for every row and each distinct expert path runs once
    per row, however many tasks; with ``routing="sentence"`` or ``"token"`` each (sample,
    task) pair forms its own sentence with a **task** token, and the experts are chosen
    per sentence or per token (with expert capacity in training).

    Readings of the paper (arXiv 2504.05318, and its released example code): the paper's
    production head is a softmax over items; here each task gets one binary output. The
    paper's "task-sentence" routing is read three ways (``routing``): ``"task"`` routes on
    the task embedding alone, so each task's expert path is chosen once per batch and
    inference runs each distinct path once per row, whatever the number of tasks (the
    Task-MoE of Kudugunta et al., arXiv 2110.03742); ``"sentence"`` routes each (sample,
    task) sentence on its task-token state after mixing; ``"token"`` routes each token, as
    the released code does. Capacity is a per-batch limit applied in training only;
    predictions are dropless, so a row's probability never depends on the rows it is
    batched with. The released code's bugs are not reproduced: the load-balancing loss
    reads router probabilities (not logits), the router jitter is off at inference,
    sequence pooling ignores padding, the mixing block has a residual, and capacity in
    sentence mode counts sentences, so a sentence is never partly dropped.

    A pretrained sentence encoder (the paper's MiniLM) can be plugged in with
    ``sentence_encoder``: any callable the user has locally (nothing is downloaded at run
    time, and none is bundled). Reading taken: its vectors are frozen features (the paper
    fine-tunes its text tower; here the callable is never trained) and each text column's
    token is a learned ``Linear(d, d_model)`` of its vector, in place of the word encoder.

    Parameters
    ----------
    d_model : int, default=64
        Width of every token (the released code fixes it to 256). 64 by measurement: on
        Census-Income (5 paired seeds, ``benchmarks/results/weight_averaging_census_grec_width.json``)
        the width 32 left the validation AUC flat after 5-6 epochs (``max_epochs=20`` changed no
        fit's test AUC) and the test income AUC 0.0006 below HistGradientBoosting; 64, whose context
        token reads the categorical embeddings through 32 units instead of 16, raised income
        AUC on every seed, by +0.0010 [+0.0004, +0.0017] (never-married +0.0001 [-0.0000,
        +0.0002]): level with HistGradientBoosting on income (+0.0004 [-0.0003, +0.0011]), at
        about 1.7 times the fit time.
    n_heads : int, default=2
        Query heads of the attention blocks (one shared key / value head); ``d_model /
        n_heads`` must be even.
    n_sequence_layers : int, default=1
        Parallel Transformer blocks over each behaviour sequence.
    n_text_layers : int, default=1
        Unused: text columns are TF-IDF-weighted bags of hashed word uni- and bigrams, whose
        token is a projection of the bag (kept for compatibility of the parameters).
    max_sequence_length : int, default=50
        The most recent items kept per sequence (the last ones of the list, which is
        assumed to be in chronological order).
    max_text_length : int, default=32
        Unused, as ``n_text_layers`` (texts keep their 256 heaviest terms).
    item_features : list of str, default=None
        Categorical columns forming the candidate item token. None: the categorical columns
        whose vocabulary a ``sequence_features`` column shares (the candidate item of a
        behaviour history); no candidate token when there is none. These columns are left
        out of the context token.
    task_features : list of str, default=None
        Categorical columns (scenario, channel, ...) whose embeddings are projected and added
        to every task token: GRec's auxiliary task tokens. They stay in the context token.
    n_experts : int, default=4
        Experts of the MoE layer.
    expert_hidden_dim : int, default=None
        Hidden width of each expert (``d_model`` when None, as released).
    top_k : int, default=1
        Experts per routing unit (Switch-style top-1). With ``top_k > 1`` the chosen
        experts' probabilities are renormalised to sum to one.
    routing : {"task", "sentence", "token"}, default="task"
        What the router reads, and so what it sends to the experts. The default was chosen
        by measurement: on MovieLens-100K with title and history (2 paired seeds) task
        routing was ahead of sentence routing on both seeds, both tasks and both metrics
        (mean +0.006 / +0.007 AUC and +0.005 / +0.005 GAUC, like / love), level on
        Census-Income (within 0.0004 AUC), and faster to predict at every number of tasks.

        - ``"task"``: the task embedding. A task's experts are the same for every row, so
          the sentence holds only the shared tokens (no task token: ``task_features`` are
          refused), is mixed once per row, each distinct expert path runs once per row and
          the shared head once per path; a task adds only its output unit. Prediction cost
          is flat in the number of tasks (bounded by the number of distinct paths, at most
          ``n_experts`` for top-1). Tasks on one path share its head output and differ by
          their towers (``tower_hidden_sizes``) and their path's gate, the mean of their
          router probabilities. No capacity limit (an expert runs on all the rows of its
          tasks), so ``capacity_factor`` is unused.
        - ``"sentence"``: each (sample, task) sentence, on its task-token state after the
          mixing block; all its tokens go to the same experts. Cost grows with the number
          of tasks: the mixing attention, the MoE and the head run per sentence.
        - ``"token"``: each token of each sentence, as the released code does.
    capacity_factor : float or None, default=1.25
        An expert accepts at most ``ceil(capacity_factor * units * top_k / n_experts)``
        routing units per training batch; overflow units skip the MoE (residual only) and
        are counted in ``history_[:, "capacity_dropped_fraction"]``. None: no limit.
        Prediction never drops a unit.
    router_jitter : float, default=0.1
        Multiplicative uniform noise on the router input while training.
    balance_loss_coef : float, default=1e-4
        Weight of the load-balancing loss (released code: 1e-4; Switch used 1e-2).
    z_loss_coef : float, default=1e-4
        Weight of the router z-loss (released code: 1e-4; ST-MoE used 1e-3).
    head_hidden_sizes : tuple of int, default=(64,)
        Widths of the shared head (LeakyReLU(0.2)) over the flattened sentence.
    tower_hidden_sizes : tuple of int, default=()
        Widths of each task's private layers before its output unit.
    dropout : float, default=0.0
        Dropout in the attention, the experts, after the MoE and in the head.
    sentence_encoder : callable, default=None
        A function mapping a list of ``n`` strings to an array-like ``(n, d)`` of finite
        floats, e.g. the ``encode`` method of a locally installed sentence-transformers
        model. When given, every ``text_features`` column's strings (None / NaN become
        ``""``) are embedded by it, at fit and at predict time, and the column's text token
        is a learned linear projection of the vector (``d`` to ``d_model``) instead of the
        trainable word encoder; the callable itself is not trained. ``d`` is read at fit
        time and must not change afterwards. Such an estimator can be pickled (joblib) when
        the callable can; :func:`sklearn_mtr.persistence.save` refuses it.
    %(common)s

    The history also holds, per epoch of training batches, ``capacity_dropped_fraction`` (the
    share of routing units, sentences or tokens, that the capacity limit kept out of the MoE:
    they pass through on the residual alone) and ``router_expert_load`` (the share of units
    each expert took). Capacity applies in training only, so the two differ: at inference every
    unit reaches its experts. A ``RuntimeWarning`` (once per fit) names any expert whose load
    falls below 1 % of the uniform share in an epoch (a collapsed expert).

    Examples
    --------
    >>> from sklearn_mtr import GRecClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> X, Y = make_multitask_classification(n_samples=300, n_tasks=2, random_state=0)
    >>> clf = GRecClassifier(max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    >>> len(clf.history_[-1, "router_expert_load"])
    4

    Text and behaviour sequences:

    >>> import pandas as pd
    >>> X = pd.DataFrame({
    ...     "item": pd.Categorical(["a", "b", "c", "a"] * 10),
    ...     "query": ["red shoes", "", None, "blue hat"] * 10,
    ...     "history": [["a", "b"], [], ["c"], ["b"]] * 10,
    ... })
    >>> Y = pd.DataFrame({"click": [1, 0, 1, 0] * 10, "buy": [1, 0, 0, 0] * 10})
    >>> clf = GRecClassifier(sequence_features={"history": "item"}, text_features=["query"],
    ...                      max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.predict_proba(X).shape
    (40, 2)

    With a sentence encoder (here a toy one; e.g. ``SentenceTransformer(path).encode``):

    >>> import numpy as np
    >>> def encode(texts):
    ...     return np.array([[len(t), t.count(" "), float("e" in t)] for t in texts])
    >>> clf = GRecClassifier(sequence_features={"history": "item"}, text_features=["query"],
    ...                      sentence_encoder=encode, max_epochs=2, random_state=0).fit(X, Y)
    >>> clf.sentence_dims_
    {'query': 3}
    """

    # The module's constraints table (sentence_dims is computed in fit from the sentence encoder).
    _parameter_constraints: ClassVar[dict[str, list]] = GRec.parameter_constraints(exclude=("sentence_dims",))

    def __init__(
        self,
        *,
        d_model=64,
        n_heads=2,
        n_sequence_layers=1,
        n_text_layers=1,
        max_sequence_length=50,
        max_text_length=32,
        item_features=None,
        task_features=None,
        n_experts=4,
        expert_hidden_dim=None,
        top_k=1,
        routing="task",
        capacity_factor=1.25,
        router_jitter=0.1,
        balance_loss_coef=1e-4,
        z_loss_coef=1e-4,
        head_hidden_sizes=(64,),
        tower_hidden_sizes=(),
        dropout=0.0,
        sentence_encoder=None,
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

    def _build_module(self, schema, n_tasks):
        return GRec(
            schema,
            n_tasks,
            embedding_dim=self.embedding_dim,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_sequence_layers=self.n_sequence_layers,
            n_text_layers=self.n_text_layers,
            max_sequence_length=self.max_sequence_length,
            max_text_length=self.max_text_length,
            item_features=self.item_features,
            task_features=self.task_features,
            n_experts=self.n_experts,
            expert_hidden_dim=self.expert_hidden_dim,
            top_k=self.top_k,
            routing=self.routing,
            capacity_factor=self.capacity_factor,
            router_jitter=self.router_jitter,
            balance_loss_coef=self.balance_loss_coef,
            z_loss_coef=self.z_loss_coef,
            head_hidden_sizes=self.head_hidden_sizes,
            tower_hidden_sizes=self.tower_hidden_sizes,
            dropout=self.dropout,
            sentence_dims=getattr(self, "sentence_dims_", None),
        )

    def _encode(self, frame, reset=False):
        encoded = super()._encode(frame, reset)
        if reset:
            self.sentence_dims_ = {}
        if self.sentence_encoder is None:
            return encoded
        if not callable(self.sentence_encoder):
            raise ValueError(
                "sentence_encoder must be a callable mapping a list of strings to an (n, d) array, "
                f"got {self.sentence_encoder!r}."
            )
        for text in self.feature_encoder_.schema_.texts:
            vectors = self._sentence_vectors(frame[text.name], text.name)
            if reset:
                self.sentence_dims_[text.name] = vectors.shape[1]
            elif vectors.shape[1] != self.sentence_dims_.get(text.name):
                raise ValueError(
                    f"sentence_encoder returned vectors of dimension {vectors.shape[1]} for text column "
                    f"{text.name!r}; the model was fitted on dimension {self.sentence_dims_.get(text.name)}."
                )
            encoded[f"sentence__{text.name}"] = torch.from_numpy(vectors)
        return encoded

    def _sentence_vectors(self, column: pd.Series, name: str) -> np.ndarray:
        """The encoder's ``(n, d)`` float32 vectors of one text column (missing values: ``""``)."""
        texts = [
            v if isinstance(v, str) else "" if v is None or (np.ndim(v) == 0 and pd.isna(v)) else str(v) for v in column
        ]
        out = self.sentence_encoder(texts)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu()
        try:
            vectors = np.asarray(out, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"sentence_encoder must return an (n, d) array of floats; for text column {name!r} it "
                f"returned {type(out).__name__}, which is not one ({exc})."
            ) from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or vectors.shape[1] < 1:
            raise ValueError(
                f"sentence_encoder must return an array of shape (n, d) = ({len(texts)}, d >= 1) for the "
                f"{len(texts)} strings of text column {name!r}; got shape {vectors.shape}."
            )
        if not np.isfinite(vectors).all():
            bad = int(np.argmax(~np.isfinite(vectors).all(axis=1)))
            raise ValueError(
                f"sentence_encoder returned non-finite values (NaN or inf) for text column {name!r} "
                f"(first at row {bad}: {texts[bad]!r})."
            )
        return np.ascontiguousarray(vectors)

    def predict_proba_for(self, X, tasks) -> np.ndarray:
        """Probabilities of some tasks only, computing only what those tasks need.

        Parameters
        ----------
        X : DataFrame, ndarray or sparse matrix
            As for :meth:`predict_proba`.
        tasks : list of task names or int
            Names from ``task_names_`` (or positions in it), in the order wanted.

        Returns
        -------
        proba : ndarray of shape (n_samples, len(tasks))
            Equal to ``predict_proba(X)[:, positions]``. Only the asked tasks' sentences are
            built (sentence and token routing) or only their expert paths run (task routing).
        """
        check_is_fitted(self)
        names = list(self.task_names_)
        if isinstance(tasks, (str, int, np.integer)):
            tasks = [tasks]
        index = []
        for task in tasks:
            if task in names:
                index.append(names.index(task))
            elif isinstance(task, (int, np.integer)) and not isinstance(task, bool) and 0 <= task < len(names):
                index.append(int(task))
            else:
                raise ValueError(f"tasks names {task!r}, which is not a task; the tasks are {names}.")
        if not index:
            raise ValueError("tasks must name at least one task.")
        module = self.net_.module_
        if not isinstance(module, GRec) or self.compile:  # wrapped (multi-task method) or compiled: slice
            return self._predict_task_proba(X)[:, index]
        module.scored_tasks = index
        try:
            return self._predict_task_proba(X)
        finally:
            module.scored_tasks = None

    def _builtin_callbacks(self, use_valid: bool) -> list[tuple]:
        # here, not in _make_net: every fit call (partial_fit, warm_start) rebuilds the callbacks
        return [*super()._builtin_callbacks(use_valid), ("router_statistics", RouterStatistics())]
