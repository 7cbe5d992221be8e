"""FAMO: Fast Adaptive Multitask Optimization (Liu, Feng, Stone & Liu, NeurIPS 2023)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from ._base import MultiTaskOptimizer, StepContext, device_of


class FAMO(MultiTaskOptimizer):
    """FAMO: decrease every task's log-loss at a balanced rate, with one backward pass.

    Liu, Feng, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization",
    NeurIPS 2023 (Algorithm 1). Task logits ``xi`` (initially 0) give weights
    ``z = softmax(xi)`` on the simplex. The update direction is::

        c = ( sum_k z_k / L_k ) ** -1
        d = sum_k c * z_k * grad L_k / L_k            (= grad of sum_k c z_k log L_k)

    i.e. the network's gradient is that of ``sum_k u_k * (c z_k / L_k) * L_k`` with the
    coefficients held constant, where ``u`` are the estimator's ``task_weights`` (ones by
    default, multiplying FAMO's coefficients; note that FAMO's adaptation of ``xi`` then
    partly compensates a user weight, since it balances the tasks' actual decrease
    rates). The logits learn from the log-loss decrease ``delta_k = log L_k(before) -
    log L_k(after)`` of the last update::

        xi <- xi - beta * ( J_z(xi)^T delta + gamma * xi )

    so a task whose loss fell faster than the weighted average loses weight.

    Deviations from the paper:

    - **Next-batch "after" losses.** The paper re-evaluates the *same* batch after the
      parameter update to measure ``delta``. A method here cannot run a forward pass, so
      the "after" losses are those of the *next* step's batch: at step ``t + 1`` the
      method first updates ``xi`` with ``log L(theta_t; B_t) - log L(theta_{t+1};
      B_{t+1})`` and then uses the new ``z`` for the step (the ordering of Algorithm 1).
      This practical variant saves the extra forward pass but makes ``delta`` noisier
      (batch-to-batch loss differences enter it); ``xi`` is not updated at the first step.
    - The bracketed gradient is applied with Adam (``beta`` = ``weight_lr``, L2 term
      ``gamma * xi`` added to the gradient, betas (0.9, 0.999)) rather than the plain
      step of Algorithm 1, as the authors' released implementation does; its moments are
      buffers of the state module.
    - Losses are clamped at ``1e-8`` before the logarithm; a task with no label in a batch
      (loss exactly 0) gets coefficient 0 for that step and contributes no ``delta``.

    Diagnostics: ``weights`` = ``z`` (on the simplex, without the user's weights) and
    ``loss_weights`` = ``c z_k / L_k`` (the coefficients applied to the losses).

    Parameters
    ----------
    weight_lr : float, default=0.025
        Learning rate ``beta`` of the task logits.
    gamma : float, default=0.01
        Decay ``gamma`` of the task logits (pulls the weights towards uniform). The paper
        tunes it per benchmark; the defaults of ``weight_lr`` and ``gamma`` are those of the
        authors' released implementation.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.famo import FAMO
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=FAMO(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> round(sum(clf.history_[-1, "optim_weights"]), 4)
    1.0
    """

    _betas = (0.9, 0.999)
    _adam_eps = 1e-8
    _min_loss = 1e-8

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "weight_lr": [Interval(numbers.Real, 0, closed="right")],
        "gamma": [Interval(numbers.Real, 0)],
    }

    def __init__(self, weight_lr=0.025, gamma=0.01):
        self.weight_lr = weight_lr
        self.gamma = gamma

    def create_state(self, model: nn.Module, n_tasks: int) -> nn.Module:
        device = device_of(model)
        state = nn.Module()
        for name in ("logits", "logits_exp_avg", "logits_exp_avg_sq", "prev_log_loss"):
            state.register_buffer(name, torch.zeros(n_tasks, device=device))
        state.register_buffer("has_prev", torch.zeros(n_tasks, dtype=torch.bool, device=device))
        state.register_buffer("logits_step", torch.zeros((), device=device))
        return state

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        st = ctx.state
        beta1, beta2 = self._betas
        with torch.no_grad():
            xi = st.logits
            losses = task_losses.detach().to(xi.dtype)
            present = losses > 0
            log_loss = losses.clamp_min(self._min_loss).log()

            # 1. Learn the logits from the decrease since the previous step (Adam).
            valid = present & st.has_prev
            delta = torch.where(valid, st.prev_log_loss - log_loss, torch.zeros_like(log_loss))
            z = torch.softmax(xi, dim=0)
            grad = z * (delta - (z * delta).sum()) + self.gamma * xi  # J_z^T delta + gamma xi
            go = valid.any()
            step = st.logits_step + go.to(xi.dtype)
            exp_avg = torch.where(go, beta1 * st.logits_exp_avg + (1 - beta1) * grad, st.logits_exp_avg)
            exp_avg_sq = torch.where(go, beta2 * st.logits_exp_avg_sq + (1 - beta2) * grad * grad, st.logits_exp_avg_sq)
            n = step.clamp_min(1)
            update = (exp_avg / (1 - beta1**n)) / ((exp_avg_sq / (1 - beta2**n)).sqrt() + self._adam_eps)
            xi.copy_(torch.where(go, xi - self.weight_lr * update, xi))
            st.logits_exp_avg.copy_(exp_avg)
            st.logits_exp_avg_sq.copy_(exp_avg_sq)
            st.logits_step.copy_(step)
            st.prev_log_loss.copy_(torch.where(present, log_loss, st.prev_log_loss))
            st.has_prev.logical_or_(present)

            # 2. The loss coefficients c z_k / L_k of this step.
            z = torch.softmax(xi, dim=0)
            coef = torch.where(present, z / losses.clamp_min(self._min_loss), torch.zeros_like(z))
            coef = coef / coef.sum().clamp_min(torch.finfo(coef.dtype).tiny)

        total = (ctx.task_weights * coef.to(task_losses.dtype) * task_losses).sum()
        if ctx.aux_loss is not None:
            total = total + ctx.aux_loss
        total.backward()
        return {"weights": z, "loss_weights": coef}
