"""PCGrad: project conflicting task gradients onto each other's normal planes (Yu et al., 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch

from .._constraints import Options
from ._combination import GradientCombination
from ._random import SeededState


class PCGrad(GradientCombination):
    """Gradient surgery: remove from each task gradient its conflict with the others.

    Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task Learning",
    NeurIPS 2020 (Algorithm 1). For every task ``i``, its gradient ``g_i`` on the shared
    parameters is projected, one other task ``j`` at a time in a random order, onto the
    normal plane of ``g_j`` whenever the two conflict (``g_i . g_j < 0``)::

        g_i <- g_i - min(g_i . g_j, 0) / ||g_j||^2  g_j

    where ``g_j`` is always the *original* gradient of task ``j``; the shared update is the
    sum of the projected gradients. The projections are carried out on the ``T x T`` Gram
    matrix (each projected gradient is a combination of the original ones), so the
    ``(T, P)`` gradient matrix is read twice whatever the number of tasks, and nothing is
    copied to the host.

    Parameters
    ----------
    reduction : {"sum", "mean"}, default="sum"
        Combine the projected gradients by their sum (the paper; equal weighting's scale)
        or their mean.

    Notes
    -----
    - **Task weights.** The user's ``task_weights`` ``w`` scale the task losses before the
      surgery: the method projects the gradients of ``w_k L_k``. Task ``k``'s private
      parameters (tower, gate) get ``w_k`` times their own gradient, unchanged by the surgery
      (as in the paper, where only shared parameters are projected).
    - **Randomness.** The projection orders come from a ``torch.Generator`` seeded from the
      global torch random stream when training starts, so a fixed ``random_state`` of the
      estimator makes training deterministic. With two tasks there is no order to draw.
    - **Deviations from the paper.** None in the update. A task's projection skips itself
      (the paper's loop includes it, a no-op).
    - **Diagnostics** (``history_`` keys ``optim_<name>``, epoch means): ``weights`` (the
      coefficient of each task's gradient in the combined shared gradient: 1 for every task
      without conflicts under ``"sum"``), ``cosine`` (mean pairwise cosine of the task
      gradients) and ``conflicts`` (fraction of task pairs with a negative inner product).

    Examples
    --------
    >>> from sklearn_mtr import MMoEClassifier
    >>> from sklearn_mtr.datasets import make_multitask_classification
    >>> from sklearn_mtr.optim.pcgrad import PCGrad
    >>> X, Y = make_multitask_classification(n_samples=300, random_state=0)
    >>> clf = MMoEClassifier(n_experts=2, optimizer=PCGrad(), max_epochs=2,
    ...                      random_state=0).fit(X, Y)
    >>> sorted(k for k in clf.history_[-1] if k.startswith("optim_"))
    ['optim_conflicts', 'optim_cosine', 'optim_weights']
    """

    _weights_scale_private = False

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "reduction": [Options("sum", "mean")],
    }

    def __init__(self, reduction="sum"):
        self.reduction = reduction

    def create_state(self, model, n_tasks):
        return SeededState()

    def _combine(self, grads, gram, losses, state):
        n = grads.shape[0]
        gram = gram.detach()
        # coef[i] holds the coefficients of task i's projected gradient on the original ones.
        coef = torch.eye(n, dtype=gram.dtype, device=gram.device)
        sq_norms = gram.diagonal().clamp_min(torch.finfo(gram.dtype).tiny)
        if n > 1:
            if n == 2:
                order = torch.tensor([[1], [0]])
            else:
                # Row i: the other tasks in random order (task i itself sorts last and is cut).
                keys = torch.rand(n, n, generator=state.generator)
                keys.fill_diagonal_(2.0)
                order = keys.argsort(dim=1)[:, : n - 1]
            order = order.to(gram.device, non_blocking=True)
            rows = torch.arange(n, device=gram.device)
            for step in range(n - 1):
                j = order[:, step]
                dots = (coef * gram[j]).sum(1)  # (projected g_i) . g_j, for every i at once
                shift = dots.clamp(max=0) / sq_norms[j]
                coef = coef.index_put((rows, j), coef[rows, j] - shift)
        coefficients = coef.sum(0)
        if self.reduction == "mean":
            coefficients = coefficients / n
        direction = coefficients @ grads
        # (a boolean-mask gather would make the host wait for the device; a masked sum does not)
        conflicts = (gram < 0).to(gram.dtype).sum() / max(n * (n - 1), 1)
        return direction, coefficients, {"conflicts": conflicts}
