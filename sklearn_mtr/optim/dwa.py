"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval
from ._base import MultiTaskOptimizer, StepContext, device_of


class DWA(MultiTaskOptimizer):
    """Dynamic Weight Average: weight each task by how slowly its loss fell lately.

    Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention" (MTAN),
    CVPR 2019, Eq. 7. With ``Lbar_k(e)`` the average training loss of task ``k`` over
    epoch ``e``, the weights of epoch ``e`` are::

        r_k = Lbar_k(e - 1) / Lbar_k(e - 2)
        w_k = T * softmax(r / temperature)_k

    and ``w_k = 1`` in the first two epochs (``e = 0, 1``), when the ratios do not exist
    yet. The network minimises ``sum_k u_k * w_k * L_k`` where ``u`` are the estimator's
    ``task_weights`` (ones by default): the user weights multiply DWA's weights, and the
    ratios ``r_k`` use the raw task losses. One backward pass per step.

    Epochs are those of the estimator (``StepContext.epoch``; ``partial_fit`` calls and warm
    starts continue the count). The running sums, the last two epoch means and the epoch
    index live in buffers of the method's state module, so a pickled estimator resumes
    with the same weights. The roll-over at an epoch boundary is computed with tensor
    operations on the parameters' device (no host synchronisation per step).

    Deviations from the paper: the epoch mean of a task averages only the batches that
    had a label for it (a batch without one, loss exactly 0, is left out instead of
    lowering the mean); "epochs ``e - 1`` and ``e - 2``" are the last two epochs in which
    the method trained (the same thing unless an epoch had no step).

    Diagnostics: ``weights`` = ``w`` (without the user's ``task_weights``).

    Parameters
    ----------
    temperature : float, default=2.0
        Softmax temperature ``tau``; larger values give more even weights (the paper uses 2).

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.dwa import DWA
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=DWA(temperature=2.0), max_epochs=3,
    ...                      random_state=0).fit(X, Y)
    >>> len(clf.history_[-1, "optim_weights"])
    2
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "temperature": [Interval(numbers.Real, 0, closed="right")],
    }

    def __init__(self, temperature=2.0):
        self.temperature = temperature

    def create_state(self, model: nn.Module, n_tasks: int) -> nn.Module:
        device = device_of(model)
        state = nn.Module()
        state.register_buffer("epoch", torch.tensor(-1, dtype=torch.long, device=device))
        state.register_buffer("loss_sum", torch.zeros(n_tasks, device=device))  # current epoch, per task
        state.register_buffer("loss_count", torch.zeros(n_tasks, device=device))  # batches with a label, per task
        state.register_buffer("mean_last", torch.zeros(n_tasks, device=device))  # Lbar(e - 1)
        state.register_buffer("mean_before_last", torch.zeros(n_tasks, device=device))  # Lbar(e - 2)
        state.register_buffer("epochs_done", torch.tensor(0, dtype=torch.long, device=device))
        return state

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        st = ctx.state
        losses = task_losses.detach().to(st.loss_sum.dtype)
        with torch.no_grad():
            # Epoch roll-over, branch-free: `new` is a 0-d bool tensor on the device.
            new = st.epoch != ctx.epoch
            closes = new & (st.loss_count.sum() > 0)
            finished = st.loss_sum / st.loss_count.clamp_min(1)
            # A task with no label in the whole epoch keeps its previous mean.
            finished = torch.where(st.loss_count > 0, finished, st.mean_last)
            st.mean_before_last.copy_(torch.where(closes, st.mean_last, st.mean_before_last))
            st.mean_last.copy_(torch.where(closes, finished, st.mean_last))
            st.epochs_done.add_(closes.long())
            st.loss_sum.mul_(~new)
            st.loss_count.mul_(~new)
            st.epoch.fill_(ctx.epoch)

            n_tasks = losses.shape[0]
            known = st.mean_before_last > 0
            ratio = torch.where(known, st.mean_last / st.mean_before_last.clamp_min(1e-12), torch.ones_like(losses))
            dynamic = n_tasks * torch.softmax(ratio / self.temperature, dim=0)
            weights = torch.where(st.epochs_done >= 2, dynamic, torch.ones_like(dynamic))

            present = losses != 0
            st.loss_sum.add_(losses)
            st.loss_count.add_(present.to(losses.dtype))

        total = (ctx.task_weights * weights.to(task_losses.dtype) * task_losses).sum()
        if ctx.aux_loss is not None:
            total = total + ctx.aux_loss
        total.backward()
        return {"weights": weights}
