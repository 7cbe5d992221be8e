"""The scikit-learn surface shared by every multi-task classifier."""

from __future__ import annotations

import copy
import numbers
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from skorch.callbacks import EarlyStopping, ProgressBar
from skorch.helper import predefined_split

from ._averaging import WeightAveraging
from ._distributed import same_on_all_ranks, setup_device
from ._net import MultiTaskNet, TensorDataset
from ._printlog import show_progress_bar
from ._snapshot import NetSnapshot
from ._threads import check_n_threads, torch_threads
from .features import TabularEncoder
from .features._encoder import check_numeric_encoding
from .metrics import _check_sample_weight
from .models import MultiTaskModule
from .optim import resolve_optimizer

_PRECISIONS = ("fp32", "bf16")
# Rows encoded at once by predict: bounds its memory beyond the input and the output.
_PREDICT_CHUNK = 1 << 16
_SCORING = ("auc", "loss")
# The torch.compile arguments the ``compile`` parameter may pass. An allow-list, not a block-list:
# other arguments (``options``, a custom ``backend``) can name compilers and programs to run, and a
# model file (sklearn_mtr.persistence.load) must not be able to make predict run them.
_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
_COMPILE_FLAGS = ("fullgraph", "dynamic")
# early_stopping="auto" holds out validation rows above this many training rows, as
# HistGradientBoostingClassifier does: small data keeps every row for training.
_AUTO_EARLY_STOPPING_ROWS = 10_000
# Parameters a continuation (warm_start, partial_fit) applies; every other one is fixed by the
# first fit (architecture, features, optimizer, ...) and may not change in between.
_CONTINUATION_PARAMS = frozenset(
    {
        "batch_size",
        "callbacks",
        "compile",
        "device",
        "early_stopping",
        "ema_epochs",
        "lr",
        "max_epochs",
        "n_iter_no_change",
        "n_threads",
        "random_state",
        "scoring",
        "tol",
        "validation_fraction",
        "verbose",
        "warm_start",
    }
)


def check_compile(value) -> None:
    """Check the ``compile`` parameter: a bool, or a dict of allow-listed ``torch.compile``
    arguments (``mode``, ``backend``, ``fullgraph``, ``dynamic``).

    Raises
    ------
    ValueError
        Naming the argument or value that is not allowed.
    """
    if isinstance(value, (bool, np.bool_)):
        return
    if not isinstance(value, dict):
        raise ValueError(f"compile must be a bool or a dict of torch.compile arguments, got {value!r}.")
    allowed = {"mode": _COMPILE_MODES, "backend": _COMPILE_BACKENDS}
    for key, arg in value.items():
        if key in allowed:
            if not isinstance(arg, str) or arg not in allowed[key]:
                raise ValueError(f"compile[{key!r}] must be one of {allowed[key]}, got {arg!r}.")
        elif key in _COMPILE_FLAGS:
            if not isinstance(arg, (bool, np.bool_)):
                raise ValueError(f"compile[{key!r}] must be True or False, got {arg!r}.")
        else:
            raise ValueError(
                f"compile: torch.compile argument {key!r} is not allowed; the dict may hold "
                f"{sorted([*allowed, *_COMPILE_FLAGS])} (other arguments, such as 'options', can run programs)."
            )


def resolve_device(device) -> str:
    """The torch device ``device`` names (``"auto"``: CUDA when available, else the CPU).

    Raises
    ------
    ValueError
        When ``device`` is not a torch device, or names CUDA on a machine without it.
    """
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a torch device or 'auto'.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
    return str(resolved)


class MultiTaskClassifierBase(ClassifierMixin, BaseEstimator):
    """Base class of the multi-task ranking classifiers; not meant to be used directly.

    Subclasses declare their architecture's hyper-parameters in ``__init__`` and implement
    :meth:`_build_module`. Everything else (validation, feature encoding, training with
    skorch, prediction, persistence) lives here. See :class:`MMoEClassifier` for the
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

    # ------------------------------------------------------------------ subclass hooks
    def _build_module(self, schema, n_tasks: int) -> MultiTaskModule:  # pragma: no cover
        raise NotImplementedError

    def _extra_inputs(self, y: np.ndarray, groups: np.ndarray | None) -> dict[str, torch.Tensor]:
        """Tensors added to every training batch dict besides the encoded features (none by
        default). A ``"group"`` entry (request codes) makes batches hold whole requests."""
        return {}

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

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        def positive_int(name):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")

        for name in ("batch_size", "max_epochs", "n_iter_no_change", "embedding_dim"):
            positive_int(name)
        check_numeric_encoding(self.numeric_encoding, self.numeric_bins)
        for name in ("lr", "weight_decay", "tol"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}.")
        if not (
            isinstance(self.early_stopping, (bool, np.bool_))
            or (isinstance(self.early_stopping, str) and self.early_stopping == "auto")
        ):
            raise ValueError(f"early_stopping must be 'auto', True or False, got {self.early_stopping!r}.")
        if not isinstance(self.validation_fraction, numbers.Real) or not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}.")
        if self.scoring not in _SCORING:
            raise ValueError(f"scoring must be one of {_SCORING}, got {self.scoring!r}.")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {self.precision!r}.")
        if self.ema_epochs is not None and (
            not isinstance(self.ema_epochs, numbers.Real)
            or isinstance(self.ema_epochs, bool)
            or not np.isfinite(self.ema_epochs)
            or self.ema_epochs < 0
        ):
            raise ValueError(f"ema_epochs must be None or a non-negative number of epochs, got {self.ema_epochs!r}.")
        check_compile(self.compile)
        check_n_threads(self.n_threads)
        if self.callbacks is not None and not isinstance(self.callbacks, (list, tuple)):
            raise ValueError("callbacks must be a list of skorch callbacks or (name, callback) pairs.")

    def _resolve_device(self) -> str:
        return resolve_device(self.device)

    def _validate_X(self, X, reset: bool) -> pd.DataFrame | sp.csr_matrix:
        """A DataFrame whose column keys are those seen in fit, without touching the values;
        a scipy sparse X as a CSR matrix (rows are sliced from it, never densified).

        Columns are matched by label when fit was given labelled columns (a DataFrame), by
        position otherwise (an array, a sparse matrix), and for an unlabelled X at predict time.
        """
        if sp.issparse(X):
            array = check_array(X, accept_sparse="csr", dtype=None, ensure_all_finite=False)
            if array.dtype.kind not in "biuf":
                raise ValueError(f"a sparse X must hold numbers, got dtype {array.dtype}.")
            validate_data(self, array, reset=reset, skip_check_array=True)
            if reset:
                self._labelled_columns_ = False
            return array
        if isinstance(X, pd.DataFrame):
            if not X.columns.is_unique:
                raise ValueError("X has duplicate column names.")
            # checks string column names against feature_names_in_ (order included)
            validate_data(self, X, reset=reset, skip_check_array=True)
            if reset:
                self._labelled_columns_ = True
            elif getattr(self, "_labelled_columns_", False) and not hasattr(self, "feature_names_in_"):
                # feature_names_in_ covers string names only; other labels (the integers of a
                # DataFrame built from an array) are compared here, or reordered columns would be
                # read by position, silently as the wrong features.
                self._check_column_labels(list(X.columns))
            if X.shape[0] == 0:
                raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
            if X.shape[1] == 0:
                raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
            frame = X.reset_index(drop=True)
        else:
            if hasattr(X, "__dataframe__") or type(X).__module__.startswith("polars"):
                X = X.to_pandas() if hasattr(X, "to_pandas") else pd.api.interchange.from_dataframe(X)
                return self._validate_X(X, reset)
            array = check_array(X, dtype=None, ensure_all_finite=False, ensure_2d=True, accept_sparse=False)
            if array.dtype.kind == "c":
                raise ValueError("Complex data not supported.")
            validate_data(self, array, reset=reset, skip_check_array=True)
            if reset:
                self._labelled_columns_ = False
            frame = pd.DataFrame(array)
        if not reset:
            frame.columns = self._column_keys_
        return frame

    def _check_column_labels(self, columns: list) -> None:
        """Raise when the column labels of X differ from those seen in fit, as scikit-learn
        does for string feature names (a reordering included).

        Raises
        ------
        ValueError
            Naming the labels unseen in fit, those missing, or the order expected.
        """
        expected = list(self._column_keys_)
        if columns == expected:
            return
        unseen = [c for c in columns if c not in expected]
        missing = [c for c in expected if c not in columns]
        if unseen or missing:
            detail = f"unseen at fit time: {unseen[:10]}; seen at fit time, yet now missing: {missing[:10]}"
        else:
            detail = f"the same labels in another order, {columns[:10]} instead of {expected[:10]}; reorder X's columns"
        raise ValueError(f"X's column labels should match those passed during fit: {detail}.")

    def _validate_y(self, Y, first: bool, classes=None) -> tuple[np.ndarray, dict]:
        """Labels as a float ``(n, k)`` array (NaN = missing) plus what fit learns from them."""
        if Y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        if not isinstance(Y, (pd.DataFrame, pd.Series)):
            Y = np.asarray(Y)
        if isinstance(Y, pd.Series) or (not isinstance(Y, pd.DataFrame) and np.ndim(Y) == 1):
            y = np.asarray(Y)
            check_classification_targets(y)
            if type_of_target(y) != "binary":
                raise ValueError(
                    f"Only binary classification is supported. The type of the target is {type_of_target(y)}; "
                    "for several tasks pass a 2-D Y of 0/1 labels, one column per task."
                )
            labels, encoded = np.unique(y, return_inverse=True)
            if classes is not None and first:
                labels = np.unique(np.asarray(classes))
                if len(labels) != 2 or len(np.setdiff1d(np.unique(y), labels)):
                    raise ValueError(f"classes={list(labels)} must be the two labels of y.")
                encoded = np.searchsorted(labels, y)
            classes = labels
            if first and len(classes) < 2:
                raise ValueError(
                    f"y contains only one class ({classes[0]!r}); the classifier needs samples of 2 classes."
                )
            if not first and not self.binary_:
                raise ValueError(
                    f"y is 1-D but the estimator was fitted with a 2-D Y of {self.n_tasks_} task(s); "
                    "pass Y with one column per task."
                )
            if not first:
                unknown = np.setdiff1d(classes, self.classes_)
                if len(unknown):
                    raise ValueError(
                        f"y contains labels {unknown.tolist()} not seen in the first fit: {self.classes_.tolist()}."
                    )
                encoded = np.searchsorted(self.classes_, y)
                classes = self.classes_
            # a named Series keeps its name (history_ keys, reports); on continuation the first name stays
            name = str(Y.name) if isinstance(Y, pd.Series) and Y.name is not None else ""
            name = name or "y"  # an unnamed or ""-named Series
            names = np.array([name], dtype=object) if first else self.task_names_
            info = {"binary_": True, "classes_": classes, "task_names_": names}
            return encoded.astype(np.float32).reshape(-1, 1), info

        if not isinstance(Y, pd.DataFrame) and Y.ndim != 2:
            raise ValueError(f"Y must be 1-D (one binary task) or 2-D (n_samples, n_tasks); got shape {Y.shape}.")
        frame = Y if isinstance(Y, pd.DataFrame) else pd.DataFrame(Y)
        if frame.shape[1] == 0:
            raise ValueError(f"Y must be 1-D (one binary task) or 2-D (n_samples, n_tasks); got shape {np.shape(Y)}.")
        if isinstance(Y, pd.DataFrame):
            names = np.array([str(c) for c in Y.columns], dtype=object)
            # the names key history_, the reports and the CLI's output columns
            repeated = sorted({c for c in names if list(names).count(c) > 1})
            if repeated:
                raise ValueError(f"Y's column names must be unique, one per task; {repeated} appear more than once.")
        else:
            names = np.array([f"task{k}" for k in range(frame.shape[1])], dtype=object)
        values = np.empty(frame.shape, dtype=np.float32)
        for k in range(frame.shape[1]):
            col = task_label_values(frame.iloc[:, k], f"task {names[k]!r}")
            if first and np.isnan(col).all():
                raise ValueError(f"task {names[k]!r} has no label at all (every value is missing).")
            values[:, k] = col
        if not first:
            if values.shape[1] != self.n_tasks_ or self.binary_:
                raise ValueError(
                    f"Y has {values.shape[1]} task(s) but the estimator was fitted with {self.n_tasks_}"
                    + (" as a binary classifier (1-D y)." if self.binary_ else ".")
                )
            if isinstance(Y, pd.DataFrame) and list(names) != list(self.task_names_):
                raise ValueError(f"Y's columns {list(names)} differ from the fitted tasks {list(self.task_names_)}.")
            names = self.task_names_
        info = {
            "binary_": False,
            "classes_": [np.array([0, 1]) for _ in range(values.shape[1])],
            "task_names_": names,
        }
        return values, info

    def _pos_weight_tensor(self, n_tasks: int) -> torch.Tensor | None:
        """Per-task weight of the positive term of the loss; None (plain BCE) unless an
        estimator exposes ``pos_weight``."""
        value = getattr(self, "pos_weight", None)
        if value is None:
            return None
        weights = np.asarray(value, dtype=np.float64).ravel()
        if weights.shape == (1,):
            weights = np.repeat(weights, n_tasks)
        if weights.shape != (n_tasks,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"pos_weight must be a positive number or {n_tasks} of them, one per task; got {value!r}.")
        return torch.tensor(weights, dtype=torch.float32)

    def _task_weight_tensor(self, n_tasks: int) -> torch.Tensor:
        if self.task_weights is None:
            return torch.ones(n_tasks)
        weights = np.asarray(self.task_weights, dtype=np.float64).ravel()
        if weights.shape != (n_tasks,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(
                f"task_weights must be {n_tasks} non-negative numbers, one per task; got {self.task_weights!r}."
            )
        return torch.tensor(weights, dtype=torch.float32)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, Y, sample_weight=None, groups=None):
        """Train the model on ``X`` and the task labels ``Y``.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Features. Column roles follow ``categorical_features``, ``sequence_features``
            and ``text_features``; all other columns are numeric.
        Y : array-like of shape (n_samples, n_tasks) or (n_samples,)
            0/1 labels, one column per task; NaN marks a missing label, which is left out of
            that task's loss. A 1-D ``y`` (any two labels) makes a plain binary classifier.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights in every task's loss.
        groups : array-like of shape (n_samples,), default=None
            Request / session ids. With ``early_stopping`` the validation split keeps each
            group whole. Inside a ``Pipeline`` enable metadata routing and call
            ``set_fit_request(groups=True)``.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, Y, sample_weight, groups, epochs=None)

    def partial_fit(self, X, Y, classes=None, sample_weight=None, groups=None):
        """Train for exactly one epoch on ``X, Y``, continuing from the current state.

        The first call fits the feature vocabularies and scalers on its chunk; later calls
        keep them (categories unseen in the first chunk map to the out-of-vocabulary index),
        so pass a representative first chunk. There is no validation split or early stopping.

        Parameters
        ----------
        X, Y, sample_weight, groups
            As in :meth:`fit`.
        classes : array-like of shape (2,), default=None
            For a 1-D ``y`` only: the two labels, needed on the first call when its chunk
            holds one of them only.

        Returns
        -------
        self : object
        """
        return self._fit(X, Y, sample_weight, groups, epochs=1, classes=classes)

    def _fit(self, X, Y, sample_weight, groups, epochs, classes=None):
        incremental = epochs is not None
        first = not ((incremental or self.warm_start) and self.__sklearn_is_fitted__())
        backup = dict(vars(self)) if not first else None
        # A continuation is transactional: it trains the fitted net in place, so what training
        # changes there (weights, optimizer and method state, history) is copied first and put
        # back if the call does not complete.
        snapshot = None if first else NetSnapshot(self.net_)
        try:
            with torch_threads(self.n_threads):
                interrupt = self._fit_body(X, Y, sample_weight, groups, epochs, first, classes)
        except BaseException:
            self._undo_fit(backup, snapshot)
            raise
        if interrupt is not None:
            if not first:
                self._undo_fit(backup, snapshot)  # an interrupted fresh fit keeps its complete epochs
            # Re-raised once the estimator is consistent: cross_val_score, GridSearchCV and
            # scripts must stop, not go on to score a model whose training was cut short.
            raise interrupt
        return self

    def _undo_fit(self, backup: dict | None, snapshot: NetSnapshot | None) -> None:
        """Leave the estimator as before a fit call that did not complete: unfitted after a
        fresh fit (``backup`` None), else the fitted estimator with its net's training state."""
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, key)
        if backup is not None:
            vars(self).update(backup)
            snapshot.restore(self.net_)

    def _fit_body(self, X, Y, sample_weight, groups, epochs, first, classes) -> KeyboardInterrupt | None:
        self._check_params()
        fixed = {k: repr(v) for k, v in self.get_params(deep=False).items() if k not in _CONTINUATION_PARAMS}
        # Older fitted models (joblib / safe files) have no record: nothing to compare with.
        changed = [k for k, v in getattr(self, "_fixed_params_", fixed).items() if fixed.get(k) != v]
        if not first and changed:
            raise ValueError(
                f"{changed} changed since the model was built; a continuation (warm_start=True or "
                "partial_fit) keeps the architecture, features and optimizer of the first fit. Set "
                "warm_start=False (or clone the estimator) to train a new model with them."
            )
        frame = self._validate_X(X, reset=first)
        y, info = self._validate_y(Y, first, classes)
        n = frame.shape[0]
        if y.shape[0] != n:
            raise ValueError(f"X has {n} samples but Y has {y.shape[0]}.")
        self._check_task_labels(y, info["task_names_"])
        if n < 2:
            raise ValueError(f"n_samples = {n}: at least 2 samples are needed to fit.")
        w = None if sample_weight is None else _check_sample_weight(sample_weight, n)
        if w is not None and not w.any():
            raise ValueError("sample_weight is zero for every sample: there is nothing to fit.")
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (n,):
                raise ValueError(f"groups must have shape ({n},), got {groups.shape}.")

        if first:
            rng = check_random_state(self.random_state)
            self.binary_, self.classes_, self.task_names_ = info["binary_"], info["classes_"], info["task_names_"]
            self.n_tasks_ = y.shape[1]
            self._column_keys_ = list(range(frame.shape[1])) if sp.issparse(frame) else list(frame.columns)
            self._fixed_params_ = fixed
            # Under torchrun: one GPU per rank, and rank 0's seed everywhere (see _distributed).
            self.device_ = setup_device(self._resolve_device())
            self.seed_ = same_on_all_ranks(int(rng.randint(np.iinfo(np.int32).max)))
            encoder = TabularEncoder(
                self.categorical_features,
                self.sequence_features,
                self.text_features,
                numeric_encoding=self.numeric_encoding,
                numeric_bins=self.numeric_bins,
            )
            self.feature_encoder_ = encoder.fit(frame)
        data = TensorDataset(
            {**self._encode(frame, reset=first), **self._extra_inputs(y, groups)},
            torch.from_numpy(y),
            None if w is None else torch.from_numpy(w.astype(np.float32)),
        )

        # Decided per fit call from the rows it is given (a warm start on more rows may switch it on).
        use_valid = epochs is None and self._early_stopping_on(n)
        if use_valid:
            train_ds, valid_ds = (
                TensorDataset(Xs, *yw)
                for Xs, yw in (data.take(torch.from_numpy(i)) for i in self._validation_split(n, groups))
            )
        else:
            train_ds, valid_ds = data, None
        train_ds = train_ds.to(self.device_)
        valid_ds = None if valid_ds is None else valid_ds.to(self.device_)

        devices = [torch.device(self.device_)] if torch.device(self.device_).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            # Seeded from random_state without touching the user's global torch RNG.
            torch.manual_seed(self.seed_ + (len(self.net_.history) if not first else 0))
            if first:
                self.net_ = self._make_net(valid_ds)
                self.net_.initialize()
            else:
                # A continuation trains with the current parameters (set_params between calls).
                self.net_.batch_size, self.net_.max_epochs = self.batch_size, self.max_epochs
                self.net_.set_compile(self.compile)
                if self.net_.lr != self.lr:
                    self.net_.set_params(lr=self.lr)
                self.net_.train_split = None if valid_ds is None else predefined_split(valid_ds)
                # Callbacks rebuilt from the current parameters (early_stopping, verbose, and the
                # user's `callbacks`, which set_params may have changed), as in the first fit.
                self.net_.verbose = self.verbose
                self.net_.callbacks = self._builtin_callbacks(use_valid) + self._user_callbacks()
                self.net_.initialize_callbacks()
            try:
                self.net_.partial_fit(train_ds, None, **({} if epochs is None else {"epochs": epochs}))
            except torch.cuda.OutOfMemoryError as exc:
                raise torch.cuda.OutOfMemoryError(
                    f"CUDA ran out of memory while training with batch_size={self.batch_size} on {self.device_}; "
                    "lower batch_size (or embedding_dim / the layer sizes), or try precision='bf16'."
                ) from exc
        interrupt = self._drop_interrupted_epoch(first)
        self.history_ = self.net_.history
        self.n_iter_ = len(self.net_.history)
        if (
            interrupt is None
            and use_valid
            and self.scoring == "auc"
            and self.n_iter_
            and np.isnan(self.history_[-1, "valid_auc"])
        ):
            warnings.warn("validation AUC is undefined (a task has one class in the validation split).", RuntimeWarning)
        return interrupt

    def _drop_interrupted_epoch(self, first: bool) -> KeyboardInterrupt | None:
        """The KeyboardInterrupt that ended training, if any, once the estimator is consistent.

        skorch ends training quietly on KeyboardInterrupt. An interrupted continuation is then
        undone by the caller (the estimator is left as before the call). An interrupted fresh
        fit keeps the weights of the last completed step (the best epoch's with early
        stopping), and the epoch that had not ended (its training steps, validation or
        ``on_epoch_end`` callbacks cut short) is dropped from the history, so that
        ``history_`` and ``n_iter_`` count complete epochs only. The caller re-raises the
        interrupt.
        """
        history = self.net_.history
        interrupt, ended = self.net_.pop_interrupt()
        if interrupt is None:
            return None
        if len(history) > ended:
            steps = sum("train_loss" in batch for batch in history[-1].get("batches", []))
            history.pop()
            where = f"in epoch {len(history) + 1} after {steps} training step(s)"
        else:
            where = f"after epoch {len(history)}"
        if first:
            kept = (
                f"the estimator keeps the weights reached so far, n_iter_={len(history)} complete epoch(s), "
                "and can continue with warm_start or partial_fit."
            )
        else:
            kept = "the estimator is left as it was before this call (weights, optimizer state, n_iter_, history_)."
        warnings.warn(f"fit was interrupted (KeyboardInterrupt) {where}; {kept}", RuntimeWarning)
        return interrupt

    def _early_stopping_on(self, n_rows: int) -> bool:
        """Whether a ``fit`` call on ``n_rows`` rows holds out validation rows and stops early."""
        if isinstance(self.early_stopping, str):  # "auto", checked by _check_params
            return n_rows > _AUTO_EARLY_STOPPING_ROWS
        return bool(self.early_stopping)

    def _validation_split(self, n, groups):
        if groups is not None and len(pd.unique(groups)) < 2:
            # GroupShuffleSplit would speak of "n_samples=1", meaning the groups
            auto = isinstance(self.early_stopping, str)
            raise ValueError(
                "early_stopping holds out whole groups for validation, but groups has a single value; "
                "pass at least two groups (or groups=None to split rows), or set early_stopping=False"
                + (f" (early_stopping='auto' turns it on above {_AUTO_EARLY_STOPPING_ROWS:,} rows)." if auto else ".")
            )
        splitter = (GroupShuffleSplit if groups is not None else ShuffleSplit)(
            n_splits=1, test_size=self.validation_fraction, random_state=self.seed_
        )
        train_idx, valid_idx = next(splitter.split(np.zeros(n), groups=groups))
        if len(train_idx) < 2 or len(valid_idx) < 1:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves {len(train_idx)} training and "
                f"{len(valid_idx)} validation samples; early stopping needs more data."
            )
        return train_idx, valid_idx

    def _early_stopping_callback(self, active: bool) -> EarlyStopping | None:
        if not active:
            return None
        return EarlyStopping(
            monitor="valid_auc" if self.scoring == "auc" else "valid_loss",
            patience=self.n_iter_no_change,
            threshold=self.tol,
            threshold_mode="abs",
            lower_is_better=self.scoring == "loss",
            load_best=True,
            sink=print if self.verbose else _silent,
        )

    def _builtin_callbacks(self, use_valid: bool) -> list[tuple]:
        """The callbacks the estimator adds before the user's: weight averaging (when
        ``ema_epochs``), early stopping (None when off) and, when ``verbose`` in a terminal or
        a notebook, a progress bar. Averaging comes first, so that early stopping restores its
        best epoch after the average is in place at the end of training."""
        callbacks: list = [("weight_averaging", WeightAveraging(self.ema_epochs))] if self.ema_epochs else []
        callbacks.append(("early_stopping", self._early_stopping_callback(use_valid)))
        if self.verbose and show_progress_bar():
            callbacks.append(("progress_bar", ProgressBar()))
        return callbacks

    def _user_callbacks(self) -> list[tuple]:
        """The ``callbacks`` parameter as ``(name, callback)`` pairs of copies: a fit never
        changes the callbacks the user passed, and every call starts from them."""
        named = [
            cb if isinstance(cb, tuple) else (f"user_{i}_{type(cb).__name__}", cb)
            for i, cb in enumerate(self.callbacks or [])
        ]
        return [(name, None if cb is None else copy.deepcopy(cb)) for name, cb in named]

    def _make_net(self, valid_ds) -> MultiTaskNet:
        module = self._build_module(self.feature_encoder_.schema_, self.n_tasks_)
        callbacks = self._builtin_callbacks(valid_ds is not None) + self._user_callbacks()
        return MultiTaskNet(
            module,
            mto=resolve_optimizer(self.optimizer),
            task_weights=self._task_weight_tensor(self.n_tasks_),
            pos_weight=self._pos_weight_tensor(self.n_tasks_),
            task_names=[str(t) for t in self.task_names_],
            weight_decay=self.weight_decay,
            precision=self.precision,
            compile_module=self.compile,
            seed=self.seed_,
            lr=self.lr,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            train_split=None if valid_ds is None else predefined_split(valid_ds),
            callbacks=callbacks,
            device=self.device_,
            verbose=self.verbose,
        )

    # ------------------------------------------------------------------ prediction
    def _request_codes(self, groups, n_rows: int) -> torch.Tensor | None:
        """Request codes ``(n_rows,)`` for architectures that score a request's rows as a set
        (OneRank); None, the default, means rows are predicted independently."""
        return None

    def _predict_task_logits(self, X, groups=None) -> np.ndarray:
        """Task logits ``(n_samples, n_tasks)`` of ``X``: the one path every prediction method
        takes (input validation, chunked encoding, the check for non-finite outputs)."""
        check_is_fitted(self)
        frame = self._validate_X(X, reset=False)
        # getattr: models pickled before n_threads existed have no such attribute
        with torch_threads(getattr(self, "n_threads", None)):
            logits = self._predict_logits(frame, self._request_codes(groups, frame.shape[0]))
        bad = ~np.isfinite(logits).all(axis=1)
        if bad.any():
            raise FloatingPointError(
                f"the network produced non-finite outputs for {int(bad.sum())} row(s) (first: row "
                f"{int(np.argmax(bad))}); the model's weights or those rows' inputs hold extreme values."
            )
        return logits

    def _predict_task_proba(self, X, groups=None) -> np.ndarray:
        proba = self._predict_task_logits(X, groups).astype(np.float64)
        return expit(proba, out=proba)  # in place: no second array of the output's size

    def _predict_logits(self, frame: pd.DataFrame, codes: torch.Tensor | None = None) -> np.ndarray:
        """Logits of ``frame``, encoded and predicted about ``_PREDICT_CHUNK`` rows at a time so
        that memory beyond the input and the output stays bounded however many rows there are.

        With request ``codes`` the rows are taken request by request (a chunk ends on a request
        boundary, so every request is scored whole) and the logits put back in row order.
        """
        n = frame.shape[0]
        order = None if codes is None else torch.argsort(codes, stable=True).numpy()
        sorted_codes = None if codes is None else codes.numpy()[order]
        batch_size = max(self.batch_size, 4096)
        logits, start = None, 0
        while start < n:
            stop = min(start + _PREDICT_CHUNK, n)
            if order is None:
                rows, encoded = slice(start, stop), self._encode(_take_rows(frame, slice(start, stop)))
            else:
                stop = int(np.searchsorted(sorted_codes, sorted_codes[stop - 1], side="right"))
                rows = order[start:stop]
                encoded = self._encode(_take_rows(frame, rows))
                encoded["group"] = torch.from_numpy(sorted_codes[start:stop])
            part, batch_size = self._predict_chunk(encoded, batch_size)
            if logits is None:
                logits = np.empty((n, part.shape[1]), dtype=part.dtype)
            logits[rows] = part
            start = stop
        return logits

    def _encode(self, frame: pd.DataFrame, reset: bool = False) -> dict[str, torch.Tensor]:
        """The model's input tensors for ``frame`` (``reset``: the first fit, which may record
        what the network is built from). Subclasses add inputs computed outside the feature layer."""
        return self.feature_encoder_.transform(frame)

    def _predict_chunk(self, encoded: dict, batch_size: int) -> tuple[np.ndarray, int]:
        """Logits of one encoded chunk, and the batch size that fitted on the device."""
        while True:
            try:
                return self.net_.predict_logits(encoded, batch_size), batch_size
            except torch.cuda.OutOfMemoryError as exc:
                if batch_size <= self.batch_size:
                    raise torch.cuda.OutOfMemoryError(
                        f"CUDA ran out of memory while predicting in batches of {batch_size} rows on "
                        f"{self.device_}; set a smaller batch_size (set_params(batch_size=...)): predict "
                        "then uses batches of batch_size rows."
                    ) from exc
                # Predict batches default to at least 4096 rows: fall back to batch_size rows.
                warnings.warn(
                    f"CUDA ran out of memory predicting {batch_size} rows per batch; retrying with "
                    f"batch_size={self.batch_size}.",
                    RuntimeWarning,
                )
                torch.cuda.empty_cache()
                batch_size = self.batch_size

    def _proba_output(self, proba: np.ndarray) -> np.ndarray:
        """Task probabilities as ``predict_proba`` returns them (two columns for a 1-D ``y``)."""
        if self.binary_:
            return np.column_stack([1.0 - proba[:, 0], proba[:, 0]])
        return proba

    def _decisions(self, proba: np.ndarray) -> np.ndarray:
        """Task probabilities as ``predict`` returns them: 0/1 per task, or class labels."""
        if self.binary_:
            return self.classes_[(proba[:, 0] > 0.5).astype(int)]
        return (proba > 0.5).astype(np.int64)

    def _mean_task_auc(self, proba: np.ndarray, y, sample_weight) -> float:
        """What :meth:`score` returns, from already predicted task probabilities."""
        from sklearn.exceptions import UndefinedMetricWarning

        from .metrics import per_task_roc_auc

        y, _ = self._validate_y(y, first=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            aucs = per_task_roc_auc(y, proba, sample_weight=sample_weight)
        undefined = np.isnan(aucs)
        if undefined.any():
            names = [str(t) for t, u in zip(self.task_names_, undefined) if u]
            warnings.warn(
                f"ROC AUC is undefined for task(s) {names}: their labelled rows in y hold one class only; "
                + ("the score is NaN." if undefined.all() else "the score is the mean over the other tasks."),
                UndefinedMetricWarning,
            )
        return float(np.nanmean(aucs)) if not undefined.all() else float("nan")

    def predict_proba(self, X):
        """Probability of the positive label for every task.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_tasks), or (n_samples, 2) for a 1-D ``y``
            Column ``k`` is task ``k``'s probability, in the order of ``task_names_``
            (the marginal probability of that label). A binary classifier returns the
            usual two columns, ordered as ``classes_``.
        """
        return self._proba_output(self._predict_task_proba(X))

    def predict(self, X):
        """0/1 decisions per task (probability > 0.5), shape (n_samples, n_tasks).

        With a 1-D ``y`` the predicted class labels, shape (n_samples,).
        """
        return self._decisions(self._predict_task_proba(X))

    def score(self, X, y, sample_weight=None):
        """Mean over tasks of the ROC AUC of ``predict_proba`` (not accuracy).

        Missing labels (NaN) are left out per task; a task with a single class in ``Y`` (a
        cross-validation fold where it is constant, say) is skipped with an
        ``UndefinedMetricWarning``, and the score is NaN, with the same warning, when every
        task is. This is what ``GridSearchCV`` maximises when ``scoring`` is not given.
        """
        return self._mean_task_auc(self._predict_task_proba(X), y, sample_weight)


def task_label_values(column, what: str) -> np.ndarray:
    """One task's labels as float64, NaN where missing: the rule for every column of a 2-D
    ``Y`` (0/1 numbers, no text, not mapped from two other values; a 1-D ``y`` alone may hold
    any two labels). ``what`` names the column in errors (``"task 'click'"``).

    Raises
    ------
    ValueError
        When the column holds text or numbers other than 0 and 1.
    """
    column = pd.Series(np.asarray(column, dtype=object) if not isinstance(column, pd.Series) else column)
    try:
        values = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        present = column[column.notna()]
        numeric = pd.to_numeric(present, errors="coerce")
        examples = list(dict.fromkeys(present[numeric.isna()].head(1000).tolist()))[:3]
        raise ValueError(
            f"{what} holds non-numeric labels ({', '.join(repr(v) for v in examples)}); each task's labels must be "
            "0/1 numbers (NaN or empty = missing)."
        ) from None
    bad = np.setdiff1d(np.unique(values[~np.isnan(values)]), [0.0, 1.0])
    if len(bad):
        raise ValueError(f"{what} holds labels {bad[:5].tolist()}; each task must be binary 0/1 (NaN = missing).")
    return values


def _take_rows(frame, rows):
    """Rows of a DataFrame or a CSR matrix (slicing CSR rows copies only theirs)."""
    return frame[rows] if sp.issparse(frame) else frame.iloc[rows]


def store_init_params(estimator: BaseEstimator, params: dict) -> None:
    """Store every ``__init__`` argument unchanged under its own name (sklearn's rule: no
    logic in ``__init__``). Estimators call it as ``store_init_params(self, locals())``,
    which keeps their explicit signatures without repeating each name three times."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def _silent(*args, **kwargs) -> None:
    """A picklable sink that prints nothing."""


COMMON_PARAMETERS = """optimizer : str or MultiTaskOptimizer, default="adam"
        Multi-task optimization method: a registered name (``"adam"`` / ``"ew"`` = equal
        weighting with Adam) or an instance from :mod:`sklearn_mtr.optim`, whose own
        parameters can be searched as ``optimizer__<name>``.
    lr : float, default=1e-3
        Learning rate.
    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW style).
    batch_size : int, default=256
        Rows per training step.
    max_epochs : int, default=10
        Passes over the training data (``fit``); ``partial_fit`` always runs one.
    early_stopping : "auto" or bool, default="auto"
        Hold out ``validation_fraction`` of the rows (whole groups when ``groups`` is given),
        stop when ``scoring`` on it has not improved by ``tol`` for ``n_iter_no_change``
        epochs, and restore the best epoch's weights. ``"auto"`` (as in
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`) turns it on when the
        ``fit`` call is given more than 10,000 rows and off otherwise, decided anew at each
        call (a ``warm_start`` fit included); ``partial_fit`` never stops early.
    validation_fraction : float, default=0.1
        Share of rows held out for early stopping.
    n_iter_no_change : int, default=3
        Patience of early stopping, in epochs.
    scoring : {"auc", "loss"}, default="auc"
        Early-stopping criterion: mean per-task validation ROC AUC, or validation loss.
    tol : float, default=1e-4
        Minimum improvement that resets the patience.
    ema_epochs : float or None, default=1.0
        Horizon, in epochs, of an exponential moving average of the weights (Polyak
        averaging): training moves the raw weights, while validation, early stopping's
        choice of epoch and the fitted model use the average. The decay per step is
        ``1 - 1 / (ema_epochs * steps_per_epoch)``, so the horizon does not depend on the
        data or batch size. It costs one extra copy of the weights (1.06x a SharedBottom
        epoch on Census) and lifted Census income AUC by 0.0011 (SharedBottom) and 0.0014
        (ResFlow) over 5 paired seeds; MMoE and PLE gained about 0.001 over 3 seeds, within
        noise (see the benchmarks page). ``None`` or 0 turns it off. Each fit call (``partial_fit`` and warm starts included) starts a new
        average from its starting weights.
    categorical_features : "from_dtype", None, array-like of bool, int or str, default="from_dtype"
        Columns embedded as categories, with the value space of
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`: a boolean mask, column
        indices, column names, or ``"from_dtype"`` (pandas ``category`` columns and string
        columns, including pandas 3's ``str`` dtype). String columns that are not declared
        categorical raise an error. Each category gets an embedding; categories unseen in
        ``fit`` and missing values share an out-of-vocabulary embedding. Values must be
        numbers or text: ``bytes`` (``b"a"``, which is not ``"a"``) are a ``ValueError``
        naming the column; decode them first (``X[col].str.decode("utf-8")``).
    sequence_features : list or dict, default=None
        List-valued columns (ids per row, e.g. a user's recent items). A dict maps a sequence
        column to the categorical column whose vocabulary and embedding it shares (``None``
        for a vocabulary of its own). Missing cells are empty sequences.
    text_features : list, default=None
        String columns read as bags of lower-cased ``\\w+`` words and word pairs, hashed
        into 2**18 buckets and weighted as TF-IDF (``1 + log tf`` times the idf of the first
        fit, l2-normalised per row; terms unseen in that fit are dropped). Each column is one
        field of the deep input (a weighted sum of learned term vectors) and a linear term
        added to every task's logit (wide & deep). A missing value is an empty text.
        A ``scipy.sparse`` X (e.g. a ``ColumnTransformer`` of ``TfidfVectorizer`` and
        ``OneHotEncoder``) is read the same way, without densifying: its stored values,
        scaled by each column's largest training magnitude, as one field and a linear term;
        it cannot be combined with the column-role parameters, and NaN or infinite stored
        values are an error.
    numeric_encoding : {"piecewise", "standard"}, default="piecewise"
        How the network reads numeric columns. ``"piecewise"``: each column becomes an
        ``embedding_dim`` vector, a learned linear map of its piecewise-linear code over
        ``numeric_bins`` bins fitted on the training values (Gorishniy et al., arXiv
        2203.05556), so the network can place thresholds on a heavy-tailed or zero-inflated
        column as a tree does; a column with few distinct values gets one bin per value
        (an embedding per value). ``"standard"``: the standardised value as one number.
        Either way a missing value is the training mean plus a missing-indicator input.
    numeric_bins : int or dict, default=32
        Bins per numeric column for ``numeric_encoding="piecewise"``: edges at the training
        quantiles, with a value holding more than ``1 / numeric_bins`` of the rows (the 0 of
        a zero-inflated column) given edges of its own so the other values still get fine
        bins. A dict maps columns to their bin edges (sorted numbers), fixed up front as
        streaming fits need; the other columns get 32 fitted bins.
    embedding_dim : int, default=16
        Size of every embedding.
    task_weights : array-like of shape (n_tasks,), default=None
        Fixed weight of each task's loss (ones by default).
    device : str, default="auto"
        Torch device; ``"auto"`` uses CUDA when available.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"`` runs the forward pass under bfloat16 autocast: on GPUs, and on CPUs with
        AVX512-BF16 or AMX, where it trained a large MMoE about 1.9x faster than fp32 (see
        the performance docs). Weights and optimizer state stay float32, and the logits are
        cast back to float32 before the losses and probabilities.
    compile : bool or dict, default=False
        Run the network's forward pass through ``torch.compile`` (a dict is passed to it as
        keyword arguments, e.g. ``{"mode": "max-autotune"}``; it may hold only ``mode``,
        ``backend`` (``"inductor"``, ``"aot_eager"`` or ``"eager"``), ``fullgraph`` and
        ``dynamic``, since other arguments can run programs). The first batches of each shape
        and mode pay the compilation (tens of seconds); it pays off on GPUs and long fits. The
        plain module is what is trained, saved and exported: the compiled function shares its
        weights and is rebuilt after unpickling.
    n_threads : int, default=None
        Torch intra-op threads (``torch.set_num_threads``) for the duration of each ``fit``,
        ``partial_fit``, ``predict_proba``, ``predict`` and ``score`` call; the previous count
        is restored afterwards. None leaves torch's own setting (by default one thread per
        core) alone. On a busy machine a small model can run much faster with 1; see the
        performance docs.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, dropout and the validation split. A fixed
        value gives identical predictions for repeated fits on CPU (GPU kernels may differ).
    verbose : int, default=0
        When positive, print a per-epoch table: losses, the mean and (with a validation
        split) each task's validation AUC, and the method's diagnostics summarised (a list of
        numbers as its values to 3 digits, or its range when longer than four); plus a
        progress bar per epoch in a terminal or a notebook. Written to a file or a pipe, the
        output has no colour codes and no progress bar.
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks (``Checkpoint``, ``LRScheduler``, loggers, ...), each a callback
        or a ``(name, callback)`` pair; copied at each ``fit`` and ``partial_fit`` call, so a
        continuation runs the list the parameter holds then (``set_params(callbacks=...)``).
    warm_start : bool, default=False
        When True, ``fit`` continues training the fitted model (same features and tasks)
        instead of starting over. A continuation applies the training parameters (``lr``,
        ``batch_size``, ``max_epochs``, early stopping, ...); changing a parameter that built
        the model (architecture, features, ``optimizer``, ...) in between is a ``ValueError``.

    Attributes
    ----------
    classes_ : list of ndarray, or ndarray
        ``[array([0, 1])] * n_tasks`` (per task, as :class:`~sklearn.multioutput.MultiOutputClassifier`
        keeps them, so scorers see a multilabel problem even with two tasks); the two
        labels for a 1-D ``y``.
    n_tasks_ : int
        Number of tasks.
    task_names_ : ndarray of str
        Task names: ``Y``'s column names for a DataFrame, else ``task0, task1, ...``; for a
        1-D ``y``, its name when it is a named Series, else ``"y"``.
    n_features_in_ : int
        Number of columns of ``X``.
    feature_names_in_ : ndarray of str
        Column names of ``X`` when it is a DataFrame with string column names.
    feature_encoder_ : TabularEncoder
        The fitted column roles, vocabularies and scalers.
    net_ : skorch.NeuralNet
        The private skorch net that trained the model (``net_.module_`` is the torch module).
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``train_loss_<task>``, ``train_auc_<task>``,
        ``train_auc``, the ``valid_`` counterparts with early stopping, ``dur``, and
        ``optim_<name>`` diagnostics from the optimization method.
    n_iter_ : int
        Number of epochs trained.
    device_ : str
        The device training ran on."""


def with_common_parameters(cls=None, **entries):
    """Insert :data:`COMMON_PARAMETERS` where a class docstring says ``%(common)s``.

    Used bare (``@with_common_parameters``) or with keyword ``entries`` that replace the
    entry of a common parameter whose default the class changes: ``name="name : type,
    default=...\n        description"`` (the description indented by 8 spaces, as here).
    """

    def decorate(cls):
        # an entry is a line "    name : ..." (the first one unindented) and its indented description
        blocks: list[list[str]] = []
        for line in COMMON_PARAMETERS.split("\n    "):
            if line.startswith(" ") and blocks:
                blocks[-1].append(line)
            else:
                blocks.append([line])
        found = set()
        for block in blocks:
            name = block[0].split(" : ", 1)[0]
            if name in entries:
                block[:] = [entries[name].rstrip()]
                found.add(name)
        if found != set(entries):
            raise ValueError(f"not common parameters: {sorted(set(entries) - found)}")
        cls.__doc__ = cls.__doc__.replace("%(common)s", "\n    ".join(line for b in blocks for line in b))
        return cls

    return decorate(cls) if cls is not None else decorate
