"""GradVac: gradient vaccine (Wang, Tsvetkov, Firat & Cao, ICLR 2021)."""

from __future__ import annotations

import numbers
from typing import ClassVar

import torch

from .._constraints import Interval
from ._base import device_of
from ._combination import ZERO_GRADIENT, GradientCombination
from ._random import SeededState


class GradVac(GradientCombination):
    """Gradient vaccine: raise each pair's gradient cosine to its running target.

    Wang, Tsvetkov, Firat & Cao, "Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models", ICLR 2021 (arXiv 2010.05874),
    Algorithm 1. Each ordered pair of tasks ``(i, j)`` keeps a target cosine ``phi_hat_ij``
    (initially 0), an exponential moving average of the pair's observed cosines. For every
    task ``i`` and, in a random order, every other task ``j``, with ``phi_ij`` the cosine
    between the (already modified) ``g_i`` and the original ``g_j``::

        if phi_ij < phi_hat_ij:
            g_i <- g_i + ||g_i|| (phi_hat_ij sqrt(1 - phi_ij^2) - phi_ij sqrt(1 - phi_hat_ij^2))
                         / (||g_j|| sqrt(1 - phi_hat_ij^2))  g_j
        phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij

    The added multiple of ``g_j`` makes the cosine of the new ``g_i`` with ``g_j`` exactly
    ``phi_hat_ij`` (the paper's Eq. 4); with ``phi_hat = 0`` this is PCGrad's projection.
    The shared update is the sum of the modified gradients. As in PCGrad, every modified
    gradient is a combination of the original ones, so the whole procedure runs on the
    ``T x T`` Gram matrix, on the device.

    Parameters
    ----------
    beta : float, default=0.01
        EMA rate ``beta`` in (0, 1] of the target cosines (``1e-2``, the value
        re-implementations of the paper use; LibMTL's default is 0.5, which makes the targets
        follow the last few steps' cosines).

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses first: the
      method modifies the gradients of ``w_k L_k`` (cosines do not depend on positive
      weights; the sizes of the modifications do). Task ``k``'s private parameters (tower,
      gate) get ``w_k`` times their own gradient, unmodified.
    - **Randomness.** The orders of the tasks ``j`` come from a ``torch.Generator`` seeded
      from the global torch random stream when training starts (as PCGrad's), so a fixed
      ``random_state`` makes training deterministic. With two tasks there is no order to draw.
    - **Deviations from the paper.** (1) The paper applies the vaccine per parameter group
      (layers, or blocks of a Transformer) of a multilingual model; here it works at the
      granularity of the whole set of shared parameters (one cosine per pair), LibMTL's
      default ``whole_model``. (2) A pair in which either gradient is zero in the batch (a
      task without labels) is neither modified nor used to update its target (its cosine
      is undefined). (3) ``1 - phi_hat^2`` is bounded below by ``1e-12``.
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` (the
      coefficient of each task's gradient in the combined shared gradient: 1 for every task
      when nothing is modified), ``cosine`` (mean pairwise cosine of the task gradients),
      ``target_cosine`` (mean of the targets ``phi_hat_ij`` over the pairs after the update)
      and ``vaccinated`` (fraction of the ordered pairs whose gradient was modified).
    - Cost per step: ``T`` backward passes; nothing is copied to the host.

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.gradvac import GradVac
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=GradVac(beta=0.01), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> sorted(k for k in clf.history_[-1] if k.startswith("optim_"))
    ['optim_cosine', 'optim_target_cosine', 'optim_vaccinated', 'optim_weights']
    """

    _weights_scale_private = False

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "beta": [Interval(numbers.Real, 0, 1, closed="right")],
    }

    def __init__(self, beta=0.01):
        self.beta = beta

    def create_state(self, model, n_tasks):
        device = torch.device("cpu") if model is None else device_of(model)
        state = SeededState()  # the generator of the random orders
        state.register_buffer("target_cosine", torch.zeros(n_tasks, n_tasks, device=device))  # phi_hat
        return state

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        gram = gram.detach()
        dtype, device = gram.dtype, gram.device
        target = state.target_cosine.to(dtype)
        coef = torch.eye(n, dtype=dtype, device=device)  # row i: the modified g_i on the original ones
        sq_norms = gram.diagonal().clamp_min(0)
        active = sq_norms > ZERO_GRADIENT * sq_norms.max()
        norms = sq_norms.sqrt()
        tiny = torch.finfo(dtype).tiny
        modified = torch.zeros((), dtype=dtype, device=device)
        if n > 1:
            if n == 2:
                order = torch.tensor([[1], [0]])
            else:
                keys = torch.rand(n, n, generator=state.generator)
                keys.fill_diagonal_(2.0)  # task i itself sorts last and is cut
                order = keys.argsort(dim=1)[:, : n - 1]
            order = order.to(device, non_blocking=True)
            rows = torch.arange(n, device=device)
            for step in range(n - 1):
                j = order[:, step]
                dots = (coef * gram[j]).sum(1)  # (modified g_i) . g_j, for every i at once
                norm_i = (coef @ gram * coef).sum(1).clamp_min(0).sqrt()  # ||modified g_i||
                valid = active & active[j]
                phi = torch.where(valid, dots / (norm_i * norms[j]).clamp_min(tiny), torch.zeros_like(dots))
                phi = phi.clamp(-1.0, 1.0)
                phi_hat = target[rows, j]
                sin_hat = (1.0 - phi_hat**2).clamp_min(1e-12).sqrt()
                sin = (1.0 - phi**2).clamp_min(0).sqrt()
                shift = norm_i * (phi_hat * sin - phi * sin_hat) / (norms[j] * sin_hat).clamp_min(tiny)
                vaccinate = valid & (phi < phi_hat)
                coef = coef.index_put((rows, j), coef[rows, j] + torch.where(vaccinate, shift, torch.zeros_like(shift)))
                target = target.index_put(
                    (rows, j), torch.where(valid, (1 - self.beta) * phi_hat + self.beta * phi, phi_hat)
                )
                modified = modified + vaccinate.to(dtype).sum()
            state.target_cosine.copy_(target.to(state.target_cosine.dtype))
        coefficients = coef.sum(0)
        direction = coefficients @ grads
        pairs = max(n * (n - 1), 1)
        mean_target = (target.sum() - target.diagonal().sum()) / pairs
        return direction, coefficients, {"target_cosine": mean_target, "vaccinated": modified / pairs}
