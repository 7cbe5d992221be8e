"""DB-MTL: dual-balancing multi-task learning (Lin et al., 2023)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from ._base import StepContext, device_of
from ._combination import GradientCombination, mean_pairwise_cosine


class _DBMTLState(nn.Module):
    """The EMA of the task gradients on the shared parameters and the step count (buffers)."""

    def __init__(self, n_tasks: int, n_values: int, device):
        super().__init__()
        self.register_buffer("grad_buffer", torch.zeros(n_tasks, n_values, device=device))
        self.register_buffer("step", torch.zeros((), dtype=torch.long, device=device))


class DBMTL(GradientCombination):
    """Dual-balancing: log-transformed losses, then every task gradient scaled to the largest norm.

    Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Tsang & Kwok, "Dual-Balancing for Multi-Task
    Learning", 2023 (arXiv 2308.12029). Two balancing steps:

    1. **Loss scale.** Each task's loss is replaced by its logarithm, so the gradient of task
       ``t`` is ``grad log(L_t + eps) = grad L_t / (L_t + eps)`` (scale-free in ``L_t``).
    2. **Gradient magnitude.** An exponential moving average of these gradients on the shared
       parameters, with rate ``beta_k = beta / k^sigma`` at step ``k``, is kept for each task,
       and every task's average is rescaled to the largest norm among them::

           ghat_t <- beta_k ghat_t + (1 - beta_k) grad log(L_t + eps)
           alpha_t = max_s ||ghat_s|| / ||ghat_t||
           d       = sum_t u_t alpha_t ghat_t

    where ``u`` are the estimator's ``task_weights`` (ones by default). The averages start at
    zero without bias correction, as in the authors' code (LibMTL).

    Parameters
    ----------
    beta : float, default=0.9
        EMA coefficient ``beta`` in [0, 1) (the authors' LibMTL default).
    beta_sigma : float, default=0.0
        Decay exponent ``sigma >= 0`` of the EMA coefficient, ``beta_k = beta / k^sigma``
        (LibMTL's default 0: a constant ``beta``).
    eps : float, default=1e-8
        Added to each loss inside the logarithm.

    Notes
    -----
    - **Task weights.** Both balancing steps remove any scale a task weight would give, so
      the user's ``task_weights`` ``u`` multiply the balanced gradients (``d`` above) and the
      log-loss gradients of each task's private parameters; a weight of 0 removes the task.
    - **Private parameters.** Task ``t``'s private parameters (tower, gate) get ``u_t`` times
      the gradient of ``log(L_t + eps)`` of the step (not averaged, not rescaled), as the
      authors' code back-propagates the log losses into them.
    - **Deviations from the paper.** A task without a label in the batch (loss exactly 0)
      leaves its average unchanged for that step instead of decaying it towards zero. A task
      whose average is still zero gets ``alpha_t = 0``.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights``
      (``alpha``, the rescaling of each task's average gradient; 1 for the task with the
      largest norm) and ``cosine`` (mean pairwise cosine of the tasks' gradients of the step).
    - Cost per step: ``T`` backward passes, and a ``T x P`` buffer of averages (``P`` the
      number of shared values) in the method's state, which pickles with the estimator.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.db_mtl import DBMTL
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=DBMTL(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> max(clf.history_[-1, "optim_weights"]) >= 1
    True
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "beta": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_sigma": [Interval(numbers.Real, 0)],
        "eps": [Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, beta=0.9, beta_sigma=0.0, eps=1e-8):
        self.beta = beta
        self.beta_sigma = beta_sigma
        self.eps = eps

    def create_state(self, model, n_tasks):
        shared = getattr(model, "shared_parameters", None)
        n_values = sum(p.numel() for p in shared()) if callable(shared) else 0
        device = torch.device("cpu") if model is None else device_of(model)
        return _DBMTLState(n_tasks, n_values, device)

    def _balance(self, grads: torch.Tensor, losses: torch.Tensor, state) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance the averages with the gradients of ``log(L + eps)``; the rescaled averages and ``alpha``."""
        if state.grad_buffer.shape != grads.shape:  # a state built without the model (``combine``)
            state.grad_buffer = torch.zeros_like(grads)
        buffer = state.grad_buffer
        losses = losses.detach().to(grads.dtype)
        log_grads = grads / (losses + self.eps)[:, None]
        state.step.add_(1)
        rate = self.beta / state.step.to(grads.dtype) ** self.beta_sigma
        updated = rate * buffer.to(grads.dtype) + (1.0 - rate) * log_grads
        present = (losses != 0)[:, None]
        buffer.copy_(torch.where(present, updated, buffer.to(grads.dtype)).to(buffer.dtype))
        averages = buffer.to(grads.dtype)
        norms = averages.norm(dim=1)
        tiny = torch.finfo(grads.dtype).tiny
        alpha = torch.where(norms > 0, norms.max() / norms.clamp_min(tiny), torch.zeros_like(norms))
        return alpha[:, None] * averages, alpha

    def _combine(self, grads, gram, losses, state):
        if losses is None:
            raise ValueError("DBMTL needs the task losses.")
        balanced, alpha = self._balance(grads, losses, state)
        return balanced.sum(0), alpha, {}

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        raw, private, shared = ctx.task_gradients(task_losses)
        weights = ctx.task_weights.to(device=raw.device, dtype=raw.dtype)
        balanced, alpha = self._balance(raw, task_losses, ctx.state)
        direction = weights @ balanced
        scales = weights / (task_losses.detach().to(raw.dtype) + self.eps)  # private: grad of u_t log(L_t + eps)
        ctx.write_gradients(shared, direction, private, scales)
        return {"weights": alpha, "cosine": mean_pairwise_cosine(raw @ raw.T)}
