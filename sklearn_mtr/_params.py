"""The parameters every estimator shares: their values' checks and the device they name."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._threads import check_n_threads
from .features._encoder import check_numeric_encoding

PRECISIONS = ("fp32", "bf16")
SCORING = ("auc", "loss")
# The torch.compile arguments the ``compile`` parameter may pass. An allow-list, not a block-list:
# other arguments (``options``, a custom ``backend``) can name compilers and programs to run, and a
# model file (sklearn_mtr.persistence.load) must not be able to make predict run them.
_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
_COMPILE_FLAGS = ("fullgraph", "dynamic")


def check_common_params(estimator: BaseEstimator) -> None:
    """Check the values of the parameters every estimator shares, once at the start of each fit.

    Raises
    ------
    ValueError
        Naming the parameter and the value that is not allowed.
    """

    def positive_int(name):
        value = getattr(estimator, name)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")

    for name in ("batch_size", "max_epochs", "n_iter_no_change", "embedding_dim"):
        positive_int(name)
    check_numeric_encoding(estimator.numeric_encoding, estimator.numeric_bins)
    for name in ("lr", "weight_decay", "tol"):
        value = getattr(estimator, name)
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
    if estimator.lr <= 0:
        raise ValueError(f"lr must be positive, got {estimator.lr!r}.")
    if not (
        isinstance(estimator.early_stopping, (bool, np.bool_))
        or (isinstance(estimator.early_stopping, str) and estimator.early_stopping == "auto")
    ):
        raise ValueError(f"early_stopping must be 'auto', True or False, got {estimator.early_stopping!r}.")
    if not isinstance(estimator.validation_fraction, numbers.Real) or not 0 < estimator.validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {estimator.validation_fraction!r}.")
    if estimator.scoring not in SCORING:
        raise ValueError(f"scoring must be one of {SCORING}, got {estimator.scoring!r}.")
    if estimator.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {estimator.precision!r}.")
    if estimator.ema_epochs is not None and (
        not isinstance(estimator.ema_epochs, numbers.Real)
        or isinstance(estimator.ema_epochs, bool)
        or not np.isfinite(estimator.ema_epochs)
        or estimator.ema_epochs < 0
    ):
        raise ValueError(f"ema_epochs must be None or a non-negative number of epochs, got {estimator.ema_epochs!r}.")
    check_compile(estimator.compile)
    check_n_threads(estimator.n_threads)
    if estimator.callbacks is not None and not isinstance(estimator.callbacks, (list, tuple)):
        raise ValueError("callbacks must be a list of skorch callbacks or (name, callback) pairs.")


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


def store_init_params(estimator: BaseEstimator, params: dict) -> None:
    """Store every ``__init__`` argument unchanged under its own name (sklearn's rule: no
    logic in ``__init__``). Estimators call it as ``store_init_params(self, locals())``,
    which keeps their explicit signatures without repeating each name three times."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)
