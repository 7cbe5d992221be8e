"""Fitting shared by every estimator: the first fit, and continuations (``warm_start``,
``partial_fit``) that are transactional."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit
from sklearn.utils import check_random_state
from skorch.callbacks import EarlyStopping, ProgressBar
from skorch.helper import predefined_split

from ._averaging import WeightAveraging
from ._batches import TaskDataset
from ._distributed import same_on_all_ranks, setup_device
from ._net import MultiTaskNet
from ._params import check_common_params, resolve_device
from ._printlog import show_progress_bar
from ._snapshot import NetSnapshot
from ._threads import torch_threads
from .features import TabularEncoder
from .metrics import _check_sample_weight
from .optim import resolve_optimizer

# early_stopping="auto" holds out validation rows above this many training rows, as
# HistGradientBoostingClassifier does: small data keeps every row for training.
_AUTO_EARLY_STOPPING_ROWS = 10_000
# The parameters every fit call applies, a continuation (warm_start, partial_fit) as much as the
# first fit: read by _call_net_params (the skorch net's share), the callbacks, the validation split,
# the seed and the thread scope. Every other parameter builds the model at the first fit and may not
# change before a continuation. tests/test_continuation_params.py checks that a continuation
# applies each one.
PER_CALL_PARAMS = frozenset(
    {
        "batch_size",
        "callbacks",
        "compile",
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


class FitMixin:
    """``fit`` and ``partial_fit``: input checks, the first fit's state, and training."""

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
        check_common_params(self)
        fixed = self._check_fixed_params(first)
        frame, y, info, w, groups = self._check_fit_inputs(X, Y, sample_weight, groups, first, classes)
        # The seed of this call: a continuation with the same int random_state draws the first
        # fit's seed again (its epochs are then seeded by their number, see MultiTaskNet).
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if first:
            self._start_model(frame, y, groups, info, fixed)
        self.seed_ = same_on_all_ranks(seed)  # after _start_model, which joins torchrun's process group
        # Decided per fit call from the rows it is given (a warm start on more rows may switch it on).
        use_valid = epochs is None and self._early_stopping_on(frame.shape[0])
        train_ds, valid_ds = self._training_data(frame, y, w, groups, first, use_valid)
        self._train(train_ds, valid_ds, epochs, first)
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

    def _check_fixed_params(self, first: bool) -> dict[str, str]:
        """The parameters that built the model (all but :data:`PER_CALL_PARAMS`), as recorded by
        the first fit; a continuation raises when one of them has changed since."""
        fixed = {k: repr(v) for k, v in self.get_params(deep=False).items() if k not in PER_CALL_PARAMS}
        changed = [] if first else [k for k, v in self._fixed_params_.items() if fixed.get(k) != v]
        if changed:
            move = (
                " A fitted model moves to another device through sklearn_mtr.persistence.save and "
                "load(path, device=...)."
                if "device" in changed
                else ""
            )
            raise ValueError(
                f"{changed} changed since the model was built; a continuation (warm_start=True or "
                "partial_fit) keeps the architecture, features, optimizer and device of the first fit. Set "
                "warm_start=False (or clone the estimator) to train a new model with them." + move
            )
        return fixed

    def _check_fit_inputs(self, X, Y, sample_weight, groups, first, classes):
        """``X`` as a frame (or CSR matrix), the labels ``(n, n_tasks)`` with what fit learns from
        them, the row weights and the groups, checked against each other."""
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
        return frame, y, info, w, groups

    def _start_model(self, frame, y: np.ndarray, groups, info: dict, fixed: dict[str, str]) -> None:
        """What the first fit learns before training: the tasks, the columns, the device and the
        fitted feature encoder (subclasses add what their architecture is built from)."""
        self.binary_, self.classes_, self.task_names_ = info["binary_"], info["classes_"], info["task_names_"]
        self.n_tasks_ = y.shape[1]
        self._column_keys_ = list(range(frame.shape[1])) if sp.issparse(frame) else list(frame.columns)
        self._fixed_params_ = fixed
        # Under torchrun: one GPU per rank, and rank 0's seed everywhere (see _distributed).
        self.device_ = setup_device(resolve_device(self.device))
        encoder = TabularEncoder(
            self.categorical_features,
            self.sequence_features,
            self.text_features,
            numeric_encoding=self.numeric_encoding,
            numeric_bins=self.numeric_bins,
        )
        self.feature_encoder_ = encoder.fit(frame)

    def _training_data(self, frame, y, w, groups, first: bool, use_valid: bool):
        """The training and validation datasets (None without a validation split), on the device."""
        data = TaskDataset(
            self._encode(frame, reset=first),
            torch.from_numpy(y),
            None if w is None else torch.from_numpy(w.astype(np.float32)),
            self._request_codes(groups, frame.shape[0]),
        )
        if not use_valid:
            return data.to(self.device_), None
        train_ds, valid_ds = (data.subset(torch.from_numpy(i)) for i in self._validation_split(frame.shape[0], groups))
        return train_ds.to(self.device_), valid_ds.to(self.device_)

    def _call_net_params(self, valid_ds) -> dict:
        """The skorch net's parameters each fit call sets from the estimator's current ones: the
        first fit builds the net with them and a continuation sets them on the fitted net, so the
        two apply the same parameters."""
        return {
            "lr": self.lr,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "compile_module": self.compile,
            "seed": self.seed_,
            "train_split": None if valid_ds is None else predefined_split(valid_ds),
            # fresh copies of the user's callbacks, after the built-in ones
            "callbacks": self._builtin_callbacks(valid_ds is not None) + self._user_callbacks(),
            "verbose": self.verbose,
        }

    def _train(self, train_ds, valid_ds, epochs: int | None, first: bool) -> None:
        params = self._call_net_params(valid_ds)
        devices = [torch.device(self.device_)] if torch.device(self.device_).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            # Seeded from random_state without touching the user's global torch RNG.
            torch.manual_seed(self.seed_ + (len(self.net_.history) if not first else 0))
            if first:
                self.net_ = self._make_net(params)
                self.net_.initialize()
            else:
                self.net_.set_compile(params.pop("compile_module"))
                lr = params.pop("lr")
                if self.net_.lr != lr:
                    self.net_.set_params(lr=lr)  # a virtual parameter: reaches the optimizer's groups
                for name, value in params.items():
                    setattr(self.net_, name, value)
                self.net_.initialize_callbacks()
            try:
                self.net_.partial_fit(train_ds, None, **({} if epochs is None else {"epochs": epochs}))
            except torch.cuda.OutOfMemoryError as exc:
                raise torch.cuda.OutOfMemoryError(
                    f"CUDA ran out of memory while training with batch_size={self.batch_size} on {self.device_}; "
                    "lower batch_size (or embedding_dim / the layer sizes), or try precision='bf16'."
                ) from exc

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
        if isinstance(self.early_stopping, str):  # "auto", checked by check_common_params
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

    def _make_net(self, call_params: dict) -> MultiTaskNet:
        return MultiTaskNet(
            self._build_module(self.feature_encoder_.schema_, self.n_tasks_),
            mto=resolve_optimizer(self.optimizer),
            task_weights=self._task_weight_tensor(self.n_tasks_),
            pos_weight=self._pos_weight_tensor(self.n_tasks_),
            task_names=[str(t) for t in self.task_names_],
            weight_decay=self.weight_decay,
            precision=self.precision,
            device=self.device_,
            **call_params,
        )


def _silent(*args, **kwargs) -> None:
    """A picklable sink that prints nothing."""
