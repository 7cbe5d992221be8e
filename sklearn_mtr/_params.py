"""The parameters every estimator shares: their values' checks and the device they name."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._constraints import InstanceOf, Interval, Options, check_parameters
from .features._encoder import check_numeric_encoding

PRECISIONS = ("fp32", "bf16")
SCORING = ("auc", "loss")
# The torch.compile arguments the ``compile`` parameter may pass. An allow-list, not a block-list:
# other arguments (``options``, a custom ``backend``) can name compilers and programs to run, and a
# model file (sklearn_mtr.persistence.load) must not be able to make predict run them.
_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
_COMPILE_FLAGS = ("fullgraph", "dynamic")


#: The constraints of the parameters every estimator shares (an estimator's architecture adds
#: its table, and an estimator that builds its module itself declares its own,
#: ``_parameter_constraints``).
COMMON_CONSTRAINTS = {
    "batch_size": [Interval(numbers.Integral, 1)],
    "max_epochs": [Interval(numbers.Integral, 1)],
    "n_iter_no_change": [Interval(numbers.Integral, 1)],
    "embedding_dim": [Interval(numbers.Integral, 1)],
    "lr": [Interval(numbers.Real, 0, closed="right")],
    "weight_decay": [Interval(numbers.Real, 0)],
    "tol": [Interval(numbers.Real, 0)],
    "early_stopping": [Options("auto", True, False)],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
    "scoring": [Options(*SCORING)],
    "precision": [Options(*PRECISIONS)],
    "ema_epochs": [Options(None), Interval(numbers.Real, 0)],
    "n_threads": [Options(None), Interval(numbers.Integral, 1)],
    "callbacks": [Options(None), InstanceOf((list, tuple), "a list of skorch callbacks or (name, callback) pairs")],
}


def check_common_params(estimator: BaseEstimator) -> None:
    """Check the parameters every estimator shares, its architecture's (the module's
    :meth:`~sklearn_mtr.models.MultiTaskModule.parameter_constraints`) and the estimator's own
    (its ``_parameter_constraints`` table), once at the start of each fit.

    Raises
    ------
    ValueError
        Naming the parameter and the value that is not allowed.
    """
    architecture = type(estimator)._architecture
    own = {} if architecture is None else architecture.parameter_constraints()
    check_parameters(estimator, {**COMMON_CONSTRAINTS, **own, **type(estimator)._parameter_constraints}, prefix="")
    check_numeric_encoding(estimator.numeric_encoding, estimator.numeric_bins)
    check_compile(estimator.compile)
    # a method instance's own table (a registered name builds one with valid defaults)
    if hasattr(estimator.optimizer, "check_parameters"):
        estimator.optimizer.check_parameters()


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
