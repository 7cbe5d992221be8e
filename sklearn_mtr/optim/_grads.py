"""Per-task gradients from one forward pass, for methods that combine gradients.

The pattern every gradient-combining method follows:

1. :func:`task_gradients` runs one backward pass per task (``T`` passes, the graph kept) and
   returns each task's gradient on the shared parameters, flattened into a ``(T, P)``
   matrix, together with each task's gradients on its own private parameters (a task's
   private parameters only receive gradient from its own loss, so the same passes give them);
2. the method turns the ``(T, P)`` matrix into one shared gradient (and task scales);
3. :func:`write_gradients` stores the result in ``.grad`` for the torch optimizer to apply.
"""

from __future__ import annotations

import torch

from ._base import StepContext


def _flat(grads, params) -> torch.Tensor:
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def task_gradients(
    task_losses: torch.Tensor, ctx: StepContext
) -> tuple[torch.Tensor, list[list[torch.Tensor | None]], list[torch.nn.Parameter]]:
    """Per-task gradients of one forward pass.

    Returns
    -------
    shared_grads : Tensor of shape (n_tasks, n_shared_values)
        Row ``k`` is ``dL_k / d(shared parameters)``, flattened in the order of ``shared``.
    private_grads : list of list
        ``private_grads[k]`` are the gradients of ``L_k`` on ``model.task_parameters(k)``.
    shared : list of Parameter
        The shared parameters, in the order of the flattening.
    """
    model = ctx.model
    shared = model.shared_parameters()
    n_tasks = task_losses.shape[0]
    rows, private = [], []
    for k in range(n_tasks):
        own = model.task_parameters(k)
        grads = torch.autograd.grad(task_losses[k], shared + own, retain_graph=True, allow_unused=True)
        rows.append(_flat(grads[: len(shared)], shared))
        private.append(list(grads[len(shared) :]))
    shared_grads = torch.stack(rows)
    if ctx.data_parallel is not None:
        # Synchronised before any method combines them: PCGrad, MGDA, PUB... see the global
        # batch's per-task gradients (losses are the ranks' shares, so the sum is exact).
        shared_grads, private = ctx.data_parallel.sum_task_gradients(shared_grads, private)
        ctx.gradients_synced = True
    return shared_grads, private, shared


def write_gradients(
    ctx: StepContext,
    shared: list[torch.nn.Parameter],
    shared_grad: torch.Tensor,
    private_grads: list[list[torch.Tensor | None]],
    task_scales: torch.Tensor | None = None,
) -> None:
    """Set ``.grad``: ``shared_grad`` (flat) on the shared parameters, task ``k``'s private
    gradients scaled by ``task_scales[k]`` (the user's ``task_weights`` when None), plus the
    gradient of the architecture's auxiliary loss when there is one."""
    scales = ctx.task_weights if task_scales is None else task_scales
    offset = 0
    for p in shared:
        n = p.numel()
        p.grad = shared_grad[offset : offset + n].view_as(p).clone()
        offset += n
    for k, grads in enumerate(private_grads):
        for p, g in zip(ctx.model.task_parameters(k), grads):
            p.grad = None if g is None else g * scales[k]
    if ctx.aux_loss is not None and ctx.gradients_synced:
        # The .grad just written is global; add the all-reduced gradient of the aux loss.
        ctx.data_parallel.sum_aux_gradients(ctx.aux_loss, [p for p in ctx.model.parameters() if p.requires_grad])
    elif ctx.aux_loss is not None:
        ctx.aux_loss.backward()  # accumulates into the .grad just written
