"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from ._base import MultiTaskOptimizer, StepContext, device_of


class GradNorm(MultiTaskOptimizer):
    """GradNorm: learn task weights that balance the tasks' gradient norms and training rates.

    Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive
    Loss Balancing in Deep Multitask Networks", ICML 2018. The network minimises
    ``sum_k u_k * w_k * L_k`` with learnable weights ``w`` (initially 1) and the estimator's
    ``task_weights`` ``u`` (ones by default). At every step, with ``g_k`` the gradient of
    ``L_k`` on the shared parameters::

        G_k     = w_k * ||g_k||                        (gradient norm of task k)
        Lt_k    = L_k(t) / L_k(0)                      (inverse training rate)
        r_k     = Lt_k / mean(Lt)
        L_grad  = sum_k | G_k - mean(G) * r_k ** alpha |   (target held constant)

    ``w`` takes one Adam step on ``dL_grad / dw`` with learning rate ``weight_lr`` (its own
    parameter group of the torch optimizer, no weight decay) in the same optimizer step as
    the network, and is then renormalised so that ``sum_k w_k = T``. The user weights
    multiply ``w`` in the network's objective only; the balancing itself ignores them
    (otherwise it would undo them), so the effective weight on ``L_k`` is ``u_k * w_k``.
    ``L_k(0)`` is the first loss recorded for task ``k`` (a buffer of the state module).
    ``T`` backward passes per step (:meth:`StepContext.task_gradients`).

    Deviations from the paper: the gradient norms are taken over *all* shared parameters
    (embeddings, experts, gates), not only the last shared layer (the paper's choice for
    speed; recommender backbones such as MMoE / PLE have no single last shared layer);
    after the update the weights are floored at ``1e-4`` before the renormalisation so
    that a large ``weight_lr`` cannot make a weight negative; a task whose first batches
    carry no label records ``L_k(0)`` at its first non-zero loss, and a task without a
    label in a batch is left out of that step's means and keeps its weight.

    Diagnostics: ``weights`` = ``w`` used in the step (without the user's weights) and
    ``grad_norms`` = ``||g_k||``.

    Parameters
    ----------
    alpha : float, default=1.5
        Asymmetry: the strength of the pull towards equal training rates (0 balances the
        gradient norms only). The paper tunes it per data set; 1.5 is the usual default.
    weight_lr : float, default=0.025
        Learning rate of the task weights.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.gradnorm import GradNorm
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=GradNorm(alpha=1.5), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> round(sum(clf.history_[-1, "optim_weights"]), 4)
    2.0
    """

    _floor = 1e-4

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "alpha": [Interval(numbers.Real, 0)],
        "weight_lr": [Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, alpha=1.5, weight_lr=0.025):
        self.alpha = alpha
        self.weight_lr = weight_lr

    def create_state(self, model: nn.Module, n_tasks: int) -> nn.Module:
        device = device_of(model)
        state = nn.Module()
        state.weights = nn.Parameter(torch.ones(n_tasks, device=device))
        state.register_buffer("initial_losses", torch.zeros(n_tasks, device=device))
        return state

    def state_param_options(self, lr: float) -> dict:
        return {"lr": self.weight_lr, "weight_decay": 0.0}

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        st = ctx.state
        grads, private, shared = ctx.task_gradients(task_losses)
        with torch.no_grad():
            w = st.weights.detach().clone()
            losses = task_losses.detach().to(w.dtype)
            st.initial_losses.copy_(torch.where(st.initial_losses > 0, st.initial_losses, losses))

            # Means over the tasks labelled in this batch (a task without one has loss 0).
            present = (losses > 0).to(w.dtype)
            n_present = present.sum().clamp_min(1)
            norms = grads.norm(dim=1).to(w.dtype)
            g = w * norms
            inverse_rate = losses / st.initial_losses.clamp_min(1e-12)
            relative = inverse_rate / ((present * inverse_rate).sum() / n_present).clamp_min(1e-12)
            target = (present * g).sum() / n_present * relative.pow(self.alpha)
            st.weights.grad = present * torch.sign(g - target) * norms

            scales = ctx.task_weights.to(w.dtype) * w
            shared_grad = scales.to(grads.dtype) @ grads
        ctx.write_gradients(shared, shared_grad, private, task_scales=scales)
        return {"weights": w, "grad_norms": norms}

    def step(self, ctx: StepContext) -> None:
        ctx.torch_optimizer.step()
        with torch.no_grad():
            w = ctx.state.weights
            w.clamp_(min=self._floor)
            w.mul_(w.numel() / w.sum())
