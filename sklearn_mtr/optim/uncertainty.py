"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval, Options
from ._base import MultiTaskOptimizer, StepContext, device_of


class UW(MultiTaskOptimizer):
    """Homoscedastic uncertainty weighting with learnable log-variances.

    Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics", CVPR 2018. Each task ``k`` gets a learnable log-variance
    ``s_k = log sigma_k^2`` (initialised to 0), trained jointly with the network on::

        sum_k  u_k * ( exp(-s_k) * L_k  +  s_k / 2 )

    where ``u`` are the estimator's ``task_weights`` (ones by default). This is the paper's
    *classification* form (its Eq. 10 term ``L_k / sigma_k^2 + log sigma_k`` rewritten with
    ``s_k = log sigma_k^2``, the parameterisation the paper recommends for numerical
    stability); every task here is a binary cross-entropy, so every task takes that form.
    For fixed ``L_k`` the objective is minimised at ``s_k = log(2 L_k)``, i.e. the loss
    weight ``exp(-s_k)`` tends to ``1 / (2 L_k)``. The widely used variant
    ``exp(-s_k) L_k + s_k`` has its optimum at ``s_k = log L_k``; the two differ by the
    common factor 1/2 in the weights only, so the *relative* task weights are the same
    (``∝ 1 / L_k``) and, under Adam, so is the training trajectory up to ``eps``.

    The user's ``task_weights`` multiply each task's whole term, so the learnt ``s_k`` does
    not depend on them and the effective weight on ``L_k`` is ``u_k * exp(-s_k)``. One
    backward pass per step.

    Deviations from the paper: the log-variances are excluded from weight decay (decay
    would pull every ``s_k`` towards 0, i.e. towards equal weights) and can have their own
    learning rate; a task with no label in a batch (loss exactly 0) leaves its ``s_k``
    untouched for that step instead of being pushed down by the ``s_k / 2`` term.

    Diagnostics (``history_`` key ``optim_<name>``): ``weights`` = ``exp(-s)`` (the method's
    weights, without the user's ``task_weights``) and ``log_variance`` = ``s``.

    Parameters
    ----------
    log_variance_lr : float or None, default=None
        Learning rate of the log-variances (Adam, no weight decay); None uses the
        estimator's ``lr`` as in the paper, where one optimizer trains everything.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.uncertainty import UW
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=UW(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> len(clf.history_[-1, "optim_weights"])
    2
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "log_variance_lr": [Options(None), Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, log_variance_lr=None):
        self.log_variance_lr = log_variance_lr

    def create_state(self, model: nn.Module, n_tasks: int) -> nn.Module:
        state = nn.Module()
        state.log_variance = nn.Parameter(torch.zeros(n_tasks, device=device_of(model)))
        return state

    def state_param_options(self, lr: float) -> dict:
        return {"lr": lr if self.log_variance_lr is None else self.log_variance_lr, "weight_decay": 0.0}

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        s = ctx.state.log_variance
        present = (task_losses.detach() != 0).to(s.dtype)
        terms = torch.exp(-s) * task_losses + 0.5 * s * present
        total = (ctx.task_weights * terms).sum()
        if ctx.aux_loss is not None:
            total = total + ctx.aux_loss
        total.backward()
        s = s.detach()
        return {"weights": torch.exp(-s), "log_variance": s.clone()}
