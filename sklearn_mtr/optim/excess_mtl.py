"""ExcessMTL: task weights from estimated excess risks (He, Zhou, Zhang, Yun, Xu, Zeng, Chilimbi & Zhao, ICML 2024)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from ._base import StepContext, device_of
from ._combination import GradientCombination, mean_pairwise_cosine


class _ExcessMTLState(nn.Module):
    """Loss weights, Adagrad sums of squared gradients (T x P) and the first excess risks (buffers)."""

    def __init__(self, n_tasks: int, n_values: int, device):
        super().__init__()
        self.register_buffer("loss_weights", torch.ones(n_tasks, device=device))
        self.register_buffer("grad_sq_sum", torch.zeros(n_tasks, n_values, device=device))
        self.register_buffer("initial_risk", torch.zeros(n_tasks, device=device))
        self.register_buffer("initial_set", torch.zeros(n_tasks, dtype=torch.bool, device=device))


class ExcessMTL(GradientCombination):
    """ExcessMTL: tasks weighted by exponentiated updates of their estimated *excess* risk.

    He, Zhou, Zhang, Yun, Xu, Zeng, Chilimbi & Zhao, "Robust Multi-Task Learning with Excess
    Risks", ICML 2024 (arXiv 2402.02009). A distributionally robust objective over the tasks' excess risks
    (loss minus the task's best attainable loss) rather than their losses, so that a noisy
    task with a high irreducible loss does not take all the weight. The excess risk of task
    ``i`` is estimated by a second-order expansion, ``L_i(theta) - L_i* ~ g_i^T H_i^-1 g_i / 2``,
    with the Hessian approximated by a diagonal empirical Fisher matrix accumulated over the
    steps as in Adagrad (the paper's algorithm and the authors' code)::

        G_i   <- G_i + g_i * g_i                       (element-wise, over the training run)
        e_i   =  g_i^T diag(1 / sqrt(G_i + 1e-7)) g_i
        w_i   <- w_i * exp(eta * e_i / e_i^0)          (not at the first step)
        w     <- T * w / sum_j w_j
        loss  =  sum_i u_i w_i L_i

    where ``g_i`` is task ``i``'s gradient on the shared parameters, ``e_i^0`` its estimate at
    the first step (each task's risk is measured relative to its start, as in the authors'
    code), ``eta`` the robust step size, and ``u`` the estimator's ``task_weights`` (ones by
    default). The weights start at one and are updated before they are used.

    Parameters
    ----------
    robust_step_size : float, default=0.01
        ``eta > 0``, the step size of the exponentiated (mirror-ascent) update (the authors' and
        LibMTL's default 1e-2).

    Notes
    -----
    - **Task weights.** The excess risks are estimated from the raw task gradients; the user's
      ``task_weights`` ``u`` multiply the learned weights ``w`` (a weight of 0 removes a task).
      Task ``i``'s private parameters get ``u_i w_i`` times their own gradient (the gradient of
      the weighted loss, as in the authors' code).
    - **Deviations from the paper.** As in the authors' code, the excess risk is the
      expansion's ``g^T H^-1 g`` (without the factor 1/2, which the normalisation by ``e_i^0``
      removes), the Hessian diagonal is Adagrad's on the shared parameters only, and the
      normaliser ``e_i^0`` is the first step's value. A task without a label in the first
      batches (zero gradient) takes as ``e_i^0`` its first non-zero estimate and has no update
      before it; a zero estimate later gives ``exp(0) = 1``. No randomness.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` = ``w``
      (summing to ``T``, without the user's weights), ``excess_risk`` = ``e_i / e_i^0`` and
      ``cosine`` (mean pairwise cosine of the task gradients).
    - Cost per step: ``T`` backward passes, and a ``T x P`` buffer of squared-gradient sums
      (``P`` the number of shared values) in the method's state, which pickles with the
      estimator.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.excess_mtl import ExcessMTL
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=ExcessMTL(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> round(sum(clf.history_[-1, "optim_weights"]), 4)
    2.0
    """

    _eps = 1e-7

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "robust_step_size": [Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, robust_step_size=0.01):
        self.robust_step_size = robust_step_size

    def create_state(self, model, n_tasks):
        shared = getattr(model, "shared_parameters", None)
        n_values = sum(p.numel() for p in shared()) if callable(shared) else 0
        device = torch.device("cpu") if model is None else device_of(model)
        return _ExcessMTLState(n_tasks, n_values, device)

    def update_weights(self, grads: torch.Tensor, state) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance the state with the ``(T, P)`` raw gradients; the new weights and ``e / e^0``."""
        if state.grad_sq_sum.shape != grads.shape:  # a state built without the model (``combine``)
            state.grad_sq_sum = torch.zeros_like(grads, dtype=state.grad_sq_sum.dtype)
        grads = grads.detach()
        sums = state.grad_sq_sum.to(grads.dtype) + grads * grads
        state.grad_sq_sum.copy_(sums.to(state.grad_sq_sum.dtype))
        risk = (grads * grads / torch.sqrt(sums + self._eps)).sum(dim=1)  # g^T diag(1 / h) g
        initial = state.initial_risk.to(grads.dtype)
        known = state.initial_set & (initial > 0)
        relative = torch.where(known, risk / initial.clamp_min(torch.finfo(grads.dtype).tiny), 0.0)
        # w <- T w exp(eta r) / sum(...), in log space (a huge r cannot overflow)
        logits = torch.log(state.loss_weights.to(grads.dtype)) + self.robust_step_size * relative
        weights = grads.shape[0] * torch.softmax(logits, dim=0)
        state.loss_weights.copy_(weights.to(state.loss_weights.dtype))
        fresh = ~state.initial_set & (risk > 0)
        state.initial_risk.copy_(torch.where(fresh, risk.to(state.initial_risk.dtype), state.initial_risk))
        state.initial_set.logical_or_(fresh)
        return weights, relative

    def _combine(self, grads, gram, losses, state):
        weights, relative = self.update_weights(grads, state)
        return weights @ grads, weights, {"excess_risk": relative}

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        raw, private, shared = ctx.task_gradients(task_losses)
        user = ctx.task_weights.to(device=raw.device, dtype=raw.dtype)
        weights, relative = self.update_weights(raw, ctx.state)
        scales = user * weights
        ctx.write_gradients(shared, scales @ raw, private, scales)
        return {"weights": weights, "excess_risk": relative, "cosine": mean_pairwise_cosine(raw @ raw.T)}
