"""AdaTask: task-aware adaptive learning rates (Yang et al., AAAI 2023)."""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval, Pair
from ._base import MultiTaskOptimizer, StepContext


class AdaTaskAdam(torch.optim.Optimizer):
    """Adam with separate moments per task on the shared parameters (AdaTask's update rule).

    Parameter groups carry a ``shared`` flag. For a shared parameter the optimizer keeps,
    for every task ``k``, its own first and second moments ``m_k, v_k`` of the task's
    gradient ``g_k`` and applies::

        p <- p - lr * sum_k s_k * mhat_k / (sqrt(vhat_k) + eps)

    with the task scales ``s`` (the user's ``task_weights``) and Adam's bias corrections.
    Private parameters take a plain Adam step on ``.grad``. Weight decay is decoupled
    (AdamW style) and applied once per step. The per-task gradients of a step are handed
    over with :meth:`set_task_gradients` before :meth:`step`; the moments live in
    ``self.state[p]`` as tensors of shape ``(n_tasks, *p.shape)``, so they pickle with the
    optimizer and follow the parameters between devices.

    An auxiliary loss of the architecture, when there is one, is treated as one more,
    unweighted task with its own moments on the shared parameters.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "shared": False}
        super().__init__(params, defaults)

    def set_task_gradients(
        self,
        params: list[torch.nn.Parameter],
        grads: torch.Tensor,
        task_scales: torch.Tensor,
        aux_grad: torch.Tensor | None = None,
    ) -> None:
        """Per-task gradients of the shared ``params`` for the next :meth:`step`.

        ``grads`` is ``(n_tasks, n_values)``, flattened in the order of ``params`` (as
        :meth:`StepContext.task_gradients` returns it); ``aux_grad`` the
        flat gradient of the auxiliary loss, or None.
        """
        slices, offset = {}, 0
        for p in params:
            slices[id(p)] = (offset, p.numel())
            offset += p.numel()
        self._pending = (slices, grads, task_scales, aux_grad)

    @staticmethod
    def _adam_direction(state, prefix, grad, beta1, beta2, eps):
        """Advance the moments named ``prefix`` with ``grad``; return ``mhat/(sqrt(vhat)+eps)``."""
        if prefix + "exp_avg" not in state:
            state[prefix + "step"] = 0
            state[prefix + "exp_avg"] = torch.zeros_like(grad)
            state[prefix + "exp_avg_sq"] = torch.zeros_like(grad)
        state[prefix + "step"] += 1
        step = state[prefix + "step"]
        exp_avg, exp_avg_sq = state[prefix + "exp_avg"], state[prefix + "exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
        return exp_avg / denom / (1 - beta1**step)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pending = getattr(self, "_pending", None)
        self._pending = None
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                state = self.state[p]
                if group["shared"]:
                    if pending is None or id(p) not in pending[0]:
                        raise RuntimeError(
                            "AdaTaskAdam.step() needs the per-task gradients of the shared parameters: "
                            "call set_task_gradients() after the backward passes (the AdaTask method does)."
                        )
                    slices, grads, scales, aux = pending
                    start, n = slices[id(p)]
                    g = grads[:, start : start + n].reshape(grads.shape[0], *p.shape).to(p.dtype)
                    direction = self._adam_direction(state, "", g, beta1, beta2, eps)
                    update = torch.tensordot(scales.to(direction.dtype), direction, dims=1)
                    if aux is not None:
                        a = aux[start : start + n].view_as(p).to(p.dtype)
                        update = update + self._adam_direction(state, "aux_", a, beta1, beta2, eps)
                else:
                    if p.grad is None:
                        continue
                    update = self._adam_direction(state, "", p.grad, beta1, beta2, eps)
                if wd != 0:
                    p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr)
        return loss


class AdaTask(MultiTaskOptimizer):
    """AdaTask: Adam with task-specific moments on the shared parameters.

    E. Yang et al., "AdaTask: A Task-Aware Adaptive Learning Rate
    Approach to Multi-Task Learning", AAAI 2023. Adam's adaptive step divides each
    parameter's gradient by the history of its magnitude; on a shared parameter that
    history is dominated by the task with the largest gradients. AdaTask keeps the
    moments *per task* on the shared parameters and sums the per-task Adam directions::

        m_k <- beta1 m_k + (1 - beta1) g_k          v_k <- beta2 v_k + (1 - beta2) g_k^2
        theta_shared <- theta_shared - lr * sum_k u_k * mhat_k / (sqrt(vhat_k) + eps)

    where ``g_k`` is task ``k``'s gradient on the shared parameters and ``u`` are the
    estimator's ``task_weights`` (ones by default). Because a per-task Adam direction does
    not depend on the scale of ``g_k``, the user weights multiply the per-task *updates*
    (weighting the gradients would have no effect). Private parameters (towers, task
    gates) take a plain Adam step, as in the paper; there, as with plain Adam, the user
    weights have no effect. With one task the method is exactly Adam (AdamW when
    ``weight_decay > 0``). ``T`` backward passes per step; the shared-parameter moments
    take ``2 T`` times the memory of the parameters (plain Adam: 2 times). This is the
    "AdaTask" update-manipulation baseline of the PUB paper's tables; PUB keeps one
    shared moment pair instead of per-task ones.

    The torch optimizer is :class:`AdaTaskAdam`, returned by :meth:`create_optimizer`.

    Deviations from the paper: weight decay is decoupled (AdamW style; the estimator's
    default ``weight_decay=0`` gives the paper's Adam); an architecture's auxiliary loss
    is treated as one more, unweighted task with its own moments. ``.grad`` of the shared
    parameters holds the plain weighted-sum gradient for callbacks to inspect, but the
    update uses the per-task gradients, so a gradient-clipping callback does not change
    the shared update.

    Diagnostics: ``weights`` = the user's ``task_weights`` (AdaTask does not reweight the
    losses; they scale the per-task updates).

    Parameters
    ----------
    betas : tuple of (float, float), default=(0.9, 0.999)
        Adam's moment decay rates.
    eps : float, default=1e-8
        Adam's denominator term.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.adatask import AdaTask
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=AdaTask(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "betas": [Pair(Interval(numbers.Real, 0, 1, closed="left"))],
        "eps": [Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, betas=(0.9, 0.999), eps=1e-8):
        self.betas = betas
        self.eps = eps

    def create_optimizer(
        self, model: nn.Module, state: nn.Module | None, *, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        shared = list(model.shared_parameters())
        ids = {id(p) for p in shared}
        private = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        if state is not None:
            private += [p for p in state.parameters() if p.requires_grad]
        groups = [{"params": shared, "shared": True}, {"params": private, "shared": False}]
        groups = [g for g in groups if g["params"]]
        return AdaTaskAdam(groups, lr=lr, betas=self.betas, eps=self.eps, weight_decay=weight_decay)

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        if not isinstance(ctx.torch_optimizer, AdaTaskAdam):
            raise TypeError("AdaTask needs the AdaTaskAdam optimizer that AdaTask.create_optimizer builds.")
        grads, private, shared = ctx.task_gradients(task_losses)
        aux = None
        if ctx.aux_loss is not None and shared:
            parts = torch.autograd.grad(ctx.aux_loss, shared, retain_graph=True, allow_unused=True)
            aux = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(parts, shared)])
        scales = ctx.task_weights.to(grads.dtype)
        ctx.write_gradients(shared, scales @ grads, private)
        ctx.torch_optimizer.set_task_gradients(shared, grads, scales, aux)
        return {"weights": ctx.task_weights.detach().clone()}
