"""STCH: smooth Tchebycheff scalarization (Lin, Zhang, Yang, Liu, Wang & Zhang, ICML 2024)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch
from torch import nn

from .._constraints import Interval, Options
from ._base import MultiTaskOptimizer, StepContext, device_of

IDEAL_POINTS = ("running_min", "zero")


class STCH(MultiTaskOptimizer):
    """Smooth Tchebycheff scalarization: a soft maximum of the tasks' weighted distances to the ideal point.

    Lin, Zhang, Yang, Liu, Wang & Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective
    Optimization", ICML 2024 (arXiv 2402.19078). The Tchebycheff scalarization
    ``max_i w_i (f_i - z_i)`` is replaced by its smooth upper bound::

        g_mu(theta) = mu * log sum_i exp( w_i (f_i(theta) - z_i) / mu )

    whose gradient is ``sum_i p_i w_i grad f_i`` with ``p = softmax(w (f - z) / mu)``: the task
    furthest from its ideal value gets most of the weight, smoothly. As in the authors' multi-task
    code (and LibMTL's ``STCH``), the objectives are the log losses normalised by a *nadir point*
    ``n`` (each task's mean loss over a warm-up epoch), ``f_i = log(L_i / n_i)``, the network
    minimises ``T * g_mu`` (the factor ``T`` as in that code), and training starts with a warm-up:

    - epochs ``0 .. warmup_epoch``: minimise ``sum_i w_i log L_i``; the mean task losses of
      epoch ``warmup_epoch`` (the last warm-up epoch) form ``n``;
    - from epoch ``warmup_epoch + 1`` on: minimise ``T * g_mu``.

    ``w`` are the estimator's ``task_weights`` (ones by default), which play the part of the
    paper's preference vector. The ideal point ``z`` is, by default, the running minimum of
    each ``f_i`` (the lowest value seen since the warm-up, this step's included), so
    ``f_i - z_i >= 0``; ``ideal_point="zero"`` uses ``z = 0`` on the normalised log scale, which
    is what the authors' multi-task code does.

    Parameters
    ----------
    mu : float, default=1.0
        Smoothing ``mu > 0``: small values approach the (non-smooth) Tchebycheff maximum, large
        values equal weights (the authors' and LibMTL's default 1.0).
    warmup_epoch : int or None, default=4
        The last warm-up epoch (LibMTL's ``STCH_warmup_epoch``, default 4: five warm-up epochs).
        None: no warm-up, STCH from the first step with ``n = 1`` (``f_i = log L_i``).
    ideal_point : {"running_min", "zero"}, default="running_min"
        The ideal point ``z`` (above).

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` are the preference vector inside the
      soft maximum (and the weights of the warm-up's log losses); a weight of 0 removes a
      task's gradient. Private parameters get the same coefficient as their task's loss.
    - **Epochs** are the estimator's (``partial_fit`` calls and warm starts continue the count).
      The nadir point, its running sums and the ideal point live in buffers of the method's
      state module, so a pickled or saved estimator continues with the same ones.
    - **Deviations from the paper / the authors' code.** The paper leaves the choice of ``z``
      open; the running minimum is this implementation's default (the authors' code is
      ``ideal_point="zero"``). A task with no label in a batch (loss exactly 0) is left out of
      that step (out of the soft maximum, the nadir sums and the running minimum) instead of
      entering as ``log(1e-20)``; a task without a label in the whole warm-up epoch gets
      ``n_i = 1``. The authors' code subtracts the largest term before the exponential for
      stability; ``torch.logsumexp`` does the same.
    - **Randomness:** none.
    - **Diagnostics** (``history_`` key ``optim_weights``, epoch means): ``weights``, the
      coefficient ``T * p_i`` of each task's ``grad f_i`` (they sum to ``T``; ones during the
      warm-up), without the user's ``task_weights``.
    - Cost per step: one backward pass; ``O(T)`` extra work.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.stch import STCH
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=STCH(mu=1.0, warmup_epoch=0), max_epochs=3,
    ...                      random_state=0).fit(X, Y)
    >>> round(sum(clf.history_[-1, "optim_weights"]), 4)  # T softmax weights after the warm-up
    2.0
    """

    _eps = 1e-20

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "mu": [Interval(numbers.Real, 0, closed="right")],
        "warmup_epoch": [Options(None), Interval(numbers.Integral, 0)],
        "ideal_point": [Options(*IDEAL_POINTS)],
    }

    def __init__(self, mu=1.0, warmup_epoch=4, ideal_point="running_min"):
        self.mu = mu
        self.warmup_epoch = warmup_epoch
        self.ideal_point = ideal_point

    def create_state(self, model: nn.Module, n_tasks: int) -> nn.Module:
        device = torch.device("cpu") if model is None else device_of(model)
        state = nn.Module()
        for name in ("nadir", "nadir_sum", "nadir_count", "ideal"):
            state.register_buffer(name, torch.zeros(n_tasks, device=device))
        state.register_buffer("nadir_set", torch.zeros((), dtype=torch.bool, device=device))
        state.register_buffer("ideal_set", torch.zeros(n_tasks, dtype=torch.bool, device=device))
        return state

    def objective(self, task_losses: torch.Tensor, state: nn.Module, epoch: int, preference: torch.Tensor):
        """The scalar to back-propagate and the ``(T,)`` weights ``T p`` (ones in the warm-up).

        Advances the method's state (nadir sums in the last warm-up epoch, nadir point and
        ideal point afterwards).
        """
        n_tasks = task_losses.shape[0]
        preference = preference.to(device=task_losses.device, dtype=task_losses.dtype)
        detached = task_losses.detach().to(state.nadir.dtype)
        present = detached > 0
        safe = torch.where(present, task_losses, torch.ones_like(task_losses))  # log(1) = 0 when absent
        if self.warmup_epoch is not None and epoch <= self.warmup_epoch:
            if epoch == self.warmup_epoch:
                with torch.no_grad():
                    state.nadir_sum.add_(torch.where(present, detached, 0.0))
                    state.nadir_count.add_(present.to(state.nadir_count.dtype))
            total = (preference * torch.where(present, torch.log(safe + self._eps), 0.0)).sum()
            return total, torch.ones(n_tasks, device=task_losses.device, dtype=task_losses.dtype)
        with torch.no_grad():
            if self.warmup_epoch is None:
                state.nadir.fill_(1.0)
            else:
                mean = torch.where(state.nadir_count > 0, state.nadir_sum / state.nadir_count.clamp_min(1), 1.0)
                state.nadir.copy_(torch.where(state.nadir_set, state.nadir, mean))
            state.nadir_set.fill_(True)
        f = torch.log(safe / state.nadir.to(safe.dtype) + self._eps)
        if self.ideal_point == "running_min":
            with torch.no_grad():
                fd = f.detach().to(state.ideal.dtype)
                lowest = torch.where(state.ideal_set, torch.minimum(state.ideal, fd), fd)
                state.ideal.copy_(torch.where(present, lowest, state.ideal))
                state.ideal_set.logical_or_(present)
            z = state.ideal.to(f.dtype)
        else:
            z = torch.zeros_like(f)
        terms = torch.where(present, preference * (f - z) / self.mu, float("-inf"))
        # A batch without any label: constant terms (no gradient, no host synchronisation).
        some = present.any()
        terms = torch.where(some, terms, 0.0)
        total = n_tasks * self.mu * torch.logsumexp(terms, dim=0)
        return total, torch.where(some, n_tasks * torch.softmax(terms.detach(), dim=0), 0.0)

    def backward(self, task_losses: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        total, weights = self.objective(task_losses, ctx.state, ctx.epoch, ctx.task_weights)
        if ctx.aux_loss is not None:
            total = total + ctx.aux_loss
        total.backward()
        return {"weights": weights}
